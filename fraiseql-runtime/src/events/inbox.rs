//! The inbox: exactly-once effects for durable handlers declared with `database = "…"`.
//!
//! Protocol, per delivery of event `E` to consumer `C` (handler on database `D`):
//!
//! 1. `BEGIN` on `D`; `INSERT INTO fraiseql_inbox (C, E) ON CONFLICT DO NOTHING`.
//!    No row inserted: `E` was handled and committed before (the process died before its
//!    ack, or the ack was lost) — roll back and ack without running the handler. A
//!    concurrent delivery of the same event (ack wait expired while the first still
//!    ran) blocks on the key until the first commits or rolls back, so it cannot run
//!    the handler beside it.
//! 2. The handler runs in that transaction (`EventTx`): its writes, and the events it
//!    publishes into `D`'s outbox, commit with the inbox row or not at all.
//! 3. `COMMIT`, hand the published events to the relay, then ack. A crash anywhere
//!    before the commit leaves nothing (redelivery runs the handler again); a crash
//!    after it leaves the inbox row (redelivery is acked at step 1).
//!
//! Rows expire after `events.inbox_retention`, longer than JetStream's duplicate window
//! and any redelivery, by a sweep that deletes small pages of old keys (never a key a
//! running handler holds). A rebuild records its replays under a scope of its own
//! (`C#rebuild:<uuid>`), so a replay is never skipped because live delivery handled the
//! event, and its rows go when the rebuild ends.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tracing::{debug, warn};

use super::outbox::OutboxItem;
use super::Events;
use crate::clock::now_ms;
use crate::db::{Databases, Tx};
use crate::error::Result;

/// Expired inbox rows deleted per statement: short transactions, no long lock.
const SWEEP_PAGE: i64 = 1_000;

/// Under which key an inbox records what it handled.
#[derive(Debug, Clone)]
pub(crate) enum Scope {
    /// Live delivery (and retries of dead events): the consumer's own name.
    Live,
    /// One rebuild: a key of its own, so replays are not taken for redeliveries.
    Rebuild(Arc<str>),
}

impl Scope {
    pub(crate) fn fresh_rebuild(consumer: &str) -> Scope {
        Scope::Rebuild(format!("{consumer}#rebuild:{}", uuid::Uuid::now_v7()).into())
    }

    pub(crate) fn key<'a>(&'a self, consumer: &'a str) -> &'a str {
        match self {
            Scope::Live => consumer,
            Scope::Rebuild(k) => k,
        }
    }
}

/// What a handler declared with `database = "…"` gets besides the event: its
/// transaction on that database, in which the runtime also records that the event was
/// handled — so the handler's writes take effect exactly once, even when the event is
/// delivered again (a process killed before its ack, a lost ack).
///
/// ```text
/// #[subscribe("bank.transfer.done", durable = "balances", database = "ledger")]
/// async fn project(event: Event<Transfer>, ctx: &mut EventTx) -> fraiseql::Result<()> {
///     ctx.execute("UPDATE balance SET cents = cents + $1 WHERE account = $2", (event.data.cents, &event.data.to))
///         .await?;
///     Ok(())
/// }
/// ```
pub struct EventTx {
    pub(crate) tx: Tx,
    pub(crate) database: &'static str,
    pub(crate) events: Arc<Events>,
    pub(crate) attempt: u32,
    pub(crate) consumer: &'static str,
    pub(crate) replay: bool,
    pub(crate) published: Vec<OutboxItem>,
}

impl EventTx {
    /// Publish an event as part of this handler's transaction: it is written to the
    /// outbox of the handler's database and relayed after the commit, so it is published
    /// if and only if the handler's work commits. Returns the event's id.
    ///
    /// A rebuild replays the handler: check [`EventTx::is_replay`] before publishing what
    /// was already published the first time.
    pub async fn publish<T: Serialize>(&mut self, subject: &str, data: T) -> Result<String> {
        let item = self.events.outbox.write(&mut self.tx, self.database, subject, data, None).await?;
        let id = item.id.clone();
        self.published.push(item);
        Ok(id)
    }

    crate::db::transaction_methods!("handler");

