//! The billing loop: every round, learn which servers run (a full listing of
//! the hub's ready servers now and then; the plugin's notices in between),
//! charge the periods due, have the hub stop the servers that can't pay, and
//! tell open browser tabs. It runs at its own pace; SIGTERM lets the round in
//! flight finish.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use credit_ledger::{ServerState, StopOrder};

use crate::hub::StopState;
use crate::state::{AppState, Unbilled};

/// First wait before asking the hub again after a failed stop.
const STOP_BACKOFF_MIN: Duration = Duration::from_secs(1);
/// Longest wait between attempts to stop a server.
const STOP_BACKOFF_MAX: Duration = Duration::from_secs(60);
/// How often a pending stop is checked.
const STOP_POLL: Duration = Duration::from_secs(2);
/// Checks of a pending stop before the stop is asked for again.
const STOP_POLLS_MAX: u32 = 30;

/// Runs rounds until `shutdown` turns true.
pub async fn run(state: AppState, mut shutdown: watch::Receiver<bool>) {
    let mut ticker = tokio::time::interval(state.config.round_interval());
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_listing: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.changed() => break,
        }
        // A round is never cut short: shutdown waits for it.
        round(&state, &mut last_listing).await;
        if *shutdown.borrow() {
            break;
        }
    }
    tracing::info!("billing loop stopped");
}

/// One billing round.
pub async fn round(state: &AppState, last_listing: &mut Option<Instant>) {
    let started = Instant::now();
    let listing_due = last_listing
        .is_none_or(|t| t.elapsed() >= Duration::from_secs(state.config.reconcile_interval_secs));
    if listing_due && reconcile(state).await {
        *last_listing = Some(started);
    }
    let report = match state.ledger.bill().await {
        Ok(report) => {
            state.db_ok();
            report
        }
        Err(error) => {
            state.db_failed("billing round", &error);
            return;
        }
    };
    let seconds = started.elapsed().as_secs_f64();
    state.metrics.rounds.inc();
    state.metrics.round_seconds.observe(seconds);
    state.metrics.periods_charged.inc_by(report.periods_charged);
    state
        .metrics
        .credits_charged
        .inc_by(report.credits_charged.max(0) as u64);
    state.metrics.stops.inc_by(report.new_stops.len() as u64);
    for stop in &report.new_stops {
        tracing::info!(user = %stop.user, server = %stop.server_name, reason = %stop.reason, "stopping a server whose credits ran out");
    }
    for order in report.pending_stops.iter().cloned() {
        ensure_stopped(state, order);
    }
    // Tabs whose view changed: charged or stopped users, and everyone whose
    // grants or charges came due.
    let mut users: HashSet<String> = report.new_stops.iter().map(|s| s.user.clone()).collect();
    users.extend(
        state
            .events
            .due(state.ledger.now(), report.periods_charged > 0),
    );
    state.push_views(users).await;
    let summary = serde_json::json!({
        "duration_seconds": seconds,
        "periods_charged": report.periods_charged,
        "credits_charged": report.credits_charged,
        "stopped": report.new_stops.iter().map(|s| serde_json::json!({"user": s.user, "server": s.server_name, "reason": s.reason})).collect::<Vec<_>>(),
    });
    let _ = state.rounds.send(Arc::from(summary.to_string()));
    tracing::info!(
        seconds,
        periods = report.periods_charged,
        stops = report.new_stops.len(),
        "billing round done"
    );
}

