//! The SQL a GraphQL field costs: the requested selection built as JSON in the database
//! (only the keys asked for), `where` filters, ordering. Names come from the registered
//! types and the view's catalog columns only; every value is bound.

use std::collections::HashMap;

use serde_json::Value;

use crate::describe::{ObjectDesc, ScalarKind, TypeRef};
pub(super) use crate::sql::{Proj, Projection};
use crate::sql::{Select, SqlValue};

/// The fields of an object type by GraphQL name: their JSON key and type.
#[derive(Debug, Clone)]
pub(super) struct Fields {
    pub by_graphql: HashMap<String, (&'static str, TypeRef)>,
}

impl Fields {
    /// The fields of `desc`, computed once per type.
    pub(super) fn of(desc: &'static ObjectDesc) -> std::sync::Arc<Fields> {
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

/// The element type of a list, or the type itself, without `Nullable`.
pub(super) fn object_of(t: &TypeRef) -> Option<(&'static ObjectDesc, bool)> {
    match t.non_null() {
        TypeRef::Object(d) => Some((d, false)),
        TypeRef::List(inner) => match inner.non_null() {
            TypeRef::Object(d) => Some((d, true)),
            _ => None,
        },
        _ => None,
    }
}

/// How a filterable field is read: its own column when the view has one (typed,
/// indexable), else its key in the document.
enum Target {
    Column(&'static str),
    Json(&'static str, ScalarKind),
}

/// `where` and `orderBy` arguments, as conditions and an ordering of a [`Select`] over
/// the view whose document is `root`.
pub(crate) struct Conditions<'s, 'a> {
    pub(crate) select: &'s mut Select<'a>,
    pub(crate) root: String,
}

impl Conditions<'_, '_> {
    fn target(&self, key: &'static str, kind: ScalarKind) -> Target {
        if self.select.has_column(key) {
            Target::Column(key)
        } else {
            Target::Json(key, kind)
        }
    }

    fn expr(&self, t: &Target) -> String {
        let d = self.select.dialect();
        match t {
            Target::Column(c) => d.ident(c),
            Target::Json(k, kind) => d.json_scalar(&self.root, k, *kind),
        }
    }

    /// The SQL type a value compared with the target is cast to.
    fn sql_type(&self, t: &Target) -> Option<String> {
        match t {
            Target::Column(c) => self.select.column_type(c).map(str::to_string),
            Target::Json(_, kind) => self.select.dialect().scalar_type(*kind).map(str::to_string),
        }
    }

    /// A `where` argument: `{ field: { eq, neq, gt, gte, lt, lte, in, contains, isNull }, _and, _or, _not }`.
    pub(crate) fn filter(&mut self, fields: &Fields, w: &Value) -> Result<String, String> {
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
                                let vals = items
                                    .iter()
                                    .map(|i| SqlValue::from_json(i).ok_or("`in` takes a list of values"))
                                    .collect::<Result<Vec<_>, _>>()?;
                                let ty = self.sql_type(&t);
                                self.select.member_of(&e, vals, ty.as_deref())
                            }
                            ("contains", Value::String(s)) => self.select.contains(&e, s.clone()),
                            ("in" | "contains", _) => return Err(format!("`{op}` on `{field}`: wrong kind of value")),
                            (_, scalar) => {
                                let val = SqlValue::from_json(scalar)
                                    .ok_or_else(|| format!("`{op}` on `{field}` takes a value"))?;
                                let ty = self.sql_type(&t);
                                let ph = self.select.bind(val, ty.as_deref());
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
    pub(crate) fn order(&self, fields: &Fields, terms: &[(String, bool)]) -> Result<String, String> {
        let mut out = Vec::new();
        for (field, desc) in terms {
            let (key, ty) = fields.by_graphql.get(field).ok_or_else(|| format!("unknown field `{field}`"))?;
            let TypeRef::Scalar(kind) = ty.non_null() else {
                return Err(format!("`{field}` cannot order (not a scalar)"));
            };
            let t = self.target(key, *kind);
            let e = match &t {
                Target::Json(k, _) => self.select.dialect().json_order_key(&self.root, k),
                Target::Column(_) => self.expr(&t),
            };
            out.push(format!("{e} {}", if *desc { "DESC" } else { "ASC" }));
        }
        Ok(out.join(", "))
    }
}

/// `TOTAL_CENTS` from `totalCents` / `total_cents`.
pub(super) use crate::grammar::screaming_snake_case as enum_name;

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
        let pg = crate::sql::Backend::Postgres.dialect().json_object(&p, "\"data\"", 0);
        assert!(pg.starts_with("jsonb_build_object('id', (\"data\"->'id'), 'customer', CASE WHEN"), "{pg}");
        assert!(pg.contains("jsonb_array_elements((\"data\"->'lines')) WITH ORDINALITY AS t0(x0, o0)"), "{pg}");
        assert!(!pg.contains("status"));
        let sq = crate::sql::Backend::Sqlite.dialect().json_object(&p, "\"data\"", 0);
        assert!(
            sq.starts_with("json_object('id', json((\"data\" -> '$.\"id\"')), 'customer', json(CASE WHEN json_type(\"data\", '$.\"customer\"') = 'object'"),
            "{sq}"
        );
    }
}
