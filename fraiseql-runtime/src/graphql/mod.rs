//! The GraphQL endpoint: root query fields are the registered `#[query]`s, mutation
//! fields the registered sagas, object types the `#[derive(Object)]` structs they
//! return. Built on async-graphql's dynamic schema (parsing, validation, execution,
//! introspection, limits, spec-shaped errors); FraiseQL supplies the resolvers.
//!
//! A view query's field is answered with one statement that builds, in the database,
//! exactly the JSON keys the request selected (nested objects and lists included);
//! list fields take `where`, `orderBy`, `limit` and `offset`. Names in that statement
//! come from the registered types and the view's catalog, values are bound.

mod compiled;
mod execute;
pub mod http;
mod persisted;
mod sql;

/// The introspection query GraphQL clients send (graphql-js's `getIntrospectionQuery()`).
pub const INTROSPECTION_QUERY: &str = r#"query IntrospectionQuery {
  __schema {
    queryType { name }
    mutationType { name }
    subscriptionType { name }
    types { ...FullType }
    directives { name description locations args { ...InputValue } }
  }
}
fragment FullType on __Type {
  kind name description
  fields(includeDeprecated: true) { name description args { ...InputValue } type { ...TypeRef } isDeprecated deprecationReason }
  inputFields { ...InputValue }
  interfaces { ...TypeRef }
  enumValues(includeDeprecated: true) { name description isDeprecated deprecationReason }
  possibleTypes { ...TypeRef }
}
fragment InputValue on __InputValue { name description type { ...TypeRef } defaultValue }
fragment TypeRef on __Type {
  kind name
  ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name } } } } } } }
}"#;

/// The GraphQL crate the endpoint is built on (for `Request`, `Variables`, …).
pub use async_graphql;

use std::collections::BTreeMap;

use async_graphql::dynamic::{
    Enum, Field, FieldFuture, FieldValue, InputObject, InputValue, Object, ResolverContext, Scalar, Schema,
    TypeRef as Gql,
};
use async_graphql::ErrorExtensions;
use serde_json::{Map, Value};
use tracing::{warn, Instrument};

use crate::describe::ScalarKind;
use crate::describe::{camel_case, ObjectDesc, TypeRef};
use crate::error::OnDatabase;
use crate::error::{Error, Result};
use crate::query::{ArgRole, QueryDef, Returns};
use crate::registry::SagaDef;
use crate::runtime::Runtime;
use crate::sql::{Select, SqlValue};
use sql::{Conditions, Fields, Proj, Projection};

fn scalar_name(k: ScalarKind) -> &'static str {
    match k {
        ScalarKind::Id => "ID",
        ScalarKind::String => "String",
        ScalarKind::Int => "Int",
        ScalarKind::Float => "Float",
        ScalarKind::Boolean => "Boolean",
    }
}

/// An output type: non-null unless `Nullable`.
fn out_type(t: &TypeRef) -> Gql {
    match t {
        TypeRef::Nullable(inner) => base_type(inner, false),
        other => Gql::NonNull(Box::new(base_type(other, false))),
    }
}

/// An input type: objects are taken as `JSON`.
fn in_type(t: &TypeRef) -> Gql {
    match t {
        TypeRef::Nullable(inner) => base_type(inner, true),
        other => Gql::NonNull(Box::new(base_type(other, true))),
    }
}

fn base_type(t: &TypeRef, input: bool) -> Gql {
    match t {
        TypeRef::Scalar(k) => Gql::named(scalar_name(*k)),
        TypeRef::Json => Gql::named("JSON"),
        TypeRef::Object(_) if input => Gql::named("JSON"),
        TypeRef::Object(d) => Gql::named(d.name),
        TypeRef::List(inner) => Gql::List(Box::new(if input { in_type(inner) } else { out_type(inner) })),
        TypeRef::Nullable(inner) => base_type(inner, input),
    }
}

/// Every object type reachable from a type.
fn collect(t: &TypeRef, out: &mut BTreeMap<&'static str, &'static ObjectDesc>, problems: &mut Vec<String>) {
    match t {
        TypeRef::Object(d) => match out.get(d.name) {
            Some(prev) if std::ptr::eq(*prev, *d) => {}
            Some(_) => problems.push(format!("two different types are both named `{}` in the GraphQL schema; rename one with #[fraiseql(name = \"…\")]", d.name)),
            None => {
                out.insert(d.name, d);
                for f in d.fields {
                    collect(&(f.ty)(), out, problems);
                }
            }
        },
        TypeRef::List(inner) | TypeRef::Nullable(inner) => collect(inner, out, problems),
        TypeRef::Scalar(_) | TypeRef::Json => {}
    }
}

