//! Runs sagas: forward through the steps, backward through compensations, and
//! onward after a crash (recovery). See `log.rs` for the barrier protocol.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use futures_util::FutureExt;
use serde_json::{Map, Value};
use tracing::{debug, error, info, info_span, warn, Instrument};
use uuid::Uuid;

use super::def::{InvokeFn, SagaDef};
use super::faults::Kind;
use super::log::{self, BarrierRow};
use super::{SagaEngine, StepInvocation};
use crate::clock::now_ms;
use crate::config::RecoveryPolicy;
use crate::error::{Error, OnDatabase, Result};
use crate::status::{AttemptStatus, BarrierOutcome, Phase, SagaStatus};

/// One saga being driven by this instance.
pub(crate) struct SagaRun {
    engine: Arc<SagaEngine>,
    def: &'static SagaDef,
    id: Uuid,
    id_str: String,
    input: Arc<Map<String, Value>>,
    state: Value,
    outputs: Vec<Option<Value>>,
    /// Per step and phase: a temporary fence to lift in the next attempt's transaction.
    lift: Vec<[bool; 2]>,
    /// The saga's log row, while it is still to be written inside the first step's
    /// transaction (the first step runs on the log database).
    pending_log: Option<log::NewSaga>,
    /// The first step this saga runs: 0, or where a fork starts (the steps before it
    /// belong to the saga it was forked from: never run, never compensated here).
    first: usize,
    /// Its completion is in the log already: its last step, on the log database,
    /// recorded it in its own transaction.
    completed: bool,
}

enum Attempt {
    Committed {
        state: Value,
        output: Value,
    },
    /// The idempotency key belongs to another saga (found while logging this one).
    KeyTaken,
    /// Someone else decided this step: read their barrier.
    Conflict,
    /// The commit's reply was lost: outcome unknown until fenced.
    Unknown(Error),
    Failed(Error),
}

/// What fencing found.
enum Fenced {
    /// The step (or compensation) committed; its state and output are adopted.
    Committed,
    /// It did not commit, and no in-flight attempt can commit it any more.
    NotCommitted,
    /// Another owner decided it never commits: this instance lost the saga.
    DecidedElsewhere,
}

/// Why driving a saga stopped short of a result, besides an error.
enum Halt {
    /// The idempotency key belongs to another saga (found while logging this one):
    /// the caller waits for that saga's result instead.
    KeyTaken,
    Error(Error),
}

impl From<Error> for Halt {
    fn from(e: Error) -> Self {
        Halt::Error(e)
    }
}

type Flow<T> = std::result::Result<T, Halt>;

enum StepOutcome {
    Committed,
    KeyTaken,
    Failed(Error),
    LeaseLost,
}

impl SagaRun {
    fn new(
        engine: Arc<SagaEngine>,
        def: &'static SagaDef,
        id: Uuid,
        input: Arc<Map<String, Value>>,
        state: Value,
    ) -> SagaRun {
        let n = def.steps.len();
        SagaRun {
            engine,
            def,
            id,
            id_str: id.to_string(),
            input,
            state,
            outputs: vec![None; n],
            lift: vec![[false; 2]; n],
            pending_log: None,
            first: 0,
            completed: false,
        }
    }

