//! Events: publishing (now, or through a step's transactional outbox), history, and
//! the two buses behind them — NATS JetStream, and the embedded one.

pub(crate) mod embedded;
pub mod envelope;
pub mod history;
pub(crate) mod nats;
pub mod outbox;
pub mod subject;
pub mod subscriptions;

use serde_json::Value;

pub use envelope::Event;
pub use history::EventStream;
pub use outbox::{DeadLetter, Outbox};

use crate::error::{Error, Result};

/// Where events go.
pub(crate) enum Bus {
    Nats(nats::NatsBus),
    Embedded(embedded::EmbeddedBus),
}

impl Bus {
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Bus::Nats(_) => "nats",
            Bus::Embedded(_) => "embedded",
        }
    }

    /// Publish an already encoded envelope, waiting for the bus to have stored it.
    pub(crate) async fn publish_raw(&self, subject: &str, id: &str, event_type: &str, payload: &str) -> Result<()> {
        match self {
            Bus::Nats(n) => n.publish(subject, id, event_type, payload.as_bytes().to_vec()).await,
            Bus::Embedded(e) => {
                let event =
                    Event::from_message(subject, payload.as_bytes(), Some(id), Some(event_type), || id.to_string());
                e.publish(&event, payload).await
            }
        }
    }

    pub(crate) async fn publish_core(&self, event: &Event, payload: &str) -> Result<()> {
        match self {
            Bus::Nats(n) => {
                n.publish_core(&event.subject, &event.id, &event.event_type, payload.as_bytes().to_vec()).await
            }
            Bus::Embedded(e) => e.publish(event, payload).await,
        }
    }

    pub(crate) async fn history(&self, filter: &str, since: Option<time::OffsetDateTime>) -> Result<Vec<Event<Value>>> {
        match self {
            Bus::Nats(n) => n.history(filter, since).await,
            Bus::Embedded(e) => e.history(filter, since).await,
        }
    }
}

/// Refuse subjects the bus would not keep: a JetStream publish to a subject no stream
/// captures has no one to ack it.
pub(crate) fn check_captured(subjects: &[String], subject: &str) -> Result<()> {
    subject::check_publish_subject(subject)?;
    if subjects.iter().any(|p| subject::matches(p, subject)) {
        Ok(())
    } else {
        Err(Error::msg(format!(
            "subject `{subject}` is not captured by the event stream (events.subjects = {subjects:?}); add a pattern for it to events.subjects"
        )))
    }
}

/// Encode an event for the wire.
pub(crate) fn encode<T: serde::Serialize>(subject: &str, data: T, saga_id: Option<String>) -> Result<(Event, String)> {
    let data = serde_json::to_value(data).map_err(|e| Error::json(format!("data of event `{subject}`"), e))?;
    let event = Event::new(subject, data, saga_id);
    let payload = serde_json::to_string(&event).map_err(|e| Error::json("event", e))?;
    Ok((event, payload))
}