/// A scalar JSON value as GraphQL's (no serde round trip).
fn scalar(v: &Value) -> async_graphql::Value {
    match v {
        Value::Null => async_graphql::Value::Null,
        Value::Bool(b) => async_graphql::Value::Boolean(*b),
        Value::Number(n) => async_graphql::Value::Number(n.clone()),
        Value::String(s) => async_graphql::Value::String(s.clone()),
        other => async_graphql::Value::from_json(other.clone()).unwrap_or_default(),
    }
}

/// A JSON value as a field's value, borrowing objects and lists from the parent (their
/// own fields read them in place; nothing is copied but scalars).
fn borrowed<'a>(v: Option<&'a Value>, t: &TypeRef) -> Option<FieldValue<'a>> {
    let v = v?;
    if v.is_null() {
        return None;
    }
    match t.non_null() {
        TypeRef::Object(_) => Some(FieldValue::borrowed_any(v)),
        TypeRef::List(inner) => match v {
            Value::Array(items) => {
                Some(FieldValue::list(items.iter().map(|i| borrowed(Some(i), inner).unwrap_or(FieldValue::NULL))))
            }
            other => Some(FieldValue::value(scalar(other))),
        },
        _ => Some(FieldValue::value(scalar(v))),
    }
}

/// A JSON value as a field's value: objects stay JSON for their own field resolvers.
fn owned<'a>(v: Option<Value>, t: &TypeRef) -> Option<FieldValue<'a>> {
    let v = v?;
    if v.is_null() {
        return None;
    }
    match t.non_null() {
        TypeRef::Object(_) => Some(FieldValue::owned_any(v)),
        TypeRef::List(inner) => match v {
            Value::Array(items) => {
                Some(FieldValue::list(items.into_iter().map(|i| owned(Some(i), inner).unwrap_or(FieldValue::NULL))))
            }
            other => Some(FieldValue::value(async_graphql::Value::from_json(other).unwrap_or_default())),
        },
        _ => Some(FieldValue::value(scalar(&v))),
    }
}

/// An error as the response shows it: what was wrong, never the database's own text.
fn gql_error(e: Error) -> async_graphql::Error {
    let (code, message) = match &e {
        Error::Database { .. } | Error::Sqlx(_) => {
            warn!(error = %e, "a GraphQL field failed on the database");
            ("DATABASE_ERROR", "the database could not answer this field; the server log has the details".to_string())
        }
        Error::InvalidArgument(m) => ("BAD_USER_INPUT", m.clone()),
        Error::NotFound(m) => ("NOT_FOUND", m.clone()),
        Error::SagaAborted { .. } => ("SAGA_ABORTED", e.to_string()),
        Error::Timeout(m) => ("TIMEOUT", m.clone()),
        other => ("INTERNAL", other.to_string()),
    };
    let extra = match &e {
        Error::SagaAborted { saga_id, step, status, .. } => {
            Some((saga_id.to_string(), step.clone(), status.to_string()))
        }
        _ => None,
    };
    async_graphql::Error::new(message).extend_with(move |_, x| {
        x.set("code", code);
        if let Some((id, step, status)) = &extra {
            x.set("sagaId", id.as_str());
            x.set("step", step.as_str());
            x.set("status", status.as_str());
        }
    })
}

fn bad_input(m: impl Into<String>) -> async_graphql::Error {
    gql_error(Error::InvalidArgument(m.into()))
}

/// The GraphQL name of a registration: its own when `name = "…"` set one, else the
/// function's in camelCase.
fn field_name(name: &str, function: &str) -> String {
    if name == function {
        camel_case(function)
    } else {
        name.to_string()
    }
}