    fn step_db_name(&self, idx: usize) -> &'static str {
        self.engine.catalog.database_of(self.def.steps[idx])
    }

    fn result_index(&self) -> usize {
        match self.def.result_step {
            Some(r) => self.def.steps.iter().position(|s| *s == r).unwrap_or(self.def.steps.len() - 1),
            None => self.def.steps.len() - 1,
        }
    }

    fn policy(&self) -> RecoveryPolicy {
        self.def.recovery.unwrap_or(self.engine.config.recovery)
    }

    fn state_text(&self) -> String {
        self.state.to_string()
    }

    /// Run steps `from..` then record completion; on a step failure, compensate.
    async fn forward(&mut self, from: usize) -> Flow<Value> {
        for idx in from..self.def.steps.len() {
            match self.run_step(idx).await {
                StepOutcome::Committed => {
                    let step = self.def.steps[idx];
                    if self.engine.faults.fires(&[Kind::CrashAfter], self.def.name, step, Phase::Step).is_some() {
                        return Err(self.crash(step).await.into());
                    }
                }
                StepOutcome::LeaseLost => return Err(Error::LeaseLost(self.id).into()),
                StepOutcome::KeyTaken => return Err(Halt::KeyTaken),
                StepOutcome::Failed(err) => {
                    // Make sure this step can never commit later (a timed-out attempt
                    // whose COMMIT is still on the wire); if it did commit, go on.
                    match self.fence(idx, Phase::Step, true).await? {
                        Fenced::Committed => continue,
                        Fenced::NotCommitted => {}
                        Fenced::DecidedElsewhere => return Err(Error::LeaseLost(self.id).into()),
                    }
                    return self.abort(idx, err.to_string()).await;
                }
            }
        }
        let result = self.outputs[self.result_index()].clone().unwrap_or(Value::Null);
        if !self.completed {
            self.engine.complete(self.id_str.clone(), result.to_string(), self.state_text());
        }
        crate::telemetry::saga_finished(self.def.name, SagaStatus::Completed);
        info!(saga.id = %self.id, saga.name = self.def.name, "saga completed");
        Ok(result)
    }

    /// An injected crash: leave the saga as a process killed now would (running, its
    /// lease expired, so that recovery claims it at once).
    async fn crash(&mut self, step: &str) -> Error {
        // A saga whose last step recorded its completion is over, crash or not.
        if !self.completed {
            if let Err(e) = log::abandon(&self.engine.log.db, &self.id_str).await {
                return Error::db(&self.engine.log.name, e);
            }
        }
        warn!(saga.id = %self.id, saga.name = self.def.name, step, "injected crash after the step committed");
        Error::FaultInjected(format!(
            "saga `{}` ({}) stopped after step `{step}` committed, as a crashed process would; `recover_now` finishes it",
            self.def.name, self.id
        ))
    }

    /// Step `failed_idx` failed for good: record it, compensate the steps before it.
    async fn abort(&mut self, failed_idx: usize, cause: String) -> Flow<Value> {
        let step = self.def.steps[failed_idx];
        warn!(saga.id = %self.id, saga.name = self.def.name, step, error = %cause, "step failed; compensating");
        let log = &self.engine.log.db;
        if let Some(pending) = self.pending_log.take() {
            // The first step failed before the saga was ever logged: log it now, as
            // compensated (nothing committed), so that it stays visible.
            let logged = log::insert_saga(log, &pending, SagaStatus::Compensated, Some((step, &cause)))
                .await
                .on(&self.engine.log.name)?;
            if !logged {
                return Err(Halt::KeyTaken);
            }
            let status = SagaStatus::Compensated;
            crate::telemetry::saga_finished(self.def.name, status);
            return Err(Error::SagaAborted {
                saga: self.def.name.to_string(),
                saga_id: self.id,
                step: step.to_string(),
                status,
                cause,
            }
            .into());
        }
        let owned = log::set_status(
            log,
            self.id,
            &self.engine.instance,
            SagaStatus::Compensating,
            &self.state_text(),
            Some(step),
            Some(&cause),
            false,
        )
        .await
        .on(&self.engine.log.name)?;
        if !owned {
            return Err(Error::LeaseLost(self.id).into());
        }
        let status = self.compensate_from(failed_idx).await?;
        Err(Error::SagaAborted {
            saga: self.def.name.to_string(),
            saga_id: self.id,
            step: step.to_string(),
            status,
            cause,
        }
        .into())
    }

    /// Compensate steps `..below` in reverse order; returns the terminal status.
    async fn compensate_from(&mut self, below: usize) -> Result<SagaStatus> {
        for idx in (self.first..below).rev() {
            let step = self.def.steps[idx];
            let Some(comp) = self.engine.catalog.compensation(step) else {
                debug!(saga.id = %self.id, step, "no compensation declared; nothing to undo");
                continue;
            };
            let retries = comp.retries.unwrap_or(self.engine.config.compensation_retries);
            let timeout = comp.timeout_ms.map(Duration::from_millis).unwrap_or(self.engine.config.compensation_timeout);
            let db_name = self.step_db_name(idx);
            let span =
                info_span!("compensation", saga.id = %self.id, saga.name = self.def.name, step, database = db_name);
            let mut backoff = self.backoff();
            let mut attempt = 0u32;
            let done = async {
                loop {
                    attempt += 1;
                    let outcome = self.attempt(idx, Phase::Compensation, comp.invoke, attempt, timeout).await;
                    match outcome {
                        Attempt::KeyTaken => unreachable!("compensations never log a saga"),
                        Attempt::Committed { state, .. } => {
                            self.state = state;
                            info!(attempt, "compensated");
                            return Ok(true);
                        }
                        Attempt::Conflict => match self.read_barrier(idx, Phase::Compensation).await? {
                            Some(b) if b.outcome == BarrierOutcome::Committed => {
                                self.adopt_state(&b)?;
                                return Ok(true);
                            }
                            // A temporary fence left by an attempt whose commit was in
                            // doubt (maybe another instance's): lift it and go again.
                            _ => {
                                self.lift[idx][1] = true;
                                continue;
                            }
                        },
                        attempt_failed @ (Attempt::Unknown(_) | Attempt::Failed(_)) => {
                            let e = match attempt_failed {
                                Attempt::Unknown(e) => {
                                    // The commit's reply was lost: find out whether it happened.
                                    if let Fenced::Committed = self.fence(idx, Phase::Compensation, false).await? {
                                        return Ok(true);
                                    }
                                    e
                                }
                                Attempt::Failed(e) => e,
                                _ => unreachable!(),
                            };
                            let msg = e.to_string();
                            let spent = attempt > retries;
                            warn!(attempt, error = %msg, budget_spent = spent, "compensation failed");
                            self.record_attempt(
                                idx,
                                Phase::Compensation,
                                attempt,
                                if spent { AttemptStatus::Failed } else { AttemptStatus::Retrying },
                                Some(&msg),
                            )
                            .await;
                            if spent {
                                let log = &self.engine.log.db;
                                let cause = format!("compensation of `{step}` failed after {attempt} attempts: {msg}");
                                error!(saga.id = %self.id, "{cause}; the saga is failed and waits for an operator");
                                log::set_status(
                                    log,
                                    self.id,
                                    &self.engine.instance,
                                    SagaStatus::Failed,
                                    &self.state_text(),
                                    None,
                                    Some(&cause),
                                    true,
                                )
                                .await
                                .on(&self.engine.log.name)?;
                                return Ok(false);
                            }
                            tokio::time::sleep(backoff.next().unwrap_or(Duration::from_secs(1))).await;
                        }
                    }
                }
            }
            .instrument(span);
            let done: Result<bool> = done.await;
            if !done? {
                crate::telemetry::saga_finished(self.def.name, SagaStatus::Failed);
                return Ok(SagaStatus::Failed);
            }
        }
        let owned = log::set_status(
            &self.engine.log.db,
            self.id,
            &self.engine.instance,
            SagaStatus::Compensated,
            &self.state_text(),
            None,
            None,
            true,
        )
        .await
        .on(&self.engine.log.name)?;
        if !owned {
            return Err(Error::LeaseLost(self.id));
        }
        info!(saga.id = %self.id, saga.name = self.def.name, "saga compensated");
        crate::telemetry::saga_finished(self.def.name, SagaStatus::Compensated);
        Ok(SagaStatus::Compensated)
    }

    fn backoff(&self) -> impl Iterator<Item = Duration> {
        ExponentialBuilder::default()
            .with_min_delay(self.engine.config.backoff_initial)
            .with_max_delay(self.engine.config.backoff_max)
            .with_jitter()
            .without_max_times()
            .build()
    }

    /// A step with its retries.
    async fn run_step(&mut self, idx: usize) -> StepOutcome {
        let name = self.def.steps[idx];
        let step = self.engine.catalog.step(name).expect("validated at start");
        let retries = step.retries.unwrap_or(self.engine.config.step_retries);
        let timeout = step.timeout_ms.map(Duration::from_millis).unwrap_or(self.engine.config.step_timeout);
        let span = info_span!("step", saga.id = %self.id, saga.name = self.def.name, step = name, index = idx, database = self.step_db_name(idx));
        let mut backoff = self.backoff();
        async {
            let mut attempt = 0u32;
            loop {
                attempt += 1;
                let err = match self.attempt(idx, Phase::Step, step.invoke, attempt, timeout).await {
                    Attempt::KeyTaken => return StepOutcome::KeyTaken,
                    Attempt::Committed { state, output } => {
                        self.state = state;
                        self.outputs[idx] = Some(output);
                        debug!(attempt, "step committed");
                        return StepOutcome::Committed;
                    }
                    Attempt::Conflict => match self.read_barrier(idx, Phase::Step).await {
                        Ok(Some(b)) if b.outcome == BarrierOutcome::Committed => {
                            if let Err(e) = self.adopt(&b) {
                                return StepOutcome::Failed(e);
                            }
                            return StepOutcome::Committed;
                        }
                        Ok(Some(b)) if b.outcome == BarrierOutcome::Aborted => return StepOutcome::LeaseLost,
                        // A temporary fence: lift it in the next attempt.
                        Ok(_) => {
                            self.lift[idx][0] = true;
                            Error::transient("the step's barrier was fenced by an attempt whose commit was in doubt")
                        }
                        Err(e) => return StepOutcome::Failed(e),
                    },
                    Attempt::Unknown(e) => match self.fence(idx, Phase::Step, false).await {
                        Ok(Fenced::Committed) => return StepOutcome::Committed,
                        Ok(Fenced::NotCommitted) => e,
                        Ok(Fenced::DecidedElsewhere) => return StepOutcome::LeaseLost,
                        Err(fe) => return StepOutcome::Failed(fe),
                    },
                    Attempt::Failed(e) => e,
                };
                let retry = err.is_transient() && attempt <= retries;
                let msg = err.to_string();
                warn!(attempt, error = %msg, retry, "step attempt failed");
                self.record_attempt(
                    idx,
                    Phase::Step,
                    attempt,
                    if retry { AttemptStatus::Retrying } else { AttemptStatus::Failed },
                    Some(&msg),
                )
                .await;
                if !retry {
                    return StepOutcome::Failed(err);
                }
                tokio::time::sleep(backoff.next().unwrap_or(Duration::from_secs(1))).await;
            }
        }
        .instrument(span)
        .await
    }

    /// One attempt, timed for the metrics.
    async fn attempt(
        &mut self,
        idx: usize,
        phase: Phase,
        invoke: InvokeFn,
        attempt: u32,
        timeout: Duration,
    ) -> Attempt {
        let started = std::time::Instant::now();
        let outcome = self.attempt_once(idx, phase, invoke, attempt, timeout).await;
        let label = match &outcome {
            Attempt::Committed { .. } => "committed",
            Attempt::KeyTaken | Attempt::Conflict => "conflict",
            Attempt::Unknown(_) => "unknown",
            Attempt::Failed(_) => "failed",
        };
        crate::telemetry::step_attempt(self.def.name, self.def.steps[idx], phase, label, started.elapsed());
        outcome
    }

    /// One attempt: begin, call the user's function, write the barrier, commit.
    async fn attempt_once(
        &mut self,
        idx: usize,
        phase: Phase,
        invoke: InvokeFn,
        attempt: u32,
        timeout: Duration,
    ) -> Attempt {
        let db_name = self.step_db_name(idx);
        let db = match self.engine.databases.get(db_name) {
            Ok(db) => db.clone(),
            Err(e) => return Attempt::Failed(e),
        };
        let started_at = now_ms();
        let mut tx = match db.begin().await {
            Ok(tx) => tx,
            Err(e) => return Attempt::Failed(Error::db(db_name, e)),
        };
        // The flag stays set until an attempt commits: one that fails before its commit
        // rolls the lifting back with it.
        if self.lift[idx][phase.index()] {
            if let Err(e) = log::lift_fence(&mut tx, &self.id_str, idx, phase).await {
                return Attempt::Failed(Error::db(db_name, e));
            }
        }
        // A saga with an idempotency key is logged first: a concurrent saga with the same
        // key makes this one wait for it (unique index) and then find the key taken,
        // before any work. Without a key, its log row goes with the barrier.
        let keyed = self.pending_log.as_ref().filter(|p| p.key.is_some());
        if let (Phase::Step, Some(pending)) = (phase, keyed) {
            match log::insert_saga_in(&mut tx, pending).await {
                Ok(true) => {}
                Ok(false) => {
                    let _ = tx.rollback().await;
                    return Attempt::KeyTaken;
                }
                Err(e) => return Attempt::Failed(Error::db(db_name, e)),
            }
        }
        let mut inv = StepInvocation {
            saga_id: self.id,
            saga: self.def.name,
            step: self.def.steps[idx],
            index: idx,
            phase,
            attempt,
            database: db_name,
            input: self.input.clone(),
            state: self.state.clone(),
            tx: Some(tx),
            databases: self.engine.databases.clone(),
            published: Vec::new(),
            outbox: self.engine.outbox.clone(),
        };
        if let Some(kind) = self.engine.faults.fires(&[Kind::Fail, Kind::Timeout], self.def.name, inv.step, phase) {
            // `inv` drops with its transaction: rolled back, as a failed attempt's is.
            return Attempt::Failed(match kind {
                Kind::Timeout => Error::Timeout(format!("{phase} `{}` after {timeout:?} (injected)", inv.step)),
                _ => Error::transient(format!("{} `{}`: injected failure", phase.as_str(), inv.step)),
            });
        }
        let call = AssertUnwindSafe(invoke(&mut inv)).catch_unwind();
        let output = match tokio::time::timeout(timeout, call).await {
            Err(_) => return Attempt::Failed(Error::Timeout(format!("{phase} `{}` after {timeout:?}", inv.step))),
            Ok(Err(panic)) => {
                let msg = Error::panic_message(&*panic);
                return Attempt::Failed(Error::msg(format!("{} `{}` panicked: {msg}", phase.as_str(), inv.step)));
            }
            Ok(Ok(Err(e))) => return Attempt::Failed(e),
            Ok(Ok(Ok(v))) => v,
        };
        let Some(mut tx) = inv.tx.take() else {
            return Attempt::Failed(Error::internal("the step did not hand its transaction back"));
        };
        // A state the step left as it was is not written again: a barrier without one
        // means "unchanged", and recovery and forks carry the state before it forward.
        let state_text = (inv.state != self.state).then(|| inv.state.to_string());
        let output_text = output.to_string();
        let barrier = log::Committed {
            saga_id: &self.id_str,
            idx,
            phase,
            owner: &self.engine.instance,
            step: inv.step,
            state: state_text.as_deref(),
            output: &output_text,
            attempt,
            started_at,
        };
        // The last step, on the log database, records the saga's completion itself.
        let ends_here = phase == Phase::Step && idx + 1 == self.def.steps.len() && db_name == self.engine.log.name;
        let (result_text, final_state) = if ends_here {
            let result = if self.result_index() == idx {
                output_text.clone()
            } else {
                self.outputs[self.result_index()].as_ref().unwrap_or(&Value::Null).to_string()
            };
            (result, state_text.clone().unwrap_or_else(|| self.state_text()))
        } else {
            Default::default()
        };
        let record = log::StepRecord {
            saga: self.pending_log.as_ref().filter(|p| phase == Phase::Step && p.key.is_none()),
            complete: ends_here.then_some(log::Completion { result: &result_text, state: &final_state }),
            barrier,
        };
        if let Err(e) = log::record_step(&mut tx, record).await {
            let unique = matches!(&e, sqlx::Error::Database(d) if d.is_unique_violation());
            let _ = tx.rollback().await;
            return if unique { Attempt::Conflict } else { Attempt::Failed(Error::db(db_name, e)) };
        }
        crate::fault::point("before_commit", inv.step);
        if attempt == 1 && crate::fault::active("fail_first_commit", inv.step) {
            let _ = tx.rollback().await;
            return Attempt::Unknown(Error::db(db_name, sqlx::Error::Io(std::io::ErrorKind::ConnectionReset.into())));
        }
        if let Err(e) = tx.commit().await {
            return Attempt::Unknown(Error::db(db_name, e));
        }
        self.lift[idx][phase.index()] = false;
        self.completed |= ends_here;
        if crate::fault::active("lose_commit_reply", inv.step) {
            return Attempt::Unknown(Error::db(db_name, sqlx::Error::Io(std::io::ErrorKind::ConnectionReset.into())));
        }
        match phase {
            Phase::Step => crate::fault::point("after_commit", inv.step),
            Phase::Compensation => crate::fault::point("after_compensation_commit", inv.step),
        }
        if phase == Phase::Step {
            self.pending_log = None;
        }
        if !inv.published.is_empty() {
            self.engine.outbox.relay(std::mem::take(&mut inv.published));
        }
        Attempt::Committed { state: inv.state, output }
    }

    /// Fence a step or compensation (see `log::fence`). Retries database errors: the
    /// answer is needed to go on.
    async fn fence(&mut self, idx: usize, phase: Phase, permanent: bool) -> Result<Fenced> {
        let db_name = self.step_db_name(idx);
        let db = self.engine.databases.get(db_name)?.clone();
        let mut backoff = self.backoff();
        let mut tries = 0;
        loop {
            tries += 1;
            let r =
                log::fence(&db, &self.id_str, idx, phase, &self.engine.instance, self.def.steps[idx], permanent).await;
            match r {
                Ok(b) if b.outcome == BarrierOutcome::Committed => {
                    match phase {
                        Phase::Step => {
                            self.adopt(&b)?;
                            // Its transaction logged the saga too.
                            self.pending_log = None;
                        }
                        Phase::Compensation => self.adopt_state(&b)?,
                    }
                    return Ok(Fenced::Committed);
                }
                Ok(b) if b.outcome == BarrierOutcome::Fenced => {
                    self.lift[idx][phase.index()] = true;
                    return Ok(Fenced::NotCommitted);
                }
                Ok(b) if permanent || b.owner == self.engine.instance => return Ok(Fenced::NotCommitted),
                Ok(_) => return Ok(Fenced::DecidedElsewhere),
                Err(e) if tries < 50 => {
                    warn!(saga.id = %self.id, step = self.def.steps[idx], error = %e, "cannot read the step's barrier yet; retrying");
                    tokio::time::sleep(backoff.next().unwrap_or(Duration::from_secs(1))).await;
                }
                Err(e) => return Err(Error::db(db_name, e)),
            }
        }
    }

    async fn read_barrier(&self, idx: usize, phase: Phase) -> Result<Option<BarrierRow>> {
        let db_name = self.step_db_name(idx);
        let db = self.engine.databases.get(db_name)?;
        log::read_barrier(db, &self.id_str, idx, phase).await.on(db_name)
    }

    /// Take over what a committed barrier recorded: the saga's state after the step, and
    /// its output.
    fn adopt(&mut self, b: &BarrierRow) -> Result<()> {
        self.adopt_state(b)?;
        let output = match b.output.as_deref() {
            Some(o) => serde_json::from_str(o).map_err(|e| self.unreadable(b, "output", e))?,
            None => Value::Null,
        };
        self.outputs[b.idx as usize] = Some(output);
        Ok(())
    }

    fn adopt_state(&mut self, b: &BarrierRow) -> Result<()> {
        if let Some(s) = b.state.as_deref() {
            self.state = serde_json::from_str(s).map_err(|e| self.unreadable(b, "state", e))?;
        }
        Ok(())
    }

    fn unreadable(&self, b: &BarrierRow, column: &str, e: serde_json::Error) -> Error {
        Error::Unreadable {
            what: format!(
                "barrier of saga {} step {} ({}) in database `{}`",
                self.id,
                b.idx,
                b.phase,
                self.step_db_name(b.idx as usize)
            ),
            detail: format!("its {column} is not JSON: {e}"),
        }
    }

    async fn record_attempt(&self, idx: usize, phase: Phase, attempt: u32, status: AttemptStatus, error: Option<&str>) {
        if let Err(e) =
            log::record_attempt(&self.engine.log.db, self.id, idx, phase, self.def.steps[idx], attempt, status, error)
                .await
        {
            warn!(saga.id = %self.id, error = %e, "could not record the attempt in the saga log");
        }
    }

    /// Rebuild progress from the barriers: the index of the first step that has not
    /// committed, and whether a permanent fence already says it never will. With
    /// `fence_next`, that step is fenced for good (so a stale owner cannot commit it).
    async fn scan_forward(&mut self, fence_next: bool) -> Result<(usize, bool)> {
        let mut idx = self.first;
        while idx < self.def.steps.len() {
            let b = self.read_barrier(idx, Phase::Step).await?;
            match b {
                Some(b) if b.outcome == BarrierOutcome::Committed => {
                    self.adopt(&b)?;
                    idx += 1;
                }
                Some(b) if b.outcome == BarrierOutcome::Aborted => return Ok((idx, true)),
                _ if fence_next => match self.fence(idx, Phase::Step, true).await? {
                    Fenced::Committed => idx += 1,
                    _ => return Ok((idx, true)),
                },
                Some(_) => {
                    self.lift[idx][0] = true;
                    return Ok((idx, false));
                }
                None => return Ok((idx, false)),
            }
        }
        Ok((idx, false))
    }

    /// Finish a saga this instance has just claimed.
    async fn recover(&mut self, status: SagaStatus) -> Result<()> {
        let policy = self.policy();
        info!(saga.id = %self.id, saga.name = self.def.name, status = %status, ?policy, "recovering saga");
        // Recovery never logs a saga (it is logged already), so the key cannot be taken.
        let settled = |flow: Flow<Value>| match flow {
            Ok(_) | Err(Halt::Error(Error::SagaAborted { .. })) => Ok(()),
            Err(Halt::Error(e)) => Err(e),
            Err(Halt::KeyTaken) => Err(Error::internal("recovery found an idempotency key taken")),
        };
        match status {
            SagaStatus::Running if policy == RecoveryPolicy::Forward && !self.scan_forward(false).await?.1 => {
                let (next, _) = self.scan_forward(false).await?;
                settled(self.forward(next).await)
            }
            SagaStatus::Running => {
                let (next, _) = self.scan_forward(true).await?;
                if next == self.def.steps.len() {
                    let result = self.outputs[self.result_index()].clone().unwrap_or(Value::Null);
                    self.engine.complete(self.id_str.clone(), result.to_string(), self.state_text());
                    crate::telemetry::saga_finished(self.def.name, SagaStatus::Completed);
                    return Ok(());
                }
                let cause = "the runtime running this saga stopped; compensating by recovery policy".to_string();
                settled(self.abort(next, cause).await)
            }
            SagaStatus::Compensating | SagaStatus::Failed | SagaStatus::Stuck => {
                let (next, _) = self.scan_forward(true).await?;
                // Compensations already committed are found by their barriers (Conflict).
                self.compensate_from(next).await.map(|_| ())
            }
            SagaStatus::Completed | SagaStatus::Compensated => Ok(()),
        }
    }
}

