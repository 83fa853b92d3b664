//! The SQL a GraphQL field costs: the requested selection built as JSON in the database
//! (only the keys asked for), `where` filters, ordering. Names come from the registered
//! types and the view's catalog columns only; every value is bound.

use std::collections::HashMap;

use serde_json::Value;

use crate::db::Backend;
use crate::describe::{ObjectDesc, TypeRef};
use crate::query::value::{ScalarKind, SqlValue};
use crate::query::{ident_in, ViewInfo};

/// What of an object a request selected, by JSON key.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Projection {
    pub fields: Vec<(&'static str, Proj)>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Proj {
    /// The value as stored (a scalar, JSON, or a list of them).
    Value,
    Object(Projection),
    /// A list of objects.
    List(Projection),
}

/// The fields of an object type by GraphQL name: their JSON key and type.
#[derive(Debug, Clone)]
pub struct Fields {
    pub by_graphql: HashMap<String, (&'static str, TypeRef)>,
}

impl Fields {
    /// The fields of `desc`, computed once per type.
    pub fn of(desc: &'static ObjectDesc) -> std::sync::Arc<Fields> {
        static CACHE: std::sync::RwLock<Option<HashMap<usize, std::sync::Arc<Fields>>>> = std::sync::RwLock::new(None);
        let key = desc as *const ObjectDesc as usize;
        if let Some(f) = CACHE.read().unwrap().as_ref().and_then(|m| m.get(&key)) {
            return f.clone();
        }
        let f = std::sync::Arc::new(Fields {
            by_graphql: desc.fields.iter().map(|f| (crate::describe::camel_case(f.name), (f.name, (f.ty)()))).collect(),
        });
        CACHE.write().unwrap().get_or_insert_with(HashMap::new).insert(key, f.clone());
        f
    }
}

fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The element type of a list, or the type itself, without `Nullable`.
pub fn object_of(t: &TypeRef) -> Option<(&'static ObjectDesc, bool)> {
    match t.non_null() {
        TypeRef::Object(d) => Some((d, false)),
        TypeRef::List(inner) => match inner.non_null() {
            TypeRef::Object(d) => Some((d, true)),
            _ => None,
        },
        _ => None,
    }
}

const PAIRS_PER_CALL: usize = 40;

/// PostgreSQL: a `jsonb` expression with the projection of the object at `e`.
pub fn pg_object(p: &Projection, e: &str, depth: usize) -> String {
    if p.fields.is_empty() {
        return "'{}'::jsonb".into();
    }
    let pairs: Vec<String> = p
        .fields
        .iter()
        .map(|(k, proj)| {
            let v = format!("({e}->{})", lit(k));
            let expr = match proj {
                Proj::Value => v,
                Proj::Object(sub) => format!("CASE WHEN jsonb_typeof({v}) = 'object' THEN {} END", pg_object(sub, &v, depth + 1)),
                Proj::List(sub) => {
                    let (x, o) = (format!("x{depth}"), format!("o{depth}"));
                    format!(
                        "CASE WHEN jsonb_typeof({v}) = 'array' THEN COALESCE((SELECT jsonb_agg(CASE WHEN jsonb_typeof({x}) = 'object' THEN {} END ORDER BY {o}) \
                         FROM jsonb_array_elements({v}) WITH ORDINALITY AS t{depth}({x}, {o})), '[]'::jsonb) END",
                        pg_object(sub, &x, depth + 1)
                    )
                }
            };
            format!("{}, {expr}", lit(k))
        })
        .collect();
    pairs
        .chunks(PAIRS_PER_CALL)
        .map(|c| format!("jsonb_build_object({})", c.join(", ")))
        .collect::<Vec<_>>()
        .join(" || ")
}

/// SQLite: a JSON expression with the projection of the object (JSON text) at `e`.
pub fn sqlite_object(p: &Projection, e: &str, depth: usize) -> String {
    if p.fields.is_empty() {
        return "json_object()".into();
    }
    let pairs: Vec<String> = p
        .fields
        .iter()
        .map(|(k, proj)| {
            let path = lit(&format!("$.\"{k}\""));
            let v = format!("({e} -> {path})");
            let expr = match proj {
                Proj::Value => format!("json({v})"),
                Proj::Object(sub) => format!("json(CASE WHEN json_type({e}, {path}) = 'object' THEN {} END)", sqlite_object(sub, &v, depth + 1)),
                Proj::List(sub) => {
                    let t = format!("t{depth}");
                    format!(
                        "json(CASE WHEN json_type({e}, {path}) = 'array' THEN (SELECT json_group_array(json(CASE WHEN {t}.type = 'object' THEN {} END)) \
                         FROM json_each({e}, {path}) AS {t}) END)",
                        sqlite_object(sub, &format!("{t}.value"), depth + 1)
                    )
                }
            };
            format!("{}, {expr}", lit(k))
        })
        .collect();
    let calls: Vec<String> = pairs.chunks(PAIRS_PER_CALL).map(|c| format!("json_object({})", c.join(", "))).collect();
    calls.into_iter().reduce(|a, b| format!("json_patch({a}, {b})")).unwrap_or_default()
}

/// The root JSON expression of a view's data column.
pub fn data_root(backend: Backend, info: &ViewInfo, column: &str) -> String {
    let c = ident_in(backend, column);
    match (backend, info.columns.get(column).map(String::as_str)) {
        (Backend::Postgres, Some("jsonb")) => c,
        (Backend::Postgres, _) => format!("{c}::jsonb"),
        (Backend::Sqlite, _) => c,
    }
}

/// Builds a statement's conditions and its bound values.
pub struct Conditions<'a> {
    pub backend: Backend,
    pub info: &'a ViewInfo,
    pub root: String,
    pub values: Vec<SqlValue>,
}

