//! PostgreSQL: double-quoted identifiers, `$n::type` placeholders (a bound text compares
//! with a `uuid` or `timestamptz` column's index), `jsonb` documents, `= ANY(array)`
//! membership, `pg_attribute` for a view's columns.

use super::{literal, Dialect, Proj, Projection, Shape, ShapeValue, SqlValue};
use crate::describe::ScalarKind;

/// At most this many key/value pairs per `jsonb_build_object` call (PostgreSQL takes
/// at most 100 arguments); larger objects are concatenated.
const PAIRS_PER_CALL: usize = 40;

pub(super) struct Postgres;

impl Dialect for Postgres {
    fn ident(&self, name: &str) -> String {
        format!("\"{}\"", name.replace('"', "\"\""))
    }

    fn placeholder(&self, n: usize, sql_type: Option<&str>) -> String {
        match sql_type {
            Some(ty) => format!("${n}::{ty}"),
            None => format!("${n}"),
        }
    }

    fn member_of(
        &self,
        expr: &str,
        items: Vec<SqlValue>,
        sql_type: Option<&str>,
        values: &mut Vec<SqlValue>,
    ) -> String {
        // One array parameter, bound as text[] and cast to the column's array type.
        values.push(SqlValue::List(items));
        format!("{expr} = ANY(${}::text[]::{}[])", values.len(), sql_type.unwrap_or("text"))
    }

    /// The page is written as numbers, not bound: with `LIMIT $n` the planner cannot
    /// cost a generic plan (it assumes a tenth of the rows), so PostgreSQL plans the
    /// prepared statement again at every execution — a fifth of a 20-row list's time in
    /// the database. These are `i64`s the caller checked, printed by Rust; no text of a
    /// request reaches the statement.
    fn page(&self, limit: Option<i64>, offset: Option<i64>, _values: &mut Vec<SqlValue>) -> String {
        use std::fmt::Write;
        let mut sql = String::new();
        if let Some(l) = limit {
            let _ = write!(sql, " LIMIT {l}");
        }
        if let Some(o) = offset {
            let _ = write!(sql, " OFFSET {o}");
        }
        sql
    }

    fn as_text(&self, json: &str) -> String {
        format!("({json})::text")
    }

    fn json_doc(&self, column: &str, ty: Option<&str>) -> String {
        let c = self.ident(column);
        match ty {
            Some("jsonb") => c,
            _ => format!("{c}::jsonb"),
        }
    }

    fn view_source(&self, view: &str, doc: &str) -> (String, String) {
        // The document is computed once per row: a view inlined into the statement
        // would otherwise evaluate `data` again for every key the selection reads.
        let from = format!(
            "{} AS __fraiseql_row CROSS JOIN LATERAL (SELECT {} AS __fraiseql_json OFFSET 0) AS __fraiseql_doc",
            self.path(view),
            doc.replacen('"', "__fraiseql_row.\"", 1)
        );
        (from, "__fraiseql_doc.__fraiseql_json".to_string())
    }

    fn json_object(&self, p: &Projection, json: &str, depth: usize) -> String {
        if p.fields.is_empty() {
            return "'{}'::jsonb".into();
        }
        let pairs: Vec<String> = p
            .fields
            .iter()
            .map(|(k, proj)| {
                let v = format!("({json}->{})", literal(k));
                let expr = match proj {
                    Proj::Value => v,
                    Proj::Object(sub) => format!(
                        "CASE WHEN jsonb_typeof({v}) = 'object' THEN {} END",
                        self.json_object(sub, &v, depth + 1)
                    ),
                    Proj::List(sub) => {
                        let (x, o) = (format!("x{depth}"), format!("o{depth}"));
                        format!(
                            "CASE WHEN jsonb_typeof({v}) = 'array' THEN COALESCE((SELECT jsonb_agg(CASE WHEN jsonb_typeof({x}) = 'object' THEN {} END ORDER BY {o}) \
                             FROM jsonb_array_elements({v}) WITH ORDINALITY AS t{depth}({x}, {o})), '[]'::jsonb) END",
                            self.json_object(sub, &x, depth + 1)
                        )
                    }
                };
                format!("{}, {expr}", literal(k))
            })
            .collect();
        pairs
            .chunks(PAIRS_PER_CALL)
            .map(|c| format!("jsonb_build_object({})", c.join(", ")))
            .collect::<Vec<_>>()
            .join(" || ")
    }

    fn json_shape(&self, s: &Shape, json: &str, depth: usize) -> Option<String> {
        if s.fields.len() > super::SHAPE_KEYS {
            return None;
        }
        let mut pairs = Vec::with_capacity(s.fields.len());
        for (key, value) in &s.fields {
            let expr = match value {
                ShapeValue::Literal(text) => format!("{}::text", literal(text)),
                ShapeValue::Value(k) => format!("({json}->{})", literal(k)),
                ShapeValue::Object(k, sub) => {
                    let v = format!("({json}->{})", literal(k));
                    format!("CASE WHEN jsonb_typeof({v}) = 'object' THEN {} END", self.json_shape(sub, &v, depth + 1)?)
                }
                ShapeValue::List(k, sub) => {
                    let v = format!("({json}->{})", literal(k));
                    let (x, o) = (format!("x{depth}"), format!("o{depth}"));
                    format!(
                        "CASE WHEN jsonb_typeof({v}) = 'array' THEN COALESCE((SELECT json_agg(CASE WHEN jsonb_typeof({x}) = 'object' THEN {} END ORDER BY {o}) \
                         FROM jsonb_array_elements({v}) WITH ORDINALITY AS t{depth}({x}, {o})), '[]'::json) END",
                        self.json_shape(sub, &x, depth + 1)?
                    )
                }
            };
            pairs.push(format!("{}, {expr}", literal(key)));
        }
        Some(format!("json_build_object({})", pairs.join(", ")))
    }

    fn json_scalar(&self, json: &str, key: &str, kind: ScalarKind) -> String {
        match self.scalar_type(kind) {
            Some("text") | None => format!("({json}->>{})", literal(key)),
            Some(ty) => format!("({json}->>{})::{ty}", literal(key)),
        }
    }

    fn json_order_key(&self, json: &str, key: &str) -> String {
        // jsonb orders numbers as numbers and strings as text.
        format!("({json}->{})", literal(key))
    }

    fn scalar_type(&self, kind: ScalarKind) -> Option<&'static str> {
        Some(match kind {
            ScalarKind::Int => "bigint",
            ScalarKind::Float => "double precision",
            ScalarKind::Boolean => "boolean",
            ScalarKind::String | ScalarKind::Id => "text",
        })
    }

    fn contains(&self, expr: &str, n: usize) -> String {
        format!("strpos(({expr})::text, ${n}::text) > 0")
    }

    fn view_columns(&self, view: &str) -> (&'static str, Vec<String>) {
        (
            "SELECT a.attname::text, format_type(a.atttypid, NULL) FROM pg_attribute a
             WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            vec![self.path(view)],
        )
    }

    fn serialize_appends(&self, table: &str) -> Option<String> {
        Some(format!("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE", self.ident(table)))
    }

    fn texts_of_json(&self, n: usize) -> String {
        format!("SELECT jsonb_array_elements_text(${n}::jsonb)")
    }
}