/// Start a saga in this process and drive it to its end.
pub(crate) async fn run_new(
    engine: Arc<SagaEngine>,
    def: &'static SagaDef,
    input: Map<String, Value>,
    key: Option<String>,
) -> Result<Value> {
    let _work = engine.lifecycle.enter()?;
    let id = Uuid::now_v7();
    let state = (def.state.round_trip)().map_err(|e| {
        Error::internal(&format!("saga `{}`: its state type no longer round-trips through JSON: {e}", def.name))
    })?;
    let new = log::NewSaga {
        id,
        name: def.name.to_string(),
        key: key.clone(),
        steps: serde_json::to_string(def.steps)?,
        input: Value::Object(input.clone()).to_string(),
        state: state.to_string(),
        owner: engine.instance.clone(),
        lease_ttl_ms: engine.config.lease_ttl.as_millis() as i64,
    };
    let span = info_span!("saga", saga.id = %id, saga.name = def.name);
    crate::telemetry::saga_started(def.name);
    let mut run = SagaRun::new(engine.clone(), def, id, Arc::new(input), state);
    if run.step_db_name(0) == engine.log.name {
        // Logged by the first step's own transaction: one commit fewer, and a saga
        // whose first step never commits leaves nothing to recover.
        run.pending_log = Some(new);
    } else {
        let inserted = log::insert_saga(&engine.log.db, &new, SagaStatus::Running, None)
            .instrument(span.clone())
            .await
            .on(&engine.log.name)?;
        if !inserted {
            let key = key.ok_or_else(|| Error::internal("a fresh saga id conflicted"))?;
            return wait_for_key(&engine, def, &key).await;
        }
        crate::fault::point("after_log_insert", def.name);
    }
    match run.forward(0).instrument(span).await {
        Ok(v) => Ok(v),
        Err(Halt::Error(e)) => Err(e),
        Err(Halt::KeyTaken) => {
            let key = key.ok_or_else(|| Error::internal("an idempotency key conflict without a key"))?;
            wait_for_key(&engine, def, &key).await
        }
    }
}

