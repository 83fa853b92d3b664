//! Events: publishing (now, or through a step's transactional outbox), `#[subscribe]`
//! handlers, history and rebuilds — the semantics, written once above the `bus` seam
//! that NATS JetStream (`nats.rs`) and the embedded bus (`embedded.rs`) implement.
//!
//! `Events` is the component the runtime wires: it holds the bus, the databases (for
//! outboxes), the log database (dead events) and the registered subscriptions, and it
//! owns the relay, the outbox sweep and the subscription loops.

pub(crate) mod bus;
pub(crate) mod def;
pub(crate) mod embedded;
pub mod envelope;
pub mod history;
pub mod inbox;
pub(crate) mod nats;
pub mod outbox;
pub mod subject;
pub mod subscriptions;

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

pub use def::{Handler, HandlerFn, SubscriptionDef, TxHandlerFn};
pub use envelope::Event;
pub use history::EventStream;
pub use inbox::EventTx;
pub use outbox::{DeadLetter, Outbox, OutboxBacklog};

use crate::config::EventsConfig;
use crate::db::{Databases, NamedDb};
use crate::error::{Error, Result};
use crate::lifecycle::Lifecycle;
use bus::{EventBus, Outgoing};
use outbox::{Relay, StepOutbox};

/// The events component of one runtime.
pub(crate) struct Events {
    bus: Box<dyn EventBus>,
    config: EventsConfig,
    databases: Databases,
    /// Where dead events are kept.
    log: NamedDb,
    subscriptions: Vec<&'static SubscriptionDef>,
    lifecycle: Lifecycle,
    relay: Relay,
    /// How steps and transactional handlers write events to their database's outbox.
    outbox: StepOutbox,
}

impl Events {
    /// Connect the bus the configuration names: NATS JetStream when `events.url` is set
    /// (the stream is created or brought to the configuration), else the embedded bus
    /// in the log database. A new bus is one more arm here.
    pub(crate) async fn connect(
        config: &EventsConfig,
        databases: Databases,
        log: NamedDb,
        subscriptions: Vec<&'static SubscriptionDef>,
        lifecycle: Lifecycle,
    ) -> Result<Arc<Events>> {
        let bus: Box<dyn EventBus> = match &config.url {
            Some(url) => Box::new(nats::NatsBus::connect(config, url).await?),
            None => Box::new(embedded::EmbeddedBus::new(log.db.clone(), &log.name)),
        };
        let relay = Relay::default();
        Ok(Arc::new(Events {
            bus,
            config: config.clone(),
            databases,
            log,
            subscriptions,
            lifecycle,
            outbox: StepOutbox::new(config.subjects.clone().into(), relay.clone()),
            relay,
        }))
    }

    /// `nats` or `embedded`.
    pub(crate) fn bus_kind(&self) -> &'static str {
        self.bus.kind()
    }

    /// Start the relay, the outbox sweep and every subscription. Subscribing happens
    /// before this returns, so nothing published after start is missed by core
    /// subscriptions.
    pub(crate) async fn start(self: &Arc<Self>) -> Result<()> {
        outbox::start(self);
        inbox::start(self);
        subscriptions::start_all(self).await
    }

    /// What a saga step needs to publish through its outbox.
    pub(crate) fn step_outbox(&self) -> &StepOutbox {
        &self.outbox
    }

    /// Refuse subjects the bus would not keep: a JetStream publish to a subject no
    /// stream captures has no one to ack it.
    pub(crate) fn check_captured(&self, subject: &str) -> Result<()> {
        check_captured(&self.config.subjects, subject)
    }

    /// Whether the event stream stores messages on `subject`.
    pub(crate) fn stores(&self, subject: &str) -> bool {
        self.config.subjects.iter().any(|p| subject::matches(p, subject))
    }

    /// Publish now and wait for the bus to have stored it. Returns the event's id.
    pub(crate) async fn publish<T: Serialize>(&self, subject: &str, data: T) -> Result<String> {
        self.check_captured(subject)?;
        let (event, payload) = encode(subject, data, None)?;
        self.bus.publish(outgoing(&event, &payload)).await?;
        crate::telemetry::events_published("publish", 1);
        Ok(event.id)
    }

    /// Fire and forget: no ack and no stream guarantee.
    pub(crate) async fn publish_core<T: Serialize>(&self, subject: &str, data: T) -> Result<String> {
        subject::check_publish_subject(subject)?;
        let (event, payload) = encode(subject, data, None)?;
        self.bus.publish_core(outgoing(&event, &payload)).await?;
        Ok(event.id)
    }

    /// Request/reply: the reply of the (core) handler subscribed to `subject`.
    pub(crate) async fn request<T: Serialize>(&self, subject: &str, data: T, timeout: Duration) -> Result<Value> {
        subject::check_publish_subject(subject)?;
        if self.stores(subject) {
            // JetStream would store the request and answer it with its own ack.
            return Err(Error::InvalidArgument(format!(
                "cannot send a request on `{subject}`: the event stream stores that subject (events.subjects = {:?}), so requests there \
                 would be kept as events and answered by the stream; use a subject outside events.subjects",
                self.config.subjects
            )));
        }
        let (event, payload) = encode(subject, data, None)?;
        self.bus.request(outgoing(&event, &payload), timeout).await
    }

    /// Past events on `filter` as a stream; see [`crate::Runtime::follow_history`].
    pub(crate) async fn history_stream(
        &self,
        filter: &str,
        since: Option<time::OffsetDateTime>,
        follow: bool,
    ) -> Result<EventStream> {
        history::stream(self, filter, since, follow).await
    }

    /// The outbox, for operators.
    pub(crate) fn outbox(self: &Arc<Self>) -> Outbox {
        Outbox { events: self.clone() }
    }
}

fn outgoing<'a, T>(event: &'a Event<T>, payload: &'a str) -> Outgoing<'a> {
    Outgoing {
        subject: &event.subject,
        id: &event.id,
        event_type: &event.event_type,
        payload,
        traceparent: event.traceparent.as_deref(),
        tracestate: event.tracestate.as_deref(),
    }
}

/// Refuse subjects the bus would not keep (see [`Events::check_captured`]).
pub(crate) fn check_captured(subjects: &[String], subject: &str) -> Result<()> {
    subject::check_publish_subject(subject)?;
    if subjects.iter().any(|p| subject::matches(p, subject)) {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "subject `{subject}` is not captured by the event stream (events.subjects = {subjects:?}); add a pattern for it to events.subjects"
        )))
    }
}

/// Encode an event for the wire, serialising `data` once, straight into the envelope.
/// Returns the envelope's fields (without the data) and the payload.
pub(crate) fn encode<T: Serialize>(subject: &str, data: T, saga_id: Option<String>) -> Result<(Event<()>, String)> {
    let trace = crate::otel::capture();
    let event = Event {
        id: uuid::Uuid::now_v7().to_string(),
        subject: subject.to_string(),
        event_type: envelope::default_type(subject),
        time: crate::clock::now_rfc3339(),
        data: &data,
        saga_id,
        traceparent: trace.traceparent,
        tracestate: trace.tracestate,
    };
    let payload = serde_json::to_string(&event).map_err(|e| Error::json(format!("data of event `{subject}`"), e))?;
    let Event { id, subject, event_type, time, saga_id, traceparent, tracestate, .. } = event;
    Ok((Event { id, subject, event_type, time, data: (), saga_id, traceparent, tracestate }, payload))
}
