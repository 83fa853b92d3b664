//! The FraiseQL runtime: registry, configuration, named databases and durable sagas.
//! Use it through the `fraiseql` crate.

pub mod cli;
pub mod config;
pub mod db;
pub mod describe;
pub mod error;
pub mod events;
mod fault;
#[cfg(feature = "graphql")]
pub mod graphql;
pub mod migrate;
pub mod query;
pub mod registry;
mod runtime;
pub mod saga;

pub use config::{
    Config, DatabaseConfig, EventsConfig, GraphqlConfig, RecoveryPolicy, SagaConfig, StreamRetention, StreamStorage,
};
pub use db::{Args, Backend, Bind, Databases, Db, Row, Tx};
pub use describe::Describe;
pub use error::{Error, Result};
pub use events::subscriptions::{DeadEvent, EventContext, RetriedDeadEvents};
pub use events::{DeadLetter, Event, EventStream, Outbox};
pub use query::value::{Id, QueryValue};
pub use query::{QueryDef, Returns};
pub use runtime::{with_idempotency_key, Builder, Runtime};
pub use saga::inspect::{ListFilter, SagaDetail, SagaSummary, Sagas, StepRecord};
pub use saga::{SagaContext, SagaStatus};

/// Not public API. Used by generated code.
#[doc(hidden)]
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

#[doc(hidden)]
pub mod __private {
    pub use futures_util::future::BoxFuture;
    pub use linkme;
    pub use serde_json::{Map, Value};

    pub use crate::describe::{FieldDesc, ObjectDesc, Probe, TypeRef, ViaDescribe, ViaJson};
    pub use crate::events::subscriptions::{decode_event, handler_output, HandlerFailure};
    pub use crate::query::value::{FilterArg, OrderArg, PageArg, QueryValue, ScalarKind};
    pub use crate::query::{
        arg as query_arg, decode_rows, run_view, ArgRole, QueryArgDef, QueryDef, Returns, ViewCall, ViewSource,
    };
    pub use crate::registry::FRAISEQL_QUERIES;

    /// A query's result as JSON.
    pub fn query_output<T: serde::Serialize>(value: &T) -> crate::Result<Value> {
        serde_json::to_value(value).map_err(|e| crate::Error::json("query result", e))
    }
    pub use crate::registry::{
        CompensateDef, Location, ParamDef, SagaDef, StateInfo, StepDef, SubscriptionDef, TypeInfo,
        FRAISEQL_COMPENSATIONS, FRAISEQL_SAGAS, FRAISEQL_STEPS, FRAISEQL_SUBSCRIPTIONS,
    };
    pub use crate::saga::{ContextState, StepInvocation};

    use crate::error::{Error, Result};
    use serde::de::DeserializeOwned;
    use serde::Serialize;

    /// A saga's inputs, by parameter name.
    pub type Input = Map<String, Value>;

    pub fn input_arg<T: Serialize + ?Sized>(input: &mut Input, name: &'static str, value: &T) -> Result<()> {
        let v = serde_json::to_value(value).map_err(|e| Error::json(format!("saga input `{name}`"), e))?;
        input.insert(name.to_string(), v);
        Ok(())
    }

    pub fn check_input_field<T: DeserializeOwned>(input: &Input, name: &str) -> std::result::Result<(), String> {
        let v = input.get(name).ok_or_else(|| format!("input `{name}` is missing"))?;
        T::deserialize(v).map(|_| ()).map_err(|e| format!("input `{name}`: {e}"))
    }

    pub fn step_output<T: Serialize>(result: Result<T>) -> Result<Value> {
        let v = result?;
        serde_json::to_value(&v).map_err(|e| Error::json("step result", e))
    }

    /// The body of every `#[saga]` function.
    pub async fn run_saga<T: DeserializeOwned>(name: &'static str, input: Input) -> Result<T> {
        let rt = crate::Runtime::current()?;
        let key = crate::runtime::current_idempotency_key();
        let def = rt.inner.registry.saga(name)?;
        let v = crate::saga::executor::run_new(rt.inner.clone(), def, input, key).await?;
        T::deserialize(v).map_err(|e| Error::json(format!("result of saga `{name}`"), e))
    }
}
