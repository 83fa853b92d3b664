//! The zero-service bus: events kept in a table of the log database (`fraiseql_event`),
//! so history survives a restart when the databases are files, with the same subject
//! semantics and the same de-duplication by event id as JetStream.
//!
//! Its scope is one process: live delivery and queue groups are in-process, and a
//! durable consumer is a position (`fraiseql_consumer`) read by the one process that
//! runs it, delivering one event at a time, in order.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::stream::BoxStream;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::warn;

use super::bus::{CoreMessage, Delivery, DurableOptions, EventBus, Outgoing, Reply, Settle};
use super::envelope::Event;
use super::history::EventStream;
use super::subject;
use crate::clock::{from_ms, ms_since, now_ms};
use crate::db::Db;
use crate::error::{Error, OnDatabase, Result};

/// Live messages a core subscriber may have waiting before it counts as too slow and
/// misses some (as a slow NATS client would).
const SUBSCRIBER_BUFFER: usize = 4096;
/// How often consumers and followers look at the table when nothing woke them (a
/// publish from another process sharing the database wakes no one here).
const POLL: Duration = Duration::from_millis(250);

pub(crate) struct EmbeddedBus {
    db: Db,
    db_name: String,
    subscribers: Arc<Mutex<Vec<Subscriber>>>,
    next_id: AtomicU64,
    /// The sequence of the last stored event: wakes consumers and followers.
    published: watch::Sender<i64>,
}

struct Subscriber {
    id: u64,
    pattern: String,
    queue: Option<String>,
    tx: mpsc::Sender<CoreMessage>,
}

impl EmbeddedBus {
    pub(crate) fn new(db: Db, db_name: &str) -> EmbeddedBus {
        EmbeddedBus {
            db,
            db_name: db_name.to_string(),
            subscribers: Default::default(),
            next_id: AtomicU64::new(0),
            published: watch::Sender::new(0),
        }
    }

    /// Hand a message to the core subscribers it matches: every plain subscriber, and one
    /// member of each queue group (chosen by the event id, so the choice is stable). A
    /// request goes to one subscriber only. Returns how many got it.
    fn dispatch(&self, msg: &Outgoing<'_>, mut reply: Option<Box<dyn Reply>>) -> usize {
        let mut subs = self.subscribers.lock().unwrap();
        subs.retain(|s| !s.tx.is_closed());
        // Most events have no core subscriber in this process: nothing to decode.
        let matching: Vec<&Subscriber> = subs.iter().filter(|s| subject::matches(&s.pattern, msg.subject)).collect();
        if matching.is_empty() {
            return 0;
        }
        let event = decode(msg);
        let mut targets: Vec<&Subscriber> = matching.iter().copied().filter(|s| s.queue.is_none()).collect();
        let mut groups: Vec<&str> = matching.iter().filter_map(|s| s.queue.as_deref()).collect();
        groups.sort_unstable();
        groups.dedup();
        let h = event.id.bytes().fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64));
        for g in groups {
            let members: Vec<&Subscriber> =
                matching.iter().copied().filter(|s| s.queue.as_deref() == Some(g)).collect();
            targets.push(members[(h % members.len() as u64) as usize]);
        }
        if reply.is_some() {
            targets.sort_by_key(|s| s.id);
            targets.truncate(1);
        }
        let mut sent = 0;
        for s in targets {
            let copy = event.clone();
            let msg = CoreMessage::new(move || copy, reply.take());
            match s.tx.try_send(msg) {
                Ok(()) => sent += 1,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    warn!(subject = %s.pattern, event.id = %event.id, "a core subscriber fell behind and missed an event")
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        }
        sent
    }

    async fn store(&self, msg: &Outgoing<'_>) -> Result<Option<i64>> {
        const INSERT: &str = "INSERT INTO fraiseql_event (id, subject, payload, published_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (id) DO NOTHING RETURNING seq";
        let args = (msg.id, msg.subject, msg.payload, now_ms());
        // Readers go by sequence, so sequences must become visible in order: where two
        // appends could commit out of sequence order, a lock held to the commit orders them.
        let seq: Option<(i64,)> = match self.db.dialect().serialize_appends("fraiseql_event") {
            Some(lock) => {
                let mut tx = self.db.begin().await.on(&self.db_name)?;
                tx.execute(&lock, ()).await.on(&self.db_name)?;
                let seq = tx.fetch_optional(INSERT, args).await.on(&self.db_name)?;
                tx.commit().await.on(&self.db_name)?;
                seq
            }
            None => self.db.fetch_optional(INSERT, args).await.on(&self.db_name)?,
        };
        Ok(seq.map(|s| s.0))
    }
}

