//! The transactional outbox: `ctx.publish` inside a step writes the event to
//! `fraiseql_outbox` in the step's own database and transaction, so an event exists if
//! and only if its step committed. After the commit the relay publishes it at once; a
//! sweep picks up what a crash or an unreachable bus left behind. The event id is the
//! JetStream `Nats-Msg-Id`: publishing twice (relay killed between publish and delete) is
//! dropped by the server. What keeps failing becomes a dead letter, kept with its
//! attempts and last error until retried.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tracing::{debug, warn};

use super::envelope::Event;
use crate::db::{Db, Tx};
use crate::error::{Error, Result};
use crate::runtime::Inner;
use crate::saga::log::now_ms;

/// An event written to an outbox, waiting for the relay.
#[derive(Debug, Clone)]
pub(crate) struct OutboxItem {
    pub database: String,
    pub id: String,
    pub subject: String,
    pub event_type: String,
    pub payload: String,
}

/// How long the sweep leaves a fresh row to the immediate relay.
const GRACE_MS: i64 = 5_000;
/// How long a sweep owns a row it is relaying.
const CLAIM_MS: i64 = 30_000;

pub(crate) async fn insert_in(
    tx: &mut Tx,
    database: &str,
    event: &Event,
) -> std::result::Result<OutboxItem, sqlx::Error> {
    let payload = serde_json::to_string(event).expect("an event of JSON values serialises");
    let now = now_ms();
    tx.execute(
        "INSERT INTO fraiseql_outbox (id, subject, event_type, payload, saga_id, status, attempts, created_at, next_attempt_at)
         VALUES ($1, $2, $3, $4, $5, 'pending', 0, $6, $7)",
        (&event.id, &event.subject, &event.event_type, &payload, event.saga_id.as_deref(), now, now + GRACE_MS),
    )
    .await?;
    Ok(OutboxItem {
        database: database.to_string(),
        id: event.id.clone(),
        subject: event.subject.clone(),
        event_type: event.event_type.clone(),
        payload,
    })
}

/// Publish items and settle their rows: delete when acked, count the failure otherwise.
pub(crate) async fn relay(rt: &Arc<Inner>, items: Vec<OutboxItem>) {
    for item in items {
        let Ok(db) = rt.databases.get(&item.database) else { continue };
        match rt.bus.publish_raw(&item.subject, &item.id, &item.event_type, &item.payload).await {
            Ok(()) => {
                crate::fault::point("after_relay_publish", &item.subject);
                if let Err(e) = db.execute("DELETE FROM fraiseql_outbox WHERE id = $1", (&item.id,)).await {
                    // Published; the sweep will publish it again and the server drop it.
                    warn!(event.id = %item.id, error = %e, "published, but could not remove it from the outbox");
                }
                debug!(event.id = %item.id, subject = %item.subject, "relayed");
            }
            Err(e) => failed(rt, db, &item.database, &item.id, &e.to_string()).await,
        }
    }
}

async fn failed(rt: &Arc<Inner>, db: &Db, database: &str, id: &str, error: &str) {
    let max = rt.config.events.relay_max_attempts as i64;
    let backoff = rt.config.events.relay_interval.as_millis() as i64;
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

/// Publish what is due in every database's outbox; returns how many rows were tried.
pub(crate) async fn sweep(rt: &Arc<Inner>) -> usize {
    let mut tried = 0;
    for (name, db) in rt.databases.iter() {
        let rows: std::result::Result<Vec<(String, String, String, String)>, _> = db
            .fetch_all(
                "SELECT id, subject, event_type, payload FROM fraiseql_outbox WHERE status = 'pending' AND next_attempt_at <= $1
                 ORDER BY created_at LIMIT 256",
                (now_ms(),),
            )
            .await;
        match rows {
            Ok(rows) => {
                let mut items = Vec::with_capacity(rows.len());
                for (id, subject, event_type, payload) in rows {
                    // Claim the row (compare-and-set on its due time), so that concurrent
                    // sweeps — here or in other instances — do not relay it at once.
                    let now = now_ms();
                    let claimed = db
                        .execute(
                            "UPDATE fraiseql_outbox SET next_attempt_at = $2 WHERE id = $1 AND status = 'pending' AND next_attempt_at <= $3",
                            (&id, now + CLAIM_MS, now),
                        )
                        .await;
                    if matches!(claimed, Ok(1)) {
                        items.push(OutboxItem { database: name.to_string(), id, subject, event_type, payload });
                    }
                }
                tried += items.len();
                relay(rt, items).await;
            }
            Err(e) => warn!(database = name, error = %e, "cannot read the outbox"),
        }
    }
    tried
}

/// An event that could not be published within its budget.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetter {
    pub database: String,
    pub id: String,
    pub subject: String,
    pub saga_id: Option<String>,
    pub attempts: i64,
    pub last_error: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub created_at: i64,
}

/// Handle returned by [`crate::Runtime::outbox`].
pub struct Outbox {
    pub(crate) rt: Arc<Inner>,
}

impl Outbox {
    /// Dead letters across every database, oldest first.
    pub async fn dead_letters(&self) -> Result<Vec<DeadLetter>> {
        let mut out = Vec::new();
        for (name, db) in self.rt.databases.iter() {
            let rows: Vec<(String, String, Option<String>, i64, Option<String>, i64)> = db
                .fetch_all(
                    "SELECT id, subject, saga_id, attempts, last_error, created_at FROM fraiseql_outbox WHERE status = 'dead' ORDER BY created_at",
                    (),
                )
                .await
                .map_err(|e| Error::db(name, e))?;
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

    /// Events still waiting to be published (not dead), across every database.
    pub async fn pending(&self) -> Result<u64> {
        let mut n = 0;
        for (name, db) in self.rt.databases.iter() {
            let (c,): (i64,) = db
                .fetch_optional("SELECT COUNT(*) FROM fraiseql_outbox WHERE status = 'pending'", ())
                .await
                .map_err(|e| Error::db(name, e))?
                .unwrap_or((0,));
            n += c as u64;
        }
        Ok(n)
    }

    /// Put dead letters back in line (all of them with `None`) and publish them now.
    /// Returns how many were revived.
    pub async fn retry(&self, id: Option<&str>) -> Result<u64> {
        let mut n = 0;
        for (name, db) in self.rt.databases.iter() {
            n += db
                .execute(
                    "UPDATE fraiseql_outbox SET status = 'pending', attempts = 0, next_attempt_at = 0 WHERE status = 'dead' AND ($1 IS NULL OR id = $1)",
                    (id,),
                )
                .await
                .map_err(|e| Error::db(name, e))?;
        }
        sweep(&self.rt).await;
        Ok(n)
    }

    /// Publish what is due now instead of at the next sweep; returns how many were tried.
    pub async fn flush(&self) -> usize {
        sweep(&self.rt).await
    }
}

pub(crate) async fn sweep_loop(rt: Arc<Inner>) {
    let mut stop = rt.stop.subscribe();
    loop {
        tokio::select! {
            _ = stop.wait_for(|stopped| *stopped) => return,
            _ = tokio::time::sleep(rt.config.events.relay_interval.max(Duration::from_millis(10))) => {}
        }
        sweep(&rt).await;
    }
}
