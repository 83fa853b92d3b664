//! The runtime: owns the databases, the validated registry and the background work
//! (recording completions, renewing leases, recovering orphaned sagas).

use std::collections::BTreeSet;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::config::{Config, DatabaseConfig};
use crate::db::{Databases, Db};
use crate::error::{Error, Result};
use crate::registry::{Registry, DEFAULT_DATABASE};
use crate::saga::inspect::Sagas;
use crate::saga::{executor, log};

/// A running FraiseQL instance. Cheap to clone. Several may run in one process.
#[derive(Clone)]
pub struct Runtime {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    /// Unique per start: owner of leases and fences.
    pub(crate) instance: String,
    pub(crate) config: Config,
    pub(crate) databases: Databases,
    pub(crate) registry: Registry,
    pub(crate) log_db: Db,
    pub(crate) log_db_name: String,
    pub(crate) bus: crate::events::Bus,
    pub(crate) event_subjects: Arc<Vec<String>>,
    relay_tx: Mutex<Option<mpsc::UnboundedSender<Vec<crate::events::outbox::OutboxItem>>>>,
    completions: Mutex<Option<mpsc::UnboundedSender<(String, String, String)>>>,
    shutting_down: AtomicBool,
    in_flight: AtomicUsize,
    idle: Notify,
    /// Set once at shutdown. Loops wait with `wait_for(|stopped| *stopped)`, which also
    /// sees a stop sent before the loop first ran (`changed()` would not).
    pub(crate) stop: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    temp_dir: Option<PathBuf>,
    /// Columns of the views queries read, from the catalog.
    pub(crate) views: crate::query::ViewCache,
    #[cfg(feature = "graphql")]
    graphql: std::sync::OnceLock<async_graphql::dynamic::Schema>,
}

static DEFAULT: RwLock<Option<Runtime>> = RwLock::new(None);

tokio::task_local! {
    static CURRENT: Runtime;
    static IDEMPOTENCY_KEY: String;
}

/// Builds a [`Runtime`].
#[derive(Default)]
pub struct Builder {
    config: Option<Config>,
    config_file: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    temp_data_dir: bool,
    set_default: Option<bool>,
}

impl Builder {
    /// Use this configuration (environment overrides are not applied on top).
    pub fn config(mut self, config: Config) -> Self {
        self.config = Some(config);
        self
    }

