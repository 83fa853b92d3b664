//! What the GraphQL schema knows of Rust types: scalars, lists, optionals, and objects
//! described by `#[derive(fraiseql::Object)]` (field names as they appear in JSON, so the
//! schema, the view's `data` and serde agree). Types with no description are served as
//! the `JSON` scalar.

use std::marker::PhantomData;

/// The GraphQL scalar a value is served as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScalarKind {
    /// `ID`: [`Id`] and `uuid::Uuid`.
    Id,
    /// `String`: strings and `char`.
    String,
    /// `Int`: the integer types.
    Int,
    /// `Float`: `f32` and `f64`.
    Float,
    /// `Boolean`: `bool`.
    Boolean,
}

/// An identifier: a string served as GraphQL's `ID`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Id(pub String);

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

/// A type as the schema sees it. Non-null unless wrapped in `Nullable`.
#[derive(Debug, Clone)]
pub enum TypeRef {
    /// A built-in scalar.
    Scalar(ScalarKind),
    /// Any JSON value (the `JSON` scalar).
    Json,
    /// A struct with `#[derive(fraiseql::Object)]`.
    Object(&'static ObjectDesc),
    /// A list of the inner type (`Vec<T>`).
    List(Box<TypeRef>),
    /// The inner type, or null (`Option<T>`).
    Nullable(Box<TypeRef>),
}

impl TypeRef {
    /// Without a `Nullable` wrapper.
    pub fn non_null(&self) -> &TypeRef {
        match self {
            TypeRef::Nullable(t) => t,
            t => t,
        }
    }

    /// Whether null is allowed (the type is an `Option`).
    pub fn is_nullable(&self) -> bool {
        matches!(self, TypeRef::Nullable(_))
    }
}

/// A struct's fields, by the names serde gives them.
#[derive(Debug)]
pub struct ObjectDesc {
    /// The GraphQL type name (the Rust one).
    pub name: &'static str,
    /// The struct's doc comment: the type's description in the schema.
    pub doc: Option<&'static str>,
    /// Its fields, in declaration order (those serde skips left out).
    pub fields: &'static [FieldDesc],
}

/// One field of an [`ObjectDesc`].
#[derive(Debug)]
pub struct FieldDesc {
    /// The JSON key.
    pub name: &'static str,
    /// The field's doc comment: its description in the schema.
    pub doc: Option<&'static str>,
    /// Its type as the schema sees it.
    pub ty: fn() -> TypeRef,
}

/// A type the schema can describe. `#[derive(fraiseql::Object)]` implements it for
/// structs; it is implemented for scalars, `Option`, `Vec` and `serde_json::Value`.
pub trait Describe {
    /// How the schema serves this type.
    fn type_ref() -> TypeRef;
}

macro_rules! scalar {
    ($kind:ident: $($t:ty),*) => {$(
        impl Describe for $t {
            fn type_ref() -> TypeRef { TypeRef::Scalar(ScalarKind::$kind) }
        }
    )*};
}
scalar!(Int: i8, i16, i32, i64, u8, u16, u32, u64, usize, isize);
scalar!(Float: f32, f64);
scalar!(Boolean: bool);
scalar!(String: String, str, char);
scalar!(Id: uuid::Uuid, Id);

impl Describe for serde_json::Value {
    fn type_ref() -> TypeRef {
        TypeRef::Json
    }
}

impl<T: Describe> Describe for Option<T> {
    fn type_ref() -> TypeRef {
        TypeRef::Nullable(Box::new(T::type_ref()))
    }
}

impl<T: Describe> Describe for Vec<T> {
    fn type_ref() -> TypeRef {
        TypeRef::List(Box::new(T::type_ref()))
    }
}

impl<T: Describe + ?Sized> Describe for Box<T> {
    fn type_ref() -> TypeRef {
        T::type_ref()
    }
}

impl<T: Describe + ?Sized> Describe for &T {
    fn type_ref() -> TypeRef {
        T::type_ref()
    }
}

/// Not public API: the description of `T` when it has one, else `JSON` (autoref
/// specialisation: generated code calls `(&Probe::<T>::new()).type_ref()` with both
/// traits in scope).
#[doc(hidden)]
pub struct Probe<T: ?Sized>(PhantomData<T>);

impl<T: ?Sized> Probe<T> {
    #[allow(clippy::new_without_default)]
    pub const fn new() -> Self {
        Probe(PhantomData)
    }
}

#[doc(hidden)]
pub trait ViaDescribe {
    fn type_ref(&self) -> TypeRef;
}

impl<T: Describe + ?Sized> ViaDescribe for Probe<T> {
    fn type_ref(&self) -> TypeRef {
        T::type_ref()
    }
}

#[doc(hidden)]
pub trait ViaJson {
    fn type_ref(&self) -> TypeRef;
}

impl<T: ?Sized> ViaJson for &Probe<T> {
    fn type_ref(&self) -> TypeRef {
        TypeRef::Json
    }
}

/// `fooBar` from `foo_bar` (GraphQL's convention for fields and arguments).
pub use crate::grammar::camel_case;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    // The explicit `&` is the point: autoref specialisation, as generated code calls it.
    #[allow(clippy::needless_borrow)]
    fn probes_fall_back_to_json() {
        struct Opaque;
        assert!(matches!((&Probe::<i64>::new()).type_ref(), TypeRef::Scalar(ScalarKind::Int)));
        assert!(matches!((&Probe::<Option<String>>::new()).type_ref(), TypeRef::Nullable(_)));
        assert!(matches!((&Probe::<Opaque>::new()).type_ref(), TypeRef::Json));
    }
}
