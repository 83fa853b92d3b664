//! Values a query binds, from Rust arguments or from GraphQL input.

use serde::de::DeserializeOwned;
use sqlx::postgres::PgArguments;
use sqlx::query::QueryScalar;
use sqlx::sqlite::SqliteArguments;
use sqlx::{Postgres, Sqlite};

/// A value bound to a statement. On PostgreSQL it is cast to its column's type.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
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

/// The GraphQL scalar an argument is served as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScalarKind {
    Id,
    String,
    Int,
    Float,
    Boolean,
}

/// A Rust type a query argument can have: it becomes one bound value.
///
/// Implemented for strings, integers, floats, `bool`, `uuid::Uuid` and [`crate::Id`];
/// `Option<T>` of these makes an argument optional.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a `#[query]` argument",
    label = "not a value a query can bind",
    note = "query arguments are strings, integers, floats, `bool`, `uuid::Uuid` or `fraiseql::Id` (or an `Option` of one)"
)]
pub trait QueryValue {
    const KIND: ScalarKind;
    fn to_sql(&self) -> SqlValue;
}

macro_rules! int_value {
    ($($t:ty),*) => {$(
        impl QueryValue for $t {
            const KIND: ScalarKind = ScalarKind::Int;
            fn to_sql(&self) -> SqlValue { SqlValue::Int(*self as i64) }
        }
    )*};
}
int_value!(i8, i16, i32, i64, u8, u16, u32);

impl QueryValue for u64 {
    const KIND: ScalarKind = ScalarKind::Int;
    fn to_sql(&self) -> SqlValue {
        match i64::try_from(*self) {
            Ok(i) => SqlValue::Int(i),
            Err(_) => SqlValue::Text(self.to_string()),
        }
    }
}

impl QueryValue for f64 {
    const KIND: ScalarKind = ScalarKind::Float;
    fn to_sql(&self) -> SqlValue {
        SqlValue::Float(*self)
    }
}

impl QueryValue for f32 {
    const KIND: ScalarKind = ScalarKind::Float;
    fn to_sql(&self) -> SqlValue {
        SqlValue::Float(*self as f64)
    }
}

impl QueryValue for bool {
    const KIND: ScalarKind = ScalarKind::Boolean;
    fn to_sql(&self) -> SqlValue {
        SqlValue::Bool(*self)
    }
}

impl QueryValue for String {
    const KIND: ScalarKind = ScalarKind::String;
    fn to_sql(&self) -> SqlValue {
        SqlValue::Text(self.clone())
    }
}

impl QueryValue for str {
    const KIND: ScalarKind = ScalarKind::String;
    fn to_sql(&self) -> SqlValue {
        SqlValue::Text(self.to_string())
    }
}

impl QueryValue for uuid::Uuid {
    const KIND: ScalarKind = ScalarKind::Id;
    fn to_sql(&self) -> SqlValue {
        SqlValue::Text(self.to_string())
    }
}

impl<T: QueryValue + ?Sized> QueryValue for &T {
    const KIND: ScalarKind = T::KIND;
    fn to_sql(&self) -> SqlValue {
        (**self).to_sql()
    }
}

/// An identifier: a string served as GraphQL's `ID`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Id(pub String);

impl QueryValue for Id {
    const KIND: ScalarKind = ScalarKind::Id;
    fn to_sql(&self) -> SqlValue {
        SqlValue::Text(self.0.clone())
    }
}

impl std::fmt::Display for Id {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for Id {
    fn from(s: &str) -> Id {
        Id(s.to_string())
    }
}

impl From<String> for Id {
    fn from(s: String) -> Id {
        Id(s)
    }
}

/// A `#[query]` argument: a [`QueryValue`], an `Option` of one (the filter only when
/// given) or a `Vec` (any of several values), read from JSON when called by name
/// (GraphQL, `rt.query`). `filter` gives its value; `None` leaves the filter out.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a `#[query]` argument",
    label = "not a value a query can bind",
    note = "query arguments are strings, integers, floats, `bool`, `uuid::Uuid` or `fraiseql::Id` (or an `Option` of one, or a `Vec` for any of several values); a type of your own needs `fraiseql::QueryValue` and `serde::Deserialize`"
)]
pub trait FilterArg: Sized {
    const KIND: ScalarKind;
    fn filter(&self) -> Option<SqlValue>;

    /// Not public API. Used by generated code: the argument from a call's JSON arguments.
    #[doc(hidden)]
    fn __read(query: &str, args: &serde_json::Value, name: &str) -> crate::Result<Self>;
}

