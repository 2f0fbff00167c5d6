//! The ledger's operations: each one transaction that loads rows, lets the
//! rules of [`crate::rules`] decide, and writes what they return.

mod admin;
mod admission;
mod billing;
mod config;
mod views;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::clock::{Clock, Millis, iso8601};
use crate::error::{LedgerError, Result};
use crate::limits::TRANSACTION_ATTEMPTS_MAX;
use crate::model::{PoolView, ProjectView};
use crate::rules::pattern::Pattern;
use crate::store::{Backend, Db, JournalRow, PoolRow};

/// Patterns compiled once and reused; operators configure a handful.
const PATTERN_CACHE_MAX: usize = 4096;

/// The credit ledger: every rule of DESIGN §3 over a durable store.
///
/// Cheap to clone; clones share the connection pool and the clock.
#[derive(Clone)]
pub struct Ledger {
    db: Db,
    clock: Arc<dyn Clock>,
    patterns: Arc<Mutex<HashMap<String, Arc<Pattern>>>>,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("backend", &self.db.backend())
            .finish()
    }
}

impl Ledger {
    /// Opens the ledger at `url` (`sqlite://PATH`, `sqlite::memory:` or
    /// `postgres://...`), creating a SQLite file if needed and applying
    /// migrations.
    pub async fn open(url: &str, clock: Arc<dyn Clock>) -> Result<Self> {
        Ok(Self {
            db: Db::open(url).await?,
            clock,
            patterns: Arc::default(),
        })
    }

    /// Which database this ledger runs on.
    pub fn backend(&self) -> Backend {
        self.db.backend()
    }

    /// The ledger's notion of now.
    pub fn now(&self) -> Millis {
        self.clock.now_ms()
    }

    /// Closes the connections. Operations after this fail.
    pub async fn close(&self) {
        self.db.close().await
    }

    /// Runs one attempt of an operation until it succeeds or fails for a
    /// reason other than a lost race; each attempt is its own transaction.
    async fn retry<T, F, Fut>(&self, mut attempt: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut tries = 0;
        loop {
            tries += 1;
            match attempt().await {
                Err(error) if error.is_transient() && tries < TRANSACTION_ATTEMPTS_MAX => {
                    tracing::debug!(%error, tries, "ledger transaction lost a race; retrying");
                    let backoff_ms = 5u64 << tries.min(6);
                    tokio::time::sleep(Duration::from_millis(backoff_ms)).await;
                }
                other => return other,
            }
        }
    }

    fn pattern(&self, text: &str) -> Result<Arc<Pattern>> {
        let mut cache = self.patterns.lock().expect("pattern cache poisoned");
        if let Some(p) = cache.get(text) {
            return Ok(p.clone());
        }
        let value: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| LedgerError::Corrupt(format!("stored pattern is not JSON: {e}")))?;
        let pattern = Arc::new(
            Pattern::compile(&value).map_err(|e| LedgerError::invalid("user_options", e.0))?,
        );
        if cache.len() >= PATTERN_CACHE_MAX {
            cache.clear();
        }
        cache.insert(text.to_string(), pattern.clone());
        Ok(pattern)
    }
}

/// Applies grants due by `now` to `pool`, journaling them.
fn accrue_into(pool: &mut PoolRow, now: Millis, journal: &mut Vec<JournalRow>) -> bool {
    let mut state = pool.state();
    let before = state;
    let grant = state.accrue(now);
    pool.set_state(state);
    if let Some(g) = grant {
        journal.push(JournalRow::new(pool, g.at, g.delta, "grant"));
    }
    state != before
}

/// Sets cap and grant settings (rule 6), journaling a clamp if the balance
/// had to fall to the new cap. Returns whether anything changed.
fn apply_settings(
    pool: &mut PoolRow,
    cap: i64,
    grant_value: i64,
    grant_interval: i64,
    now: Millis,
    journal: &mut Vec<JournalRow>,
) -> bool {
    let mut state = pool.state();
    let before = state;
    state.grant_value = grant_value;
    state.grant_interval_secs = grant_interval;
    let clamped = state.set_cap(cap, now);
    pool.set_state(state);
    if clamped > 0 {
        journal.push(JournalRow::new(pool, now, -clamped, "clamp"));
    }
    state != before
}

/// A project pool as users see it now.
fn project_view(row: &PoolRow, now: Millis) -> ProjectView {
    let mut state = row.state();
    state.accrue(now);
    ProjectView {
        name: row.owner.clone(),
        balance: state.balance,
        cap: state.cap,
        grant_value: state.grant_value,
        grant_interval: state.grant_interval_secs,
        next_grant_at: state.next_grant_at(),
    }
}

/// A user pool as its user sees it now.
fn pool_view(row: &PoolRow, project: Option<&PoolRow>, now: Millis) -> PoolView {
    let mut state = row.state();
    state.accrue(now);
    PoolView {
        name: row.name.clone(),
        balance: state.balance,
        cap: state.cap,
        grant_value: state.grant_value,
        grant_interval: state.grant_interval_secs,
        next_grant_at: state.next_grant_at(),
        user_options: row
            .pattern
            .as_deref()
            .and_then(|p| serde_json::from_str(p).ok()),
        project: project.map(|p| project_view(p, now)),
    }
}

/// "your default server" / "your server 'gpu'".
fn server_label(server_name: &str) -> String {
    if server_name.is_empty() {
        "your default server".to_string()
    } else {
        format!("your server {server_name:?}")
    }
}

/// The sentence about grants that ends a refusal or a stop reason.
fn next_grant_sentence(next_grant_at: Option<Millis>) -> String {
    match next_grant_at {
        Some(at) => format!(" More credits arrive at {}.", iso8601(at)),
        None => String::new(),
    }
}

/// "5 of 100 credits" for the user's pool, with the project when there is one.
fn holdings(
    pool_name: &str,
    user_balance: i64,
    user_cap: i64,
    project: Option<(&str, i64, i64)>,
) -> String {
    let pool = if pool_name == "default" {
        String::new()
    } else {
        format!(" in pool {pool_name:?}")
    };
    let mut text = format!("you have {user_balance} of {user_cap} credits{pool}");
    if let Some((name, balance, cap)) = project {
        text.push_str(&format!(" and project {name:?} has {balance} of {cap}"));
    }
    text
}
