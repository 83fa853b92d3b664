//! Values a query binds, from Rust arguments or from GraphQL input.

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

impl QueryValue for Id {
    const KIND: ScalarKind = ScalarKind::Id;
    fn to_sql(&self) -> SqlValue {
        SqlValue::Text(self.0.clone())
    }
}

/// An argument's value for a filter: `None` leaves the filter out.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a `#[query]` argument",
    label = "not a value a query can bind",
    note = "query arguments are strings, integers, floats, `bool`, `uuid::Uuid` or `fraiseql::Id` (or an `Option` of one, or a `Vec` for any of several values)"
)]
pub trait FilterArg {
    const KIND: ScalarKind;
    fn filter(&self) -> Option<SqlValue>;
}

impl<T: QueryValue> FilterArg for T {
    const KIND: ScalarKind = T::KIND;
    fn filter(&self) -> Option<SqlValue> {
        Some(self.to_sql())
    }
}

impl<T: QueryValue> FilterArg for Option<T> {
    const KIND: ScalarKind = T::KIND;
    fn filter(&self) -> Option<SqlValue> {
        self.as_ref().map(QueryValue::to_sql)
    }
}

impl<T: QueryValue> FilterArg for Vec<T> {
    const KIND: ScalarKind = T::KIND;
    fn filter(&self) -> Option<SqlValue> {
        Some(SqlValue::List(self.iter().map(QueryValue::to_sql).collect()))
    }
}

impl<T: QueryValue> FilterArg for Option<Vec<T>> {
    const KIND: ScalarKind = T::KIND;
    fn filter(&self) -> Option<SqlValue> {
        self.as_ref().map(|v| SqlValue::List(v.iter().map(QueryValue::to_sql).collect()))
    }
}

/// `limit` / `offset` arguments: integers, or `Option`s of them.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a `limit` or `offset`",
    note = "use an integer type, or an `Option` of one"
)]
pub trait PageArg {
    fn page(&self) -> Option<i64>;
}

macro_rules! page_arg {
    ($($t:ty),*) => {$(
        impl PageArg for $t {
            fn page(&self) -> Option<i64> { Some(i64::try_from(*self).unwrap_or(i64::MAX)) }
        }
        impl PageArg for Option<$t> {
            fn page(&self) -> Option<i64> { self.map(|v| i64::try_from(v).unwrap_or(i64::MAX)) }
        }
    )*};
}
page_arg!(i8, i16, i32, i64, u8, u16, u32, u64, usize);

/// `order_by` arguments: `String`, `&str`, or an `Option` of one.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be an `order_by`",
    note = "use `String` or `Option<String>` (\"column [asc|desc], …\")"
)]
pub trait OrderArg {
    fn order(&self) -> Option<String>;
}

impl OrderArg for String {
    fn order(&self) -> Option<String> {
        Some(self.clone())
    }
}

impl OrderArg for &str {
    fn order(&self) -> Option<String> {
        Some(self.to_string())
    }
}

impl OrderArg for Option<String> {
    fn order(&self) -> Option<String> {
        self.clone()
    }
}

impl OrderArg for Option<&str> {
    fn order(&self) -> Option<String> {
        self.map(str::to_string)
    }
}
