//! Property tests: random sequences of spawns, readiness, stops, billing
//! rounds, admin changes and clock steps, run against the real ledger and
//! against a deliberately naive reference model written here, on SQLite and
//! on PostgreSQL. A second property checks rule 9's pool matching through
//! `admit` against a small matcher of its own.
//!
//! The model does not use `credit_ledger::rules`. It keeps what the ledger
//! keeps: each pool's balance and grant clock as of its last change (grants
//! are added one interval at a time), and each server's next period. It
//! settles due periods one at a time, earliest first, ties in admission
//! order, and only where the ledger does: an operation settles the servers
//! sharing the pools it touches, a billing round settles all of them. So the
//! balances shown by views (grants applied to now, due charges not yet
//! settled) can be compared after every operation, not only after `bill`.
//!
//! Checked after every operation: the audit is clean (balances equal their
//! journals, no running server owes a period); every balance is within
//! `0..=cap`; balances, caps, grants, next grants, projects, live servers
//! (state, periods paid, next charge) and recent stops equal the model's;
//! each admission, readiness, stop and admin change answers as the model
//! does. After each billing round also: its report (periods, credits, new
//! and pending stops, expired promises), and the journals' charge entries,
//! which must be exactly the model's charges (each period once, project
//! first). `PROPTEST_CASES=N` runs longer.

use std::collections::BTreeMap;

use credit_ledger::{
    Admission, EntryKind, JournalEntry, Millis, PoolConfig, PoolPatch, ProjectPatch, ServerState,
    SpawnRequest,
};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{Map, Value, json};

use crate::harness::{Db, Harness, START, admin};
use crate::on_both;

const SEC: Millis = 1000;
/// How long an admitted spawn's promise holds.
const PROMISE_SECS: i64 = 600;
const USERS: [&str; 3] = ["ada", "bob", "cy"];
const PROJECTS: [&str; 2] = ["lab", "course"];
const SERVER_NAMES: [&str; 2] = ["", "gpu"];
const BILLING_INTERVALS: [i64; 3] = [30, 60, 300];
const JOURNAL_PAGE: i64 = 1000;

// ---------------------------------------------------------------------------
// The tests

#[test]
fn ledger_agrees_with_the_model_on_sqlite() {
    run_model_property(Db::Sqlite, 48);
}

#[test]
fn ledger_agrees_with_the_model_on_postgres() {
    run_model_property(Db::Postgres, 24);
}

#[test]
fn admission_picks_the_first_matching_pool_on_sqlite() {
    run_matching_property(Db::Sqlite, 64);
}

#[test]
fn admission_picks_the_first_matching_pool_on_postgres() {
    run_matching_property(Db::Postgres, 24);
}

// Regressions the model found, as plain examples.
on_both!(
    stop_between_rounds_pays_the_periods_that_started,
    a_pool_moved_into_a_project_takes_its_promises_along,
);

/// `mark_stopped` ended a running server without settling the periods that
/// had started since the last billing round: they were never charged.
async fn stop_between_rounds_pays_the_periods_that_started(h: Harness) {
    h.user("ada", 100, 0, 600, None).await;
    h.start("ada", "", "k1", 10, 60).await;
    h.advance(150);
    assert!(h.ledger.mark_stopped("k1").await.unwrap());
    assert_eq!(h.balance("ada").await, 70, "periods at 0 s, 60 s and 120 s");
    let server = h.ledger.server("k1").await.unwrap().unwrap();
    assert_eq!(
        (server.state, server.periods_charged),
        (ServerState::Stopped, 3)
    );
    assert_eq!(h.ledger.bill().await.unwrap().periods_charged, 0);
    h.assert_audit_clean().await;
}

/// Promises were counted against the project a pool had when the spawn was
/// admitted, so a pool moved into a project brought along a promise that
/// the project's other members did not see, and the project's credits were
/// promised twice.
async fn a_pool_moved_into_a_project_takes_its_promises_along(h: Harness) {
    h.project("lab", 10, 0, 600).await;
    h.user("ada", 10, 0, 600, None).await;
    h.user("bob", 0, 0, 600, Some("lab")).await;
    assert!(matches!(
        h.admit("ada", "", "a1", 10, 60).await,
        Admission::Admitted { .. }
    ));
    let into_lab = PoolPatch {
        project: Some(Some("lab".into())),
        ..PoolPatch::default()
    };
    h.ledger
        .adjust_user_pool("ada", "default", &into_lab, &admin("move"))
        .await
        .unwrap();
    // ada's spawn, once ready, is paid by lab first.
    match h.admit("bob", "", "b1", 10, 60).await {
        Admission::Refused(r) => assert_eq!(r.promised, 10),
        other => panic!("lab's credits were promised twice: {other:?}"),
    }
}

