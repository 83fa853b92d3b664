//! The compiled path: a query whose root fields are all view-backed is answered without
//! the executor. Its document is compiled once into a plan (cached by its text and
//! operation name, bounded, oldest out); each request then coerces its variables,
//! evaluates `@skip` / `@include`, and runs one statement per root field that builds the
//! field's final JSON in the database — response keys (aliases), `__typename`, nested
//! objects and lists, in selection order. The response is assembled from those bytes:
//! no resolver per field, no parsing of the rows.
//!
//! Soundness comes from falling back, never from guessing: a document is compiled only
//! after the executor answered it without an error (so it parsed and validated), and
//! only if it is plain enough (a query; view fields, `__typename`, fragments, `@skip` /
//! `@include`; variables of built-in scalar types). A request whose variables the plan
//! cannot coerce exactly as the spec does, a field that fails, a row with a `null` where
//! the type says non-null, a root field of one row that finds none: the whole request
//! goes to the executor, which answers it as before (errors, null propagation and all).
//! Rows are parsed only when their text holds a `null` at all, to check just that.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_graphql::parser::types::{
    BaseType, DocumentOperations, ExecutableDocument, OperationType, Selection, SelectionSet, Type,
};
use async_graphql::parser::Positioned;
use async_graphql::{Name, Variables};
use async_graphql_value::Value as GqlValue;
use serde_json::Value;

use super::sql::{object_of, Fields};
use super::view_rows;
use crate::describe::{ObjectDesc, TypeRef};
use crate::query::{QueryDef, Returns};
use crate::runtime::Runtime;
use crate::sql::{Shape, ShapeValue};

/// Compiled documents, by text and operation name; `None` remembers a document the
/// compiled path does not serve, so it is not looked at again.
pub(crate) struct Plans {
    capacity: usize,
    cache: Mutex<hashlink::LruCache<String, Option<Arc<Plan>>>>,
    /// View-backed root fields by GraphQL name.
    roots: HashMap<String, (&'static QueryDef, Option<&'static ObjectDesc>)>,
}

/// A compiled operation.
#[derive(Debug)]
pub(crate) struct Plan {
    variables: Vec<VarDef>,
    roots: Vec<Root>,
}

#[derive(Debug)]
struct VarDef {
    name: Name,
    ty: Type,
    default: Option<async_graphql::Value>,
}

/// `@skip(if: …)` / `@include(if: …)` on a selection (or a fragment around it).
#[derive(Debug, Clone)]
enum Cond {
    Skip(Flag),
    Include(Flag),
}

#[derive(Debug, Clone)]
enum Flag {
    Literal(bool),
    Variable(Name),
}

#[derive(Debug)]
struct Root {
    key: String,
    conds: Vec<Cond>,
    kind: RootKind,
}

#[derive(Debug)]
enum RootKind {
    Typename,
    View {
        def: &'static QueryDef,
        desc: Option<&'static ObjectDesc>,
        args: Vec<(String, GqlValue)>,
        selection: Vec<Item>,
    },
}

/// One selected field of an object.
#[derive(Debug)]
struct Item {
    key: String,
    conds: Vec<Cond>,
    kind: ItemKind,
}

