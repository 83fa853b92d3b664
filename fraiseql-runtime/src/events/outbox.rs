//! The transactional outbox: `ctx.publish` inside a step writes the event to
//! `fraiseql_outbox` in the step's own database and transaction, so an event exists if
//! and only if its step committed. The event id is the JetStream `Nats-Msg-Id`:
//! publishing twice (relay killed between publish and delete) is dropped by the server.
//! What keeps failing becomes a dead letter, kept with its attempts and last error
//! until retried.
//!
//! Who publishes a row:
//! - The committing process, at once: after the commit its items go to the in-process
//!   relay, which publishes them pipelined (many acks in flight) and deletes them with
//!   one statement per batch. Such rows are written due `GRACE_MS` later, so no sweep
//!   takes them meanwhile.
//! - Any instance's sweep, when the in-process relay is full (`RELAY_QUEUE` items
//!   waiting): the step then writes its rows due at once and, after the commit, wakes
//!   this instance's sweep and, on PostgreSQL, every other instance's through
//!   `NOTIFY fraiseql_outbox`. So a burst beyond one relay is shared by the fleet, and
//!   a process's memory stays bounded whatever the commit rate.
//! - Any instance's sweep, every `relay_interval`: what a crash or an unreachable bus
//!   left behind. On PostgreSQL a sweep deletes a page in a transaction held open until
//!   the page is acked (rows another sweeper holds are skipped); on SQLite it claims a
//!   page (due time moved `CLAIM_MS` ahead), publishes, then deletes. Either way two
//!   sweeps never take one row, and the next page is read while one is published.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{mpsc, Notify};
use tracing::{debug, warn};

use super::bus::Outgoing;
use super::Events;
use crate::clock::now_ms;
use crate::db::{Db, Tx};
use crate::error::{OnDatabase, Result};

/// An event written to an outbox, waiting for the relay.
#[derive(Debug, Clone)]
pub(crate) struct OutboxItem {
    pub database: String,
    pub id: String,
    pub subject: String,
    pub event_type: String,
    pub payload: String,
    /// The publishing span's trace context (see [`crate::otel`]), for the bus's headers.
    pub traceparent: Option<String>,
    /// Its `tracestate`, if any.
    pub tracestate: Option<String>,
    /// Written for the in-process relay (due later); else due at once, for any sweep.
    pub direct: bool,
}

/// How long the sweep leaves a fresh row to the immediate relay.
const GRACE_MS: i64 = 5_000;
/// How long a sweep owns a row it is relaying.
const CLAIM_MS: i64 = 30_000;
/// Rows a sweep claims at once.
const SWEEP_PAGE: i64 = 1_024;
/// Events the relay publishes with their acks in flight together.
const RELAY_BATCH: usize = 256;
/// Events waiting for the in-process relay beyond which steps leave theirs to the sweeps.
const RELAY_QUEUE: usize = 4_096;
/// The channel on which instances wake each other's sweeps (PostgreSQL).
const CHANNEL: &str = "fraiseql_outbox";

/// Hands events of committed steps to the relay loop (in-process, right after the
/// commit), and wakes the sweeps when it is full.
#[derive(Clone)]
pub(crate) struct Relay {
    tx: mpsc::UnboundedSender<Vec<OutboxItem>>,
    rx: Arc<Mutex<Option<mpsc::UnboundedReceiver<Vec<OutboxItem>>>>>,
    /// Items sent and not yet taken by the relay loop (the channel is unbounded; this
    /// bounds it).
    queued: Arc<AtomicUsize>,
    /// Wakes this instance's sweep.
    sweep_now: Arc<Notify>,
    /// Asks the notifier to wake the other instances' sweeps.
    notify_others: Arc<Notify>,
}

impl Default for Relay {
    fn default() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Relay {
            tx,
            rx: Arc::new(Mutex::new(Some(rx))),
            queued: Default::default(),
            sweep_now: Default::default(),
            notify_others: Default::default(),
        }
    }
}

impl Relay {
    /// Whether the in-process relay takes more items.
    fn has_room(&self) -> bool {
        self.queued.load(Ordering::Relaxed) < RELAY_QUEUE
    }

