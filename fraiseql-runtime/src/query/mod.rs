//! Queries: `#[query(sql_source = "v_order")]` reads a view (FraiseQL's convention:
//! filter columns plus a JSON `data` column) with arguments as bound equality filters;
//! a `#[query]` with a body is a custom resolver, registered as written.
//!
//! The view's columns are read from the database catalog the first time a query uses
//! it (or by [`crate::Runtime::check_queries`]): filter and ordering columns are checked
//! against them, and on PostgreSQL each bound value is cast to its column's type, so a
//! `uuid` or `timestamptz` column compares with its index. Identifiers come only from
//! the registration (checked at compile time) and the catalog; values are always bound.

pub mod value;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use futures_util::future::BoxFuture;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tracing::Instrument;

use crate::db::{Backend, Db};
use crate::error::{Error, Result};
use crate::registry::{Location, TypeInfo};
use crate::runtime::{Inner, Runtime};
pub use value::{QueryValue, ScalarKind, SqlValue};

/// What a query returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Returns {
    /// `Result<T>`: exactly one row (none is [`Error::NotFound`]).
    One,
    /// `Result<Option<T>>`: at most one row.
    Optional,
    /// `Result<Vec<T>>`: every matching row.
    Many,
}

/// How an argument is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgRole {
    /// An equality filter on the same-named column (`Option`: only when given).
    Filter,
    Limit,
    Offset,
    /// `"column [asc|desc], …"`, columns of the view only.
    OrderBy,
    /// An argument of a custom resolver.
    Input,
}

/// An argument of a query.
#[derive(Debug, Clone, Copy)]
pub struct QueryArgDef {
    pub name: &'static str,
    pub role: ArgRole,
    /// `Option<_>`: may be left out.
    pub optional: bool,
    /// `Vec<_>`: a list of values, any of which matches (SQL `IN`).
    pub list: bool,
    pub kind: ScalarKind,
    /// As written in the source.
    pub type_name: &'static str,
}

/// The view a bodiless `#[query]` reads.
#[derive(Debug, Clone, Copy)]
pub struct ViewSource {
    /// `v_order` or `schema.v_order`.
    pub sql_source: &'static str,
    pub database: &'static str,
    pub data_column: &'static str,
    /// Ordering when the caller gives none.
    pub order_by: Option<&'static str>,
    /// Rows at most when the caller gives no limit.
    pub limit: Option<u64>,
}

/// Calls a query from JSON arguments (an object by argument name) to its JSON result.
pub type ResolveFn = fn(Value) -> BoxFuture<'static, Result<Value>>;

/// A `#[query]` registration.
pub struct QueryDef {
    /// The name it is served under (the function's, unless `name = "…"`).
    pub name: &'static str,
    pub function: &'static str,
    /// `None` for a custom resolver.
    pub view: Option<ViewSource>,
    pub args: &'static [QueryArgDef],
    pub returns: Returns,
    /// `T` of `Option<T>` / `Vec<T>` / `T`.
    pub output: fn() -> TypeInfo,
    /// How the schema serves `T`.
    pub output_type: fn() -> crate::describe::TypeRef,
    pub resolve: ResolveFn,
    pub location: Location,
}

impl std::fmt::Debug for QueryDef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryDef")
            .field("name", &self.name)
            .field("view", &self.view)
            .field("location", &self.location)
            .finish()
    }
}

/// Columns of a view, by name, with their SQL type on PostgreSQL (as the catalog
/// writes it, without modifiers) or their declared type on SQLite.
#[derive(Debug, Clone)]
pub struct ViewInfo {
    pub columns: BTreeMap<String, String>,
    /// Where the view is: identifiers are quoted for it.
    pub backend: Backend,
}

impl ViewInfo {
    fn names(&self) -> String {
        self.columns.keys().map(String::as_str).collect::<Vec<_>>().join(", ")
    }
}

/// Known views, per database.
#[derive(Default)]
pub(crate) struct ViewCache {
    views: Mutex<HashMap<(String, String), Arc<ViewInfo>>>,
}

/// `"a"."b"` from `a.b` (both parts already checked to be identifiers).
pub fn quote_path(path: &str) -> String {
    path.split('.').map(|p| format!("\"{}\"", p.replace('"', "\"\""))).collect::<Vec<_>>().join(".")
}

pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// An identifier quoted for `backend`. SQLite gets `[name]`: a double-quoted name that
/// matches no column is a string literal there, so a stale or mistaken column name would
/// compare a constant instead of failing.
pub fn ident_in(backend: Backend, name: &str) -> String {
    match backend {
        Backend::Postgres => quote_ident(name),
        Backend::Sqlite => format!("[{}]", name.replace(']', "")),
    }
}

/// `schema.view` quoted for `backend`.
pub fn path_in(backend: Backend, path: &str) -> String {
    path.split('.').map(|p| ident_in(backend, p)).collect::<Vec<_>>().join(".")
}

async fn read_view(db: &Db, database: &str, view: &str) -> Result<ViewInfo> {
    let rows: Vec<(String, String)> = match db.backend() {
        Backend::Postgres => db
            .fetch_all(
                "SELECT a.attname::text, format_type(a.atttypid, NULL) FROM pg_attribute a
                 WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
                (quote_path(view),),
            )
            .await
            .map_err(|e| Error::db(database, e))?,
        Backend::Sqlite => {
            let (schema, name) = view.split_once('.').unwrap_or(("main", view));
            db.fetch_all("SELECT name, type FROM pragma_table_info($1, $2)", (name, schema))
                .await
                .map_err(|e| Error::db(database, e))?
        }
    };
    if rows.is_empty() {
        return Err(Error::NotFound(format!("view `{view}` does not exist in database `{database}`")));
    }
    Ok(ViewInfo { columns: rows.into_iter().collect(), backend: db.backend() })
}

impl Inner {
    /// The columns of `view` in `database`, read once from the catalog.
    pub(crate) async fn view_info(&self, database: &str, view: &str) -> Result<Arc<ViewInfo>> {
        let key = (database.to_string(), view.to_string());
        if let Some(v) = self.views.views.lock().unwrap().get(&key) {
            return Ok(v.clone());
        }
        let db = self.databases.get(database)?;
        let info = Arc::new(read_view(db, database, view).await?);
        self.views.views.lock().unwrap().insert(key, info.clone());
        Ok(info)
    }

    /// Forget what is known of views (after a migration changed them).
    pub(crate) fn forget_views(&self) {
        self.views.views.lock().unwrap().clear();
    }

    /// Forget one view: a statement on it failed, perhaps because a migration changed
    /// it; the next call reads its columns again.
    pub(crate) fn forget_view(&self, database: &str, view: &str) {
        self.views.views.lock().unwrap().remove(&(database.to_string(), view.to_string()));
    }
}

/// Check a view query's registration against its view: the view exists, and has the
/// data column, every filter column and the default ordering's columns.
pub(crate) async fn check(rt: &Inner, def: &QueryDef) -> Result<Arc<ViewInfo>> {
    let Some(src) = &def.view else { return Err(Error::msg("not a view query")) };
    let at = || format!("query `{}` ({})", def.function, def.location);
    let info =
        rt.view_info(src.database, src.sql_source).await.map_err(|e| Error::Registry(format!("{}: {e}", at())))?;
    let mut missing = Vec::new();
    if !info.columns.contains_key(src.data_column) {
        missing.push(format!("the data column `{}`", src.data_column));
    }
    for a in def.args.iter().filter(|a| a.role == ArgRole::Filter) {
        if !info.columns.contains_key(a.name) {
            missing.push(format!("a column `{}` for the argument of that name", a.name));
        }
    }
    if let Some(order) = src.order_by {
        if let Err(e) = order_by_sql(&info, order) {
            missing.push(format!("the default ordering: {e}"));
        }
    }
    if !missing.is_empty() {
        // Not kept: the view may be about to change (a migration in progress).
        rt.forget_view(src.database, src.sql_source);
        return Err(Error::Registry(format!(
            "{}: view `{}` in database `{}` lacks {} (its columns: {})",
            at(),
            src.sql_source,
            src.database,
            missing.join("; "),
            info.names()
        )));
    }
    Ok(info)
}

/// `"created_at" DESC, "id" ASC` from `created_at desc, id`, columns of the view only.
/// The syntax is `crate::grammar`'s, which `#[query(order_by = …)]` checks too.
pub fn order_by_sql(info: &ViewInfo, spec: &str) -> std::result::Result<String, String> {
    let mut out = Vec::new();
    for term in crate::grammar::parse_order_by(spec)? {
        if !info.columns.contains_key(term.column) {
            return Err(format!("`{}` is not a column of the view (its columns: {})", term.column, info.names()));
        }
        out.push(format!("{} {}", ident_in(info.backend, term.column), term.direction_sql()));
    }
    Ok(out.join(", "))
}

