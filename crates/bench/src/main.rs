//! Benchmark of the credit ledger against the figures of DESIGN §6: a billing
//! round with 100,000 users and 10,000 running servers under 50 ms, and
//! admission p99 under 5 ms.
//!
//! Everything goes through the ledger's public API (`upsert_user`, `admit`,
//! `mark_ready`, `bill`), on a fresh SQLite file and a fresh PostgreSQL
//! database that are removed at the end, also after an error or Ctrl-C.
//! Time is a [`ManualClock`], so periods come due exactly when the benchmark
//! says and the figures measure the ledger, not the wait.
//!
//! Run it with `bench/ledger.sh` (or `cargo run --release -p credit-bench --
//! --backend both`). Progress goes to stderr; the table (or `--json`) to
//! stdout.

use std::collections::hash_map::RandomState;
use std::future::Future;
use std::hash::BuildHasher;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use credit_ledger::{
    Admission, BillingReport, Ledger, ManualClock, PoolConfig, ProjectConfig, SpawnRequest,
};
use serde::Serialize;
use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection};

/// Where the manual clock starts (2027-01-15).
const START_MS: i64 = 1_800_000_000_000;
/// Credits per period of every benchmark server.
const BILLING_VALUE: i64 = 5;
/// Period length of every benchmark server, in seconds.
const BILLING_INTERVAL_SECS: i64 = 600;
/// The outage before the catch-up round: six periods.
const OUTAGE_SECS: i64 = 3600;
/// How long an admitted spawn's promise holds.
const PROMISE_SECS: i64 = 300;
/// Every user's single pool: starts full, so no server runs out during the
/// benchmark (at most 1 + 6 × rounds + 1 periods of 5 credits are charged).
const USER_CAP: i64 = 1_000;
const USER_GRANT_VALUE: i64 = 10;
const USER_GRANT_INTERVAL_SECS: i64 = 3600;
/// Project pools pay first for their members' servers; large enough never to
/// run out.
const PROJECT_CAP: i64 = 100_000_000;
const PROJECT_GRANT_VALUE: i64 = 1_000;
const PROJECT_GRANT_INTERVAL_SECS: i64 = 3600;
/// Of every 20 users, this many are in a project (10%).
const PROJECT_MEMBERS_PER_20: usize = 2;
/// Most repetitions of each round kind: the idle rounds must all fit before
/// the first period comes due.
const ROUNDS_MAX: usize = 100;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum BackendArg {
    Sqlite,
    Postgres,
    Both,
}

/// Benchmark of the credit ledger: billing rounds and admission latency on
/// SQLite and PostgreSQL, through the ledger's public API.
#[derive(Debug, Parser)]
#[command(name = "credit-bench", version, args_override_self = true)]
struct Args {
    /// Which database(s) to benchmark.
    #[arg(long, value_enum, default_value_t = BackendArg::Both)]
    backend: BackendArg,
    /// Users created with `upsert_user` (one `default` pool each).
    #[arg(long, default_value_t = 100_000)]
    users: usize,
    /// Users with a running server (admit + mark_ready).
    #[arg(long, default_value_t = 10_000)]
    servers: usize,
    /// Admissions timed (each a new server key, each for another user),
    /// with a mark_ready after each.
    #[arg(long, default_value_t = 2_000)]
    admissions: usize,
    /// Projects; 10% of the users are spread over them.
    #[arg(long, default_value_t = 10)]
    projects: usize,
    /// Repetitions of each kind of billing round.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// The PostgreSQL server's maintenance database; the benchmark creates
    /// `ledger_bench_<random>` beside it and drops it at the end.
    #[arg(
        long,
        env = "CREDIT_BENCH_POSTGRES_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    postgres_url: String,
    /// Concurrent tasks creating users and servers on PostgreSQL.
    #[arg(long, default_value_t = 8)]
    postgres_tasks: usize,
    /// Concurrent tasks creating users and servers on SQLite (one writer at
    /// a time anyway).
    #[arg(long, default_value_t = 1)]
    sqlite_tasks: usize,
    /// Print the results as JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Keep the SQLite file and the PostgreSQL database for inspection
    /// instead of removing them.
    #[arg(long)]
    keep: bool,
    /// Run `VACUUM ANALYZE` on the PostgreSQL database after setup, as
    /// autovacuum would on a server that has it on. Off by default: the
    /// ledger itself never does.
    #[arg(long)]
    postgres_analyze: bool,
}

