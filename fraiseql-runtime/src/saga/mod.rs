//! Sagas: the context a step sees, the executor, the durable log, recovery and inspection.
//!
//! `SagaEngine` is the component the runtime wires: the catalog of sagas, the named
//! databases, the log database, this instance's identity and the step outbox — all a
//! saga needs, and nothing else of the runtime.

pub(crate) mod def;
pub(crate) mod engine;
pub(crate) mod executor;
pub(crate) mod faults;
pub mod inspect;
pub(crate) mod log;

pub use crate::status::{AttemptStatus, BarrierOutcome, Phase, SagaStatus, StepStatus};
pub(crate) use engine::SagaEngine;

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::db::{Databases, Tx};
use crate::error::{Error, Result};
use crate::events::outbox::{OutboxItem, StepOutbox};

/// Not public API. Used by generated code: one call of a step or compensation.
#[doc(hidden)]
pub struct StepInvocation {
    pub(crate) saga_id: Uuid,
    pub(crate) saga: &'static str,
    pub(crate) step: &'static str,
    pub(crate) index: usize,
    pub(crate) phase: Phase,
    pub(crate) attempt: u32,
    pub(crate) database: &'static str,
    pub(crate) input: Arc<Map<String, Value>>,
    pub(crate) state: Value,
    pub(crate) tx: Option<Tx>,
    pub(crate) databases: Databases,
    /// Events written to the outbox by this invocation, relayed once it commits.
    pub(crate) published: Vec<OutboxItem>,
    pub(crate) outbox: StepOutbox,
}

impl StepInvocation {
    /// A parameter injected by name: from the saga's inputs, else from its state.
    pub fn arg<T: DeserializeOwned>(&self, name: &str) -> Result<T> {
        let (value, from) = match self.input.get(name) {
            Some(v) => (v, "saga input"),
            None => match self.state.get(name) {
                Some(v) => (v, "saga state field"),
                None => {
                    return Err(Error::msg(format!(
                        "{} `{}` of saga `{}`: parameter `{name}` is neither a saga input nor a state field",
                        self.phase.as_str(),
                        self.step,
                        self.saga
                    )))
                }
            },
        };
        T::deserialize(value).map_err(|e| {
            Error::json(
                format!(
                    "{} `{}` of saga `{}`: parameter `{name}` (from the {from})",
                    self.phase.as_str(),
                    self.step,
                    self.saga
                ),
                e,
            )
        })
    }
}

/// What a step or compensation gets first: its transaction, the saga's typed state
/// (also reachable directly, `ctx.order_id`, through `Deref`), and ids.
pub struct SagaContext<S = ()> {
    /// The saga's state: changes made by a step are kept when the step commits.
    pub state: S,
    tx: Tx,
    saga_id: Uuid,
    saga: &'static str,
    step: &'static str,
    index: usize,
    phase: Phase,
    attempt: u32,
    database: &'static str,
    databases: Databases,
    published: Vec<OutboxItem>,
    outbox: StepOutbox,
}

impl<S> SagaContext<S> {
    /// Publish an event as part of this step: it is written to the outbox in the step's
    /// own transaction and relayed after the commit, so it is published if and only if
    /// the step commits (and at most once, thanks to its id). Returns the event's id.
    pub async fn publish<T: Serialize>(&mut self, subject: &str, data: T) -> Result<String> {
        let item =
            self.outbox.write(&mut self.tx, self.database, subject, data, Some(self.saga_id.to_string())).await?;
        let id = item.id.clone();
        self.published.push(item);
        Ok(id)
    }

    crate::db::transaction_methods!("step");

    /// The id of the saga this step belongs to, as `sagas show` takes it.
    pub fn saga_id(&self) -> Uuid {
        self.saga_id
    }