    /// Load `fraiseql.toml`-style configuration from a file, with `FRAISEQL_*`
    /// environment overrides.
    pub fn config_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.config_file = Some(path.into());
        self
    }

    /// Keep embedded SQLite databases in this directory (they survive restarts).
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self.temp_data_dir = false;
        self
    }

    /// Keep embedded SQLite databases in a fresh temporary directory, removed at
    /// shutdown, whatever `data_dir` says: for tests and demos that must start from
    /// nothing and leave nothing. (Sagas of a killed process are then never recovered.)
    pub fn temp_data_dir(mut self) -> Self {
        self.temp_data_dir = true;
        self.data_dir = None;
        self
    }

    /// Whether saga functions called outside [`Runtime::scope`] use this runtime.
    /// Default: yes, if no other runtime is the default already.
    pub fn set_default(mut self, yes: bool) -> Self {
        self.set_default = Some(yes);
        self
    }

    /// Connect, validate the registry, create FraiseQL's tables, start background work.
    pub async fn start(self) -> Result<Runtime> {
        let mut config = match (self.config, self.config_file) {
            (Some(c), _) => c,
            (None, Some(path)) => Config::load(path)?,
            (None, None) => Config::from_env()?,
        };
        if let Some(d) = self.data_dir {
            config.data_dir = Some(d);
        }
        let embedded = config.databases.is_empty();
        let configured: Option<BTreeSet<String>> = (!embedded).then(|| config.databases.keys().cloned().collect());
        let registry = Registry::build(configured.as_ref())?;
        let log_db_name = match (&config.saga.log_database, embedded) {
            (Some(n), _) => n.clone(),
            (None, true) => DEFAULT_DATABASE.to_string(),
            (None, false) if config.databases.contains_key(DEFAULT_DATABASE) => DEFAULT_DATABASE.to_string(),
            (None, false) => config.databases.keys().next().cloned().unwrap_or_default(),
        };
        let mut temp_dir = None;
        if embedded {
            // The embedded default: an SQLite file per database the code uses.
            let dir = if self.temp_data_dir {
                let d = std::env::temp_dir().join(format!("fraiseql-{}", uuid::Uuid::new_v4().simple()));
                temp_dir = Some(d.clone());
                d
            } else if let Some(d) = &config.data_dir {
                d.clone()
            } else {
                crate::config::default_data_dir()
                    .map_err(|e| Error::Config(format!("cannot find the default data dir (set `data_dir`): {e}")))?
            };
            info!(data_dir = %dir.display(), "embedded default: SQLite files in this directory");
            std::fs::create_dir_all(&dir)
                .map_err(|e| Error::Config(format!("cannot create data dir `{}`: {e}", dir.display())))?;
            let mut names: BTreeSet<String> = Registry::databases_used().into_iter().map(String::from).collect();
            names.insert(log_db_name.clone());
            for name in names {
                let url = format!("sqlite://{}", dir.join(format!("{name}.db")).display());
                config.databases.insert(name, DatabaseConfig { url, ..DatabaseConfig::default() });
            }
        }
        let mut map = std::collections::BTreeMap::new();
        for (name, cfg) in &config.databases {
            map.insert(name.clone(), Db::connect(name, cfg).await?);
        }
        let databases = Databases { map: Arc::new(map) };
        let embedded_bus = config.events.url.is_none();
        for (name, db) in databases.iter() {
            let log = name == log_db_name;
            crate::migrate::run(db, name, &crate::migrate::components(log, log && embedded_bus)).await?;
        }
        let log_db = databases.get(&log_db_name)?.clone();
        let bus = match &config.events.url {
            Some(url) => crate::events::Bus::Nats(crate::events::nats::NatsBus::connect(&config.events, url).await?),
            None => crate::events::Bus::Embedded(
                crate::events::embedded::EmbeddedBus::open(log_db.clone(), &log_db_name).await?,
            ),
        };
        let (stop, _) = watch::channel(false);
        let (tx, rx) = mpsc::unbounded_channel();
        let (relay_tx, mut relay_rx) = mpsc::unbounded_channel::<Vec<crate::events::outbox::OutboxItem>>();
        let inner = Arc::new(Inner {
            instance: uuid::Uuid::new_v4().to_string(),
            config: config.clone(),
            databases,
            registry,
            log_db,
            log_db_name,
            event_subjects: Arc::new(config.events.subjects.clone()),
            bus,
            relay_tx: Mutex::new(Some(relay_tx)),
            completions: Mutex::new(Some(tx)),
            shutting_down: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            idle: Notify::new(),
            stop,
            tasks: Mutex::new(Vec::new()),
            temp_dir,
            views: Default::default(),
            #[cfg(feature = "graphql")]
            graphql: Default::default(),
        });
        info!(
            instance = %inner.instance,
            registry = %inner.registry.summary(),
            databases = ?inner.databases.names().collect::<Vec<_>>(),
            log_database = %inner.log_db_name,
            bus = inner.bus.kind(),
            embedded,
            "fraiseql runtime started"
        );
        let rt = Runtime { inner: inner.clone() };
        {
            let mut tasks = inner.tasks.lock().unwrap();
            tasks.push(tokio::spawn(completer(inner.clone(), rx)));
            tasks.push(tokio::spawn(heartbeat(inner.clone())));
            let relay_rt = inner.clone();
            tasks.push(tokio::spawn(async move {
                while let Some(items) = relay_rx.recv().await {
                    crate::events::outbox::relay(&relay_rt, items).await;
                }
            }));
            tasks.push(tokio::spawn(crate::events::outbox::sweep_loop(inner.clone())));
            if inner.config.saga.recover {
                tasks.push(tokio::spawn(recovery_loop(inner.clone())));
            }
        }
        match crate::events::subscriptions::start_all(&inner).await {
            Ok(handlers) => inner.tasks.lock().unwrap().extend(handlers),
            Err(e) => {
                rt.shutdown().await.ok();
                return Err(e);
            }
        }
        let mut default = DEFAULT.write().unwrap();
        if self.set_default.unwrap_or(default.is_none()) {
            *default = Some(rt.clone());
        }
        Ok(rt)
    }
}

