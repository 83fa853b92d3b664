//! `#[subscribe]` handlers at work, the same on every bus: core subscriptions
//! (optionally in a queue group; a handler's return value answers requests), durable
//! consumers (ack after success, redelivery with exponential backoff, a dead event after
//! `max_deliver` or a poison payload), dead-event retries and rebuilds.
//!
//! Every handler runs as tracked work (`Lifecycle::spawn_work`): shutdown stops taking
//! deliveries, then waits for running handlers before the pools close.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::BoxStream;
use futures_util::{FutureExt, StreamExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::Semaphore;
use tracing::{debug, info_span, warn, Instrument};

use super::bus::{CoreMessage, Delivery, DurableOptions, Settle};
use super::def::{Handler, SubscriptionDef, TxHandlerFn};
use super::envelope::Event;
use super::inbox::{self, EventTx, Scope};
use super::Events;
use crate::clock::now_ms;
use crate::db::{Databases, Db};
use crate::error::{Error, OnDatabase, Result};

/// Not public API. Used by generated code: why a handler did not succeed.
#[doc(hidden)]
#[derive(Debug)]
pub enum HandlerFailure {
    /// The payload does not fit the handler's type: retrying cannot help.
    Poison(String),
    /// The handler returned an error (or panicked).
    Failed(Error),
}

impl HandlerFailure {
    fn reason(&self) -> String {
        match self {
            HandlerFailure::Poison(r) => r.clone(),
            HandlerFailure::Failed(e) => e.to_string(),
        }
    }
}

/// Whether a handler ran on an event.
#[derive(Debug)]
enum Handled {
    /// It ran now; its reply, if any.
    Now(Option<Value>),
    /// Its inbox shows it handled this event before; it did not run again.
    Before,
}

/// A handler's result, a panic counting as a failure.
fn unpanic(
    def: &SubscriptionDef,
    caught: std::thread::Result<std::result::Result<Option<Value>, HandlerFailure>>,
) -> std::result::Result<Option<Value>, HandlerFailure> {
    caught.unwrap_or_else(|panic| {
        let msg = Error::panic_message(&*panic);
        Err(HandlerFailure::Failed(Error::msg(format!("handler `{}` panicked: {msg}", def.function))))
    })
}

/// Not public API. Used by generated code.
#[doc(hidden)]
pub fn decode_event<T: DeserializeOwned + 'static>(event: Event) -> std::result::Result<Event<T>, HandlerFailure> {
    // A handler of bare `Event` takes the event as it is: no copy of its data.
    let mut slot = Some(event);
    if let Some(same) = (&mut slot as &mut dyn std::any::Any).downcast_mut::<Option<Event<T>>>() {
        return Ok(same.take().expect("just put there"));
    }
    let event = slot.expect("not taken");
    event.decode::<T>().map_err(|e| {
        HandlerFailure::Poison(format!("its data does not deserialise into `{}`: {e}", std::any::type_name::<T>()))
    })
}

/// Not public API. Used by generated code.
#[doc(hidden)]
pub fn handler_output<R: Serialize>(result: Result<R>) -> std::result::Result<Option<Value>, HandlerFailure> {
    match result {
        Ok(v) => match serde_json::to_value(v) {
            Ok(Value::Null) => Ok(None),
            Ok(v) => Ok(Some(v)),
            Err(e) => Err(HandlerFailure::Failed(Error::json("handler reply", e))),
        },
        Err(e) => Err(HandlerFailure::Failed(e)),
    }
}

/// What a handler gets besides the event: the named databases, publishing, and where
/// it is in the delivery.
pub struct EventContext {
    events: Arc<Events>,
    attempt: u32,
    consumer: Option<&'static str>,
}

impl EventContext {
    /// Every named database.
    pub fn databases(&self) -> &Databases {
        &self.events.databases
    }

    /// One named database (`ctx.database("primary")?.execute(..)`).
    pub fn database(&self, name: &str) -> Result<&Db> {
        self.events.databases.get(name)
    }

    /// Publish an event now (with the server's ack). Returns its id.
    pub async fn publish<T: Serialize>(&self, subject: &str, data: T) -> Result<String> {
        self.events.publish(subject, data).await
    }

    /// 1 on the first delivery, 2 on the first redelivery, …
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The durable consumer delivering this event, if any.
    pub fn consumer(&self) -> Option<&'static str> {
        self.consumer
    }
}

