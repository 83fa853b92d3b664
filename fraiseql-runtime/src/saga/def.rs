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
    /// The parameter's name: the key of the saga's input, or the input or state field
    /// a step's parameter is injected from.
    pub name: &'static str,
    /// As written in the source.
    pub type_name: &'static str,
    /// The parameter's type, resolved (to compare a step's parameter with the saga's).
    pub type_id: fn() -> TypeInfo,
}

/// The saga state type of a context, with a check that it survives JSON.
#[derive(Clone, Copy)]
pub struct StateInfo {
    /// The state type `S` of `SagaContext<S>` (`()` when there is none).
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
    /// The registered name (the function's unless `#[saga(name = "…")]`), as logged and
    /// as `sagas list` shows it.
    pub name: &'static str,
    /// The annotated function's name, for messages.
    pub function: &'static str,
    /// The names of its steps, in the order they run (`#[saga(steps = […])]`).
    pub steps: &'static [&'static str],
    /// The step whose value the saga returns (`#[saga(result = "…")]`); `None`: the last.
    pub result_step: Option<&'static str>,
    /// Overrides the configured recovery policy (`#[saga(recovery = "forward")]`).
    pub recovery: Option<crate::config::RecoveryPolicy>,
    /// The function's parameters: the saga's inputs, in order.
    pub params: &'static [ParamDef],
    /// The state its steps share (`#[saga(state = …)]`).
    pub state: StateInfo,
    /// The result type (`T` of the function's `Result<T>`).
    pub output: fn() -> TypeInfo,
    /// How the schema serves each parameter (as `params`), and the result.
    pub input_types: &'static [fn() -> crate::describe::TypeRef],
    /// How the schema serves the result.
    pub output_type: fn() -> crate::describe::TypeRef,
    /// Whether a logged input still deserialises into the parameters.
    pub check_input: fn(&serde_json::Map<String, Value>) -> std::result::Result<(), String>,
    /// The function's doc comment: the description of its GraphQL mutation.
    pub doc: Option<&'static str>,
    /// Where the `#[saga]` is (for messages; never served).
    pub location: Location,
}

/// One `#[saga_step]`.
#[derive(Debug)]
pub struct StepDef {
    /// The step's name, as a saga's `steps = […]` lists it.
    pub name: &'static str,
    /// The annotated function's name, for messages.
    pub function: &'static str,
    /// The database its transaction is on (`database = "…"`); `None`:
    /// [`DEFAULT_DATABASE`].
    pub database: Option<&'static str>,
    /// Retries after a transient error (`retries = N`); `None`: `saga.step_retries`.
    pub retries: Option<u32>,
    /// How long one attempt may run, in milliseconds (`timeout = "…"`); `None`:
    /// `saga.step_timeout`.
    pub timeout_ms: Option<u64>,
    /// The parameters after the context, injected by name.
    pub params: &'static [ParamDef],
    /// The state of its `SagaContext<S>`, which must be its saga's.
    pub state: StateInfo,
    /// The type of the value it returns (`T` of `Result<T>`).
    pub output: fn() -> TypeInfo,
    /// Runs the function: what the executor calls for each attempt.
    pub invoke: InvokeFn,
    /// Where the `#[saga_step]` is.
    pub location: Location,
}

/// One `#[compensate]`.
#[derive(Debug)]
pub struct CompensateDef {
    /// The step it undoes (`#[compensate("step")]`); it runs on that step's database.
    pub step: &'static str,
    /// The annotated function's name, for messages.
    pub function: &'static str,
    /// Retries after any error before the saga is `failed` (`retries = N`); `None`:
    /// `saga.compensation_retries`.
    pub retries: Option<u32>,
    /// How long one attempt may run, in milliseconds (`timeout = "…"`); `None`:
    /// `saga.compensation_timeout`.
    pub timeout_ms: Option<u64>,
    /// The parameters after the context, injected by name.
    pub params: &'static [ParamDef],
    /// The state of its `SagaContext<S>`, which must be its saga's.
    pub state: StateInfo,
    /// Runs the function: what the executor calls for each attempt.
    pub invoke: InvokeFn,
    /// Where the `#[compensate]` is.
    pub location: Location,
}

/// The sagas, steps and compensations of a binary, by name, as the registry validated
/// them.
#[derive(Debug, Default, Clone)]
pub(crate) struct Catalog {
    pub(crate) sagas: BTreeMap<&'static str, &'static SagaDef>,
    pub(crate) steps: BTreeMap<&'static str, &'static StepDef>,
    pub(crate) compensations: BTreeMap<&'static str, &'static CompensateDef>,
}

impl Catalog {
    /// The saga called `name`.
    pub(crate) fn saga(&self, name: &str) -> Result<&'static SagaDef> {
        self.sagas.get(name).copied().ok_or_else(|| Error::NotFound(format!("no saga named `{name}` is registered")))
    }

    /// The step called `name`.
    pub(crate) fn step(&self, name: &str) -> Option<&'static StepDef> {
        self.steps.get(name).copied()
    }

    /// The compensation of step `step`, if it has one.
    pub(crate) fn compensation(&self, step: &str) -> Option<&'static CompensateDef> {
        self.compensations.get(step).copied()
    }

    /// The database step `step` runs on.
    pub(crate) fn database_of(&self, step: &str) -> &'static str {
        self.step(step).and_then(|s| s.database).unwrap_or(DEFAULT_DATABASE)
    }
}