impl Runtime {
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// Start with the embedded default (SQLite files in `data_dir`, by default
    /// [`default_data_dir`](crate::config::default_data_dir), unless `FRAISEQL_*`
    /// environment variables configure databases).
    pub async fn embedded() -> Result<Runtime> {
        Builder::default().start().await
    }

    /// The runtime of this task's [`Runtime::scope`], else the process default.
    pub fn current() -> Result<Runtime> {
        if let Ok(rt) = CURRENT.try_with(|rt| rt.clone()) {
            return Ok(rt);
        }
        DEFAULT.read().unwrap().clone().ok_or(Error::NoRuntime)
    }

    /// Run `fut` with this runtime as the one saga functions use.
    /// The returned future owns a handle to the runtime, so it can be spawned.
    pub fn scope<F: Future>(&self, fut: F) -> impl Future<Output = F::Output> {
        CURRENT.scope(self.clone(), fut)
    }

    /// The named databases.
    pub fn databases(&self) -> &Databases {
        &self.inner.databases
    }

    /// One named database.
    pub fn database(&self, name: &str) -> Result<&Db> {
        self.inner.databases.get(name)
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// This instance's id (the owner recorded on the sagas it runs).
    pub fn instance_id(&self) -> &str {
        &self.inner.instance
    }

    /// Inspect sagas: list by status, show one with its steps.
    pub fn sagas(&self) -> Sagas {
        Sagas { rt: self.inner.clone() }
    }

    /// Start a saga by name with JSON input (what the generated functions do).
    pub async fn run_saga(
        &self,
        name: &str,
        input: Map<String, Value>,
        idempotency_key: Option<String>,
    ) -> Result<Value> {
        let def = self.inner.registry.saga(name)?;
        executor::run_new(self.inner.clone(), def, input, idempotency_key).await
    }

    /// Publish an event now and wait for the bus to have stored it (JetStream ack).
    /// Inside a saga step use `ctx.publish`, which goes through the step's outbox.
    /// Returns the event's id.
    pub async fn publish<T: serde::Serialize>(&self, subject: &str, data: T) -> Result<String> {
        crate::events::check_captured(&self.inner.event_subjects, subject)?;
        // One serialisation, straight from `data` (no intermediate JSON value).
        let event = crate::events::Event {
            id: uuid::Uuid::now_v7().to_string(),
            subject: subject.to_string(),
            event_type: crate::events::envelope::default_type(subject),
            time: crate::events::envelope::now_rfc3339(),
            data: &data,
            saga_id: None,
        };
        let payload =
            serde_json::to_string(&event).map_err(|e| Error::json(format!("data of event `{subject}`"), e))?;
        self.inner.bus.publish_raw(&event.subject, &event.id, &event.event_type, &payload).await?;
        Ok(event.id)
    }

    /// Fire and forget: core NATS publish, no ack and no stream guarantee.
    pub async fn publish_core<T: serde::Serialize>(&self, subject: &str, data: T) -> Result<String> {
        crate::events::subject::check_publish_subject(subject)?;
        let (event, payload) = crate::events::encode(subject, data, None)?;
        self.inner.bus.publish_core(&event, &payload).await?;
        Ok(event.id)
    }

    /// Past events whose subject matches `filter` (wildcards allowed), oldest first,
    /// from `since` (or the beginning of the stream).
    pub async fn history(
        &self,
        filter: &str,
        since: Option<time::OffsetDateTime>,
    ) -> Result<Vec<crate::events::Event>> {
        crate::events::subject::check_subscription_subject(filter)?;
        self.inner.bus.history(filter, since).await
    }

    /// Send a request to the handler subscribed to `subject` and wait up to `timeout`
    /// for its reply (the value its `#[subscribe]` function returns).
    pub async fn request<T: serde::Serialize, R: serde::de::DeserializeOwned>(
        &self,
        subject: &str,
        data: T,
        timeout: Duration,
    ) -> Result<R> {
        crate::events::subject::check_publish_subject(subject)?;
        let (event, payload) = crate::events::encode(subject, data, None)?;
        let v = crate::events::subscriptions::request(&self.inner, subject, event, payload, timeout).await?;
        R::deserialize(v).map_err(|e| Error::json(format!("reply to `{subject}`"), e))
    }

    /// Events handlers could not process (poison payloads, spent delivery budgets),
    /// for one durable consumer or all.
    pub async fn dead_events(&self, consumer: Option<&str>) -> Result<Vec<crate::events::subscriptions::DeadEvent>> {
        crate::events::subscriptions::dead_events(&self.inner, consumer).await
    }

    /// The GraphQL schema of what is registered: queries as root fields, sagas as
    /// mutations (built once).
    #[cfg(feature = "graphql")]
    pub fn graphql_schema(&self) -> Result<async_graphql::dynamic::Schema> {
        if let Some(s) = self.inner.graphql.get() {
            return Ok(s.clone());
        }
        let s = crate::graphql::build_schema(self)?;
        Ok(self.inner.graphql.get_or_init(|| s).clone())
    }

    /// The schema in SDL.
    #[cfg(feature = "graphql")]
    pub fn graphql_sdl(&self) -> Result<String> {
        Ok(self.graphql_schema()?.sdl())
    }

    /// Execute a GraphQL request in this runtime.
    #[cfg(feature = "graphql")]
    pub async fn graphql(&self, request: impl Into<async_graphql::Request>) -> Result<async_graphql::Response> {
        let schema = self.graphql_schema()?;
        let request = request.into();
        let query = request.query.clone();
        let mut resp = self.scope(schema.execute(request)).await;
        crate::graphql::add_error_paths(&query, &mut resp);
        Ok(resp)
    }

    /// An axum router serving the endpoint at `graphql.path` (`/graphql`): GraphQL
    /// over HTTP, `POST` and `GET`. Merge it into your app, or serve it as is.
    #[cfg(feature = "graphql")]
    pub fn graphql_router(&self) -> Result<axum::Router> {
        crate::graphql::http::router(self)
    }

    /// Check every view-backed `#[query]` against its view now (after your migrations)
    /// rather than at its first call: the view exists and has the data column, each
    /// filter column and the default ordering's columns. Returns how many were checked.
    pub async fn check_queries(&self) -> Result<usize> {
        crate::query::check_all(&self.inner).await
    }

    /// Call a registered query by its name with JSON arguments (an object by argument
    /// name); its result as JSON.
    pub async fn query(&self, name: &str, args: serde_json::Value) -> Result<serde_json::Value> {
        self.scope(crate::query::call(&self.inner, name, args)).await
    }

    /// Run dead events through their handler again, as their next attempt: those of one
    /// consumer (a durable name, or `core:function`), or one event, or all. What succeeds
    /// leaves the dead events; what fails stays, with the new reason.
    pub async fn retry_dead_events(
        &self,
        consumer: Option<&str>,
        event_id: Option<&str>,
    ) -> Result<crate::events::subscriptions::RetriedDeadEvents> {
        crate::events::subscriptions::retry_dead_events(&self.inner, consumer, event_id).await
    }

    /// Rebuild a projection: run the `#[subscribe]` handler named `handler` (its function
    /// or durable name) over the history of its subject from `since`, in order. Returns how
    /// many events it applied.
    pub async fn rebuild(&self, handler: &str, since: Option<time::OffsetDateTime>) -> Result<usize> {
        crate::events::subscriptions::rebuild(&self.inner, handler, since).await
    }

    /// Past events whose subject matches `filter`, oldest first, from `since`, as a
    /// stream read as it goes (not loaded whole); it ends once caught up.
    pub async fn subscribe_to_history(
        &self,
        filter: &str,
        since: Option<time::OffsetDateTime>,
    ) -> Result<crate::events::EventStream> {
        crate::events::history::stream(&self.inner, filter, since, false).await
    }

    /// Like [`Runtime::subscribe_to_history`], then live events as they are published,
    /// with no gap and no repeat between the two; it ends when the runtime shuts down
    /// (or when dropped).
    pub async fn follow_history(
        &self,
        filter: &str,
        since: Option<time::OffsetDateTime>,
    ) -> Result<crate::events::EventStream> {
        crate::events::history::stream(&self.inner, filter, since, true).await
    }

    /// The transactional outbox: pending events and dead letters.
    pub fn outbox(&self) -> crate::events::Outbox {
        crate::events::Outbox { rt: self.inner.clone() }
    }

    /// Look for orphaned sagas now (the background loop does it every
    /// `saga.recovery_interval`); returns how many this instance took over.
    pub async fn recover_now(&self) -> Result<usize> {
        executor::recover_orphans(&self.inner).await
    }

    /// Stop taking work, let running sagas finish (up to `timeout`), record pending
    /// completions, close the pools.
    pub async fn shutdown(&self) -> Result<()> {
        self.shutdown_within(self.inner.config.saga.step_timeout * 2).await
    }

    pub async fn shutdown_within(&self, timeout: Duration) -> Result<()> {
        let inner = &self.inner;
        if inner.shutting_down.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        // `send` would drop the value when no loop has subscribed yet (a shutdown right
        // after start): each would then wait out its 10s below.
        inner.stop.send_replace(true);
        let drained = tokio::time::timeout(timeout, async {
            loop {
                let notified = inner.idle.notified();
                if inner.in_flight.load(Ordering::SeqCst) == 0 {
                    break;
                }
                notified.await;
            }
        })
        .await;
        if drained.is_err() {
            warn!(in_flight = inner.in_flight.load(Ordering::SeqCst), "shutdown: sagas still running after {timeout:?}; their leases will expire and another instance will recover them");
        }
        inner.completions.lock().unwrap().take();
        inner.relay_tx.lock().unwrap().take();
        let tasks: Vec<_> = std::mem::take(&mut *inner.tasks.lock().unwrap());
        for (i, mut t) in tasks.into_iter().enumerate() {
            // Background work ends promptly once stopped; never let one hang shutdown.
            if tokio::time::timeout(Duration::from_secs(10), &mut t).await.is_err() {
                warn!(task = i, "shutdown: a background task did not stop within 10s; aborting it");
                t.abort();
            }
        }
        for (_, db) in inner.databases.iter() {
            db.close().await;
        }
        if let Some(dir) = &inner.temp_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
        let mut default = DEFAULT.write().unwrap();
        if default.as_ref().is_some_and(|d| Arc::ptr_eq(&d.inner, inner)) {
            *default = None;
        }
        info!(instance = %inner.instance, "fraiseql runtime stopped");
        Ok(())
    }
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").field("instance", &self.inner.instance).finish()
    }
}

