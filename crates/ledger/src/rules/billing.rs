//! Rules 3 and 4: charging running servers period by period.
//!
//! [`settle`] takes the pools and the servers that have periods due and walks
//! every due period of every server in time order (so that after downtime the
//! grants and charges of a shared pool interleave exactly as they would have),
//! taking each charge from the project first and the user second. A period
//! that project and user together can't pay is not charged and stops the
//! server. The result is a list of writes for the store; nothing here does IO.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use crate::clock::{Millis, secs_to_ms};
use crate::rules::grant::PoolState;

/// Identifies a pool row.
pub type PoolId = i64;

/// What billing needs to know about one server with periods due.
#[derive(Debug, Clone)]
pub struct DueServer {
    /// The user pool it is charged to.
    pub pool_id: PoolId,
    /// Credits per period; 0 means the server is never charged.
    pub billing_value: i64,
    /// Period length in seconds, at least 1.
    pub billing_interval_secs: i64,
    /// When the server became ready: the start of period 0.
    pub ready_at_ms: Millis,
    /// Periods already settled; the next one to charge has this index.
    pub periods_charged: i64,
}

impl DueServer {
    /// The start of period `period`, saturating to "never".
    pub fn period_start(&self, period: i64) -> Millis {
        self.ready_at_ms
            .saturating_add(period.saturating_mul(secs_to_ms(self.billing_interval_secs)))
    }
}

/// A pool in the settlement: its state and, for a user pool, its project.
#[derive(Debug, Clone)]
pub struct PoolEntry {
    /// The stored state, updated in place by [`settle`].
    pub state: PoolState,
    /// The project pool that pays first, for a user pool.
    pub project_id: Option<PoolId>,
    /// True when [`settle`] changed this pool and it must be written.
    pub touched: bool,
}

/// The kind of a journal entry made by billing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MovementKind {
    /// Grants applied up to the charge's time.
    Grant,
    /// A period's charge.
    Charge,
}

/// One balance change produced by billing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Movement {
    /// The pool changed.
    pub pool_id: PoolId,
    /// When it happened (a grant's or a period's start).
    pub at: Millis,
    /// Credits added (grant) or removed (charge, negative).
    pub delta: i64,
    /// The pool's balance after this change.
    pub balance_after: i64,
    /// Grant or charge.
    pub kind: MovementKind,
    /// For a charge: index into the servers given to [`settle`], and period.
    pub charge_of: Option<(usize, i64)>,
}

/// A settled period of a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeriodRecord {
    /// Index into the servers given to [`settle`].
    pub server: usize,
    /// Period index.
    pub period: i64,
    /// Period start.
    pub at: Millis,
    /// Credits taken (0 when unpaid).
    pub amount: i64,
    /// Of which from the project pool.
    pub from_project: i64,
    /// False for the period that could not be paid.
    pub paid: bool,
}

/// Why a server must stop: the figures at the unpaid period's start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shortfall {
    /// The unpaid period's start.
    pub at: Millis,
    /// The period index.
    pub period: i64,
    /// Credits the period needed.
    pub required: i64,
    /// The user pool's balance then.
    pub user_balance: i64,
    /// The project pool's balance then, if any.
    pub project_balance: Option<i64>,
    /// The earliest next grant of either pool.
    pub next_grant_at: Option<Millis>,
}

/// Where a server stands after settlement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerOutcome {
    /// Periods settled (paid), so the next period's index.
    pub periods_charged: i64,
    /// Start of the next period to charge; `None` when it will never be
    /// charged (stopped, or free).
    pub next_charge_at: Option<Millis>,
    /// Set when the server must be stopped.
    pub stop: Option<Shortfall>,
}

/// Everything [`settle`] decided.
#[derive(Debug, Default)]
pub struct Settlement {
    /// Balance changes, in the order they happened.
    pub movements: Vec<Movement>,
    /// Settled periods, paid or not.
    pub periods: Vec<PeriodRecord>,
    /// One outcome per server given, same order.
    pub servers: Vec<ServerOutcome>,
}