#[derive(Debug)]
enum ItemKind {
    Typename(&'static str),
    Scalar { json_key: &'static str, ty: TypeRef },
    Object { json_key: &'static str, ty: TypeRef, list: bool, selection: Vec<Item> },
}

/// What the compiled path answered.
pub(crate) enum Served {
    /// The response body (`{"data": …}`), every field answered.
    Body(String),
    /// The executor must answer this request (see the module's opening comment).
    Fallback,
    /// The document is not compiled yet: answer with the executor, then [`Plans::learn`].
    Unknown,
}

impl Plans {
    pub(crate) fn new(
        capacity: usize,
        roots: HashMap<String, (&'static QueryDef, Option<&'static ObjectDesc>)>,
    ) -> Plans {
        Plans { capacity, cache: Mutex::new(hashlink::LruCache::new(capacity.max(1))), roots }
    }

    fn lookup(&self, query: &str, operation: Option<&str>) -> Option<Option<Arc<Plan>>> {
        if self.capacity == 0 {
            return Some(None);
        }
        self.cache.lock().unwrap().get(&key(query, operation)).cloned()
    }

    /// Answer a request whose document is `query` if its plan can.
    pub(crate) async fn serve(
        &self,
        rt: &Runtime,
        query: &str,
        operation: Option<&str>,
        variables: &Variables,
    ) -> Served {
        let plan = match self.lookup(query, operation) {
            None => {
                crate::telemetry::graphql_plan("miss");
                return Served::Unknown;
            }
            Some(None) => return Served::Fallback,
            Some(Some(plan)) => plan,
        };
        match plan.run(rt, variables).await {
            Some(body) => {
                crate::telemetry::graphql_plan("hit");
                Served::Body(body)
            }
            None => {
                crate::telemetry::graphql_plan("fallback");
                Served::Fallback
            }
        }
    }

    /// Remember a document the executor has just answered without an error: compiled
    /// if the compiled path can serve it, else marked as not served.
    pub(crate) fn learn(&self, query: &str, operation: Option<&str>) {
        if self.capacity == 0 {
            return;
        }
        let plan = async_graphql::parser::parse_query(query).ok().and_then(|doc| self.compile(&doc, operation));
        self.cache.lock().unwrap().insert(key(query, operation), plan.map(Arc::new));
    }

    fn compile(&self, doc: &ExecutableDocument, operation: Option<&str>) -> Option<Plan> {
        let op = match (&doc.operations, operation) {
            (DocumentOperations::Single(op), _) => op,
            (DocumentOperations::Multiple(ops), Some(name)) => ops.get(name)?,
            (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => ops.values().next()?,
            _ => return None,
        };
        let op = &op.node;
        if op.ty != OperationType::Query || !op.directives.is_empty() {
            return None;
        }
        let mut variables = Vec::new();
        for v in &op.variable_definitions {
            let v = &v.node;
            if !builtin_scalars(&v.var_type.node) || !v.directives.is_empty() {
                return None;
            }
            variables.push(VarDef {
                name: v.name.node.clone(),
                ty: v.var_type.node.clone(),
                default: v.default_value.as_ref().map(|d| d.node.clone()),
            });
        }
        let mut fields = Vec::new();
        flatten(doc, &op.selection_set.node, &[], "Query", &mut fields, 0)?;
        let mut roots = Vec::new();
        for (f, conds) in fields {
            let key = response_key(f);
            let kind = if f.name.node == "__typename" {
                RootKind::Typename
            } else {
                let (def, desc) = *self.roots.get(f.name.node.as_str())?;
                let args = f.arguments.iter().map(|(n, v)| (n.node.to_string(), v.node.clone())).collect();
                let selection = match desc {
                    Some(d) => object_items(doc, d, &f.selection_set.node)?,
                    None => Vec::new(),
                };
                RootKind::View { def, desc, args, selection }
            };
            roots.push(Root { key, conds, kind });
        }
        unique_keys(roots.iter().map(|r| r.key.as_str()))?;
        Some(Plan { variables, roots })
    }
}

/// The cache's key: the operation's name and the whole text (compared in full, never by
/// a hash alone).
fn key(query: &str, operation: Option<&str>) -> String {
    let op = operation.unwrap_or("");
    let mut k = String::with_capacity(op.len() + 1 + query.len());
    k.push_str(op);
    k.push('\n');
    k.push_str(query);
    k
}

/// A variable type the plan coerces itself: built-in scalars and lists of them.
fn builtin_scalars(t: &Type) -> bool {
    match &t.base {
        BaseType::Named(n) => matches!(n.as_str(), "Int" | "Float" | "String" | "Boolean" | "ID"),
        BaseType::List(inner) => builtin_scalars(inner),
    }
}

fn response_key(f: &async_graphql::parser::types::Field) -> String {
    f.alias.as_ref().unwrap_or(&f.name).node.to_string()
}

/// `Some(())` when no key repeats (the executor merges repeated keys; the plan does not).
fn unique_keys<'k>(mut keys: impl Iterator<Item = &'k str>) -> Option<()> {
    let mut seen = std::collections::HashSet::new();
    keys.all(|k| seen.insert(k)).then_some(())
}

type Flat<'d> = Vec<(&'d async_graphql::parser::types::Field, Vec<Cond>)>;

/// The fields of a selection set with fragments inlined, each with the conditions of
/// the fragments around it and its own. `None` for what the plan does not serve.
fn flatten<'d>(
    doc: &'d ExecutableDocument,
    set: &'d SelectionSet,
    outer: &[Cond],
    type_name: &str,
    out: &mut Flat<'d>,
    depth: usize,
) -> Option<()> {
    if depth > 32 {
        return None;
    }
    for sel in &set.items {
        match &sel.node {
            Selection::Field(f) => {
                let mut conds = outer.to_vec();
                conds.extend(conditions(&f.node.directives)?);
                out.push((&f.node, conds));
            }
            Selection::InlineFragment(frag) => {
                let frag = &frag.node;
                if frag.type_condition.as_ref().is_some_and(|t| t.node.on.node != type_name) {
                    return None;
                }
                let mut conds = outer.to_vec();
                conds.extend(conditions(&frag.directives)?);
                flatten(doc, &frag.selection_set.node, &conds, type_name, out, depth + 1)?;
            }
            Selection::FragmentSpread(spread) => {
                let def = &doc.fragments.get(&spread.node.fragment_name.node)?.node;
                if def.type_condition.node.on.node != type_name || !def.directives.is_empty() {
                    return None;
                }
                let mut conds = outer.to_vec();
                conds.extend(conditions(&spread.node.directives)?);
                flatten(doc, &def.selection_set.node, &conds, type_name, out, depth + 1)?;
            }
        }
    }
    Some(())
}

fn conditions(directives: &[Positioned<async_graphql::parser::types::Directive>]) -> Option<Vec<Cond>> {
    let mut out = Vec::new();
    for d in directives {
        let d = &d.node;
        let flag = match d.arguments.as_slice() {
            [(name, value)] if name.node == "if" => match &value.node {
                GqlValue::Boolean(b) => Flag::Literal(*b),
                GqlValue::Variable(v) => Flag::Variable(v.clone()),
                _ => return None,
            },
            _ => return None,
        };
        out.push(match d.name.node.as_str() {
            "skip" => Cond::Skip(flag),
            "include" => Cond::Include(flag),
            _ => return None,
        });
    }
    Some(out)
}

/// The selection of an object type.
fn object_items(doc: &ExecutableDocument, desc: &'static ObjectDesc, set: &SelectionSet) -> Option<Vec<Item>> {
    let mut flat = Vec::new();
    flatten(doc, set, &[], desc.name, &mut flat, 0)?;
    let fields = Fields::of(desc);
    let mut items = Vec::with_capacity(flat.len());
    for (f, conds) in flat {
        if !f.arguments.is_empty() {
            return None;
        }
        let key = response_key(f);
        let kind = if f.name.node == "__typename" {
            ItemKind::Typename(desc.name)
        } else {
            let (json_key, ty) = fields.by_graphql.get(f.name.node.as_str())?;
            match object_of(ty) {
                Some((sub, list)) => ItemKind::Object {
                    json_key,
                    ty: ty.clone(),
                    list,
                    selection: object_items(doc, sub, &f.selection_set.node)?,
                },
                None => ItemKind::Scalar { json_key, ty: ty.clone() },
            }
        };
        items.push(Item { key, conds, kind });
    }
    unique_keys(items.iter().map(|i| i.key.as_str()))?;
    Some(items)
}

impl Plan {
    /// The response body, or `None` to fall back to the executor.
    async fn run(&self, rt: &Runtime, sent: &Variables) -> Option<String> {
        let vars = self.coerce(sent)?;
        let mut active = Vec::with_capacity(self.roots.len());
        for r in &self.roots {
            if included(&r.conds, &vars)? {
                active.push(r);
            }
        }
        let answers = futures_util::future::join_all(active.iter().map(|r| root_json(rt, r, &vars))).await;
        let mut body = String::with_capacity(64 + answers.iter().flatten().map(String::len).sum::<usize>());
        body.push_str("{\"data\":{");
        for (i, (root, answer)) in active.iter().zip(answers).enumerate() {
            if i > 0 {
                body.push(',');
            }
            body.push_str(&serde_json::to_string(&root.key).ok()?);
            body.push(':');
            body.push_str(&answer?);
        }
        body.push_str("}}");
        Some(body)
    }

