//! What a type must be to take each place in an annotated function: a saga's inputs,
//! state and result, a step's injected parameters and result, an event's data and a
//! handler's reply, a query's arguments and result.
//!
//! Each role is a trait implemented for every type that qualifies (you never implement
//! one yourself: derive serde's traits instead). The macros' generated code asks for
//! these traits, never for serde's directly, so a type that does not qualify is reported
//! once, on your type, by a message that names the role and says what to derive; the
//! blanket implementations are `#[diagnostic::do_not_recommend]` so that the compiler
//! reports the role rather than the serde bound underneath it.
//!
//! ```text
//! error[E0277]: `OrderSaga` cannot be a saga's state
//!    |
//! 10 | async fn create_order(ctx: &mut SagaContext<OrderSaga>, …) -> fraiseql::Result<()> {
//!    |                                             ^^^^^^^^^ it is kept in the saga log as JSON
//!    = note: derive `Default`, `serde::Serialize` and `serde::Deserialize` on it
//! ```
//!
//! The trait methods are not public API: they are what generated code calls.

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::events::subscriptions::HandlerFailure;
use crate::events::Event;
use crate::query::QueryDef;
use crate::registry::{StateInfo, TypeInfo};
use crate::saga::{SagaContext, StepInvocation};

pub use crate::query::value::{FilterArg, OrderArg, PageArg, QueryValue};

/// A saga's state (`state = S`, `SagaContext<S>`): kept in the saga log as JSON between
/// steps, and `Default` before the first step.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a saga's state",
    label = "it is kept in the saga log as JSON",
    note = "derive `Default`, `serde::Serialize` and `serde::Deserialize` on it (and keep it `Send + 'static`)"
)]
pub trait SagaState: Sized {
    #[doc(hidden)]
    const INFO: StateInfo;
    #[doc(hidden)]
    fn __enter(invocation: &mut StepInvocation) -> Result<SagaContext<Self>>;
    #[doc(hidden)]
    fn __exit(ctx: SagaContext<Self>, invocation: &mut StepInvocation, ok: bool) -> Result<()>;
}

// Each role states its requirements on its one implementation, not as supertraits: a
// supertrait is checked again (and reported on its own) wherever a method is called.
#[diagnostic::do_not_recommend]
impl<T: Default + Serialize + DeserializeOwned + Send + 'static> SagaState for T {
    const INFO: StateInfo = StateInfo {
        type_info: TypeInfo::of::<T>,
        round_trip: crate::saga::round_trip::<T>,
        check: crate::saga::check_state::<T>,
    };

    fn __enter(invocation: &mut StepInvocation) -> Result<SagaContext<T>> {
        SagaContext::enter(invocation)
    }

    fn __exit(ctx: SagaContext<T>, invocation: &mut StepInvocation, ok: bool) -> Result<()> {
        ctx.exit(invocation, ok)
    }
}

/// A parameter of a `#[saga]` function: kept in the saga log as JSON and read back by
/// the steps it is injected into.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a saga's input",
    label = "saga inputs are kept in the saga log as JSON",
    note = "derive `serde::Serialize` and `serde::Deserialize` on it"
)]
pub trait SagaInput {
    #[doc(hidden)]
    fn __put(&self, input: &mut Map<String, Value>, name: &'static str) -> Result<()>;
    #[doc(hidden)]
    fn __check(input: &Map<String, Value>, name: &str) -> std::result::Result<(), String>;
}

#[diagnostic::do_not_recommend]
impl<T: Serialize + DeserializeOwned> SagaInput for T {
    fn __put(&self, input: &mut Map<String, Value>, name: &'static str) -> Result<()> {
        let v = serde_json::to_value(self).map_err(|e| Error::json(format!("saga input `{name}`"), e))?;
        input.insert(name.to_string(), v);
        Ok(())
    }

    fn __check(input: &Map<String, Value>, name: &str) -> std::result::Result<(), String> {
        let v = input.get(name).ok_or_else(|| format!("input `{name}` is missing"))?;
        T::deserialize(v).map(|_| ()).map_err(|e| format!("input `{name}`: {e}"))
    }
}

/// What a `#[saga]` function returns: its result step's value, read back from the log.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a saga's result",
    label = "it is read back from the saga log's JSON",
    note = "derive `serde::Deserialize` on it"
)]
pub trait SagaOutput: Sized {
    #[doc(hidden)]
    fn __from_saga(saga: &str, value: Value) -> Result<Self>;
}

#[diagnostic::do_not_recommend]
impl<T: DeserializeOwned> SagaOutput for T {
    fn __from_saga(saga: &str, value: Value) -> Result<T> {
        T::deserialize(value).map_err(|e| Error::json(format!("result of saga `{saga}`"), e))
    }
}

