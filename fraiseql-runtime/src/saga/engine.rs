//! The saga component: what running, recovering and inspecting sagas needs, and its
//! background loops (recording completions, renewing leases, recovering orphans).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

use super::def::Catalog;
use super::{executor, log};
use crate::clock::now_ms;
use crate::config::SagaConfig;
use crate::db::{Databases, NamedDb};
use crate::error::{Error, Result};
use crate::events::outbox::StepOutbox;
use crate::lifecycle::Lifecycle;

/// A completed saga waiting to be recorded: id, result, state (JSON text).
pub(crate) type Completion = (String, String, String);

/// What the completer receives: a completion, or a caller waiting until everything
/// sent before it is recorded.
enum ToRecord {
    Done(Completion),
    Flush(oneshot::Sender<()>),
}

/// Runs the sagas of one runtime.
pub(crate) struct SagaEngine {
    /// Unique per start: owner of leases and fences.
    pub(crate) instance: String,
    pub(crate) config: SagaConfig,
    pub(crate) catalog: Catalog,
    pub(crate) databases: Databases,
    /// Where `fraiseql_saga` lives.
    pub(crate) log: NamedDb,
    pub(crate) outbox: StepOutbox,
    pub(crate) lifecycle: Lifecycle,
    /// Faults the application's tests inject (`fraiseql::testing`).
    pub(crate) faults: super::faults::Faults,
    completions: mpsc::UnboundedSender<ToRecord>,
    completions_rx: Mutex<Option<mpsc::UnboundedReceiver<ToRecord>>>,
}

impl SagaEngine {
    pub(crate) fn new(
        instance: String,
        config: SagaConfig,
        catalog: Catalog,
        databases: Databases,
        log: NamedDb,
        outbox: StepOutbox,
        lifecycle: Lifecycle,
    ) -> Arc<SagaEngine> {
        let (completions, rx) = mpsc::unbounded_channel();
        Arc::new(SagaEngine {
            instance,
            config,
            catalog,
            databases,
            log,
            outbox,
            lifecycle,
            faults: Default::default(),
            completions,
            completions_rx: Mutex::new(Some(rx)),
        })
    }

    /// Start the background loops.
    pub(crate) fn start(self: &Arc<Self>) {
        if let Some(rx) = self.completions_rx.lock().unwrap().take() {
            self.lifecycle.spawn_background(completer(self.clone(), rx));
        }
        self.lifecycle.spawn_background(heartbeat(self.clone()));
        if self.config.recover {
            self.lifecycle.spawn_background(recovery_loop(self.clone()));
        }
    }

    /// Start a saga by name with JSON input and drive it to its end.
    pub(crate) async fn run(
        self: &Arc<Self>,
        name: &str,
        input: Map<String, Value>,
        idempotency_key: Option<String>,
    ) -> Result<Value> {
        let def = self.catalog.saga(name)?;
        executor::run_new(self.clone(), def, input, idempotency_key).await
    }

    /// Record a completed saga in the log (batched, off the caller's path).
    pub(crate) fn complete(&self, id: String, result: String, state: String) {
        // If the completer is gone (shutdown), recovery records it from the barriers.
        let _ = self.completions.send(ToRecord::Done((id, result, state)));
    }

    /// Wait until every completion sent so far is in the log, so that what this process
    /// reads of its own sagas is what it has seen happen (a saga that returned reads as
    /// `completed`). A few milliseconds at most; at once if the completer is gone.
    pub(crate) async fn flush_completions(&self) {
        let (tx, rx) = oneshot::channel();
        if self.completions.send(ToRecord::Flush(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    /// A lease deadline from now.
    pub(crate) fn lease_until(&self) -> i64 {
        now_ms() + self.config.lease_ttl.as_millis() as i64
    }
}

async fn completer(engine: Arc<SagaEngine>, mut rx: mpsc::UnboundedReceiver<ToRecord>) {
    let mut batch = Vec::with_capacity(256);
    let mut waiting = Vec::new();
    fn take(item: ToRecord, batch: &mut Vec<Completion>, waiting: &mut Vec<oneshot::Sender<()>>) {
        match item {
            ToRecord::Done(c) => batch.push(c),
            ToRecord::Flush(w) => waiting.push(w),
        }
    }
    loop {
        let first = tokio::select! {
            item = rx.recv() => match item { Some(item) => item, None => return },
            _ = engine.lifecycle.halted() => match rx.try_recv() { Ok(item) => item, Err(_) => return },
        };
        let flush_only = matches!(first, ToRecord::Flush(_));
        take(first, &mut batch, &mut waiting);
        // Give concurrent sagas a moment to finish too, so one statement records many:
        // the outcome is already durable (barriers), this only records it. A flush
        // alone waits for nothing.
        if !flush_only {
            let window = tokio::time::sleep(Duration::from_millis(5));
            tokio::pin!(window);
            while batch.len() < 512 {
                tokio::select! {
                    item = rx.recv() => match item {
                        Some(item) => take(item, &mut batch, &mut waiting),
                        None => break,
                    },
                    _ = &mut window => break,
                }
            }
        }
        let mut delay = Duration::from_millis(10);
        while !batch.is_empty() {
            match log::complete_batch(&engine.log.db, &batch).await {
                Ok(()) => break,
                Err(e) if !engine.lifecycle.is_halted() => {
                    warn!(error = %e, sagas = batch.len(), "cannot record completed sagas yet; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
                Err(e) => {
                    // Their barriers are committed: recovery will record them.
                    warn!(error = %e, sagas = batch.len(), "shutdown: completions left for recovery to record");
                    break;
                }
            }
        }
        batch.clear();
        for w in waiting.drain(..) {
            let _ = w.send(());
        }
    }
}

/// Renews this instance's leases until shutdown has drained the sagas in flight (a saga
/// still running needs its lease).
async fn heartbeat(engine: Arc<SagaEngine>) {
    let every = engine.config.lease_ttl / 3;
    loop {
        tokio::select! {
            _ = engine.lifecycle.halted() => return,
            _ = tokio::time::sleep(every) => {}
        }
        if let Err(e) = log::renew_leases(&engine.log.db, &engine.instance, engine.lease_until()).await {
            warn!(error = %e, "cannot renew saga leases");
        }
    }
}

async fn recovery_loop(engine: Arc<SagaEngine>) {
    loop {
        match executor::recover_orphans(&engine).await {
            Ok(0) => {}
            Ok(n) => info!(sagas = n, "recovered orphaned sagas"),
            Err(Error::ShuttingDown) => return,
            Err(e) => warn!(error = %e, "saga recovery pass failed"),
        }
        tokio::select! {
            _ = engine.lifecycle.stopping() => return,
            _ = tokio::time::sleep(engine.config.recovery_interval) => {}
        }
    }
}
