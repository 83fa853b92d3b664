//! History as a stream: past events in order, ending once caught up, or going on with
//! live events (`follow`) with no gap and no repeat between the two.
//!
//! On NATS this is one JetStream ordered consumer from the start time; it ends when the
//! consumer reports nothing pending. On the embedded bus it pages through the event table
//! by sequence and, when following, waits for the next publish.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use tokio::sync::{broadcast, watch};

use super::envelope::Event;
use super::{embedded::EmbeddedBus, nats::NatsBus, subject, Bus};
use crate::db::Db;
use crate::error::{Error, Result};
use crate::runtime::Inner;

/// Events in order. An `Err` item reports trouble reading (the stream then ends, except
/// when following NATS, where the ordered consumer recovers by itself).
pub type EventStream = Pin<Box<dyn Stream<Item = Result<Event>> + Send + 'static>>;

pub(crate) async fn stream(
    rt: &Arc<Inner>,
    filter: &str,
    since: Option<time::OffsetDateTime>,
    follow: bool,
) -> Result<EventStream> {
    subject::check_subscription_subject(filter)?;
    let s = match &rt.bus {
        Bus::Nats(n) => nats(n, filter, since, follow).await?,
        Bus::Embedded(e) => embedded(e, filter, since, follow),
    };
    if !follow {
        return Ok(s);
    }
    // Following ends when the runtime shuts down.
    let mut stop: watch::Receiver<bool> = rt.stop.subscribe();
    Ok(Box::pin(s.take_until(async move {
        let _ = stop.wait_for(|stopped| *stopped).await;
    })))
}

async fn nats(n: &NatsBus, filter: &str, since: Option<time::OffsetDateTime>, follow: bool) -> Result<EventStream> {
    let (consumer, stream_name) = n.ordered_consumer(filter, since).await?;
    let pending = consumer.cached_info().num_pending;
    if pending == 0 && !follow {
        return Ok(Box::pin(futures_util::stream::empty()));
    }
    let messages = consumer.messages().await.map_err(|e| Error::Bus(format!("history of `{filter}`: {e}")))?;
    let filter = filter.to_string();
    Ok(Box::pin(futures_util::stream::unfold((messages, false), move |(mut messages, done)| {
        let (filter, stream_name) = (filter.clone(), stream_name.clone());
        async move {
            if done {
                return None;
            }
            match messages.next().await? {
                Ok(msg) => {
                    let info = msg.info().ok();
                    let caught_up = !follow && info.as_ref().is_some_and(|i| i.pending == 0);
                    let seq = info.map(|i| i.stream_sequence).unwrap_or(0);
                    let h = msg.headers.as_ref();
                    let id = h.and_then(|h| h.get("Nats-Msg-Id")).map(|v| v.as_str().to_string());
                    let ty = h.and_then(|h| h.get("Fraiseql-Type")).map(|v| v.as_str().to_string());
                    let event =
                        Event::from_message(msg.subject.as_str(), &msg.payload, id.as_deref(), ty.as_deref(), || {
                            format!("{stream_name}:{seq}")
                        });
                    Some((Ok(event), (messages, caught_up)))
                }
                Err(e) => Some((Err(Error::Bus(format!("history of `{filter}`: {e}"))), (messages, !follow))),
            }
        }
    })))
}

struct Paging {
    db: Db,
    db_name: String,
    filter: String,
    since_ms: i64,
    after: i64,
    buffer: VecDeque<Event>,
    live: broadcast::Receiver<Event>,
    follow: bool,
    failed: bool,
}

fn embedded(e: &EmbeddedBus, filter: &str, since: Option<time::OffsetDateTime>, follow: bool) -> EventStream {
    let state = Paging {
        db: e.db.clone(),
        db_name: e.db_name.clone(),
        filter: filter.to_string(),
        since_ms: since.map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64).unwrap_or(i64::MIN),
        after: 0,
        buffer: VecDeque::new(),
        // Subscribed before the first read: a publish during the reads still wakes us.
        live: e.live.subscribe(),
        follow,
        failed: false,
    };
    Box::pin(futures_util::stream::unfold(state, |mut s| async move {
        loop {
            if let Some(ev) = s.buffer.pop_front() {
                return Some((Ok(ev), s));
            }
            if s.failed {
                return None;
            }
            let rows: std::result::Result<Vec<(i64, String, String)>, _> = s
                .db
                .fetch_all(
                    "SELECT seq, subject, payload FROM fraiseql_event WHERE seq > $1 AND published_at >= $2 ORDER BY seq LIMIT 512",
                    (s.after, s.since_ms),
                )
                .await;
            let rows = match rows {
                Ok(r) => r,
                Err(e) => {
                    s.failed = true;
                    return Some((Err(Error::db(&s.db_name, e)), s));
                }
            };
            if rows.is_empty() {
                if !s.follow {
                    return None;
                }
                // Caught up: wait for the next publish (or look again now and then).
                tokio::select! {
                    _ = s.live.recv() => {}
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
                continue;
            }
            for (seq, subj, payload) in rows {
                s.after = seq;
                if subject::matches(&s.filter, &subj) {
                    s.buffer.push_back(Event::from_message(&subj, payload.as_bytes(), None, None, || {
                        format!("embedded:{seq}")
                    }));
                }
            }
        }
    }))
}