/// A parameter of a step or compensation after its context: injected by name from the
/// saga's inputs, else from its state.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be injected into a step",
    label = "it is read from the saga's inputs or state, as JSON",
    note = "derive `serde::Deserialize` on it"
)]
pub trait StepParam: Sized {
    #[doc(hidden)]
    fn __inject(invocation: &StepInvocation, name: &str) -> Result<Self>;
}

#[diagnostic::do_not_recommend]
impl<T: DeserializeOwned> StepParam for T {
    fn __inject(invocation: &StepInvocation, name: &str) -> Result<T> {
        invocation.arg(name)
    }
}

/// What a step returns: kept in the saga log as JSON (the result step's value is the
/// saga's result).
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a step's result",
    label = "it is kept in the saga log as JSON",
    note = "derive `serde::Serialize` on it"
)]
pub trait StepResult: Sized {
    #[doc(hidden)]
    fn __output(result: Result<Self>) -> Result<Value>;
}

#[diagnostic::do_not_recommend]
impl<T: Serialize> StepResult for T {
    fn __output(result: Result<T>) -> Result<Value> {
        serde_json::to_value(result?).map_err(|e| Error::json("step result", e))
    }
}

/// The data of `Event<T>` in a `#[subscribe]` handler: decoded from the event's JSON
/// payload (a payload that does not decode is a dead letter).
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be an event's data",
    label = "it is decoded from the event's JSON payload",
    note = "derive `serde::Deserialize` on it, or take `Event` (its data as JSON)"
)]
pub trait EventData: Sized {
    #[doc(hidden)]
    fn __decode(event: Event) -> std::result::Result<Event<Self>, HandlerFailure>;
}

#[diagnostic::do_not_recommend]
impl<T: DeserializeOwned + 'static> EventData for T {
    fn __decode(event: Event) -> std::result::Result<Event<T>, HandlerFailure> {
        crate::events::subscriptions::decode_event(event)
    }
}

/// What a `#[subscribe]` handler returns: the reply to a request, sent as JSON.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a handler's reply",
    label = "a reply is sent as JSON",
    note = "derive `serde::Serialize` on it, or return `()`"
)]
pub trait EventReply: Sized {
    #[doc(hidden)]
    fn __reply(result: Result<Self>) -> std::result::Result<Option<Value>, HandlerFailure>;
}

#[diagnostic::do_not_recommend]
impl<T: Serialize> EventReply for T {
    fn __reply(result: Result<T>) -> std::result::Result<Option<Value>, HandlerFailure> {
        crate::events::subscriptions::handler_output(result)
    }
}

/// The row type `T` of a view query (`Result<T>`, `Result<Option<T>>`,
/// `Result<Vec<T>>`): each row's JSON document is read into it, and served as JSON.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be read from a view",
    label = "each row's JSON `data` is read into it, then served as JSON",
    note = "derive `serde::Deserialize` and `serde::Serialize` on it"
)]
pub trait ViewRow: Sized {
    #[doc(hidden)]
    fn __decode(def: &QueryDef, rows: Vec<String>) -> Result<Vec<Self>>;
    #[doc(hidden)]
    fn __one(value: &Self) -> Result<Value>;
    #[doc(hidden)]
    fn __optional(value: &Option<Self>) -> Result<Value>;
    #[doc(hidden)]
    fn __many(value: &[Self]) -> Result<Value>;
}

#[diagnostic::do_not_recommend]
impl<T: Serialize + DeserializeOwned> ViewRow for T {
    fn __decode(def: &QueryDef, rows: Vec<String>) -> Result<Vec<T>> {
        crate::query::decode_rows(def, rows)
    }

    fn __one(value: &T) -> Result<Value> {
        query_json(value)
    }

    fn __optional(value: &Option<T>) -> Result<Value> {
        query_json(value)
    }

    fn __many(value: &[T]) -> Result<Value> {
        query_json(value)
    }
}

/// The result type `T` of a `#[query]` with a body (a custom resolver), served as JSON.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a query's result",
    label = "it is served as JSON",
    note = "derive `serde::Serialize` on it"
)]
pub trait QueryResult: Sized {
    #[doc(hidden)]
    fn __one(value: &Self) -> Result<Value>;
    #[doc(hidden)]
    fn __optional(value: &Option<Self>) -> Result<Value>;
    #[doc(hidden)]
    fn __many(value: &[Self]) -> Result<Value>;
}

#[diagnostic::do_not_recommend]
impl<T: Serialize> QueryResult for T {
    fn __one(value: &T) -> Result<Value> {
        query_json(value)
    }

    fn __optional(value: &Option<T>) -> Result<Value> {
        query_json(value)
    }

    fn __many(value: &[T]) -> Result<Value> {
        query_json(value)
    }
}

fn query_json<T: Serialize + ?Sized>(value: &T) -> Result<Value> {
    serde_json::to_value(value).map_err(|e| Error::json("query result", e))
}
