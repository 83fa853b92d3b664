//! FraiseQL's own tables, versioned, so that any number of instances can start beside
//! busy ones (a rolling restart, scaling out) and an upgrade brings older tables forward.
//!
//! The schema comes in *components*, each with its own ordered migrations: `steps` in
//! every database (barriers, the outbox and the inbox: what a step's or a handler's
//! transaction writes), `log` in
//! the log database (sagas, step attempts, dead events, consumer positions) and
//! `embedded_bus` there too when the embedded bus keeps its events in it. Each database
//! records the versions it has in `fraiseql_schema_version` (ours, not sqlx's
//! `_sqlx_migrations`, which the application's own migrations may use in the same
//! database).
//!
//! A start first reads that table, a plain `SELECT` of it alone. If every component the
//! database needs is current, that is all: no DDL, no advisory lock, and no lock on any
//! table a running instance writes, so nothing it holds can make the start wait, and the
//! start can make nothing wait either. (Before versioning, every start ran the whole
//! script; `CREATE INDEX IF NOT EXISTS` locks its table before it looks for the index,
//! so a start deadlocked with steps holding `fraiseql_saga` and inserting into
//! `fraiseql_outbox`, or waited for any open transaction to end.)
//!
//! Otherwise, one transaction: on PostgreSQL, wait for an advisory lock (per database;
//! the key of the releases before versioning, so an old instance's start serialises
//! with ours), then read the versions again (another instance may have just migrated),
//! apply what is missing statement by statement, record each version, and commit. Past
//! the advisory lock, every lock wait is bounded by a short `lock_timeout`, well under
//! PostgreSQL's `deadlock_timeout`: when a migration needs a table that running
//! transactions hold, it is the migration that gives up (everything rolls back) and
//! tries again after a backoff, never a running transaction that becomes a deadlock
//! victim. On SQLite, `BEGIN IMMEDIATE` serialises migrators.
//!
//! Version 1 of each component is the schema the releases before versioning created,
//! so it *adopts* their tables: each statement creates a named table or index only if
//! nothing of that name exists (which also keeps it from locking an existing table).
//!
//! Rules for later versions: a released migration never changes, a change is a new
//! version. The version table's shape never changes (every release reads it). A
//! migration that alters existing tables starts by locking all of them in one
//! `LOCK TABLE … IN ACCESS EXCLUSIVE MODE`, so it holds nothing while it waits. A
//! database whose version of a component is newer than this build knows is refused at
//! start, naming the database, the component and both versions.

use std::collections::BTreeMap;
use std::time::Duration;

use backon::BackoffBuilder;
use tracing::{info, warn};

use crate::db::{Backend, Db, Tx};
use crate::error::{Error, Result};

/// The advisory lock migrators take on PostgreSQL. The releases before versioning took
/// the same one around their schema script.
const ADVISORY_KEY: i64 = 7239017265;

/// Past the advisory lock, the longest a migration waits for any one lock before it
/// rolls back and tries again. Well under `deadlock_timeout` (1s by default), so a
/// transaction waiting behind the migration never waits long enough to be chosen as a
/// deadlock victim.
const LOCK_TIMEOUT: &str = "100ms";

/// How many times a migration that could not get its locks is tried again (with backoff
/// up to 2s: about two minutes in all) before the start fails.
const LOCK_RETRIES: usize = 60;

const VERSION_TABLE: &str = "CREATE TABLE IF NOT EXISTS fraiseql_schema_version (
    component TEXT NOT NULL,
    version BIGINT NOT NULL,
    description TEXT NOT NULL,
    applied_at BIGINT NOT NULL,
    PRIMARY KEY (component, version)
)";

const READ_VERSIONS: &str = "SELECT component, MAX(version) FROM fraiseql_schema_version GROUP BY component";

/// One part of FraiseQL's schema, with its migrations in version order (1, 2, …).
#[derive(Debug)]
pub(crate) struct Component {
    name: &'static str,
    migrations: &'static [Migration],
}

impl Component {
    fn latest(&self) -> i64 {
        self.migrations.last().map_or(0, |m| m.version)
    }
}

