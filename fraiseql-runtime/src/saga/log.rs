//! The durable saga log (in the log database) and the barriers (in each step's
//! database). SQL is written once for both backends: `$n` placeholders, `BIGINT`
//! milliseconds, JSON as `TEXT`. The tables are made by `crate::migrate`.
//!
//! The barrier is the source of truth for "did this step commit": a `committed` row is
//! inserted inside the step's own transaction, so it exists if and only if the step's
//! writes do. A runtime that must know the outcome of a step it cannot see (its own
//! commit whose reply was lost, or a step of a saga whose process died) *fences* it:
//! it inserts an `aborted` row unless one exists, which waits for any in-flight
//! transaction holding that key, then reads back which one won. After a fence, the
//! step can no longer commit except by its fencer, which may lift its own fence inside
//! the retry's transaction.
//!
//! The saga's own rows ride on the steps where they can: the first step on the log
//! database writes the saga's log row (unless an idempotency key must be claimed before
//! any work), and the last step on the log database records the completion, each with
//! the barrier (`record_step`; one statement on PostgreSQL). Both are then true exactly
//! when that step committed. Otherwise the log row is written before the first step and
//! completions are recorded in batches, off the caller's path (the outcome is already
//! decided by the last barrier).

use uuid::Uuid;

use crate::clock::now_ms;
use crate::db::{Db, Tx};
use crate::error::Error;
use crate::status::{AttemptStatus, BarrierOutcome, Phase, SagaStatus};

/// A row of `fraiseql_saga`.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct SagaRow {
    pub id: String,
    pub name: String,
    pub idempotency_key: Option<String>,
    #[sqlx(try_from = "String")]
    pub status: SagaStatus,
    pub steps: String,
    pub input: String,
    pub state: String,
    pub result: Option<String>,
    pub failed_step: Option<String>,
    pub error: Option<String>,
    pub owner: Option<String>,
    pub lease_until: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

impl SagaRow {
    /// The id as a UUID.
    pub(crate) fn uuid(&self) -> Result<Uuid, Error> {
        self.id.parse().map_err(|e| self.unreadable("id", format!("not a UUID: {e}")))
    }

    /// An error naming this row and what is wrong with one of its columns.
    pub(crate) fn unreadable(&self, column: &str, detail: impl std::fmt::Display) -> Error {
        Error::Unreadable {
            what: format!("saga {} (`{}`) in fraiseql_saga", self.id, self.name),
            detail: format!("column `{column}`: {detail}"),
        }
    }
}

const SAGA_COLUMNS: &str =
    "id, name, idempotency_key, status, steps, input, state, result, failed_step, error, owner, lease_until, created_at, updated_at";

/// A saga about to be logged.
pub(crate) struct NewSaga {
    pub id: Uuid,
    pub name: String,
    pub key: Option<String>,
    pub steps: String,
    pub input: String,
    pub state: String,
    pub owner: String,
    pub lease_ttl_ms: i64,
}

const INSERT_SAGA: &str = "INSERT INTO fraiseql_saga (id, name, idempotency_key, status, steps, input, state, owner, lease_until, created_at, updated_at, failed_step, error)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10, $11, $12) ON CONFLICT DO NOTHING";

type SagaArgs<'a> = (
    String,
    &'a str,
    Option<&'a str>,
    &'a str,
    &'a str,
    &'a str,
    &'a str,
    &'a str,
    i64,
    i64,
    Option<&'a str>,
    Option<&'a str>,
);

fn saga_args<'a>(s: &'a NewSaga, status: SagaStatus, failed: Option<(&'a str, &'a str)>) -> SagaArgs<'a> {
    let now = now_ms();
    (
        s.id.to_string(),
        &s.name,
        s.key.as_deref(),
        status.as_str(),
        &s.steps,
        &s.input,
        &s.state,
        &s.owner,
        now + s.lease_ttl_ms,
        now,
        failed.map(|f| f.0),
        failed.map(|f| f.1),
    )
}

/// Insert a new saga; `false` when its idempotency key is taken.
pub(crate) async fn insert_saga(
    db: &Db,
    s: &NewSaga,
    status: SagaStatus,
    failed: Option<(&str, &str)>,
) -> Result<bool, sqlx::Error> {
    Ok(db.execute(INSERT_SAGA, saga_args(s, status, failed)).await? == 1)
}

/// The same at the start of the first step's transaction (when it runs on the log
/// database and the saga has an idempotency key): the saga is logged if and only if its
/// first step commits, in one commit.
pub(crate) async fn insert_saga_in(tx: &mut Tx, s: &NewSaga) -> Result<bool, sqlx::Error> {
    Ok(tx.execute(INSERT_SAGA, saga_args(s, SagaStatus::Running, None)).await? == 1)
}