    /// Queue committed items for publishing: the relay's own, and a wake-up of the
    /// sweeps for those left to them. If the relay loop is gone (shutdown), the sweep
    /// of the next start publishes them.
    pub(crate) fn send(&self, mut items: Vec<OutboxItem>) {
        let before = items.len();
        items.retain(|i| i.direct);
        if items.len() < before {
            self.sweep_now.notify_one();
            self.notify_others.notify_one();
        }
        if !items.is_empty() {
            self.queued.fetch_add(items.len(), Ordering::Relaxed);
            let _ = self.tx.send(items);
        }
    }
}

/// What a saga step needs to publish: the subjects the stream captures (checked before
/// anything is written) and the relay.
#[derive(Clone)]
pub(crate) struct StepOutbox {
    subjects: Arc<[String]>,
    relay: Relay,
}

impl StepOutbox {
    pub(crate) fn new(subjects: Arc<[String]>, relay: Relay) -> StepOutbox {
        StepOutbox { subjects, relay }
    }

    /// Write an event to the outbox of `database` inside the step's (or a transactional
    /// handler's) transaction. Returns
    /// it for the relay (after the commit) and its id.
    pub(crate) async fn write<T: Serialize>(
        &self,
        tx: &mut Tx,
        database: &str,
        subject: &str,
        data: T,
        saga_id: Option<String>,
    ) -> Result<OutboxItem> {
        super::check_captured(&self.subjects, subject)?;
        let (event, payload) = super::encode(subject, data, saga_id)?;
        let now = now_ms();
        let direct = self.relay.has_room();
        let due = if direct { now + GRACE_MS } else { now };
        tx.execute(
            "INSERT INTO fraiseql_outbox (id, subject, event_type, payload, saga_id, status, attempts, created_at, next_attempt_at, traceparent, tracestate)
             VALUES ($1, $2, $3, $4, $5, 'pending', 0, $6, $7, $8, $9)",
            (
                &event.id,
                &event.subject,
                &event.event_type,
                &payload,
                event.saga_id.as_deref(),
                now,
                due,
                event.traceparent.as_deref(),
                event.tracestate.as_deref(),
            ),
        )
        .await
        .on(database)?;
        Ok(OutboxItem {
            database: database.to_string(),
            id: event.id,
            subject: event.subject,
            event_type: event.event_type,
            payload,
            traceparent: event.traceparent,
            tracestate: event.tracestate,
            direct,
        })
    }

    /// Relay events of a step that has committed.
    pub(crate) fn relay(&self, items: Vec<OutboxItem>) {
        self.relay.send(items);
    }
}

