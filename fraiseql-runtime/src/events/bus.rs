//! The seam between FraiseQL's event semantics and a message system.
//!
//! A bus moves bytes: it stores and publishes, delivers live messages (optionally to one
//! member of a queue group), delivers a durable consumer's events with a way to settle
//! each (ack, nak with a delay, terminate), replays history from a time, and carries
//! requests to a replier. Everything FraiseQL decides about events — subject rules,
//! the outbox, what a handler failure means (retry with backoff, dead event), rebuilds —
//! is written once above this trait (`outbox.rs`, `subscriptions.rs`, `history.rs`).
//!
//! Two implementations: NATS JetStream (`nats.rs`) and the embedded bus (`embedded.rs`,
//! a table in the log database). A new bus is one new file implementing [`EventBus`]
//! and one arm in `Events::connect` (`events/mod.rs`).

use std::time::Duration;

use async_trait::async_trait;
use futures_util::stream::BoxStream;
use serde_json::Value;

use super::envelope::Event;
use super::history::EventStream;
use crate::error::Result;

/// An encoded event on its way out.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Outgoing<'a> {
    pub subject: &'a str,
    pub id: &'a str,
    pub event_type: &'a str,
    /// The envelope as JSON.
    pub payload: &'a str,
    /// The publishing span's W3C trace context (also in the envelope), sent as headers
    /// where the bus has them.
    pub traceparent: Option<&'a str>,
    /// Its `tracestate`, if any.
    pub tracestate: Option<&'a str>,
}

/// A live message of a core subscription. Its event is decoded by the handler's task,
/// not by the loop reading the subscription, so decoding runs in parallel.
pub(crate) struct CoreMessage {
    decode: Box<dyn FnOnce() -> Event + Send>,
    /// Present when the sender waits for an answer (a request).
    pub reply: Option<Box<dyn Reply>>,
}

impl CoreMessage {
    /// A message whose event `decode` reads.
    pub(crate) fn new(decode: impl FnOnce() -> Event + Send + 'static, reply: Option<Box<dyn Reply>>) -> Self {
        CoreMessage { decode: Box::new(decode), reply }
    }

    /// The event, and how to answer it.
    pub(crate) fn open(self) -> (Event, Option<Box<dyn Reply>>) {
        ((self.decode)(), self.reply)
    }
}

/// Answers one request.
#[async_trait]
pub(crate) trait Reply: Send {
    /// The handler's answer.
    async fn ok(self: Box<Self>, value: Value);
    /// The handler failed; `reason` is shown to the requester.
    async fn fail(self: Box<Self>, reason: &str);
}

/// How a durable delivery ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Settle {
    /// Handled: never deliver it again.
    Ack,
    /// Not handled: deliver it again after this delay.
    Nak(Duration),
    /// Never deliver it again, though it was not handled (it is a dead event now).
    Term,
}

/// One delivery of a durable consumer. Read in the handler's task (decoding the event
/// is work: JSON), settled once.
#[async_trait]
pub(crate) trait Delivery: Send {
    /// 1 on the first delivery, 2 on the first redelivery, …
    fn attempt(&self) -> u32;
    /// The event delivered.
    fn event(&self) -> Event;
    /// Tell the bus how the delivery ended.
    async fn settle(self: Box<Self>, how: Settle) -> Result<()>;
}

/// How a durable consumer reads.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DurableOptions {
    /// Deliveries the consumer may hold unsettled at once (handlers running together).
    pub concurrency: usize,
    /// An unsettled delivery is given again after this long (its process died).
    pub ack_wait: Duration,
}

/// A message system FraiseQL can run events on.
#[async_trait]
pub(crate) trait EventBus: Send + Sync + 'static {
    /// `nats` or `embedded`, for logs.
    fn kind(&self) -> &'static str;

    /// Store and publish; returns once the bus has stored the event. An id published
    /// twice is stored once.
    async fn publish(&self, msg: Outgoing<'_>) -> Result<()>;

    /// Publish several, each stored once; a result per message, in order. Buses that can
    /// keep many acknowledgements in flight do (the relay drains a backlog this way).
    async fn publish_many(&self, msgs: &[Outgoing<'_>]) -> Vec<Result<()>> {
        let mut out = Vec::with_capacity(msgs.len());
        for m in msgs {
            out.push(self.publish(*m).await);
        }
        out
    }

    /// Publish without waiting for storage (core NATS: fire and forget).
    async fn publish_core(&self, msg: Outgoing<'_>) -> Result<()>;

    /// Live messages on `subject` (wildcards allowed); with `queue`, each message goes
    /// to one member of the group. Subscribed when this returns.
    async fn subscribe(&self, subject: &str, queue: Option<&str>) -> Result<BoxStream<'static, CoreMessage>>;

    /// The deliveries of the durable consumer `name` over `filter`, created if needed.
    /// The stream goes on until dropped; trouble reading is logged and retried inside.
    async fn durable(
        &self,
        name: &str,
        filter: &str,
        opts: DurableOptions,
    ) -> Result<BoxStream<'static, Box<dyn Delivery>>>;

    /// Stored events on `filter` from `since`, in order; ends once caught up unless
    /// `follow`, in which case live events follow with no gap and no repeat.
    async fn history(&self, filter: &str, since: Option<time::OffsetDateTime>, follow: bool) -> Result<EventStream>;

    /// Send a request and wait up to `timeout` for one reply.
    async fn request(&self, msg: Outgoing<'_>, timeout: Duration) -> Result<Value>;

    /// Events stored and not yet handled by the durable consumer `name`: waiting, or
    /// delivered and not acknowledged (`None` if the bus does not know the consumer yet).
    async fn consumer_pending(&self, name: &str, filter: &str) -> Result<Option<u64>>;
}