/// The shape of the ledger being measured.
#[derive(Debug, Clone, Copy, Serialize)]
struct Workload {
    users: usize,
    servers: usize,
    projects: usize,
    admissions: usize,
    rounds: usize,
}

impl Workload {
    fn user_name(i: usize) -> String {
        format!("user{i:06}")
    }

    fn project_name(p: usize) -> String {
        format!("project{p:02}")
    }

    fn project_of(&self, user: usize) -> Option<usize> {
        (self.projects > 0 && user % 20 < PROJECT_MEMBERS_PER_20)
            .then(|| (user / 20) % self.projects)
    }

    fn pools(&self, user: usize) -> Vec<PoolConfig> {
        vec![PoolConfig::single(
            USER_CAP,
            USER_GRANT_VALUE,
            USER_GRANT_INTERVAL_SECS,
            self.project_of(user).map(Self::project_name),
        )]
    }

    /// The user running server `k`: every (users / servers)-th user, so that
    /// half of them are in a project.
    fn server_user(&self, k: usize) -> usize {
        k * (self.users / self.servers)
    }

    /// The user of timed admission `j`: a different user each time, none of
    /// them running a benchmark server when users / servers > 1.
    fn admission_user(&self, j: usize) -> usize {
        (j * (self.users / self.admissions).max(1) + 1) % self.users
    }

    fn spawn(&self, user: usize, server_name: &str, key: String) -> SpawnRequest {
        SpawnRequest {
            user: Self::user_name(user),
            server_name: server_name.to_string(),
            server_key: key,
            user_options: serde_json::Value::Object(Default::default()),
            billing_value: BILLING_VALUE,
            billing_interval: BILLING_INTERVAL_SECS,
            promise_secs: PROMISE_SECS,
        }
    }
}

/// Latencies of one kind of operation, in milliseconds.
#[derive(Debug, Clone, Serialize)]
struct Latency {
    count: usize,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    mean_ms: f64,
}

impl Latency {
    fn of(samples: &[Duration]) -> Self {
        let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        ms.sort_by(f64::total_cmp);
        let rank = |p: f64| {
            if ms.is_empty() {
                return 0.0;
            }
            let index = ((p / 100.0) * ms.len() as f64).ceil() as usize;
            ms[index.clamp(1, ms.len()) - 1]
        };
        Self {
            count: ms.len(),
            p50_ms: rank(50.0),
            p99_ms: rank(99.0),
            max_ms: ms.last().copied().unwrap_or(0.0),
            mean_ms: if ms.is_empty() {
                0.0
            } else {
                ms.iter().sum::<f64>() / ms.len() as f64
            },
        }
    }
}

/// Repetitions of one kind of billing round.
#[derive(Debug, Clone, Serialize)]
struct Rounds {
    runs: usize,
    median_ms: f64,
    max_ms: f64,
    /// Every run's time, in order.
    runs_ms: Vec<f64>,
    /// Periods the ledger reported charged, per run.
    periods_charged: Vec<u64>,
    /// Periods the benchmark expected per run.
    periods_expected: u64,
}