// Not recommended: a type that is not an argument is reported as `FilterArg` (with its
// message), not as the `QueryValue` or serde bound of one of these.
#[diagnostic::do_not_recommend]
impl<T: QueryValue + DeserializeOwned> FilterArg for T {
    const KIND: ScalarKind = T::KIND;
    fn filter(&self) -> Option<SqlValue> {
        Some(self.to_sql())
    }

    fn __read(query: &str, args: &serde_json::Value, name: &str) -> crate::Result<Self> {
        super::arg(query, args, name)
    }
}

#[diagnostic::do_not_recommend]
impl<T: QueryValue + DeserializeOwned> FilterArg for Option<T> {
    const KIND: ScalarKind = T::KIND;
    fn filter(&self) -> Option<SqlValue> {
        self.as_ref().map(QueryValue::to_sql)
    }

    fn __read(query: &str, args: &serde_json::Value, name: &str) -> crate::Result<Self> {
        super::arg(query, args, name)
    }
}

#[diagnostic::do_not_recommend]
impl<T: QueryValue + DeserializeOwned> FilterArg for Vec<T> {
    const KIND: ScalarKind = T::KIND;
    fn filter(&self) -> Option<SqlValue> {
        Some(SqlValue::List(self.iter().map(QueryValue::to_sql).collect()))
    }

    fn __read(query: &str, args: &serde_json::Value, name: &str) -> crate::Result<Self> {
        super::arg(query, args, name)
    }
}

#[diagnostic::do_not_recommend]
impl<T: QueryValue + DeserializeOwned> FilterArg for Option<Vec<T>> {
    const KIND: ScalarKind = T::KIND;
    fn filter(&self) -> Option<SqlValue> {
        self.as_ref().map(|v| SqlValue::List(v.iter().map(QueryValue::to_sql).collect()))
    }

    fn __read(query: &str, args: &serde_json::Value, name: &str) -> crate::Result<Self> {
        super::arg(query, args, name)
    }
}

/// `limit` / `offset` arguments: integers, or `Option`s of them.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a `limit` or `offset`",
    label = "not a number of rows",
    note = "use an integer type, or an `Option` of one"
)]
pub trait PageArg: Sized {
    fn page(&self) -> Option<i64>;

    /// Not public API. Used by generated code: the argument from a call's JSON arguments.
    #[doc(hidden)]
    fn __read(query: &str, args: &serde_json::Value, name: &str) -> crate::Result<Self>;
}

macro_rules! page_arg {
    ($($t:ty),*) => {$(
        // Not recommended: the note says what fits better than a list of nine types.
        #[diagnostic::do_not_recommend]
        impl PageArg for $t {
            fn page(&self) -> Option<i64> { Some(i64::try_from(*self).unwrap_or(i64::MAX)) }
            fn __read(query: &str, args: &serde_json::Value, name: &str) -> crate::Result<Self> {
                super::arg(query, args, name)
            }
        }
        #[diagnostic::do_not_recommend]
        impl PageArg for Option<$t> {
            fn page(&self) -> Option<i64> { self.map(|v| i64::try_from(v).unwrap_or(i64::MAX)) }
            fn __read(query: &str, args: &serde_json::Value, name: &str) -> crate::Result<Self> {
                super::arg(query, args, name)
            }
        }
    )*};
}
page_arg!(i8, i16, i32, i64, u8, u16, u32, u64, usize);

/// `order_by` arguments: `String` or `Option<String>`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be an `order_by`",
    label = "not an ordering",
    note = "use `String` or `Option<String>` (\"column [asc|desc], …\")"
)]
pub trait OrderArg: Sized {
    fn order(&self) -> Option<String>;

    /// Not public API. Used by generated code: the argument from a call's JSON arguments.
    #[doc(hidden)]
    fn __read(query: &str, args: &serde_json::Value, name: &str) -> crate::Result<Self>;
}

impl OrderArg for String {
    fn order(&self) -> Option<String> {
        Some(self.clone())
    }

    fn __read(query: &str, args: &serde_json::Value, name: &str) -> crate::Result<Self> {
        super::arg(query, args, name)
    }
}

impl OrderArg for Option<String> {
    fn order(&self) -> Option<String> {
        self.clone()
    }

    fn __read(query: &str, args: &serde_json::Value, name: &str) -> crate::Result<Self> {
        super::arg(query, args, name)
    }
}
