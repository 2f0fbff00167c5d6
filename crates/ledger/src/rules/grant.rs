//! Rules 1, 2 and 6: a pool's balance, cap and grant clock.
//!
//! Grants are never written on a timer. A pool stores its balance and the
//! moment its grant clock runs from (`grant_anchor_ms`, set only while the
//! pool is below its cap); the balance at any later time is computed from
//! those. The store writes the grants only when the pool is touched for
//! another reason, so idle users cost nothing.

use crate::clock::{Millis, secs_to_ms};

/// The stored state of one pool, user or project.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolState {
    /// Credits held; `0 <= balance <= cap`.
    pub balance: i64,
    /// The most the pool holds; grants stop here.
    pub cap: i64,
    /// Credits added every `grant_interval_secs` while below the cap.
    pub grant_value: i64,
    /// Seconds between grants; at least 1.
    pub grant_interval_secs: i64,
    /// When the grant clock runs from: the moment the pool fell below its cap
    /// or its last grant. `None` while the pool is full.
    pub grant_anchor_ms: Option<Millis>,
}

/// Grants applied to a pool in one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accrual {
    /// Credits added (after capping).
    pub delta: i64,
    /// The time of the last grant included.
    pub at: Millis,
}

impl PoolState {
    /// A new pool: full (rule 1), its grant clock idle.
    pub fn opened(cap: i64, grant_value: i64, grant_interval_secs: i64) -> Self {
        Self {
            balance: cap,
            cap,
            grant_value,
            grant_interval_secs,
            grant_anchor_ms: None,
        }
    }

    /// Applies every grant due at or before `at` (rule 2), never beyond the
    /// cap. Grants missed while nobody looked are added at once.
    pub fn accrue(&mut self, at: Millis) -> Option<Accrual> {
        if self.balance >= self.cap {
            self.grant_anchor_ms = None;
            return None;
        }
        let Some(anchor) = self.grant_anchor_ms else {
            // Below cap without a running clock only happens to rows written
            // before a fix; start the clock now rather than never.
            self.grant_anchor_ms = Some(at);
            return None;
        };
        let interval = secs_to_ms(self.grant_interval_secs).max(1);
        if at < anchor {
            return None;
        }
        let intervals = at.saturating_sub(anchor) / interval;
        if intervals == 0 {
            return None;
        }
        let missing = self.cap - self.balance;
        if self.grant_value == 0 {
            // Grants of nothing still move the clock, so that a later raise
            // of the grant value does not pay out for the past.
            self.grant_anchor_ms = Some(anchor.saturating_add(intervals.saturating_mul(interval)));
            return None;
        }
        // Grants needed to reach the cap, rounded up; never overflows since
        // missing <= 2^53 and grant_value >= 1.
        let to_fill = missing.saturating_add(self.grant_value - 1) / self.grant_value;
        if intervals >= to_fill {
            let last = anchor.saturating_add(to_fill.saturating_mul(interval));
            self.balance = self.cap;
            self.grant_anchor_ms = None;
            Some(Accrual {
                delta: missing,
                at: last,
            })
        } else {
            // intervals < to_fill, so intervals * grant_value < missing + grant_value.
            let delta = intervals.saturating_mul(self.grant_value);
            let last = anchor.saturating_add(intervals.saturating_mul(interval));
            self.balance += delta;
            self.grant_anchor_ms = Some(last);
            Some(Accrual { delta, at: last })
        }
    }

    /// When the next grant arrives, for a state already accrued to now;
    /// `None` when the pool is full or grants nothing.
    pub fn next_grant_at(&self) -> Option<Millis> {
        if self.balance >= self.cap || self.grant_value == 0 {
            return None;
        }
        let anchor = self.grant_anchor_ms?;
        Some(anchor.saturating_add(secs_to_ms(self.grant_interval_secs)))
    }

    /// Takes `amount` credits at `at`; starts the grant clock if the pool
    /// was full. The caller has checked that the balance suffices.
    pub fn debit(&mut self, amount: i64, at: Millis) {
        debug_assert!(amount >= 0 && amount <= self.balance);
        if amount == 0 {
            return;
        }
        self.balance -= amount;
        self.restart_clock_if_below_cap(at);
    }

    /// Sets the balance (an admin adjustment), keeping the clock consistent.
    pub fn set_balance(&mut self, balance: i64, at: Millis) {
        debug_assert!(balance >= 0 && balance <= self.cap);
        self.balance = balance;
        self.restart_clock_if_below_cap(at);
    }