/// An event a handler could not process within its budget, or whose payload does not fit.
#[derive(Debug, Clone, Serialize)]
pub struct DeadEvent {
    /// The durable consumer's name, or `core:<function>`.
    pub consumer: String,
    /// The event's id.
    pub event_id: String,
    /// Its subject.
    pub subject: String,
    /// Why it is dead: the last error, or why the payload does not fit.
    pub reason: String,
    /// Deliveries made.
    pub attempts: i64,
    /// The whole envelope, as JSON.
    pub event: Value,
    /// Milliseconds since the Unix epoch.
    pub created_at: i64,
}

/// A durable consumer of this runtime, as an operator sees it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ConsumerInfo {
    /// The durable name.
    pub name: String,
    /// The subject pattern it reads.
    pub subject: String,
    /// The handler function.
    pub function: String,
    /// The database of its transaction and inbox, if it has one.
    pub database: Option<String>,
    /// Events stored and not yet handled: waiting, or being handled (`None` before it
    /// first started).
    pub pending: Option<u64>,
}

/// What retrying dead events did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RetriedDeadEvents {
    /// Handled this time, and removed from the dead events.
    pub processed: usize,
    /// Failed again (their reason and attempts updated), or whose handler is gone.
    pub still_dead: usize,
}

impl Events {
    async fn record_dead(&self, consumer: &str, event: &Event, reason: &str, attempts: u32) {
        warn!(consumer, event.id = %event.id, subject = %event.subject, reason, attempts, "event is a dead letter");
        let payload = serde_json::to_string(event).unwrap_or_default();
        let r = self
            .log
            .db
            .execute(
                "INSERT INTO fraiseql_dead_event (consumer, event_id, subject, payload, reason, attempts, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (consumer, event_id) DO UPDATE SET reason = excluded.reason, attempts = excluded.attempts",
                (consumer, &event.id, &event.subject, &payload, reason, attempts as i64, now_ms()),
            )
            .await;
        if let Err(e) = r {
            warn!(error = %e, "could not record a dead letter");
        }
    }

    /// Dead events of one consumer, or all, oldest first.
    pub(crate) async fn dead_events(&self, consumer: Option<&str>) -> Result<Vec<DeadEvent>> {
        let sql = "SELECT consumer, event_id, subject, payload, reason, attempts, created_at FROM fraiseql_dead_event
                   WHERE ($1 IS NULL OR consumer = $1) ORDER BY created_at";
        let rows: Vec<(String, String, String, String, String, i64, i64)> =
            self.log.db.fetch_all(sql, (consumer,)).await.on(&self.log.name)?;
        rows.into_iter()
            .map(|(consumer, event_id, subject, payload, reason, attempts, created_at)| {
                let event = serde_json::from_str(&payload).map_err(|e| Error::Unreadable {
                    what: format!("dead event {event_id} of `{consumer}` in fraiseql_dead_event"),
                    detail: format!("its payload is not JSON: {e}"),
                })?;
                Ok(DeadEvent { consumer, event_id, subject, reason, attempts, event, created_at })
            })
            .collect()
    }