impl Rounds {
    fn of(times: &[Duration], periods_charged: Vec<u64>, periods_expected: u64) -> Self {
        let runs_ms: Vec<f64> = times.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        let mut sorted = runs_ms.clone();
        sorted.sort_by(f64::total_cmp);
        let median_ms = match sorted.len() {
            0 => 0.0,
            n if !n.is_multiple_of(2) => sorted[n / 2],
            n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
        };
        Self {
            runs: runs_ms.len(),
            median_ms,
            max_ms: sorted.last().copied().unwrap_or(0.0),
            runs_ms,
            periods_charged,
            periods_expected,
        }
    }
}

/// Creating users or servers: throughput and per-operation latency.
#[derive(Debug, Clone, Serialize)]
struct Setup {
    count: usize,
    tasks: usize,
    secs: f64,
    per_sec: f64,
    latency: Latency,
}

impl Setup {
    fn of(count: usize, tasks: usize, elapsed: Duration, samples: &[Duration]) -> Self {
        let secs = elapsed.as_secs_f64();
        Self {
            count,
            tasks,
            secs,
            per_sec: count as f64 / secs.max(1e-9),
            latency: Latency::of(samples),
        }
    }
}

/// Everything measured on one database.
#[derive(Debug, Clone, Serialize)]
struct BackendReport {
    backend: &'static str,
    /// `upsert_user` of new users.
    setup_users: Setup,
    /// `admit` + `mark_ready` of the running servers.
    setup_servers: Setup,
    /// (a) Nothing due: the steady state between periods.
    round_idle: Rounds,
    /// (b) Every running server has one period due.
    round_one_period: Rounds,
    /// (c) After a one-hour outage: six periods due on every server.
    round_outage: Rounds,
    /// `upsert_user` of an existing user with unchanged config (the hub's
    /// call before each spawn).
    upsert_existing: Latency,
    /// `admit` of a new server key for a user with credits.
    admit: Latency,
    /// `mark_ready` of the server just admitted.
    mark_ready: Latency,
    /// Wall-clock time of everything on this database.
    total_secs: f64,
    /// What the reader should know about the conditions (e.g. PostgreSQL's
    /// autovacuum being off).
    notes: Vec<String>,
}

