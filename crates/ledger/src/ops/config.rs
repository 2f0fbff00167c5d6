//! Upserting the operator's config: projects, and each user's pools on login
//! and before each spawn.
//!
//! Config and admin changes meet here. A pool remembers the config values it
//! was last given; a field follows the config only when the config's value
//! for it changes. So an admin's raise of one user's cap holds until the
//! operator changes that user's configured cap, and an unchanged config
//! costs one read and no write on every login.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use super::billing::settle_due_for;
use super::{Ledger, accrue_into, apply_settings};
use crate::error::{LedgerError, Result};
use crate::limits::{OPTIONS_BYTES_MAX, POOLS_PER_USER_MAX};
use crate::model::{PoolConfig, ProjectConfig, ProjectView, UserView};
use crate::rules::{grant::PoolState, pattern::Pattern, validate};
use crate::store::{JournalRow, PROJECT, PoolRow, USER};

/// The config values a pool was last given (`pools.config`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct ConfigSnapshot {
    cap: i64,
    grant_value: i64,
    grant_interval: i64,
    #[serde(default)]
    project: Option<String>,
}

impl ConfigSnapshot {
    fn parse(text: &str) -> Option<Self> {
        serde_json::from_str(text).ok()
    }

    fn to_json(&self) -> String {
        serde_json::to_string(self).expect("snapshot serializes")
    }
}

/// Picks the config value when the config changed it, else keeps `live`.
fn follow<T: PartialEq + Clone>(live: T, last: Option<&T>, configured: &T) -> T {
    match last {
        Some(last) if last == configured => live,
        _ => configured.clone(),
    }
}

fn validate_project(cfg: &ProjectConfig) -> Result<()> {
    validate::name("project name", &cfg.name, false)?;
    validate::credits(&format!("project {:?} cap", cfg.name), cfg.cap)?;
    validate::credits(
        &format!("project {:?} grant_value", cfg.name),
        cfg.grant_value,
    )?;
    validate::interval(
        &format!("project {:?} grant_interval", cfg.name),
        cfg.grant_interval,
    )?;
    Ok(())
}

/// Checks a user's pool list; returns each pool's pattern as stored text.
fn validate_pools(user: &str, pools: &[PoolConfig]) -> Result<Vec<Option<String>>> {
    validate::name("user", user, false)?;
    if pools.is_empty() {
        return Err(LedgerError::invalid(
            "credits_user",
            "a user needs at least one pool",
        ));
    }
    if pools.len() > POOLS_PER_USER_MAX {
        return Err(LedgerError::invalid(
            "credits_user",
            format!(
                "{} pools given; at most {POOLS_PER_USER_MAX} per user",
                pools.len()
            ),
        ));
    }
    let mut seen = HashSet::new();
    let mut patterns = Vec::with_capacity(pools.len());
    for pool in pools {
        let at = |field: &str| format!("pool {:?} {field}", pool.name);
        validate::name("pool name", &pool.name, false)?;
        if !seen.insert(pool.name.as_str()) {
            return Err(LedgerError::invalid(
                "credits_user",
                format!("pool name {:?} is given twice", pool.name),
            ));
        }
        validate::credits(&at("cap"), pool.cap)?;
        validate::credits(&at("grant_value"), pool.grant_value)?;
        validate::interval(&at("grant_interval"), pool.grant_interval)?;
        if let Some(project) = &pool.project {
            validate::name(&at("project"), project, false)?;
        }
        let pattern = match &pool.user_options {
            None | Some(serde_json::Value::Null) => None,
            Some(value) => {
                Pattern::compile(value)
                    .map_err(|e| LedgerError::invalid(at("user_options"), e.0))?;
                let text = value.to_string();
                if text.len() > OPTIONS_BYTES_MAX {
                    return Err(LedgerError::invalid(
                        at("user_options"),
                        format!(
                            "pattern is {} bytes; at most {OPTIONS_BYTES_MAX}",
                            text.len()
                        ),
                    ));
                }
                Some(text)
            }
        };
        patterns.push(pattern);
    }
    Ok(patterns)
}

impl Ledger {
    /// Creates a project's pool (full, rule 1) or applies changed config
    /// values to it (rule 6).
    pub async fn upsert_project(&self, cfg: &ProjectConfig) -> Result<ProjectView> {
        validate_project(cfg)?;
        self.retry(|| self.upsert_project_once(cfg)).await
    }