/// `cases` unless `PROPTEST_CASES` asks for more (or fewer), for a long run.
fn runner(cases: u32) -> TestRunner {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
    TestRunner::new(Config {
        cases,
        max_shrink_iters: 256,
        // No regression files next to the sources: a failure prints its
        // minimal input, which is what to turn into a named test.
        failure_persistence: None,
        ..Config::default()
    })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn run_model_property(db: Db, cases: u32) {
    let rt = runtime();
    let strategy = (
        setup_strategy(),
        prop::collection::vec(op_strategy(), 1..=40),
    );
    let result = runner(cases).run(&strategy, |(setup, ops)| {
        rt.block_on(run_case(db, &setup, &ops))
            .map_err(TestCaseError::fail)
    });
    if let Err(e) = result {
        panic!("{db:?}: {e}");
    }
}

// ---------------------------------------------------------------------------
// Inputs

/// A pool's configured cap and grant.
#[derive(Debug, Clone)]
struct PoolSetup {
    cap: i64,
    grant_value: i64,
    grant_interval: i64,
}

#[derive(Debug, Clone)]
struct Setup {
    projects: Vec<PoolSetup>,
    /// Each user's pool and project.
    users: Vec<(PoolSetup, Option<usize>)>,
}

#[derive(Debug, Clone)]
enum Op {
    Advance(i64),
    Bill,
    Admit {
        user: usize,
        server: usize,
        value: i64,
        interval: i64,
    },
    /// Admit an already admitted start identity again.
    Readmit(Index),
    Ready(Index),
    Stop(Index),
    AdjustUser {
        user: usize,
        balance: Option<i64>,
        cap: Option<i64>,
        grant: Option<(i64, i64)>,
        project: Option<Option<usize>>,
    },
    AdjustProject {
        project: usize,
        balance: Option<i64>,
        cap: Option<i64>,
    },
}

fn pool_setup_strategy() -> impl Strategy<Value = PoolSetup> {
    (0..=200i64, 0..=20i64, 60..=600i64).prop_map(|(cap, grant_value, grant_interval)| PoolSetup {
        cap,
        grant_value,
        grant_interval,
    })
}

fn setup_strategy() -> impl Strategy<Value = Setup> {
    (
        prop::collection::vec(pool_setup_strategy(), PROJECTS.len()),
        prop::collection::vec(
            (pool_setup_strategy(), prop::option::of(0..PROJECTS.len())),
            USERS.len(),
        ),
    )
        .prop_map(|(projects, users)| Setup { projects, users })
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let user = 0..USERS.len();
    prop_oneof![
        6 => (0..=900i64).prop_map(Op::Advance),
        1 => (3600..=6 * 3600i64).prop_map(Op::Advance),
        4 => Just(Op::Bill),
        6 => (user.clone(), 0..SERVER_NAMES.len(), 0..=40i64, prop::sample::select(&BILLING_INTERVALS[..]))
            .prop_map(|(user, server, value, interval)| Op::Admit { user, server, value, interval }),
        1 => any::<Index>().prop_map(Op::Readmit),
        5 => any::<Index>().prop_map(Op::Ready),
        2 => any::<Index>().prop_map(Op::Stop),
        1 => (
            user,
            prop::option::of(0..=250i64),
            prop::option::of(0..=200i64),
            prop::option::of((0..=20i64, 30..=600i64)),
            prop::option::of(prop::option::of(0..PROJECTS.len())),
        )
            .prop_map(|(user, balance, cap, grant, project)| Op::AdjustUser {
                user,
                balance,
                cap,
                grant,
                project,
            }),
        1 => (0..PROJECTS.len(), prop::option::of(0..=250i64), prop::option::of(0..=200i64))
            .prop_map(|(project, balance, cap)| Op::AdjustProject { project, balance, cap }),
    ]
}

// ---------------------------------------------------------------------------
// The reference model

/// A pool: balance, cap, grant, and the moment its grant clock runs from
/// (set while below the cap).
#[derive(Debug, Clone, PartialEq, Eq)]
struct MPool {
    balance: i64,
    cap: i64,
    grant_value: i64,
    grant_interval: i64,
    anchor: Option<Millis>,
}

impl MPool {
    /// Rule 1: a new pool is full.
    fn full(s: &PoolSetup) -> Self {
        Self {
            balance: s.cap,
            cap: s.cap,
            grant_value: s.grant_value,
            grant_interval: s.grant_interval,
            anchor: None,
        }
    }

    /// Rule 2, naively: one grant per elapsed interval, capped.
    fn accrue(&mut self, t: Millis) {
        loop {
            if self.balance >= self.cap {
                self.anchor = None;
                return;
            }
            let anchor = self
                .anchor
                .expect("model: a pool below its cap has a running grant clock");
            let next = anchor + self.grant_interval * SEC;
            if next > t {
                return;
            }
            self.balance = (self.balance + self.grant_value).min(self.cap);
            self.anchor = Some(next);
        }
    }

    /// The pool as a view shows it at `now`.
    fn at(&self, now: Millis) -> MPool {
        let mut p = self.clone();
        p.accrue(now);
        p
    }

    /// The grant clock starts when the pool falls below its cap and stops
    /// when it is full.
    fn restart_clock(&mut self, at: Millis) {
        if self.balance >= self.cap {
            self.anchor = None;
        } else if self.anchor.is_none() {
            self.anchor = Some(at);
        }
    }

    fn debit(&mut self, amount: i64, at: Millis) {
        assert!(0 < amount && amount <= self.balance, "model: overdraft");
        self.balance -= amount;
        self.restart_clock(at);
    }

    fn next_grant_at(&self) -> Option<Millis> {
        if self.balance >= self.cap || self.grant_value == 0 {
            return None;
        }
        self.anchor.map(|a| a + self.grant_interval * SEC)
    }

    /// Rule 6: an admin's change, applied after grants up to `now`.
    fn adjust(&mut self, balance: Option<i64>, cap: i64, grant: Option<(i64, i64)>, now: Millis) {
        self.accrue(now);
        if let Some((value, interval)) = grant {
            self.grant_value = value;
            self.grant_interval = interval;
        }
        self.cap = cap;
        self.balance = balance.unwrap_or(self.balance.min(cap));
        self.restart_clock(now);
    }
}

#[derive(Debug, Clone)]
struct MUser {
    pool: MPool,
    project: Option<usize>,
}

#[derive(Debug, Clone)]
struct MServer {
    key: String,
    user: usize,
    name: &'static str,
    value: i64,
    interval: i64,
    state: ServerState,
    admitted_at: Millis,
    ready_at: Option<Millis>,
    /// Periods paid since it became ready.
    periods: i64,
    /// Start of the next period to charge, while running with value > 0.
    next_at: Option<Millis>,
    ended_at: Option<Millis>,
    /// Stopped because it could not pay.
    ran_out: bool,
    /// Credits paid in all.
    paid: i64,
}

impl MServer {
    fn is_live(&self) -> bool {
        matches!(
            self.state,
            ServerState::Pending | ServerState::Running | ServerState::Stopping
        )
    }
}

/// A charge as the journal must show it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct ChargeLine {
    /// `user:NAME` or `project:NAME`.
    account: String,
    pool: String,
    user: String,
    server: String,
    period: i64,
    time: Millis,
    delta: i64,
    balance_after: i64,
}