#[derive(Debug)]
struct Migration {
    version: i64,
    description: &'static str,
    statements: &'static [Ddl],
}

/// One statement of a migration.
#[derive(Debug)]
enum Ddl {
    /// Creates the table or index named first, unless something of that name exists.
    /// `IF NOT EXISTS` alone is not enough on PostgreSQL: `CREATE INDEX IF NOT EXISTS`
    /// takes its table's SHARE lock before it looks for the index.
    Create(&'static str, &'static str),
    /// The same, where the backends need different statements.
    CreateEach { name: &'static str, postgres: &'static str, sqlite: &'static str },
    /// Locks the named tables, in one statement, before a migration alters them (see
    /// the rules above). PostgreSQL only: SQLite's `BEGIN IMMEDIATE` already holds the
    /// whole database.
    Lock(&'static str),
    /// Adds `column` to `table` with this `ALTER TABLE`, unless the column exists.
    AddColumn { table: &'static str, column: &'static str, sql: &'static str },
}

/// Barriers, the outbox and the inbox: every database a step or a transactional
/// handler may run on.
static STEPS: Component = Component {
    name: "steps",
    migrations: &[Migration {
        version: 1,
        description: "barriers and the transactional outbox",
        statements: &[
            Ddl::Create(
                "fraiseql_barrier",
                "CREATE TABLE IF NOT EXISTS fraiseql_barrier (
    saga_id TEXT NOT NULL,
    idx BIGINT NOT NULL,
    phase TEXT NOT NULL,
    outcome TEXT NOT NULL,
    owner TEXT NOT NULL,
    step TEXT NOT NULL,
    state TEXT,
    output TEXT,
    attempt BIGINT NOT NULL,
    started_at BIGINT NOT NULL,
    finished_at BIGINT NOT NULL,
    PRIMARY KEY (saga_id, idx, phase)
)",
            ),
            Ddl::Create(
                "fraiseql_outbox",
                "CREATE TABLE IF NOT EXISTS fraiseql_outbox (
    id TEXT PRIMARY KEY,
    subject TEXT NOT NULL,
    event_type TEXT NOT NULL,
    payload TEXT NOT NULL,
    saga_id TEXT,
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL
)",
            ),
            Ddl::Create(
                "fraiseql_outbox_due",
                "CREATE INDEX IF NOT EXISTS fraiseql_outbox_due ON fraiseql_outbox (next_attempt_at) WHERE status = 'pending'",
            ),
        ],
    }, Migration {
        version: 2,
        description: "the inbox of handlers that run in a transaction",
        statements: &[
            Ddl::Create(
                "fraiseql_inbox",
                "CREATE TABLE IF NOT EXISTS fraiseql_inbox (
    consumer TEXT NOT NULL,
    event_id TEXT NOT NULL,
    processed_at BIGINT NOT NULL,
    PRIMARY KEY (consumer, event_id)
)",
            ),
            Ddl::Create(
                "fraiseql_inbox_expiry",
                "CREATE INDEX IF NOT EXISTS fraiseql_inbox_expiry ON fraiseql_inbox (processed_at)",
            ),
        ],
    }, Migration {
        version: 3,
        description: "the trace context of outbox events",
        // Nullable columns without a default: PostgreSQL changes only the catalog.
        statements: &[
            Ddl::Lock("fraiseql_outbox"),
            Ddl::AddColumn {
                table: "fraiseql_outbox",
                column: "traceparent",
                sql: "ALTER TABLE fraiseql_outbox ADD COLUMN traceparent TEXT",
            },
            Ddl::AddColumn {
                table: "fraiseql_outbox",
                column: "tracestate",
                sql: "ALTER TABLE fraiseql_outbox ADD COLUMN tracestate TEXT",
            },
        ],
    }],
};

