//! The ledger's public inputs and views. Plain data: the HTTP layer maps
//! these to its own JSON types.

use serde_json::Value;

use crate::clock::Millis;

/// What the operator's config says about one of a user's pools (rule 9).
/// The spec's single-pool config is one `PoolConfig` named `default`.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolConfig {
    /// Pool name, unique per user.
    pub name: String,
    /// The most the pool holds.
    pub cap: i64,
    /// Credits granted every `grant_interval` seconds below the cap.
    pub grant_value: i64,
    /// Seconds between grants.
    pub grant_interval: i64,
    /// The project that pays first for servers charged to this pool.
    pub project: Option<String>,
    /// The `user_options` pattern servers must match to be charged here;
    /// `None` for the catch-all pool.
    pub user_options: Option<Value>,
}

impl PoolConfig {
    /// The spec's single pool, `default`, with no pattern.
    pub fn single(
        cap: i64,
        grant_value: i64,
        grant_interval: i64,
        project: Option<String>,
    ) -> Self {
        Self {
            name: "default".to_string(),
            cap,
            grant_value,
            grant_interval,
            project,
            user_options: None,
        }
    }
}

/// What the operator's config says about a project's shared pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectConfig {
    /// Project name.
    pub name: String,
    /// The most the pool holds.
    pub cap: i64,
    /// Credits granted every `grant_interval` seconds below the cap.
    pub grant_value: i64,
    /// Seconds between grants.
    pub grant_interval: i64,
}

/// A spawn asking to be admitted (rule 5).
#[derive(Debug, Clone, PartialEq)]
pub struct SpawnRequest {
    /// The user spawning.
    pub user: String,
    /// The server's name; empty for the default server.
    pub server_name: String,
    /// The start identity: unique per start, so a restarted server is a new
    /// one. Admitting the same identity twice returns the first answer.
    pub server_key: String,
    /// The options the user chose; matched against pool patterns.
    pub user_options: Value,
    /// Credits per period.
    pub billing_value: i64,
    /// Period length in seconds.
    pub billing_interval: i64,
    /// How long the promise holds if the server never becomes ready.
    pub promise_secs: i64,
}

/// The answer to a [`SpawnRequest`].
#[derive(Debug, Clone, PartialEq)]
pub enum Admission {
    /// The spawn may go ahead; its first period is promised.
    Admitted {
        /// The pool it will be charged to.
        pool: String,
    },
    /// The spawn must not start.
    Refused(Box<Refusal>),
}

/// Why a spawn was refused, with the figures for the message.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    /// A sentence for the user: what is needed, what they have, when more comes.
    pub message: String,
    /// Credits the first period needs.
    pub required: i64,
    /// Period length in seconds.
    pub billing_interval: i64,
    /// The pool that would have paid; `None` when no pool matched.
    pub pool: Option<PoolView>,
    /// Credits promised to the user's or project's other pending spawns.
    pub promised: i64,
    /// When the next grant of the user or project pool arrives.
    pub next_grant_at: Option<Millis>,
}

/// A project's pool, with grants applied to now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectView {
    /// Project name.
    pub name: String,
    /// Credits held now.
    pub balance: i64,
    /// The most it holds.
    pub cap: i64,
    /// Credits per grant.
    pub grant_value: i64,
    /// Seconds between grants.
    pub grant_interval: i64,
    /// When the next grant arrives; `None` when full.
    pub next_grant_at: Option<Millis>,
}

/// One of a user's pools, with grants applied to now.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolView {
    /// Pool name (`default` for the single-pool config).
    pub name: String,
    /// Credits held now.
    pub balance: i64,
    /// The most it holds.
    pub cap: i64,
    /// Credits per grant.
    pub grant_value: i64,
    /// Seconds between grants.
    pub grant_interval: i64,
    /// When the next grant arrives; `None` when full.
    pub next_grant_at: Option<Millis>,
    /// The pattern servers must match, or `None` for the catch-all pool.
    pub user_options: Option<Value>,
    /// The project paying first, if any.
    pub project: Option<ProjectView>,
}

/// Where a server is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerState {
    /// Admitted, not ready yet; holds a promise.
    Pending,
    /// Ready and billed.
    Running,
    /// Could not pay; the hub is being asked to stop it.
    Stopping,
    /// Ended after running.
    Stopped,
    /// Ended before becoming ready.
    Released,
}

impl ServerState {
    pub(crate) fn parse(s: &str) -> Self {
        match s {
            "pending" => Self::Pending,
            "running" => Self::Running,
            "stopping" => Self::Stopping,
            "stopped" => Self::Stopped,
            _ => Self::Released,
        }
    }

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Stopping => "stopping",
            Self::Stopped => "stopped",
            Self::Released => "released",
        }
    }
}

