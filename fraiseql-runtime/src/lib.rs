//! The FraiseQL runtime: registry, configuration, named databases and durable sagas.
//! Use it through the `fraiseql` crate.

#![warn(missing_docs)]

pub mod cli;
mod clock;
pub mod config;
#[cfg(feature = "console")]
pub mod console;
pub mod db;
pub mod describe;
pub mod error;
pub mod events;
mod fault;
// Also compiled by the macros crate (`#[path]`): its items are `pub` for that crate's
// sake, and some rules are only checked there, at compile time. This crate re-exports
// what users need (`RecoveryPolicy`, `DEFAULT_DATABASE`).
#[allow(unreachable_pub, dead_code)]
mod grammar;
#[cfg(feature = "graphql")]
pub mod graphql;
mod lifecycle;
pub mod meta;
pub mod migrate;
pub mod otel;
#[cfg(feature = "prometheus")]
mod prometheus;
pub mod query;
pub mod registry;
pub mod roles;
mod runtime;
pub mod saga;
mod sql;
pub mod status;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;

pub use config::{
    Config, DatabaseConfig, EventsConfig, GraphqlConfig, RecoveryPolicy, SagaConfig, StreamRetention, StreamStorage,
};
pub use db::{Args, Backend, Bind, Databases, Db, Row, Tx};
pub use describe::Describe;
pub use error::{Error, Result};
pub use events::subscriptions::{ConsumerInfo, DeadEvent, EventContext, RetriedDeadEvents};
pub use events::{DeadLetter, Event, EventStream, EventTx, Outbox, OutboxBacklog};
pub use query::value::{Id, QueryValue};
pub use query::{QueryDef, Returns};
pub use runtime::{with_idempotency_key, Builder, Runtime};
pub use saga::inspect::{ListFilter, SagaCounts, SagaDetail, SagaSummary, Sagas, StepRecord};
pub use saga::SagaContext;
pub use status::{AttemptStatus, BarrierOutcome, Phase, SagaStatus, StepStatus};

/// Publish an event now on the current runtime (see [`Runtime::publish`]).
pub async fn publish<T: serde::Serialize>(subject: &str, data: T) -> Result<String> {
    Runtime::current()?.publish(subject, data).await
}

/// Send a request to the handler subscribed to `subject` and wait for its reply.
pub async fn request<T: serde::Serialize, R: serde::de::DeserializeOwned>(
    subject: &str,
    data: T,
    timeout: std::time::Duration,
) -> Result<R> {
    Runtime::current()?.request(subject, data, timeout).await
}

/// Not public API. Used by generated code.
#[doc(hidden)]
pub mod __private {
    pub use futures_util::future::BoxFuture;
    pub use linkme;
    pub use serde_json::{Map, Value};

    pub use crate::config::RecoveryPolicy;
    pub use crate::describe::{FieldDesc, ObjectDesc, Probe, TypeRef, ViaDescribe, ViaJson};
    pub use crate::events::subscriptions::HandlerFailure;
    pub use crate::query::value::{QueryValue, ScalarKind};
    pub use crate::query::{ArgRole, QueryArgDef, QueryDef, Returns, ViewCall, ViewSource};
    pub use crate::registry::FRAISEQL_QUERIES;

    /// The body of every view-backed `#[query]`: its rows' JSON documents, as text.
    pub async fn run_view(def: &'static QueryDef, call: ViewCall) -> crate::Result<Vec<String>> {
        crate::query::run_view(crate::Runtime::current()?.queries(), def, call).await
    }
    pub use crate::registry::{
        CompensateDef, Handler, Location, ParamDef, SagaDef, StateInfo, StepDef, SubscriptionDef, TypeInfo,
        FRAISEQL_COMPENSATIONS, FRAISEQL_SAGAS, FRAISEQL_STEPS, FRAISEQL_SUBSCRIPTIONS,
    };
    pub use crate::roles::{
        EventData, EventReply, FilterArg, OrderArg, PageArg, QueryResult, SagaInput, SagaOutput, SagaState, StepParam,
        StepResult, ViewRow,
    };
    pub use crate::saga::{ContextType, StepInvocation};

    use crate::error::{Error, Result};
    use serde::de::DeserializeOwned;

    /// A saga's inputs, by parameter name.
    pub type Input = Map<String, Value>;

    /// The body of every `#[saga]` function (which decodes the result with
    /// [`SagaOutput`], so that a bad result type is reported as that role).
    pub async fn run_saga<T: DeserializeOwned>(name: &'static str, input: Input) -> Result<T> {
        let rt = crate::Runtime::current()?;
        let v = rt.run_saga(name, input, crate::runtime::current_idempotency_key()).await?;
        T::deserialize(v).map_err(|e| Error::json(format!("result of saga `{name}`"), e))
    }
}
