//! The composition root: [`Builder::start`] connects the databases, checks the registry,
//! brings FraiseQL's tables up to date, and wires the components — sagas
//! ([`crate::saga::SagaEngine`]), events ([`crate::events::Events`]), queries
//! ([`crate::query::Queries`]) and, on demand, GraphQL — each with only what it needs.
//! [`Runtime`] is the public face over them; nothing below reaches back into it.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde_json::{Map, Value};
use tracing::{info, warn};

use crate::config::{Config, DatabaseConfig};
use crate::db::{Databases, Db, NamedDb};
use crate::error::{Error, Result};
use crate::events::Events;
use crate::lifecycle::Lifecycle;
use crate::query::Queries;
use crate::registry::{Registry, DEFAULT_DATABASE};
use crate::saga::inspect::Sagas;
use crate::saga::SagaEngine;

/// A running FraiseQL instance. Cheap to clone. Several may run in one process.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    databases: Databases,
    registry: Registry,
    lifecycle: Lifecycle,
    sagas: Arc<SagaEngine>,
    events: Arc<Events>,
    queries: Arc<Queries>,
    /// The embedded default's temporary directory, removed at shutdown.
    temp_dir: Option<PathBuf>,
    stopped: AtomicBool,
    #[cfg(feature = "graphql")]
    graphql: std::sync::OnceLock<std::sync::Arc<dyn std::any::Any + Send + Sync>>,
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
    consume: Option<bool>,
}

/// What a start has opened so far, released if a later step fails.
#[derive(Default)]
struct Opened {
    pools: Vec<Db>,
    temp_dir: Option<PathBuf>,
    lifecycle: Option<Lifecycle>,
}

impl Opened {
    async fn release(self) {
        if let Some(l) = self.lifecycle {
            l.drain(Duration::from_secs(1)).await;
            l.halt(Duration::from_secs(5)).await;
        }
        for db in self.pools {
            db.close().await;
        }
        if let Some(dir) = self.temp_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
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

    /// Whether this instance runs the `#[subscribe]` handlers linked into it. Default:
    /// yes. With `consume(false)` it publishes, runs sagas and serves queries but
    /// handles no events (nor rebuilds or retries them): a web tier, a one-off script,
    /// a test's publisher.
    pub fn consume(mut self, yes: bool) -> Self {
        self.consume = Some(yes);
        self
    }

    /// Connect, validate the registry, bring FraiseQL's tables up to date, start the
    /// background work and the subscriptions. A start that fails releases what it
    /// opened (pools, the temporary directory, tasks).
    pub async fn start(self) -> Result<Runtime> {
        let set_default = self.set_default;
        let mut opened = Opened::default();
        match self.start_into(&mut opened).await {
            Ok(rt) => {
                let mut default = DEFAULT.write().unwrap();
                if set_default.unwrap_or(default.is_none()) {
                    *default = Some(rt.clone());
                }
                Ok(rt)
            }
            Err(e) => {
                opened.release().await;
                Err(e)
            }
        }
    }

    async fn start_into(self, opened: &mut Opened) -> Result<Runtime> {
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
        let log_name = log_database(&config, embedded);
        if embedded {
            opened.temp_dir = embedded_databases(&mut config, &log_name, self.temp_data_dir)?;
        }
        let databases = connect(&config, opened).await?;
        let embedded_bus = config.events.url.is_none();
        for (name, db) in databases.iter() {
            let log = name == log_name;
            crate::migrate::run(db, name, &crate::migrate::components(log, log && embedded_bus)).await?;
        }
        let log = NamedDb { name: log_name.clone(), db: databases.get(&log_name)?.clone() };
        let instance = uuid::Uuid::new_v4().to_string();
        let lifecycle = Lifecycle::default();
        opened.lifecycle = Some(lifecycle.clone());

        let events = Events::connect(
            &config.events,
            databases.clone(),
            log.clone(),
            if self.consume.unwrap_or(true) { registry.subscriptions().to_vec() } else { Vec::new() },
            lifecycle.clone(),
        )
        .await?;
        let sagas = SagaEngine::new(
            instance.clone(),
            config.saga.clone(),
            registry.catalog.clone(),
            databases.clone(),
            log,
            events.step_outbox().clone(),
            lifecycle.clone(),
        );
        let queries = Queries::new(databases.clone(), registry.queries().to_vec());
        sagas.start();
        events.start().await?;

        info!(
            instance = %instance,
            registry = %registry.summary(),
            databases = ?databases.names().collect::<Vec<_>>(),
            log_database = %log_name,
            bus = events.bus_kind(),
            embedded,
            "fraiseql runtime started"
        );
        let temp_dir = opened.temp_dir.take();
        Ok(Runtime {
            inner: Arc::new(Inner {
                config,
                databases,
                registry,
                lifecycle,
                sagas,
                events,
                queries,
                temp_dir,
                stopped: Default::default(),
                #[cfg(feature = "graphql")]
                graphql: Default::default(),
            }),
        })
    }
}

/// Where `fraiseql_saga` lives: `saga.log_database`, else `primary`, else the first
/// configured database by name.
fn log_database(config: &Config, embedded: bool) -> String {
    match (&config.saga.log_database, embedded) {
        (Some(n), _) => n.clone(),
        (None, true) => DEFAULT_DATABASE.to_string(),
        (None, false) if config.databases.contains_key(DEFAULT_DATABASE) => DEFAULT_DATABASE.to_string(),
        (None, false) => config.databases.keys().next().cloned().unwrap_or_default(),
    }
}

/// The embedded default: an SQLite file per database the registrations use, plus the
/// log database. Returns the temporary directory to remove at shutdown, if one was made.
fn embedded_databases(config: &mut Config, log_name: &str, temp_data_dir: bool) -> Result<Option<PathBuf>> {
    let (dir, temp) = if temp_data_dir {
        let d = std::env::temp_dir().join(format!("fraiseql-{}", uuid::Uuid::new_v4().simple()));
        (d.clone(), Some(d))
    } else if let Some(d) = &config.data_dir {
        (d.clone(), None)
    } else {
        let d = crate::config::default_data_dir()
            .map_err(|e| Error::config_from(format!("cannot find the default data dir (set `data_dir`): {e}"), e))?;
        (d, None)
    };
    info!(data_dir = %dir.display(), "embedded default: SQLite files in this directory");
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::config_from(format!("cannot create data dir `{}`: {e}", dir.display()), e))?;
    let mut names: BTreeSet<String> = Registry::databases_used().into_iter().map(String::from).collect();
    names.insert(log_name.to_string());
    for name in names {
        let url = format!("sqlite://{}", dir.join(format!("{name}.db")).display());
        config.databases.insert(name, DatabaseConfig { url, ..DatabaseConfig::default() });
    }
    Ok(temp)
}