fn decode(msg: &Outgoing<'_>) -> Event {
    Event::from_message(msg.subject, msg.payload.as_bytes(), Some(msg.id), Some(msg.event_type), || msg.id.to_string())
}

#[async_trait]
impl EventBus for EmbeddedBus {
    fn kind(&self) -> &'static str {
        "embedded"
    }

    async fn publish(&self, msg: Outgoing<'_>) -> Result<()> {
        if let Some(seq) = self.store(&msg).await? {
            self.published.send_replace(seq);
            self.dispatch(&msg, None);
        }
        Ok(())
    }

    async fn publish_core(&self, msg: Outgoing<'_>) -> Result<()> {
        // The table is the only way across this bus: a core publish is stored too, as
        // JetStream stores a core publish on a subject its stream captures.
        self.publish(msg).await
    }

    async fn subscribe(&self, subject: &str, queue: Option<&str>) -> Result<BoxStream<'static, CoreMessage>> {
        let (tx, rx) = mpsc::channel(SUBSCRIBER_BUFFER);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.subscribers.lock().unwrap().push(Subscriber {
            id,
            pattern: subject.to_string(),
            queue: queue.map(String::from),
            tx,
        });
        Ok(Box::pin(futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) })))
    }

    async fn durable(
        &self,
        name: &str,
        filter: &str,
        _opts: DurableOptions,
    ) -> Result<BoxStream<'static, Box<dyn Delivery>>> {
        let state = Consumer {
            db: self.db.clone(),
            db_name: self.db_name.clone(),
            name: name.to_string(),
            filter: filter.to_string(),
            position: None,
            scanned: 0,
            buffer: VecDeque::new(),
            current: None,
            wake: self.published.subscribe(),
        };
        Ok(Box::pin(futures_util::stream::unfold(state, |mut c| async move { Some((c.next().await, c)) })))
    }

    async fn history(&self, filter: &str, since: Option<time::OffsetDateTime>, follow: bool) -> Result<EventStream> {
        let state = Paging {
            db: self.db.clone(),
            db_name: self.db_name.clone(),
            filter: filter.to_string(),
            since_ms: ms_since(since),
            after: 0,
            buffer: VecDeque::new(),
            // Subscribed before the first read: a publish during the reads still wakes us.
            wake: self.published.subscribe(),
            follow,
            failed: false,
        };
        Ok(Box::pin(futures_util::stream::unfold(state, |mut s| async move { s.next().await.map(|e| (e, s)) })))
    }

    /// The events after the consumer's position that match its filter.
    async fn consumer_pending(&self, name: &str, filter: &str) -> Result<Option<u64>> {
        let Some((position,)) = self
            .db
            .fetch_optional::<(i64,), _>("SELECT acked_seq FROM fraiseql_consumer WHERE name = $1", (name,))
            .await
            .on(&self.db_name)?
        else {
            return Ok(None);
        };
        let subjects: Vec<(String,)> = self
            .db
            .fetch_all("SELECT subject FROM fraiseql_event WHERE seq > $1", (position,))
            .await
            .on(&self.db_name)?;
        Ok(Some(subjects.iter().filter(|(s,)| subject::matches(filter, s)).count() as u64))
    }

    async fn request(&self, msg: Outgoing<'_>, timeout: Duration) -> Result<Value> {
        let (tx, rx) = oneshot::channel();
        if self.dispatch(&msg, Some(Box::new(OneshotReply(tx)))) == 0 {
            return Err(Error::NotFound(format!("no handler is subscribed to `{}`", msg.subject)));
        }
        match tokio::time::timeout(timeout, rx).await {
            Err(_) => Err(Error::Timeout(format!("no reply to request on `{}` within {timeout:?}", msg.subject))),
            Ok(Err(_)) => Err(Error::msg(format!("the handler of `{}` ended without replying", msg.subject))),
            Ok(Ok(Ok(v))) => Ok(v),
            Ok(Ok(Err(reason))) => Err(Error::msg(format!("the handler of `{}` failed: {reason}", msg.subject))),
        }
    }
}

