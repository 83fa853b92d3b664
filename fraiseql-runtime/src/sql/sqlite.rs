//! SQLite: bracketed identifiers (a double-quoted name that matches no column is a
//! string literal there, so a stale column name would compare a constant instead of
//! failing), plain `$n` placeholders, JSON as text with `json_*` functions, one
//! placeholder per member of an `IN` list, `pragma_table_info` for a view's columns.

use super::{literal, Dialect, Proj, Projection, Shape, ShapeValue, SqlValue};
use crate::describe::ScalarKind;

/// At most this many key/value pairs per `json_object` call; larger objects are merged.
const PAIRS_PER_CALL: usize = 40;

pub(super) struct Sqlite;

impl Dialect for Sqlite {
    fn ident(&self, name: &str) -> String {
        format!("[{}]", name.replace(']', ""))
    }

    fn placeholder(&self, n: usize, _sql_type: Option<&str>) -> String {
        format!("${n}")
    }

    fn member_of(
        &self,
        expr: &str,
        items: Vec<SqlValue>,
        _sql_type: Option<&str>,
        values: &mut Vec<SqlValue>,
    ) -> String {
        // No arrays: one placeholder per value.
        let phs: Vec<String> = items
            .into_iter()
            .map(|v| {
                values.push(v);
                format!("${}", values.len())
            })
            .collect();
        format!("{expr} IN ({})", phs.join(", "))
    }

    fn page(&self, limit: Option<i64>, offset: Option<i64>, values: &mut Vec<SqlValue>) -> String {
        let mut sql = String::new();
        match limit {
            Some(l) => {
                values.push(SqlValue::Int(l));
                sql.push_str(&format!(" LIMIT ${}", values.len()));
            }
            // SQLite takes OFFSET only after a LIMIT.
            None if offset.is_some() => sql.push_str(" LIMIT -1"),
            None => {}
        }
        if let Some(o) = offset {
            values.push(SqlValue::Int(o));
            sql.push_str(&format!(" OFFSET ${}", values.len()));
        }
        sql
    }

    fn as_text(&self, json: &str) -> String {
        json.to_string()
    }

    fn json_doc(&self, column: &str, _ty: Option<&str>) -> String {
        self.ident(column)
    }

    fn view_source(&self, view: &str, doc: &str) -> (String, String) {
        (self.path(view), doc.to_string())
    }

    fn json_object(&self, p: &Projection, json: &str, depth: usize) -> String {
        if p.fields.is_empty() {
            return "json_object()".into();
        }
        let pairs: Vec<String> = p
            .fields
            .iter()
            .map(|(k, proj)| {
                let path = literal(&format!("$.\"{k}\""));
                let v = format!("({json} -> {path})");
                let expr = match proj {
                    Proj::Value => format!("json({v})"),
                    Proj::Object(sub) => format!(
                        "json(CASE WHEN json_type({json}, {path}) = 'object' THEN {} END)",
                        self.json_object(sub, &v, depth + 1)
                    ),
                    Proj::List(sub) => {
                        let t = format!("t{depth}");
                        format!(
                            "json(CASE WHEN json_type({json}, {path}) = 'array' THEN (SELECT json_group_array(json(CASE WHEN {t}.type = 'object' THEN {} END)) \
                             FROM json_each({json}, {path}) AS {t}) END)",
                            self.json_object(sub, &format!("{t}.value"), depth + 1)
                        )
                    }
                };
                format!("{}, {expr}", literal(k))
            })
            .collect();
        let calls: Vec<String> =
            pairs.chunks(PAIRS_PER_CALL).map(|c| format!("json_object({})", c.join(", "))).collect();
        calls.into_iter().reduce(|a, b| format!("json_patch({a}, {b})")).unwrap_or_default()
    }

    fn json_shape(&self, s: &Shape, json: &str, depth: usize) -> Option<String> {
        if s.fields.len() > super::SHAPE_KEYS {
            return None;
        }
        let mut pairs = Vec::with_capacity(s.fields.len());
        for (key, value) in &s.fields {
            let expr = match value {
                ShapeValue::Literal(text) => literal(text),
                ShapeValue::Value(k) => format!("json(({json} -> {}))", literal(&format!("$.\"{k}\""))),
                ShapeValue::Object(k, sub) => {
                    let path = literal(&format!("$.\"{k}\""));
                    let v = format!("({json} -> {path})");
                    format!(
                        "json(CASE WHEN json_type({json}, {path}) = 'object' THEN {} END)",
                        self.json_shape(sub, &v, depth + 1)?
                    )
                }
                ShapeValue::List(k, sub) => {
                    let path = literal(&format!("$.\"{k}\""));
                    let t = format!("t{depth}");
                    format!(
                        "json(CASE WHEN json_type({json}, {path}) = 'array' THEN (SELECT json_group_array(json(CASE WHEN {t}.type = 'object' THEN {} END)) \
                         FROM json_each({json}, {path}) AS {t}) END)",
                        self.json_shape(sub, &format!("{t}.value"), depth + 1)?
                    )
                }
            };
            pairs.push(format!("{}, {expr}", literal(key)));
        }
        Some(format!("json_object({})", pairs.join(", ")))
    }

    fn json_scalar(&self, json: &str, key: &str, _kind: ScalarKind) -> String {
        format!("json_extract({json}, {})", literal(&format!("$.\"{key}\"")))
    }

    fn json_order_key(&self, json: &str, key: &str) -> String {
        self.json_scalar(json, key, ScalarKind::String)
    }

    fn scalar_type(&self, _kind: ScalarKind) -> Option<&'static str> {
        None
    }

    fn contains(&self, expr: &str, n: usize) -> String {
        format!("instr({expr}, ${n}) > 0")
    }

    fn view_columns(&self, view: &str) -> (&'static str, Vec<String>) {
        let (schema, name) = view.split_once('.').unwrap_or(("main", view));
        ("SELECT name, type FROM pragma_table_info($1, $2)", vec![name.to_string(), schema.to_string()])
    }

    fn serialize_appends(&self, _table: &str) -> Option<String> {
        None
    }

    fn texts_of_json(&self, n: usize) -> String {
        format!("SELECT value FROM json_each(${n})")
    }
}
