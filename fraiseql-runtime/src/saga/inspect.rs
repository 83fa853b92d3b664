//! Saga state and history, for operators: `rt.sagas().list(..)`, `.get(id)`, `.retry(id)`.

use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

use super::{log, SagaEngine};
use crate::error::{Error, OnDatabase, Result};
use crate::status::{BarrierOutcome, Phase, SagaStatus, StepStatus};

/// Handle returned by [`crate::Runtime::sagas`].
pub struct Sagas {
    pub(crate) engine: Arc<SagaEngine>,
}

/// One saga, as listed.
#[derive(Debug, Clone, Serialize)]
pub struct SagaSummary {
    /// The saga's id (a UUID), as `sagas show` and [`Sagas::get`] take it.
    pub id: String,
    /// The saga's registered name.
    pub name: String,
    /// Where it stands.
    pub status: SagaStatus,
    /// The key it was started with ([`crate::with_idempotency_key`]), if any: a second
    /// start with the same key gets this saga's result instead of running it again.
    pub idempotency_key: Option<String>,
    /// The step whose failure started compensation.
    pub failed_step: Option<String>,
    /// What went wrong: the error that started compensation, or why the saga is
    /// `failed` or `stuck`. Kept once the saga is compensated.
    pub error: Option<String>,
    /// The instance that owns it while it runs.
    pub owner: Option<String>,
    /// Until when the owner holds it (ms since the Unix epoch).
    pub lease_until: i64,
    /// When it started, in milliseconds since the Unix epoch.
    pub created_at: i64,
    /// When its row last changed (status, state, lease), in milliseconds since the Unix
    /// epoch.
    pub updated_at: i64,
}

/// What happened to one step (or its compensation).
#[derive(Debug, Clone, Serialize)]
pub struct StepRecord {
    /// The step's position in the saga (0-based).
    pub index: usize,
    /// The step's name.
    pub step: String,
    /// The step itself, or its compensation.
    pub phase: Phase,
    /// The database it runs on.
    pub database: String,
    /// `Committed`, `Aborted` (fenced: will never commit), `Failed`, `Retrying` or `Pending`.
    pub status: StepStatus,
    /// Attempts made so far (0 if it has not run).
    pub attempts: u32,
    /// When the committed attempt started, in milliseconds since the Unix epoch; `None`
    /// until it commits.
    pub started_at: Option<i64>,
    /// When the committed attempt finished, in milliseconds since the Unix epoch; `None`
    /// until it commits.
    pub finished_at: Option<i64>,
    /// The last failed attempt's error, if any.
    pub error: Option<String>,
}

impl SagaDetail {
    /// The record of step `name` itself (not its compensation).
    pub fn step(&self, name: &str) -> Option<&StepRecord> {
        self.steps.iter().find(|s| s.step == name && s.phase == Phase::Step)
    }

    /// The record of step `name`'s compensation, if it ran.
    pub fn compensation(&self, name: &str) -> Option<&StepRecord> {
        self.steps.iter().find(|s| s.step == name && s.phase == Phase::Compensation)
    }
}

impl StepRecord {
    /// How long the committed attempt took, in milliseconds; `None` until it commits.
    pub fn duration_ms(&self) -> Option<i64> {
        Some(self.finished_at? - self.started_at?)
    }
}

/// One saga with its input, state, result and per-step history.
#[derive(Debug, Clone, Serialize)]
pub struct SagaDetail {
    /// What `sagas list` shows of it (flattened into the same JSON object).
    #[serde(flatten)]
    pub summary: SagaSummary,
    /// Its inputs, by parameter name.
    pub input: Value,
    /// Its state as last committed (`null` for a saga without state).
    pub state: Value,
    /// What it returned, once `completed`.
    pub result: Option<Value>,
    /// Each step in order, followed by its compensation when one ran.
    pub steps: Vec<StepRecord>,
}

/// Which sagas to list.
///
/// ```
/// # use fraiseql_runtime::{ListFilter, SagaStatus};
/// # let now_ms = 1_790_000_000_000_i64;
/// // Compensated sagas of the last hour, 20 a page.
/// let first = ListFilter {
///     status: Some(SagaStatus::Compensated),
///     started_from: Some(now_ms - 3_600_000),
///     limit: Some(20),
///     ..Default::default()
/// };
/// // The next page: the same, after the last saga of the first.
/// # let last_id = String::new();
/// let next = ListFilter { after_id: Some(last_id), ..first.clone() };
/// # let _ = next;
/// ```
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    /// Only sagas in this status.
    pub status: Option<SagaStatus>,
    /// Only sagas with this name.
    pub name: Option<String>,
    /// Only sagas started at or after this instant (milliseconds since the Unix epoch).
    /// A saga's start is the instant in its id (a UUIDv7, made when the saga function
    /// was called), so this filter reads the primary key's index.
    pub started_from: Option<i64>,
    /// Only sagas started before this instant (milliseconds since the Unix epoch).
    pub started_before: Option<i64>,
    /// Paging: only sagas listed after this one (pass the last id of the previous page).
    pub after_id: Option<String>,
    /// At most this many, newest first (default 100).
    pub limit: Option<u32>,
}

