//! One error type for everything FraiseQL returns; step and handler functions return it too.
//! Every variant that wraps a failure of something else keeps it as its `source()`.

use std::fmt;

use crate::status::SagaStatus;

/// `Result<T, fraiseql::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Any error, as kept in [`Error::source`](std::error::Error::source).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What went wrong, with enough context to act on it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration could not be loaded or is invalid, or a configured service
    /// (a database, the NATS server) refused it at start.
    #[error("configuration: {message}")]
    Config {
        /// What is wrong, naming the key or service.
        message: String,
        /// The failure behind it, if any (a connection error, a parse error).
        #[source]
        source: Option<BoxError>,
    },
    /// The registrations made by the macros do not fit together or do not fit the config.
    #[error("{0}")]
    Registry(String),
    /// A database operation failed.
    #[error("database `{database}`: {source}")]
    Database {
        /// The named database.
        database: String,
        /// What sqlx reported.
        #[source]
        source: sqlx::Error,
    },
    /// A database error outside any named database (e.g. from user code via `?`).
    #[error("database: {0}")]
    Sqlx(#[from] sqlx::Error),
    /// A value could not be converted to or from JSON.
    #[error("{what}: {source}")]
    Serialization {
        /// Which value.
        what: String,
        /// What serde reported.
        #[source]
        source: serde_json::Error,
    },
    /// A failure in user code. `transient` failures are retried with backoff.
    #[error("{message}")]
    User {
        /// As the user's code said it.
        message: String,
        /// Whether retrying may succeed.
        transient: bool,
    },
    /// The saga did not complete: its completed steps were compensated (or compensation
    /// failed and the saga is `failed`, waiting for an operator).
    #[error("saga `{saga}` ({saga_id}) {status}: step `{step}` failed: {cause}")]
    SagaAborted {
        /// The saga's name.
        saga: String,
        /// Its id (`rt.sagas().get(..)` shows its steps).
        saga_id: uuid::Uuid,
        /// The step whose failure started compensation.
        step: String,
        /// `Compensated`, or `Failed` when a compensation spent its budget.
        status: SagaStatus,
        /// The step's error, as text (it may have happened in another process).
        cause: String,
    },
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
    /// A fault a test injected (`fraiseql::testing`) stopped the work here.
    #[error("fault injected: {0}")]
    FaultInjected(String),
    /// Something named does not exist (a saga, a database, a saga id).
    #[error("{0}")]
    NotFound(String),
    /// The event bus (NATS, or the embedded one) failed.
    #[error("event bus: {message}")]
    Bus {
        /// What was being done, and what went wrong.
        message: String,
        /// The client's error, if any.
        #[source]
        source: Option<BoxError>,
    },
    /// An argument of a call (a query's, a subject, …) is not acceptable.
    #[error("{0}")]
    InvalidArgument(String),
    /// Waiting on something exceeded its time budget.
    #[error("timed out: {0}")]
    Timeout(String),
    /// A row FraiseQL wrote earlier cannot be read back (changed by hand, or written by
    /// an incompatible version): names the table, the row and what is wrong.
    #[error("unreadable {what}: {detail}")]
    Unreadable {
        /// Which row (`saga 0193… in fraiseql_saga`).
        what: String,
        /// What is wrong with it.
        detail: String,
    },
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

    /// A configuration problem with no underlying error.
    pub(crate) fn config(message: impl Into<String>) -> Self {
        Error::Config { message: message.into(), source: None }
    }

    /// A configuration problem caused by `source`; `message` says which key or service.
    pub(crate) fn config_from(message: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Error::Config { message: message.into(), source: Some(source.into()) }
    }

    /// A bus failure caused by `source` while doing `what`.
    pub(crate) fn bus(what: impl fmt::Display, source: impl Into<BoxError>) -> Self {
        let source = source.into();
        Error::Bus { message: format!("{what}: {source}"), source: Some(source) }
    }

    /// A bus failure with no underlying error.
    pub(crate) fn bus_msg(message: impl Into<String>) -> Self {
        Error::Bus { message: message.into(), source: None }
    }

    /// What a caught panic of user code said (`panic!` with a string, or a formatted
    /// message), for the error that replaces it.
    pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
        payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "non-string panic payload".into())
    }

    /// A broken invariant of FraiseQL itself (a bug, not a user error).
    pub(crate) fn internal(what: &str) -> Self {
        Error::msg(format!("internal error in fraiseql: {what}"))
    }

    /// Whether retrying the same work may succeed: connection loss, pool exhaustion,
    /// serialization failures, deadlocks, SQLite busy/locked, and `Error::transient`.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::User { transient, .. } => *transient,
            Error::Database { source, .. } | Error::Sqlx(source) => sqlx_is_transient(source),
            Error::Bus { .. } => true,
            _ => false,
        }
    }
}

pub(crate) fn sqlx_is_transient(e: &sqlx::Error) -> bool {
    if sqlx_connection_lost(e) {
        return true;
    }
    match e {
        sqlx::Error::PoolTimedOut | sqlx::Error::Tls(_) | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => {
            let code = db.code();
            let code = code.as_deref().unwrap_or("");
            // PostgreSQL SQLSTATE: serialization failure, deadlock, cannot connect now,
            // too many connections. SQLite: BUSY (5), LOCKED (6) and their extended codes
            // (low byte).
            matches!(code, "40001" | "40P01" | "57P03" | "53300")
                || code.parse::<i32>().map(|c| matches!(c & 0xff, 5 | 6)).unwrap_or(false)
        }
        _ => false,
    }
}

/// Whether `e` says the connection itself is gone (closed under us, the server shut down
/// or restarted: PostgreSQL's connection exceptions and admin / crash shutdown), as
/// opposed to a statement's own failure. Always transient.
pub(crate) fn sqlx_connection_lost(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) => true,
        sqlx::Error::Database(db) => {
            let code = db.code();
            let code = code.as_deref().unwrap_or("");
            matches!(code, "57P01" | "57P02") || code.starts_with("08")
        }
        _ => false,
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::json("JSON", e)
    }
}

/// Names the database a sqlx call ran on: `db.execute(..).await.on(name)?` instead of
/// a hand-written `map_err` at every call.
pub(crate) trait OnDatabase<T> {
    /// The error as [`Error::Database`] of `database`.
    fn on(self, database: &str) -> Result<T>;
}

impl<T> OnDatabase<T> for std::result::Result<T, sqlx::Error> {
    fn on(self, database: &str) -> Result<T> {
        self.map_err(|e| Error::db(database, e))
    }
}