async fn connect(config: &Config, opened: &mut Opened) -> Result<Databases> {
    let mut map = BTreeMap::new();
    for (name, cfg) in &config.databases {
        let db = Db::connect(name, cfg).await?;
        opened.pools.push(db.clone());
        map.insert(name.clone(), db);
    }
    Ok(Databases::new(map))
}

impl Runtime {
    /// A [`Builder`] to configure and start a runtime.
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

    /// One named database: `rt.database("primary")?.execute_script(MY_SCHEMA).await?`
    /// creates your own tables at start.
    pub fn database(&self, name: &str) -> Result<&Db> {
        self.inner.databases.get(name)
    }

    /// The configuration this runtime started with (after environment overrides and the
    /// embedded default's databases).
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// What the macros registered, as checked at start.
    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// This instance's id (the owner recorded on the sagas it runs).
    pub fn instance_id(&self) -> &str {
        &self.inner.sagas.instance
    }

    pub(crate) fn queries(&self) -> &Queries {
        &self.inner.queries
    }

    /// Inspect sagas: list by status, show one with its steps, retry a failed one.
    pub fn sagas(&self) -> Sagas {
        Sagas { engine: self.inner.sagas.clone() }
    }

    /// Start a saga by name with JSON input (an object by parameter name) and drive it
    /// to its end: what the generated saga functions and GraphQL mutations do. With an
    /// idempotency key, a second call with the same key returns the first one's result.
    pub async fn run_saga(
        &self,
        name: &str,
        input: Map<String, Value>,
        idempotency_key: Option<String>,
    ) -> Result<Value> {
        self.inner.sagas.run(name, input, idempotency_key).await
    }

    /// Publish an event now and wait for the bus to have stored it (JetStream ack).
    /// Inside a saga step use `ctx.publish`, which goes through the step's outbox.
    /// Returns the event's id.
    pub async fn publish<T: serde::Serialize>(&self, subject: &str, data: T) -> Result<String> {
        self.inner.events.publish(subject, data).await
    }

    /// Fire and forget: core NATS publish, no ack and no stream guarantee.
    pub async fn publish_core<T: serde::Serialize>(&self, subject: &str, data: T) -> Result<String> {
        self.inner.events.publish_core(subject, data).await
    }

    /// Past events whose subject matches `filter` (wildcards allowed), oldest first,
    /// from `since` (or the beginning of the stream).
    pub async fn history(
        &self,
        filter: &str,
        since: Option<time::OffsetDateTime>,
    ) -> Result<Vec<crate::events::Event>> {
        crate::events::history::collect(&self.inner.events, filter, since).await
    }

    /// Send a request to the handler subscribed to `subject` and wait up to `timeout`
    /// for its reply (the value its `#[subscribe]` function returns).
    pub async fn request<T: serde::Serialize, R: serde::de::DeserializeOwned>(
        &self,
        subject: &str,
        data: T,
        timeout: Duration,
    ) -> Result<R> {
        let v = self.inner.events.request(subject, data, timeout).await?;
        R::deserialize(v).map_err(|e| Error::json(format!("reply to `{subject}`"), e))
    }