    /// Run dead events through their handler again, directly (not through the bus, so
    /// no other subscriber sees them twice): one consumer's, or one event's, or all. Each
    /// runs as the next delivery attempt; what succeeds leaves the dead events, what
    /// fails stays with the new reason. For a durable consumer this is out of order.
    pub(crate) async fn retry_dead_events(
        self: &Arc<Self>,
        consumer: Option<&str>,
        event_id: Option<&str>,
    ) -> Result<RetriedDeadEvents> {
        let mut report = RetriedDeadEvents::default();
        for dead in self.dead_events(consumer).await? {
            if event_id.is_some_and(|id| id != dead.event_id) {
                continue;
            }
            let def = self.subscriptions.iter().copied().find(|d| d.consumer_label() == dead.consumer);
            let Some(def) = def else {
                warn!(consumer = %dead.consumer, event.id = %dead.event_id, "no handler for this consumer any more; the event stays dead");
                report.still_dead += 1;
                continue;
            };
            let event: Event = match serde_json::from_value(dead.event.clone()) {
                Ok(e) => e,
                Err(e) => {
                    warn!(event.id = %dead.event_id, error = %e, "the stored dead event is not an envelope; it stays dead");
                    report.still_dead += 1;
                    continue;
                }
            };
            let attempt = dead.attempts as u32 + 1;
            let reason = match self.run(def, event, attempt, &Scope::Live).await {
                Ok(_) => None,
                Err(HandlerFailure::Poison(r)) => Some(r),
                Err(HandlerFailure::Failed(e)) => Some(format!("retried by hand, attempt {attempt}; error: {e}")),
            };
            let db = &self.log.db;
            match &reason {
                None => db
                    .execute(
                        "DELETE FROM fraiseql_dead_event WHERE consumer = $1 AND event_id = $2",
                        (&dead.consumer, &dead.event_id),
                    )
                    .await
                    .on(&self.log.name)?,
                Some(reason) => db
                    .execute(
                        "UPDATE fraiseql_dead_event SET reason = $3, attempts = $4 WHERE consumer = $1 AND event_id = $2",
                        (&dead.consumer, &dead.event_id, reason, attempt as i64),
                    )
                    .await
                    .on(&self.log.name)?,
            };
            match reason {
                None => {
                    tracing::info!(consumer = %dead.consumer, event.id = %dead.event_id, attempt, "dead event processed");
                    report.processed += 1;
                }
                Some(reason) => {
                    warn!(consumer = %dead.consumer, event.id = %dead.event_id, attempt, reason, "dead event failed again");
                    report.still_dead += 1;
                }
            }
        }
        Ok(report)
    }

    /// Run one handler on one event, a panic counting as a failure. A handler with an
    /// inbox runs in its transaction, under `scope`; an event its inbox already holds is
    /// not run again ([`Handled::Before`]).
    async fn run(
        self: &Arc<Self>,
        def: &'static SubscriptionDef,
        event: Event,
        attempt: u32,
        scope: &Scope,
    ) -> std::result::Result<Handled, HandlerFailure> {
        let span =
            info_span!("handler", handler = def.function, subject = %event.subject, event.id = %event.id, attempt);
        // A live delivery continues the publisher's trace; a rebuild's replays stay in
        // the rebuild's own.
        if matches!(scope, Scope::Live) {
            crate::otel::adopt(&span, event.traceparent.as_deref(), event.tracestate.as_deref());
        }
        match def.handler {
            Handler::Plain(invoke) => {
                let ctx = EventContext { events: self.clone(), attempt, consumer: def.durable };
                let fut = AssertUnwindSafe(invoke(event, &ctx)).catch_unwind();
                unpanic(def, fut.instrument(span).await).map(Handled::Now)
            }
            Handler::InTransaction { database, invoke } => {
                self.run_in_transaction(def, database, invoke, event, attempt, scope).instrument(span).await
            }
        }
    }

    /// The inbox protocol (see `inbox.rs`).
    async fn run_in_transaction(
        self: &Arc<Self>,
        def: &'static SubscriptionDef,
        database: &'static str,
        invoke: TxHandlerFn,
        event: Event,
        attempt: u32,
        scope: &Scope,
    ) -> std::result::Result<Handled, HandlerFailure> {
        let failed = |e: Error| HandlerFailure::Failed(e);
        let consumer = def.durable.unwrap_or(def.function);
        let db = self.databases.get(database).map_err(failed)?;
        let mut tx = db.begin().await.on(database).map_err(failed)?;
        let key = scope.key(consumer);
        if !inbox::claim(&mut tx, key, &event.id).await.on(database).map_err(failed)? {
            debug!(consumer, event.id = %event.id, "handled before (inbox); not run again");
            return Ok(Handled::Before);
        }
        let event_id = event.id.clone();
        let mut ctx = EventTx {
            tx,
            database,
            events: self.clone(),
            attempt,
            consumer,
            replay: matches!(scope, Scope::Rebuild(_)),
            published: Vec::new(),
        };
        let result = unpanic(def, AssertUnwindSafe(invoke(event, &mut ctx)).catch_unwind().await);
        // On failure the transaction rolls back as `ctx` drops: no effect, no inbox row.
        let value = result?;
        crate::fault::point("before_inbox_commit", consumer);
        ctx.tx.commit().await.on(database).map_err(failed)?;
        crate::fault::point("after_inbox_commit", consumer);
        debug!(consumer, event.id = %event_id, "handled and recorded in the inbox");
        if !ctx.published.is_empty() {
            self.relay.send(ctx.published);
        }
        Ok(Handled::Now(value))
    }