/// What one settlement did.
#[derive(Debug, Default)]
struct Round {
    periods: u64,
    credits: i64,
    /// Servers that ran out, by index.
    stops: Vec<usize>,
}

#[derive(Debug, Clone)]
struct Model {
    now: Millis,
    users: Vec<MUser>,
    projects: Vec<MPool>,
    /// In admission order: the index is the ledger's id order.
    servers: Vec<MServer>,
    charges: Vec<ChargeLine>,
    keys_issued: usize,
}

/// The model's answer to an admission.
#[derive(Debug, PartialEq, Eq)]
enum MAdmission {
    Admitted,
    Refused { promised: i64 },
}

impl Model {
    fn new(setup: &Setup) -> Self {
        Self {
            now: START,
            users: setup
                .users
                .iter()
                .map(|(s, project)| MUser {
                    pool: MPool::full(s),
                    project: *project,
                })
                .collect(),
            projects: setup.projects.iter().map(MPool::full).collect(),
            servers: Vec::new(),
            charges: Vec::new(),
            keys_issued: 0,
        }
    }

    /// Rules 3 and 4: settles every period due by now on running servers of
    /// these users or of users in these projects, one period at a time,
    /// earliest first, ties in admission order.
    fn settle(&mut self, users: &[usize], projects: &[usize]) -> Round {
        let now = self.now;
        let chosen: Vec<usize> = (0..self.servers.len())
            .filter(|&i| {
                let s = &self.servers[i];
                s.state == ServerState::Running
                    && s.next_at.is_some_and(|t| t <= now)
                    && (users.contains(&s.user)
                        || self.users[s.user]
                            .project
                            .is_some_and(|p| projects.contains(&p)))
            })
            .collect();
        let mut round = Round::default();
        loop {
            let next = chosen
                .iter()
                .filter_map(|&i| {
                    let s = &self.servers[i];
                    if s.state != ServerState::Running {
                        return None;
                    }
                    s.next_at.filter(|&t| t <= now).map(|t| (t, i))
                })
                .min();
            let Some((at, i)) = next else {
                return round;
            };
            self.charge_period(i, at, &mut round);
        }
    }

    /// One period of server `i`, starting at `at`: project first, user
    /// second, or a stop when both together can't pay.
    fn charge_period(&mut self, i: usize, at: Millis, round: &mut Round) {
        let (u, value, interval, period) = {
            let s = &self.servers[i];
            (s.user, s.value, s.interval, s.periods)
        };
        let project = self.users[u].project;
        if let Some(p) = project {
            self.projects[p].accrue(at);
        }
        self.users[u].pool.accrue(at);
        let project_balance = project.map_or(0, |p| self.projects[p].balance);
        let user_balance = self.users[u].pool.balance;
        if project_balance + user_balance < value {
            let s = &mut self.servers[i];
            s.state = ServerState::Stopping;
            s.next_at = None;
            s.ran_out = true;
            round.stops.push(i);
            return;
        }
        let from_project = project_balance.min(value);
        let from_user = value - from_project;
        let server = self.servers[i].name.to_string();
        let line = |account: String, pool: String, delta: i64, balance_after: i64| ChargeLine {
            account,
            pool,
            user: USERS[u].to_string(),
            server: server.clone(),
            period,
            time: at,
            delta,
            balance_after,
        };
        if let Some(p) = project.filter(|_| from_project > 0) {
            self.projects[p].debit(from_project, at);
            self.charges.push(line(
                format!("project:{}", PROJECTS[p]),
                PROJECTS[p].to_string(),
                -from_project,
                self.projects[p].balance,
            ));
        }
        if from_user > 0 {
            // Rule 3: the user pays only what the project could not.
            assert!(
                project.is_none_or(|p| self.projects[p].balance == 0),
                "model: user charged while the project still holds credits"
            );
            self.users[u].pool.debit(from_user, at);
            self.charges.push(line(
                format!("user:{}", USERS[u]),
                "default".to_string(),
                -from_user,
                self.users[u].pool.balance,
            ));
        }
        let s = &mut self.servers[i];
        s.periods += 1;
        s.paid += value;
        s.next_at = Some(at + interval * SEC);
        round.periods += 1;
        round.credits += value;
    }

    /// Rule 5. Returns the key used and the answer.
    fn admit(
        &mut self,
        u: usize,
        name: &'static str,
        value: i64,
        interval: i64,
    ) -> (String, MAdmission) {
        let key = format!("k{}", self.keys_issued);
        self.keys_issued += 1;
        let now = self.now;
        let project = self.users[u].project;
        // The ledger settles the pools first, but a refusal commits nothing:
        // decide on a copy.
        let mut trial = self.clone();
        trial.settle(&[u], &project.into_iter().collect::<Vec<_>>());
        let user_balance = trial.users[u].pool.at(now).balance;
        let project_balance = project.map_or(0, |p| trial.projects[p].at(now).balance);
        let promised: i64 = trial
            .servers
            .iter()
            .filter(|s| {
                s.state == ServerState::Pending
                    && s.admitted_at + PROMISE_SECS * SEC > now
                    // The start being replaced ends with this admission.
                    && !(s.user == u && s.name == name)
                    && (s.user == u
                        || (project.is_some() && trial.users[s.user].project == project))
            })
            .map(|s| s.value)
            .sum();
        let available = (user_balance + project_balance - promised).max(0);
        if value > 0 && available < value {
            return (key, MAdmission::Refused { promised });
        }
        *self = trial;
        // A new start of a server ends its older live records.
        for s in self
            .servers
            .iter_mut()
            .filter(|s| s.user == u && s.name == name && s.is_live())
        {
            s.state = if s.state == ServerState::Pending {
                ServerState::Released
            } else {
                ServerState::Stopped
            };
            s.ended_at = Some(now);
            s.next_at = None;
        }
        self.servers.push(MServer {
            key: key.clone(),
            user: u,
            name,
            value,
            interval,
            state: ServerState::Pending,
            admitted_at: now,
            ready_at: None,
            periods: 0,
            next_at: None,
            ended_at: None,
            ran_out: false,
            paid: 0,
        });
        (key, MAdmission::Admitted)
    }