/// The saga log and what the event handlers keep: the log database.
static LOG: Component = Component {
    name: "log",
    migrations: &[Migration {
        version: 1,
        description: "saga log, step attempts, dead events, consumer positions",
        statements: &[
            Ddl::Create(
                "fraiseql_saga",
                "CREATE TABLE IF NOT EXISTS fraiseql_saga (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    idempotency_key TEXT,
    status TEXT NOT NULL,
    steps TEXT NOT NULL,
    input TEXT NOT NULL,
    state TEXT NOT NULL,
    result TEXT,
    failed_step TEXT,
    error TEXT,
    owner TEXT,
    lease_until BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
)",
            ),
            // Partial indexes: sagas without a key, and finished sagas, cost no entry here.
            Ddl::Create(
                "fraiseql_saga_key",
                "CREATE UNIQUE INDEX IF NOT EXISTS fraiseql_saga_key ON fraiseql_saga (idempotency_key) WHERE idempotency_key IS NOT NULL",
            ),
            Ddl::Create(
                "fraiseql_saga_open",
                "CREATE INDEX IF NOT EXISTS fraiseql_saga_open ON fraiseql_saga (lease_until) WHERE status IN ('running', 'compensating')",
            ),
            Ddl::Create(
                "fraiseql_saga_trouble",
                "CREATE INDEX IF NOT EXISTS fraiseql_saga_trouble ON fraiseql_saga (id) WHERE status IN ('compensated', 'failed', 'stuck')",
            ),
            Ddl::Create(
                "fraiseql_saga_attempt",
                "CREATE TABLE IF NOT EXISTS fraiseql_saga_attempt (
    saga_id TEXT NOT NULL,
    idx BIGINT NOT NULL,
    phase TEXT NOT NULL,
    step TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    status TEXT NOT NULL,
    error TEXT,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (saga_id, idx, phase)
)",
            ),
            Ddl::Create(
                "fraiseql_dead_event",
                "CREATE TABLE IF NOT EXISTS fraiseql_dead_event (
    consumer TEXT NOT NULL,
    event_id TEXT NOT NULL,
    subject TEXT NOT NULL,
    payload TEXT NOT NULL,
    reason TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (consumer, event_id)
)",
            ),
            Ddl::Create(
                "fraiseql_consumer",
                "CREATE TABLE IF NOT EXISTS fraiseql_consumer (name TEXT PRIMARY KEY, acked_seq BIGINT NOT NULL)",
            ),
        ],
    }],
};

/// The embedded bus's events, in the log database.
static EMBEDDED_BUS: Component = Component {
    name: "embedded_bus",
    migrations: &[Migration {
        version: 1,
        description: "events of the embedded bus",
        statements: &[Ddl::CreateEach {
            name: "fraiseql_event",
            postgres: "CREATE TABLE IF NOT EXISTS fraiseql_event (seq BIGSERIAL PRIMARY KEY, id TEXT NOT NULL UNIQUE, subject TEXT NOT NULL, payload TEXT NOT NULL, published_at BIGINT NOT NULL)",
            sqlite: "CREATE TABLE IF NOT EXISTS fraiseql_event (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, subject TEXT NOT NULL, payload TEXT NOT NULL, published_at BIGINT NOT NULL)",
        }],
    }],
};

static ALL: [&Component; 3] = [&STEPS, &LOG, &EMBEDDED_BUS];

/// The components of FraiseQL's schema and the version this build brings each to, as
/// recorded in a database's `fraiseql_schema_version`.
///
/// ```
/// let latest = fraiseql_runtime::migrate::latest_versions();
/// assert!(latest.iter().any(|(component, _)| *component == "log"));
/// ```
pub fn latest_versions() -> Vec<(&'static str, i64)> {
    ALL.iter().map(|c| (c.name, c.latest())).collect()
}

/// The version of each component a database has (the highest recorded in its
/// `fraiseql_schema_version`); empty before FraiseQL first started on it.
pub async fn applied_versions(db: &Db) -> std::result::Result<BTreeMap<String, i64>, sqlx::Error> {
    let found: Option<(i64,)> = db.fetch_optional(exists_sql(db.backend()), ("fraiseql_schema_version",)).await?;
    if found.is_none_or(|(n,)| n == 0) {
        return Ok(BTreeMap::new());
    }
    Ok(db.fetch_all::<(String, i64), _>(READ_VERSIONS, ()).await?.into_iter().collect())
}