    /// Sets the cap (rule 6); returns the credits removed when the balance
    /// had to be clamped to the new cap.
    pub fn set_cap(&mut self, cap: i64, at: Millis) -> i64 {
        self.cap = cap;
        let clamped = (self.balance - cap).max(0);
        self.balance -= clamped;
        self.restart_clock_if_below_cap(at);
        clamped
    }

    fn restart_clock_if_below_cap(&mut self, at: Millis) {
        if self.balance >= self.cap {
            self.grant_anchor_ms = None;
        } else if self.grant_anchor_ms.is_none() {
            self.grant_anchor_ms = Some(at);
        }
    }

    /// The invariant every stored pool keeps.
    pub fn is_consistent(&self) -> bool {
        self.balance >= 0
            && self.balance <= self.cap
            && self.grant_value >= 0
            && self.grant_interval_secs >= 1
            && (self.balance < self.cap || self.grant_anchor_ms.is_none())
            && (self.balance >= self.cap || self.grant_anchor_ms.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(balance: i64, anchor: Option<Millis>) -> PoolState {
        PoolState {
            balance,
            cap: 100,
            grant_value: 10,
            grant_interval_secs: 60,
            grant_anchor_ms: anchor,
        }
    }

    #[test]
    fn new_pool_is_full_and_idle() {
        let p = PoolState::opened(100, 10, 60);
        assert_eq!(p.balance, 100);
        assert_eq!(p.next_grant_at(), None);
        assert!(p.is_consistent());
    }

    #[test]
    fn grant_arrives_one_interval_after_falling_below_cap() {
        let mut p = PoolState::opened(100, 10, 60);
        p.debit(25, 1_000);
        assert_eq!(p.next_grant_at(), Some(61_000));
        assert_eq!(p.accrue(60_999), None);
        assert_eq!(
            p.accrue(61_000),
            Some(Accrual {
                delta: 10,
                at: 61_000
            })
        );
        assert_eq!(p.balance, 85);
        assert_eq!(p.next_grant_at(), Some(121_000));
    }

    #[test]
    fn missed_grants_are_added_at_once_and_capped() {
        let mut p = pool(5, Some(0));
        let got = p.accrue(3600 * 1000).unwrap();
        assert_eq!(got.delta, 95);
        // 10 grants were needed; the tenth came at 600 s.
        assert_eq!(got.at, 600_000);
        assert_eq!(p.balance, 100);
        assert_eq!(p.grant_anchor_ms, None);
        assert!(p.is_consistent());
    }

    #[test]
    fn partial_catch_up_keeps_the_clock_at_the_last_grant() {
        let mut p = pool(0, Some(0));
        let got = p.accrue(150_000).unwrap();
        assert_eq!((got.delta, got.at), (20, 120_000));
        assert_eq!(p.grant_anchor_ms, Some(120_000));
    }

    #[test]
    fn zero_grant_moves_the_clock_but_adds_nothing() {
        let mut p = pool(0, Some(0));
        p.grant_value = 0;
        assert_eq!(p.accrue(600_000), None);
        assert_eq!(p.grant_anchor_ms, Some(600_000));
        assert_eq!(p.next_grant_at(), None);
    }

    #[test]
    fn lowering_the_cap_clamps() {
        let mut p = PoolState::opened(100, 10, 60);
        assert_eq!(p.set_cap(40, 5), 60);
        assert_eq!(p.balance, 40);
        assert_eq!(p.grant_anchor_ms, None);
        assert_eq!(p.set_cap(50, 7), 0);
        assert_eq!(p.grant_anchor_ms, Some(7));
        assert!(p.is_consistent());
    }

    #[test]
    fn extreme_values_do_not_overflow() {
        let max = crate::limits::VALUE_MAX;
        let mut p = PoolState {
            balance: 0,
            cap: max,
            grant_value: 1,
            grant_interval_secs: max,
            grant_anchor_ms: Some(i64::MAX - 5),
        };
        assert_eq!(p.accrue(i64::MAX), None);
        assert_eq!(p.next_grant_at(), Some(i64::MAX));
        let mut q = PoolState {
            balance: 0,
            cap: max,
            grant_value: max,
            grant_interval_secs: 1,
            grant_anchor_ms: Some(i64::MIN / 2),
        };
        let got = q.accrue(i64::MAX / 2).unwrap();
        assert_eq!(got.delta, max);
        assert_eq!(q.balance, max);
    }
}