/// One call of a view query: its filters, page and ordering.
#[derive(Debug, Default)]
pub struct ViewCall {
    pub filters: Vec<(&'static str, SqlValue)>,
    pub limit: Option<i64>,
    pub offset: Option<i64>,
    pub order_by: Option<String>,
}

/// A SQL statement and the values it binds, built for one backend.
#[derive(Debug)]
pub struct Statement {
    pub sql: String,
    pub values: Vec<SqlValue>,
}

/// `$n` (with a cast to the column's type on PostgreSQL) for the next value.
pub fn placeholder(
    backend: Backend,
    info: &ViewInfo,
    column: &str,
    values: &mut Vec<SqlValue>,
    value: SqlValue,
) -> String {
    values.push(value);
    let n = values.len();
    match (backend, info.columns.get(column)) {
        (Backend::Postgres, Some(ty)) if !ty.is_empty() => format!("${n}::{ty}"),
        _ => format!("${n}"),
    }
}

/// The page and ordering part of a statement: ` ORDER BY … LIMIT $n OFFSET $m`.
pub fn page_sql(
    backend: Backend,
    order: Option<&str>,
    limit: Option<i64>,
    offset: Option<i64>,
    values: &mut Vec<SqlValue>,
) -> String {
    let mut sql = String::new();
    if let Some(o) = order {
        sql.push_str(" ORDER BY ");
        sql.push_str(o);
    }
    match (limit, offset, backend) {
        (Some(l), _, _) => {
            values.push(SqlValue::Int(l));
            sql.push_str(&format!(" LIMIT ${}", values.len()));
        }
        (None, Some(_), Backend::Sqlite) => sql.push_str(" LIMIT -1"),
        _ => {}
    }
    if let Some(o) = offset {
        values.push(SqlValue::Int(o));
        sql.push_str(&format!(" OFFSET ${}", values.len()));
    }
    sql
}

/// `= ANY($n::type[])` on PostgreSQL, `IN ($a, $b, …)` on SQLite; an empty list matches
/// nothing.
pub fn in_list_sql(
    backend: Backend,
    info: &ViewInfo,
    column: &str,
    items: Vec<SqlValue>,
    values: &mut Vec<SqlValue>,
) -> String {
    let col = ident_in(backend, column);
    if items.is_empty() {
        return "FALSE".into();
    }
    match backend {
        Backend::Postgres => {
            let ty = info.columns.get(column).filter(|t| !t.is_empty()).cloned().unwrap_or_else(|| "text".into());
            values.push(SqlValue::List(items));
            format!("{col} = ANY(${}::text[]::{ty}[])", values.len())
        }
        Backend::Sqlite => {
            let phs: Vec<String> = items
                .into_iter()
                .map(|v| {
                    values.push(v);
                    format!("${}", values.len())
                })
                .collect();
            format!("{col} IN ({})", phs.join(", "))
        }
    }
}

/// The WHERE clause of equality (or, for lists, membership) filters.
pub fn filters_sql(
    backend: Backend,
    info: &ViewInfo,
    filters: Vec<(&str, SqlValue)>,
    values: &mut Vec<SqlValue>,
) -> Vec<String> {
    filters
        .into_iter()
        .map(|(col, v)| match v {
            SqlValue::List(items) => in_list_sql(backend, info, col, items, values),
            v => format!("{} = {}", ident_in(backend, col), placeholder(backend, info, col, values, v)),
        })
        .collect()
}

fn build(def: &QueryDef, src: &ViewSource, backend: Backend, info: &ViewInfo, call: ViewCall) -> Result<Statement> {
    let mut values = Vec::new();
    let data = match backend {
        Backend::Postgres => format!("{}::text", quote_ident(src.data_column)),
        Backend::Sqlite => ident_in(backend, src.data_column),
    };
    let mut sql = format!("SELECT {data} FROM {}", path_in(backend, src.sql_source));
    let conds = filters_sql(backend, info, call.filters, &mut values);
    if !conds.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&conds.join(" AND "));
    }
    let order = match call.order_by.as_deref().or(src.order_by) {
        Some(spec) => Some(
            order_by_sql(info, spec)
                .map_err(|e| Error::InvalidArgument(format!("query `{}`: order_by: {e}", def.name)))?,
        ),
        None => None,
    };
    for (what, v) in [("limit", call.limit), ("offset", call.offset)] {
        if v.is_some_and(|v| v < 0) {
            return Err(Error::InvalidArgument(format!("query `{}`: {what} must not be negative", def.name)));
        }
    }
    let limit = match def.returns {
        // Two rows are enough to tell "one" from "more than one".
        Returns::One | Returns::Optional => Some(2),
        Returns::Many => call.limit.or(src.limit.map(|l| l as i64)),
    };
    sql.push_str(&page_sql(backend, order.as_deref(), limit, call.offset, &mut values));
    Ok(Statement { sql, values })
}