struct OneshotReply(oneshot::Sender<std::result::Result<Value, String>>);

#[async_trait]
impl Reply for OneshotReply {
    async fn ok(self: Box<Self>, value: Value) {
        let _ = self.0.send(Ok(value));
    }
    async fn fail(self: Box<Self>, reason: &str) {
        let _ = self.0.send(Err(reason.to_string()));
    }
}

/// Reads a durable consumer's events after its stored position, one at a time: the next
/// delivery waits until the previous one is settled.
struct Consumer {
    db: Db,
    db_name: String,
    name: String,
    filter: String,
    position: Option<i64>,
    /// The last sequence read from the table (events between `position` and it that do
    /// not match the filter need no delivery, only a position update).
    scanned: i64,
    buffer: VecDeque<(i64, Event)>,
    /// The delivery in the hands of a handler: its sequence, event, attempt, and where
    /// its settlement arrives.
    current: Option<(i64, Event, u32, oneshot::Receiver<Settle>)>,
    wake: watch::Receiver<i64>,
}

impl Consumer {
    fn deliver(&mut self, seq: i64, event: Event, attempt: u32) -> Box<dyn Delivery> {
        let (tx, rx) = oneshot::channel();
        self.current = Some((seq, event.clone(), attempt, rx));
        Box::new(Position {
            event,
            attempt,
            db: self.db.clone(),
            db_name: self.db_name.clone(),
            name: self.name.clone(),
            seq,
            done: tx,
        })
    }

    async fn next(&mut self) -> Box<dyn Delivery> {
        loop {
            if let Some((seq, event, attempt, rx)) = self.current.take() {
                match rx.await {
                    Ok(Settle::Ack | Settle::Term) => self.position = Some(seq),
                    Ok(Settle::Nak(delay)) => {
                        tokio::time::sleep(delay).await;
                        return self.deliver(seq, event, attempt + 1);
                    }
                    // The handler's task ended without settling (aborted at shutdown):
                    // deliver it again, as an unacknowledged JetStream message would be.
                    Err(_) => {
                        tokio::time::sleep(POLL).await;
                        return self.deliver(seq, event, attempt + 1);
                    }
                }
            }
            if let Some((seq, event)) = self.buffer.pop_front() {
                return self.deliver(seq, event, 1);
            }
            let position = match self.position {
                Some(p) => p,
                None => match self.read_position().await {
                    Ok(p) => {
                        self.position = Some(p);
                        p
                    }
                    Err(e) => {
                        warn!(consumer = %self.name, error = %e, "cannot read the consumer's position; retrying");
                        tokio::time::sleep(POLL).await;
                        continue;
                    }
                },
            };
            if self.scanned > position {
                // Only events of other subjects were left: skip them for good.
                match self.save(self.scanned).await {
                    Ok(()) => self.position = Some(self.scanned),
                    Err(e) => warn!(consumer = %self.name, error = %e, "cannot store the consumer's position"),
                }
                continue;
            }
            let rows: std::result::Result<Vec<(i64, String, String, i64)>, _> = self
                .db
                .fetch_all(
                    "SELECT seq, subject, payload, published_at FROM fraiseql_event WHERE seq > $1 ORDER BY seq LIMIT 256",
                    (position,),
                )
                .await;
            let rows = match rows {
                Ok(r) => r,
                Err(e) => {
                    warn!(consumer = %self.name, error = %e, "cannot read events; retrying");
                    tokio::time::sleep(POLL).await;
                    continue;
                }
            };
            if rows.is_empty() {
                tokio::select! {
                    // A closed channel (the bus is gone) must not spin: poll instead.
                    woke = self.wake.changed() => if woke.is_err() { tokio::time::sleep(POLL).await },
                    _ = tokio::time::sleep(POLL) => {}
                }
                continue;
            }
            for (seq, subject, payload, published_at) in rows {
                self.scanned = seq;
                if subject::matches(&self.filter, &subject) {
                    let event = stored_event(seq, &subject, &payload, published_at);
                    self.buffer.push_back((seq, event));
                }
            }
        }
    }

