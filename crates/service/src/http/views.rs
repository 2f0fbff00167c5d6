//! The JSON shapes of the API (DESIGN §4). Times are ISO 8601 UTC strings
//! ending in `Z`.

use serde::Serialize;
use serde_json::Value;

use credit_ledger::clock::iso8601;
use credit_ledger::{JournalEntry, Millis, PoolView, ProjectView, ServerView, UserView};

fn time(at: Option<Millis>) -> Option<String> {
    at.map(iso8601)
}

/// A project pool.
#[derive(Debug, Serialize)]
pub struct ProjectJson {
    name: String,
    balance: i64,
    cap: i64,
    grant_value: i64,
    grant_interval: i64,
    next_grant_at: Option<String>,
}

impl From<ProjectView> for ProjectJson {
    fn from(p: ProjectView) -> Self {
        Self {
            name: p.name,
            balance: p.balance,
            cap: p.cap,
            grant_value: p.grant_value,
            grant_interval: p.grant_interval,
            next_grant_at: time(p.next_grant_at),
        }
    }
}

/// One of a user's pools.
#[derive(Debug, Serialize)]
pub struct PoolJson {
    name: String,
    balance: i64,
    cap: i64,
    grant_value: i64,
    grant_interval: i64,
    next_grant_at: Option<String>,
    user_options: Option<Value>,
    project: Option<ProjectJson>,
}

impl From<PoolView> for PoolJson {
    fn from(p: PoolView) -> Self {
        Self {
            name: p.name,
            balance: p.balance,
            cap: p.cap,
            grant_value: p.grant_value,
            grant_interval: p.grant_interval,
            next_grant_at: time(p.next_grant_at),
            user_options: p.user_options,
            project: p.project.map(ProjectJson::from),
        }
    }
}

/// A live server.
#[derive(Debug, Serialize)]
pub struct ServerJson {
    name: String,
    pool: String,
    billing_value: i64,
    billing_interval: i64,
    next_charge_at: Option<String>,
    state: &'static str,
}

/// A server stopped for lack of credits, with the reason shown to its user.
#[derive(Debug, Serialize)]
pub struct StoppedJson {
    name: String,
    reason: String,
    stopped_at: Option<String>,
}

/// A user's credits: `GET api/v1/me`.
#[derive(Debug, Serialize)]
pub struct UserJson {
    name: String,
    pools: Vec<PoolJson>,
    servers: Vec<ServerJson>,
    stopped: Vec<StoppedJson>,
}

impl From<ServerView> for ServerJson {
    fn from(s: ServerView) -> Self {
        Self {
            name: s.name,
            pool: s.pool,
            billing_value: s.billing_value,
            billing_interval: s.billing_interval,
            next_charge_at: time(s.next_charge_at),
            state: s.state.as_str(),
        }
    }
}

impl From<UserView> for UserJson {
    fn from(v: UserView) -> Self {
        Self {
            name: v.name,
            pools: v.pools.into_iter().map(PoolJson::from).collect(),
            servers: v.servers.into_iter().map(ServerJson::from).collect(),
            stopped: v
                .recent_stops
                .into_iter()
                .map(|s| StoppedJson {
                    name: s.name,
                    reason: s.stop_reason.unwrap_or_default(),
                    stopped_at: time(s.ended_at),
                })
                .collect(),
        }
    }
}

/// A journal entry.
#[derive(Debug, Serialize)]
pub struct JournalJson {
    id: i64,
    time: String,
    pool: String,
    delta: i64,
    balance_after: i64,
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    server: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    period: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    actor: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

impl From<JournalEntry> for JournalJson {
    fn from(e: JournalEntry) -> Self {
        Self {
            id: e.id,
            time: iso8601(e.time),
            pool: e.pool,
            delta: e.delta,
            balance_after: e.balance_after,
            kind: e.kind.as_str(),
            user: e.user,
            server: e.server,
            period: e.period,
            actor: e.actor,
            reason: e.reason,
        }
    }
}

/// A page of a listing: the items and the cursor of the next page.
#[derive(Debug, Serialize)]
pub struct Page<T> {
    /// This page.
    pub items: Vec<T>,
    /// Pass as `after` (listings) or `before` (journals) for the next page;
    /// null on the last page.
    pub next: Option<Value>,
}
