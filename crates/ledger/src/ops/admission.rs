//! Admitting spawns (rules 5 and 9): choose the pool, check that project and
//! user can pay the first period beyond what is already promised, and record
//! the promise.

use super::billing::settle_due_for;
use super::{Ledger, holdings, next_grant_sentence, pool_view};
use crate::error::{LedgerError, Result};
use crate::limits::{OPTIONS_BYTES_MAX, VALUE_MAX};
use crate::model::{Admission, Refusal, SpawnRequest};
use crate::rules::admission::{self, Means, earliest};
use crate::rules::validate;
use crate::store::{PoolRow, ServerRow, state};

fn validate_request(req: &SpawnRequest) -> Result<String> {
    validate::name("user", &req.user, false)?;
    validate::name("server_name", &req.server_name, true)?;
    validate::name("server_key", &req.server_key, false)?;
    validate::credits("billing_value", req.billing_value)?;
    validate::interval("billing_interval", req.billing_interval)?;
    if !(0..=VALUE_MAX).contains(&req.promise_secs) {
        return Err(LedgerError::invalid(
            "promise_secs",
            format!(
                "{} is not a number of seconds from 0 to {VALUE_MAX}",
                req.promise_secs
            ),
        ));
    }
    let options = req.user_options.to_string();
    if options.len() > OPTIONS_BYTES_MAX {
        return Err(LedgerError::invalid(
            "user_options",
            format!(
                "{} bytes of options; at most {OPTIONS_BYTES_MAX}",
                options.len()
            ),
        ));
    }
    Ok(options)
}

impl Ledger {
    /// Decides whether a spawn may start and, if so, promises its first
    /// period. Asking again with the same `server_key` returns the first
    /// answer for an admitted spawn.
    pub async fn admit(&self, req: &SpawnRequest) -> Result<Admission> {
        let options = validate_request(req)?;
        self.retry(|| self.admit_once(req, &options)).await
    }

    async fn admit_once(&self, req: &SpawnRequest, options: &str) -> Result<Admission> {
        let now = self.now();
        let mut tx = self.db.begin_write().await?;
        let pools = tx.user_pools(&req.user, false).await?;
        if let Some(existing) = tx.server_by_key(&req.server_key, false).await? {
            if existing.user_name != req.user || existing.server_name != req.server_name {
                return Err(LedgerError::invalid(
                    "server_key",
                    format!("{:?} was already used for another server", req.server_key),
                ));
            }
            let pool = pools.iter().find(|p| p.id == existing.pool_id);
            return Ok(Admission::Admitted {
                pool: pool.map(|p| p.name.clone()).unwrap_or_default(),
            });
        }
        let active: Vec<&PoolRow> = pools.iter().filter(|p| p.active == 1).collect();
        if active.is_empty() {
            return Err(LedgerError::UnknownUser(req.user.clone()));
        }
        let Some(chosen) = self.match_pool(&active, &req.user_options)? else {
            let names: Vec<String> = active.iter().map(|p| format!("{:?}", p.name)).collect();
            return Ok(Admission::Refused(Box::new(Refusal {
                message: format!(
                    "None of your credit pools ({}) allows these options: {}. Choose other options or ask an administrator.",
                    names.join(", "),
                    req.user_options
                ),
                required: req.billing_value,
                billing_interval: req.billing_interval,
                pool: None,
                promised: 0,
                next_grant_at: None,
            })));
        };

        // Settle what is due on this pool and on the pools of the start this
        // one replaces (it ends below), so nothing owed is skipped.
        let replaced = tx.live_servers_named(&req.user, &req.server_name).await?;
        let mut pool_ids: Vec<i64> = replaced.iter().map(|s| s.pool_id).collect();
        pool_ids.push(chosen.id);
        pool_ids.sort_unstable();
        pool_ids.dedup();
        let mut projects: Vec<i64> = tx
            .pools_by_id(&pool_ids, false)
            .await?
            .iter()
            .filter_map(|p| p.project_id)
            .collect();
        projects.sort_unstable();
        projects.dedup();
        settle_due_for(&mut tx, &pool_ids, &projects, now).await?;
        // Lock project, then user pool (the order every writer uses), and
        // read both again under the lock.
        let project = match chosen.project_id {
            Some(id) => tx.pools_by_id(&[id], true).await?.pop(),
            None => None,
        };
        let pool = tx
            .pools_by_id(&[chosen.id], true)
            .await?
            .pop()
            .ok_or_else(|| LedgerError::Busy("the pool was removed meanwhile".into()))?;
        if pool.project_id != chosen.project_id {
            return Err(LedgerError::Busy(
                "the pool changed project meanwhile".into(),
            ));
        }
        let view = pool_view(&pool, project.as_ref(), now);
        let promised = tx
            .promised(pool.id, pool.project_id, now, (&req.user, &req.server_name))
            .await?;
        let means = Means {
            user_balance: view.balance,
            project_balance: view.project.as_ref().map(|p| p.balance),
            promised,
        };
        if let Err(short) = admission::check(req.billing_value, means) {
            let next_grant_at = earliest(
                view.next_grant_at,
                view.project.as_ref().and_then(|p| p.next_grant_at),
            );
            let have = holdings(
                &view.name,
                view.balance,
                view.cap,
                view.project
                    .as_ref()
                    .map(|p| (p.name.as_str(), p.balance, p.cap)),
            );
            let promised_text = if short.promised > 0 {
                format!(
                    ", of which {} are promised to servers still starting",
                    short.promised
                )
            } else {
                String::new()
            };
            return Ok(Admission::Refused(Box::new(Refusal {
                message: format!(
                    "Not enough credits to start this server: it needs {} credits every {} seconds, and {have}{promised_text}.{}",
                    req.billing_value,
                    req.billing_interval,
                    next_grant_sentence(next_grant_at)
                ),
                required: req.billing_value,
                billing_interval: req.billing_interval,
                pool: Some(view),
                promised: short.promised,
                next_grant_at,
            })));
        }

        tx.end_live_servers_named(&req.user, &req.server_name, now)
            .await?;
        tx.insert_server(&ServerRow {
            id: 0,
            server_key: req.server_key.clone(),
            user_name: req.user.clone(),
            server_name: req.server_name.clone(),
            pool_id: pool.id,
            project_id: pool.project_id,
            billing_value: req.billing_value,
            billing_interval: req.billing_interval,
            state: state::PENDING.into(),
            admitted_at: now,
            promise_expires_at: now.saturating_add(req.promise_secs.saturating_mul(1000)),
            ready_at: None,
            periods_charged: 0,
            next_charge_at: None,
            stop_reason: None,
            ended_at: None,
            user_options: options.to_string(),
        })
        .await?;
        tx.commit().await?;
        Ok(Admission::Admitted { pool: pool.name })
    }

    /// Rule 9: the first pool whose pattern matches, else the first pool
    /// without a pattern.
    fn match_pool<'a>(
        &self,
        pools: &[&'a PoolRow],
        options: &serde_json::Value,
    ) -> Result<Option<&'a PoolRow>> {
        for pool in pools {
            if let Some(text) = &pool.pattern
                && self.pattern(text)?.matches(options)
            {
                return Ok(Some(pool));
            }
        }
        Ok(pools.iter().find(|p| p.pattern.is_none()).copied())
    }
}