    async fn read_position(&self) -> std::result::Result<i64, sqlx::Error> {
        let row: Option<(i64,)> =
            self.db.fetch_optional("SELECT acked_seq FROM fraiseql_consumer WHERE name = $1", (&self.name,)).await?;
        Ok(row.map(|r| r.0).unwrap_or(0))
    }

    async fn save(&self, seq: i64) -> std::result::Result<(), sqlx::Error> {
        save_position(&self.db, &self.name, seq).await
    }
}

async fn save_position(db: &Db, name: &str, seq: i64) -> std::result::Result<(), sqlx::Error> {
    db.execute(
        "INSERT INTO fraiseql_consumer (name, acked_seq) VALUES ($1, $2)
         ON CONFLICT (name) DO UPDATE SET acked_seq = excluded.acked_seq",
        (name, seq),
    )
    .await
    .map(|_| ())
}

/// Settles an embedded delivery: an ack or a term moves the consumer's stored position
/// past the event before the next delivery (so a handler that finishes during shutdown
/// still records it); a nak hands it back for a later attempt.
struct Position {
    event: Event,
    attempt: u32,
    db: Db,
    db_name: String,
    name: String,
    seq: i64,
    done: oneshot::Sender<Settle>,
}

#[async_trait]
impl Delivery for Position {
    fn attempt(&self) -> u32 {
        self.attempt
    }

    fn event(&self) -> Event {
        self.event.clone()
    }

    async fn settle(self: Box<Self>, how: Settle) -> Result<()> {
        let saved = match how {
            Settle::Ack | Settle::Term => save_position(&self.db, &self.name, self.seq).await.on(&self.db_name),
            Settle::Nak(_) => Ok(()),
        };
        let _ = self.done.send(how);
        saved
    }
}

/// A row of the event table as an event: the same id and time live, in history and on
/// rebuild (a body that is not an envelope gets `embedded:<seq>` and the row's time).
fn stored_event(seq: i64, subject: &str, payload: &str, published_at: i64) -> Event {
    Event::from_stored(subject, payload.as_bytes(), None, None, || format!("embedded:{seq}"), from_ms(published_at))
}

/// Pages through the event table by sequence for history; when following, waits for
/// the next publish once caught up.
struct Paging {
    db: Db,
    db_name: String,
    filter: String,
    since_ms: i64,
    after: i64,
    buffer: VecDeque<Event>,
    wake: watch::Receiver<i64>,
    follow: bool,
    failed: bool,
}

impl Paging {
    async fn next(&mut self) -> Option<Result<Event>> {
        loop {
            if let Some(ev) = self.buffer.pop_front() {
                return Some(Ok(ev));
            }
            if self.failed {
                return None;
            }
            let rows: std::result::Result<Vec<(i64, String, String, i64)>, _> = self
                .db
                .fetch_all(
                    "SELECT seq, subject, payload, published_at FROM fraiseql_event WHERE seq > $1 AND published_at >= $2 ORDER BY seq LIMIT 512",
                    (self.after, self.since_ms),
                )
                .await;
            let rows = match rows {
                Ok(r) => r,
                Err(e) => {
                    self.failed = true;
                    return Some(Err(Error::db(&self.db_name, e)));
                }
            };
            if rows.is_empty() {
                if !self.follow {
                    return None;
                }
                tokio::select! {
                    woke = self.wake.changed() => if woke.is_err() { tokio::time::sleep(POLL).await },
                    _ = tokio::time::sleep(POLL * 2) => {}
                }
                continue;
            }
            for (seq, subject, payload, published_at) in rows {
                self.after = seq;
                if subject::matches(&self.filter, &subject) {
                    self.buffer.push_back(stored_event(seq, &subject, &payload, published_at));
                }
            }
        }
    }
}
