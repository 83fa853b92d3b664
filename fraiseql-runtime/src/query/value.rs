//! Values a query binds, from Rust arguments or from GraphQL input.

use serde::de::DeserializeOwned;

pub use crate::describe::{Id, ScalarKind};
pub use crate::sql::SqlValue;

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
    /// The GraphQL scalar an argument of this type is served as.
    const KIND: ScalarKind;
    /// The value to bind.
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

impl QueryValue for Id {
    const KIND: ScalarKind = ScalarKind::Id;
    fn to_sql(&self) -> SqlValue {
        SqlValue::Text(self.0.clone())
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
    /// The GraphQL scalar of the value (of each element, for a `Vec`).
    const KIND: ScalarKind;
    /// The value to compare with (a list for `Vec`); `None` leaves the filter out.
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
    /// The number of rows; `None`: not given. Values beyond `i64` are `i64::MAX`.
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
    /// The ordering (`"created_at desc, id"`); `None`: the query's default.
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