#[derive(Debug, Serialize)]
struct Output {
    workload: Workload,
    results: Vec<BackendReport>,
    errors: Vec<String>,
    interrupted: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(message) = check_args(&args) {
        eprintln!("credit-bench: {message}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("credit-bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(args))
}

fn check_args(args: &Args) -> Result<(), String> {
    if args.users == 0 || args.servers == 0 || args.admissions == 0 {
        return Err("--users, --servers and --admissions must be at least 1".into());
    }
    if args.servers > args.users {
        return Err("--servers cannot exceed --users (one server per user)".into());
    }
    if !(1..=ROUNDS_MAX).contains(&args.rounds) {
        return Err(format!("--rounds must be 1 to {ROUNDS_MAX}"));
    }
    if args.postgres_tasks == 0 || args.sqlite_tasks == 0 {
        return Err("--postgres-tasks and --sqlite-tasks must be at least 1".into());
    }
    Ok(())
}

async fn run(args: Args) -> ExitCode {
    let workload = Workload {
        users: args.users,
        servers: args.servers,
        projects: args.projects,
        admissions: args.admissions,
        rounds: args.rounds,
    };
    let mut output = Output {
        workload,
        results: Vec::new(),
        errors: Vec::new(),
        interrupted: false,
    };
    let started = Instant::now();
    let mut backends = Vec::new();
    if matches!(args.backend, BackendArg::Sqlite | BackendArg::Both) {
        backends.push("sqlite");
    }
    if matches!(args.backend, BackendArg::Postgres | BackendArg::Both) {
        backends.push("postgres");
    }
    for backend in backends {
        let outcome = match backend {
            "sqlite" => bench_sqlite(&args, workload).await,
            _ => bench_postgres(&args, workload).await,
        };
        match outcome {
            Outcome::Done(report) => output.results.push(*report),
            Outcome::Failed(error) => {
                eprintln!("credit-bench: {backend}: {error}");
                output.errors.push(format!("{backend}: {error}"));
            }
            Outcome::Interrupted => {
                eprintln!("credit-bench: interrupted during {backend}");
                output.interrupted = true;
                break;
            }
        }
    }
    eprintln!(
        "credit-bench: finished in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    if args.json {
        match serde_json::to_string_pretty(&output) {
            Ok(text) => println!("{text}"),
            Err(e) => eprintln!("credit-bench: cannot write JSON: {e}"),
        }
    } else {
        print_table(&output);
    }
    if output.interrupted {
        ExitCode::from(130)
    } else if output.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

enum Outcome {
    Done(Box<BackendReport>),
    Failed(String),
    Interrupted,
}

/// Runs `work` as its own task until it ends or Ctrl-C (or SIGTERM) arrives; the caller
/// then removes the database either way.
async fn guarded<F>(work: F) -> Outcome
where
    F: Future<Output = Result<BackendReport, BoxError>> + Send + 'static,
{
    let mut handle = tokio::spawn(work);
    tokio::select! {
        joined = &mut handle => match joined {
            Ok(Ok(report)) => Outcome::Done(Box::new(report)),
            Ok(Err(error)) => Outcome::Failed(error.to_string()),
            Err(join) => Outcome::Failed(format!("benchmark task failed: {join}")),
        },
        () = interrupted() => {
            handle.abort();
            let _ = handle.await;
            Outcome::Interrupted
        }
    }
}

/// Resolves at Ctrl-C (SIGINT) or, on Unix, SIGTERM.
async fn interrupted() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// A random suffix for the temporary database's name.
fn random_suffix() -> String {
    let bits = RandomState::new().hash_one(std::process::id());
    format!("{bits:016x}")
}

async fn bench_sqlite(args: &Args, workload: Workload) -> Outcome {
    let dir: PathBuf = std::env::temp_dir().join(format!("credit-bench-{}", random_suffix()));
    if let Err(e) = std::fs::create_dir_all(&dir) {
        return Outcome::Failed(format!("cannot create {}: {e}", dir.display()));
    }
    let url = format!("sqlite://{}", dir.join("ledger.db").display());
    eprintln!("credit-bench: sqlite: {url}");
    let outcome = guarded(run_backend(
        "sqlite",
        url,
        workload,
        args.sqlite_tasks,
        None,
        Vec::new(),
    ))
    .await;
    if args.keep {
        eprintln!("credit-bench: sqlite: kept {}", dir.display());
    } else if let Err(e) = std::fs::remove_dir_all(&dir) {
        eprintln!("credit-bench: sqlite: cannot remove {}: {e}", dir.display());
    }
    outcome
}

async fn bench_postgres(args: &Args, workload: Workload) -> Outcome {
    let name = format!("ledger_bench_{}", random_suffix());
    let url = match with_database(&args.postgres_url, &name) {
        Ok(url) => url,
        Err(e) => return Outcome::Failed(e),
    };
    if let Err(e) = admin_sql(&args.postgres_url, &format!("CREATE DATABASE \"{name}\"")).await {
        return Outcome::Failed(format!(
            "cannot create database {name} through {}: {e}",
            args.postgres_url
        ));
    }
    eprintln!("credit-bench: postgres: created database {name}");
    let mut notes = Vec::new();
    match admin_query(&args.postgres_url, "SELECT current_setting('autovacuum')").await {
        Ok(setting) if setting == "on" => {}
        Ok(setting) => notes.push(format!(
            "the server's autovacuum is {setting}: no VACUUM or ANALYZE runs unless --postgres-analyze{}",
            if args.postgres_analyze {
                " (given: once, after setup)"
            } else {
                " (not given)"
            }
        )),
        Err(e) => notes.push(format!("cannot read the server's autovacuum setting: {e}")),
    }
    let analyze = args.postgres_analyze.then(|| url.clone());
    let outcome = guarded(run_backend(
        "postgres",
        url,
        workload,
        args.postgres_tasks,
        analyze,
        notes,
    ))
    .await;
    if args.keep {
        eprintln!("credit-bench: postgres: kept database {name}");
    } else {
        let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
        let drop = admin_sql(&args.postgres_url, &sql);
        match tokio::time::timeout(Duration::from_secs(60), drop).await {
            Ok(Ok(())) => eprintln!("credit-bench: postgres: dropped database {name}"),
            Ok(Err(e)) => eprintln!(
                "credit-bench: postgres: cannot drop database {name}: {e}; drop it by hand"
            ),
            Err(_) => eprintln!(
                "credit-bench: postgres: dropping database {name} timed out; drop it by hand"
            ),
        }
    }
    outcome
}

/// Runs one statement on the maintenance database.
async fn admin_sql(admin_url: &str, sql: &str) -> Result<(), BoxError> {
    let mut conn = PgConnection::connect(admin_url).await?;
    conn.execute(sqlx::raw_sql(AssertSqlSafe(sql.to_string())))
        .await?;
    conn.close().await?;
    Ok(())
}

/// Reads one text value from the maintenance database.
async fn admin_query(admin_url: &str, sql: &'static str) -> Result<String, BoxError> {
    let mut conn = PgConnection::connect(admin_url).await?;
    let value: String = sqlx::query_scalar(sql).fetch_one(&mut conn).await?;
    conn.close().await?;
    Ok(value)
}

/// `admin_url` with its database replaced by `database`.
fn with_database(admin_url: &str, database: &str) -> Result<String, String> {
    let scheme_end = admin_url
        .find("://")
        .ok_or_else(|| format!("{admin_url:?} is not a postgres:// URL"))?
        + 3;
    let (base, query) = match admin_url.find('?') {
        Some(q) => (&admin_url[..q], &admin_url[q..]),
        None => (admin_url, ""),
    };
    let authority_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |slash| scheme_end + slash);
    Ok(format!("{}/{database}{query}", &base[..authority_end]))
}

fn progress(backend: &str, what: &str, done: usize, total: usize, since: Instant) {
    let secs = since.elapsed().as_secs_f64();
    eprintln!(
        "credit-bench: {backend}: {what} {done}/{total} in {secs:.1} s ({:.0}/s)",
        done as f64 / secs.max(1e-9)
    );
}

/// Runs `op(0..count)` on `tasks` concurrent tasks; returns the elapsed time
/// and every call's latency.
async fn concurrently<F, Fut>(
    backend: &'static str,
    what: &'static str,
    count: usize,
    tasks: usize,
    op: F,
) -> Result<(Duration, Vec<Duration>), BoxError>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicUsize::new(0));
    let step = (count / 10).max(1);
    let started = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..tasks {
        let op = op.clone();
        let next = next.clone();
        set.spawn(async move {
            let mut samples = Vec::with_capacity(count / tasks + 1);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return Ok::<_, BoxError>(samples);
                }
                let t = Instant::now();
                op(i).await?;
                samples.push(t.elapsed());
                if (i + 1).is_multiple_of(step) {
                    progress(backend, what, i + 1, count, started);
                }
            }
        });
    }
    let mut all = Vec::with_capacity(count);
    while let Some(joined) = set.join_next().await {
        all.extend(joined??);
    }
    Ok((started.elapsed(), all))
}