/// The saga started earlier with this idempotency key: its result, once it has one.
async fn wait_for_key(engine: &SagaEngine, def: &'static SagaDef, key: &str) -> Result<Value> {
    let mut delay = Duration::from_millis(2);
    let deadline =
        tokio::time::Instant::now() + engine.config.lease_ttl * 4 + engine.config.step_timeout * def.steps.len() as u32;
    loop {
        let row = log::load_by_key(&engine.log.db, key).await.on(&engine.log.name)?;
        let Some(row) = row else {
            return Err(Error::internal(&format!("idempotency key `{key}` conflicted but no saga holds it")));
        };
        if row.name != def.name {
            return Err(Error::InvalidArgument(format!(
                "idempotency key `{key}` was already used by saga `{}`, not `{}`",
                row.name, def.name
            )));
        }
        match row.status {
            SagaStatus::Completed => {
                return serde_json::from_str(row.result.as_deref().unwrap_or("null"))
                    .map_err(|e| row.unreadable("result", e.to_string()))
            }
            SagaStatus::Compensated | SagaStatus::Failed => {
                return Err(Error::SagaAborted {
                    saga_id: row.uuid()?,
                    saga: row.name,
                    step: row.failed_step.unwrap_or_default(),
                    status: row.status,
                    cause: row.error.unwrap_or_default(),
                })
            }
            _ => {}
        }
        if tokio::time::Instant::now() > deadline {
            return Err(Error::Timeout(format!("saga {} (idempotency key `{key}`) is still {}", row.id, row.status)));
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(200));
    }
}