    /// Events handlers could not process (poison payloads, spent delivery budgets),
    /// for one durable consumer or all.
    pub async fn dead_events(&self, consumer: Option<&str>) -> Result<Vec<crate::events::subscriptions::DeadEvent>> {
        self.inner.events.dead_events(consumer).await
    }

    /// This runtime's durable consumers, with the events waiting for each.
    pub async fn consumers(&self) -> Result<Vec<crate::events::subscriptions::ConsumerInfo>> {
        self.inner.events.consumers().await
    }

    /// Where the GraphQL schema is kept once built (see `graphql/mod.rs`); untyped, so
    /// the runtime does not depend on the layer above it.
    #[cfg(feature = "graphql")]
    pub(crate) fn graphql_cache(&self) -> &std::sync::OnceLock<std::sync::Arc<dyn std::any::Any + Send + Sync>> {
        &self.inner.graphql
    }

    /// Check every view-backed `#[query]` against its view now (after your migrations)
    /// rather than at its first call: the view exists and has the data column, each
    /// filter column and the default ordering's columns. Returns how many were checked.
    pub async fn check_queries(&self) -> Result<usize> {
        self.inner.queries.check_all().await
    }

    /// Call a registered query by its name with JSON arguments (an object by argument
    /// name); its result as JSON.
    pub async fn query(&self, name: &str, args: serde_json::Value) -> Result<serde_json::Value> {
        self.scope(self.inner.queries.call(name, args)).await
    }

    /// Run dead events through their handler again, as their next attempt: those of one
    /// consumer (a durable name, or `core:function`), or one event, or all. What succeeds
    /// leaves the dead events; what fails stays, with the new reason.
    pub async fn retry_dead_events(
        &self,
        consumer: Option<&str>,
        event_id: Option<&str>,
    ) -> Result<crate::events::subscriptions::RetriedDeadEvents> {
        self.scope(self.inner.events.retry_dead_events(consumer, event_id)).await
    }

    /// Rebuild a projection: run the `#[subscribe]` handler named `handler` (its function
    /// or durable name) over the history of its subject from `since`, in order. Returns how
    /// many events it applied.
    pub async fn rebuild(&self, handler: &str, since: Option<time::OffsetDateTime>) -> Result<usize> {
        self.scope(self.inner.events.rebuild(handler, since)).await
    }

    /// Past events whose subject matches `filter`, oldest first, from `since`, as a
    /// stream read as it goes (not loaded whole); it ends once caught up.
    pub async fn subscribe_to_history(
        &self,
        filter: &str,
        since: Option<time::OffsetDateTime>,
    ) -> Result<crate::events::EventStream> {
        self.inner.events.history_stream(filter, since, false).await
    }

    /// Like [`Runtime::subscribe_to_history`], then live events as they are published,
    /// with no gap and no repeat between the two; it ends when the runtime shuts down
    /// (or when dropped).
    pub async fn follow_history(
        &self,
        filter: &str,
        since: Option<time::OffsetDateTime>,
    ) -> Result<crate::events::EventStream> {
        self.inner.events.history_stream(filter, since, true).await
    }

    /// The transactional outbox: pending events (`pending()`), dead letters, retries,
    /// and `flush()` to publish what is due now.
    pub fn outbox(&self) -> crate::events::Outbox {
        self.inner.events.outbox()
    }

    /// Look for orphaned sagas now (the background loop does it every
    /// `saga.recovery_interval`); returns how many this instance took over.
    pub async fn recover_now(&self) -> Result<usize> {
        crate::saga::executor::recover_orphans(&self.inner.sagas).await
    }

    /// Stop taking work, let running sagas and handlers finish (up to twice
    /// `saga.step_timeout`), record pending completions, close the pools.
    pub async fn shutdown(&self) -> Result<()> {
        self.shutdown_within(self.inner.config.saga.step_timeout * 2).await
    }

    /// [`Runtime::shutdown`], waiting at most `timeout` for sagas and handlers in flight:
    /// what is still running then is left to recovery (sagas) and redelivery (events).
    pub async fn shutdown_within(&self, timeout: Duration) -> Result<()> {
        let inner = &self.inner;
        if inner.stopped.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        if !inner.lifecycle.drain(timeout).await {
            warn!(
                in_flight = inner.lifecycle.in_flight(),
                "shutdown: sagas or handlers still running after {timeout:?}; their leases will expire and another instance will recover them"
            );
        }
        // Background loops flush (completions, relayed events), then end.
        inner.lifecycle.halt(Duration::from_secs(10)).await;
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
        info!(instance = %inner.sagas.instance, "fraiseql runtime stopped");
        Ok(())
    }
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").field("instance", &self.inner.sagas.instance).finish()
    }
}

/// The idempotency key set by [`with_idempotency_key`] for this task.
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
