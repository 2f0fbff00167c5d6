//! Rows as stored. These types never leave the crate; `ops` turns them into
//! the public views of `model`.

use serde::Serialize;

use crate::rules::grant::PoolState;

/// `pools.kind` of a user's pool.
pub(crate) const USER: &str = "user";
/// `pools.kind` of a project's shared pool.
pub(crate) const PROJECT: &str = "project";

/// One row of `pools`.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, Serialize)]
pub(crate) struct PoolRow {
    pub id: i64,
    #[serde(skip)]
    pub kind: String,
    #[serde(skip)]
    pub owner: String,
    #[serde(skip)]
    pub name: String,
    pub position: i64,
    pub active: i64,
    pub balance: i64,
    pub cap: i64,
    pub grant_value: i64,
    pub grant_interval: i64,
    pub grant_anchor: Option<i64>,
    pub project_id: Option<i64>,
    pub pattern: Option<String>,
    pub config: String,
    #[serde(skip)]
    pub created_at: i64,
}

pub(crate) const POOL_COLUMNS: &str = "id, kind, owner, name, position, active, balance, cap, \
     grant_value, grant_interval, grant_anchor, project_id, pattern, config, created_at";

impl PoolRow {
    /// A pool not yet stored: full (rule 1), active, its grant clock idle.
    pub(crate) fn opened(
        kind: &str,
        owner: &str,
        name: &str,
        state: PoolState,
        config: String,
        now: i64,
    ) -> Self {
        debug_assert!(state.balance == state.cap && state.grant_anchor_ms.is_none());
        let mut row = Self {
            id: 0,
            kind: kind.to_string(),
            owner: owner.to_string(),
            name: name.to_string(),
            position: 0,
            active: 1,
            balance: 0,
            cap: 0,
            grant_value: 0,
            grant_interval: 1,
            grant_anchor: None,
            project_id: None,
            pattern: None,
            config,
            created_at: now,
        };
        row.set_state(state);
        row
    }

    pub(crate) fn state(&self) -> PoolState {
        PoolState {
            balance: self.balance,
            cap: self.cap,
            grant_value: self.grant_value,
            grant_interval_secs: self.grant_interval,
            grant_anchor_ms: self.grant_anchor,
        }
    }

    pub(crate) fn set_state(&mut self, state: PoolState) {
        self.balance = state.balance;
        self.cap = state.cap;
        self.grant_value = state.grant_value;
        self.grant_interval = state.grant_interval_secs;
        self.grant_anchor = state.grant_anchor_ms;
    }

    /// The journal account this pool's entries are paged by.
    pub(crate) fn account(&self) -> String {
        account(&self.kind, &self.owner)
    }
}

/// `journal.account`: whose journal an entry appears in.
pub(crate) fn account(kind: &str, owner: &str) -> String {
    format!("{kind}:{owner}")
}

/// One row of `journal`, to insert or as read.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, Serialize)]
pub(crate) struct JournalRow {
    #[serde(skip)]
    pub id: i64,
    pub time: i64,
    pub pool_id: i64,
    pub account: String,
    pub delta: i64,
    pub balance_after: i64,
    pub kind: String,
    pub user_name: Option<String>,
    pub server_name: Option<String>,
    pub server_key: Option<String>,
    pub period: Option<i64>,
    pub actor: Option<String>,
    pub reason: Option<String>,
}

impl JournalRow {
    /// An entry with only the required fields set.
    pub(crate) fn new(pool: &PoolRow, time: i64, delta: i64, kind: &str) -> Self {
        Self {
            id: 0,
            time,
            pool_id: pool.id,
            account: pool.account(),
            delta,
            balance_after: pool.balance,
            kind: kind.to_string(),
            user_name: None,
            server_name: None,
            server_key: None,
            period: None,
            actor: None,
            reason: None,
        }
    }
}

/// One row of `charges`: a settled period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct ChargeRow {
    pub server_key: String,
    pub period: i64,
    pub charged_at: i64,
    pub amount: i64,
    pub from_project: i64,
    pub paid: i64,
}

/// One row of `servers`.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub(crate) struct ServerRow {
    pub id: i64,
    pub server_key: String,
    pub user_name: String,
    pub server_name: String,
    pub pool_id: i64,
    pub project_id: Option<i64>,
    pub billing_value: i64,
    pub billing_interval: i64,
    pub state: String,
    pub admitted_at: i64,
    pub promise_expires_at: i64,
    pub ready_at: Option<i64>,
    pub periods_charged: i64,
    pub next_charge_at: Option<i64>,
    pub stop_reason: Option<String>,
    pub ended_at: Option<i64>,
    pub user_options: String,
}

pub(crate) const SERVER_COLUMNS: &str = "id, server_key, user_name, server_name, pool_id, \
     project_id, billing_value, billing_interval, state, admitted_at, promise_expires_at, \
     ready_at, periods_charged, next_charge_at, stop_reason, ended_at, user_options";

/// The mutable part of a server row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct ServerUpdate {
    pub id: i64,
    pub state: String,
    pub ready_at: Option<i64>,
    pub periods_charged: i64,
    pub next_charge_at: Option<i64>,
    pub stop_reason: Option<String>,
    pub ended_at: Option<i64>,
}

impl ServerRow {
    pub(crate) fn update(&self) -> ServerUpdate {
        ServerUpdate {
            id: self.id,
            state: self.state.clone(),
            ready_at: self.ready_at,
            periods_charged: self.periods_charged,
            next_charge_at: self.next_charge_at,
            stop_reason: self.stop_reason.clone(),
            ended_at: self.ended_at,
        }
    }
}

/// Server states, as stored.
pub(crate) mod state {
    /// Admitted, holding a promise, not ready yet.
    pub const PENDING: &str = "pending";
    /// Ready and billed.
    pub const RUNNING: &str = "running";
    /// Could not pay; the hub has been asked to stop it.
    pub const STOPPING: &str = "stopping";
    /// Gone after running.
    pub const STOPPED: &str = "stopped";
    /// Gone before it was ready (failed, cancelled, promise expired).
    pub const RELEASED: &str = "released";
}