/// A server as the ledger knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerView {
    /// The user.
    pub user: String,
    /// The server's name; empty for the default server.
    pub name: String,
    /// Its start identity.
    pub key: String,
    /// The pool it is charged to.
    pub pool: String,
    /// Credits per period.
    pub billing_value: i64,
    /// Period length in seconds.
    pub billing_interval: i64,
    /// Where it is in its life.
    pub state: ServerState,
    /// When it became ready.
    pub ready_at: Option<Millis>,
    /// When its next period will be charged.
    pub next_charge_at: Option<Millis>,
    /// Periods paid so far.
    pub periods_charged: i64,
    /// Why it was stopped for lack of credits.
    pub stop_reason: Option<String>,
    /// When it ended.
    pub ended_at: Option<Millis>,
}

/// A user's credits: pools and servers, as of now.
#[derive(Debug, Clone, PartialEq)]
pub struct UserView {
    /// The user.
    pub name: String,
    /// Active pools in matching order.
    pub pools: Vec<PoolView>,
    /// Live servers (pending, running, stopping).
    pub servers: Vec<ServerView>,
    /// Servers stopped for lack of credits in the last day, newest last.
    pub recent_stops: Vec<ServerView>,
}

/// A server the hub must stop because its credits ran out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StopOrder {
    /// The user.
    pub user: String,
    /// The server's name; empty for the default server.
    pub server_name: String,
    /// Its start identity, for [`crate::Ledger::mark_stopped`].
    pub server_key: String,
    /// The sentence shown to the user.
    pub reason: String,
}

/// What a billing round did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BillingReport {
    /// Periods paid this round.
    pub periods_charged: u64,
    /// Credits taken this round.
    pub credits_charged: i64,
    /// Servers that ran out of credits this round.
    pub new_stops: Vec<StopOrder>,
    /// Every server waiting for the hub to stop it (including the new ones),
    /// so that a stop the hub did not confirm is asked for again.
    pub pending_stops: Vec<StopOrder>,
    /// Promises of spawns that never got ready, released this round.
    pub promises_expired: u64,
}

/// The kind of a journal entry (rule 7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A new pool's opening balance.
    Open,
    /// Grants.
    Grant,
    /// A period's charge.
    Charge,
    /// Credits removed because the cap was lowered.
    Clamp,
    /// An admin's change.
    Adjust,
}

impl EntryKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Grant => "grant",
            Self::Charge => "charge",
            Self::Clamp => "clamp",
            Self::Adjust => "adjust",
        }
    }

    pub(crate) fn parse(s: &str) -> Self {
        match s {
            "open" => Self::Open,
            "grant" => Self::Grant,
            "charge" => Self::Charge,
            "clamp" => Self::Clamp,
            _ => Self::Adjust,
        }
    }
}

/// One journal entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalEntry {
    /// Position in the journal; pages continue below it.
    pub id: i64,
    /// When the change happened.
    pub time: Millis,
    /// The pool's name (a project's name for a project pool).
    pub pool: String,
    /// Credits added (negative: taken).
    pub delta: i64,
    /// The pool's balance after the change.
    pub balance_after: i64,
    /// What kind of change.
    pub kind: EntryKind,
    /// For a charge: the user whose server paid.
    pub user: Option<String>,
    /// For a charge: the server's name.
    pub server: Option<String>,
    /// For a charge: the period index.
    pub period: Option<i64>,
    /// For an admin change: who made it.
    pub actor: Option<String>,
    /// For an admin change: why.
    pub reason: Option<String>,
}

/// An admin's change to a user's pool. `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolPatch {
    /// New balance; must not exceed the (new) cap.
    pub balance: Option<i64>,
    /// New cap; a balance above it is clamped.
    pub cap: Option<i64>,
    /// New grant value.
    pub grant_value: Option<i64>,
    /// New grant interval in seconds.
    pub grant_interval: Option<i64>,
    /// `Some(None)` removes the pool from its project.
    pub project: Option<Option<String>>,
}

/// An admin's change to a project's pool.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProjectPatch {
    /// New balance; must not exceed the (new) cap.
    pub balance: Option<i64>,
    /// New cap; a balance above it is clamped.
    pub cap: Option<i64>,
    /// New grant value.
    pub grant_value: Option<i64>,
    /// New grant interval in seconds.
    pub grant_interval: Option<i64>,
}

/// Who made an admin change, and why.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Actor {
    /// The admin (a user or service name).
    pub name: String,
    /// The reason given, if any.
    pub reason: Option<String>,
}
