//! Saga state and history, for operators: `rt.sagas().list(..)`, `.get(id)`, `.retry(id)`.

use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

use super::{log, SagaStatus};
use crate::error::{Error, Result};
use crate::registry::DEFAULT_DATABASE;
use crate::runtime::Inner;

/// Handle returned by [`crate::Runtime::sagas`].
pub struct Sagas {
    pub(crate) rt: Arc<Inner>,
}

/// One saga, as listed.
#[derive(Debug, Clone, Serialize)]
pub struct SagaSummary {
    pub id: String,
    pub name: String,
    pub status: SagaStatus,
    pub idempotency_key: Option<String>,
    /// The step whose failure started compensation.
    pub failed_step: Option<String>,
    pub error: Option<String>,
    /// The instance that owns it while it runs.
    pub owner: Option<String>,
    /// Until when the owner holds it (ms since the Unix epoch).
    pub lease_until: i64,
    /// Milliseconds since the Unix epoch.
    pub created_at: i64,
    pub updated_at: i64,
}

/// What happened to one step (or its compensation).
#[derive(Debug, Clone, Serialize)]
pub struct StepRecord {
    pub index: usize,
    pub step: String,
    /// `"step"` or `"compensation"`.
    pub phase: &'static str,
    pub database: String,
    /// `committed`, `aborted` (fenced: will never commit), `failed`, `retrying` or `pending`.
    pub status: String,
    pub attempts: u32,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub error: Option<String>,
}

impl StepRecord {
    pub fn duration_ms(&self) -> Option<i64> {
        Some(self.finished_at? - self.started_at?)
    }
}

/// One saga with its input, state, result and per-step history.
#[derive(Debug, Clone, Serialize)]
pub struct SagaDetail {
    #[serde(flatten)]
    pub summary: SagaSummary,
    pub input: Value,
    pub state: Value,
    pub result: Option<Value>,
    pub steps: Vec<StepRecord>,
}

/// Which sagas to list.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub status: Option<SagaStatus>,
    pub name: Option<String>,
    /// At most this many, newest first (default 100).
    pub limit: Option<u32>,
}

fn summary(row: &log::SagaRow) -> Result<SagaSummary> {
    Ok(SagaSummary {
        id: row.id.clone(),
        name: row.name.clone(),
        status: row.status.parse()?,
        idempotency_key: row.idempotency_key.clone(),
        failed_step: row.failed_step.clone(),
        error: row.error.clone(),
        owner: row.owner.clone(),
        lease_until: row.lease_until,
        created_at: row.created_at,
        updated_at: row.updated_at,
    })
}

impl Sagas {
    fn log_err(&self, e: sqlx::Error) -> Error {
        Error::db(&self.rt.log_db_name, e)
    }

    pub async fn list(&self, filter: ListFilter) -> Result<Vec<SagaSummary>> {
        let rows = log::list(
            &self.rt.log_db,
            filter.status.map(|s| s.as_str()),
            filter.name.as_deref(),
            filter.limit.unwrap_or(100) as i64,
        )
        .await
        .map_err(|e| self.log_err(e))?;
        rows.iter().map(summary).collect()
    }

    /// Sagas in one status (newest first).
    pub async fn with_status(&self, status: SagaStatus) -> Result<Vec<SagaSummary>> {
        self.list(ListFilter { status: Some(status), limit: Some(u32::MAX), ..Default::default() }).await
    }

    pub async fn get(&self, id: &str) -> Result<SagaDetail> {
        let row = log::load(&self.rt.log_db, id)
            .await
            .map_err(|e| self.log_err(e))?
            .ok_or_else(|| Error::NotFound(format!("no saga with id `{id}`")))?;
        let logged_steps: Vec<String> = serde_json::from_str(&row.steps).unwrap_or_default();
        let attempts = log::attempts(&self.rt.log_db, id).await.map_err(|e| self.log_err(e))?;
        // Barriers live in each step's database: read each database once.
        let mut barriers: Vec<(String, log::BarrierRow)> = Vec::new();
        let dbs: std::collections::BTreeSet<String> = logged_steps.iter().map(|s| self.db_of(s)).collect();
        for name in dbs {
            if let Ok(db) = self.rt.databases.get(&name) {
                for b in log::read_barriers(db, id).await.map_err(|e| Error::db(&name, e))? {
                    barriers.push((name.clone(), b));
                }
            }
        }
        let mut steps = Vec::new();
        for (index, step) in logged_steps.iter().enumerate() {
            let database = self.db_of(step);
            for phase in ["step", "compensation"] {
                let barrier = barriers
                    .iter()
                    .find(|(d, b)| *d == database && b.idx as usize == index && b.phase == phase)
                    .map(|x| &x.1);
                let attempt = attempts.iter().find(|a| a.idx as usize == index && a.phase == phase);
                if phase == "compensation" && barrier.is_none() && attempt.is_none() {
                    continue;
                }
                let status = match (barrier, attempt) {
                    // A fenced step whose attempts failed: say why it never committed.
                    (Some(b), Some(a)) if b.outcome == "aborted" => a.status.clone(),
                    (Some(b), _) => b.outcome.clone(),
                    (None, Some(a)) => a.status.clone(),
                    (None, None) => "pending".into(),
                };
                let failed = attempt.map(|a| a.attempts as u32).unwrap_or(0);
                let attempts_total = match barrier {
                    Some(b) if b.outcome == "committed" => (b.attempt as u32).max(failed + 1),
                    _ => failed,
                };
                steps.push(StepRecord {
                    index,
                    step: step.clone(),
                    phase,
                    database: database.clone(),
                    status,
                    attempts: attempts_total,
                    started_at: barrier.filter(|b| b.outcome == "committed").map(|b| b.started_at),
                    finished_at: barrier.filter(|b| b.outcome == "committed").map(|b| b.finished_at),
                    error: attempt.and_then(|a| a.error.clone()),
                });
            }
        }
        Ok(SagaDetail {
            summary: summary(&row)?,
            input: serde_json::from_str(&row.input).unwrap_or(Value::Null),
            state: serde_json::from_str(&row.state).unwrap_or(Value::Null),
            result: row.result.as_deref().and_then(|r| serde_json::from_str(r).ok()),
            steps,
        })
    }

    /// Retry the compensations of a `failed` (or `stuck`) saga, e.g. once the cause
    /// is fixed. Returns its status afterwards.
    pub async fn retry(&self, id: &str) -> Result<SagaStatus> {
        let until = log::now_ms() + self.rt.config.saga.lease_ttl.as_millis() as i64;
        if !log::claim_for_retry(&self.rt.log_db, id, &self.rt.instance, until).await.map_err(|e| self.log_err(e))? {
            return Err(Error::NotFound(format!("no failed or stuck saga with id `{id}`")));
        }
        super::executor::recover_one(&self.rt, id).await?;
        Ok(self.get(id).await?.summary.status)
    }

    fn db_of(&self, step: &str) -> String {
        self.rt.registry.step(step).and_then(|s| s.database).unwrap_or(DEFAULT_DATABASE).to_string()
    }
}