    async fn upsert_project_once(&self, cfg: &ProjectConfig) -> Result<ProjectView> {
        let now = self.now();
        let snapshot = ConfigSnapshot {
            cap: cfg.cap,
            grant_value: cfg.grant_value,
            grant_interval: cfg.grant_interval,
            project: None,
        };
        let mut tx = self.db.begin_write().await?;
        let mut journal = Vec::new();
        if let Some(found) = tx.project(&cfg.name, false).await? {
            settle_due_for(&mut tx, &[], &[found.id], now).await?;
        }
        let row = match tx.project(&cfg.name, true).await? {
            None => {
                let mut row = PoolRow::opened(
                    PROJECT,
                    &cfg.name,
                    &cfg.name,
                    PoolState::opened(cfg.cap, cfg.grant_value, cfg.grant_interval),
                    snapshot.to_json(),
                    now,
                );
                row.id = tx.insert_pool(&row).await?;
                journal.push(JournalRow::new(&row, now, row.balance, "open"));
                row
            }
            Some(mut row) => {
                let last = ConfigSnapshot::parse(&row.config);
                let cap = follow(row.cap, last.as_ref().map(|l| &l.cap), &cfg.cap);
                let gv = follow(
                    row.grant_value,
                    last.as_ref().map(|l| &l.grant_value),
                    &cfg.grant_value,
                );
                let gi = follow(
                    row.grant_interval,
                    last.as_ref().map(|l| &l.grant_interval),
                    &cfg.grant_interval,
                );
                if (cap, gv, gi) != (row.cap, row.grant_value, row.grant_interval)
                    || last.as_ref() != Some(&snapshot)
                {
                    accrue_into(&mut row, now, &mut journal);
                    apply_settings(&mut row, cap, gv, gi, now, &mut journal);
                    row.config = snapshot.to_json();
                    tx.update_pools(std::slice::from_ref(&row)).await?;
                }
                row
            }
        };
        tx.insert_journal(&journal).await?;
        tx.commit().await?;
        Ok(super::project_view(&row, now))
    }

    /// Creates or updates a user's pools from the config (rules 1, 6, 9):
    /// new pools open full; changed config values apply at once; pools no
    /// longer configured are kept (with their journal) but no longer match.
    pub async fn upsert_user(&self, user: &str, pools: &[PoolConfig]) -> Result<UserView> {
        let patterns = validate_pools(user, pools)?;
        self.retry(|| self.upsert_user_once(user, pools, &patterns))
            .await?;
        self.user_view(user).await
    }

    async fn upsert_user_once(
        &self,
        user: &str,
        pools: &[PoolConfig],
        patterns: &[Option<String>],
    ) -> Result<()> {
        let now = self.now();
        let mut tx = self.db.begin_write().await?;
        // Resolve project names first: an unknown one fails before any write.
        let mut project_ids = Vec::with_capacity(pools.len());
        for pool in pools {
            project_ids.push(match &pool.project {
                None => None,
                Some(name) => Some(
                    tx.project(name, false)
                        .await?
                        .ok_or_else(|| LedgerError::UnknownProject(name.clone()))?
                        .id,
                ),
            });
        }
        let peek = tx.user_pools(user, false).await?;
        let pool_ids: Vec<i64> = peek.iter().map(|p| p.id).collect();
        let projects: Vec<i64> = peek
            .iter()
            .filter_map(|p| p.project_id)
            .chain(project_ids.iter().flatten().copied())
            .collect();
        settle_due_for(&mut tx, &pool_ids, &projects, now).await?;
        let existing = tx.user_pools(user, true).await?;
        let mut journal = Vec::new();
        let mut updates = Vec::new();
        for (position, (cfg, (pattern, project_id))) in pools
            .iter()
            .zip(patterns.iter().zip(&project_ids))
            .enumerate()
        {
            let snapshot = ConfigSnapshot {
                cap: cfg.cap,
                grant_value: cfg.grant_value,
                grant_interval: cfg.grant_interval,
                project: cfg.project.clone(),
            };
            let position = position as i64;
            match existing.iter().find(|p| p.name == cfg.name) {
                None => {
                    let mut row = PoolRow::opened(
                        USER,
                        user,
                        &cfg.name,
                        PoolState::opened(cfg.cap, cfg.grant_value, cfg.grant_interval),
                        snapshot.to_json(),
                        now,
                    );
                    row.position = position;
                    row.project_id = *project_id;
                    row.pattern = pattern.clone();
                    row.id = tx.insert_pool(&row).await?;
                    journal.push(JournalRow::new(&row, now, row.balance, "open"));
                }
                Some(row) => {
                    let mut row = row.clone();
                    let last = ConfigSnapshot::parse(&row.config);
                    let last = last.as_ref();
                    let cap = follow(row.cap, last.map(|l| &l.cap), &cfg.cap);
                    let gv = follow(
                        row.grant_value,
                        last.map(|l| &l.grant_value),
                        &cfg.grant_value,
                    );
                    let gi = follow(
                        row.grant_interval,
                        last.map(|l| &l.grant_interval),
                        &cfg.grant_interval,
                    );
                    let project = match last {
                        Some(l) if l.project == cfg.project => row.project_id,
                        _ => *project_id,
                    };
                    let before = row.clone();
                    if (cap, gv, gi) != (row.cap, row.grant_value, row.grant_interval) {
                        accrue_into(&mut row, now, &mut journal);
                        apply_settings(&mut row, cap, gv, gi, now, &mut journal);
                    }
                    row.project_id = project;
                    row.pattern = pattern.clone();
                    row.position = position;
                    row.active = 1;
                    row.config = snapshot.to_json();
                    if row != before {
                        updates.push(row);
                    }
                }
            }
        }
        for row in &existing {
            if row.active == 1 && !pools.iter().any(|p| p.name == row.name) {
                let mut row = row.clone();
                row.active = 0;
                updates.push(row);
            }
        }
        tx.update_pools(&updates).await?;
        tx.insert_journal(&journal).await?;
        tx.commit().await
    }
}

#[cfg(test)]
mod tests {
    use super::follow;

    #[test]
    fn config_wins_only_when_it_changes() {
        assert_eq!(follow(500, Some(&100), &100), 500);
        assert_eq!(follow(500, Some(&100), &200), 200);
        assert_eq!(follow(500, None, &100), 100);
    }
}
