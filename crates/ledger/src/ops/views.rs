//! Read-only views: a user's credits, projects, listings and journal pages.
//! Grants are applied to now in memory; nothing is written.

use std::collections::HashMap;

use super::{Ledger, pool_view, project_view};
use crate::error::{LedgerError, Result};
use crate::limits::{PAGE_SIZE_MAX, RECENT_STOP_SECS};
use crate::model::{EntryKind, JournalEntry, ProjectView, ServerState, ServerView, UserView};
use crate::store::{PROJECT, PoolRow, ServerRow, Tx, USER, account, state};

fn page_size(limit: i64) -> Result<i64> {
    if (1..=PAGE_SIZE_MAX).contains(&limit) {
        Ok(limit)
    } else {
        Err(LedgerError::invalid(
            "limit",
            format!("{limit} is not a page size; use 1 to {PAGE_SIZE_MAX}"),
        ))
    }
}

fn server_view(s: ServerRow, pools: &HashMap<i64, &PoolRow>) -> ServerView {
    ServerView {
        pool: pools
            .get(&s.pool_id)
            .map(|p| p.name.clone())
            .unwrap_or_default(),
        user: s.user_name,
        name: s.server_name,
        key: s.server_key,
        billing_value: s.billing_value,
        billing_interval: s.billing_interval,
        state: ServerState::parse(&s.state),
        ready_at: s.ready_at,
        next_charge_at: s.next_charge_at,
        periods_charged: s.periods_charged,
        stop_reason: s.stop_reason,
        ended_at: s.ended_at,
    }
}

impl Ledger {
    /// A user's pools (grants applied to now), live servers and recent stops.
    pub async fn user_view(&self, user: &str) -> Result<UserView> {
        let now = self.now();
        let mut tx = self.db.begin_read().await?;
        let view = user_view_in(&mut tx, user, now).await?;
        tx.commit().await?;
        view.ok_or_else(|| LedgerError::UnknownUser(user.to_string()))
    }

    /// A project's pool, grants applied to now.
    pub async fn project_view(&self, name: &str) -> Result<ProjectView> {
        let now = self.now();
        let mut tx = self.db.begin_read().await?;
        let row = tx.project(name, false).await?;
        tx.commit().await?;
        row.map(|r| project_view(&r, now))
            .ok_or_else(|| LedgerError::UnknownProject(name.to_string()))
    }

    /// Users with an active pool in a project, in name order.
    pub async fn project_members(&self, name: &str) -> Result<Vec<String>> {
        let mut tx = self.db.begin_read().await?;
        let row = tx
            .project(name, false)
            .await?
            .ok_or_else(|| LedgerError::UnknownProject(name.to_string()))?;
        let members = tx.project_members(row.id).await?;
        tx.commit().await?;
        Ok(members)
    }

    /// Users in name order after `after`, at most `limit`.
    pub async fn list_users(&self, after: &str, limit: i64) -> Result<Vec<UserView>> {
        let limit = page_size(limit)?;
        let now = self.now();
        let mut tx = self.db.begin_read().await?;
        let names = tx.user_names(after, limit).await?;
        let mut views = Vec::with_capacity(names.len());
        for name in names {
            if let Some(view) = user_view_in(&mut tx, &name, now).await? {
                views.push(view);
            }
        }
        tx.commit().await?;
        Ok(views)
    }

    /// Projects in name order after `after`, at most `limit`.
    pub async fn list_projects(&self, after: &str, limit: i64) -> Result<Vec<ProjectView>> {
        let limit = page_size(limit)?;
        let now = self.now();
        let mut tx = self.db.begin_read().await?;
        let rows = tx.projects(after, limit).await?;
        tx.commit().await?;
        Ok(rows.iter().map(|r| project_view(r, now)).collect())
    }

