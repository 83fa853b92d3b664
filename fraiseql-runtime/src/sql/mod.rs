//! SQL as FraiseQL writes it for a view: the [`Dialect`] seam (quoting, placeholders,
//! catalog reads, JSON projection, paging), the values it binds, and [`Select`], the one
//! statement builder that `#[query]` calls and GraphQL fields both use.
//!
//! Identifiers come only from registrations (checked at compile time) and the catalog;
//! every value is bound. A new database is one file implementing [`Dialect`], one arm in
//! [`Backend::dialect`], and its driver arms in `db.rs`.

mod postgres;
mod sqlite;

use std::collections::BTreeMap;

use sqlx::postgres::PgArguments;
use sqlx::query::QueryScalar;
use sqlx::sqlite::SqliteArguments;
use sqlx::{Postgres, Sqlite};

use crate::describe::ScalarKind;

/// Which engine a database runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// PostgreSQL (12 or later).
    Postgres,
    /// SQLite (the embedded default).
    Sqlite,
}

impl Backend {
    /// How SQL is written for this engine.
    pub(crate) fn dialect(self) -> &'static dyn Dialect {
        match self {
            Backend::Postgres => &postgres::Postgres,
            Backend::Sqlite => &sqlite::Sqlite,
        }
    }
}

/// How one engine spells what FraiseQL's statements need.
pub(crate) trait Dialect: Send + Sync {
    /// An identifier, quoted so that it can only name a column or relation.
    fn ident(&self, name: &str) -> String;

    /// `schema.view`, each part quoted.
    fn path(&self, path: &str) -> String {
        path.split('.').map(|p| self.ident(p)).collect::<Vec<_>>().join(".")
    }

    /// The `n`th placeholder (from 1), cast to `sql_type` where the engine needs casts
    /// for typed comparisons (a `uuid` column against a bound text, say).
    fn placeholder(&self, n: usize, sql_type: Option<&str>) -> String;

    /// `expr` is one of `items` (non-empty); pushes what it binds.
    fn member_of(&self, expr: &str, items: Vec<SqlValue>, sql_type: Option<&str>, values: &mut Vec<SqlValue>)
        -> String;

    /// ` LIMIT … OFFSET …`; pushes what it binds.
    fn page(&self, limit: Option<i64>, offset: Option<i64>, values: &mut Vec<SqlValue>) -> String;

    /// A JSON expression as the text the rows are read as.
    fn as_text(&self, json: &str) -> String;

    /// The JSON document of a view's data column (`ty` as the catalog says).
    fn json_doc(&self, column: &str, ty: Option<&str>) -> String;

    /// `FROM` a view and the expression of its document, computed once per row.
    fn view_source(&self, view: &str, doc: &str) -> (String, String);

    /// A JSON object with the projection's keys of the object at `json`.
    fn json_object(&self, p: &Projection, json: &str, depth: usize) -> String;

    /// The response's JSON for the object at `json`: keys in the shape's order (the
    /// engine's ordered JSON type, not `jsonb`), as text. `None` when an object has more
    /// keys than one call of the engine's JSON builder takes.
    fn json_shape(&self, s: &Shape, json: &str, depth: usize) -> Option<String>;

    /// A scalar key of a JSON document, as a value of `kind` (comparable, bindable).
    fn json_scalar(&self, json: &str, key: &str, kind: ScalarKind) -> String;

    /// A key of a JSON document, ordered as JSON orders it (numbers as numbers).
    fn json_order_key(&self, json: &str, key: &str) -> String;

    /// The SQL type a bound value of `kind` is cast to, where the engine casts.
    fn scalar_type(&self, kind: ScalarKind) -> Option<&'static str>;

    /// `expr` contains the text bound at placeholder `n`.
    fn contains(&self, expr: &str, n: usize) -> String;

    /// The catalog query listing a view's columns as `(name, type)`, with its arguments.
    fn view_columns(&self, view: &str) -> (&'static str, Vec<String>);

    /// A statement that, run first in a transaction appending to `table`, makes
    /// concurrent appends commit in the order of their sequence numbers (readers that go
    /// by sequence would otherwise skip a late commit for good); `None` where the engine
    /// already writes one transaction at a time.
    fn serialize_appends(&self, table: &str) -> Option<String>;

    /// A subquery of the texts in the JSON array bound at placeholder `n` (one statement,
    /// one parameter, however many values).
    fn texts_of_json(&self, n: usize) -> String;
}

/// A string literal (for JSON keys and paths, which come from registered types only).
pub(crate) fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// A value bound to a statement. On PostgreSQL it is cast to its column's type.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    /// SQL `NULL`.
    Null,
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A floating-point number.
    Float(f64),
    /// Text; also how UUIDs and ids are bound (PostgreSQL casts it to the column's type).
    Text(String),
    /// Several values, for `in` filters.
    List(Vec<SqlValue>),
}

