//! What the macros registered (collected at link time with `linkme`), and the check
//! that it all fits together before anything runs.

use std::any::TypeId;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use futures_util::future::BoxFuture;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::saga::StepInvocation;

/// Where a registration was declared.
#[derive(Debug, Clone, Copy)]
pub struct Location {
    pub file: &'static str,
    pub line: u32,
    pub column: u32,
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
    pub id: TypeId,
    pub name: &'static str,
}

impl TypeInfo {
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

/// One `#[subscribe]`.
#[derive(Debug)]
pub struct SubscriptionDef {
    pub subject: &'static str,
    pub function: &'static str,
    pub durable: Option<&'static str>,
    pub queue: Option<&'static str>,
    pub max_deliver: Option<u32>,
    pub concurrency: Option<u32>,
    pub invoke: crate::events::subscriptions::HandlerFn,
    pub location: Location,
}

#[linkme::distributed_slice]
pub static FRAISEQL_SUBSCRIPTIONS: [SubscriptionDef];

#[linkme::distributed_slice]
pub static FRAISEQL_QUERIES: [crate::query::QueryDef];

#[linkme::distributed_slice]
pub static FRAISEQL_SAGAS: [SagaDef];
#[linkme::distributed_slice]
pub static FRAISEQL_STEPS: [StepDef];
#[linkme::distributed_slice]
pub static FRAISEQL_COMPENSATIONS: [CompensateDef];

/// The database a step uses when it names none.
pub use crate::grammar::DEFAULT_DATABASE;

/// The validated registry: sagas with their steps resolved.
#[derive(Debug, Default)]
pub struct Registry {
    pub(crate) sagas: BTreeMap<&'static str, &'static SagaDef>,
    pub(crate) steps: BTreeMap<&'static str, &'static StepDef>,
    pub(crate) compensations: BTreeMap<&'static str, &'static CompensateDef>,
    pub(crate) subscriptions: Vec<&'static SubscriptionDef>,
    pub(crate) queries: Vec<&'static crate::query::QueryDef>,
}

impl Registry {
    /// Every registration linked into this binary.
    pub fn linked() -> (&'static [SagaDef], &'static [StepDef], &'static [CompensateDef]) {
        (&FRAISEQL_SAGAS, &FRAISEQL_STEPS, &FRAISEQL_COMPENSATIONS)
    }

    /// Names of the databases the registrations use.
    pub fn databases_used() -> BTreeSet<&'static str> {
        FRAISEQL_STEPS
            .iter()
            .map(|s| s.database.unwrap_or(DEFAULT_DATABASE))
            .chain(FRAISEQL_QUERIES.iter().filter_map(|q| q.view.map(|v| v.database)))
            .collect()
    }

    /// Check everything; `configured` is `None` when every used database will be created
    /// (the embedded default).
    pub fn build(configured: Option<&BTreeSet<String>>) -> Result<Registry> {
        Self::build_from(&FRAISEQL_SAGAS, &FRAISEQL_STEPS, &FRAISEQL_COMPENSATIONS, configured)
    }