    /// A page of a user's journal (all their pools), newest first, with
    /// entries older than `before` (an entry id) when given.
    pub async fn user_journal(
        &self,
        user: &str,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<JournalEntry>> {
        self.journal(&account(USER, user), before, limit).await
    }

    /// A page of a project's journal, newest first.
    pub async fn project_journal(
        &self,
        name: &str,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<JournalEntry>> {
        self.journal(&account(PROJECT, name), before, limit).await
    }

    async fn journal(
        &self,
        account: &str,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<JournalEntry>> {
        let limit = page_size(limit)?;
        let mut tx = self.db.begin_read().await?;
        let rows = tx.journal_page(account, before, limit).await?;
        tx.commit().await?;
        Ok(rows
            .into_iter()
            .map(|(r, pool)| JournalEntry {
                id: r.id,
                time: r.time,
                pool,
                delta: r.delta,
                balance_after: r.balance_after,
                kind: EntryKind::parse(&r.kind),
                user: r.user_name,
                server: r.server_name,
                period: r.period,
                actor: r.actor,
                reason: r.reason,
            })
            .collect())
    }

    /// Every server the ledger believes is pending, running or stopping, for
    /// reconciling with the hub.
    pub async fn live_servers(&self) -> Result<Vec<ServerView>> {
        let mut tx = self.db.begin_read().await?;
        let rows = tx.live_servers().await?;
        let mut ids: Vec<i64> = rows.iter().map(|s| s.pool_id).collect();
        ids.sort_unstable();
        ids.dedup();
        let pools = tx.pools_by_id(&ids, false).await?;
        tx.commit().await?;
        let by_id: HashMap<i64, &PoolRow> = pools.iter().map(|p| (p.id, p)).collect();
        Ok(rows.into_iter().map(|s| server_view(s, &by_id)).collect())
    }

    /// A server by its start identity.
    pub async fn server(&self, server_key: &str) -> Result<Option<ServerView>> {
        let mut tx = self.db.begin_read().await?;
        let row = tx.server_by_key(server_key, false).await?;
        let pools = match &row {
            Some(s) => tx.pools_by_id(&[s.pool_id], false).await?,
            None => Vec::new(),
        };
        tx.commit().await?;
        let by_id: HashMap<i64, &PoolRow> = pools.iter().map(|p| (p.id, p)).collect();
        Ok(row.map(|s| server_view(s, &by_id)))
    }

    /// Checks the stored invariants of rule 7 and the pool ranges; returns a
    /// line per violation (none when all hold). For tests and operators.
    pub async fn audit(&self) -> Result<Vec<String>> {
        let mut tx = self.db.begin_read().await?;
        let sums = tx.journal_sums().await?;
        let unpaid_running = tx
            .count("servers s WHERE s.state = 'running' AND EXISTS (SELECT 1 FROM charges c WHERE c.server_key = s.server_key AND c.paid = 0)")
            .await?;
        tx.commit().await?;
        let mut problems: Vec<String> = sums
            .into_iter()
            .filter(|(_, balance, sum)| balance != sum)
            .map(|(id, balance, sum)| {
                format!("pool {id}: balance {balance} but its journal sums to {sum}")
            })
            .collect();
        if unpaid_running > 0 {
            problems.push(format!(
                "{unpaid_running} running servers have an unpaid period"
            ));
        }
        Ok(problems)
    }
}

async fn user_view_in(tx: &mut Tx, user: &str, now: i64) -> Result<Option<UserView>> {
    let rows = tx.user_pools(user, false).await?;
    if rows.is_empty() {
        return Ok(None);
    }
    let mut project_ids: Vec<i64> = rows.iter().filter_map(|p| p.project_id).collect();
    project_ids.sort_unstable();
    project_ids.dedup();
    let projects = tx.pools_by_id(&project_ids, false).await?;
    let servers = tx
        .user_servers(user, now.saturating_sub(RECENT_STOP_SECS * 1000))
        .await?;
    let by_id: HashMap<i64, &PoolRow> = rows
        .iter()
        .chain(projects.iter())
        .map(|p| (p.id, p))
        .collect();
    let pools = rows
        .iter()
        .filter(|p| p.active == 1)
        .map(|p| pool_view(p, p.project_id.and_then(|id| by_id.get(&id).copied()), now))
        .collect();
    let mut live = Vec::new();
    let mut recent_stops = Vec::new();
    for s in servers {
        let live_state = matches!(
            s.state.as_str(),
            state::PENDING | state::RUNNING | state::STOPPING
        );
        let stopped_for_credits = s.state == state::STOPPED && s.stop_reason.is_some();
        let view = server_view(s, &by_id);
        if live_state {
            live.push(view);
        } else if stopped_for_credits {
            recent_stops.push(view);
        }
    }
    Ok(Some(UserView {
        name: user.to_string(),
        pools,
        servers: live,
        recent_stops,
    }))
}
