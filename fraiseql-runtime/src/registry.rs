//! What the macros registered (collected at link time with `linkme`), and the check
//! that it all fits together before anything runs.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::error::{Error, Result};
pub use crate::events::def::{Handler, HandlerFn, SubscriptionDef, TxHandlerFn};
pub use crate::meta::{Location, TypeInfo, DEFAULT_DATABASE};
pub use crate::query::QueryDef;
pub(crate) use crate::saga::def::Catalog;
pub use crate::saga::def::{CompensateDef, InvokeFn, ParamDef, SagaDef, StateInfo, StepDef};

// The slices are collected by the linker; their names must be unique in the binary,
// hence the prefix.

/// Every `#[subscribe]` linked into the binary. Filled by the macros.
#[linkme::distributed_slice]
#[doc(hidden)]
pub static FRAISEQL_SUBSCRIPTIONS: [SubscriptionDef];

/// Every `#[query]` linked into the binary. Filled by the macros.
#[linkme::distributed_slice]
#[doc(hidden)]
pub static FRAISEQL_QUERIES: [QueryDef];

/// Every `#[saga]` linked into the binary. Filled by the macros.
#[linkme::distributed_slice]
#[doc(hidden)]
pub static FRAISEQL_SAGAS: [SagaDef];
/// Every `#[saga_step]` linked into the binary. Filled by the macros.
#[linkme::distributed_slice]
#[doc(hidden)]
pub static FRAISEQL_STEPS: [StepDef];
/// Every `#[compensate]` linked into the binary. Filled by the macros.
#[linkme::distributed_slice]
#[doc(hidden)]
pub static FRAISEQL_COMPENSATIONS: [CompensateDef];

/// The validated registry: sagas with their steps resolved.
#[derive(Debug, Default)]
pub struct Registry {
    pub(crate) catalog: Catalog,
    pub(crate) subscriptions: Vec<&'static SubscriptionDef>,
    pub(crate) queries: Vec<&'static QueryDef>,
}

impl Registry {
    /// Every registration linked into this binary.
    pub fn linked() -> (&'static [SagaDef], &'static [StepDef], &'static [CompensateDef]) {
        (&FRAISEQL_SAGAS, &FRAISEQL_STEPS, &FRAISEQL_COMPENSATIONS)
    }

    /// Names of the databases the registrations use.
    pub(crate) fn databases_used() -> BTreeSet<&'static str> {
        FRAISEQL_STEPS
            .iter()
            .map(|s| s.database.unwrap_or(DEFAULT_DATABASE))
            .chain(FRAISEQL_QUERIES.iter().filter_map(|q| q.view.map(|v| v.database)))
            .chain(FRAISEQL_SUBSCRIPTIONS.iter().filter_map(|s| s.transaction_database()))
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
            if let Some(prev) = reg.catalog.sagas.insert(s.name, s) {
                p.push(format!(
                    "saga `{}` is declared twice: by `{}` at {} and by `{}` at {}",
                    s.name, prev.function, prev.location, s.function, s.location
                ));
            }
        }
        for s in steps {
            if let Some(prev) = reg.catalog.steps.insert(s.name, s) {
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
            if let Some(prev) = reg.catalog.compensations.insert(c.step, c) {
                p.push(format!(
                    "step `{}` has two compensations: `{}` at {} and `{}` at {}",
                    c.step, prev.function, prev.location, c.function, c.location
                ));
            }
            if !reg.catalog.steps.contains_key(c.step) && !steps.iter().any(|s| s.name == c.step) {
                p.push(format!(
                    "compensation `{}` at {} is for step `{}`, which no #[saga_step] declares",
                    c.function, c.location, c.step
                ));
            }
        }
        let mut used: BTreeSet<&str> = BTreeSet::new();
        for saga in reg.catalog.sagas.values() {
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
                let Some(step) = reg.catalog.steps.get(name) else {
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
                if let Some(c) = reg.catalog.compensations.get(name) {
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
        for s in reg.catalog.steps.values() {
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
            if let (Some(db), Some(conf)) = (sub.transaction_database(), configured) {
                if !conf.contains(db) {
                    let list = conf.iter().map(String::as_str).collect::<Vec<_>>().join(", ");
                    p.push(format!(
                        "handler `{}` at {} runs in a transaction on database `{db}`, which is not configured (configured: {list}); add [databases.{db}] to the config",
                        sub.function, sub.location
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

    /// The saga called `name`.
    pub fn saga(&self, name: &str) -> Result<&'static SagaDef> {
        self.catalog.saga(name)
    }

    /// The step called `name`.
    pub fn step(&self, name: &str) -> Option<&'static StepDef> {
        self.catalog.step(name)
    }

    /// The compensation of step `step`, if it has one.
    pub fn compensation(&self, step: &str) -> Option<&'static CompensateDef> {
        self.catalog.compensation(step)
    }

    /// Every registered saga.
    pub fn sagas(&self) -> impl Iterator<Item = &'static SagaDef> + '_ {
        self.catalog.sagas.values().copied()
    }

    /// Every registered `#[subscribe]` handler.
    pub fn subscriptions(&self) -> &[&'static SubscriptionDef] {
        &self.subscriptions
    }

    /// Every registered `#[query]`.
    pub fn queries(&self) -> &[&'static QueryDef] {
        &self.queries
    }

    /// "2 sagas, 6 steps, 4 compensations": shown at start so that a crate whose
    /// registrations were not linked in is noticed.
    pub fn summary(&self) -> String {
        format!(
            "{} sagas, {} steps, {} compensations, {} subscriptions",
            self.catalog.sagas.len(),
            self.catalog.steps.len(),
            self.catalog.compensations.len(),
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