impl SqlValue {
    pub(crate) fn bind_pg<'q, O>(
        &'q self,
        q: QueryScalar<'q, Postgres, O, PgArguments>,
    ) -> QueryScalar<'q, Postgres, O, PgArguments> {
        match self {
            SqlValue::Null => q.bind(None::<String>),
            SqlValue::Bool(b) => q.bind(*b),
            SqlValue::Int(i) => q.bind(*i),
            SqlValue::Float(f) => q.bind(*f),
            SqlValue::Text(s) => q.bind(s.as_str()),
            // Bound as text[]; the statement casts it to the column's array type.
            SqlValue::List(items) => q.bind(items.iter().map(SqlValue::as_text).collect::<Vec<Option<String>>>()),
        }
    }

    pub(crate) fn bind_sqlite<'q, O>(
        &'q self,
        q: QueryScalar<'q, Sqlite, O, SqliteArguments<'q>>,
    ) -> QueryScalar<'q, Sqlite, O, SqliteArguments<'q>> {
        match self {
            SqlValue::Null => q.bind(None::<String>),
            SqlValue::Bool(b) => q.bind(*b),
            SqlValue::Int(i) => q.bind(*i),
            SqlValue::Float(f) => q.bind(*f),
            SqlValue::Text(s) => q.bind(s.as_str()),
            // SQLite has no arrays: `in` lists are expanded into one placeholder each.
            SqlValue::List(_) => q.bind(None::<String>),
        }
    }

    /// The value as PostgreSQL's text input would read it.
    pub fn as_text(&self) -> Option<String> {
        match self {
            SqlValue::Null => None,
            SqlValue::Bool(b) => Some(b.to_string()),
            SqlValue::Int(i) => Some(i.to_string()),
            SqlValue::Float(f) => Some(f.to_string()),
            SqlValue::Text(s) => Some(s.clone()),
            SqlValue::List(_) => None,
        }
    }

    /// From a JSON scalar (GraphQL input); objects and nested lists are not values.
    pub fn from_json(v: &serde_json::Value) -> Option<SqlValue> {
        Some(match v {
            serde_json::Value::Null => SqlValue::Null,
            serde_json::Value::Bool(b) => SqlValue::Bool(*b),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => SqlValue::Int(i),
                None => SqlValue::Float(n.as_f64()?),
            },
            serde_json::Value::String(s) => SqlValue::Text(s.clone()),
            serde_json::Value::Array(items) => {
                SqlValue::List(items.iter().map(SqlValue::from_json).collect::<Option<Vec<_>>>()?)
            }
            serde_json::Value::Object(_) => return None,
        })
    }
}

/// What of an object a request selected, by JSON key.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Projection {
    /// The selected keys, in selection order.
    pub fields: Vec<(&'static str, Proj)>,
}

/// How one selected key is built.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Proj {
    /// The value as stored (a scalar, JSON, or a list of them).
    Value,
    /// An object, with its own projection.
    Object(Projection),
    /// A list of objects.
    List(Projection),
}

/// The most keys of one object a [`Shape`] builds (one call of the engines' JSON
/// builders, whose arguments are bounded).
pub(crate) const SHAPE_KEYS: usize = 40;

/// A GraphQL selection as the response shows it: response keys (aliases), in selection
/// order, each built from a key of the document or a literal (`__typename`).
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Shape {
    /// `(response key, how its value is built)`, in selection order.
    pub fields: Vec<(String, ShapeValue)>,
}