/// Brings the ledger in line with the hub's ready servers: marks ready what
/// the plugin's notice missed, ends what is no longer running, and lists
/// servers that run without admission. Returns false when the hub can't be
/// listed.
pub async fn reconcile(state: &AppState) -> bool {
    let listed_at = state.ledger.now();
    let servers = match state.hub.ready_servers().await {
        Ok(servers) => {
            state.hub_ok();
            servers
        }
        Err(error) => {
            state.hub_failed("listing ready servers", &error);
            return false;
        }
    };
    let live = match state.ledger.live_servers().await {
        Ok(live) => live,
        Err(error) => {
            state.db_failed("reconciling", &error);
            return false;
        }
    };
    let by_name: HashMap<(&str, &str), &credit_ledger::ServerView> = live
        .iter()
        .map(|s| ((s.user.as_str(), s.name.as_str()), s))
        .collect();
    let mut unbilled = Vec::new();
    let mut ready = HashSet::new();
    for server in &servers {
        ready.insert((server.user.as_str(), server.name.as_str()));
        match by_name.get(&(server.user.as_str(), server.name.as_str())) {
            Some(known) if known.state == ServerState::Pending => {
                let at = server.started.unwrap_or(listed_at);
                match state.ledger.mark_ready(&known.key, at).await {
                    Ok(Some(order)) => ensure_stopped(state, order),
                    Ok(None) => {}
                    Err(error) => {
                        tracing::warn!(%error, key = %known.key, "could not mark a listed server ready")
                    }
                }
            }
            Some(_) => {}
            None => unbilled.push(Unbilled {
                user: server.user.clone(),
                server: server.name.clone(),
            }),
        }
    }
    for known in &live {
        let running = matches!(known.state, ServerState::Running | ServerState::Stopping);
        // Ready after the listing began: the listing may not show it yet.
        let before_listing = known.ready_at.is_some_and(|t| t < listed_at);
        if running
            && before_listing
            && !ready.contains(&(known.user.as_str(), known.name.as_str()))
            && let Err(error) = state.ledger.mark_stopped(&known.key).await
        {
            tracing::warn!(%error, key = %known.key, "could not record a stopped server");
        }
    }
    if !unbilled.is_empty() {
        tracing::warn!(
            count = unbilled.len(),
            "ready servers that were never admitted are not billed (started before credits were enabled, or without the plugin)"
        );
    }
    state.metrics.unbilled_servers.set(unbilled.len() as i64);
    *state.unbilled.lock().expect("unbilled lock") = unbilled;
    true
}

/// Makes sure a task is asking the hub to stop this server until the hub
/// confirms; then records the stop. One task per server.
pub fn ensure_stopped(state: &AppState, order: StopOrder) {
    if !state
        .stopping
        .lock()
        .expect("stopping lock")
        .insert(order.server_key.clone())
    {
        return;
    }
    let state = state.clone();
    tokio::spawn(async move {
        stop_until_confirmed(&state, &order).await;
        let mut backoff = STOP_BACKOFF_MIN;
        loop {
            match state.ledger.mark_stopped(&order.server_key).await {
                Ok(_) => break,
                Err(error) => {
                    state.db_failed("recording a stop", &error);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(STOP_BACKOFF_MAX);
                }
            }
        }
        state.db_ok();
        state
            .stopping
            .lock()
            .expect("stopping lock")
            .remove(&order.server_key);
        state.push_views([order.user.clone()]).await;
    });
}

async fn stop_until_confirmed(state: &AppState, order: &StopOrder) {
    let mut backoff = STOP_BACKOFF_MIN;
    loop {
        match state.hub.stop_server(&order.user, &order.server_name).await {
            Ok(StopState::Stopped) => {
                state.hub_ok();
                return;
            }
            Ok(StopState::Pending) => {
                state.hub_ok();
                for _ in 0..STOP_POLLS_MAX {
                    tokio::time::sleep(STOP_POLL).await;
                    match state
                        .hub
                        .server_exists(&order.user, &order.server_name)
                        .await
                    {
                        Ok(false) => return,
                        Ok(true) => {}
                        Err(error) => state.hub_failed("checking a stop", &error),
                    }
                }
            }
            Err(error) => {
                state.hub_failed("stopping a server", &error);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(STOP_BACKOFF_MAX);
            }
        }
    }
}