    /// The server became ready now: period 0 starts now. Returns whether it
    /// ran out at once.
    fn ready(&mut self, i: usize) -> bool {
        let now = self.now;
        let s = &mut self.servers[i];
        if !matches!(s.state, ServerState::Pending | ServerState::Released) {
            return false;
        }
        // A late ready of a start that a newer start replaced is ignored.
        let (user, name, key) = (s.user, s.name, s.key.clone());
        if s.state == ServerState::Released
            && self
                .servers
                .iter()
                .any(|o| o.user == user && o.name == name && o.key != key && o.is_live())
        {
            return false;
        }
        let s = &mut self.servers[i];
        s.state = ServerState::Running;
        s.ready_at = Some(now);
        s.ended_at = None;
        s.periods = 0;
        s.next_at = (s.value > 0).then_some(now);
        let u = s.user;
        let project = self.users[u].project;
        let round = self.settle(&[u], &project.into_iter().collect::<Vec<_>>());
        round.stops.contains(&i)
    }

    /// The hub reports the server gone. Periods that started while it ran
    /// are owed (rule 3), so they are settled first.
    fn stop(&mut self, i: usize) -> bool {
        let now = self.now;
        match self.servers[i].state {
            ServerState::Pending => self.servers[i].state = ServerState::Released,
            ServerState::Running | ServerState::Stopping => {
                if self.servers[i].state == ServerState::Running {
                    let u = self.servers[i].user;
                    let project = self.users[u].project;
                    self.settle(&[u], &project.into_iter().collect::<Vec<_>>());
                }
                self.servers[i].state = ServerState::Stopped;
            }
            ServerState::Stopped | ServerState::Released => return false,
        }
        let s = &mut self.servers[i];
        s.ended_at = Some(now);
        s.next_at = None;
        true
    }

    /// A billing round: expire promises, then settle everything due.
    fn bill(&mut self) -> (u64, Round) {
        let now = self.now;
        let mut expired = 0;
        for s in &mut self.servers {
            if s.state == ServerState::Pending && s.admitted_at + PROMISE_SECS * SEC <= now {
                s.state = ServerState::Released;
                s.ended_at = Some(now);
                expired += 1;
            }
        }
        let users: Vec<usize> = (0..self.users.len()).collect();
        let projects: Vec<usize> = (0..self.projects.len()).collect();
        (expired, self.settle(&users, &projects))
    }

    /// Rule 6 on a user's pool; `false` when the ledger must refuse it
    /// (and change nothing).
    fn adjust_user(
        &mut self,
        u: usize,
        balance: Option<i64>,
        cap: Option<i64>,
        grant: Option<(i64, i64)>,
        project: Option<Option<usize>>,
    ) -> bool {
        if balance.is_none() && cap.is_none() && grant.is_none() && project.is_none() {
            return false;
        }
        let cap = cap.unwrap_or(self.users[u].pool.cap);
        if balance.is_some_and(|b| b > cap) {
            return false;
        }
        let old = self.users[u].project;
        let new = project.unwrap_or(old);
        let projects: Vec<usize> = old.into_iter().chain(new).collect();
        self.settle(&[u], &projects);
        let now = self.now;
        self.users[u].pool.adjust(balance, cap, grant, now);
        self.users[u].project = new;
        true
    }

    /// Rule 6 on a project's pool.
    fn adjust_project(&mut self, p: usize, balance: Option<i64>, cap: Option<i64>) -> bool {
        if balance.is_none() && cap.is_none() {
            return false;
        }
        let cap = cap.unwrap_or(self.projects[p].cap);
        if balance.is_some_and(|b| b > cap) {
            return false;
        }
        self.settle(&[], &[p]);
        let now = self.now;
        self.projects[p].adjust(balance, cap, None, now);
        true
    }
}

// ---------------------------------------------------------------------------
// Running a case

type Check = Result<(), String>;

/// Returns an error with the ledger's and the model's values when they differ.
macro_rules! same {
    ($ledger:expr, $model:expr, $($what:tt)+) => {{
        let (ledger, model) = (&$ledger, &$model);
        if ledger != model {
            return Err(format!(
                "{}: ledger {:?} != model {:?}",
                format!($($what)+),
                ledger,
                model
            ));
        }
    }};
}

macro_rules! ensure {
    ($cond:expr, $($what:tt)+) => {
        if !$cond {
            return Err(format!($($what)+));
        }
    };
}

/// Ledger errors as test failures.
trait Context<T> {
    fn ctx(self, what: &str) -> Result<T, String>;
}

impl<T> Context<T> for credit_ledger::Result<T> {
    fn ctx(self, what: &str) -> Result<T, String> {
        self.map_err(|e| format!("{what} failed: {e}"))
    }
}

async fn run_case(db: Db, setup: &Setup, ops: &[Op]) -> Check {
    let h = Harness::new(db).await;
    let result = drive(&h, setup, ops).await;
    h.ledger.close().await;
    result
}

async fn drive(h: &Harness, setup: &Setup, ops: &[Op]) -> Check {
    for (name, p) in PROJECTS.iter().zip(&setup.projects) {
        h.project(name, p.cap, p.grant_value, p.grant_interval)
            .await;
    }
    for (name, (p, project)) in USERS.iter().zip(&setup.users) {
        h.user(
            name,
            p.cap,
            p.grant_value,
            p.grant_interval,
            project.map(|i| PROJECTS[i]),
        )
        .await;
    }
    let mut model = Model::new(setup);
    compare(h, &model, false)
        .await
        .map_err(|e| format!("after setup: {e}"))?;
    for (index, op) in ops.iter().enumerate() {
        let billed = step(h, &mut model, op)
            .await
            .map_err(|e| format!("op #{index} {op:?}: {e}"))?;
        compare(h, &model, billed)
            .await
            .map_err(|e| format!("after op #{index} {op:?}: {e}"))?;
    }
    compare_servers(h, &model)
        .await
        .map_err(|e| format!("at the end: {e}"))
}