/// What the selection under `field` asks of an object, by JSON key.
fn projection(field: async_graphql::SelectionField<'_>, fields: &Fields) -> Projection {
    let mut out: Vec<(&'static str, Proj)> = Vec::new();
    for sel in field.selection_set() {
        let Some((key, ty)) = fields.by_graphql.get(sel.name()) else { continue }; // __typename
        let proj = match sql::object_of(ty) {
            Some((desc, is_list)) => {
                let sub = projection(sel, &Fields::of(desc));
                if is_list {
                    Proj::List(sub)
                } else {
                    Proj::Object(sub)
                }
            }
            None => Proj::Value,
        };
        match out.iter_mut().find(|(k, _)| k == key) {
            // The same field twice (aliases): one key holding both selections.
            Some((_, existing)) => merge(existing, proj),
            None => out.push((key, proj)),
        }
    }
    Projection { fields: out }
}

fn merge(into: &mut Proj, other: Proj) {
    match (into, other) {
        (Proj::Object(a), Proj::Object(b)) | (Proj::List(a), Proj::List(b)) => {
            for (k, p) in b.fields {
                match a.fields.iter_mut().find(|(ka, _)| *ka == k) {
                    Some((_, e)) => merge(e, p),
                    None => a.fields.push((k, p)),
                }
            }
        }
        _ => {}
    }
}

fn arg_json(ctx: &ResolverContext<'_>, name: &str) -> Option<Value> {
    ctx.args.get(name).and_then(|a| a.as_value().clone().into_json().ok()).filter(|v| !v.is_null())
}

/// Answer a view query's field with one statement.
async fn resolve_view<'a>(
    ctx: ResolverContext<'a>,
    def: &'static QueryDef,
    desc: Option<&'static ObjectDesc>,
) -> async_graphql::Result<Option<FieldValue<'a>>> {
    let src = def.view.expect("a view query");
    let span =
        tracing::info_span!("query", query = def.name, view = src.sql_source, database = src.database, graphql = true);
    let started = std::time::Instant::now();
    let result = resolve_view_in_span(ctx, def, desc).instrument(span).await;
    crate::telemetry::query_ran(def.name, started.elapsed());
    result
}

async fn resolve_view_in_span<'a>(
    ctx: ResolverContext<'a>,
    def: &'static QueryDef,
    desc: Option<&'static ObjectDesc>,
) -> async_graphql::Result<Option<FieldValue<'a>>> {
    let rt = Runtime::current().map_err(gql_error)?;
    let src = def.view.expect("a view query");
    let args = |name: &str| arg_json(&ctx, name);
    let field = ctx.field();
    let select = |d: &'static dyn crate::sql::Dialect, root: &str| match desc {
        Some(desc) => d.as_text(&d.json_object(&projection(field, &Fields::of(desc)), root, 0)),
        None => d.as_text(root),
    };
    let rows = view_rows(&rt, def, desc, &args, &select).await?;
    let mut docs = Vec::with_capacity(rows.len());
    for r in rows {
        docs.push(
            serde_json::from_str::<Value>(&r)
                .map_err(|e| gql_error(Error::json(format!("a row of `{}`", src.sql_source), e)))?,
        );
    }
    let item = (def.output_type)();
    if def.returns == Returns::Many {
        return Ok(Some(FieldValue::list(docs.into_iter().map(|d| owned(Some(d), &item).unwrap_or(FieldValue::NULL)))));
    }
    match (docs.pop(), def.returns) {
        (None, Returns::One) => Err(not_found(def)),
        (d, _) => Ok(d.and_then(|d| owned(Some(d), &item))),
    }
}

fn not_found(def: &QueryDef) -> async_graphql::Error {
    gql_error(Error::NotFound(format!("`{}`: no row matches", field_name(def.name, def.function))))
}