/// What a database needs: `steps` always; `log` in the log database; `embedded_bus`
/// where the embedded bus keeps its events.
pub(crate) fn components(log: bool, embedded_bus: bool) -> Vec<&'static Component> {
    let mut c = vec![&STEPS];
    if log {
        c.push(&LOG);
    }
    if embedded_bus {
        c.push(&EMBEDDED_BUS);
    }
    c
}

/// Bring `db` (called `database` in messages) to the current version of `components`.
/// See the module docs for the protocol.
pub(crate) async fn run(db: &Db, database: &str, components: &[&'static Component]) -> Result<()> {
    let applied = applied_versions(db).await.map_err(|e| Error::db(database, e))?;
    if is_current(database, components, &applied)? {
        return Ok(());
    }
    let mut backoff = backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(50))
        .with_max_delay(Duration::from_secs(2))
        .with_jitter()
        .with_max_times(LOCK_RETRIES)
        .build();
    loop {
        match migrate_once(db, database, components).await {
            Err(e) if lock_not_granted(&e) => match backoff.next() {
                Some(delay) => {
                    warn!(database, error = %e, "migrating FraiseQL's tables: a table is busy; trying again");
                    tokio::time::sleep(delay).await;
                }
                None => return Err(e),
            },
            r => return r,
        }
    }
}