    pub(crate) fn build_from(
        sagas: &'static [SagaDef],
        steps: &'static [StepDef],
        comps: &'static [CompensateDef],
        configured: Option<&BTreeSet<String>>,
    ) -> Result<Registry> {
        let mut p = Problems::default();
        let mut reg = Registry::default();
        for s in sagas {
            if let Some(prev) = reg.sagas.insert(s.name, s) {
                p.push(format!(
                    "saga `{}` is declared twice: by `{}` at {} and by `{}` at {}",
                    s.name, prev.function, prev.location, s.function, s.location
                ));
            }
        }
        for s in steps {
            if let Some(prev) = reg.steps.insert(s.name, s) {
                p.push(format!(
                    "step `{}` is declared twice: by `{}` at {} and by `{}` at {}",
                    s.name, prev.function, prev.location, s.function, s.location
                ));
            }
            let db = s.database.unwrap_or(DEFAULT_DATABASE);
            if let Some(conf) = configured {
                if !conf.contains(db) {
                    let list = if conf.is_empty() {
                        "none".to_string()
                    } else {
                        conf.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(", ")
                    };
                    p.push(format!(
                        "step `{}` (`{}` at {}) uses database `{db}`, which is not configured (configured: {list}); add [databases.{db}] to the config",
                        s.name, s.function, s.location
                    ));
                }
            }
        }
        for c in comps {
            if let Some(prev) = reg.compensations.insert(c.step, c) {
                p.push(format!(
                    "step `{}` has two compensations: `{}` at {} and `{}` at {}",
                    c.step, prev.function, prev.location, c.function, c.location
                ));
            }
            if !reg.steps.contains_key(c.step) && !steps.iter().any(|s| s.name == c.step) {
                p.push(format!(
                    "compensation `{}` at {} is for step `{}`, which no #[saga_step] declares",
                    c.function, c.location, c.step
                ));
            }
        }
        let mut used: BTreeSet<&str> = BTreeSet::new();
        for saga in reg.sagas.values() {
            let state_ty = (saga.state.type_info)();
            let state_json = match (saga.state.round_trip)() {
                Ok(v) => Some(v),
                Err(e) => {
                    p.push(format!(
                        "saga `{}` at {}: its state type `{}` cannot be (de)serialised: {e}",
                        saga.name,
                        saga.location,
                        state_ty.short_name()
                    ));
                    None
                }
            };
            let state_fields: BTreeSet<String> = match &state_json {
                Some(Value::Object(m)) => m.keys().cloned().collect(),
                _ => BTreeSet::new(),
            };
            for (i, name) in saga.steps.iter().enumerate() {
                used.insert(name);
                let Some(step) = reg.steps.get(name) else {
                    p.push(format!(
                        "saga `{}` at {} lists step `{name}`, which no #[saga_step] declares",
                        saga.name, saga.location
                    ));
                    continue;
                };
                let step_state = (step.state.type_info)();
                if step_state.id != state_ty.id {
                    p.push(format!(
                        "step `{name}` (`{}` at {}) takes `SagaContext<{}>` but saga `{}` has state `{}`",
                        step.function,
                        step.location,
                        step_state.short_name(),
                        saga.name,
                        state_ty.short_name()
                    ));
                }
                check_params(&mut p, saga, &state_fields, "step", name, step.function, &step.location, step.params);
                if let Some(c) = reg.compensations.get(name) {
                    let cs = (c.state.type_info)();
                    if cs.id != state_ty.id {
                        p.push(format!(
                            "compensation `{}` at {} takes `SagaContext<{}>` but saga `{}` has state `{}`",
                            c.function,
                            c.location,
                            cs.short_name(),
                            saga.name,
                            state_ty.short_name()
                        ));
                    }
                    check_params(&mut p, saga, &state_fields, "compensation", name, c.function, &c.location, c.params);
                }
                let is_result = match saga.result_step {
                    Some(r) => r == *name,
                    None => i + 1 == saga.steps.len(),
                };
                if is_result {
                    let (so, out) = ((step.output)(), (saga.output)());
                    if so.id != out.id {
                        p.push(format!(
                            "saga `{}` at {} returns `{}` but its result step `{name}` (`{}` at {}) returns `{}`{}",
                            saga.name,
                            saga.location,
                            out.short_name(),
                            step.function,
                            step.location,
                            so.short_name(),
                            if saga.result_step.is_none() {
                                " (the last step is the result unless `result = \"step\"` says otherwise)"
                            } else {
                                ""
                            }
                        ));
                    }
                }
            }
        }
        for s in reg.steps.values() {
            if !used.contains(s.name) {
                p.push(format!("step `{}` (`{}` at {}) is used by no saga", s.name, s.function, s.location));
            }
        }
        let mut durables: BTreeMap<&str, &SubscriptionDef> = BTreeMap::new();
        for sub in FRAISEQL_SUBSCRIPTIONS.iter() {
            if let Err(e) = crate::events::subject::check_subscription_subject(sub.subject) {
                p.push(format!("subscription `{}` at {}: {e}", sub.function, sub.location));
            }
            if let Some(d) = sub.durable {
                if let Some(prev) = durables.insert(d, sub) {
                    p.push(format!(
                        "durable consumer `{d}` is declared twice: by `{}` at {} and by `{}` at {}; each durable handler needs its own name",
                        prev.function, prev.location, sub.function, sub.location
                    ));
                }
            }
            reg.subscriptions.push(sub);
        }
        let mut queries: BTreeMap<&str, &crate::query::QueryDef> = BTreeMap::new();
        for q in FRAISEQL_QUERIES.iter() {
            if let Some(prev) = queries.insert(q.name, q) {
                p.push(format!(
                    "query `{}` is declared twice: by `{}` at {} and by `{}` at {}; give one another `name = \"…\"`",
                    q.name, prev.function, prev.location, q.function, q.location
                ));
            }
            if let (Some(v), Some(conf)) = (&q.view, configured) {
                if !conf.contains(v.database) {
                    let list = conf.iter().map(String::as_str).collect::<Vec<_>>().join(", ");
                    p.push(format!(
                        "query `{}` at {} reads database `{}`, which is not configured (configured: {list}); add [databases.{}] to the config",
                        q.function, q.location, v.database, v.database
                    ));
                }
            }
            reg.queries.push(q);
        }
        p.finish(&format!("{} sagas, {} steps, {} compensations", sagas.len(), steps.len(), comps.len()))?;
        Ok(reg)
    }

