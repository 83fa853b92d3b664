//! Start and stop: what runs, and in which order it ends.
//!
//! Two kinds of tasks, tracked apart (`tokio-util`'s `TaskTracker`):
//! - **work**: sagas (a token per saga, held on the caller's task) and event handlers
//!   (spawned per delivery). Work touches the databases.
//! - **background**: loops that feed work or keep it safe (subscriptions, recovery,
//!   the outbox sweep and relay, lease renewal, completion recording).
//!
//! Shutdown: `intake` is cancelled first (no new saga starts, subscriptions stop taking
//! deliveries, recovery stops claiming); then work drains, bounded; then `halt` ends
//! the background loops, which flush what they hold (completions, relayed events); only
//! then do the pools close. Lease renewal runs until work has drained, because a saga
//! still running needs its lease.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::AbortHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::task_tracker::TaskTrackerToken;
use tokio_util::task::TaskTracker;
use tracing::warn;

use crate::error::{Error, Result};

/// Shared by every component of one runtime. Cheap to clone.
#[derive(Clone, Default)]
pub(crate) struct Lifecycle {
    intake: CancellationToken,
    halt: CancellationToken,
    work: TaskTracker,
    background: TaskTracker,
    aborts: Arc<Mutex<Vec<AbortHandle>>>,
}

/// Held while a saga runs: shutdown waits for it.
pub(crate) struct WorkToken(#[allow(dead_code)] TaskTrackerToken);

impl Lifecycle {
    /// Register one unit of work (a saga), unless shutdown has begun.
    pub(crate) fn enter(&self) -> Result<WorkToken> {
        // Token first, check second: a shutdown that begins in between either sees the
        // token (and waits for it) or is seen here (and the token is dropped at once).
        let token = self.work.token();
        if self.intake.is_cancelled() {
            return Err(Error::ShuttingDown);
        }
        Ok(WorkToken(token))
    }

    /// Whether shutdown has begun.
    pub(crate) fn is_stopping(&self) -> bool {
        self.intake.is_cancelled()
    }

    /// Resolves when shutdown begins: loops that take new work end here.
    pub(crate) async fn stopping(&self) {
        self.intake.cancelled().await
    }

    /// Resolves once work has drained at shutdown: background loops end here.
    pub(crate) async fn halted(&self) {
        self.halt.cancelled().await
    }

    /// Whether the background loops have been told to end.
    pub(crate) fn is_halted(&self) -> bool {
        self.halt.is_cancelled()
    }

    /// Spawn a unit of work (an event handler): shutdown waits for it before closing
    /// the pools.
    pub(crate) fn spawn_work<F>(&self, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.work.spawn(fut);
    }

    /// Spawn a background loop; it must end once `stopping` or `halted` resolves.
    pub(crate) fn spawn_background<F>(&self, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let handle = self.background.spawn(fut);
        self.aborts.lock().unwrap().push(handle.abort_handle());
    }

    /// Shutdown, first half: take no new work, wait up to `timeout` for work in flight.
    /// Returns whether everything finished in time.
    pub(crate) async fn drain(&self, timeout: Duration) -> bool {
        self.intake.cancel();
        self.work.close();
        tokio::time::timeout(timeout, self.work.wait()).await.is_ok()
    }

    /// Shutdown, second half: end the background loops (they flush first), waiting up
    /// to `timeout` before aborting what is left.
    pub(crate) async fn halt(&self, timeout: Duration) {
        self.halt.cancel();
        self.background.close();
        if tokio::time::timeout(timeout, self.background.wait()).await.is_err() {
            warn!(
                tasks = self.background.len(),
                "shutdown: background tasks did not stop within {timeout:?}; aborting them"
            );
            for h in self.aborts.lock().unwrap().drain(..) {
                h.abort();
            }
        }
    }

    /// Work in flight (sagas and handlers).
    pub(crate) fn in_flight(&self) -> usize {
        self.work.len()
    }
}