pub(crate) async fn load(db: &Db, id: &str) -> Result<Option<SagaRow>, sqlx::Error> {
    let sql = format!("SELECT {SAGA_COLUMNS} FROM fraiseql_saga WHERE id = $1");
    db.fetch_optional::<SagaRow, _>(&sql, (id,)).await
}

pub(crate) async fn load_by_key(db: &Db, key: &str) -> Result<Option<SagaRow>, sqlx::Error> {
    let sql = format!("SELECT {SAGA_COLUMNS} FROM fraiseql_saga WHERE idempotency_key = $1");
    db.fetch_optional::<SagaRow, _>(&sql, (key,)).await
}

/// Which rows [`list`] reads: bound values only.
pub(crate) struct ListQuery<'a> {
    pub status: Option<SagaStatus>,
    pub name: Option<&'a str>,
    /// Lower bound on the id (inclusive): sagas started at or after a time.
    pub id_from: Option<String>,
    /// Upper bound on the id (exclusive): sagas started before a time, or older than a
    /// page's last saga.
    pub id_below: Option<String>,
    pub limit: i64,
}

pub(crate) async fn list(db: &Db, q: &ListQuery<'_>) -> Result<Vec<SagaRow>, sqlx::Error> {
    // Typed placeholders: PostgreSQL cannot infer the type of a parameter it first meets
    // compared with NULL.
    let d = db.dialect();
    let p = |n| d.placeholder(n, Some("text"));
    let (p1, p2, p3, p4) = (p(1), p(2), p(3), p(4));
    let sql = format!(
        "SELECT {SAGA_COLUMNS} FROM fraiseql_saga
         WHERE ({p1} IS NULL OR status = {p1}) AND ({p2} IS NULL OR name = {p2})
           AND ({p3} IS NULL OR id >= {p3}) AND ({p4} IS NULL OR id < {p4})
         ORDER BY id DESC LIMIT $5" // ids are UUIDv7: id order is start order
    );
    db.fetch_all::<SagaRow, _>(
        &sql,
        (q.status.map(SagaStatus::as_str), q.name, q.id_from.as_deref(), q.id_below.as_deref(), q.limit),
    )
    .await
}

/// How many sagas are running, compensating, failed or stuck. Two statements, each with
/// the predicate of one partial index (`fraiseql_saga_open`, `fraiseql_saga_trouble`), so
/// that neither reads the table's history of completed sagas.
pub(crate) async fn count_watched(db: &Db) -> Result<Vec<(SagaStatus, i64)>, sqlx::Error> {
    const OPEN: &str =
        "SELECT status, COUNT(*) FROM fraiseql_saga WHERE status IN ('running', 'compensating') GROUP BY status";
    const TROUBLE: &str =
        "SELECT status, COUNT(*) FROM fraiseql_saga WHERE status IN ('failed', 'stuck') GROUP BY status";
    let mut out = Vec::new();
    for sql in [OPEN, TROUBLE] {
        let rows: Vec<(String, i64)> = db.fetch_all(sql, ()).await?;
        out.extend(rows.into_iter().filter_map(|(s, n)| Some((s.parse().ok()?, n))));
    }
    Ok(out)
}

/// Change status, fenced by ownership: `false` if another instance owns the saga now.
#[allow(clippy::too_many_arguments)] // the columns of one UPDATE
pub(crate) async fn set_status(
    db: &Db,
    id: Uuid,
    owner: &str,
    status: SagaStatus,
    state: &str,
    failed_step: Option<&str>,
    error: Option<&str>,
    release: bool,
) -> Result<bool, sqlx::Error> {
    let n = db
        .execute(
            "UPDATE fraiseql_saga SET status = $3, state = $4, failed_step = COALESCE($5, failed_step),
                 error = COALESCE($6, error), owner = CASE WHEN $7 THEN NULL ELSE owner END, updated_at = $8
             WHERE id = $1 AND owner = $2",
            (id.to_string(), owner, status.as_str(), state, failed_step, error, release, now_ms()),
        )
        .await?;
    Ok(n == 1)
}