/// Run a statement whose rows are one text column each (JSON documents).
pub async fn fetch_texts(db: &Db, database: &str, st: &Statement) -> Result<Vec<String>> {
    let r = match db.backend() {
        Backend::Postgres => {
            let mut q = sqlx::query_scalar::<_, String>(&st.sql);
            for v in &st.values {
                q = v.bind_pg(q);
            }
            q.fetch_all(db.as_postgres().expect("postgres")).await
        }
        Backend::Sqlite => {
            let mut q = sqlx::query_scalar::<_, String>(&st.sql);
            for v in &st.values {
                q = v.bind_sqlite(q);
            }
            q.fetch_all(db.as_sqlite().expect("sqlite")).await
        }
    };
    r.map_err(|e| Error::db(database, e))
}

/// Run a view query; the rows' JSON documents, as text.
pub async fn run_view(def: &'static QueryDef, call: ViewCall) -> Result<Vec<String>> {
    let rt = Runtime::current()?;
    let src = def.view.as_ref().expect("a view query");
    let span = tracing::info_span!("query", query = def.name, view = src.sql_source, database = src.database);
    async {
        // The view's columns are cached; the checks against them are map lookups.
        let info = check(&rt.inner, def).await?;
        let db = rt.inner.databases.get(src.database)?;
        let st = build(def, src, db.backend(), &info, call)?;
        let rows = fetch_texts(db, src.database, &st)
            .await
            .inspect_err(|_| rt.inner.forget_view(src.database, src.sql_source))?;
        let many = rows.len() > 1;
        match def.returns {
            Returns::One if rows.is_empty() => {
                Err(Error::NotFound(format!("query `{}`: no row in `{}` matches", def.name, src.sql_source)))
            }
            Returns::One | Returns::Optional if many => Err(Error::msg(format!(
                "query `{}` returns one row, but more than one row of `{}` matches",
                def.name, src.sql_source
            ))),
            _ => Ok(rows),
        }
    }
    .instrument(span)
    .await
}

/// Decode the JSON documents of rows into `T`.
pub fn decode_rows<T: DeserializeOwned>(def: &QueryDef, rows: Vec<String>) -> Result<Vec<T>> {
    rows.iter()
        .map(|r| {
            serde_json::from_str(r).map_err(|e| {
                let source = def.view.map(|v| v.sql_source).unwrap_or("its source");
                Error::json(
                    format!(
                        "query `{}`: a row of `{source}` does not deserialise into `{}`",
                        def.name,
                        (def.output)().short_name()
                    ),
                    e,
                )
            })
        })
        .collect()
}

/// An argument of a resolver call, from the JSON object of arguments.
pub fn arg<T: DeserializeOwned>(query: &str, args: &Value, name: &str) -> Result<T> {
    let v = args.get(name).cloned().unwrap_or(Value::Null);
    T::deserialize(v).map_err(|e| Error::InvalidArgument(format!("query `{query}`: argument `{name}`: {e}")))
}

/// Check every registered view query against its view now (after migrations), instead
/// of at its first call. Returns how many were checked.
pub(crate) async fn check_all(rt: &Inner) -> Result<usize> {
    rt.forget_views();
    let mut problems = Vec::new();
    let mut n = 0;
    for def in rt.registry.queries.iter().filter(|d| d.view.is_some()) {
        n += 1;
        if let Err(e) = check(rt, def).await {
            problems.push(e.to_string());
        }
    }
    if problems.is_empty() {
        Ok(n)
    } else {
        Err(Error::Registry(format!(
            "{} of {n} queries do not fit their views:\n  - {}",
            problems.len(),
            problems.join("\n  - ")
        )))
    }
}

/// Call a registered query by name with JSON arguments.
pub(crate) async fn call(rt: &Inner, name: &str, args: Value) -> Result<Value> {
    let def = rt
        .registry
        .queries
        .iter()
        .find(|d| d.name == name)
        .ok_or_else(|| Error::NotFound(format!("no query named `{name}`")))?;
    (def.resolve)(args).await
}