/// Start the relay loop and the sweep.
pub(crate) fn start(events: &Arc<Events>) {
    let rx = events.relay.rx.lock().unwrap().take();
    if let Some(mut rx) = rx {
        let ev = events.clone();
        events.lifecycle.spawn_background(async move {
            loop {
                tokio::select! {
                    items = rx.recv() => match items {
                        Some(mut items) => {
                            // Take what else committed meanwhile: one pipelined batch.
                            while items.len() < RELAY_BATCH {
                                match rx.try_recv() {
                                    Ok(more) => items.extend(more),
                                    Err(_) => break,
                                }
                            }
                            ev.relay.queued.fetch_sub(items.len(), Ordering::Relaxed);
                            relay(&ev, items).await
                        }
                        None => return,
                    },
                    _ = ev.lifecycle.halted() => break,
                }
            }
            // Shutdown: publish what committed steps handed over (the sweep of a later
            // start would, but later).
            while let Ok(items) = rx.try_recv() {
                relay(&ev, items).await;
            }
        });
    }
    let ev = events.clone();
    events.lifecycle.spawn_background(async move {
        loop {
            tokio::select! {
                _ = ev.lifecycle.stopping() => return,
                _ = tokio::time::sleep(ev.config.relay_interval.max(Duration::from_millis(10))) => {}
                _ = ev.relay.sweep_now.notified() => {}
            }
            sweep(&ev).await;
        }
    });
    for (name, db) in events.databases.iter() {
        if let Some(pool) = db.as_postgres() {
            events.lifecycle.spawn_background(listen(events.clone(), name.to_string(), pool.clone()));
        }
    }
    let ev = events.clone();
    events.lifecycle.spawn_background(async move {
        loop {
            tokio::select! {
                _ = ev.lifecycle.stopping() => return,
                _ = ev.relay.notify_others.notified() => {}
            }
            for (name, db) in ev.databases.iter() {
                if db.backend() == crate::db::Backend::Postgres {
                    if let Err(e) = db.execute("SELECT pg_notify($1, '')", (CHANNEL,)).await {
                        debug!(database = name, error = %e, "could not wake the other instances' sweeps");
                    }
                }
            }
            // Commits arriving meanwhile are covered by the wake-up just sent: one
            // NOTIFY per burst, not per commit.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
}

/// Wake this instance's sweep when another instance left rows to the sweeps of a
/// PostgreSQL database (its own NOTIFYs wake it too, harmlessly).
async fn listen(events: Arc<Events>, database: String, pool: sqlx::PgPool) {
    // A connection of its own, outside the application's pool: a listener holds its
    // connection for good, which would starve a small pool.
    let own = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .max_lifetime(None)
        .idle_timeout(None)
        .connect_lazy_with((*pool.connect_options()).clone());
    listen_on(&events, &database, &own).await;
    own.close().await;
}

async fn listen_on(events: &Events, database: &str, pool: &sqlx::PgPool) {
    loop {
        let listener = async {
            let mut l = sqlx::postgres::PgListener::connect_with(pool).await?;
            l.ignore_pool_close_event(true);
            l.listen(CHANNEL).await?;
            Ok::<_, sqlx::Error>(l)
        };
        let mut listener = tokio::select! {
            _ = events.lifecycle.stopping() => return,
            l = listener => match l {
                Ok(l) => l,
                Err(e) => {
                    debug!(database, error = %e, "cannot listen for outbox wake-ups; the periodic sweep covers");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            },
        };
        loop {
            tokio::select! {
                _ = events.lifecycle.stopping() => return,
                n = listener.recv() => match n {
                    Ok(_) => events.relay.sweep_now.notify_one(),
                    Err(e) => {
                        debug!(database, error = %e, "lost the outbox wake-up connection; listening again");
                        break;
                    }
                },
            }
        }
    }
}

/// Publish items and settle their rows: delete when acked, count the failure otherwise.
/// The publishes are pipelined (many acks in flight) and the deletes run together, so a
/// backlog drains at the bus's speed rather than one round trip pair per event.
pub(crate) async fn relay(events: &Events, items: Vec<OutboxItem>) {
    for chunk in items.chunks(RELAY_BATCH) {
        let results = publish(events, chunk).await;
        settle(events, chunk, results).await;
    }
}

/// Publish items, pipelined; one result per item.
async fn publish(events: &Events, items: &[OutboxItem]) -> Vec<Result<()>> {
    let msgs: Vec<Outgoing<'_>> = items
        .iter()
        .map(|i| Outgoing {
            subject: &i.subject,
            id: &i.id,
            event_type: &i.event_type,
            payload: &i.payload,
            traceparent: i.traceparent.as_deref(),
            tracestate: i.tracestate.as_deref(),
        })
        .collect();
    let results = events.bus.publish_many(&msgs).await;
    crate::telemetry::events_published("outbox", results.iter().filter(|r| r.is_ok()).count());
    for (item, r) in items.iter().zip(&results) {
        if r.is_ok() {
            crate::fault::point("after_relay_publish", &item.subject);
            debug!(event.id = %item.id, subject = %item.subject, "relayed");
        }
    }
    results
}

/// Settle published items' rows: acked ones deleted (one statement per database), the
/// others' failure counted.
async fn settle(events: &Events, items: &[OutboxItem], results: Vec<Result<()>>) {
    let mut acked: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    let mut failures = Vec::new();
    for (item, r) in items.iter().zip(results) {
        match r {
            Ok(()) => acked.entry(item.database.as_str()).or_default().push(item.id.as_str()),
            Err(e) => failures.push((item, e.to_string())),
        }
    }
    for (database, ids) in acked {
        let Ok(db) = events.databases.get(database) else { continue };
        let sql = format!("DELETE FROM fraiseql_outbox WHERE id IN ({})", db.dialect().texts_of_json(1));
        let list = serde_json::to_string(&ids).unwrap_or_default();
        if let Err(e) = db.execute(&sql, (list,)).await {
            // Published; the sweep will publish them again and the server drop them.
            warn!(database, events = ids.len(), error = %e, "published, but could not remove them from the outbox");
        }
    }
    let failed_rows = failures.iter().map(|(item, e)| async move {
        if let Ok(db) = events.databases.get(&item.database) {
            failed(events, db, &item.database, &item.id, e).await
        }
    });
    futures_util::future::join_all(failed_rows).await;
}

async fn failed(events: &Events, db: &Db, database: &str, id: &str, error: &str) {
    let max = events.config.relay_max_attempts as i64;
    let backoff = events.config.relay_interval.as_millis() as i64;
    let r = db
        .execute(
            "UPDATE fraiseql_outbox SET attempts = attempts + 1, last_error = $2,
                 status = CASE WHEN attempts + 1 >= $3 THEN 'dead' ELSE 'pending' END,
                 next_attempt_at = $4 + $5 * (attempts + 1)
             WHERE id = $1 AND status = 'pending'",
            (id, error, max, now_ms(), backoff),
        )
        .await;
    match r {
        Ok(_) => warn!(event.id = %id, database, error, "could not publish; kept in the outbox"),
        Err(e) => warn!(event.id = %id, database, error = %e, "could not record a failed publish"),
    }
}

/// What a sweep reads of a row it took or claimed: `id, subject, event_type, payload,
/// traceparent, tracestate, created_at, next_attempt_at`.
#[derive(sqlx::FromRow)]
struct SweptRow {
    id: String,
    subject: String,
    event_type: String,
    payload: String,
    traceparent: Option<String>,
    tracestate: Option<String>,
    created_at: i64,
    next_attempt_at: i64,
}

/// Publish what is due in every database's outbox, page after page while pages come back
/// full; returns how many rows were tried. The next page is taken while the current one
/// is being published, and pages are sent in order, so a backlog drains at the bus's pace.
pub(crate) async fn sweep(events: &Events) -> usize {
    let mut tried = 0;
    for (name, db) in events.databases.iter() {
        tried += match db.backend() {
            crate::db::Backend::Postgres => sweep_taking(events, name, db).await,
            crate::db::Backend::Sqlite => sweep_claiming(events, name, db).await,
        };
    }
    tried
}

/// PostgreSQL: a page is taken by deleting it in a transaction that stays open while it
/// is published, and commits once every event is acked — one write per row. A crash
/// before the commit rolls the delete back (the events are published again and dropped
/// by the server's de-duplication); other sweepers skip the page's locked rows.
async fn sweep_taking(events: &Events, name: &str, db: &Db) -> usize {
    let mut tried = 0;
    let mut page = take(name, db, i64::MIN).await;
    while let Some((tx, items, last_due)) = page.take() {
        let full = items.len() as i64 == SWEEP_PAGE;
        tried += items.len();
        let next = async {
            if full && !events.lifecycle.is_stopping() {
                take(name, db, last_due).await
            } else {
                None
            }
        };
        let current = async {
            let results = publish(events, &items).await;
            if results.iter().all(Result::is_ok) {
                if let Err(e) = tx.commit().await {
                    warn!(database = name, error = %e, "published, but could not remove them from the outbox");
                }
            } else {
                // Some failed: put the page back, then settle row by row.
                let _ = tx.rollback().await;
                settle(events, &items, results).await;
            }
        };
        page = tokio::join!(current, next).1;
    }
    tried
}

/// The due rows of a page, deleted in an open transaction (see [`sweep_taking`]), and
/// the last due time taken. A page starts where the previous one ended (`after`): the
/// index entries of rows just deleted stay until vacuum, and a scan from the start
/// would walk all of them again, page after page.
async fn take(name: &str, db: &Db, after: i64) -> Option<(Tx, Vec<OutboxItem>, i64)> {
    let taken = async {
        let mut tx = db.begin().await?;
        let rows: Vec<SweptRow> = tx
            .fetch_all(
                "DELETE FROM fraiseql_outbox WHERE id IN (
                     SELECT id FROM fraiseql_outbox
                     WHERE status = 'pending' AND next_attempt_at >= $1 AND next_attempt_at <= $2
                     ORDER BY next_attempt_at LIMIT $3 FOR UPDATE SKIP LOCKED)
                 RETURNING id, subject, event_type, payload, traceparent, tracestate, created_at, next_attempt_at",
                (after, now_ms(), SWEEP_PAGE),
            )
            .await?;
        Ok::<_, sqlx::Error>((tx, rows))
    };
    match taken.await {
        Ok((_, rows)) if rows.is_empty() => None,
        Ok((tx, rows)) => {
            let last_due = rows.iter().map(|r| r.next_attempt_at).max().unwrap_or(after);
            Some((tx, items_of(name, rows), last_due))
        }
        Err(e) => {
            warn!(database = name, error = %e, "cannot read the outbox");
            None
        }
    }
}

/// SQLite: the embedded bus may write to this very database, so no transaction may stay
/// open across a publish; a page is claimed, published, then deleted.
async fn sweep_claiming(events: &Events, name: &str, db: &Db) -> usize {
    let mut tried = 0;
    let mut page = claim(name, db).await;
    while let Some(items) = page.take() {
        let full = items.len() as i64 == SWEEP_PAGE;
        tried += items.len();
        let next = async {
            if full && !events.lifecycle.is_stopping() {
                claim(name, db).await
            } else {
                None
            }
        };
        page = tokio::join!(relay(events, items), next).1;
    }
    tried
}

/// Rows in commit order (RETURNING has none) as items.
fn items_of(name: &str, mut rows: Vec<SweptRow>) -> Vec<OutboxItem> {
    rows.sort_by_key(|r| r.created_at);
    rows.into_iter()
        .map(|r| OutboxItem {
            database: name.to_string(),
            id: r.id,
            subject: r.subject,
            event_type: r.event_type,
            payload: r.payload,
            traceparent: r.traceparent,
            tracestate: r.tracestate,
            direct: false,
        })
        .collect()
}

/// Claim a page of due rows in one statement: their due time moves `CLAIM_MS` ahead
/// (re-checked row by row), so concurrent sweeps never relay a row at once. Due order
/// is commit order except for rows that failed before; each page is published in
/// commit order.
async fn claim(name: &str, db: &Db) -> Option<Vec<OutboxItem>> {
    let now = now_ms();
    let sql = "UPDATE fraiseql_outbox SET next_attempt_at = $2
         WHERE status = 'pending' AND next_attempt_at <= $1 AND id IN (
             SELECT id FROM fraiseql_outbox WHERE status = 'pending' AND next_attempt_at <= $1
             ORDER BY next_attempt_at LIMIT $3)
         RETURNING id, subject, event_type, payload, traceparent, tracestate, created_at, next_attempt_at";
    match db.fetch_all::<SweptRow, _>(sql, (now, now + CLAIM_MS, SWEEP_PAGE)).await {
        Ok(rows) if rows.is_empty() => None,
        Ok(rows) => Some(items_of(name, rows)),
        Err(e) => {
            warn!(database = name, error = %e, "cannot read the outbox");
            None
        }
    }
}

/// An event that could not be published within its budget.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetter {
    /// The database whose outbox holds it (the publishing step's).
    pub database: String,
    /// The event's id; pass it to [`Outbox::retry`] to publish it again.
    pub id: String,
    /// The subject it is for.
    pub subject: String,
    /// The saga whose step published it, if any.
    pub saga_id: Option<String>,
    /// Publish attempts made.
    pub attempts: i64,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// When the step wrote it, in milliseconds since the Unix epoch.
    pub created_at: i64,
}

/// One database's outbox, as an operator sees it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct OutboxBacklog {
    /// The database.
    pub database: String,
    /// Events committed and not yet published (nor dead).
    pub pending: u64,
    /// Dead letters (see [`Outbox::dead_letters`]).
    pub dead: u64,
    /// When the oldest pending event was committed, in milliseconds since the Unix epoch.
    pub oldest_pending_at: Option<i64>,
    /// How far the relay is behind: the age of the oldest pending event (zero when none).
    #[serde(serialize_with = "millis")]
    pub lag: Duration,
}

fn millis<S: serde::Serializer>(d: &Duration, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

/// `id, subject, saga_id, attempts, last_error, created_at` of a dead outbox row.
type DeadLetterRow = (String, String, Option<String>, i64, Option<String>, i64);

/// Handle returned by [`crate::Runtime::outbox`].
pub struct Outbox {
    pub(crate) events: Arc<Events>,
}

impl Outbox {
    /// Dead letters across every database, oldest first.
    pub async fn dead_letters(&self) -> Result<Vec<DeadLetter>> {
        let mut out = Vec::new();
        for (name, db) in self.events.databases.iter() {
            let rows: Vec<DeadLetterRow> = db
                .fetch_all(
                    "SELECT id, subject, saga_id, attempts, last_error, created_at FROM fraiseql_outbox WHERE status = 'dead' ORDER BY created_at",
                    (),
                )
                .await
                .on(name)?;
            out.extend(rows.into_iter().map(|(id, subject, saga_id, attempts, last_error, created_at)| DeadLetter {
                database: name.to_string(),
                id,
                subject,
                saga_id,
                attempts,
                last_error,
                created_at,
            }));
        }
        out.sort_by_key(|d| d.created_at);
        Ok(out)
    }

    /// Each database's backlog: pending and dead events, and the relay's lag.
    pub async fn backlog(&self) -> Result<Vec<OutboxBacklog>> {
        let mut out = Vec::new();
        let now = now_ms();
        for (name, db) in self.events.databases.iter() {
            let (pending, dead, oldest): (Option<i64>, Option<i64>, Option<i64>) = db
                .fetch_one(
                    "SELECT SUM(CASE WHEN status = 'pending' THEN 1 ELSE 0 END), SUM(CASE WHEN status = 'dead' THEN 1 ELSE 0 END),
                            MIN(CASE WHEN status = 'pending' THEN created_at END)
                     FROM fraiseql_outbox",
                    (),
                )
                .await
                .on(name)?;
            out.push(OutboxBacklog {
                database: name.to_string(),
                pending: pending.unwrap_or(0) as u64,
                dead: dead.unwrap_or(0) as u64,
                oldest_pending_at: oldest,
                lag: Duration::from_millis(oldest.map_or(0, |t| (now - t).max(0) as u64)),
            });
        }
        Ok(out)
    }

    /// Events still waiting to be published (not dead), across every database.
    pub async fn pending(&self) -> Result<u64> {
        let mut n = 0;
        for (name, db) in self.events.databases.iter() {
            let (c,): (i64,) = db
                .fetch_optional("SELECT COUNT(*) FROM fraiseql_outbox WHERE status = 'pending'", ())
                .await
                .on(name)?
                .unwrap_or((0,));
            n += c as u64;
        }
        Ok(n)
    }

    /// Put dead letters back in line (all of them with `None`) and publish them now.
    /// Returns how many were revived.
    pub async fn retry(&self, id: Option<&str>) -> Result<u64> {
        let mut n = 0;
        for (name, db) in self.events.databases.iter() {
            n += db
                .execute(
                    "UPDATE fraiseql_outbox SET status = 'pending', attempts = 0, next_attempt_at = 0 WHERE status = 'dead' AND ($1 IS NULL OR id = $1)",
                    (id,),
                )
                .await
                .on(name)?;
        }
        sweep(&self.events).await;
        Ok(n)
    }

    /// Publish what is due now instead of at the next sweep; returns how many were tried.
    pub async fn flush(&self) -> usize {
        sweep(&self.events).await
    }
}