/// Settles every period of `servers` that starts at or before `now`.
///
/// Every pool named by a server (and its project) must be in `pools`;
/// a missing one is a caller bug and panics in debug builds, and the server
/// is left unbilled in release builds.
pub fn settle(
    pools: &mut HashMap<PoolId, PoolEntry>,
    servers: &[DueServer],
    now: Millis,
) -> Settlement {
    let mut out = Settlement {
        servers: servers
            .iter()
            .map(|s| ServerOutcome {
                periods_charged: s.periods_charged,
                next_charge_at: (s.billing_value > 0).then(|| s.period_start(s.periods_charged)),
                stop: None,
            })
            .collect(),
        ..Settlement::default()
    };
    // Earliest period first; ties by server order, so runs are reproducible.
    let mut queue: BinaryHeap<Reverse<(Millis, usize)>> = servers
        .iter()
        .enumerate()
        .filter(|(_, s)| s.billing_value > 0)
        .map(|(i, s)| (s.period_start(s.periods_charged), i))
        .filter(|(start, _)| *start <= now)
        .map(Reverse)
        .collect();

    while let Some(Reverse((at, index))) = queue.pop() {
        let server = &servers[index];
        let period = out.servers[index].periods_charged;
        let Some(user) = pools.get(&server.pool_id) else {
            debug_assert!(false, "pool {} not loaded", server.pool_id);
            continue;
        };
        let project_id = user.project_id.filter(|p| pools.contains_key(p));
        debug_assert_eq!(project_id, user.project_id, "project pool not loaded");

        if let Some(p) = project_id {
            accrue(pools, p, at, &mut out.movements);
        }
        accrue(pools, server.pool_id, at, &mut out.movements);

        let project_balance = project_id.map(|p| pools[&p].state.balance);
        let user_balance = pools[&server.pool_id].state.balance;
        let available = user_balance.saturating_add(project_balance.unwrap_or(0));
        let required = server.billing_value;

        if available < required {
            let next_grant_at = [Some(server.pool_id), project_id]
                .into_iter()
                .flatten()
                .filter_map(|p| pools[&p].state.next_grant_at())
                .min();
            out.periods.push(PeriodRecord {
                server: index,
                period,
                at,
                amount: 0,
                from_project: 0,
                paid: false,
            });
            out.servers[index].next_charge_at = None;
            out.servers[index].stop = Some(Shortfall {
                at,
                period,
                required,
                user_balance,
                project_balance,
                next_grant_at,
            });
            continue;
        }

        let from_project = project_balance.unwrap_or(0).min(required);
        let from_user = required - from_project;
        for (pool_id, amount) in [
            (project_id, from_project),
            (Some(server.pool_id), from_user),
        ] {
            let Some(pool_id) = pool_id else { continue };
            if amount == 0 {
                continue;
            }
            let entry = pools.get_mut(&pool_id).expect("checked above");
            entry.state.debit(amount, at);
            entry.touched = true;
            out.movements.push(Movement {
                pool_id,
                at,
                delta: -amount,
                balance_after: entry.state.balance,
                kind: MovementKind::Charge,
                charge_of: Some((index, period)),
            });
        }
        out.periods.push(PeriodRecord {
            server: index,
            period,
            at,
            amount: required,
            from_project,
            paid: true,
        });
        let outcome = &mut out.servers[index];
        outcome.periods_charged = period + 1;
        let next = server.period_start(period + 1);
        outcome.next_charge_at = Some(next);
        if next <= now && next > at {
            queue.push(Reverse((next, index)));
        }
    }
    out
}

fn accrue(
    pools: &mut HashMap<PoolId, PoolEntry>,
    pool_id: PoolId,
    at: Millis,
    movements: &mut Vec<Movement>,
) {
    let entry = pools.get_mut(&pool_id).expect("caller checked");
    let before = entry.state.grant_anchor_ms;
    if let Some(grant) = entry.state.accrue(at) {
        entry.touched = true;
        movements.push(Movement {
            pool_id,
            at: grant.at,
            delta: grant.delta,
            balance_after: entry.state.balance,
            kind: MovementKind::Grant,
            charge_of: None,
        });
    } else if entry.state.grant_anchor_ms != before {
        entry.touched = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(balance: i64, project: Option<PoolId>) -> PoolEntry {
        PoolEntry {
            state: PoolState {
                balance,
                cap: 100,
                grant_value: 0,
                grant_interval_secs: 600,
                grant_anchor_ms: (balance < 100).then_some(0),
            },
            project_id: project,
            touched: false,
        }
    }

    fn server(value: i64, ready: Millis, charged: i64) -> DueServer {
        DueServer {
            pool_id: 1,
            billing_value: value,
            billing_interval_secs: 60,
            ready_at_ms: ready,
            periods_charged: charged,
        }
    }

    #[test]
    fn project_pays_first_then_user() {
        let mut pools = HashMap::from([(1, user(100, Some(2))), (2, user(15, None))]);
        let s = settle(&mut pools, &[server(20, 0, 0)], 0);
        assert_eq!(pools[&2].state.balance, 0);
        assert_eq!(pools[&1].state.balance, 95);
        assert_eq!(s.periods[0].from_project, 15);
        assert_eq!(s.servers[0].next_charge_at, Some(60_000));
    }

    #[test]
    fn missed_periods_are_charged_in_order_until_one_cannot_be_paid() {
        let mut pools = HashMap::from([(1, user(50, None))]);
        let s = settle(&mut pools, &[server(20, 0, 0)], 3_600_000);
        assert_eq!(s.servers[0].periods_charged, 2);
        let stop = s.servers[0].stop.clone().unwrap();
        assert_eq!((stop.period, stop.at, stop.user_balance), (2, 120_000, 10));
        assert_eq!(pools[&1].state.balance, 10);
        assert_eq!(s.periods.iter().filter(|p| !p.paid).count(), 1);
        assert_eq!(s.servers[0].next_charge_at, None);
    }

    #[test]
    fn nothing_due_changes_nothing() {
        let mut pools = HashMap::from([(1, user(50, None))]);
        let s = settle(&mut pools, &[server(20, 0, 1)], 59_999);
        assert!(s.movements.is_empty() && s.periods.is_empty());
        assert!(!pools[&1].touched);
        assert_eq!(s.servers[0].next_charge_at, Some(60_000));
    }

    #[test]
    fn free_servers_are_never_charged() {
        let mut pools = HashMap::from([(1, user(0, None))]);
        let s = settle(&mut pools, &[server(0, 0, 0)], 10_000_000);
        assert!(s.periods.is_empty());
        assert_eq!(s.servers[0].next_charge_at, None);
        assert_eq!(s.servers[0].stop, None);
    }

    #[test]
    fn grants_interleave_with_charges_of_a_shared_pool() {
        let mut pool = user(20, None);
        pool.state.grant_value = 10;
        pool.state.grant_interval_secs = 60;
        let mut pools = HashMap::from([(1, pool)]);
        // 10 credits per minute in, 10 per minute out: it never runs dry.
        let s = settle(&mut pools, &[server(10, 30_000, 0)], 600_000);
        assert_eq!(s.servers[0].stop, None);
        assert_eq!(s.servers[0].periods_charged, 10);
        assert!(pools[&1].state.is_consistent());
    }
}