/// Claim and finish orphaned sagas once; returns how many were recovered.
pub(crate) async fn recover_orphans(engine: &Arc<SagaEngine>) -> Result<usize> {
    if engine.lifecycle.is_stopping() {
        return Err(Error::ShuttingDown);
    }
    let now = now_ms();
    let ids = log::orphans(&engine.log.db, now, 64).await.on(&engine.log.name)?;
    let mut n = 0;
    for id in ids {
        if !log::claim(&engine.log.db, &id, &engine.instance, engine.lease_until(), now).await.on(&engine.log.name)? {
            continue; // another instance won it
        }
        crate::telemetry::recovery_claimed(1);
        n += 1;
        if let Err(e) = recover_one(engine, &id).await {
            error!(saga.id = %id, error = %e, "recovery failed; it will be retried when the lease expires");
        }
    }
    Ok(n)
}

/// Drive one claimed saga (also used for operator retries of `failed` sagas).
pub(crate) async fn recover_one(engine: &Arc<SagaEngine>, id: &str) -> Result<()> {
    let _work = engine.lifecycle.enter()?;
    let row = log::load(&engine.log.db, id)
        .await
        .on(&engine.log.name)?
        .ok_or_else(|| Error::NotFound(format!("no saga {id}")))?;
    let span = info_span!("saga", saga.id = %id, saga.name = %row.name, recovery = true);
    if let Some(problem) = code_changed(engine, &row) {
        error!(parent: &span, "{problem}; left for an operator");
        crate::telemetry::saga_finished(row.name.clone(), SagaStatus::Stuck);
        log::set_status(
            &engine.log.db,
            row.uuid()?,
            &engine.instance,
            SagaStatus::Stuck,
            &row.state,
            None,
            Some(&problem),
            true,
        )
        .await
        .on(&engine.log.name)?;
        return Ok(());
    }
    let def = engine.catalog.saga(&row.name)?;
    let input: Map<String, Value> =
        serde_json::from_str(&row.input).map_err(|e| row.unreadable("input", e.to_string()))?;
    let state: Value = serde_json::from_str(&row.state).map_err(|e| row.unreadable("state", e.to_string()))?;
    let mut run = SagaRun::new(engine.clone(), def, row.uuid()?, Arc::new(input), state);
    run.first = first_step(def, &row)?;
    match run.recover(row.status).instrument(span).await {
        Err(Error::LeaseLost(_)) => Ok(()),
        other => other,
    }
}