    /// The name of the database the transaction is on.
    pub fn database(&self) -> &'static str {
        self.database
    }

    /// Every named database, for reads outside this transaction.
    pub fn databases(&self) -> &Databases {
        &self.events.databases
    }

    /// 1 on the first delivery, 2 on the first redelivery, …
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The durable consumer delivering this event.
    pub fn consumer(&self) -> &'static str {
        self.consumer
    }

    /// Whether this run replays history ([`crate::Runtime::rebuild`]) rather than
    /// handling a live delivery.
    pub fn is_replay(&self) -> bool {
        self.replay
    }
}

impl std::fmt::Debug for EventTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventTx")
            .field("database", &self.database)
            .field("consumer", &self.consumer)
            .field("attempt", &self.attempt)
            .finish()
    }
}

/// Record `(scope, event id)` in the transaction's inbox; false when it is there
/// already (the event was handled before).
pub(crate) async fn claim(tx: &mut Tx, scope: &str, event_id: &str) -> std::result::Result<bool, sqlx::Error> {
    let inserted = tx
        .execute(
            "INSERT INTO fraiseql_inbox (consumer, event_id, processed_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            (scope, event_id, now_ms()),
        )
        .await?;
    Ok(inserted == 1)
}

/// Forget a rebuild's scope once it is done, a page at a time (a rebuild of millions of
/// events must not hold one long delete).
pub(crate) async fn drop_scope(events: &Events, database: &str, scope: &str) {
    let Ok(db) = events.databases.get(database) else { return };
    let sql = "DELETE FROM fraiseql_inbox WHERE consumer = $1 AND event_id IN (
                   SELECT event_id FROM fraiseql_inbox WHERE consumer = $1 LIMIT $2)";
    if let Err(e) = delete_in_pages(events, || db.execute(sql, (scope, SWEEP_PAGE))).await {
        warn!(database, scope, error = %e, "could not remove a rebuild's inbox rows; they expire with the retention");
    }
}

/// Run a delete of at most `SWEEP_PAGE` rows until one deletes fewer (or shutdown
/// begins); how many rows went, or the error that stopped it.
async fn delete_in_pages<F, Fut>(events: &Events, mut page: F) -> std::result::Result<u64, sqlx::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = std::result::Result<u64, sqlx::Error>>,
{
    let mut removed = 0;
    loop {
        let n = page().await?;
        removed += n;
        if n < SWEEP_PAGE as u64 || events.lifecycle.is_stopping() {
            return Ok(removed);
        }
    }
}

/// The databases whose inbox this runtime sweeps: those of its transactional handlers.
pub(crate) fn databases(events: &Events) -> BTreeSet<&'static str> {
    events.subscriptions.iter().filter_map(|d| d.transaction_database()).collect()
}

/// How often the sweep runs: a fraction of the retention, at most a minute.
fn sweep_every(retention: Duration) -> Duration {
    (retention / 4).clamp(Duration::from_millis(100), Duration::from_secs(60))
}

/// Start the inbox sweep (if any handler has an inbox).
pub(crate) fn start(events: &Arc<Events>) {
    let targets = databases(events);
    if targets.is_empty() {
        return;
    }
    let ev = events.clone();
    events.lifecycle.spawn_background(async move {
        let every = sweep_every(ev.config.inbox_retention);
        loop {
            tokio::select! {
                _ = ev.lifecycle.stopping() => return,
                _ = tokio::time::sleep(every) => {}
            }
            for database in &targets {
                sweep(&ev, database).await;
            }
        }
    });
}

/// Delete the inbox rows of `database` older than the retention, a page at a time;
/// returns how many went.
pub(crate) async fn sweep(events: &Events, database: &str) -> u64 {
    let Ok(db) = events.databases.get(database) else { return 0 };
    let cutoff = now_ms() - events.config.inbox_retention.as_millis() as i64;
    let sql = "DELETE FROM fraiseql_inbox WHERE (consumer, event_id) IN (
                   SELECT consumer, event_id FROM fraiseql_inbox WHERE processed_at < $1 LIMIT $2)";
    match delete_in_pages(events, || db.execute(sql, (cutoff, SWEEP_PAGE))).await {
        Ok(removed) => {
            if removed > 0 {
                debug!(database, removed, "expired inbox rows removed");
            }
            removed
        }
        Err(e) => {
            warn!(database, error = %e, "could not remove expired inbox rows");
            0
        }
    }
}