    pub fn saga(&self, name: &str) -> Result<&'static SagaDef> {
        self.sagas.get(name).copied().ok_or_else(|| Error::NotFound(format!("no saga named `{name}` is registered")))
    }

    pub fn step(&self, name: &str) -> Option<&'static StepDef> {
        self.steps.get(name).copied()
    }

    pub fn compensation(&self, step: &str) -> Option<&'static CompensateDef> {
        self.compensations.get(step).copied()
    }

    pub fn sagas(&self) -> impl Iterator<Item = &'static SagaDef> + '_ {
        self.sagas.values().copied()
    }

    /// "2 sagas, 6 steps, 4 compensations": shown at start so that a crate whose
    /// registrations were not linked in is noticed.
    pub fn summary(&self) -> String {
        format!(
            "{} sagas, {} steps, {} compensations, {} subscriptions",
            self.sagas.len(),
            self.steps.len(),
            self.compensations.len(),
            self.subscriptions.len()
        )
    }
}

#[allow(clippy::too_many_arguments)]
fn check_params(
    p: &mut Problems,
    saga: &SagaDef,
    state_fields: &BTreeSet<String>,
    kind: &str,
    step: &str,
    function: &str,
    location: &Location,
    params: &[ParamDef],
) {
    for param in params {
        if let Some(input) = saga.params.iter().find(|i| i.name == param.name) {
            let (a, b) = ((input.type_id)(), (param.type_id)());
            if a.id != b.id {
                p.push(format!(
                    "{kind} `{function}` at {location} (step `{step}` of saga `{}`): parameter `{}: {}` is injected from the saga input `{}: {}`, a different type",
                    saga.name, param.name, param.type_name, input.name, input.type_name
                ));
            }
        } else if !state_fields.contains(param.name) {
            let inputs = saga.params.iter().map(|i| format!("`{}`", i.name)).collect::<Vec<_>>().join(", ");
            let fields = state_fields.iter().map(|f| format!("`{f}`")).collect::<Vec<_>>().join(", ");
            p.push(format!(
                "{kind} `{function}` at {location} (step `{step}` of saga `{}`): parameter `{}: {}` cannot be injected: it is neither a saga input ({}) nor a field of the state `{}` ({})",
                saga.name,
                param.name,
                param.type_name,
                if inputs.is_empty() { "none".into() } else { inputs },
                (saga.state.type_info)().short_name(),
                if fields.is_empty() { "none".into() } else { fields },
            ));
        }
    }
}

#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    fn push(&mut self, s: String) {
        self.0.push(s);
    }
    fn finish(self, linked: &str) -> Result<()> {
        if self.0.is_empty() {
            return Ok(());
        }
        let mut out = format!(
            "fraiseql: {} problem(s) in the registered sagas ({linked} linked into this binary):\n",
            self.0.len()
        );
        for prob in &self.0 {
            out.push_str("  - ");
            out.push_str(prob);
            out.push('\n');
        }
        Err(Error::Registry(out))
    }
}