    /// The saga's name (its function's, unless `#[saga(name = "…")]` says otherwise).
    pub fn saga_name(&self) -> &'static str {
        self.saga
    }

    /// The step this context runs (or compensates).
    pub fn step(&self) -> &'static str {
        self.step
    }

    /// The step's position in the saga (0-based).
    pub fn step_index(&self) -> usize {
        self.index
    }

    /// Whether this runs a compensation (undoing the step) rather than the step.
    pub fn is_compensation(&self) -> bool {
        self.phase == Phase::Compensation
    }

    /// 1 on the first try, 2 on the first retry, …
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The name of the database this step's transaction is on.
    pub fn database(&self) -> &'static str {
        self.database
    }

    /// Other named databases, for reads outside this step's transaction.
    pub fn databases(&self) -> &Databases {
        &self.databases
    }

    /// A key that is the same on every attempt of this step (and differs for its
    /// compensation): pass it to outside services so a retried call is not done twice.
    pub fn idempotency_key(&self) -> String {
        format!("{}:{}:{}", self.saga_id, self.step, self.phase.as_str())
    }
}

impl<S> Deref for SagaContext<S> {
    type Target = S;
    fn deref(&self) -> &S {
        &self.state
    }
}

impl<S> DerefMut for SagaContext<S> {
    fn deref_mut(&mut self) -> &mut S {
        &mut self.state
    }
}

impl<S> fmt::Debug for SagaContext<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SagaContext")
            .field("saga_id", &self.saga_id)
            .field("saga", &self.saga)
            .field("step", &self.step)
            .finish()
    }
}

/// Not public API. Used by generated code: the state type of a context type
/// (`SagaContext<S>` → `S`). It asks nothing of `S`, so that a state that cannot be stored
/// is reported once, by [`crate::roles::SagaState`], on the user's type.
#[doc(hidden)]
pub trait ContextType {
    type State;
}

impl<S> ContextType for SagaContext<S> {
    type State = S;
}

impl<S: Default + Serialize + DeserializeOwned + 'static> SagaContext<S> {
    /// The context a step or compensation runs in, from its invocation.
    pub(crate) fn enter(inv: &mut StepInvocation) -> Result<Self> {
        let state: S = if inv.state.is_null() && std::any::TypeId::of::<S>() != std::any::TypeId::of::<()>() {
            S::default()
        } else {
            S::deserialize(&inv.state)
                .map_err(|e| Error::json(format!("saga `{}`: state as logged no longer deserialises", inv.saga), e))?
        };
        let tx = inv.tx.take().ok_or_else(|| Error::internal("a step invocation without a transaction"))?;
        Ok(SagaContext {
            state,
            tx,
            saga_id: inv.saga_id,
            saga: inv.saga,
            step: inv.step,
            index: inv.index,
            phase: inv.phase,
            attempt: inv.attempt,
            database: inv.database,
            databases: inv.databases.clone(),
            published: Vec::new(),
            outbox: inv.outbox.clone(),
        })
    }

    /// Hand the transaction (and, if the function succeeded, the state) back.
    pub(crate) fn exit(self, inv: &mut StepInvocation, ok: bool) -> Result<()> {
        inv.tx = Some(self.tx);
        inv.published = self.published;
        if ok {
            inv.state =
                serde_json::to_value(&self.state).map_err(|e| Error::json(format!("saga `{}`: state", inv.saga), e))?;
        }
        Ok(())
    }
}

pub(crate) fn round_trip<S: Default + Serialize + DeserializeOwned>() -> std::result::Result<Value, String> {
    let v = serde_json::to_value(S::default()).map_err(|e| format!("serialising the default value: {e}"))?;
    S::deserialize(&v).map_err(|e| format!("reading back its serialised default value {v}: {e}"))?;
    Ok(v)
}

pub(crate) fn check_state<S: DeserializeOwned>(text: &str) -> std::result::Result<(), String> {
    serde_json::from_str::<S>(text).map(|_| ()).map_err(|e| e.to_string())
}