/// Whether every component is at its latest version; an error if one is newer.
fn is_current(database: &str, components: &[&'static Component], applied: &BTreeMap<String, i64>) -> Result<bool> {
    let mut current = true;
    for c in components {
        let have = applied.get(c.name).copied().unwrap_or(0);
        if have > c.latest() {
            return Err(Error::SchemaTooNew {
                database: database.to_string(),
                component: c.name.to_string(),
                found: have,
                known: c.latest(),
            });
        }
        current &= have == c.latest();
    }
    Ok(current)
}

/// The slow path: one transaction that applies what is missing.
async fn migrate_once(db: &Db, database: &str, components: &[&'static Component]) -> Result<()> {
    let mut tx = db.begin().await.map_err(|e| Error::db(database, e))?;
    let backend = tx.backend();
    if backend == Backend::Postgres {
        // Unbounded wait: this transaction holds nothing yet, so it blocks no one.
        run_sql(&mut tx, &format!("SELECT pg_advisory_xact_lock({ADVISORY_KEY})"))
            .await
            .map_err(|e| Error::db(database, e))?;
        run_sql(&mut tx, &format!("SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
            .await
            .map_err(|e| Error::db(database, e))?;
    }
    run_sql(&mut tx, VERSION_TABLE).await.map_err(|e| Error::db(database, e))?;
    let applied: BTreeMap<String, i64> = tx
        .fetch_all::<(String, i64), _>(READ_VERSIONS, ())
        .await
        .map_err(|e| Error::db(database, e))?
        .into_iter()
        .collect();
    if is_current(database, components, &applied)? {
        // Another instance migrated while this one waited.
        return tx.commit().await.map_err(|e| Error::db(database, e));
    }
    for c in components {
        let have = applied.get(c.name).copied().unwrap_or(0);
        for m in c.migrations {
            if m.version <= have {
                continue;
            }
            for ddl in m.statements {
                let (exists, sql) = match *ddl {
                    Ddl::Create(name, sql) => (tx.fetch_one(exists_sql(backend), (name,)).await, sql),
                    Ddl::CreateEach { name, postgres, sqlite } => {
                        let sql = match backend {
                            Backend::Postgres => postgres,
                            Backend::Sqlite => sqlite,
                        };
                        (tx.fetch_one(exists_sql(backend), (name,)).await, sql)
                    }
                    Ddl::Lock(tables) => {
                        if backend == Backend::Postgres {
                            let lock = format!("LOCK TABLE {tables} IN ACCESS EXCLUSIVE MODE");
                            run_sql(&mut tx, &lock).await.map_err(|e| failed(database, c, m, e))?;
                        }
                        continue;
                    }
                    Ddl::AddColumn { table, column, sql } => {
                        (tx.fetch_one(column_exists_sql(backend), (table, column)).await, sql)
                    }
                };
                let (n,): (i64,) = exists.map_err(|e| failed(database, c, m, e))?;
                if n == 0 {
                    run_sql(&mut tx, sql).await.map_err(|e| failed(database, c, m, e))?;
                }
            }
            tx.execute(
                "INSERT INTO fraiseql_schema_version (component, version, description, applied_at) VALUES ($1, $2, $3, $4)",
                (c.name, m.version, m.description, crate::clock::now_ms()),
            )
            .await
            .map_err(|e| failed(database, c, m, e))?;
            info!(database, component = c.name, version = m.version, description = m.description, "migrated");
        }
    }
    tx.commit().await.map_err(|e| Error::db(database, e))
}

fn failed(database: &str, c: &Component, m: &Migration, source: sqlx::Error) -> Error {
    Error::Migration { database: database.to_string(), component: c.name.to_string(), version: m.version, source }
}

/// One statement, no arguments, not kept in sqlx's statement cache (it runs once).
/// (Not `sqlx::raw_sql`: awaited here, its future would make `Builder::start`'s not `Send`.)
async fn run_sql(tx: &mut Tx, sql: &str) -> std::result::Result<(), sqlx::Error> {
    match tx {
        Tx::Postgres(t) => sqlx::query(sql).persistent(false).execute(&mut **t).await.map(drop),
        Tx::Sqlite(t) => sqlx::query(sql).persistent(false).execute(&mut **t).await.map(drop),
    }
}

/// `1` if a table or index called `$1` exists (where an unqualified name would find it),
/// else `0`.
fn exists_sql(backend: Backend) -> &'static str {
    match backend {
        // COUNT of a NULL is 0.
        Backend::Postgres => "SELECT COUNT(to_regclass($1::text))",
        Backend::Sqlite => "SELECT COUNT(*) FROM sqlite_master WHERE name = $1",
    }
}

/// `1` if the table `$1` (where an unqualified name would find it) has a column `$2`.
fn column_exists_sql(backend: Backend) -> &'static str {
    match backend {
        Backend::Postgres => {
            "SELECT COUNT(*) FROM pg_attribute WHERE attrelid = to_regclass($1::text) AND attname = $2 AND NOT attisdropped"
        }
        Backend::Sqlite => "SELECT COUNT(*) FROM pragma_table_info($1) WHERE name = $2",
    }
}

/// A lock the migration waited for was not granted in time (PostgreSQL's
/// `lock_timeout`, or it was chosen as a deadlock victim; SQLite busy or locked).
fn lock_not_granted(e: &Error) -> bool {
    let source = match e {
        Error::Database { source, .. } | Error::Migration { source, .. } => source,
        _ => return false,
    };
    let sqlx::Error::Database(d) = source else { return false };
    let code = d.code();
    let code = code.as_deref().unwrap_or("");
    matches!(code, "55P03" | "40P01") || code.parse::<i32>().is_ok_and(|c| matches!(c & 0xff, 5 | 6))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Builder::start` awaits `run`: its future must stay `Send`, so a start can be spawned.
    #[allow(dead_code)]
    fn run_is_send(db: &'static Db) {
        fn send<T: Send>(_: T) {}
        send(run(db, "primary", &[]));
    }

    #[test]
    fn versions_count_from_one_without_gaps() {
        for c in ALL {
            for (i, m) in c.migrations.iter().enumerate() {
                assert_eq!(m.version, i as i64 + 1, "component `{}`", c.name);
            }
        }
    }

    #[test]
    fn a_newer_schema_is_refused_with_both_versions() {
        let applied = BTreeMap::from([("log".to_string(), 99)]);
        let e = is_current("primary", &components(true, false), &applied).unwrap_err().to_string();
        assert!(
            e.contains("`primary`") && e.contains("`log`") && e.contains("version 99") && e.contains("up to version 1"),
            "{e}"
        );
    }

    #[test]
    fn a_database_without_versions_is_not_current() {
        assert!(!is_current("primary", &components(false, false), &BTreeMap::new()).unwrap());
        let applied = BTreeMap::from([("steps".to_string(), STEPS.latest())]);
        assert!(is_current("primary", &components(false, false), &applied).unwrap());
        assert!(!is_current("primary", &components(true, false), &applied).unwrap());
    }
}