/// Applies `op` to the ledger and the model and compares what each
/// operation returns. Returns whether it was a billing round.
async fn step(h: &Harness, model: &mut Model, op: &Op) -> Result<bool, String> {
    let ledger = &h.ledger;
    match op {
        Op::Advance(secs) => {
            h.clock.advance_secs(*secs);
            model.now += secs * SEC;
        }
        Op::Bill => {
            let report = ledger.bill().await.ctx("bill")?;
            let (expired, round) = model.bill();
            same!(report.promises_expired, expired, "promises expired");
            same!(report.periods_charged, round.periods, "periods charged");
            same!(report.credits_charged, round.credits, "credits charged");
            // Rule 4: a server that can't pay is stopped, and the hub is told.
            let mut new_stops: Vec<&str> = report
                .new_stops
                .iter()
                .map(|s| s.server_key.as_str())
                .collect();
            new_stops.sort_unstable();
            let mut expected: Vec<&str> = round
                .stops
                .iter()
                .map(|&i| model.servers[i].key.as_str())
                .collect();
            expected.sort_unstable();
            same!(new_stops, expected, "new stops");
            let pending: Vec<&str> = report
                .pending_stops
                .iter()
                .map(|s| s.server_key.as_str())
                .collect();
            let expected: Vec<&str> = model
                .servers
                .iter()
                .filter(|s| s.state == ServerState::Stopping)
                .map(|s| s.key.as_str())
                .collect();
            same!(pending, expected, "pending stops");
            for stop in &report.pending_stops {
                ensure!(
                    !stop.reason.is_empty(),
                    "stop of {} has no reason",
                    stop.server_key
                );
            }
            return Ok(true);
        }
        Op::Admit {
            user,
            server,
            value,
            interval,
        } => {
            let name = SERVER_NAMES[*server];
            let (key, expected) = model.admit(*user, name, *value, *interval);
            let got = ledger
                .admit(&SpawnRequest {
                    user: USERS[*user].to_string(),
                    server_name: name.to_string(),
                    server_key: key.clone(),
                    user_options: json!({}),
                    billing_value: *value,
                    billing_interval: *interval,
                    promise_secs: PROMISE_SECS,
                })
                .await
                .ctx("admit")?;
            let got = match got {
                Admission::Admitted { pool } => {
                    same!(pool.as_str(), "default", "admitted pool");
                    MAdmission::Admitted
                }
                Admission::Refused(r) => {
                    same!(r.required, *value, "refusal's required credits");
                    MAdmission::Refused {
                        promised: r.promised,
                    }
                }
            };
            // Rule 5: admission never promises more than there is.
            same!(got, expected, "admission of {key}");
        }
        Op::Readmit(index) => {
            if model.servers.is_empty() {
                return Ok(false);
            }
            let s = &model.servers[index.index(model.servers.len())];
            let got = ledger
                .admit(&SpawnRequest {
                    user: USERS[s.user].to_string(),
                    server_name: s.name.to_string(),
                    server_key: s.key.clone(),
                    user_options: json!({}),
                    billing_value: s.value,
                    billing_interval: s.interval,
                    promise_secs: PROMISE_SECS,
                })
                .await
                .ctx("admit again")?;
            same!(
                got,
                Admission::Admitted {
                    pool: "default".into()
                },
                "second admission of {}",
                s.key
            );
        }
        Op::Ready(index) => {
            if model.servers.is_empty() {
                return Ok(false);
            }
            let i = index.index(model.servers.len());
            let key = model.servers[i].key.clone();
            let got = ledger.mark_ready(&key, model.now).await.ctx("mark_ready")?;
            let ran_out = model.ready(i);
            same!(
                got.as_ref().map(|s| s.server_key.as_str()),
                ran_out.then_some(key.as_str()),
                "stop order from mark_ready"
            );
        }
        Op::Stop(index) => {
            if model.servers.is_empty() {
                return Ok(false);
            }
            let i = index.index(model.servers.len());
            let got = ledger
                .mark_stopped(&model.servers[i].key)
                .await
                .ctx("mark_stopped")?;
            let expected = model.stop(i);
            same!(
                got,
                expected,
                "mark_stopped({}) changed something",
                model.servers[i].key
            );
        }
        Op::AdjustUser {
            user,
            balance,
            cap,
            grant,
            project,
        } => {
            let patch = PoolPatch {
                balance: *balance,
                cap: *cap,
                grant_value: grant.map(|g| g.0),
                grant_interval: grant.map(|g| g.1),
                project: project.map(|p| p.map(|i| PROJECTS[i].to_string())),
            };
            let got = ledger
                .adjust_user_pool(USERS[*user], "default", &patch, &admin("property"))
                .await;
            let accepted = model.adjust_user(*user, *balance, *cap, *grant, *project);
            same!(got.is_ok(), accepted, "adjustment accepted ({got:?})");
            if let Ok(view) = got {
                let pool = model.users[*user].pool.at(model.now);
                same!(
                    (view.balance, view.cap),
                    (pool.balance, pool.cap),
                    "adjusted pool"
                );
            }
        }
        Op::AdjustProject {
            project,
            balance,
            cap,
        } => {
            let patch = ProjectPatch {
                balance: *balance,
                cap: *cap,
                ..ProjectPatch::default()
            };
            let got = ledger
                .adjust_project(PROJECTS[*project], &patch, &admin("property"))
                .await;
            let accepted = model.adjust_project(*project, *balance, *cap);
            same!(got.is_ok(), accepted, "adjustment accepted ({got:?})");
            if let Ok(view) = got {
                let pool = model.projects[*project].at(model.now);
                same!(
                    (view.balance, view.cap),
                    (pool.balance, pool.cap),
                    "adjusted project"
                );
            }
        }
    }
    Ok(false)
}

/// A server's observable fields, as compared.
type ServerFacts = (
    String,
    ServerState,
    i64,
    Option<Millis>,
    Option<Millis>,
    i64,
);