/// Mark sagas `completed` in one statement. Called off the caller's path: once the last
/// step's barrier is committed the saga's outcome is decided; this only records it.
pub(crate) async fn complete_batch(db: &Db, items: &[(String, String, String)]) -> Result<(), sqlx::Error> {
    let now = now_ms();
    match db {
        Db::Postgres(pool) => {
            let ids: Vec<&str> = items.iter().map(|i| i.0.as_str()).collect();
            let results: Vec<&str> = items.iter().map(|i| i.1.as_str()).collect();
            let states: Vec<&str> = items.iter().map(|i| i.2.as_str()).collect();
            sqlx::query(
                "UPDATE fraiseql_saga AS s SET status = 'completed', result = v.result, state = v.state, owner = NULL, updated_at = $4
                 FROM UNNEST($1::text[], $2::text[], $3::text[]) AS v(id, result, state)
                 WHERE s.id = v.id AND s.status = 'running'",
            )
            .bind(ids)
            .bind(results)
            .bind(states)
            .bind(now)
            .execute(pool)
            .await?;
        }
        Db::Sqlite(pool) => {
            let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
            for (id, result, state) in items {
                sqlx::query(
                    "UPDATE fraiseql_saga SET status = 'completed', result = $2, state = $3, owner = NULL, updated_at = $4
                     WHERE id = $1 AND status = 'running'",
                )
                .bind(id)
                .bind(result)
                .bind(state)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
pub(crate) async fn record_attempt(
    db: &Db,
    saga_id: Uuid,
    idx: usize,
    phase: Phase,
    step: &str,
    attempts: u32,
    status: AttemptStatus,
    error: Option<&str>,
) -> Result<(), sqlx::Error> {
    db.execute(
        "INSERT INTO fraiseql_saga_attempt (saga_id, idx, phase, step, attempts, status, error, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (saga_id, idx, phase) DO UPDATE SET attempts = fraiseql_saga_attempt.attempts + 1,
             status = excluded.status, error = COALESCE(excluded.error, fraiseql_saga_attempt.error), updated_at = excluded.updated_at",
        (saga_id.to_string(), idx as i64, phase.as_str(), step, attempts as i64, status.as_str(), error, now_ms()),
    )
    .await?;
    Ok(())
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct AttemptRow {
    pub idx: i64,
    #[sqlx(try_from = "String")]
    pub phase: Phase,
    pub attempts: i64,
    #[sqlx(try_from = "String")]
    pub status: AttemptStatus,
    pub error: Option<String>,
}

pub(crate) async fn attempts(db: &Db, saga_id: &str) -> Result<Vec<AttemptRow>, sqlx::Error> {
    db.fetch_all::<AttemptRow, _>(
        "SELECT idx, phase, attempts, status, error FROM fraiseql_saga_attempt WHERE saga_id = $1 ORDER BY idx, phase",
        (saga_id,),
    )
    .await
}

/// Keep this instance's sagas leased.
pub(crate) async fn renew_leases(db: &Db, owner: &str, until: i64) -> Result<u64, sqlx::Error> {
    db.execute(
        "UPDATE fraiseql_saga SET lease_until = $2 WHERE owner = $1 AND status IN ('running', 'compensating')",
        (owner, until),
    )
    .await
}

/// Leave a saga as a process killed now would: nobody renews its lease any more, and
/// it has expired (an injected crash, `fraiseql::testing`).
pub(crate) async fn abandon(db: &Db, id: &str) -> Result<u64, sqlx::Error> {
    db.execute("UPDATE fraiseql_saga SET owner = 'crashed', lease_until = 0 WHERE id = $1", (id,)).await
}

/// Unfinished sagas whose owner stopped renewing.
pub(crate) async fn orphans(db: &Db, now: i64, limit: i64) -> Result<Vec<String>, sqlx::Error> {
    let rows: Vec<(String,)> = db
        .fetch_all(
            "SELECT id FROM fraiseql_saga WHERE status IN ('running', 'compensating') AND lease_until < $1
             ORDER BY lease_until LIMIT $2",
            (now, limit),
        )
        .await?;
    Ok(rows.into_iter().map(|r| r.0).collect())
}

/// Take a saga over if its lease is still expired (compare-and-set: two instances
/// racing for the same saga cannot both win).
pub(crate) async fn claim(db: &Db, id: &str, owner: &str, until: i64, now: i64) -> Result<bool, sqlx::Error> {
    let n = db
        .execute(
            "UPDATE fraiseql_saga SET owner = $2, lease_until = $3, updated_at = $4
             WHERE id = $1 AND status IN ('running', 'compensating') AND lease_until < $4",
            (id, owner, until, now),
        )
        .await?;
    Ok(n == 1)
}

/// Take a terminal (`failed`/`stuck`) saga for an operator-requested retry.
pub(crate) async fn claim_for_retry(db: &Db, id: &str, owner: &str, until: i64) -> Result<bool, sqlx::Error> {
    let n = db
        .execute(
            "UPDATE fraiseql_saga SET owner = $2, lease_until = $3, status = 'compensating', updated_at = $4
             WHERE id = $1 AND status IN ('failed', 'stuck')",
            (id, owner, until, now_ms()),
        )
        .await?;
    Ok(n == 1)
}

/// A row of `fraiseql_barrier`.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct BarrierRow {
    pub idx: i64,
    #[sqlx(try_from = "String")]
    pub phase: Phase,
    #[sqlx(try_from = "String")]
    pub outcome: BarrierOutcome,
    pub owner: String,
    pub state: Option<String>,
    pub output: Option<String>,
    pub attempt: i64,
    pub started_at: i64,
    pub finished_at: i64,
}

const BARRIER_COLUMNS: &str = "idx, phase, outcome, owner, state, output, attempt, started_at, finished_at";

pub(crate) struct Committed<'a> {
    pub saga_id: &'a str,
    pub idx: usize,
    pub phase: Phase,
    pub owner: &'a str,
    pub step: &'a str,
    /// The saga's state after the step; `None` when the step did not change it.
    pub state: Option<&'a str>,
    pub output: &'a str,
    pub attempt: u32,
    pub started_at: i64,
}

/// How a step that ends its saga records the saga's completion, in its own transaction
/// (the step runs on the log database).
pub(crate) struct Completion<'a> {
    /// The saga's result (JSON).
    pub result: &'a str,
    /// Its state at the end (JSON).
    pub state: &'a str,
}

/// What a step's transaction writes besides the step's own work, just before its
/// `COMMIT`: the saga's log row if this step logs it (`saga`: the first step, on the log
/// database, of a saga without an idempotency key), its completion if this step ends it
/// on the log database (`complete`), and the `committed` barrier.
pub(crate) struct StepRecord<'a> {
    pub saga: Option<&'a NewSaga>,
    pub complete: Option<Completion<'a>>,
    pub barrier: Committed<'a>,
}

/// Inside the step's transaction: what [`StepRecord`] lists. On PostgreSQL it is one
/// statement (the log row and the completion as data-modifying `WITH` clauses of the
/// barrier's `INSERT`), so the saga's own rows cost the step one round trip, values
/// bound. A unique violation means someone else decided this step (committed it, or
/// fenced it), or logged this saga already (its first step committed before).
pub(crate) async fn record_step(tx: &mut Tx, r: StepRecord<'_>) -> Result<(), sqlx::Error> {
    use crate::db::Args;
    let b = &r.barrier;
    let now = now_ms();
    let barrier = (
        b.saga_id,
        b.idx as i64,
        b.phase.as_str(),
        b.owner,
        b.step,
        b.state,
        b.output,
        b.attempt as i64,
        b.started_at,
        now,
    );
    // The log row's columns but its id and times. A saga that its only step both logs and
    // ends is logged as completed. It started when its first step's attempt did.
    let saga = r.saga.map(|s| {
        let (status, result, owner, state) = match &r.complete {
            Some(c) => (SagaStatus::Completed, Some(c.result), None, c.state),
            None => (SagaStatus::Running, None, Some(s.owner.as_str()), s.state.as_str()),
        };
        (
            s.name.as_str(),
            s.key.as_deref(),
            status.as_str(),
            s.steps.as_str(),
            s.input.as_str(),
            state,
            result,
            owner,
            now + s.lease_ttl_ms,
        )
    });
    const SAGA_COLUMNS: &str =
        "name, idempotency_key, status, steps, input, state, result, owner, lease_until, id, created_at, updated_at";
    match tx {
        Tx::Postgres(t) => {
            // The barrier's values are $1–$10 ($1 the saga's id, $9 the attempt's start,
            // $10 now); the log row's or the completion's follow.
            let sql: std::borrow::Cow<str> = match (&saga, &r.complete) {
                (Some(_), _) => format!(
                    "WITH logged AS (INSERT INTO fraiseql_saga ({SAGA_COLUMNS})
                     VALUES ($11, $12, $13, $14, $15, $16, $17, $18, $19, $1, $9, $10)) {INSERT_COMMITTED}"
                )
                .into(),
                (None, Some(_)) => format!(
                    "WITH done AS (UPDATE fraiseql_saga SET status = 'completed', result = $11, state = $12, owner = NULL, updated_at = $10
                     WHERE id = $1 AND status = 'running') {INSERT_COMMITTED}"
                )
                .into(),
                (None, None) => INSERT_COMMITTED.into(),
            };
            let mut q = barrier.bind_pg(sqlx::query(&sql));
            if let Some(saga) = saga {
                q = saga.bind_pg(q);
            } else if let Some(c) = &r.complete {
                q = (c.result, c.state).bind_pg(q);
            }
            q.execute(&mut **t).await?;
        }
        Tx::Sqlite(t) => {
            if let Some(saga) = saga {
                let sql = format!(
                    "INSERT INTO fraiseql_saga ({SAGA_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
                );
                let q = saga.bind_sqlite(sqlx::query(&sql)).bind(b.saga_id).bind(b.started_at).bind(now);
                q.execute(&mut **t).await?;
            } else if let Some(c) = &r.complete {
                let q = sqlx::query(
                    "UPDATE fraiseql_saga SET status = 'completed', result = $1, state = $2, owner = NULL, updated_at = $3
                     WHERE id = $4 AND status = 'running'",
                );
                (c.result, c.state, now, b.saga_id).bind_sqlite(q).execute(&mut **t).await?;
            }
            barrier.bind_sqlite(sqlx::query(INSERT_COMMITTED)).execute(&mut **t).await?;
        }
    }
    Ok(())
}

