//! Billing (rules 3, 4 and 7): the first period when a server becomes ready,
//! every due period each round, and the end of a server.

use std::collections::{BTreeSet, HashMap};

use super::{Ledger, holdings, next_grant_sentence, server_label};
use crate::clock::{Millis, iso8601};
use crate::error::{LedgerError, Result};
use crate::limits::BILLING_BATCH_MAX;
use crate::model::{BillingReport, StopOrder};
use crate::rules::billing::{DueServer, MovementKind, PoolEntry, Shortfall, settle};
use crate::store::{ChargeRow, JournalRow, PoolRow, ServerRow, Tx, state};

/// What settling a set of servers did.
#[derive(Debug, Default)]
struct Settled {
    periods_charged: u64,
    credits_charged: i64,
    stops: Vec<StopOrder>,
}

impl Ledger {
    /// Records that a server became ready at `ready_at` (clamped to the time
    /// of its admission and now) and charges its first period, plus any
    /// further periods already due. Returns a stop order when it can't pay.
    /// Idempotent: a server already running is left as it is.
    pub async fn mark_ready(
        &self,
        server_key: &str,
        ready_at: Millis,
    ) -> Result<Option<StopOrder>> {
        self.retry(|| self.mark_ready_once(server_key, ready_at))
            .await
    }

    async fn mark_ready_once(
        &self,
        server_key: &str,
        ready_at: Millis,
    ) -> Result<Option<StopOrder>> {
        let now = self.now();
        let mut tx = self.db.begin_write().await?;
        let mut server = tx
            .server_by_key(server_key, true)
            .await?
            .ok_or_else(|| LedgerError::UnknownServer(server_key.to_string()))?;
        if server.state != state::PENDING && server.state != state::RELEASED {
            return Ok(None);
        }
        // A late ready of a start that a newer start of the same server
        // replaced: the newer one is the server that runs.
        if server.state == state::RELEASED
            && tx
                .live_servers_named(&server.user_name, &server.server_name)
                .await?
                .iter()
                .any(|s| s.server_key != server.server_key)
        {
            return Ok(None);
        }
        let ready_at = ready_at.clamp(server.admitted_at.min(now), now);
        server.state = state::RUNNING.into();
        server.ready_at = Some(ready_at);
        server.ended_at = None;
        server.periods_charged = 0;
        server.next_charge_at = (server.billing_value > 0).then_some(ready_at);
        tx.update_servers(&[server.update()]).await?;
        let project_id = tx
            .pools_by_id(&[server.pool_id], false)
            .await?
            .pop()
            .and_then(|p| p.project_id);
        // The new server's first period and every period due on its pools,
        // in time order.
        let due = tx
            .due_servers_sharing(
                &[server.pool_id],
                &project_id.into_iter().collect::<Vec<_>>(),
                now,
            )
            .await?;
        let settled = settle_servers(&mut tx, due, now).await?;
        tx.commit().await?;
        Ok(settled
            .stops
            .into_iter()
            .find(|s| s.server_key == server_key))
    }

    /// Ends a server: stopped after running (its periods that started by now
    /// are charged first), or a failed or cancelled spawn whose promise is
    /// released. Unknown or already ended servers are left
    /// alone (the hub may report a stop twice).
    pub async fn mark_stopped(&self, server_key: &str) -> Result<bool> {
        self.retry(|| self.mark_stopped_once(server_key)).await
    }

