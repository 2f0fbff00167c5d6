//! What every handler and the billing loop share.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

use credit_ledger::Ledger;

use crate::auth::TokenCache;
use crate::config::Config;
use crate::events::Events;
use crate::http::views::UserJson;
use crate::hub::HubClient;
use crate::metrics::Metrics;

/// A ready server the hub runs that the plugin never admitted: it is not
/// billed, and admins see it listed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Unbilled {
    /// Its user.
    pub user: String,
    /// Its name; empty for the default server.
    pub server: String,
}

/// Shared state; cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

/// The parts of [`AppState`].
pub struct Inner {
    /// Start-up settings.
    pub config: Config,
    /// The credit ledger.
    pub ledger: Ledger,
    /// The hub's API.
    pub hub: HubClient,
    /// Identities of recently seen tokens.
    pub tokens: TokenCache,
    /// Open event streams.
    pub events: Events,
    /// Metrics.
    pub metrics: Metrics,
    /// Servers running without admission, from the last listing.
    pub unbilled: Mutex<Vec<Unbilled>>,
    /// One message per finished round, for the hub plugin's post hook.
    pub rounds: broadcast::Sender<Arc<str>>,
    /// Start identities of servers a stop task is working on.
    pub stopping: Mutex<HashSet<String>>,
    /// Set while the hub is unreachable, so an outage is logged once.
    pub hub_down: AtomicBool,
    /// Set while the database is unreachable, likewise.
    pub db_down: AtomicBool,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    /// Builds the state from its parts.
    pub fn new(config: Config, ledger: Ledger, hub: HubClient) -> Self {
        let tokens = TokenCache::new(std::time::Duration::from_secs(config.auth_cache_secs));
        Self(Arc::new(Inner {
            config,
            ledger,
            hub,
            tokens,
            events: Events::default(),
            metrics: Metrics::default(),
            unbilled: Mutex::default(),
            rounds: broadcast::channel(16).0,
            stopping: Mutex::default(),
            hub_down: AtomicBool::new(false),
            db_down: AtomicBool::new(false),
        }))
    }

    /// Records a failed hub call; logs only the first of an outage.
    pub fn hub_failed(&self, what: &str, error: &crate::hub::HubError) {
        self.metrics.hub_errors.inc();
        if !self.hub_down.swap(true, Ordering::SeqCst) {
            tracing::warn!(%error, what, "the hub is unreachable; retrying until it answers");
        } else {
            tracing::debug!(%error, what, "hub still unreachable");
        }
    }

    /// Records a successful hub call; logs the end of an outage.
    pub fn hub_ok(&self) {
        if self.hub_down.swap(false, Ordering::SeqCst) {
            tracing::info!("the hub answers again");
        }
    }

    /// Records a failed database call; logs only the first of an outage.
    pub fn db_failed(&self, what: &str, error: &credit_ledger::LedgerError) {
        if !self.db_down.swap(true, Ordering::SeqCst) {
            tracing::warn!(%error, what, "the credit database is unreachable; retrying");
        } else {
            tracing::debug!(%error, what, "database still unreachable");
        }
    }

    /// Records a successful database call; logs the end of an outage.
    pub fn db_ok(&self) {
        if self.db_down.swap(false, Ordering::SeqCst) {
            tracing::info!("the credit database answers again");
        }
    }

    /// Sends the current view to every open stream of these users.
    pub async fn push_views<I: IntoIterator<Item = String>>(&self, users: I) {
        for user in users {
            if !self.events.is_watched(&user) {
                continue;
            }
            match self.ledger.user_view(&user).await {
                Ok(view) => {
                    let next = next_change_at(&view);
                    let json = UserJson::from(view);
                    let text = serde_json::to_string(&json).expect("views serialize");
                    self.events.publish(&user, Arc::from(text), next);
                }
                Err(error) => tracing::debug!(%error, user, "no view to push"),
            }
        }
    }
}

/// When a view changes by itself next: the earliest grant or charge.
pub fn next_change_at(view: &credit_ledger::UserView) -> Option<credit_ledger::Millis> {
    let grants = view.pools.iter().flat_map(|p| {
        [
            p.next_grant_at,
            p.project.as_ref().and_then(|j| j.next_grant_at),
        ]
    });
    let charges = view.servers.iter().map(|s| s.next_charge_at);
    grants.chain(charges).flatten().min()
}