    /// The variables as the spec coerces them: defaults for those not sent, each value
    /// of its declared type. `None` for anything the executor should answer (an error).
    fn coerce(&self, sent: &Variables) -> Option<HashMap<Name, async_graphql::Value>> {
        let mut out = HashMap::with_capacity(self.variables.len());
        for v in &self.variables {
            let value = match sent.get(&v.name) {
                Some(value) => value.clone(),
                None => v.default.clone().unwrap_or(async_graphql::Value::Null),
            };
            if !fits(&v.ty, &value) {
                return None;
            }
            out.insert(v.name.clone(), value);
        }
        Some(out)
    }
}

/// Whether `value` is already a value of the built-in scalar type `t` (no coercion
/// needed, such as an `Int` sent for a `Float`, or one item for a list).
fn fits(t: &Type, value: &async_graphql::Value) -> bool {
    use async_graphql::Value as V;
    if *value == V::Null {
        return t.nullable;
    }
    match (&t.base, value) {
        (BaseType::List(inner), V::List(items)) => items.iter().all(|i| fits(inner, i)),
        (BaseType::Named(n), v) => match (n.as_str(), v) {
            ("Int", V::Number(x)) => x.as_i64().is_some_and(|i| i32::try_from(i).is_ok()),
            ("Float", V::Number(_)) => true,
            ("String", V::String(_)) | ("ID", V::String(_)) | ("Boolean", V::Boolean(_)) => true,
            _ => false,
        },
        _ => false,
    }
}

/// Whether a selection is in, its conditions evaluated: `None` if a variable they
/// read is not a boolean.
fn included(conds: &[Cond], vars: &HashMap<Name, async_graphql::Value>) -> Option<bool> {
    let mut on = true;
    for c in conds {
        let (flag, skip) = match c {
            Cond::Skip(f) => (f, true),
            Cond::Include(f) => (f, false),
        };
        let value = match flag {
            Flag::Literal(b) => *b,
            Flag::Variable(name) => match vars.get(name) {
                Some(async_graphql::Value::Boolean(b)) => *b,
                _ => return None,
            },
        };
        on &= value != skip;
    }
    Some(on)
}

/// The shape of the included items.
fn shape(items: &[Item], vars: &HashMap<Name, async_graphql::Value>) -> Option<Shape> {
    let mut fields = Vec::with_capacity(items.len());
    for i in items {
        if !included(&i.conds, vars)? {
            continue;
        }
        let value = match &i.kind {
            ItemKind::Typename(name) => ShapeValue::Literal(name),
            ItemKind::Scalar { json_key, .. } => ShapeValue::Value(json_key),
            ItemKind::Object { json_key, list: false, selection, .. } => {
                ShapeValue::Object(json_key, shape(selection, vars)?)
            }
            ItemKind::Object { json_key, list: true, selection, .. } => {
                ShapeValue::List(json_key, shape(selection, vars)?)
            }
        };
        fields.push((i.key.clone(), value));
    }
    // More keys than the engine's JSON builder takes in one call: the executor answers.
    (fields.len() <= crate::sql::SHAPE_KEYS).then_some(Shape { fields })
}

/// One root field's JSON, or `None` to fall back.
async fn root_json(rt: &Runtime, root: &Root, vars: &HashMap<Name, async_graphql::Value>) -> Option<String> {
    let RootKind::View { def, desc, args, selection } = &root.kind else {
        return Some("\"Query\"".to_string());
    };
    let mut json_args = HashMap::with_capacity(args.len());
    for (name, value) in args {
        let value = value.clone().into_const_with(|v| vars.get(&v).cloned().ok_or(())).ok()?;
        let value = value.into_json().ok()?;
        if !value.is_null() {
            json_args.insert(name.clone(), value);
        }
    }
    let shape = match desc {
        Some(_) => Some(shape(selection, vars)?),
        None => None,
    };
    let arg = |name: &str| json_args.get(name).cloned();
    let select = |d: &'static dyn crate::sql::Dialect, root: &str| match &shape {
        // Within the key limit (checked by `shape`), so always built.
        Some(s) => d.json_shape(s, root, 0).map(|j| d.as_text(&j)).unwrap_or_default(),
        None => d.as_text(root),
    };
    let span = tracing::info_span!(
        "query",
        query = def.name,
        view = def.view?.sql_source,
        database = def.view?.database,
        graphql = true,
        compiled = true
    );
    let started = std::time::Instant::now();
    let rows = tracing::Instrument::instrument(view_rows(rt, def, *desc, &arg, &select), span).await;
    crate::telemetry::query_ran(def.name, started.elapsed());
    let rows = rows.ok()?;
    let item = (def.output_type)();
    let item_nullable = matches!(item, TypeRef::Nullable(_));
    for r in &rows {
        if r.contains("null") && !null_free(&serde_json::from_str(r).ok()?, &item, selection, vars, item_nullable) {
            return None;
        }
    }
    match def.returns {
        Returns::Many => {
            let mut out = String::with_capacity(2 + rows.iter().map(|r| r.len() + 1).sum::<usize>());
            out.push('[');
            for (i, r) in rows.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(r);
            }
            out.push(']');
            Some(out)
        }
        Returns::Optional => Some(rows.into_iter().next().unwrap_or_else(|| "null".to_string())),
        // No row for a non-null field: the executor answers with its error.
        Returns::One => rows.into_iter().next(),
    }
}