/// Counts in-flight sagas so shutdown can wait for them.
pub(crate) struct InFlight(Arc<Inner>);

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl Inner {
    pub(crate) fn enter(self: &Arc<Self>) -> Result<InFlight> {
        if self.shutting_down.load(Ordering::SeqCst) {
            return Err(Error::ShuttingDown);
        }
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        Ok(InFlight(self.clone()))
    }

    /// Hand events of a committed step to the relay.
    pub(crate) fn relay(&self, items: Vec<crate::events::outbox::OutboxItem>) {
        if let Some(tx) = self.relay_tx.lock().unwrap().as_ref() {
            // If the relay is gone (shutdown), the sweep of the next start publishes them.
            let _ = tx.send(items);
        }
    }

    /// Record a completed saga in the log (batched, off the caller's path).
    pub(crate) fn complete(&self, id: String, result: String, state: String) {
        if let Some(tx) = self.completions.lock().unwrap().as_ref() {
            let _ = tx.send((id, result, state));
        }
    }
}

async fn completer(rt: Arc<Inner>, mut rx: mpsc::UnboundedReceiver<(String, String, String)>) {
    let mut batch = Vec::with_capacity(256);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        // Give concurrent sagas a moment to finish too, so one statement records many:
        // the outcome is already durable (barriers), this only records it.
        let window = tokio::time::sleep(Duration::from_millis(5));
        tokio::pin!(window);
        while batch.len() < 512 {
            tokio::select! {
                item = rx.recv() => match item {
                    Some(item) => batch.push(item),
                    None => break,
                },
                _ = &mut window => break,
            }
        }
        let mut delay = Duration::from_millis(10);
        loop {
            match log::complete_batch(&rt.log_db, &batch).await {
                Ok(()) => break,
                Err(e) if !rt.shutting_down.load(Ordering::SeqCst) => {
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
    }
}

async fn heartbeat(rt: Arc<Inner>) {
    let mut stop = rt.stop.subscribe();
    let every = rt.config.saga.lease_ttl / 3;
    let mut renewed = tokio::time::Instant::now();
    loop {
        // While shutting down, in-flight sagas still need their leases; stop renewing
        // (and let shutdown finish) as soon as the last one is done.
        let stopping = *stop.borrow();
        if stopping && rt.in_flight.load(Ordering::SeqCst) == 0 {
            return;
        }
        let wait = if stopping { every.min(Duration::from_millis(50)) } else { every };
        tokio::select! {
            _ = stop.wait_for(|stopped| *stopped), if !stopping => continue,
            _ = tokio::time::sleep(wait) => {}
        }
        if stopping && rt.in_flight.load(Ordering::SeqCst) == 0 {
            return;
        }
        if renewed.elapsed() < every {
            continue;
        }
        renewed = tokio::time::Instant::now();
        let until = log::now_ms() + rt.config.saga.lease_ttl.as_millis() as i64;
        if let Err(e) = log::renew_leases(&rt.log_db, &rt.instance, until).await {
            warn!(error = %e, "cannot renew saga leases");
        }
    }
}

async fn recovery_loop(rt: Arc<Inner>) {
    let mut stop = rt.stop.subscribe();
    loop {
        match executor::recover_orphans(&rt).await {
            Ok(0) => {}
            Ok(n) => info!(sagas = n, "recovered orphaned sagas"),
            Err(Error::ShuttingDown) => return,
            Err(e) => warn!(error = %e, "saga recovery pass failed"),
        }
        tokio::select! {
            _ = stop.wait_for(|stopped| *stopped) => return,
            _ = tokio::time::sleep(rt.config.saga.recovery_interval) => {}
        }
    }
}

/// Not public API: the idempotency key set by [`with_idempotency_key`] for this task.
pub(crate) fn current_idempotency_key() -> Option<String> {
    IDEMPOTENCY_KEY.try_with(|k| k.clone()).ok()
}

/// Run `fut` so that the saga it starts uses `key`: starting a saga twice with the same
/// key runs it once, and the second call gets the first one's result.
///
/// ```text
/// let order = fraiseql::with_idempotency_key("order-42", place_order(42, 1999)).await?;
/// ```
pub async fn with_idempotency_key<F: Future>(key: impl Into<String>, fut: F) -> F::Output {
    IDEMPOTENCY_KEY.scope(key.into(), fut).await
}
