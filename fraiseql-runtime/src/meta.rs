//! What the macros record about every declaration: where it is, and which Rust types it
//! names (by identity, to compare them, and by name, to report them).

use std::any::TypeId;
use std::fmt;

/// Where a registration was declared.
#[derive(Debug, Clone, Copy)]
pub struct Location {
    /// The source file, as `file!()` gives it.
    pub file: &'static str,
    /// The line, from 1.
    pub line: u32,
    /// The column, from 1.
    pub column: u32,
    /// The module path, as `module_path!()` gives it.
    pub module: &'static str,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// A type, known by identity and by name.
#[derive(Clone, Copy)]
pub struct TypeInfo {
    /// Its identity: two registrations name the same type if and only if these are equal.
    pub id: TypeId,
    /// Its full name (`std::any::type_name`), for messages; see [`TypeInfo::short_name`].
    pub name: &'static str,
}

impl TypeInfo {
    /// The `TypeInfo` of `T`.
    pub fn of<T: 'static>() -> TypeInfo {
        TypeInfo { id: TypeId::of::<T>(), name: std::any::type_name::<T>() }
    }

    /// The name without module paths: `Vec<Item>` rather than `alloc::vec::Vec<my_app::Item>`.
    pub fn short_name(&self) -> String {
        let mut out = String::new();
        let mut word = String::new();
        for c in self.name.chars() {
            if c.is_alphanumeric() || c == '_' || c == ':' {
                word.push(c);
            } else {
                out.push_str(word.rsplit("::").next().unwrap_or(""));
                word.clear();
                out.push(c);
            }
        }
        out.push_str(word.rsplit("::").next().unwrap_or(""));
        out
    }
}

impl fmt::Debug for TypeInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

/// The database a step or query uses when it names none.
pub use crate::grammar::DEFAULT_DATABASE;