/// The rows of a view query's field, as the text `select` makes of each row's document
/// (`select` is given the engine's dialect and the document's expression): one
/// statement, with the field's arguments (`arg` reads one by GraphQL name, `None` when
/// absent or null) as conditions, ordering and page. A field of one row errs when more
/// than one matches.
pub(super) async fn view_rows(
    rt: &Runtime,
    def: &'static QueryDef,
    desc: Option<&'static ObjectDesc>,
    arg: &(dyn Fn(&str) -> Option<Value> + Sync),
    select: &(dyn Fn(&'static dyn crate::sql::Dialect, &str) -> String + Sync),
) -> async_graphql::Result<Vec<String>> {
    let src = def.view.expect("a view query");
    let info = rt.queries().check(def).await.map_err(gql_error)?;
    let db = rt.queries().databases().get(src.database).map_err(gql_error)?;
    let d = db.dialect();
    let doc = d.json_doc(src.data_column, info.columns.get(src.data_column).map(String::as_str));
    let (from, root) = d.view_source(src.sql_source, &doc);
    let fields = desc.map(Fields::of);
    let mut select = Select::new(d, &info.columns, select(d, &root), from);
    for a in def.args.iter().filter(|a| a.role == ArgRole::Filter) {
        if let Some(v) = arg(&camel_case(a.name)) {
            let v = SqlValue::from_json(&v)
                .ok_or_else(|| bad_input(format!("argument `{}` takes a value", camel_case(a.name))))?;
            let cond = select.column_eq(a.name, v);
            select.and(cond);
        }
    }
    let many = def.returns == Returns::Many;
    let mut order = None;
    let (mut limit, mut offset) = (None, None);
    if many {
        let mut c = Conditions { select: &mut select, root };
        if let (Some(w), Some(f)) = (arg("where"), &fields) {
            let cond = c.filter(f, &w).map_err(|e| bad_input(format!("where: {e}")))?;
            c.select.and(cond);
        }
        if let (Some(Value::Array(terms)), Some(f)) = (arg("orderBy"), &fields) {
            let parsed: Vec<(String, bool)> = terms
                .iter()
                .filter_map(Value::as_str)
                .filter_map(|t| t.rsplit_once('_'))
                .filter_map(|(field, dir)| {
                    let gql = f.by_graphql.keys().find(|k| sql::enum_name(k) == field)?;
                    Some((gql.clone(), dir == "DESC"))
                })
                .collect();
            order = Some(c.order(f, &parsed).map_err(|e| bad_input(format!("orderBy: {e}")))?);
        }
        for (name, slot) in [("limit", &mut limit), ("offset", &mut offset)] {
            if let Some(v) = arg(name) {
                let n = v
                    .as_i64()
                    .filter(|n| *n >= 0)
                    .ok_or_else(|| bad_input(format!("{name} must be a number of rows, 0 or more")))?;
                *slot = Some(n);
            }
        }
        if let (Some(max), Some(l)) = (rt.config().graphql.max_limit, limit) {
            if l as u64 > max {
                return Err(bad_input(format!(
                    "limit {l} is above the most this server returns at once ({max}); page with offset"
                )));
            }
        }
        limit = limit.or(src.limit.map(|l| l as i64)).or(rt.config().graphql.max_limit.map(|m| m as i64));
    } else {
        limit = Some(2);
    }
    let order = match order.filter(|o| !o.is_empty()) {
        Some(o) => Some(o),
        None => src
            .order_by
            .map(|spec| crate::query::order_by_sql(&info, spec))
            .transpose()
            .map_err(|e| gql_error(Error::msg(e)))?,
    };
    select.order_by(order);
    let st = select.build(limit, offset);
    tracing::debug!(sql = %st.sql, "graphql field");
    let rows = db.fetch_texts(&st).await.on(src.database).map_err(|e| {
        rt.queries().forget_view(src.database, src.sql_source);
        gql_error(e)
    })?;
    if !many && rows.len() > 1 {
        return Err(gql_error(Error::msg(format!(
            "`{}` returns one row, but more than one row of `{}` matches",
            def.name, src.sql_source
        ))));
    }
    Ok(rows)
}

/// A custom resolver's field: its function, called with the arguments as JSON.
async fn resolve_custom<'a>(
    ctx: ResolverContext<'a>,
    def: &'static QueryDef,
) -> async_graphql::Result<Option<FieldValue<'a>>> {
    let mut args = Map::new();
    for a in def.args {
        if let Some(v) = arg_json(&ctx, &camel_case(a.name)) {
            args.insert(a.name.to_string(), v);
        }
    }
    let span = tracing::info_span!("query", query = def.name, resolver = def.function, graphql = true);
    let v = (def.resolve)(Value::Object(args)).instrument(span).await.map_err(gql_error)?;
    let ty = match def.returns {
        Returns::Many => TypeRef::List(Box::new((def.output_type)())),
        _ => (def.output_type)(),
    };
    Ok(owned(Some(v), &ty))
}

/// The client's `Idempotency-Key` for a request's mutations: each mutation field runs its
/// saga with `key:responseKey`, so a retried request gets the first run's result (or
/// failure) instead of running the saga again. The HTTP endpoint sets it from the header;
/// `Request::new(q).data(IdempotencyKey("…".into()))` sets it for `rt.graphql`.
#[derive(Debug, Clone)]
pub struct IdempotencyKey(pub String);

