//! One error type for everything FraiseQL returns; step and handler functions return it too.

use std::fmt;

/// `Result<T, fraiseql::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, with enough context to act on it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration could not be loaded or is invalid.
    #[error("configuration: {0}")]
    Config(String),
    /// The registrations made by the macros do not fit together or do not fit the config.
    #[error("{0}")]
    Registry(String),
    /// A database operation failed.
    #[error("database `{database}`: {source}")]
    Database {
        database: String,
        #[source]
        source: sqlx::Error,
    },
    /// A database error outside any named database (e.g. from user code via `?`).
    #[error("database: {0}")]
    Sqlx(#[from] sqlx::Error),
    /// A value could not be converted to or from JSON.
    #[error("{what}: {source}")]
    Serialization {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    /// A failure in user code. `transient` failures are retried with backoff.
    #[error("{message}")]
    User { message: String, transient: bool },
    /// The saga did not complete: its completed steps were compensated (or compensation
    /// failed and the saga is `failed`, waiting for an operator).
    #[error("saga `{saga}` ({saga_id}) {status}: step `{step}` failed: {cause}")]
    SagaAborted { saga: String, saga_id: uuid::Uuid, step: String, status: crate::saga::SagaStatus, cause: String },
    /// Another runtime instance took this saga over (this one was too slow to renew its
    /// lease); the saga goes on there.
    #[error("saga {0} was taken over by another runtime instance")]
    LeaseLost(uuid::Uuid),
    /// No runtime is running in this process (or in this task's scope).
    #[error("no FraiseQL runtime is running: start one with `Runtime::builder().start()` (or `Runtime::embedded()`)")]
    NoRuntime,
    /// The runtime is shutting down and accepts no new work.
    #[error("the FraiseQL runtime is shutting down")]
    ShuttingDown,
    /// Something named does not exist (a saga, a database, a saga id).
    #[error("{0}")]
    NotFound(String),
    /// The event bus (NATS, or the embedded one) failed.
    #[error("event bus: {0}")]
    Bus(String),
    /// An argument of a call (a query's, say) is not acceptable.
    #[error("{0}")]
    InvalidArgument(String),
    /// Waiting on something exceeded its time budget.
    #[error("timed out: {0}")]
    Timeout(String),
    /// A migration of FraiseQL's own tables failed (the database is left as it was).
    #[error("database `{database}`: migrating FraiseQL's `{component}` tables to version {version}: {source}")]
    Migration {
        /// The named database.
        database: String,
        /// The part of FraiseQL's schema (`steps`, `log`, `embedded_bus`).
        component: String,
        /// The version being applied.
        version: i64,
        /// What the database reported.
        #[source]
        source: sqlx::Error,
    },
    /// A newer release of FraiseQL migrated this database: this build refuses to run on
    /// tables it does not know.
    #[error(
        "database `{database}`: FraiseQL's `{component}` tables are at version {found}, but this build of fraiseql \
         knows up to version {known}; a newer fraiseql migrated this database, so run that version (or newer) here"
    )]
    SchemaTooNew {
        /// The named database.
        database: String,
        /// The part of FraiseQL's schema.
        component: String,
        /// The version the database has.
        found: i64,
        /// The latest version this build knows.
        known: i64,
    },
}

impl Error {
    /// A failure from user code, reported as is and not retried.
    pub fn msg(message: impl fmt::Display) -> Self {
        Error::User { message: message.to_string(), transient: false }
    }

    /// A failure worth retrying (a remote service briefly down, a lock held): the step
    /// is retried with backoff within its budget before it counts as failed.
    pub fn transient(message: impl fmt::Display) -> Self {
        Error::User { message: message.to_string(), transient: true }
    }

    pub(crate) fn db(database: &str, source: sqlx::Error) -> Self {
        Error::Database { database: database.to_string(), source }
    }

    pub(crate) fn json(what: impl Into<String>, source: serde_json::Error) -> Self {
        Error::Serialization { what: what.into(), source }
    }

    /// Whether retrying the same work may succeed: connection loss, pool exhaustion,
    /// serialization failures, deadlocks, SQLite busy/locked, and `Error::transient`.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::User { transient, .. } => *transient,
            Error::Database { source, .. } | Error::Sqlx(source) => sqlx_is_transient(source),
            Error::Bus(_) => true,
            _ => false,
        }
    }
}

pub(crate) fn sqlx_is_transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Tls(_) | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => {
            let code = db.code();
            let code = code.as_deref().unwrap_or("");
            // PostgreSQL SQLSTATE: serialization failure, deadlock, connection exceptions,
            // admin shutdown / cannot connect now. SQLite: BUSY (5), LOCKED (6) and their
            // extended codes (low byte).
            matches!(code, "40001" | "40P01" | "57P01" | "57P02" | "57P03" | "53300")
                || code.starts_with("08")
                || code.parse::<i32>().map(|c| matches!(c & 0xff, 5 | 6)).unwrap_or(false)
        }
        _ => false,
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::json("JSON", e)
    }
}
