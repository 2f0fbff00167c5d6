//! The credit service: a JupyterHub service that bills running servers,
//! stops the unpaid and serves the credits API.
//!
//! - [`config`] — flags and the environment JupyterHub gives a service.
//! - [`hub`] — the hub's REST API; nothing else talks to the hub.
//! - [`round`] — the billing loop and stop tasks.
//! - [`http`] — the API (`app` builds the router, `serve` binds it).
//! - [`state`] — what handlers and the loop share; [`events`], [`metrics`], [`auth`].
//!
//! All credit rules live in the `credit-ledger` crate.

pub mod auth;
pub mod config;
pub mod events;
pub mod http;
pub mod hub;
pub mod metrics;
pub mod round;
pub mod state;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use credit_ledger::{Ledger, SystemClock};

pub use config::Config;
pub use state::AppState;

/// How often the parent process is checked when `--exit-with-parent` is set.
const PARENT_CHECK: Duration = Duration::from_secs(2);

/// Opens the ledger and serves until SIGTERM or SIGINT (or, with
/// `--exit-with-parent`, until the hub that started us is gone).
pub async fn run(config: Config) -> Result<(), Box<dyn std::error::Error>> {
    let ledger = Ledger::open(&config.database_url, Arc::new(SystemClock)).await?;
    let hub = hub::HubClient::new(config.hub_api_url.clone(), config.api_token.clone());
    let state = AppState::new(config.clone(), ledger, hub);
    if config.plugin_secret.is_none() {
        tracing::warn!(
            "no plugin secret (CREDIT_SERVICE_PLUGIN_SECRET): spawns can't be admitted, plugin endpoints refuse every call"
        );
    }
    let listener = tokio::net::TcpListener::bind(config.service_url)
        .await
        .map_err(|e| {
            format!(
                "can't listen on {} (--service-url / JUPYTERHUB_SERVICE_URL): {e}",
                config.service_url
            )
        })?;
    tracing::info!(address = %config.service_url, prefix = %config.service_prefix, database = %redact(&config.database_url), "credit service listening");

    let (stop_tx, stop_rx) = watch::channel(false);
    let billing = tokio::spawn(round::run(state.clone(), stop_rx.clone()));
    tokio::spawn(shutdown_signal(stop_tx, config.exit_with_parent));
    let mut http_stop = stop_rx.clone();
    axum::serve(listener, http::app(state.clone()))
        .with_graceful_shutdown(async move {
            let _ = http_stop.wait_for(|stop| *stop).await;
        })
        .await?;
    // Open event streams end with the server; the round in flight finishes.
    billing.await?;
    state.ledger.close().await;
    tracing::info!("credit service stopped");
    Ok(())
}

/// Hides a password in a database URL for the log.
fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

async fn shutdown_signal(stop: watch::Sender<bool>, exit_with_parent: bool) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    let parent = std::os::unix::process::parent_id();
    let parent_gone = async move {
        if !exit_with_parent {
            return std::future::pending::<()>().await;
        }
        loop {
            tokio::time::sleep(PARENT_CHECK).await;
            if std::os::unix::process::parent_id() != parent {
                tracing::warn!("the hub that started this service is gone; exiting");
                return;
            }
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: finishing the round in flight"),
        _ = int.recv() => tracing::info!("SIGINT: finishing the round in flight"),
        _ = parent_gone => {}
    }
    let _ = stop.send(true);
}