    /// Every durable consumer of this runtime, by name, with how far behind it is.
    pub(crate) async fn consumers(&self) -> Result<Vec<ConsumerInfo>> {
        let mut out = Vec::new();
        for def in &self.subscriptions {
            let Some(name) = def.durable else { continue };
            out.push(ConsumerInfo {
                name: name.to_string(),
                subject: def.subject.to_string(),
                function: def.function.to_string(),
                database: def.transaction_database().map(String::from),
                pending: self.bus.consumer_pending(name, def.subject).await?,
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn redelivery_delay(&self, delivered: u32) -> Duration {
        let factor = 2u32.saturating_pow(delivered.saturating_sub(1).min(16));
        (self.config.redelivery_initial * factor).min(self.config.redelivery_max)
    }

    fn concurrency(&self, def: &SubscriptionDef) -> usize {
        def.concurrency.unwrap_or(self.config.handler_concurrency) as usize
    }

    /// Run a subscription's handler over the history of its subject, in order: the
    /// projection it maintains is rebuilt from the events alone. Stops at the first
    /// event the handler fails on (a poison payload is skipped, as live processing would
    /// dead-letter it).
    pub(crate) async fn rebuild(self: &Arc<Self>, handler: &str, since: Option<time::OffsetDateTime>) -> Result<usize> {
        let def = self
            .subscriptions
            .iter()
            .copied()
            .find(|d| d.function == handler || d.durable == Some(handler))
            .ok_or_else(|| Error::NotFound(format!("no #[subscribe] handler or durable consumer named `{handler}`")))?;
        let mut events = self.history_stream(def.subject, since, false).await?;
        let span = info_span!("rebuild", handler = def.function, subject = def.subject);
        let scope = Scope::fresh_rebuild(def.durable.unwrap_or(def.function));
        let result = async {
            let mut n = 0;
            while let Some(event) = events.next().await {
                let event = event?;
                let id = event.id.clone();
                match self.run(def, event, 1, &scope).await {
                    Ok(Handled::Now(_)) => n += 1,
                    Ok(Handled::Before) => debug!(event.id = %id, "the same event again in history; applied once"),
                    Err(HandlerFailure::Poison(reason)) => {
                        warn!(event.id = %id, reason, "skipped a poison event while rebuilding")
                    }
                    Err(HandlerFailure::Failed(e)) => {
                        return Err(Error::msg(format!(
                            "rebuilding with `{}` stopped at event {id} after {n} events: {e}",
                            def.function
                        )))
                    }
                }
            }
            tracing::info!(events = n, "rebuilt");
            Ok(n)
        }
        .instrument(span)
        .await;
        if let (Some(database), Scope::Rebuild(key)) = (def.transaction_database(), &scope) {
            inbox::drop_scope(self, database, key).await;
        }
        result
    }
}

/// Start every registered subscription.
pub(crate) async fn start_all(events: &Arc<Events>) -> Result<()> {
    for &def in &events.subscriptions {
        if let Some(durable) = def.durable {
            // A filter with wildcards is captured if a concrete subject it matches is.
            let sample = def.subject.replace(['*', '>'], "x");
            if !events.stores(&sample) {
                return Err(Error::config(format!(
                    "durable subscription `{}` at {} reads `{}`, which the event stream does not capture (events.subjects = {:?})",
                    def.function, def.location, def.subject, events.config.subjects
                )));
            }
            let opts = DurableOptions { concurrency: events.concurrency(def), ack_wait: events.config.ack_wait };
            let deliveries = events.bus.durable(durable, def.subject, opts).await?;
            events.lifecycle.spawn_work(consume_durable(events.clone(), def, deliveries));
        } else {
            let messages = events.bus.subscribe(def.subject, def.queue).await?;
            events.lifecycle.spawn_background(consume_core(events.clone(), def, messages));
        }
    }
    Ok(())
}

/// Core subscription: each message once, no redelivery; a request gets the handler's
/// value (or its failure) as the reply.
async fn consume_core(
    events: Arc<Events>,
    def: &'static SubscriptionDef,
    mut messages: BoxStream<'static, CoreMessage>,
) {
    let permits = Arc::new(Semaphore::new(events.concurrency(def)));
    loop {
        let msg = tokio::select! {
            _ = events.lifecycle.stopping() => break,
            m = messages.next() => match m { Some(m) => m, None => break },
        };
        let Ok(permit) = permits.clone().acquire_owned().await else { break };
        let ev = events.clone();
        events.lifecycle.spawn_work(async move {
            let _permit = permit;
            let (event, reply) = msg.open();
            let started = std::time::Instant::now();
            let result = ev.run(def, event.clone(), 1, &Scope::Live).await.map(|h| match h {
                Handled::Now(v) => v,
                Handled::Before => None,
            });
            let outcome = match &result {
                Ok(_) => "ok",
                Err(HandlerFailure::Poison(_)) => "dead",
                Err(HandlerFailure::Failed(_)) => "failed",
            };
            crate::telemetry::event_handled(def.function, outcome, Some(started.elapsed()));
            match (result, reply) {
                (Ok(value), Some(reply)) => reply.ok(value.unwrap_or(Value::Null)).await,
                (Ok(_), None) => {}
                (Err(failure), Some(reply)) => reply.fail(&failure.reason()).await,
                (Err(HandlerFailure::Poison(reason)), None) => {
                    ev.record_dead(&def.consumer_label(), &event, &reason, 1).await
                }
                (Err(HandlerFailure::Failed(e)), None) => {
                    warn!(handler = def.function, event.id = %event.id, error = %e, "handler failed (core subscription: no redelivery)")
                }
            }
        });
    }
}

/// Durable consumer: the delivery policy, once for every bus. Success acks; a poison
/// payload or a spent budget is recorded as a dead event and terminated; any other
/// failure is redelivered after an exponentially growing delay.
///
/// Up to `concurrency` deliveries are handled at once within this one task (no task per
/// event: a spawn per delivery, and the wake-ups across threads it brings, cost more
/// than most handlers). The loop is tracked work: at shutdown it stops taking
/// deliveries and ends when the handlers running finish.
async fn consume_durable(
    events: Arc<Events>,
    def: &'static SubscriptionDef,
    deliveries: BoxStream<'static, Box<dyn Delivery>>,
) {
    let max_deliver = def.max_deliver.unwrap_or(events.config.max_deliver);
    let label: Arc<str> = def.consumer_label().into();
    let stopping = {
        let ev = events.clone();
        async move { ev.lifecycle.stopping().await }
    };
    deliveries
        .take_until(stopping)
        .for_each_concurrent(events.concurrency(def), |delivery| {
            let (ev, label) = (&events, &*label);
            async move {
                let attempt = delivery.attempt();
                let started = std::time::Instant::now();
                // The handler owns the event; a failure reads it again from the delivery.
                let result = ev.run(def, delivery.event(), attempt, &Scope::Live).await;
                let took = Some(started.elapsed());
                let metric = def.durable.unwrap_or(def.function);
                let how = match result {
                    Ok(Handled::Now(_)) => {
                        crate::telemetry::event_handled(metric, "ok", took);
                        Settle::Ack
                    }
                    Ok(Handled::Before) => {
                        crate::telemetry::event_handled(metric, "duplicate", None);
                        Settle::Ack
                    }
                    Err(HandlerFailure::Poison(reason)) => {
                        crate::telemetry::event_handled(metric, "dead", took);
                        ev.record_dead(label, &delivery.event(), &reason, attempt).await;
                        Settle::Term
                    }
                    Err(HandlerFailure::Failed(e)) if attempt >= max_deliver => {
                        crate::telemetry::event_handled(metric, "dead", took);
                        let reason = format!("failed {attempt} times; last error: {e}");
                        ev.record_dead(label, &delivery.event(), &reason, attempt).await;
                        Settle::Term
                    }
                    Err(HandlerFailure::Failed(e)) => {
                        crate::telemetry::event_handled(metric, "retried", took);
                        let delay = ev.redelivery_delay(attempt);
                        let event = delivery.event();
                        warn!(consumer = %label, event.id = %event.id, attempt, error = %e, ?delay, "handler failed; redelivering");
                        Settle::Nak(delay)
                    }
                };
                if let Err(e) = delivery.settle(how).await {
                    warn!(consumer = %label, error = %e, "could not acknowledge; the event will be delivered again");
                }
            }
        })
        .await;
}
