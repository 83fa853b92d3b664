//! Named databases (the "federation"): each is PostgreSQL or SQLite behind sqlx, with
//! a transaction type that gives full sqlx access plus a few portable helpers.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;

use sqlx::postgres::{PgArguments, PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::query::Query;
use sqlx::sqlite::{
    SqliteArguments, SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{Connection, Encode, FromRow, PgConnection, PgPool, Postgres, Sqlite, SqlitePool, Type};

use crate::config::{redact, DatabaseConfig};
use crate::error::{Error, Result};
use crate::sql::Statement;

pub use crate::sql::Backend;

/// The transaction methods of a context that owns a transaction (`self.tx: Tx`) on one
/// named database (`self.database`): a step's and a transactional handler's, the same.
macro_rules! transaction_methods {
    ($whose:literal) => {
        #[doc = concat!("The ", $whose, "'s transaction: full sqlx access through [`Tx::postgres`] / [`Tx::sqlite`].")]
        pub fn tx(&mut self) -> &mut $crate::db::Tx {
            &mut self.tx
        }

        /// Shorthand for `ctx.tx().postgres()`: `sqlx::query_as(…).fetch_one(ctx.pg()?)`.
        pub fn pg(&mut self) -> $crate::error::Result<&mut sqlx::PgConnection> {
            self.tx.postgres()
        }

        /// Shorthand for `ctx.tx().sqlite()`.
        pub fn sqlite(&mut self) -> $crate::error::Result<&mut sqlx::SqliteConnection> {
            self.tx.sqlite()
        }

        #[doc = concat!("Portable: run one statement in the ", $whose, "'s transaction (`$1`… placeholders).")]
        pub async fn execute<'q, A: $crate::db::Args<'q>>(
            &mut self,
            sql: &'q str,
            args: A,
        ) -> $crate::error::Result<u64> {
            $crate::error::OnDatabase::on(self.tx.execute(sql, args).await, self.database)
        }

        /// Portable: one row, decoded into a tuple or a `FromRow` struct.
        pub async fn fetch_one<'q, T: $crate::db::Row, A: $crate::db::Args<'q>>(
            &mut self,
            sql: &'q str,
            args: A,
        ) -> $crate::error::Result<T> {
            $crate::error::OnDatabase::on(self.tx.fetch_one(sql, args).await, self.database)
        }

        /// Portable: at most one row.
        pub async fn fetch_optional<'q, T: $crate::db::Row, A: $crate::db::Args<'q>>(
            &mut self,
            sql: &'q str,
            args: A,
        ) -> $crate::error::Result<Option<T>> {
            $crate::error::OnDatabase::on(self.tx.fetch_optional(sql, args).await, self.database)
        }

        /// Portable: every row.
        pub async fn fetch_all<'q, T: $crate::db::Row, A: $crate::db::Args<'q>>(
            &mut self,
            sql: &'q str,
            args: A,
        ) -> $crate::error::Result<Vec<T>> {
            $crate::error::OnDatabase::on(self.tx.fetch_all(sql, args).await, self.database)
        }
    };
}
pub(crate) use transaction_methods;

/// A pooled PostgreSQL connection idle this long is checked (a round trip) before
/// `Db::begin` starts a transaction on it; one used more recently is not.
const IDLE_CHECK: std::time::Duration = std::time::Duration::from_secs(1);

tokio::task_local! {
    /// Set while `Db::begin` takes a connection from the pool (see `Db::connect`).
    static BEGINNING: bool;
}

/// One named database: a connection pool.
#[derive(Clone, Debug)]
pub enum Db {
    /// A PostgreSQL database (`postgres://` or `postgresql://` URL).
    Postgres(PgPool),
    /// A SQLite database (`sqlite:` URL).
    Sqlite(SqlitePool),
}

impl Db {
    /// Open the pool of database `name`. The first connection is made here, so a wrong
    /// host, port, password or database name fails start with the server's own reason
    /// ("connection refused", "password authentication failed") rather than a pool
    /// timeout later; a server that refuses connections is retried until
    /// `acquire_timeout` (it may be starting too).
    pub(crate) async fn connect(name: &str, cfg: &DatabaseConfig) -> Result<Db> {
        let url = cfg.url.as_str();
        let err = |e: sqlx::Error| Error::config_from(format!("database `{name}` ({}): {e}", redact(url)), e);
        if url.starts_with("sqlite:") {
            let opts = SqliteConnectOptions::from_str(url)
                .map_err(err)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(std::time::Duration::from_secs(10))
                .foreign_keys(true);
            // An in-memory database exists once per connection: keep exactly one.
            let max = if url.contains(":memory:") || url.contains("mode=memory") { 1 } else { cfg.max_connections };
            let pool = SqlitePoolOptions::new()
                .max_connections(max)
                .min_connections(cfg.min_connections.min(max))
                .acquire_timeout(cfg.acquire_timeout)
                .connect_with(opts)
                .await
                .map_err(err)?;
            Ok(Db::Sqlite(pool))
        } else {
            let opts = PgConnectOptions::from_str(url).map_err(err)?;
            let deadline = tokio::time::Instant::now() + cfg.acquire_timeout;
            loop {
                match PgConnection::connect_with(&opts).await {
                    Ok(conn) => {
                        let _ = conn.close().await;
                        break;
                    }
                    Err(e @ sqlx::Error::Io(_)) if tokio::time::Instant::now() < deadline => {
                        tracing::debug!(database = name, error = %e, "database not reachable yet; retrying");
                        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
                    }
                    Err(e) => return Err(err(e)),
                }
            }
            let pool = PgPoolOptions::new()
                // sqlx checks every connection it hands out with a round trip of its own
                // (and again when it is returned). A transaction `Db::begin` starts skips
                // that check on a connection used within the last second: its first
                // statement, `BEGIN`, finds a dead connection as surely, and is retried on
                // another, since nothing can have happened. Everything else is checked as
                // sqlx does by default (its first statement might not be safe to repeat).
                .test_before_acquire(false)
                .before_acquire(|conn, meta| {
                    Box::pin(async move {
                        let beginning = BEGINNING.try_with(|b| *b).unwrap_or(false);
                        if !beginning || meta.idle_for >= IDLE_CHECK {
                            sqlx::Connection::ping(conn).await?;
                        }
                        Ok(true)
                    })
                })
                .max_connections(cfg.max_connections)
                .min_connections(cfg.min_connections)
                .acquire_timeout(cfg.acquire_timeout)
                .connect_lazy_with(opts);
            Ok(Db::Postgres(pool))
        }
    }

    /// Which kind of database this is.
    pub fn backend(&self) -> Backend {
        match self {
            Db::Postgres(_) => Backend::Postgres,
            Db::Sqlite(_) => Backend::Sqlite,
        }
    }

    /// The PostgreSQL pool, if this database is PostgreSQL.
    pub fn as_postgres(&self) -> Option<&PgPool> {
        match self {
            Db::Postgres(p) => Some(p),
            _ => None,
        }
    }

    /// The SQLite pool, if this database is SQLite.
    pub fn as_sqlite(&self) -> Option<&SqlitePool> {
        match self {
            Db::Sqlite(p) => Some(p),
            _ => None,
        }
    }

    /// Begin a transaction. On SQLite it is `BEGIN IMMEDIATE`, so that a transaction that
    /// reads before it writes waits for the write lock instead of failing mid-way.
    ///
    /// On PostgreSQL, a pooled connection that turns out to be closed when `BEGIN` is sent
    /// (recently used, so not checked: see `IDLE_CHECK`) is dropped and another taken, up
    /// to the pool's size and one more: nothing ran on it that could have done anything.
    pub async fn begin(&self) -> std::result::Result<Tx, sqlx::Error> {
        Ok(match self {
            Db::Postgres(p) => {
                // Each dead connection is tried once (it is closed, not returned), so
                // past the pool's size a new connection is being opened.
                let most = p.options().get_max_connections() as usize + 1;
                let mut tries = 0;
                loop {
                    tries += 1;
                    match BEGINNING.scope(true, p.begin()).await {
                        Ok(t) => break Tx::Postgres(t),
                        Err(e) if tries < most && crate::error::sqlx_connection_lost(&e) => {
                            tracing::debug!(error = %e, "a pooled connection was closed at BEGIN; taking another");
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
            Db::Sqlite(p) => Tx::Sqlite(p.begin_with("BEGIN IMMEDIATE").await?),
        })
    }

    /// Run one statement outside a transaction; returns rows affected.
    pub async fn execute<'q, A: Args<'q>>(&self, sql: &'q str, args: A) -> std::result::Result<u64, sqlx::Error> {
        Ok(match self {
            Db::Postgres(p) => args.bind_pg(sqlx::query(sql)).execute(p).await?.rows_affected(),
            Db::Sqlite(p) => args.bind_sqlite(sqlx::query(sql)).execute(p).await?.rows_affected(),
        })
    }

    /// Every row, decoded into a tuple or a `FromRow` struct.
    pub async fn fetch_all<'q, T: Row, A: Args<'q>>(
        &self,
        sql: &'q str,
        args: A,
    ) -> std::result::Result<Vec<T>, sqlx::Error> {
        match self {
            Db::Postgres(p) => args.bind_pg(sqlx::query(sql)).try_map(|r: PgRow| T::from_row(&r)).fetch_all(p).await,
            Db::Sqlite(p) => {
                args.bind_sqlite(sqlx::query(sql)).try_map(|r: SqliteRow| T::from_row(&r)).fetch_all(p).await
            }
        }
    }

    /// Exactly one row (none is `sqlx::Error::RowNotFound`).
    pub async fn fetch_one<'q, T: Row, A: Args<'q>>(
        &self,
        sql: &'q str,
        args: A,
    ) -> std::result::Result<T, sqlx::Error> {
        self.fetch_optional(sql, args).await?.ok_or(sqlx::Error::RowNotFound)
    }

    /// At most one row.
    pub async fn fetch_optional<'q, T: Row, A: Args<'q>>(
        &self,
        sql: &'q str,
        args: A,
    ) -> std::result::Result<Option<T>, sqlx::Error> {
        match self {
            Db::Postgres(p) => {
                args.bind_pg(sqlx::query(sql)).try_map(|r: PgRow| T::from_row(&r)).fetch_optional(p).await
            }
            Db::Sqlite(p) => {
                args.bind_sqlite(sqlx::query(sql)).try_map(|r: SqliteRow| T::from_row(&r)).fetch_optional(p).await
            }
        }
    }

    /// Run a script of several statements (schema setup); no arguments.
    pub async fn execute_script(&self, sql: &str) -> std::result::Result<(), sqlx::Error> {
        match self {
            Db::Postgres(p) => sqlx::raw_sql(sql).execute(p).await.map(|_| ()),
            Db::Sqlite(p) => sqlx::raw_sql(sql).execute(p).await.map(|_| ()),
        }
    }

    /// Close the pool: new acquires fail, and this waits until every connection is
    /// returned and closed.
    pub async fn close(&self) {
        match self {
            Db::Postgres(p) => p.close().await,
            Db::Sqlite(p) => p.close().await,
        }
    }
}

/// A transaction on one named database. Use [`Tx::postgres`] / [`Tx::sqlite`] for
/// everything sqlx offers (typed `query_as`, `query!`, streams), or the portable helpers.
pub enum Tx {
    /// A transaction on a PostgreSQL database.
    Postgres(sqlx::Transaction<'static, Postgres>),
    /// A transaction on a SQLite database.
    Sqlite(sqlx::Transaction<'static, Sqlite>),
}

impl std::fmt::Debug for Tx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Tx::Postgres(_) => "Tx::Postgres",
            Tx::Sqlite(_) => "Tx::Sqlite",
        })
    }
}

impl Tx {
    /// Which kind of database the transaction is on.
    pub fn backend(&self) -> Backend {
        match self {
            Tx::Postgres(_) => Backend::Postgres,
            Tx::Sqlite(_) => Backend::Sqlite,
        }
    }

    /// The PostgreSQL connection inside the transaction, for any sqlx API:
    /// `sqlx::query_as::<_, Order>(…).fetch_one(tx.postgres()?)`.
    pub fn postgres(&mut self) -> Result<&mut sqlx::PgConnection> {
        match self {
            Tx::Postgres(t) => Ok(&mut **t),
            Tx::Sqlite(_) => Err(Error::msg("this step's database is SQLite, not PostgreSQL")),
        }
    }

    /// The SQLite connection inside the transaction.
    pub fn sqlite(&mut self) -> Result<&mut sqlx::SqliteConnection> {
        match self {
            Tx::Sqlite(t) => Ok(&mut **t),
            Tx::Postgres(_) => Err(Error::msg("this step's database is PostgreSQL, not SQLite")),
        }
    }

    /// Run one statement (`$1`, `$2`… placeholders on both backends); rows affected.
    pub async fn execute<'q, A: Args<'q>>(&mut self, sql: &'q str, args: A) -> std::result::Result<u64, sqlx::Error> {
        Ok(match self {
            Tx::Postgres(t) => args.bind_pg(sqlx::query(sql)).execute(&mut **t).await?.rows_affected(),
            Tx::Sqlite(t) => args.bind_sqlite(sqlx::query(sql)).execute(&mut **t).await?.rows_affected(),
        })
    }

    /// Exactly one row (none is `sqlx::Error::RowNotFound`).
    pub async fn fetch_one<'q, T: Row, A: Args<'q>>(
        &mut self,
        sql: &'q str,
        args: A,
    ) -> std::result::Result<T, sqlx::Error> {
        match self {
            Tx::Postgres(t) => {
                args.bind_pg(sqlx::query(sql)).try_map(|r: PgRow| T::from_row(&r)).fetch_one(&mut **t).await
            }
            Tx::Sqlite(t) => {
                args.bind_sqlite(sqlx::query(sql)).try_map(|r: SqliteRow| T::from_row(&r)).fetch_one(&mut **t).await
            }
        }
    }

    /// At most one row.
    pub async fn fetch_optional<'q, T: Row, A: Args<'q>>(
        &mut self,
        sql: &'q str,
        args: A,
    ) -> std::result::Result<Option<T>, sqlx::Error> {
        match self {
            Tx::Postgres(t) => {
                args.bind_pg(sqlx::query(sql)).try_map(|r: PgRow| T::from_row(&r)).fetch_optional(&mut **t).await
            }
            Tx::Sqlite(t) => {
                args.bind_sqlite(sqlx::query(sql))
                    .try_map(|r: SqliteRow| T::from_row(&r))
                    .fetch_optional(&mut **t)
                    .await
            }
        }
    }

    /// Every row.
    pub async fn fetch_all<'q, T: Row, A: Args<'q>>(
        &mut self,
        sql: &'q str,
        args: A,
    ) -> std::result::Result<Vec<T>, sqlx::Error> {
        match self {
            Tx::Postgres(t) => {
                args.bind_pg(sqlx::query(sql)).try_map(|r: PgRow| T::from_row(&r)).fetch_all(&mut **t).await
            }
            Tx::Sqlite(t) => {
                args.bind_sqlite(sqlx::query(sql)).try_map(|r: SqliteRow| T::from_row(&r)).fetch_all(&mut **t).await
            }
        }
    }

    /// Commit the transaction. (A step's transaction is committed by the runtime, not
    /// by the step.)
    pub async fn commit(self) -> std::result::Result<(), sqlx::Error> {
        match self {
            Tx::Postgres(t) => t.commit().await,
            Tx::Sqlite(t) => t.commit().await,
        }
    }

    /// Roll the transaction back; dropping it uncommitted does the same.
    pub async fn rollback(self) -> std::result::Result<(), sqlx::Error> {
        match self {
            Tx::Postgres(t) => t.rollback().await,
            Tx::Sqlite(t) => t.rollback().await,
        }
    }
}

/// A row type both backends can decode: tuples such as `(i64, String)` and
/// `#[derive(sqlx::FromRow)]` structs whose fields both backends know.
pub trait Row: for<'r> FromRow<'r, PgRow> + for<'r> FromRow<'r, SqliteRow> + Send + Unpin {}
impl<T> Row for T where T: for<'r> FromRow<'r, PgRow> + for<'r> FromRow<'r, SqliteRow> + Send + Unpin {}

/// A value both backends can bind (`i64`, `String`, `&str`, `bool`, `f64`, `Option<_>`,
/// `Vec<u8>`, `sqlx::types::Json<_>`, …).
pub trait Bind<'q>: Send + 'q + Encode<'q, Postgres> + Type<Postgres> + Encode<'q, Sqlite> + Type<Sqlite> {}
impl<'q, T> Bind<'q> for T where T: Send + 'q + Encode<'q, Postgres> + Type<Postgres> + Encode<'q, Sqlite> + Type<Sqlite>
{}

/// Arguments of a portable statement: a tuple of [`Bind`] values, `()` for none.
pub trait Args<'q>: Send {
    /// Bind the values, in order, to a PostgreSQL query.
    fn bind_pg(self, q: Query<'q, Postgres, PgArguments>) -> Query<'q, Postgres, PgArguments>;
    /// Bind the values, in order, to a SQLite query.
    fn bind_sqlite(self, q: Query<'q, Sqlite, SqliteArguments<'q>>) -> Query<'q, Sqlite, SqliteArguments<'q>>;
}

macro_rules! impl_args {
    ($($t:ident),*) => {
        impl<'q, $($t: Bind<'q>),*> Args<'q> for ($($t,)*) {
            #[allow(non_snake_case, unused_mut)]
            fn bind_pg(self, mut q: Query<'q, Postgres, PgArguments>) -> Query<'q, Postgres, PgArguments> {
                let ($($t,)*) = self;
                $(q = q.bind($t);)*
                q
            }
            #[allow(non_snake_case, unused_mut)]
            fn bind_sqlite(self, mut q: Query<'q, Sqlite, SqliteArguments<'q>>) -> Query<'q, Sqlite, SqliteArguments<'q>> {
                let ($($t,)*) = self;
                $(q = q.bind($t);)*
                q
            }
        }
    };
}
impl_args!();
impl_args!(A);
impl_args!(A, B);
impl_args!(A, B, C);
impl_args!(A, B, C, D);
impl_args!(A, B, C, D, E);
impl_args!(A, B, C, D, E, F);
impl_args!(A, B, C, D, E, F, G);
impl_args!(A, B, C, D, E, F, G, H);
impl_args!(A, B, C, D, E, F, G, H, I);
impl_args!(A, B, C, D, E, F, G, H, I, J);
impl_args!(A, B, C, D, E, F, G, H, I, J, K);
impl_args!(A, B, C, D, E, F, G, H, I, J, K, L);

impl Db {
    /// Run a built statement whose rows are one text column each (JSON documents).
    pub(crate) async fn fetch_texts(&self, st: &Statement) -> std::result::Result<Vec<String>, sqlx::Error> {
        match self {
            Db::Postgres(p) => {
                let mut q = sqlx::query_scalar::<_, String>(&st.sql);
                for v in &st.values {
                    q = v.bind_pg(q);
                }
                q.fetch_all(p).await
            }
            Db::Sqlite(p) => {
                let mut q = sqlx::query_scalar::<_, String>(&st.sql);
                for v in &st.values {
                    q = v.bind_sqlite(q);
                }
                q.fetch_all(p).await
            }
        }
    }

    /// How SQL is written for this database.
    pub(crate) fn dialect(&self) -> &'static dyn crate::sql::Dialect {
        self.backend().dialect()
    }
}

/// All named databases of a runtime.
#[derive(Clone, Debug, Default)]
pub struct Databases {
    map: Arc<BTreeMap<String, Db>>,
}

/// One database with its name, for errors that say which.
#[derive(Clone, Debug)]
pub(crate) struct NamedDb {
    pub(crate) name: String,
    pub(crate) db: Db,
}

impl Databases {
    pub(crate) fn new(map: BTreeMap<String, Db>) -> Databases {
        Databases { map: Arc::new(map) }
    }

    /// The database called `name`.
    pub fn get(&self, name: &str) -> Result<&Db> {
        self.map.get(name).ok_or_else(|| Error::NotFound(format!("no database named `{name}` is configured")))
    }

    /// The names of every database, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.map.keys().map(String::as_str)
    }

    /// Every database with its name, ordered by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Db)> {
        self.map.iter().map(|(k, v)| (k.as_str(), v))
    }
}
