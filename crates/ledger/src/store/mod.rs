//! Durable storage through sqlx, on SQLite (a file in WAL mode) or
//! PostgreSQL, with the same behaviour on both.
//!
//! Every ledger operation is one [`Tx`]. Writers take their locks up front:
//! on SQLite `BEGIN IMMEDIATE` makes the file's single writer explicit; on
//! PostgreSQL rows are locked with `FOR UPDATE`, project pools before user
//! pools, each set in id order, so concurrent replicas queue instead of
//! deadlocking. The SQL is shared where the dialects agree (`$N` parameters
//! work on both) and split only for locking and bulk writes.

mod queries;
mod rows;

pub(crate) use rows::*;

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, Postgres, Sqlite, SqlitePool, Transaction};

use crate::error::{LedgerError, Result};

/// Which database a ledger runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file (or memory, for tests).
    Sqlite,
    /// A PostgreSQL database, which several replicas and hubs may share.
    Postgres,
}

/// A connection pool to one of the two databases.
#[derive(Debug, Clone)]
pub(crate) enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// One open transaction.
pub(crate) enum Tx {
    Sqlite(Transaction<'static, Sqlite>),
    Postgres(Transaction<'static, Postgres>),
}

/// Runs `$body` with `$conn` bound to the transaction's connection, compiled
/// once per database so that the same query text serves both.
macro_rules! on_tx {
    ($tx:expr, $conn:ident => $body:expr) => {
        match $tx {
            $crate::store::Tx::Sqlite(t) => {
                let $conn = &mut **t;
                $body
            }
            $crate::store::Tx::Postgres(t) => {
                let $conn = &mut **t;
                $body
            }
        }
    };
}
pub(crate) use on_tx;

/// Connections a SQLite ledger keeps: one writer at a time anyway, the rest
/// serve reads beside it (WAL).
const SQLITE_CONNECTIONS_MAX: u32 = 4;
/// Connections a PostgreSQL ledger keeps.
const POSTGRES_CONNECTIONS_MAX: u32 = 16;
/// How long a SQLite writer waits for the file lock before `Busy`.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an operation waits for a free connection.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);

impl Db {
    /// Opens `url` (`sqlite://PATH`, `sqlite::memory:`, `postgres://...`)
    /// and applies the embedded migrations.
    pub(crate) async fn open(url: &str) -> Result<Self> {
        if url.starts_with("sqlite:") {
            let memory = url.contains(":memory:") || url.contains("mode=memory");
            let options = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .foreign_keys(true)
                .busy_timeout(SQLITE_BUSY_TIMEOUT)
                .journal_mode(if memory {
                    SqliteJournalMode::Memory
                } else {
                    SqliteJournalMode::Wal
                })
                // FULL: a committed charge survives a power cut, not just a
                // process crash.
                .synchronous(SqliteSynchronous::Full);
            let pool = SqlitePoolOptions::new()
                // An in-memory database exists once per connection.
                .max_connections(if memory { 1 } else { SQLITE_CONNECTIONS_MAX })
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .connect_with(options)
                .await?;
            sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
            Ok(Db::Sqlite(pool))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let options = PgConnectOptions::from_str(url)?;
            let pool = PgPoolOptions::new()
                .max_connections(POSTGRES_CONNECTIONS_MAX)
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .connect_with(options)
                .await?;
            sqlx::migrate!("./migrations/postgres").run(&pool).await?;
            Ok(Db::Postgres(pool))
        } else {
            Err(LedgerError::UnsupportedUrl(url.to_string()))
        }
    }

    pub(crate) fn backend(&self) -> Backend {
        match self {
            Db::Sqlite(_) => Backend::Sqlite,
            Db::Postgres(_) => Backend::Postgres,
        }
    }

    /// A transaction that will write: on SQLite it takes the write lock now,
    /// so it never fails half-way for a lock it could not upgrade.
    pub(crate) async fn begin_write(&self) -> Result<Tx> {
        Ok(match self {
            Db::Sqlite(pool) => Tx::Sqlite(pool.begin_with("BEGIN IMMEDIATE").await?),
            Db::Postgres(pool) => Tx::Postgres(pool.begin().await?),
        })
    }

    /// A transaction that only reads, seeing one consistent state.
    pub(crate) async fn begin_read(&self) -> Result<Tx> {
        Ok(match self {
            Db::Sqlite(pool) => Tx::Sqlite(pool.begin().await?),
            Db::Postgres(pool) => Tx::Postgres(
                pool.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    .await?,
            ),
        })
    }

    /// Closes every connection; later operations fail.
    pub(crate) async fn close(&self) {
        match self {
            Db::Sqlite(pool) => pool.close().await,
            Db::Postgres(pool) => pool.close().await,
        }
    }
}

impl Tx {
    pub(crate) async fn commit(self) -> Result<()> {
        match self {
            Tx::Sqlite(t) => t.commit().await?,
            Tx::Postgres(t) => t.commit().await?,
        }
        Ok(())
    }

    pub(crate) fn backend(&self) -> Backend {
        match self {
            Tx::Sqlite(_) => Backend::Sqlite,
            Tx::Postgres(_) => Backend::Postgres,
        }
    }
}