/// Times one billing round.
async fn timed_bill(ledger: &Ledger) -> Result<(Duration, BillingReport), BoxError> {
    let t = Instant::now();
    let report = ledger.bill().await?;
    Ok((t.elapsed(), report))
}

fn check_round(backend: &str, what: &str, report: &BillingReport, expected: u64) {
    if report.periods_charged != expected || !report.new_stops.is_empty() {
        eprintln!(
            "credit-bench: {backend}: warning: {what} charged {} periods (expected {expected}) and stopped {} servers",
            report.periods_charged,
            report.new_stops.len()
        );
    }
}

/// Everything on one database: setup, the three kinds of round, admissions.
/// `analyze_url`, when given, is the PostgreSQL database to `VACUUM ANALYZE`
/// after setup.
async fn run_backend(
    backend: &'static str,
    url: String,
    w: Workload,
    tasks: usize,
    analyze_url: Option<String>,
    mut notes: Vec<String>,
) -> Result<BackendReport, BoxError> {
    let started = Instant::now();
    let clock = ManualClock::new(START_MS);
    let ledger = Ledger::open(&url, Arc::new(clock.clone())).await?;

    for p in 0..w.projects {
        ledger
            .upsert_project(&ProjectConfig {
                name: Workload::project_name(p),
                cap: PROJECT_CAP,
                grant_value: PROJECT_GRANT_VALUE,
                grant_interval: PROJECT_GRANT_INTERVAL_SECS,
            })
            .await?;
    }

    eprintln!(
        "credit-bench: {backend}: creating {} users with {tasks} task(s)",
        w.users
    );
    let (elapsed, samples) = {
        let ledger = ledger.clone();
        concurrently(backend, "users", w.users, tasks, move |i| {
            let ledger = ledger.clone();
            async move {
                ledger
                    .upsert_user(&Workload::user_name(i), &w.pools(i))
                    .await?;
                Ok(())
            }
        })
        .await?
    };
    let setup_users = Setup::of(w.users, tasks, elapsed, &samples);

    eprintln!(
        "credit-bench: {backend}: starting {} servers with {tasks} task(s)",
        w.servers
    );
    let (elapsed, samples) = {
        let ledger = ledger.clone();
        concurrently(backend, "servers", w.servers, tasks, move |k| {
            let ledger = ledger.clone();
            async move {
                let req = w.spawn(w.server_user(k), "", format!("srv-{k}"));
                match ledger.admit(&req).await? {
                    Admission::Admitted { .. } => {}
                    Admission::Refused(r) => {
                        return Err(format!("server {k} refused: {}", r.message).into());
                    }
                }
                if let Some(stop) = ledger.mark_ready(&req.server_key, ledger.now()).await? {
                    return Err(format!("server {k} stopped at once: {}", stop.reason).into());
                }
                Ok(())
            }
        })
        .await?
    };
    let setup_servers = Setup::of(w.servers, tasks, elapsed, &samples);

    if let Some(url) = analyze_url {
        eprintln!("credit-bench: {backend}: VACUUM ANALYZE");
        let t = Instant::now();
        admin_sql(&url, "VACUUM ANALYZE").await?;
        notes.push(format!(
            "VACUUM ANALYZE after setup took {:.1} s",
            t.elapsed().as_secs_f64()
        ));
    }

    // (a) Nothing due: rounds spread over the first period.
    eprintln!("credit-bench: {backend}: billing rounds");
    let step_ms = (BILLING_INTERVAL_SECS * 1000 - 1) / (w.rounds as i64 + 1);
    let (mut times, mut periods) = (Vec::new(), Vec::new());
    for r in 0..w.rounds {
        clock.set(START_MS + step_ms * (r as i64 + 1));
        let (t, report) = timed_bill(&ledger).await?;
        check_round(backend, "an idle round", &report, 0);
        times.push(t);
        periods.push(report.periods_charged);
    }
    let round_idle = Rounds::of(&times, periods, 0);

    // (b) One period due on every server.
    let expected = w.servers as u64;
    let (mut times, mut periods) = (Vec::new(), Vec::new());
    for r in 0..w.rounds {
        clock.set(START_MS + BILLING_INTERVAL_SECS * 1000 * (r as i64 + 1));
        let (t, report) = timed_bill(&ledger).await?;
        check_round(backend, "a one-period round", &report, expected);
        times.push(t);
        periods.push(report.periods_charged);
    }
    let round_one_period = Rounds::of(&times, periods, expected);

    // (c) After an outage: six periods due on every server.
    let expected = (w.servers as u64) * (OUTAGE_SECS / BILLING_INTERVAL_SECS) as u64;
    let (mut times, mut periods) = (Vec::new(), Vec::new());
    for _ in 0..w.rounds {
        clock.advance_secs(OUTAGE_SECS);
        let (t, report) = timed_bill(&ledger).await?;
        check_round(backend, "an outage round", &report, expected);
        times.push(t);
        periods.push(report.periods_charged);
    }
    let round_outage = Rounds::of(&times, periods, expected);

    // Admission latency, one client, on the full ledger; nothing is due.
    eprintln!(
        "credit-bench: {backend}: timing {} admissions",
        w.admissions
    );
    let mut upserts = Vec::with_capacity(w.admissions);
    let mut admits = Vec::with_capacity(w.admissions);
    let mut readies = Vec::with_capacity(w.admissions);
    for j in 0..w.admissions {
        let user = w.admission_user(j);
        let t = Instant::now();
        ledger
            .upsert_user(&Workload::user_name(user), &w.pools(user))
            .await?;
        upserts.push(t.elapsed());

        let req = w.spawn(user, "bench", format!("adm-{j}"));
        let t = Instant::now();
        let admission = ledger.admit(&req).await?;
        admits.push(t.elapsed());
        if let Admission::Refused(r) = admission {
            return Err(format!("admission {j} refused: {}", r.message).into());
        }

        let t = Instant::now();
        let stop = ledger.mark_ready(&req.server_key, ledger.now()).await?;
        readies.push(t.elapsed());
        if let Some(stop) = stop {
            return Err(format!("admission {j} stopped at once: {}", stop.reason).into());
        }
    }
    ledger.close().await;

    Ok(BackendReport {
        backend,
        setup_users,
        setup_servers,
        round_idle,
        round_one_period,
        round_outage,
        upsert_existing: Latency::of(&upserts),
        admit: Latency::of(&admits),
        mark_ready: Latency::of(&readies),
        total_secs: started.elapsed().as_secs_f64(),
        notes,
    })
}