fn model_facts(s: &MServer) -> ServerFacts {
    (
        s.key.clone(),
        s.state,
        s.periods,
        s.next_at,
        s.ready_at,
        s.value,
    )
}

/// Properties 1–3 after every operation, 4–5 after billing rounds.
async fn compare(h: &Harness, model: &Model, billed: bool) -> Check {
    let ledger = &h.ledger;
    let now = model.now;
    // Property 1: balances equal their journals; no running server owes.
    let problems = ledger.audit().await.ctx("audit")?;
    ensure!(problems.is_empty(), "audit: {problems:?}");

    for (u, name) in USERS.iter().enumerate() {
        let view = ledger.user_view(name).await.ctx("user_view")?;
        same!(view.pools.len(), 1, "{name}'s pools");
        let pool = &view.pools[0];
        let expected = model.users[u].pool.at(now);
        // Property 2: balances stay within 0..=cap.
        ensure!(
            (0..=pool.cap).contains(&pool.balance),
            "{name}'s balance {} outside 0..={}",
            pool.balance,
            pool.cap
        );
        same!(
            (
                pool.balance,
                pool.cap,
                pool.grant_value,
                pool.grant_interval,
                pool.next_grant_at
            ),
            (
                expected.balance,
                expected.cap,
                expected.grant_value,
                expected.grant_interval,
                expected.next_grant_at()
            ),
            "{name}'s pool (balance, cap, grant value, grant interval, next grant)"
        );
        same!(
            pool.project.as_ref().map(|p| p.name.as_str()),
            model.users[u].project.map(|p| PROJECTS[p]),
            "{name}'s project"
        );
        let mut live: Vec<ServerFacts> = view
            .servers
            .iter()
            .map(|s| {
                (
                    s.key.clone(),
                    s.state,
                    s.periods_charged,
                    s.next_charge_at,
                    s.ready_at,
                    s.billing_value,
                )
            })
            .collect();
        live.sort_by(|a, b| a.0.cmp(&b.0));
        let mut expected: Vec<ServerFacts> = model
            .servers
            .iter()
            .filter(|s| s.user == u && s.is_live())
            .map(model_facts)
            .collect();
        expected.sort_by(|a, b| a.0.cmp(&b.0));
        same!(
            live,
            expected,
            "{name}'s live servers (key, state, periods, next charge, ready, value)"
        );
        let recent: Vec<&str> = view.recent_stops.iter().map(|s| s.key.as_str()).collect();
        let expected: Vec<&str> = model
            .servers
            .iter()
            .filter(|s| {
                s.user == u
                    && s.state == ServerState::Stopped
                    && s.ran_out
                    && s.ended_at.is_some_and(|t| t >= now - 24 * 3600 * SEC)
            })
            .map(|s| s.key.as_str())
            .collect();
        same!(recent, expected, "{name}'s recent stops");
    }
    for (p, name) in PROJECTS.iter().enumerate() {
        let view = ledger.project_view(name).await.ctx("project_view")?;
        let expected = model.projects[p].at(now);
        ensure!(
            (0..=view.cap).contains(&view.balance),
            "project {name}'s balance {} outside 0..={}",
            view.balance,
            view.cap
        );
        same!(
            (
                view.balance,
                view.cap,
                view.grant_value,
                view.grant_interval,
                view.next_grant_at
            ),
            (
                expected.balance,
                expected.cap,
                expected.grant_value,
                expected.grant_interval,
                expected.next_grant_at()
            ),
            "project {name} (balance, cap, grant value, grant interval, next grant)"
        );
    }
    if billed {
        compare_charges(h, model).await?;
    }
    Ok(())
}

async fn whole_journal(h: &Harness, account: (&str, &str)) -> Result<Vec<JournalEntry>, String> {
    let mut all = Vec::new();
    let mut before = None;
    loop {
        let page = match account {
            ("user", name) => h.ledger.user_journal(name, before, JOURNAL_PAGE).await,
            (_, name) => h.ledger.project_journal(name, before, JOURNAL_PAGE).await,
        }
        .ctx("journal")?;
        let Some(last) = page.last() else {
            return Ok(all);
        };
        before = Some(last.id);
        all.extend(page);
    }
}

/// Properties 4 and 5 from the journals.
async fn compare_charges(h: &Harness, model: &Model) -> Check {
    let mut lines = Vec::new();
    let mut user_charges = Vec::new();
    let mut project_charges = Vec::new();
    let accounts = USERS
        .iter()
        .map(|n| ("user", *n))
        .chain(PROJECTS.iter().map(|n| ("project", *n)));
    for (kind, name) in accounts {
        for e in whole_journal(h, (kind, name)).await? {
            if e.kind != EntryKind::Charge {
                continue;
            }
            let (Some(user), Some(server), Some(period)) = (&e.user, &e.server, e.period) else {
                return Err(format!("charge entry without server and period: {e:?}"));
            };
            ensure!(e.delta < 0, "charge entry that adds credits: {e:?}");
            lines.push(ChargeLine {
                account: format!("{kind}:{name}"),
                pool: e.pool.clone(),
                user: user.clone(),
                server: server.clone(),
                period,
                time: e.time,
                delta: e.delta,
                balance_after: e.balance_after,
            });
            let at = (user.clone(), server.clone(), period, e.time);
            if kind == "user" {
                user_charges.push((e.id, at));
            } else {
                project_charges.push((e.id, at, e.balance_after));
            }
        }
    }
    // Property 4: every charge the model made, each once, and nothing else.
    lines.sort();
    let mut expected = model.charges.clone();
    expected.sort();
    if lines != expected {
        let extra: Vec<_> = lines.iter().filter(|l| !expected.contains(l)).collect();
        let missing: Vec<_> = expected.iter().filter(|l| !lines.contains(l)).collect();
        return Err(format!(
            "journal charges differ ({} in the ledger, {} in the model)\n only in the ledger: {extra:#?}\n only in the model: {missing:#?}",
            lines.len(),
            expected.len()
        ));
    }
    // Each server paid its value once per period it ran, and the journal
    // holds exactly that much for each named server.
    let mut journal_totals: BTreeMap<(String, String), i64> = BTreeMap::new();
    for l in &lines {
        *journal_totals
            .entry((l.user.clone(), l.server.clone()))
            .or_default() -= l.delta;
    }
    let mut model_totals: BTreeMap<(String, String), i64> = BTreeMap::new();
    for s in &model.servers {
        ensure!(
            s.paid == s.value * s.periods,
            "model: server {} paid {} for {} periods of {}",
            s.key,
            s.paid,
            s.periods,
            s.value
        );
        if s.paid > 0 {
            *model_totals
                .entry((USERS[s.user].to_string(), s.name.to_string()))
                .or_default() += s.paid;
        }
    }
    same!(
        journal_totals,
        model_totals,
        "credits charged per (user, server)"
    );
    // Property 5: when a user paid part of a period its project shared, the
    // project had been emptied by that period first. A shared period is
    // journaled project first, user next (a server's name and period alone
    // do not identify it: a name is started again and again).
    for (id, at) in &user_charges {
        let shared = project_charges
            .iter()
            .find(|(project_id, project_at, _)| project_id + 1 == *id && project_at == at);
        if let Some((_, _, project_after)) = shared {
            same!(
                *project_after,
                0,
                "project balance after sharing period {at:?}"
            );
        }
    }
    Ok(())
}