/// Whether a row has no `null` where its type is non-null: a `null` there is the
/// executor's to answer (a field error and null propagation).
fn null_free(
    value: &Value,
    ty: &TypeRef,
    selection: &[Item],
    vars: &HashMap<Name, async_graphql::Value>,
    nullable: bool,
) -> bool {
    match value {
        Value::Null => nullable,
        Value::Object(map) => match ty.non_null() {
            TypeRef::Object(_) => selection.iter().all(|i| {
                if included(&i.conds, vars) != Some(true) {
                    return true;
                }
                let v = map.get(&i.key).unwrap_or(&Value::Null);
                match &i.kind {
                    ItemKind::Typename(_) => true,
                    ItemKind::Scalar { ty, .. } => scalar_null_free(v, ty),
                    ItemKind::Object { ty, selection, .. } => {
                        null_free(v, ty, selection, vars, matches!(ty, TypeRef::Nullable(_)))
                    }
                }
            }),
            _ => true,
        },
        Value::Array(items) => match ty.non_null() {
            TypeRef::List(inner) => {
                let inner_nullable = matches!(**inner, TypeRef::Nullable(_));
                items.iter().all(|i| null_free(i, inner, selection, vars, inner_nullable))
            }
            _ => true,
        },
        _ => true,
    }
}

/// The same for a scalar field (or a list of scalars).
fn scalar_null_free(v: &Value, ty: &TypeRef) -> bool {
    match (v, ty) {
        (Value::Null, t) => matches!(t, TypeRef::Nullable(_)),
        (Value::Array(items), t) => match t.non_null() {
            TypeRef::List(inner) => items.iter().all(|i| scalar_null_free(i, inner)),
            _ => true,
        },
        _ => true,
    }
}
