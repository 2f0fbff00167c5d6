-- The ledger's tables. Times are milliseconds since the Unix epoch (UTC),
-- credits and intervals are integers; the CHECKs repeat the ledger's rules
-- so that no write, from any code path, can store a broken row.

CREATE TABLE pools (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL CHECK (kind IN ('user', 'project')),
    owner TEXT NOT NULL,
    name TEXT NOT NULL,
    position INTEGER NOT NULL DEFAULT 0,
    active INTEGER NOT NULL DEFAULT 1,
    balance INTEGER NOT NULL,
    cap INTEGER NOT NULL,
    grant_value INTEGER NOT NULL,
    grant_interval INTEGER NOT NULL,
    grant_anchor INTEGER,
    project_id INTEGER REFERENCES pools (id),
    pattern TEXT,
    config TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    CONSTRAINT pool_balance_in_range CHECK (balance >= 0 AND balance <= cap),
    CONSTRAINT pool_grant_in_range CHECK (grant_value >= 0 AND grant_interval >= 1),
    CONSTRAINT pool_clock_runs_below_cap CHECK ((balance < cap) = (grant_anchor IS NOT NULL)),
    UNIQUE (kind, owner, name)
);

CREATE TABLE servers (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    server_key TEXT NOT NULL UNIQUE,
    user_name TEXT NOT NULL,
    server_name TEXT NOT NULL,
    pool_id INTEGER NOT NULL REFERENCES pools (id),
    project_id INTEGER REFERENCES pools (id),
    billing_value INTEGER NOT NULL CHECK (billing_value >= 0),
    billing_interval INTEGER NOT NULL CHECK (billing_interval >= 1),
    state TEXT NOT NULL CHECK (state IN ('pending', 'running', 'stopping', 'stopped', 'released')),
    admitted_at INTEGER NOT NULL,
    promise_expires_at INTEGER NOT NULL,
    ready_at INTEGER,
    periods_charged INTEGER NOT NULL DEFAULT 0,
    next_charge_at INTEGER,
    stop_reason TEXT,
    ended_at INTEGER,
    user_options TEXT NOT NULL
);
CREATE INDEX servers_due ON servers (next_charge_at) WHERE state = 'running';
CREATE INDEX servers_by_user ON servers (user_name, server_name);
CREATE INDEX servers_pending_pool ON servers (pool_id) WHERE state = 'pending';
CREATE INDEX servers_pending_project ON servers (project_id) WHERE state = 'pending';
CREATE INDEX servers_stopping ON servers (state) WHERE state = 'stopping';

-- One row per settled period of a server: the idempotency key of rule 7.
CREATE TABLE charges (
    server_key TEXT NOT NULL,
    period INTEGER NOT NULL,
    charged_at INTEGER NOT NULL,
    amount INTEGER NOT NULL CHECK (amount >= 0),
    from_project INTEGER NOT NULL CHECK (from_project >= 0 AND from_project <= amount),
    paid INTEGER NOT NULL CHECK (paid IN (0, 1)),
    PRIMARY KEY (server_key, period)
);

CREATE TABLE journal (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time INTEGER NOT NULL,
    pool_id INTEGER NOT NULL REFERENCES pools (id),
    account TEXT NOT NULL,
    delta INTEGER NOT NULL,
    balance_after INTEGER NOT NULL CHECK (balance_after >= 0),
    kind TEXT NOT NULL CHECK (kind IN ('open', 'grant', 'charge', 'clamp', 'adjust')),
    user_name TEXT,
    server_name TEXT,
    server_key TEXT,
    period INTEGER,
    actor TEXT,
    reason TEXT
);
CREATE INDEX journal_by_account ON journal (account, id);
CREATE INDEX journal_by_pool ON journal (pool_id, id);