/// How one response key's value is built.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ShapeValue {
    /// A string (an object's `__typename`).
    Literal(&'static str),
    /// The document's value at this key, as stored.
    Value(&'static str),
    /// The object at this key, shaped in turn (null unless it is an object).
    Object(&'static str, Shape),
    /// The list of objects at this key, each shaped (null unless it is a list).
    List(&'static str, Shape),
}

/// A SQL statement and the values it binds, built for one engine.
#[derive(Debug)]
pub(crate) struct Statement {
    /// The text, with numbered placeholders.
    pub sql: String,
    /// What the placeholders bind, in order.
    pub values: Vec<SqlValue>,
}

/// A `SELECT` over one view, built up clause by clause: `#[query]` calls add equality
/// filters on the view's columns; GraphQL fields add a projection of the document,
/// `where` conditions and an ordering. Values are bound as they are added.
pub(crate) struct Select<'a> {
    dialect: &'static dyn Dialect,
    /// The view's columns and their catalog types.
    columns: &'a BTreeMap<String, String>,
    select: String,
    from: String,
    conds: Vec<String>,
    order: Option<String>,
    values: Vec<SqlValue>,
}

impl<'a> Select<'a> {
    /// `SELECT select FROM from`.
    pub(crate) fn new(
        dialect: &'static dyn Dialect,
        columns: &'a BTreeMap<String, String>,
        select: String,
        from: String,
    ) -> Self {
        Select { dialect, columns, select, from, conds: Vec::new(), order: None, values: Vec::new() }
    }

    /// The engine's dialect.
    pub(crate) fn dialect(&self) -> &'static dyn Dialect {
        self.dialect
    }

    /// Whether the view has this column.
    pub(crate) fn has_column(&self, column: &str) -> bool {
        self.columns.contains_key(column)
    }

    /// The catalog type of a column, if it has one.
    pub(crate) fn column_type(&self, column: &str) -> Option<&str> {
        self.columns.get(column).map(String::as_str).filter(|t| !t.is_empty())
    }

    /// Bind a value; its placeholder, cast to `sql_type` where the engine casts.
    pub(crate) fn bind(&mut self, value: SqlValue, sql_type: Option<&str>) -> String {
        self.values.push(value);
        self.dialect.placeholder(self.values.len(), sql_type)
    }

    /// `expr` is one of `items`: an empty list matches nothing.
    pub(crate) fn member_of(&mut self, expr: &str, items: Vec<SqlValue>, sql_type: Option<&str>) -> String {
        if items.is_empty() {
            return "FALSE".into();
        }
        self.dialect.member_of(expr, items, sql_type, &mut self.values)
    }

    /// `column = value` (a list: any of its values), cast to the column's type.
    pub(crate) fn column_eq(&mut self, column: &str, value: SqlValue) -> String {
        let col = self.dialect.ident(column);
        let ty = self.column_type(column).map(str::to_string);
        match value {
            SqlValue::List(items) => self.member_of(&col, items, ty.as_deref()),
            v => format!("{col} = {}", self.bind(v, ty.as_deref())),
        }
    }

    /// Add a condition (all conditions must hold).
    pub(crate) fn and(&mut self, cond: String) {
        self.conds.push(cond);
    }

    /// Bind `text` for [`Dialect::contains`]; the condition.
    pub(crate) fn contains(&mut self, expr: &str, text: String) -> String {
        self.values.push(SqlValue::Text(text));
        self.dialect.contains(expr, self.values.len())
    }

    /// Order the rows (already-quoted SQL; empty: no ordering).
    pub(crate) fn order_by(&mut self, order: Option<String>) {
        self.order = order.filter(|o| !o.is_empty());
    }

    /// The statement, with its page.
    pub(crate) fn build(mut self, limit: Option<i64>, offset: Option<i64>) -> Statement {
        let mut sql = format!("SELECT {} FROM {}", self.select, self.from);
        if !self.conds.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&self.conds.join(" AND "));
        }
        if let Some(o) = &self.order {
            sql.push_str(" ORDER BY ");
            sql.push_str(o);
        }
        sql.push_str(&self.dialect.page(limit, offset, &mut self.values));
        Statement { sql, values: self.values }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_builder_writes_each_dialect() {
        let mut columns = BTreeMap::new();
        columns.insert("id".to_string(), "uuid".to_string());
        columns.insert("status".to_string(), "text".to_string());
        for (backend, want) in [
            (
                Backend::Postgres,
                r#"SELECT ("data")::text FROM "public"."v_order" WHERE "id" = $1::uuid AND "status" = ANY($2::text[]::text[]) ORDER BY "id" ASC LIMIT 10 OFFSET 20"#,
            ),
            (
                Backend::Sqlite,
                r#"SELECT [data] FROM [public].[v_order] WHERE [id] = $1 AND [status] IN ($2, $3) ORDER BY [id] ASC LIMIT $4 OFFSET $5"#,
            ),
        ] {
            let d = backend.dialect();
            let select = d.as_text(&d.ident("data"));
            let mut s = Select::new(d, &columns, select, d.path("public.v_order"));
            let c = s.column_eq("id", SqlValue::Text("x".into()));
            s.and(c);
            let c = s.column_eq("status", SqlValue::List(vec![SqlValue::Text("a".into()), SqlValue::Text("b".into())]));
            s.and(c);
            s.order_by(Some(format!("{} ASC", d.ident("id"))));
            let st = s.build(Some(10), Some(20));
            assert_eq!(st.sql, want, "{backend:?}");
        }
    }

    #[test]
    fn an_empty_list_matches_nothing_and_binds_nothing() {
        let columns = BTreeMap::new();
        let d = Backend::Postgres.dialect();
        let mut s = Select::new(d, &columns, "1".into(), "t".into());
        assert_eq!(s.column_eq("id", SqlValue::List(vec![])), "FALSE");
        assert!(s.build(None, None).values.is_empty());
    }

    #[test]
    fn identifiers_cannot_break_out_of_their_quotes() {
        assert_eq!(Backend::Postgres.dialect().ident(r#"a"b"#), r#""a""b""#);
        assert_eq!(Backend::Sqlite.dialect().ident("a]b"), "[ab]");
    }
}
