//! What `#[saga]`, `#[saga_step]` and `#[compensate]` register, and the catalog of them
//! a saga engine runs from (built and checked by the registry at start).

use std::collections::BTreeMap;
use std::fmt;

use futures_util::future::BoxFuture;
use serde_json::Value;

use super::StepInvocation;
use crate::error::{Error, Result};
use crate::meta::{Location, TypeInfo, DEFAULT_DATABASE};

/// A parameter of a saga (its inputs) or of a step (injected by name).
#[derive(Debug, Clone, Copy)]
pub struct ParamDef {
    pub name: &'static str,
    /// As written in the source.
    pub type_name: &'static str,
    pub type_id: fn() -> TypeInfo,
}

/// The saga state type of a context, with a check that it survives JSON.
#[derive(Clone, Copy)]
pub struct StateInfo {
    pub type_info: fn() -> TypeInfo,
    /// `Default::default()` serialised and read back; the JSON on success.
    pub round_trip: fn() -> std::result::Result<Value, String>,
    /// Whether a logged state (JSON text) still deserialises.
    pub check: fn(&str) -> std::result::Result<(), String>,
}

impl fmt::Debug for StateInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str((self.type_info)().name)
    }
}

/// Type-erased entry point of a step or compensation.
pub type InvokeFn = for<'a> fn(&'a mut StepInvocation) -> BoxFuture<'a, Result<Value>>;

/// One `#[saga]`.
#[derive(Debug)]
pub struct SagaDef {
    pub name: &'static str,
    pub function: &'static str,
    pub steps: &'static [&'static str],
    pub result_step: Option<&'static str>,
    /// Overrides the configured recovery policy (`#[saga(recovery = "forward")]`).
    pub recovery: Option<crate::config::RecoveryPolicy>,
    pub params: &'static [ParamDef],
    pub state: StateInfo,
    pub output: fn() -> TypeInfo,
    /// How the schema serves each parameter (as `params`), and the result.
    pub input_types: &'static [fn() -> crate::describe::TypeRef],
    pub output_type: fn() -> crate::describe::TypeRef,
    /// Whether a logged input still deserialises into the parameters.
    pub check_input: fn(&serde_json::Map<String, Value>) -> std::result::Result<(), String>,
    pub location: Location,
}

/// One `#[saga_step]`.
#[derive(Debug)]
pub struct StepDef {
    pub name: &'static str,
    pub function: &'static str,
    pub database: Option<&'static str>,
    pub retries: Option<u32>,
    pub timeout_ms: Option<u64>,
    pub params: &'static [ParamDef],
    pub state: StateInfo,
    pub output: fn() -> TypeInfo,
    pub invoke: InvokeFn,
    pub location: Location,
}

/// One `#[compensate]`.
#[derive(Debug)]
pub struct CompensateDef {
    pub step: &'static str,
    pub function: &'static str,
    pub retries: Option<u32>,
    pub timeout_ms: Option<u64>,
    pub params: &'static [ParamDef],
    pub state: StateInfo,
    pub invoke: InvokeFn,
    pub location: Location,
}

/// The sagas, steps and compensations of a binary, by name, as the registry validated
/// them.
#[derive(Debug, Default, Clone)]
pub struct Catalog {
    pub(crate) sagas: BTreeMap<&'static str, &'static SagaDef>,
    pub(crate) steps: BTreeMap<&'static str, &'static StepDef>,
    pub(crate) compensations: BTreeMap<&'static str, &'static CompensateDef>,
}

impl Catalog {
    /// The saga called `name`.
    pub fn saga(&self, name: &str) -> Result<&'static SagaDef> {
        self.sagas.get(name).copied().ok_or_else(|| Error::NotFound(format!("no saga named `{name}` is registered")))
    }

    /// The step called `name`.
    pub fn step(&self, name: &str) -> Option<&'static StepDef> {
        self.steps.get(name).copied()
    }

    /// The compensation of step `step`, if it has one.
    pub fn compensation(&self, step: &str) -> Option<&'static CompensateDef> {
        self.compensations.get(step).copied()
    }

    /// The database step `step` runs on.
    pub(crate) fn database_of(&self, step: &str) -> &'static str {
        self.step(step).and_then(|s| s.database).unwrap_or(DEFAULT_DATABASE)
    }
}
