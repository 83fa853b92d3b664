//! History as a stream: past events in order, ending once caught up, or going on with
//! live events (`follow`) with no gap and no repeat between the two.
//!
//! Each bus reads its own store (`EventBus::history`): on NATS one JetStream ordered
//! consumer from the start time, ending when it reports nothing pending; on the embedded
//! bus pages of the event table by sequence. Following ends when the runtime shuts down.

use std::pin::Pin;
use std::time::Duration;

use futures_util::{Stream, StreamExt};

use super::envelope::Event;
use super::{subject, Events};
use crate::error::{Error, Result};

/// Events in order. An `Err` item reports trouble reading (the stream then ends, except
/// when following NATS, where the ordered consumer recovers by itself).
pub type EventStream = Pin<Box<dyn Stream<Item = Result<Event>> + Send + 'static>>;

/// How long reading history may wait for the next event before it counts as stalled.
const STALL: Duration = Duration::from_secs(10);

pub(crate) async fn stream(
    events: &Events,
    filter: &str,
    since: Option<time::OffsetDateTime>,
    follow: bool,
) -> Result<EventStream> {
    subject::check_subscription_subject(filter)?;
    let s = events.bus.history(filter, since, follow).await?;
    if !follow {
        return Ok(s);
    }
    let lifecycle = events.lifecycle.clone();
    Ok(Box::pin(s.take_until(async move { lifecycle.stopping().await })))
}

/// The whole history of `filter` from `since`, collected. A bus that stops delivering
/// before it is caught up is an error, not a short answer.
pub(crate) async fn collect(events: &Events, filter: &str, since: Option<time::OffsetDateTime>) -> Result<Vec<Event>> {
    let mut s = stream(events, filter, since, false).await?;
    let mut out = Vec::new();
    loop {
        match tokio::time::timeout(STALL, s.next()).await {
            Ok(Some(e)) => out.push(e?),
            Ok(None) => return Ok(out),
            Err(_) => {
                return Err(Error::bus_msg(format!(
                    "history of `{filter}`: the bus stopped delivering after {} events",
                    out.len()
                )))
            }
        }
    }
}