/// A saga's mutation field: the saga run with the arguments as its input.
async fn resolve_saga<'a>(
    ctx: ResolverContext<'a>,
    def: &'static SagaDef,
) -> async_graphql::Result<Option<FieldValue<'a>>> {
    let mut input = Map::new();
    for p in def.params {
        input.insert(p.name.to_string(), arg_json(&ctx, &camel_case(p.name)).unwrap_or(Value::Null));
    }
    let span = tracing::info_span!("graphql_mutation", saga = def.name);
    let rt = Runtime::current().map_err(gql_error)?;
    // The same public path a user's code takes.
    let key = ctx
        .data_opt::<IdempotencyKey>()
        .map(|k| {
            let field = ctx.field();
            format!("{}:{}", k.0, field.alias().unwrap_or(field.name()))
        })
        .or_else(crate::runtime::current_idempotency_key);
    let v = rt.run_saga(def.name, input, key).instrument(span).await.map_err(gql_error)?;
    Ok(owned(Some(v), &(def.output_type)()).or(Some(FieldValue::NULL)))
}

fn scalar_filter(kind: ScalarKind) -> InputObject {
    let s = scalar_name(kind);
    let mut o = InputObject::new(format!("{s}Filter"))
        .description(format!("Conditions on a field of type {s}; several are all required."));
    for op in ["eq", "neq", "gt", "gte", "lt", "lte"] {
        o = o.field(InputValue::new(op, Gql::named(s)));
    }
    o = o.field(InputValue::new("in", Gql::List(Box::new(Gql::named_nn(s)))));
    if matches!(kind, ScalarKind::String | ScalarKind::Id) {
        o = o.field(InputValue::new("contains", Gql::named(ScalarKind::String.gql())));
    }
    o.field(InputValue::new("isNull", Gql::named("Boolean")))
}

impl ScalarKind {
    fn gql(self) -> &'static str {
        scalar_name(self)
    }
}

/// Whether a type is or holds `JSON` (an input object is taken as `JSON`; an output
/// object's fields are looked at as their own type's).
fn mentions_json(t: &TypeRef, input: bool) -> bool {
    match t {
        TypeRef::Json => true,
        TypeRef::Object(_) => input,
        TypeRef::List(inner) | TypeRef::Nullable(inner) => mentions_json(inner, input),
        TypeRef::Scalar(_) => false,
    }
}

/// Filter and order inputs of an object type's list fields, and the scalar kinds whose
/// filters they use.
fn list_inputs(desc: &'static ObjectDesc) -> (InputObject, Enum, Vec<ScalarKind>) {
    let mut kinds = Vec::new();
    let where_name = format!("{}Where", desc.name);
    let mut w = InputObject::new(&where_name).description(format!("Which `{}` rows: all conditions hold.", desc.name));
    let mut e = Enum::new(format!("{}OrderBy", desc.name));
    for f in desc.fields {
        if let TypeRef::Scalar(k) = (f.ty)().non_null() {
            let gql = camel_case(f.name);
            w = w.field(InputValue::new(&gql, Gql::named(format!("{}Filter", scalar_name(*k)))));
            kinds.push(*k);
            e = e.item(format!("{}_ASC", sql::enum_name(&gql))).item(format!("{}_DESC", sql::enum_name(&gql)));
        }
    }
    w = w
        .field(InputValue::new("_and", Gql::List(Box::new(Gql::named_nn(&where_name)))))
        .field(InputValue::new("_or", Gql::List(Box::new(Gql::named_nn(&where_name)))))
        .field(InputValue::new("_not", Gql::named(&where_name)));
    (w, e, kinds)
}

fn object_type(desc: &'static ObjectDesc, shapes: &mut execute::Shapes) -> Object {
    let mut o = Object::new(desc.name);
    let types = shapes.objects.entry(desc.name.to_string()).or_default();
    if let Some(d) = desc.doc {
        o = o.description(d);
    }
    for f in desc.fields {
        let key = f.name;
        let ty = (f.ty)();
        let gql_ty = out_type(&ty);
        types.insert(camel_case(key), gql_ty.clone());
        let mut field = Field::new(camel_case(key), gql_ty, move |ctx| {
            let v = ctx.parent_value.downcast_ref::<Value>().and_then(|p| p.get(key));
            FieldFuture::Value(borrowed(v, &ty))
        });
        if let Some(d) = f.doc {
            field = field.description(d);
        }
        o = o.field(field);
    }
    o
}