/// How a filterable field is read: its own column when the view has one (typed,
/// indexable), else its key in the data.
enum Target {
    Column(&'static str),
    Json(&'static str, ScalarKind),
}

fn sql_type(kind: ScalarKind) -> &'static str {
    match kind {
        ScalarKind::Int => "bigint",
        ScalarKind::Float => "double precision",
        ScalarKind::Boolean => "boolean",
        ScalarKind::String | ScalarKind::Id => "text",
    }
}

impl<'a> Conditions<'a> {
    pub fn new(backend: Backend, info: &'a ViewInfo, root: String) -> Self {
        Conditions { backend, info, root, values: Vec::new() }
    }

    fn target(&self, key: &'static str, kind: ScalarKind) -> Target {
        if self.info.columns.contains_key(key) {
            Target::Column(key)
        } else {
            Target::Json(key, kind)
        }
    }

    fn expr(&self, t: &Target) -> String {
        match (t, self.backend) {
            (Target::Column(c), _) => ident_in(self.backend, c),
            (Target::Json(k, kind), Backend::Postgres) => match kind {
                ScalarKind::String | ScalarKind::Id => format!("({}->>{})", self.root, lit(k)),
                other => format!("({}->>{})::{}", self.root, lit(k), sql_type(*other)),
            },
            (Target::Json(k, _), Backend::Sqlite) => {
                format!("json_extract({}, {})", self.root, lit(&format!("$.\"{k}\"")))
            }
        }
    }

    /// The next placeholder, cast to the target's type on PostgreSQL.
    fn bind(&mut self, t: &Target, v: SqlValue) -> String {
        self.values.push(v);
        let n = self.values.len();
        match (self.backend, t) {
            (Backend::Sqlite, _) => format!("${n}"),
            (Backend::Postgres, Target::Column(c)) => match self.info.columns.get(*c) {
                Some(ty) if !ty.is_empty() => format!("${n}::{ty}"),
                _ => format!("${n}"),
            },
            (Backend::Postgres, Target::Json(_, kind)) => format!("${n}::{}", sql_type(*kind)),
        }
    }

    fn bind_list(&mut self, t: &Target, items: Vec<SqlValue>) -> String {
        match self.backend {
            Backend::Postgres => {
                let ty = match t {
                    Target::Column(c) => self.info.columns.get(*c).cloned().unwrap_or_else(|| "text".into()),
                    Target::Json(_, kind) => sql_type(*kind).to_string(),
                };
                self.values.push(SqlValue::List(items));
                format!("ANY(${}::text[]::{ty}[])", self.values.len())
            }
            Backend::Sqlite => {
                let phs: Vec<String> = items
                    .into_iter()
                    .map(|v| {
                        self.values.push(v);
                        format!("${}", self.values.len())
                    })
                    .collect();
                format!("({})", phs.join(", "))
            }
        }
    }

    /// An equality (for a list, membership) filter on a view column (a query's own argument).
    pub fn column_eq(&mut self, column: &'static str, v: SqlValue) -> String {
        if let SqlValue::List(items) = v {
            return crate::query::in_list_sql(self.backend, self.info, column, items, &mut self.values);
        }
        let t = Target::Column(column);
        format!("{} = {}", self.expr(&t), self.bind(&t, v))
    }

