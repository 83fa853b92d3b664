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

use crate::db::{Backend, Databases, Db};
use crate::error::{Error, OnDatabase, Result};
use crate::meta::{Location, TypeInfo};
pub use value::{QueryValue, ScalarKind, SqlValue};

use crate::sql::{Select, Statement};

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
    /// The argument named `limit`: most rows to return.
    Limit,
    /// The argument named `offset`: rows to skip first.
    Offset,
    /// `"column [asc|desc], …"`, columns of the view only.
    OrderBy,
    /// An argument of a custom resolver.
    Input,
}

/// An argument of a query.
#[derive(Debug, Clone, Copy)]
pub struct QueryArgDef {
    /// The parameter's name: the key of the JSON arguments, in camelCase the GraphQL
    /// argument, and for a filter the column it compares.
    pub name: &'static str,
    /// How it is used.
    pub role: ArgRole,
    /// `Option<_>`: may be left out.
    pub optional: bool,
    /// `Vec<_>`: a list of values, any of which matches (SQL `IN`).
    pub list: bool,
    /// Its scalar type (of the element, for `Option<_>` and `Vec<_>`).
    pub kind: ScalarKind,
    /// As written in the source.
    pub type_name: &'static str,
}

/// The view a bodiless `#[query]` reads.
#[derive(Debug, Clone, Copy)]
pub struct ViewSource {
    /// `v_order` or `schema.v_order`.
    pub sql_source: &'static str,
    /// The database the view is in (`database = "…"`; default `primary`).
    pub database: &'static str,
    /// The column that holds each row's JSON document (`data_column = "…"`; default
    /// `data`).
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
    /// The annotated function's name, for messages.
    pub function: &'static str,
    /// `None` for a custom resolver.
    pub view: Option<ViewSource>,
    /// Its parameters, in order.
    pub args: &'static [QueryArgDef],
    /// How many rows it returns, from its return type.
    pub returns: Returns,
    /// `T` of `Option<T>` / `Vec<T>` / `T`.
    pub output: fn() -> TypeInfo,
    /// How the schema serves `T`.
    pub output_type: fn() -> crate::describe::TypeRef,
    /// Calls the function with JSON arguments (what GraphQL and [`crate::Runtime::query`]
    /// use).
    pub resolve: ResolveFn,
    /// The function's doc comment: the GraphQL field's description.
    pub doc: Option<&'static str>,
    /// Where the `#[query]` is (for messages; never served).
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
pub(crate) struct ViewInfo {
    /// Each column's type, by column name.
    pub columns: BTreeMap<String, String>,
    /// Where the view is: identifiers are quoted for it.
    pub backend: Backend,
}

impl ViewInfo {
    fn names(&self) -> String {
        self.columns.keys().map(String::as_str).collect::<Vec<_>>().join(", ")
    }
}

/// The query component of one runtime: the registered queries, the databases they read,
/// and what is known of their views.
pub(crate) struct Queries {
    databases: Databases,
    queries: Vec<&'static QueryDef>,
    /// Columns of known views, by (database, view).
    views: Mutex<HashMap<(String, String), Arc<ViewInfo>>>,
}

async fn read_view(db: &Db, database: &str, view: &str) -> Result<ViewInfo> {
    let (sql, args) = db.dialect().view_columns(view);
    let rows: Vec<(String, String)> = match args.as_slice() {
        [a] => db.fetch_all(sql, (a,)).await,
        [a, b] => db.fetch_all(sql, (a, b)).await,
        _ => return Err(Error::internal("a catalog query with an unexpected number of arguments")),
    }
    .on(database)?;
    if rows.is_empty() {
        return Err(Error::NotFound(format!("view `{view}` does not exist in database `{database}`")));
    }
    Ok(ViewInfo { columns: rows.into_iter().collect(), backend: db.backend() })
}

impl Queries {
    pub(crate) fn new(databases: Databases, queries: Vec<&'static QueryDef>) -> Arc<Queries> {
        Arc::new(Queries { databases, queries, views: Mutex::default() })
    }

    /// The named databases queries read.
    pub(crate) fn databases(&self) -> &Databases {
        &self.databases
    }

    /// The columns of `view` in `database`, read once from the catalog.
    pub(crate) async fn view_info(&self, database: &str, view: &str) -> Result<Arc<ViewInfo>> {
        let key = (database.to_string(), view.to_string());
        if let Some(v) = self.views.lock().unwrap().get(&key) {
            return Ok(v.clone());
        }
        let db = self.databases.get(database)?;
        let info = Arc::new(read_view(db, database, view).await?);
        self.views.lock().unwrap().insert(key, info.clone());
        Ok(info)
    }

    /// Forget what is known of views (after a migration changed them).
    pub(crate) fn forget_views(&self) {
        self.views.lock().unwrap().clear();
    }

