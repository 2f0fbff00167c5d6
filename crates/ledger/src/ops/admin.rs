//! Admin adjustments of a user's pool or a project (rule 6 and 7): balance,
//! cap, grant, project; validated all-or-nothing and journaled with actor and
//! reason.

use super::billing::settle_due_for;
use super::{Ledger, accrue_into, pool_view, project_view};
use crate::error::{LedgerError, Result};
use crate::model::{Actor, PoolPatch, PoolView, ProjectPatch, ProjectView};
use crate::rules::validate;
use crate::store::{JournalRow, PoolRow};

/// The fields both kinds of patch share.
struct Settings {
    balance: Option<i64>,
    cap: Option<i64>,
    grant_value: Option<i64>,
    grant_interval: Option<i64>,
}

impl Settings {
    fn validate(&self) -> Result<()> {
        if let Some(v) = self.balance {
            validate::credits("balance", v)?;
        }
        if let Some(v) = self.cap {
            validate::credits("cap", v)?;
        }
        if let Some(v) = self.grant_value {
            validate::credits("grant_value", v)?;
        }
        if let Some(v) = self.grant_interval {
            validate::interval("grant_interval", v)?;
        }
        if let (Some(balance), Some(cap)) = (self.balance, self.cap)
            && balance > cap
        {
            return Err(LedgerError::AboveCap { balance, cap });
        }
        Ok(())
    }

    fn is_empty(&self) -> bool {
        self.balance.is_none()
            && self.cap.is_none()
            && self.grant_value.is_none()
            && self.grant_interval.is_none()
    }

    /// Applies the settings to `pool` at `now`; journals grants due so far,
    /// a clamp if a lowered cap cut the balance, and one `adjust` entry
    /// carrying the actor and reason.
    fn apply(
        &self,
        pool: &mut PoolRow,
        actor: &Actor,
        now: i64,
        journal: &mut Vec<JournalRow>,
    ) -> Result<()> {
        accrue_into(pool, now, journal);
        let mut state = pool.state();
        let cap = self.cap.unwrap_or(state.cap);
        if let Some(balance) = self.balance
            && balance > cap
        {
            return Err(LedgerError::AboveCap { balance, cap });
        }
        state.grant_value = self.grant_value.unwrap_or(state.grant_value);
        state.grant_interval_secs = self.grant_interval.unwrap_or(state.grant_interval_secs);
        let before = state.balance;
        let delta = match self.balance {
            Some(balance) => {
                // Cap first (no clamp entry: the new balance replaces it).
                state.cap = cap.max(state.balance);
                state.set_balance(balance, now);
                state.set_cap(cap, now);
                balance - before
            }
            None => {
                let clamped = state.set_cap(cap, now);
                if clamped > 0 {
                    pool.set_state(state);
                    journal.push(JournalRow::new(pool, now, -clamped, "clamp"));
                }
                0
            }
        };
        pool.set_state(state);
        let mut entry = JournalRow::new(pool, now, delta, "adjust");
        entry.actor = Some(actor.name.clone());
        entry.reason = actor.reason.clone();
        journal.push(entry);
        Ok(())
    }
}

impl From<&PoolPatch> for Settings {
    fn from(p: &PoolPatch) -> Self {
        Self {
            balance: p.balance,
            cap: p.cap,
            grant_value: p.grant_value,
            grant_interval: p.grant_interval,
        }
    }
}

impl From<&ProjectPatch> for Settings {
    fn from(p: &ProjectPatch) -> Self {
        Self {
            balance: p.balance,
            cap: p.cap,
            grant_value: p.grant_value,
            grant_interval: p.grant_interval,
        }
    }
}

fn validate_actor(actor: &Actor) -> Result<()> {
    validate::name("actor", &actor.name, false)?;
    if let Some(reason) = &actor.reason {
        validate::text("reason", reason)?;
    }
    Ok(())
}