/// Where a logged saga starts among its definition's steps: 0, or a fork's first step.
/// (`code_changed` has checked that the logged steps are a suffix of the definition's.)
pub(crate) fn first_step(def: &SagaDef, row: &log::SagaRow) -> Result<usize> {
    let logged: Vec<String> =
        serde_json::from_str(&row.steps).map_err(|e| row.unreadable("steps", format!("not a JSON list: {e}")))?;
    Ok(def.steps.len().saturating_sub(logged.len()))
}

/// Start a fork of a logged saga: the same input, the state it had before step `from`,
/// running the steps from `from` on (logged as its steps, so that recovery and
/// inspection know where it starts). Returns its id once logged; it runs to its end.
pub(crate) async fn fork(
    engine: Arc<SagaEngine>,
    def: &'static SagaDef,
    input: Map<String, Value>,
    state: Value,
    from: usize,
) -> Result<(Uuid, Result<Value>)> {
    let _work = engine.lifecycle.enter()?;
    let id = Uuid::now_v7();
    let new = log::NewSaga {
        id,
        name: def.name.to_string(),
        key: None,
        steps: serde_json::to_string(&def.steps[from..])?,
        input: Value::Object(input.clone()).to_string(),
        state: state.to_string(),
        owner: engine.instance.clone(),
        lease_ttl_ms: engine.config.lease_ttl.as_millis() as i64,
    };
    let span = info_span!("saga", saga.id = %id, saga.name = def.name, forked_at = def.steps[from]);
    log::insert_saga(&engine.log.db, &new, SagaStatus::Running, None)
        .instrument(span.clone())
        .await
        .on(&engine.log.name)?;
    crate::telemetry::saga_started(def.name);
    let mut run = SagaRun::new(engine.clone(), def, id, Arc::new(input), state);
    run.first = from;
    let outcome = match run.forward(from).instrument(span).await {
        Ok(v) => Ok(v),
        Err(Halt::Error(e)) => Err(e),
        Err(Halt::KeyTaken) => Err(Error::internal("a fork found an idempotency key taken")),
    };
    Ok((id, outcome))
}