/// How many sagas are in the states an operator watches. (Completed and compensated
/// sagas are history: list them with [`Sagas::list`].)
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SagaCounts {
    /// Running forward now.
    pub running: u64,
    /// Undoing completed steps now.
    pub compensating: u64,
    /// Waiting for an operator: a compensation spent its budget ([`Sagas::retry`]).
    pub failed: u64,
    /// Waiting for an operator: their code changed under them.
    pub stuck: u64,
}

/// The lowest UUIDv7 (as text, the way saga ids are stored) of millisecond `ms`: every
/// saga started at or after `ms` has an id at least this.
fn uuid_v7_floor(ms: i64) -> String {
    let ms = ms.clamp(0, (1 << 48) - 1) as u64;
    format!("{:08x}-{:04x}-0000-0000-000000000000", ms >> 16, ms & 0xffff)
}

fn summary(row: &log::SagaRow) -> Result<SagaSummary> {
    Ok(SagaSummary {
        id: row.id.clone(),
        name: row.name.clone(),
        status: row.status,
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
    /// The sagas `filter` selects, newest first.
    pub async fn list(&self, filter: ListFilter) -> Result<Vec<SagaSummary>> {
        // Sagas this process saw complete read as completed.
        self.engine.flush_completions().await;
        let id_below = [filter.started_before.map(uuid_v7_floor), filter.after_id.clone()].into_iter().flatten().min();
        let query = log::ListQuery {
            status: filter.status,
            name: filter.name.as_deref(),
            id_from: filter.started_from.map(uuid_v7_floor),
            id_below,
            limit: filter.limit.unwrap_or(100) as i64,
        };
        let rows = log::list(&self.engine.log.db, &query).await.on(&self.engine.log.name)?;
        rows.iter().map(summary).collect()
    }

    /// How many sagas are running, compensating, failed or stuck now. Read from the
    /// partial indexes of open and troubled sagas, never from the history of completed
    /// ones, so a console may poll it.
    pub async fn counts(&self) -> Result<SagaCounts> {
        self.engine.flush_completions().await;
        let mut counts = SagaCounts::default();
        for (status, n) in log::count_watched(&self.engine.log.db).await.on(&self.engine.log.name)? {
            let n = n.max(0) as u64;
            match status {
                SagaStatus::Running => counts.running = n,
                SagaStatus::Compensating => counts.compensating = n,
                SagaStatus::Failed => counts.failed = n,
                SagaStatus::Stuck => counts.stuck = n,
                SagaStatus::Completed | SagaStatus::Compensated => {}
            }
        }
        Ok(counts)
    }

    /// Sagas in one status (newest first).
    pub async fn with_status(&self, status: SagaStatus) -> Result<Vec<SagaSummary>> {
        self.list(ListFilter { status: Some(status), limit: Some(u32::MAX), ..Default::default() }).await
    }

    /// One saga with its input, state, result and per-step history.
    pub async fn get(&self, id: &str) -> Result<SagaDetail> {
        self.engine.flush_completions().await;
        let (log_db, log_name) = (&self.engine.log.db, &self.engine.log.name);
        let row = log::load(log_db, id)
            .await
            .on(log_name)?
            .ok_or_else(|| Error::NotFound(format!("no saga with id `{id}`")))?;
        let logged_steps: Vec<String> =
            serde_json::from_str(&row.steps).map_err(|e| row.unreadable("steps", format!("not a JSON list: {e}")))?;
        let attempts = log::attempts(log_db, id).await.on(log_name)?;
        // Barriers live in each step's database: read each database once.
        let mut barriers: Vec<(&str, log::BarrierRow)> = Vec::new();
        let dbs: std::collections::BTreeSet<&str> =
            logged_steps.iter().map(|s| self.engine.catalog.database_of(s)).collect();
        for name in dbs {
            if let Ok(db) = self.engine.databases.get(name) {
                for b in log::read_barriers(db, id).await.on(name)? {
                    barriers.push((name, b));
                }
            }
        }
        // A fork logs the steps it runs: the definition's, from where it starts.
        let first = match self.engine.catalog.saga(&row.name) {
            Ok(def) => super::executor::first_step(def, &row)?,
            Err(_) => 0,
        };
        let mut steps = Vec::new();
        for (index, step) in logged_steps.iter().enumerate().map(|(i, s)| (first + i, s)) {
            let database = self.engine.catalog.database_of(step);
            for phase in [Phase::Step, Phase::Compensation] {
                let barrier = barriers
                    .iter()
                    .find(|(d, b)| *d == database && b.idx as usize == index && b.phase == phase)
                    .map(|x| &x.1);
                let attempt = attempts.iter().find(|a| a.idx as usize == index && a.phase == phase);
                if phase == Phase::Compensation && barrier.is_none() && attempt.is_none() {
                    continue;
                }
                let status = match (barrier, attempt) {
                    // A fenced step whose attempts failed: say why it never committed.
                    (Some(b), Some(a)) if b.outcome == BarrierOutcome::Aborted => a.status.into(),
                    (Some(b), _) => b.outcome.into(),
                    (None, Some(a)) => a.status.into(),
                    (None, None) => StepStatus::Pending,
                };
                let failed = attempt.map(|a| a.attempts as u32).unwrap_or(0);
                let committed = barrier.filter(|b| b.outcome == BarrierOutcome::Committed);
                let attempts_total = match committed {
                    Some(b) => (b.attempt as u32).max(failed + 1),
                    None => failed,
                };
                steps.push(StepRecord {
                    index,
                    step: step.clone(),
                    phase,
                    database: database.to_string(),
                    status,
                    attempts: attempts_total,
                    started_at: committed.map(|b| b.started_at),
                    finished_at: committed.map(|b| b.finished_at),
                    error: attempt.and_then(|a| a.error.clone()),
                });
            }
        }
        let json = |column: &str, text: &str| -> Result<Value> {
            serde_json::from_str(text).map_err(|e| row.unreadable(column, format!("not JSON: {e}")))
        };
        Ok(SagaDetail {
            summary: summary(&row)?,
            input: json("input", &row.input)?,
            state: json("state", &row.state)?,
            result: row.result.as_deref().map(|r| json("result", r)).transpose()?,
            steps,
        })
    }

    /// Start a new saga with this one's input and the state it had before step
    /// `from_step`, running the steps from `from_step` on — to re-drive a saga after an
    /// operator fixed data or code. The steps before it are not run again, and the fork
    /// never compensates them (they belong to the original). The original must have
    /// ended (completed, compensated, failed or stuck) and have committed every step
    /// before `from_step`. Returns the fork once it has ended; its result is its result
    /// step's output when the fork ran that step.
    pub async fn fork(&self, id: &str, from_step: &str) -> Result<SagaDetail> {
        self.engine.flush_completions().await;
        let row = log::load(&self.engine.log.db, id)
            .await
            .on(&self.engine.log.name)?
            .ok_or_else(|| Error::NotFound(format!("no saga with id `{id}`")))?;
        if matches!(row.status, SagaStatus::Running | SagaStatus::Compensating) {
            return Err(Error::InvalidArgument(format!(
                "saga {id} is still {}: fork a saga once it has ended",
                row.status
            )));
        }
        let def = self.engine.catalog.saga(&row.name)?;
        let from = def.steps.iter().position(|s| *s == from_step).ok_or_else(|| {
            Error::InvalidArgument(format!("saga `{}` has no step `{from_step}`; its steps: {:?}", row.name, def.steps))
        })?;
        let first = super::executor::first_step(def, &row)?;
        if from < first || (from == first && first > 0) {
            return Err(Error::InvalidArgument(format!(
                "saga {id} is itself a fork starting at `{}`: fork it from a later step, or fork the saga it came from",
                def.steps[first]
            )));
        }
        // The state after the last step before `from` that recorded one; else the
        // state the saga started with.
        let mut state = None;
        for idx in (first..from).rev() {
            let step = def.steps[idx];
            let name = self.engine.catalog.database_of(step);
            let db = self.engine.databases.get(name)?;
            let barrier = log::read_barrier(db, id, idx, Phase::Step).await.on(name)?;
            match barrier {
                Some(b) if b.outcome == BarrierOutcome::Committed => {
                    if state.is_none() {
                        state = b.state;
                    }
                }
                _ => {
                    return Err(Error::InvalidArgument(format!(
                    "step `{step}` of saga {id} never committed: there is no state before `{from_step}` to fork from"
                )))
                }
            }
        }
        let state: Value = match state {
            Some(text) => serde_json::from_str(&text).map_err(|e| row.unreadable("barrier state", e.to_string()))?,
            None => {
                (def.state.round_trip)().map_err(|e| Error::internal(&format!("saga `{}` state: {e}", def.name)))?
            }
        };
        let input = serde_json::from_str(&row.input).map_err(|e| row.unreadable("input", e.to_string()))?;
        let (fork_id, outcome) = super::executor::fork(self.engine.clone(), def, input, state, from).await?;
        match outcome {
            Ok(_) | Err(Error::SagaAborted { .. }) => {}
            Err(e) => return Err(e),
        }
        tracing::info!(saga.id = %id, fork.id = %fork_id, from = from_step, "saga forked");
        self.get(&fork_id.to_string()).await
    }

    /// Retry the compensations of a `failed` (or `stuck`) saga, e.g. once the cause
    /// is fixed. Returns its status afterwards.
    pub async fn retry(&self, id: &str) -> Result<SagaStatus> {
        let claimed = log::claim_for_retry(&self.engine.log.db, id, &self.engine.instance, self.engine.lease_until())
            .await
            .on(&self.engine.log.name)?;
        if !claimed {
            return Err(Error::NotFound(format!("no failed or stuck saga with id `{id}`")));
        }
        super::executor::recover_one(&self.engine, id).await?;
        Ok(self.get(id).await?.summary.status)
    }
}
