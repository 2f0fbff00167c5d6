//! Opening a fresh ledger on either database, with a manual clock.

use std::path::PathBuf;
use std::sync::Arc;

use credit_ledger::{
    Actor, Admission, Ledger, ManualClock, Millis, PoolConfig, ProjectConfig, SpawnRequest,
};
use sqlx::Connection;

/// 2026-11-01T00:00:00Z: tests start here.
pub const START: Millis = 1_793_491_200_000;

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// A ledger on a database of its own, dropped with it.
pub struct Harness {
    pub ledger: Ledger,
    pub clock: ManualClock,
    pub url: String,
    _guard: Guard,
}

enum Guard {
    Sqlite(PathBuf),
    Postgres { admin_url: String, name: String },
}

impl Drop for Guard {
    fn drop(&mut self) {
        match self {
            Guard::Sqlite(dir) => {
                let _ = std::fs::remove_dir_all(dir);
            }
            Guard::Postgres { admin_url, name } => {
                let (admin_url, name) = (admin_url.clone(), name.clone());
                // Drop runs outside any runtime the test may still hold.
                let _ = std::thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap();
                    rt.block_on(async {
                        if let Ok(mut c) = sqlx::PgConnection::connect(&admin_url).await {
                            let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
                            let _ = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut c).await;
                        }
                    });
                })
                .join();
            }
        }
    }
}

/// The PostgreSQL server tests use.
pub fn postgres_admin_url() -> String {
    std::env::var("CREDIT_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

impl Harness {
    pub async fn new(db: Db) -> Self {
        let clock = ManualClock::new(START);
        let (url, guard) = match db {
            Db::Sqlite => {
                let dir =
                    std::env::temp_dir().join(format!("ledger-test-{}", uuid::Uuid::new_v4()));
                std::fs::create_dir_all(&dir).unwrap();
                let url = format!("sqlite://{}", dir.join("credits.db").display());
                (url, Guard::Sqlite(dir))
            }
            Db::Postgres => {
                let admin_url = postgres_admin_url();
                let name = format!("ledger_test_{}", uuid::Uuid::new_v4().simple());
                let mut c = sqlx::PgConnection::connect(&admin_url).await.unwrap_or_else(|e| {
                    panic!(
                        "PostgreSQL is needed for these tests and {admin_url} can't be reached ({e}). \
                         Start it (pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start) \
                         or set CREDIT_TEST_POSTGRES_URL."
                    )
                });
                let sql = format!("CREATE DATABASE \"{name}\"");
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .execute(&mut c)
                    .await
                    .unwrap();
                let base = admin_url.rsplit_once('/').unwrap().0;
                (
                    format!("{base}/{name}"),
                    Guard::Postgres { admin_url, name },
                )
            }
        };
        let ledger = Ledger::open(&url, Arc::new(clock.clone())).await.unwrap();
        Self {
            ledger,
            clock,
            url,
            _guard: guard,
        }
    }

    /// The clock's time.
    pub fn now(&self) -> Millis {
        use credit_ledger::Clock;
        self.clock.now_ms()
    }

    /// Moves the clock forward.
    pub fn advance(&self, secs: i64) {
        self.clock.advance_secs(secs);
    }

    /// Closes the ledger and opens it again on the same database, as a
    /// restarted service would.
    pub async fn reopen(&mut self) {
        self.ledger.close().await;
        self.ledger = Ledger::open(&self.url, Arc::new(self.clock.clone()))
            .await
            .unwrap();
    }

    pub async fn project(&self, name: &str, cap: i64, grant_value: i64, grant_interval: i64) {
        self.ledger
            .upsert_project(&ProjectConfig {
                name: name.into(),
                cap,
                grant_value,
                grant_interval,
            })
            .await
            .unwrap();
    }

    /// A user with the spec's single pool.
    pub async fn user(
        &self,
        name: &str,
        cap: i64,
        grant_value: i64,
        grant_interval: i64,
        project: Option<&str>,
    ) {
        self.ledger
            .upsert_user(
                name,
                &[PoolConfig::single(
                    cap,
                    grant_value,
                    grant_interval,
                    project.map(String::from),
                )],
            )
            .await
            .unwrap();
    }

    pub async fn admit(
        &self,
        user: &str,
        server: &str,
        key: &str,
        value: i64,
        interval: i64,
    ) -> Admission {
        self.admit_with(user, server, key, value, interval, serde_json::json!({}))
            .await
    }

    pub async fn admit_with(
        &self,
        user: &str,
        server: &str,
        key: &str,
        value: i64,
        interval: i64,
        options: serde_json::Value,
    ) -> Admission {
        self.ledger
            .admit(&SpawnRequest {
                user: user.into(),
                server_name: server.into(),
                server_key: key.into(),
                user_options: options,
                billing_value: value,
                billing_interval: interval,
                promise_secs: 600,
            })
            .await
            .unwrap()
    }

    /// Admits and marks ready now; panics if refused.
    pub async fn start(&self, user: &str, server: &str, key: &str, value: i64, interval: i64) {
        match self.admit(user, server, key, value, interval).await {
            Admission::Admitted { .. } => {}
            Admission::Refused(r) => panic!("spawn refused: {}", r.message),
        }
        assert_eq!(self.ledger.mark_ready(key, self.now()).await.unwrap(), None);
    }

    /// The balance of a user's pool now.
    pub async fn balance(&self, user: &str) -> i64 {
        self.ledger.user_view(user).await.unwrap().pools[0].balance
    }

    pub async fn project_balance(&self, name: &str) -> i64 {
        self.ledger.project_view(name).await.unwrap().balance
    }

    /// Asserts every stored invariant holds.
    pub async fn assert_audit_clean(&self) {
        let problems = self.ledger.audit().await.unwrap();
        assert!(problems.is_empty(), "ledger audit found: {problems:#?}");
    }
}

pub fn admin(reason: &str) -> Actor {
    Actor {
        name: "admin".into(),
        reason: Some(reason.into()),
    }
}

/// Defines `mod $name { sqlite, postgres }` running `$name(Harness)` on both.
#[macro_export]
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name($crate::harness::Harness::new($crate::harness::Db::Sqlite).await).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name($crate::harness::Harness::new($crate::harness::Db::Postgres).await).await
                }
            }
        )*
    };
}