    async fn mark_stopped_once(&self, server_key: &str) -> Result<bool> {
        let now = self.now();
        let mut tx = self.db.begin_write().await?;
        let Some(mut server) = tx.server_by_key(server_key, true).await? else {
            return Ok(false);
        };
        if server.state == state::RUNNING {
            // Periods that started while it ran are owed (rule 3): settle
            // them before it ends, or a stop between two billing rounds
            // would make them free.
            let project_id = tx
                .pools_by_id(&[server.pool_id], false)
                .await?
                .pop()
                .and_then(|p| p.project_id);
            settle_due_for(
                &mut tx,
                &[server.pool_id],
                &project_id.into_iter().collect::<Vec<_>>(),
                now,
            )
            .await?;
            server = tx
                .server_by_key(server_key, true)
                .await?
                .ok_or_else(|| LedgerError::Busy("the server was removed meanwhile".into()))?;
        }
        server.state = match server.state.as_str() {
            state::PENDING => state::RELEASED.into(),
            state::RUNNING | state::STOPPING => state::STOPPED.into(),
            _ => return Ok(false),
        };
        server.ended_at = Some(now);
        server.next_charge_at = None;
        tx.update_servers(&[server.update()]).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// One billing round: releases expired promises, charges every period
    /// due now, and lists the servers the hub must stop. Work is proportional
    /// to the servers with a period due, never to all users.
    pub async fn bill(&self) -> Result<BillingReport> {
        let now = self.now();
        let mut report = BillingReport::default();
        loop {
            let (settled, expired, full) = self.retry(|| self.bill_batch(now)).await?;
            report.promises_expired += expired;
            report.periods_charged += settled.periods_charged;
            report.credits_charged = report
                .credits_charged
                .saturating_add(settled.credits_charged);
            report.new_stops.extend(settled.stops);
            if !full {
                break;
            }
        }
        report.pending_stops = self.pending_stops().await?;
        Ok(report)
    }

    async fn bill_batch(&self, now: Millis) -> Result<(Settled, u64, bool)> {
        let mut tx = self.db.begin_write().await?;
        let expired = tx.expire_promises(now).await?;
        let due = tx.due_servers(now, BILLING_BATCH_MAX).await?;
        let full = due.len() as i64 == BILLING_BATCH_MAX;
        let settled = settle_servers(&mut tx, due, now).await?;
        tx.commit().await?;
        Ok((settled, expired, full))
    }

    /// Servers waiting for the hub to stop them, with their reasons.
    pub async fn pending_stops(&self) -> Result<Vec<StopOrder>> {
        let mut tx = self.db.begin_read().await?;
        let rows = tx.servers_in_state(state::STOPPING).await?;
        Ok(rows
            .into_iter()
            .map(|s| StopOrder {
                user: s.user_name,
                server_name: s.server_name,
                server_key: s.server_key,
                reason: s.stop_reason.unwrap_or_default(),
            })
            .collect())
    }
}

/// Settles every period due by `now` on servers drawing on these pools, so
/// that a change to the pools lands after them, in time order.
pub(super) async fn settle_due_for(
    tx: &mut Tx,
    pool_ids: &[i64],
    project_ids: &[i64],
    now: Millis,
) -> Result<()> {
    let due = tx.due_servers_sharing(pool_ids, project_ids, now).await?;
    settle_servers(tx, due, now).await?;
    Ok(())
}

/// Loads and locks the pools of `servers`, settles their due periods with
/// [`settle`], and writes the result.
async fn settle_servers(tx: &mut Tx, mut servers: Vec<ServerRow>, now: Millis) -> Result<Settled> {
    if servers.is_empty() {
        return Ok(Settled::default());
    }
    // Periods starting at the same moment are charged in server id order.
    servers.sort_by_key(|s| s.id);
    let user_ids: Vec<i64> = servers
        .iter()
        .map(|s| s.pool_id)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    // Learn the projects, lock them, then lock the user pools: the lock
    // order of every writer.
    let peek = tx.pools_by_id(&user_ids, false).await?;
    let project_ids: Vec<i64> = peek
        .iter()
        .filter_map(|p| p.project_id)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let projects = tx.pools_by_id(&project_ids, true).await?;
    let users = tx.pools_by_id(&user_ids, true).await?;
    if users
        .iter()
        .map(|p| p.project_id)
        .ne(peek.iter().map(|p| p.project_id))
    {
        return Err(LedgerError::Busy(
            "a pool changed project during billing".into(),
        ));
    }

    let mut rows: HashMap<i64, PoolRow> = HashMap::new();
    let mut entries: HashMap<i64, PoolEntry> = HashMap::new();
    for row in users.into_iter().chain(projects) {
        debug_assert!(
            row.state().is_consistent(),
            "stored pool {} inconsistent",
            row.id
        );
        entries.insert(
            row.id,
            PoolEntry {
                state: row.state(),
                project_id: row.project_id,
                touched: false,
            },
        );
        rows.insert(row.id, row);
    }
    let due: Vec<DueServer> = servers
        .iter()
        .map(|s| DueServer {
            pool_id: s.pool_id,
            billing_value: s.billing_value,
            billing_interval_secs: s.billing_interval,
            ready_at_ms: s.ready_at.unwrap_or(s.admitted_at),
            periods_charged: s.periods_charged,
        })
        .collect();
    let settlement = settle(&mut entries, &due, now);

    let mut journal = Vec::with_capacity(settlement.movements.len());
    for m in &settlement.movements {
        let row = &rows[&m.pool_id];
        let mut entry = JournalRow::new(
            row,
            m.at,
            m.delta,
            match m.kind {
                MovementKind::Grant => "grant",
                MovementKind::Charge => "charge",
            },
        );
        entry.balance_after = m.balance_after;
        if let Some((index, period)) = m.charge_of {
            let server = &servers[index];
            entry.user_name = Some(server.user_name.clone());
            entry.server_name = Some(server.server_name.clone());
            entry.server_key = Some(server.server_key.clone());
            entry.period = Some(period);
        }
        journal.push(entry);
    }
    let charges: Vec<ChargeRow> = settlement
        .periods
        .iter()
        .map(|p| ChargeRow {
            server_key: servers[p.server].server_key.clone(),
            period: p.period,
            charged_at: p.at,
            amount: p.amount,
            from_project: p.from_project,
            paid: i64::from(p.paid),
        })
        .collect();
    let mut settled = Settled::default();
    for p in settlement.periods.iter().filter(|p| p.paid) {
        settled.periods_charged += 1;
        settled.credits_charged = settled.credits_charged.saturating_add(p.amount);
    }
    let mut server_updates = Vec::with_capacity(servers.len());
    for (server, outcome) in servers.iter().zip(&settlement.servers) {
        let mut update = server.update();
        update.periods_charged = outcome.periods_charged;
        update.next_charge_at = outcome.next_charge_at;
        if let Some(short) = &outcome.stop {
            let pool = &rows[&server.pool_id];
            let project = pool.project_id.and_then(|id| rows.get(&id));
            let reason = stop_reason(server, pool, project, short);
            update.state = state::STOPPING.into();
            update.stop_reason = Some(reason.clone());
            settled.stops.push(StopOrder {
                user: server.user_name.clone(),
                server_name: server.server_name.clone(),
                server_key: server.server_key.clone(),
                reason,
            });
        }
        if update != server.update() {
            server_updates.push(update);
        }
    }
    let mut pool_updates = Vec::new();
    for (id, entry) in &entries {
        if entry.touched {
            debug_assert!(entry.state.is_consistent());
            let mut row = rows[id].clone();
            row.set_state(entry.state);
            pool_updates.push(row);
        }
    }
    pool_updates.sort_by_key(|r| r.id);

    tx.insert_charges(&charges).await?;
    tx.update_pools(&pool_updates).await?;
    tx.insert_journal(&journal).await?;
    tx.update_servers(&server_updates).await?;
    Ok(settled)
}

fn stop_reason(
    server: &ServerRow,
    pool: &PoolRow,
    project: Option<&PoolRow>,
    short: &Shortfall,
) -> String {
    let mut label = server_label(&server.server_name);
    if let Some(first) = label.get_mut(0..1) {
        first.make_ascii_uppercase();
    }
    let have = holdings(
        &pool.name,
        short.user_balance,
        pool.cap,
        project.map(|p| (p.owner.as_str(), short.project_balance.unwrap_or(0), p.cap)),
    );
    format!(
        "{label} was stopped at {} because its credits ran out: it needs {} credits every {} seconds, and {have}.{}",
        iso8601(short.at),
        short.required,
        server.billing_interval,
        next_grant_sentence(short.next_grant_at)
    )
}