/// GraphQL on a runtime: this layer sits above the runtime and uses only its public
/// face (queries by name, sagas through [`Runtime::run_saga`]).
impl Runtime {
    /// The GraphQL schema of what is registered: queries as root fields, sagas as
    /// mutations (built once).
    pub fn graphql_schema(&self) -> Result<async_graphql::dynamic::Schema> {
        Ok(self.graphql_built()?.schema.clone())
    }

    /// The schema and the types responses are completed against, built once.
    pub(crate) fn graphql_built(&self) -> Result<std::sync::Arc<Built>> {
        let cache = self.graphql_cache();
        let any = match cache.get() {
            Some(b) => b.clone(),
            None => {
                let b: std::sync::Arc<dyn std::any::Any + Send + Sync> = std::sync::Arc::new(build(self)?);
                cache.get_or_init(|| b).clone()
            }
        };
        Ok(any.downcast::<Built>().expect("the GraphQL cache holds a Built"))
    }

    /// The schema in SDL.
    pub fn graphql_sdl(&self) -> Result<String> {
        Ok(self.graphql_schema()?.sdl())
    }

    /// Execute a GraphQL request in this runtime. A request that could not run (it does
    /// not parse, is invalid, or names no operation) has `data` null and errors whose
    /// `extensions.code` says why (`GRAPHQL_PARSE_FAILED`, `GRAPHQL_VALIDATION_FAILED`,
    /// `QUERY_TOO_DEEP`, `QUERY_TOO_COMPLEX`, `OPERATION_RESOLUTION_FAILURE`).
    pub async fn graphql(&self, request: impl Into<async_graphql::Request>) -> Result<async_graphql::Response> {
        let built = self.graphql_built()?;
        Ok(execute::execute(self, &built, request.into(), false).await.response)
    }

    /// An axum router serving the endpoint at `graphql.path` (`/graphql`): GraphQL
    /// over HTTP, `POST` and `GET`. Merge it into your app, or serve it as is.
    pub fn graphql_router(&self) -> Result<axum::Router> {
        http::router(self)
    }
}

/// The schema and, by object type, its fields' types (what responses are completed
/// against).
pub(crate) struct Built {
    pub(crate) schema: Schema,
    pub(crate) shapes: execute::Shapes,
    pub(crate) persisted: persisted::Store,
    pub(crate) plans: compiled::Plans,
}

/// Build the schema from what is registered.
pub fn build_schema(rt: &Runtime) -> Result<Schema> {
    Ok(build(rt)?.schema)
}