const INSERT_COMMITTED: &str = "INSERT INTO fraiseql_barrier (saga_id, idx, phase, outcome, owner, step, state, output, attempt, started_at, finished_at)
     VALUES ($1, $2, $3, 'committed', $4, $5, $6, $7, $8, $9, $10)";

/// Inside a retry's transaction: lift a temporary fence (`fenced`). Its purpose —
/// waiting out an in-flight transaction — was served when it was read back, so anyone
/// may lift it. Permanent fences (`aborted`) are never lifted.
pub(crate) async fn lift_fence(tx: &mut Tx, saga_id: &str, idx: usize, phase: Phase) -> Result<(), sqlx::Error> {
    tx.execute(
        "DELETE FROM fraiseql_barrier WHERE saga_id = $1 AND idx = $2 AND phase = $3 AND outcome = 'fenced'",
        (saga_id, idx as i64, phase.as_str()),
    )
    .await?;
    Ok(())
}

pub(crate) async fn read_barrier(
    db: &Db,
    saga_id: &str,
    idx: usize,
    phase: Phase,
) -> Result<Option<BarrierRow>, sqlx::Error> {
    let sql = format!("SELECT {BARRIER_COLUMNS} FROM fraiseql_barrier WHERE saga_id = $1 AND idx = $2 AND phase = $3");
    db.fetch_optional::<BarrierRow, _>(&sql, (saga_id, idx as i64, phase.as_str())).await
}