    /// Forget one view: a statement on it failed, perhaps because a migration changed
    /// it; the next call reads its columns again.
    pub(crate) fn forget_view(&self, database: &str, view: &str) {
        self.views.lock().unwrap().remove(&(database.to_string(), view.to_string()));
    }

    /// Check a view query's registration against its view: the view exists, and has
    /// the data column, every filter column and the default ordering's columns.
    pub(crate) async fn check(&self, def: &QueryDef) -> Result<Arc<ViewInfo>> {
        let Some(src) = &def.view else { return Err(Error::internal("a view check of a query without a view")) };
        let at = || format!("query `{}` ({})", def.function, def.location);
        let info = self
            .view_info(src.database, src.sql_source)
            .await
            .map_err(|e| Error::Registry(format!("{}: {e}", at())))?;
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
            self.forget_view(src.database, src.sql_source);
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

    /// Check every registered view query against its view now (after migrations),
    /// instead of at its first call. Returns how many were checked.
    pub(crate) async fn check_all(&self) -> Result<usize> {
        self.forget_views();
        let mut problems = Vec::new();
        let mut n = 0;
        for def in self.queries.iter().filter(|d| d.view.is_some()) {
            n += 1;
            if let Err(e) = self.check(def).await {
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
    pub(crate) async fn call(&self, name: &str, args: Value) -> Result<Value> {
        let def = self
            .queries
            .iter()
            .find(|d| d.name == name)
            .ok_or_else(|| Error::NotFound(format!("no query named `{name}`")))?;
        (def.resolve)(args).await
    }
}

/// `"created_at" DESC, "id" ASC` from `created_at desc, id`, columns of the view only.
/// The syntax is `crate::grammar`'s, which `#[query(order_by = …)]` checks too.
pub(crate) fn order_by_sql(info: &ViewInfo, spec: &str) -> std::result::Result<String, String> {
    let mut out = Vec::new();
    for term in crate::grammar::parse_order_by(spec)? {
        if !info.columns.contains_key(term.column) {
            return Err(format!("`{}` is not a column of the view (its columns: {})", term.column, info.names()));
        }
        out.push(format!("{} {}", info.backend.dialect().ident(term.column), term.direction_sql()));
    }
    Ok(out.join(", "))
}

/// One call of a view query: its filters, page and ordering.
#[derive(Debug, Default)]
pub struct ViewCall {
    /// `column = value` conditions (`IN` for a list value), all of which must hold.
    pub filters: Vec<(&'static str, SqlValue)>,
    /// Most rows to return; `None`: the source's `limit`, if any.
    pub limit: Option<i64>,
    /// Rows to skip first.
    pub offset: Option<i64>,
    /// Ordering as `order_by` takes it (`"created_at desc, id"`); `None`: the source's.
    pub order_by: Option<String>,
}

fn build(def: &QueryDef, src: &ViewSource, info: &ViewInfo, call: ViewCall) -> Result<Statement> {
    let d = info.backend.dialect();
    // The document as the text it is read as (whatever the column's JSON type).
    let mut select = Select::new(d, &info.columns, d.as_text(&d.ident(src.data_column)), d.path(src.sql_source));
    for (column, value) in call.filters {
        let cond = select.column_eq(column, value);
        select.and(cond);
    }
    let order = match call.order_by.as_deref().or(src.order_by) {
        Some(spec) => Some(
            order_by_sql(info, spec)
                .map_err(|e| Error::InvalidArgument(format!("query `{}`: order_by: {e}", def.name)))?,
        ),
        None => None,
    };
    select.order_by(order);
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
    Ok(select.build(limit, call.offset))
}

/// Run a view query; the rows' JSON documents, as text.
pub(crate) async fn run_view(queries: &Queries, def: &'static QueryDef, call: ViewCall) -> Result<Vec<String>> {
    let src = def.view.as_ref().ok_or_else(|| Error::internal("a view call of a query without a view"))?;
    let span = tracing::info_span!("query", query = def.name, view = src.sql_source, database = src.database);
    let started = std::time::Instant::now();
    let result = async {
        // The view's columns are cached; the checks against them are map lookups.
        let info = queries.check(def).await?;
        let db = queries.databases.get(src.database)?;
        let st = build(def, src, &info, call)?;
        let rows = db
            .fetch_texts(&st)
            .await
            .on(src.database)
            .inspect_err(|_| queries.forget_view(src.database, src.sql_source))?;
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
    .await;
    crate::telemetry::query_ran(def.name, started.elapsed());
    result
}

/// Decode the JSON documents of rows into `T`.
pub(crate) fn decode_rows<T: DeserializeOwned>(def: &QueryDef, rows: Vec<String>) -> Result<Vec<T>> {
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