/// Every server ever admitted, including ended ones.
async fn compare_servers(h: &Harness, model: &Model) -> Check {
    for s in &model.servers {
        let got = h
            .ledger
            .server(&s.key)
            .await
            .ctx("server")?
            .ok_or_else(|| format!("server {} unknown to the ledger", s.key))?;
        same!(
            (
                got.state,
                got.periods_charged,
                got.ready_at,
                got.next_charge_at,
                got.ended_at,
                got.stop_reason.is_some()
            ),
            (
                s.state, s.periods, s.ready_at, s.next_at, s.ended_at, s.ran_out
            ),
            "server {} (state, periods, ready, next charge, ended, stop reason)",
            s.key
        );
        same!(got.pool.as_str(), "default", "server {}'s pool", s.key);
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Rule 9: the first pool whose pattern matches

/// A string pattern, with what it matches stated independently of any
/// regular expression engine.
#[derive(Debug, Clone, Copy)]
enum TextPattern {
    /// A literal word: matches only itself.
    Exact(&'static str),
    /// `a|b`.
    Either(&'static str, &'static str),
    /// `p.*`: anything starting with `p`.
    Prefix(&'static str),
    /// `[bc]pu`.
    Class,
    /// `[0-2]`: one digit from 0 to 2.
    Digit,
    /// `*s`: not a regular expression, so a glob: anything ending in `s`.
    GlobSuffix(&'static str),
}

impl TextPattern {
    fn text(self) -> String {
        match self {
            Self::Exact(w) => w.to_string(),
            Self::Either(a, b) => format!("{a}|{b}"),
            Self::Prefix(p) => format!("{p}.*"),
            Self::Class => "[bc]pu".to_string(),
            Self::Digit => "[0-2]".to_string(),
            Self::GlobSuffix(s) => format!("*{s}"),
        }
    }

    fn matches(self, t: &str) -> bool {
        match self {
            Self::Exact(w) => t == w,
            Self::Either(a, b) => t == a || t == b,
            Self::Prefix(p) => t.starts_with(p),
            Self::Class => t == "bpu" || t == "cpu",
            Self::Digit => t == "0" || t == "1" || t == "2",
            Self::GlobSuffix(s) => t.ends_with(s),
        }
    }
}

#[derive(Debug, Clone)]
enum Pattern {
    Text(TextPattern),
    Number(i64),
    Bool(bool),
    OneOf(Vec<Pattern>),
    Dict(BTreeMap<String, Pattern>),
}

impl Pattern {
    fn to_json(&self) -> Value {
        match self {
            Self::Text(t) => Value::String(t.text()),
            Self::Number(n) => json!(n),
            Self::Bool(b) => json!(b),
            Self::OneOf(items) => Value::Array(items.iter().map(Self::to_json).collect()),
            Self::Dict(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| (k.clone(), v.to_json()))
                    .collect::<Map<_, _>>(),
            ),
        }
    }

    /// Rule 9's matching, stated directly: a list is "one of", a string a
    /// full match, a number or bool equality, a dict key by key; an option
    /// that is a one-element list counts as its element.
    fn matches(&self, value: &Value) -> bool {
        let value = match value {
            Value::Array(items) if items.len() == 1 => &items[0],
            other => other,
        };
        match self {
            Self::OneOf(items) => items.iter().any(|p| p.matches(value)),
            Self::Text(t) => match value {
                Value::String(s) => t.matches(s),
                Value::Number(n) => t.matches(&n.to_string()),
                Value::Bool(b) => t.matches(if *b { "true" } else { "false" }),
                _ => false,
            },
            Self::Number(n) => value.as_f64() == Some(*n as f64),
            Self::Bool(b) => *value == Value::Bool(*b),
            Self::Dict(map) => match value {
                Value::Object(options) => map
                    .iter()
                    .all(|(k, p)| options.get(k).is_some_and(|v| p.matches(v))),
                _ => false,
            },
        }
    }
}

const WORDS: [&str; 6] = ["gpu", "cpu", "bpu", "gpu-large", "booster", "true"];
const KEYS: [&str; 4] = ["system", "gpus", "res", "image"];

fn text_pattern_strategy() -> impl Strategy<Value = TextPattern> {
    prop_oneof![
        prop::sample::select(&["gpu", "cpu", "true", "2"][..]).prop_map(TextPattern::Exact),
        Just(TextPattern::Either("gpu", "cpu")),
        Just(TextPattern::Either("booster", "bpu")),
        Just(TextPattern::Prefix("gpu")),
        Just(TextPattern::Class),
        Just(TextPattern::Digit),
        Just(TextPattern::GlobSuffix("-large")),
    ]
}

fn scalar_pattern_strategy() -> impl Strategy<Value = Pattern> {
    prop_oneof![
        3 => text_pattern_strategy().prop_map(Pattern::Text),
        2 => (0..4i64).prop_map(Pattern::Number),
        1 => any::<bool>().prop_map(Pattern::Bool),
    ]
}

fn value_pattern_strategy() -> impl Strategy<Value = Pattern> {
    let leaf = prop_oneof![
        3 => scalar_pattern_strategy(),
        2 => prop::collection::vec(scalar_pattern_strategy(), 1..=3).prop_map(Pattern::OneOf),
    ];
    leaf.prop_recursive(2, 8, 2, |inner| {
        prop::collection::btree_map(
            prop::sample::select(&["partition", "gpus"][..]).prop_map(String::from),
            inner,
            0..=2,
        )
        .prop_map(Pattern::Dict)
    })
}

/// A pool's pattern: always an object at the top.
fn pool_pattern_strategy() -> impl Strategy<Value = Pattern> {
    prop::collection::btree_map(
        prop::sample::select(&KEYS[..]).prop_map(String::from),
        value_pattern_strategy(),
        0..=2,
    )
    .prop_map(Pattern::Dict)
}

fn option_value_strategy() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        3 => prop::sample::select(&WORDS[..]).prop_map(|w| json!(w)),
        2 => (0..4i64).prop_map(|n| json!(n)),
        1 => Just(json!(2.0)),
        1 => any::<bool>().prop_map(|b| json!(b)),
        1 => Just(json!("2")),
    ];
    leaf.prop_recursive(2, 8, 2, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..=2).prop_map(Value::Array),
            prop::collection::btree_map(
                prop::sample::select(&["partition", "gpus"][..]).prop_map(String::from),
                inner,
                0..=2,
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn options_strategy() -> impl Strategy<Value = Value> {
    prop::collection::btree_map(
        prop::sample::select(&KEYS[..]).prop_map(String::from),
        option_value_strategy(),
        0..=3,
    )
    .prop_map(|m| Value::Object(m.into_iter().collect()))
}

/// Pools in matching order; `None` is a catch-all.
fn pools_strategy() -> impl Strategy<Value = Vec<Option<Pattern>>> {
    prop::collection::vec(
        prop_oneof![3 => pool_pattern_strategy().prop_map(Some), 1 => Just(None)],
        1..=4,
    )
}

/// The pool rule 9 chooses, by name.
fn expected_pool(pools: &[Option<Pattern>], options: &Value) -> Option<String> {
    let matched = pools
        .iter()
        .position(|p| p.as_ref().is_some_and(|p| p.matches(options)));
    matched
        .or_else(|| pools.iter().position(Option::is_none))
        .map(|i| format!("p{i}"))
}

fn run_matching_property(db: Db, cases: u32) {
    let rt = runtime();
    let h = rt.block_on(Harness::new(db));
    let users = std::sync::atomic::AtomicUsize::new(0);
    let strategy = (
        pools_strategy(),
        prop::collection::vec(options_strategy(), 1..=6),
    );
    let result = runner(cases).run(&strategy, |(pools, spawns)| {
        // One ledger for all cases; each case is a new user.
        let user = format!(
            "u{}",
            users.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        );
        rt.block_on(check_matching(&h, &user, &pools, &spawns))
            .map_err(TestCaseError::fail)
    });
    rt.block_on(h.ledger.close());
    drop(h);
    if let Err(e) = result {
        panic!("{db:?}: {e}");
    }
}

async fn check_matching(
    h: &Harness,
    user: &str,
    pools: &[Option<Pattern>],
    spawns: &[Value],
) -> Check {
    let configs: Vec<PoolConfig> = pools
        .iter()
        .enumerate()
        .map(|(i, pattern)| PoolConfig {
            name: format!("p{i}"),
            cap: 100,
            grant_value: 0,
            grant_interval: 600,
            project: None,
            user_options: pattern.as_ref().map(Pattern::to_json),
        })
        .collect();
    h.ledger
        .upsert_user(user, &configs)
        .await
        .ctx("upsert_user")?;
    for (index, options) in spawns.iter().enumerate() {
        let got = h
            .ledger
            .admit(&SpawnRequest {
                user: user.to_string(),
                server_name: format!("s{index}"),
                server_key: format!("{user}-{index}"),
                user_options: options.clone(),
                billing_value: 1,
                billing_interval: 60,
                promise_secs: PROMISE_SECS,
            })
            .await
            .ctx("admit")?;
        let got = match got {
            Admission::Admitted { pool } => Some(pool),
            Admission::Refused(r) => {
                ensure!(
                    r.pool.is_none(),
                    "spawn #{index} refused for credits, not for matching: {}",
                    r.message
                );
                None
            }
        };
        let patterns: Vec<Option<Value>> = pools
            .iter()
            .map(|p| p.as_ref().map(Pattern::to_json))
            .collect();
        same!(
            got,
            expected_pool(pools, options),
            "spawn #{index} with options {options} against pools {patterns:?}"
        );
    }
    Ok(())
}

#[test]
fn the_matcher_here_reads_patterns_as_the_design_says() {
    let gpu = Pattern::Dict(BTreeMap::from([(
        "system".to_string(),
        Pattern::OneOf(vec![
            Pattern::Text(TextPattern::Prefix("gpu")),
            Pattern::Number(2),
        ]),
    )]));
    assert_eq!(gpu.to_json(), json!({"system": ["gpu.*", 2]}));
    assert!(gpu.matches(&json!({"system": ["gpu-large"], "x": 1})));
    assert!(gpu.matches(&json!({"system": 2.0})));
    assert!(!gpu.matches(&json!({"system": ["gpu", "cpu"]})));
    assert!(!gpu.matches(&json!({})));
    let pools = vec![Some(gpu), None];
    assert_eq!(
        expected_pool(&pools, &json!({"system": "cpu"})).as_deref(),
        Some("p1")
    );
    assert_eq!(expected_pool(&pools[..1], &json!({"system": "cpu"})), None);
}