pub(crate) async fn read_barriers(db: &Db, saga_id: &str) -> Result<Vec<BarrierRow>, sqlx::Error> {
    let sql = format!("SELECT {BARRIER_COLUMNS} FROM fraiseql_barrier WHERE saga_id = $1 ORDER BY idx, phase");
    db.fetch_all::<BarrierRow, _>(&sql, (saga_id,)).await
}

/// Resolve a step's outcome (see the module docs) and return the barrier that won.
/// `permanent` records the decision "this step never commits" (`aborted`), taken by the
/// saga's owner before it compensates; otherwise a temporary `fenced` row only waits
/// out an in-flight transaction, to be lifted by the retry.
pub(crate) async fn fence(
    db: &Db,
    saga_id: &str,
    idx: usize,
    phase: Phase,
    owner: &str,
    step: &str,
    permanent: bool,
) -> Result<BarrierRow, sqlx::Error> {
    let outcome = if permanent { BarrierOutcome::Aborted } else { BarrierOutcome::Fenced };
    for _ in 0..10 {
        let now = now_ms();
        db.execute(
            "INSERT INTO fraiseql_barrier (saga_id, idx, phase, outcome, owner, step, attempt, started_at, finished_at)
             VALUES ($1, $2, $3, $4, $5, $6, 0, $7, $7) ON CONFLICT DO NOTHING",
            (saga_id, idx as i64, phase.as_str(), outcome.as_str(), owner, step, now),
        )
        .await?;
        let Some(row) = read_barrier(db, saga_id, idx, phase).await? else { continue };
        if permanent && row.outcome == BarrierOutcome::Fenced {
            // Upgrade; if a retry lifted the fence and committed meanwhile, this updates
            // nothing and the next read sees `committed`.
            db.execute(
                "UPDATE fraiseql_barrier SET outcome = 'aborted', owner = $4 WHERE saga_id = $1 AND idx = $2 AND phase = $3 AND outcome = 'fenced'",
                (saga_id, idx as i64, phase.as_str(), owner),
            )
            .await?;
            continue;
        }
        return Ok(row);
    }
    Err(sqlx::Error::Protocol(format!("barrier of saga {saga_id} step {idx} kept changing while being fenced")))
}