impl Ledger {
    /// Changes one of a user's pools. Nothing changes unless every field is
    /// valid; the result is the pool as it now stands.
    pub async fn adjust_user_pool(
        &self,
        user: &str,
        pool: &str,
        patch: &PoolPatch,
        actor: &Actor,
    ) -> Result<PoolView> {
        let settings = Settings::from(patch);
        settings.validate()?;
        validate_actor(actor)?;
        if let Some(Some(project)) = &patch.project {
            validate::name("project", project, false)?;
        }
        if settings.is_empty() && patch.project.is_none() {
            return Err(LedgerError::invalid(
                "body",
                "nothing to change: give balance, cap, grant_value, grant_interval or project",
            ));
        }
        self.retry(|| self.adjust_user_pool_once(user, pool, &settings, patch, actor))
            .await
    }

    async fn adjust_user_pool_once(
        &self,
        user: &str,
        pool_name: &str,
        settings: &Settings,
        patch: &PoolPatch,
        actor: &Actor,
    ) -> Result<PoolView> {
        let now = self.now();
        let mut tx = self.db.begin_write().await?;
        let pools = tx.user_pools(user, false).await?;
        if pools.is_empty() {
            return Err(LedgerError::UnknownUser(user.to_string()));
        }
        let found =
            pools
                .iter()
                .find(|p| p.name == pool_name)
                .ok_or_else(|| LedgerError::UnknownPool {
                    user: user.to_string(),
                    pool: pool_name.to_string(),
                })?;
        let project_id = match &patch.project {
            None => found.project_id,
            Some(None) => None,
            Some(Some(name)) => Some(
                tx.project(name, false)
                    .await?
                    .ok_or_else(|| LedgerError::UnknownProject(name.clone()))?
                    .id,
            ),
        };
        let projects: Vec<i64> = found.project_id.into_iter().chain(project_id).collect();
        settle_due_for(&mut tx, &[found.id], &projects, now).await?;
        let mut row = tx
            .pools_by_id(&[found.id], true)
            .await?
            .pop()
            .ok_or_else(|| LedgerError::Busy("the pool was removed meanwhile".into()))?;
        let mut journal = Vec::new();
        settings.apply(&mut row, actor, now, &mut journal)?;
        row.project_id = project_id;
        tx.update_pools(std::slice::from_ref(&row)).await?;
        tx.insert_journal(&journal).await?;
        let project = match row.project_id {
            Some(id) => tx.pools_by_id(&[id], false).await?.pop(),
            None => None,
        };
        tx.commit().await?;
        Ok(pool_view(&row, project.as_ref(), now))
    }

    /// Changes a project's pool. Nothing changes unless every field is valid.
    pub async fn adjust_project(
        &self,
        name: &str,
        patch: &ProjectPatch,
        actor: &Actor,
    ) -> Result<ProjectView> {
        let settings = Settings::from(patch);
        settings.validate()?;
        validate_actor(actor)?;
        if settings.is_empty() {
            return Err(LedgerError::invalid(
                "body",
                "nothing to change: give balance, cap, grant_value or grant_interval",
            ));
        }
        self.retry(|| self.adjust_project_once(name, &settings, actor))
            .await
    }

    async fn adjust_project_once(
        &self,
        name: &str,
        settings: &Settings,
        actor: &Actor,
    ) -> Result<ProjectView> {
        let now = self.now();
        let mut tx = self.db.begin_write().await?;
        let found = tx
            .project(name, false)
            .await?
            .ok_or_else(|| LedgerError::UnknownProject(name.to_string()))?;
        settle_due_for(&mut tx, &[], &[found.id], now).await?;
        let mut row = tx
            .project(name, true)
            .await?
            .ok_or_else(|| LedgerError::Busy("the project was removed meanwhile".into()))?;
        let mut journal = Vec::new();
        settings.apply(&mut row, actor, now, &mut journal)?;
        tx.update_pools(std::slice::from_ref(&row)).await?;
        tx.insert_journal(&journal).await?;
        tx.commit().await?;
        Ok(project_view(&row, now))
    }
}
