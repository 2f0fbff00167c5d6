//! The ledger's one error type. Every variant's message says what to fix;
//! database errors are kept whole for the logs and summarised for users.

use thiserror::Error;

/// Everything a ledger operation can fail with.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum LedgerError {
    /// A value given to the ledger is out of its range or malformed; nothing
    /// was changed. `field` names the input, as the caller spelled it.
    #[error("{field}: {message}")]
    Invalid {
        /// The field, trait or argument that holds the bad value.
        field: String,
        /// What is wrong and what is accepted.
        message: String,
    },

    /// A balance was set above the pool's cap (after any cap change in the
    /// same request); nothing was changed.
    #[error("balance {balance} is above the cap {cap}")]
    AboveCap {
        /// The balance asked for.
        balance: i64,
        /// The cap in force.
        cap: i64,
    },

    /// No user with that name has credits yet (users get them on login).
    #[error("no credits are recorded for user {0:?}; a user gets credits at their first login")]
    UnknownUser(String),

    /// The user exists but has no pool of that name.
    #[error("user {user:?} has no credit pool named {pool:?}")]
    UnknownPool {
        /// The user.
        user: String,
        /// The pool name asked for.
        pool: String,
    },

    /// No project of that name is configured.
    #[error(
        "no project named {0:?}; projects come from credits_available_projects and must exist before users are put in them"
    )]
    UnknownProject(String),

    /// No server with that start identity was admitted.
    #[error("no admitted server has the start identity {0:?}")]
    UnknownServer(String),

    /// A transaction kept losing races with other writers (another replica,
    /// a deadlock, a busy SQLite file) and gave up; nothing was changed.
    #[error("the ledger is busy: {0}; nothing was changed, try again")]
    Busy(String),

    /// A stored row breaks one of the ledger's invariants. The operation was
    /// rolled back; this means a bug or a hand-edited database.
    #[error("ledger invariant broken: {0}")]
    Corrupt(String),

    /// The database URL is not one the ledger can open.
    #[error(
        "database URL {0:?} is not supported: use sqlite://PATH (or sqlite::memory:) or postgres://USER@HOST/DB"
    )]
    UnsupportedUrl(String),

    /// The database could not be reached or answered with an error.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),

    /// The schema migrations could not be applied.
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl LedgerError {
    /// Shorthand for [`LedgerError::Invalid`].
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    /// True for a failure that a later identical attempt may not have: lost
    /// races and an unreachable database.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Busy(_) => true,
            Self::Database(e) => is_transient_db_error(e),
            _ => false,
        }
    }
}

/// Deadlock, serialization failure, a locked SQLite file, a dropped
/// connection: worth another attempt.
pub(crate) fn is_transient_db_error(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(db) => {
            let code = db.code();
            let code = code.as_deref().unwrap_or("");
            // PostgreSQL: serialization_failure, deadlock_detected,
            // lock_not_available. SQLite: BUSY (5), LOCKED (6) and their
            // extended codes (BUSY_SNAPSHOT = 517, ...).
            matches!(code, "40001" | "40P01" | "55P03")
                || code
                    .parse::<i64>()
                    .map(|c| c & 0xff == 5 || c & 0xff == 6)
                    .unwrap_or(false)
        }
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut => true,
        _ => false,
    }
}

/// The ledger's result type.
pub type Result<T, E = LedgerError> = std::result::Result<T, E>;
