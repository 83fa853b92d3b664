//! What `#[subscribe]` registers.

use futures_util::future::BoxFuture;
use serde_json::Value;

use super::envelope::Event;
use super::inbox::EventTx;
use super::subscriptions::{EventContext, HandlerFailure};
use crate::meta::Location;

/// Type-erased entry point of a handler: the event, its context, and either the reply
/// (a handler's return value, for requests) or why it failed.
pub type HandlerFn =
    for<'a> fn(Event, &'a EventContext) -> BoxFuture<'a, std::result::Result<Option<Value>, HandlerFailure>>;

/// Type-erased entry point of a handler that runs in a transaction (`database = "…"`).
pub type TxHandlerFn =
    for<'a> fn(Event, &'a mut EventTx) -> BoxFuture<'a, std::result::Result<Option<Value>, HandlerFailure>>;

/// How a handler runs.
#[derive(Debug, Clone, Copy)]
pub enum Handler {
    /// With an [`EventContext`]: at-least-once for a durable consumer.
    Plain(HandlerFn),
    /// In a transaction on `database`, with the inbox: exactly-once effects.
    InTransaction {
        /// The named database.
        database: &'static str,
        /// The handler.
        invoke: TxHandlerFn,
    },
}

/// One `#[subscribe]`.
#[derive(Debug)]
pub struct SubscriptionDef {
    /// The subject pattern (wildcards `*` and `>`).
    pub subject: &'static str,
    /// The handler function's name.
    pub function: &'static str,
    /// The durable consumer's name: at-least-once delivery shared by every instance.
    pub durable: Option<&'static str>,
    /// A queue group (core subscriptions only): each event to one member.
    pub queue: Option<&'static str>,
    /// Deliveries before an event is dead (`events.max_deliver` when `None`).
    pub max_deliver: Option<u32>,
    /// Handlers running at once (`events.handler_concurrency` when `None`).
    pub concurrency: Option<u32>,
    /// The handler.
    pub handler: Handler,
    /// Where it was declared.
    pub location: Location,
}

impl SubscriptionDef {
    /// How dead events and retries name this handler: its durable name, or
    /// `core:<function>`.
    /// The database of a handler that runs in a transaction.
    pub(crate) fn transaction_database(&self) -> Option<&'static str> {
        match self.handler {
            Handler::InTransaction { database, .. } => Some(database),
            Handler::Plain(_) => None,
        }
    }

    pub(crate) fn consumer_label(&self) -> String {
        match self.durable {
            Some(d) => d.to_string(),
            None => format!("core:{}", self.function),
        }
    }
}
