//! The event envelope: what travels on the bus, as JSON, with NATS headers where they
//! help other clients (`Nats-Msg-Id` for de-duplication, `Fraiseql-Type`).
//!
//! ```json
//! {"id": "01939b2c-…", "subject": "fraiseql.order.created", "type": "order.created",
//!  "time": "2026-11-24T05:00:00.123Z", "data": {"order_id": "…"}, "saga_id": "01939b2c-…"}
//! ```
//!
//! A message published by a non-FraiseQL client whose body is not an envelope is read as
//! the `data` of one: id from `Nats-Msg-Id` (or the stream sequence), type from
//! `Fraiseql-Type` (or the subject).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One event, typed by its `data`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Event<T = Value> {
    /// Unique; also the JetStream message id, so a re-published event is dropped by the server.
    pub id: String,
    /// The NATS subject it was published on (`fraiseql.order.created`).
    pub subject: String,
    /// `order.created` for `fraiseql.order.created`: the subject without its first token,
    /// unless the publisher set one.
    #[serde(rename = "type")]
    pub event_type: String,
    /// RFC 3339, UTC.
    pub time: String,
    /// The payload the publisher gave.
    pub data: T,
    /// The saga whose step published it (through the outbox).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub saga_id: Option<String>,
    /// The W3C trace context of the span that published it (CloudEvents' distributed
    /// tracing extension), when the publisher traced with OpenTelemetry; a handler's span
    /// continues that trace (see [`crate::otel`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// The vendor part of the trace context (`tracestate`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracestate: Option<String>,
}

/// The default event type for a subject: without its first token (`fraiseql.`).
pub fn default_type(subject: &str) -> String {
    match subject.split_once('.') {
        Some((_, rest)) => rest.to_string(),
        None => subject.to_string(),
    }
}

impl Event<Value> {
    /// Read a message body: an envelope, or (from another client) bare data.
    pub fn from_message(
        subject: &str,
        body: &[u8],
        msg_id: Option<&str>,
        event_type: Option<&str>,
        fallback_id: impl FnOnce() -> String,
    ) -> Event<Value> {
        Self::from_stored(subject, body, msg_id, event_type, fallback_id, None)
    }

    /// Like [`Event::from_message`], for a message the bus stored at `stored_at`: an
    /// outside body gets that as its time, so the event reads the same live, in history
    /// and on rebuild (and `fallback_id` should be stable too: the stream and sequence).
    pub(crate) fn from_stored(
        subject: &str,
        body: &[u8],
        msg_id: Option<&str>,
        event_type: Option<&str>,
        fallback_id: impl FnOnce() -> String,
        stored_at: Option<time::OffsetDateTime>,
    ) -> Event<Value> {
        if let Ok(ev) = serde_json::from_slice::<Event<Value>>(body) {
            return ev;
        }
        let data = serde_json::from_slice::<Value>(body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()));
        let time = match stored_at {
            Some(t) => crate::clock::rfc3339(t),
            None => crate::clock::now_rfc3339(),
        };
        Event {
            id: msg_id.map(String::from).unwrap_or_else(fallback_id),
            subject: subject.to_string(),
            event_type: event_type.map(String::from).unwrap_or_else(|| default_type(subject)),
            time,
            data,
            saga_id: None,
            traceparent: None,
            tracestate: None,
        }
    }

    /// The same event with its data deserialised into `T`.
    pub fn decode<T: serde::de::DeserializeOwned>(self) -> Result<Event<T>, serde_json::Error> {
        Ok(Event {
            data: T::deserialize(self.data)?,
            id: self.id,
            subject: self.subject,
            event_type: self.event_type,
            time: self.time,
            saga_id: self.saga_id,
            traceparent: self.traceparent,
            tracestate: self.tracestate,
        })
    }
}