    /// A `where` argument: `{ field: { eq, neq, gt, gte, lt, lte, in, contains, isNull }, _and, _or, _not }`.
    pub fn filter(&mut self, fields: &Fields, w: &Value) -> Result<String, String> {
        let Value::Object(map) = w else { return Err("`where` must be an object".into()) };
        let mut parts = Vec::new();
        for (name, v) in map {
            match name.as_str() {
                "_and" | "_or" => {
                    let list = v.as_array().ok_or_else(|| format!("`{name}` takes a list"))?;
                    let subs = list.iter().map(|x| self.filter(fields, x)).collect::<Result<Vec<_>, _>>()?;
                    parts.push(match (name.as_str(), subs.is_empty()) {
                        ("_and", true) => "TRUE".into(),
                        ("_or", true) => "FALSE".into(),
                        ("_and", false) => format!("({})", subs.join(" AND ")),
                        _ => format!("({})", subs.join(" OR ")),
                    });
                }
                "_not" => {
                    if !v.is_null() {
                        parts.push(format!("NOT ({})", self.filter(fields, v)?));
                    }
                }
                field => {
                    let (key, ty) = fields.by_graphql.get(field).ok_or_else(|| format!("unknown field `{field}`"))?;
                    let TypeRef::Scalar(kind) = ty.non_null() else {
                        return Err(format!("`{field}` cannot be filtered (not a scalar)"));
                    };
                    let t = self.target(key, *kind);
                    let e = self.expr(&t);
                    let Value::Object(ops) = v else {
                        if v.is_null() {
                            continue;
                        }
                        return Err(format!("`{field}` takes operators such as `{{ eq: … }}`"));
                    };
                    for (op, arg) in ops {
                        let sql_op = match op.as_str() {
                            "eq" => "=",
                            "neq" => "<>",
                            "gt" => ">",
                            "gte" => ">=",
                            "lt" => "<",
                            "lte" => "<=",
                            "in" | "contains" | "isNull" => "",
                            other => return Err(format!("unknown operator `{other}` on `{field}`")),
                        };
                        let cond = match (op.as_str(), arg) {
                            (_, Value::Null) if op != "isNull" => match op.as_str() {
                                "eq" => format!("{e} IS NULL"),
                                "neq" => format!("{e} IS NOT NULL"),
                                _ => continue,
                            },
                            ("isNull", Value::Bool(true)) => format!("{e} IS NULL"),
                            ("isNull", Value::Bool(false)) => format!("{e} IS NOT NULL"),
                            ("isNull", _) => continue,
                            ("in", Value::Array(items)) => {
                                if items.is_empty() {
                                    "FALSE".into()
                                } else {
                                    let vals = items
                                        .iter()
                                        .map(|i| SqlValue::from_json(i).ok_or("`in` takes a list of values"))
                                        .collect::<Result<Vec<_>, _>>()?;
                                    let list = self.bind_list(&t, vals);
                                    match self.backend {
                                        Backend::Postgres => format!("{e} = {list}"),
                                        Backend::Sqlite => format!("{e} IN {list}"),
                                    }
                                }
                            }
                            ("contains", Value::String(s)) => {
                                self.values.push(SqlValue::Text(s.clone()));
                                let n = self.values.len();
                                match self.backend {
                                    Backend::Postgres => format!("strpos(({e})::text, ${n}::text) > 0"),
                                    Backend::Sqlite => format!("instr({e}, ${n}) > 0"),
                                }
                            }
                            ("in" | "contains", _) => return Err(format!("`{op}` on `{field}`: wrong kind of value")),
                            (_, scalar) => {
                                let val = SqlValue::from_json(scalar)
                                    .ok_or_else(|| format!("`{op}` on `{field}` takes a value"))?;
                                let ph = self.bind(&t, val);
                                format!("{e} {sql_op} {ph}")
                            }
                        };
                        parts.push(cond);
                    }
                }
            }
        }
        Ok(if parts.is_empty() { "TRUE".into() } else { parts.join(" AND ") })
    }

    /// `FIELD_ASC` / `FIELD_DESC` values of an order enum, as SQL.
    pub fn order(&self, fields: &Fields, terms: &[(String, bool)]) -> Result<String, String> {
        let mut out = Vec::new();
        for (field, desc) in terms {
            let (key, ty) = fields.by_graphql.get(field).ok_or_else(|| format!("unknown field `{field}`"))?;
            let TypeRef::Scalar(kind) = ty.non_null() else {
                return Err(format!("`{field}` cannot order (not a scalar)"));
            };
            let t = self.target(key, *kind);
            let e = match (&t, self.backend) {
                // jsonb orders numbers as numbers and strings as text.
                (Target::Json(k, _), Backend::Postgres) => format!("({}->{})", self.root, lit(k)),
                _ => self.expr(&t),
            };
            out.push(format!("{e} {}", if *desc { "DESC" } else { "ASC" }));
        }
        Ok(out.join(", "))
    }
}

/// `TOTAL_CENTS` from `totalCents` / `total_cents`.
pub use crate::grammar::screaming_snake_case as enum_name;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn projections_ask_only_for_the_selected_keys() {
        let p = Projection {
            fields: vec![
                ("id", Proj::Value),
                ("customer", Proj::Object(Projection { fields: vec![("name", Proj::Value)] })),
                ("lines", Proj::List(Projection { fields: vec![("sku", Proj::Value)] })),
            ],
        };
        let pg = pg_object(&p, "\"data\"", 0);
        assert!(pg.starts_with("jsonb_build_object('id', (\"data\"->'id'), 'customer', CASE WHEN"), "{pg}");
        assert!(pg.contains("jsonb_array_elements((\"data\"->'lines')) WITH ORDINALITY AS t0(x0, o0)"), "{pg}");
        assert!(!pg.contains("status"));
        let sq = sqlite_object(&p, "\"data\"", 0);
        assert!(sq.starts_with("json_object('id', json((\"data\" -> '$.\"id\"')), 'customer', json(CASE WHEN json_type(\"data\", '$.\"customer\"') = 'object'"), "{sq}");
    }
}