fn build(rt: &Runtime) -> Result<Built> {
    let mut shapes = execute::Shapes::default();
    let reg = rt.registry();
    let cfg = &rt.config().graphql;
    let mut objects = BTreeMap::new();
    let mut problems = Vec::new();
    for q in reg.queries() {
        collect(&(q.output_type)(), &mut objects, &mut problems);
    }
    for s in reg.sagas() {
        collect(&(s.output_type)(), &mut objects, &mut problems);
    }
    let mut query = Object::new("Query");
    let mut names = BTreeMap::new();
    let mut list_types = BTreeMap::new();
    for &def in reg.queries() {
        let name = field_name(def.name, def.function);
        if let Some(prev) = names.insert(name.clone(), def.location) {
            problems.push(format!("GraphQL field `{name}` comes from two queries: at {prev} and at {}", def.location));
        }
        let item = (def.output_type)();
        let ty = match def.returns {
            Returns::Many => Gql::NonNull(Box::new(Gql::List(Box::new(out_type(&item))))),
            Returns::Optional => base_type(&item, false),
            Returns::One => out_type(&item),
        };
        let desc = match item.non_null() {
            TypeRef::Object(d) => Some(*d),
            _ => None,
        };
        shapes.objects.entry("Query".into()).or_default().insert(name.clone(), ty.clone());
        let mut field = match def.view {
            Some(_) => Field::new(&name, ty, move |ctx| FieldFuture::new(resolve_view(ctx, def, desc))),
            None => Field::new(&name, ty, move |ctx| FieldFuture::new(resolve_custom(ctx, def))),
        };
        for a in def.args {
            let scalar = Gql::named(scalar_name(a.kind));
            // A view query's paging and ordering are the list arguments below.
            if let ArgRole::Filter | ArgRole::Input = a.role {
                let ty = if a.list { Gql::List(Box::new(Gql::NonNull(Box::new(scalar)))) } else { scalar };
                field = field.argument(InputValue::new(
                    camel_case(a.name),
                    if a.optional { ty } else { Gql::NonNull(Box::new(ty)) },
                ));
            }
        }
        if def.view.is_some() && def.returns == Returns::Many {
            field = field
                .argument(InputValue::new("limit", Gql::named("Int")))
                .argument(InputValue::new("offset", Gql::named("Int")));
            if let Some(d) = desc {
                field = field.argument(InputValue::new("where", Gql::named(format!("{}Where", d.name)))).argument(
                    InputValue::new("orderBy", Gql::List(Box::new(Gql::named_nn(format!("{}OrderBy", d.name))))),
                );
                list_types.insert(d.name, d);
            }
        }
        // The fn's doc comment, never its location: introspection is public.
        if let Some(doc) = def.doc {
            field = field.description(doc);
        }
        query = query.field(field);
    }
    if reg.queries.is_empty() {
        shapes.objects.entry("Query".into()).or_default().insert("_empty".into(), Gql::named("Boolean"));
        query = query.field(
            Field::new("_empty", Gql::named("Boolean"), |_| FieldFuture::from_value(None))
                .description("No #[query] is registered."),
        );
    }
    let mut mutation = Object::new("Mutation");
    let mut has_mutation = false;
    for def in reg.sagas() {
        has_mutation = true;
        let ty = out_type(&(def.output_type)());
        shapes.objects.entry("Mutation".into()).or_default().insert(camel_case(def.name), ty.clone());
        let mut field = Field::new(camel_case(def.name), ty, move |ctx| FieldFuture::new(resolve_saga(ctx, def)));
        for (p, ty) in def.params.iter().zip(def.input_types) {
            field = field.argument(InputValue::new(camel_case(p.name), in_type(&ty())));
        }
        // The fn's doc comment, or what the field does; never its location.
        mutation = mutation.field(field.description(match def.doc {
            Some(doc) => doc.to_string(),
            None => {
                format!("Runs saga `{}`; a failure that was compensated is an error with code SAGA_ABORTED.", def.name)
            }
        }));
    }
    if !problems.is_empty() {
        return Err(Error::Registry(format!("the GraphQL schema cannot be built:\n  - {}", problems.join("\n  - "))));
    }
    let mut b = Schema::build("Query", has_mutation.then_some("Mutation"), None)
        .extension(execute::Phases)
        .register(query)
        .limit_depth(cfg.max_depth)
        .limit_complexity(cfg.max_complexity)
        .limit_directives(32)
        .limit_recursive_depth(64);
    if has_mutation {
        b = b.register(mutation);
        shapes.mutation = Some("Mutation".into());
    }
    // Only types a field or argument uses: the SDL lists exactly what introspection serves.
    let json = reg
        .sagas()
        .any(|s| s.input_types.iter().any(|t| mentions_json(&t(), true)) || mentions_json(&(s.output_type)(), false))
        || reg.queries().iter().any(|q| mentions_json(&(q.output_type)(), false))
        || objects.values().any(|d| d.fields.iter().any(|f| mentions_json(&(f.ty)(), false)));
    if json {
        b = b.register(Scalar::new("JSON").description("Any JSON value."));
    }
    if !cfg.introspection {
        b = b.disable_introspection();
    }
    for d in objects.values() {
        b = b.register(object_type(d, &mut shapes));
    }
    let mut filters = std::collections::BTreeSet::new();
    for d in list_types.values() {
        let (w, e, kinds) = list_inputs(d);
        filters.extend(kinds.into_iter().map(scalar_name));
        b = b.register(w).register(e);
    }
    for k in [ScalarKind::Id, ScalarKind::String, ScalarKind::Int, ScalarKind::Float, ScalarKind::Boolean] {
        if filters.contains(scalar_name(k)) {
            b = b.register(scalar_filter(k));
        }
    }
    let schema = b.finish().map_err(|e| Error::Registry(format!("the GraphQL schema cannot be built: {e}")))?;
    let mut roots = std::collections::HashMap::new();
    for &def in reg.queries() {
        if def.view.is_some() {
            let desc = match (def.output_type)().non_null() {
                TypeRef::Object(d) => Some(*d),
                _ => None,
            };
            roots.insert(field_name(def.name, def.function), (def, desc));
        }
    }
    Ok(Built {
        schema,
        shapes,
        persisted: persisted::Store::new(cfg.persisted_queries),
        plans: compiled::Plans::new(cfg.query_plans, roots),
    })
}