fn ms(value: f64) -> String {
    if value < 10.0 {
        format!("{value:.2}")
    } else if value < 100.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.0}")
    }
}

fn print_table(output: &Output) {
    let w = &output.workload;
    println!(
        "credit-ledger benchmark: {} users, {} running servers ({} credits / {} s), {} projects, {} rounds per case, {} admissions",
        w.users,
        w.servers,
        BILLING_VALUE,
        BILLING_INTERVAL_SECS,
        w.projects,
        w.rounds,
        w.admissions
    );
    if output.results.is_empty() {
        println!("no results");
        return;
    }
    let mut rows: Vec<(String, Vec<String>)> = Vec::new();
    let mut row = |label: &str, f: &dyn Fn(&BackendReport) -> String| {
        rows.push((
            label.to_string(),
            output.results.iter().map(f).collect::<Vec<_>>(),
        ));
    };
    row("", &|r| r.backend.to_string());
    row("setup: upsert_user, new", &|r| {
        format!(
            "{:.0} users/s ({:.1} s, {} tasks)",
            r.setup_users.per_sec, r.setup_users.secs, r.setup_users.tasks
        )
    });
    row("  latency p50 / p99 ms", &|r| {
        format!(
            "{} / {}",
            ms(r.setup_users.latency.p50_ms),
            ms(r.setup_users.latency.p99_ms)
        )
    });
    row("setup: admit + mark_ready", &|r| {
        format!(
            "{:.0} servers/s ({:.1} s, {} tasks)",
            r.setup_servers.per_sec, r.setup_servers.secs, r.setup_servers.tasks
        )
    });
    let round = |r: &Rounds| {
        let periods = if r.periods_charged.iter().all(|&p| p == r.periods_expected) {
            String::new()
        } else {
            format!(
                " [charged {:?}, expected {}]",
                r.periods_charged, r.periods_expected
            )
        };
        format!("{} / {}{periods}", ms(r.median_ms), ms(r.max_ms))
    };
    row("(a) round, nothing due, med / max ms", &|r| {
        round(&r.round_idle)
    });
    row(
        &format!("(b) round, {} periods due, med / max ms", w.servers),
        &|r| round(&r.round_one_period),
    );
    row(
        &format!(
            "(c) round after {} h, {} periods, med / max ms",
            OUTAGE_SECS / 3600,
            w.servers as i64 * (OUTAGE_SECS / BILLING_INTERVAL_SECS)
        ),
        &|r| round(&r.round_outage),
    );
    let latency = |l: &Latency| format!("{} / {} / {}", ms(l.p50_ms), ms(l.p99_ms), ms(l.max_ms));
    row("admit p50 / p99 / max ms", &|r| latency(&r.admit));
    row("mark_ready p50 / p99 / max ms", &|r| latency(&r.mark_ready));
    row("upsert_user, existing p50 / p99 / max ms", &|r| {
        latency(&r.upsert_existing)
    });
    row("total time", &|r| format!("{:.0} s", r.total_secs));

    let label_width = rows.iter().map(|(l, _)| l.len()).max().unwrap_or(0);
    let columns = output.results.len();
    let widths: Vec<usize> = (0..columns)
        .map(|c| rows.iter().map(|(_, v)| v[c].len()).max().unwrap_or(0))
        .collect();
    println!();
    for (label, values) in &rows {
        let mut line = format!("{label:<label_width$}");
        for (value, width) in values.iter().zip(&widths) {
            line.push_str(&format!("   {value:<width$}"));
        }
        println!("{}", line.trim_end());
    }
    println!();
    println!("DESIGN §6 aims: a round under 50 ms; admission p99 under 5 ms.");
    for r in &output.results {
        let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
        println!(
            "  {:<8} round (b) median {} ms: {}; round (c) median {} ms: {}; admit p99 {} ms: {}",
            r.backend,
            ms(r.round_one_period.median_ms),
            verdict(r.round_one_period.median_ms < 50.0),
            ms(r.round_outage.median_ms),
            verdict(r.round_outage.median_ms < 50.0),
            ms(r.admit.p99_ms),
            verdict(r.admit.p99_ms < 5.0),
        );
    }
    for r in &output.results {
        for note in &r.notes {
            println!("note: {}: {note}", r.backend);
        }
    }
    for error in &output.errors {
        println!("error: {error}");
    }
    if output.interrupted {
        println!("interrupted: results are incomplete");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_is_replaced_in_the_url() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "b").unwrap(),
            "postgres://postgres@127.0.0.1:5432/b"
        );
        assert_eq!(
            with_database("postgres://u:p@h/postgres?sslmode=disable", "b").unwrap(),
            "postgres://u:p@h/b?sslmode=disable"
        );
        assert_eq!(
            with_database("postgresql://h:5432", "b").unwrap(),
            "postgresql://h:5432/b"
        );
        assert!(with_database("nonsense", "b").is_err());
    }

    #[test]
    fn workload_spreads_servers_and_admissions() {
        let w = Workload {
            users: 100_000,
            servers: 10_000,
            projects: 10,
            admissions: 2_000,
            rounds: 5,
        };
        let in_project = (0..w.servers)
            .filter(|&k| w.project_of(w.server_user(k)).is_some())
            .count();
        assert_eq!(in_project, 5_000);
        let admitted: std::collections::BTreeSet<usize> =
            (0..w.admissions).map(|j| w.admission_user(j)).collect();
        assert_eq!(admitted.len(), w.admissions);
        assert!(admitted.iter().all(|u| u % 10 != 0));
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let l = Latency::of(&samples);
        assert_eq!((l.p50_ms, l.p99_ms, l.max_ms), (50.0, 99.0, 100.0));
    }
}
