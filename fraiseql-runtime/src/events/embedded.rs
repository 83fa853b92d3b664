//! The zero-service bus: events kept in a table of the log database (`fraiseql_event`),
//! so history survives a restart when the databases are files, with the same subject
//! semantics and the same de-duplication by event id as JetStream.

use serde_json::Value;
use tokio::sync::broadcast;

use super::envelope::Event;
use super::subject;
use crate::db::{Backend, Db};
use crate::error::{Error, Result};

pub(crate) struct EmbeddedBus {
    pub(crate) db: Db,
    pub(crate) db_name: String,
    /// Live events, for in-process subscribers.
    pub(crate) live: broadcast::Sender<Event<Value>>,
}

impl EmbeddedBus {
    /// Its table is made by `crate::migrate` (component `embedded_bus`).
    pub(crate) async fn open(db: Db, db_name: &str) -> Result<EmbeddedBus> {
        let (live, _) = broadcast::channel(4096);
        Ok(EmbeddedBus { db, db_name: db_name.to_string(), live })
    }

    /// Store (once per id) and hand to live subscribers.
    pub(crate) async fn publish(&self, event: &Event<Value>, payload: &str) -> Result<()> {
        const INSERT: &str = "INSERT INTO fraiseql_event (id, subject, payload, published_at) VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING";
        let args = (&event.id, &event.subject, payload, crate::saga::log::now_ms());
        let stored = match self.db.backend() {
            // Readers go by sequence, so sequences must become visible in order. On
            // PostgreSQL two inserts can commit out of sequence order (a reader would skip
            // the late one for good); a table lock held to the commit serialises them.
            // SQLite already writes one transaction at a time.
            Backend::Postgres => {
                let mut tx = self.db.begin().await.map_err(|e| Error::db(&self.db_name, e))?;
                tx.execute("LOCK TABLE fraiseql_event IN SHARE ROW EXCLUSIVE MODE", ())
                    .await
                    .map_err(|e| Error::db(&self.db_name, e))?;
                let n = tx.execute(INSERT, args).await.map_err(|e| Error::db(&self.db_name, e))?;
                tx.commit().await.map_err(|e| Error::db(&self.db_name, e))?;
                n
            }
            Backend::Sqlite => self.db.execute(INSERT, args).await.map_err(|e| Error::db(&self.db_name, e))?,
        };
        if stored == 1 {
            let _ = self.live.send(event.clone());
        }
        Ok(())
    }

    pub(crate) async fn history(&self, filter: &str, since: Option<time::OffsetDateTime>) -> Result<Vec<Event<Value>>> {
        let since_ms = since.map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64).unwrap_or(i64::MIN);
        let rows: Vec<(i64, String, String)> = self
            .db
            .fetch_all(
                "SELECT seq, subject, payload FROM fraiseql_event WHERE published_at >= $1 ORDER BY seq",
                (since_ms,),
            )
            .await
            .map_err(|e| Error::db(&self.db_name, e))?;
        Ok(rows
            .into_iter()
            .filter(|(_, s, _)| subject::matches(filter, s))
            .map(|(seq, s, p)| Event::from_message(&s, p.as_bytes(), None, None, || format!("embedded:{seq}")))
            .collect())
    }
}