/// Why a logged saga cannot be recovered by the code now running, if it cannot.
fn code_changed(engine: &SagaEngine, row: &log::SagaRow) -> Option<String> {
    let def = match engine.catalog.saga(&row.name) {
        Ok(d) => d,
        Err(_) => return Some(format!("saga `{}` is no longer registered in this binary", row.name)),
    };
    let logged: Vec<String> = match serde_json::from_str(&row.steps) {
        Ok(steps) => steps,
        Err(e) => return Some(format!("saga `{}`: logged steps are not a JSON list of names: {e}", row.name)),
    };
    // A fork logs the steps it runs: the definition's, from where it starts.
    let from = def.steps.len().checked_sub(logged.len()).filter(|_| !logged.is_empty());
    if from.is_none_or(|from| logged.iter().map(String::as_str).ne(def.steps[from..].iter().copied())) {
        return Some(format!(
            "saga `{}` changed since it started: logged steps {:?}, current steps {:?}",
            row.name, logged, def.steps
        ));
    }
    let input: Map<String, Value> = match serde_json::from_str(&row.input) {
        Ok(m) => m,
        Err(e) => return Some(format!("saga `{}`: logged input is not a JSON object: {e}", row.name)),
    };
    if let Err(e) = (def.check_input)(&input) {
        return Some(format!(
            "saga `{}`: logged input no longer deserialises into the saga's parameters: {e}",
            row.name
        ));
    }
    if let Err(e) = (def.state.check)(&row.state) {
        return Some(format!(
            "saga `{}`: logged state no longer deserialises into `{}`: {e}",
            row.name,
            (def.state.type_info)().name
        ));
    }
    None
}
