//! `fraiseql.toml`, with every key overridable from the environment
//! (`FRAISEQL_DATABASES__PRIMARY__URL`, `FRAISEQL_SAGA__STEP_RETRIES`, …).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The whole configuration.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Named databases: `[databases.primary] url = "postgres://…"`. Default: none, which
    /// means the embedded SQLite default under `data_dir`.
    pub databases: BTreeMap<String, DatabaseConfig>,
    /// `[saga]`: saga defaults.
    pub saga: SagaConfig,
    /// `[events]`: the event bus, NATS JetStream when `url` is set, else the embedded bus.
    pub events: EventsConfig,
    /// `[graphql]`: the GraphQL endpoint.
    pub graphql: GraphqlConfig,
    /// Where the embedded default keeps its SQLite files when no databases are
    /// configured (`FRAISEQL_DATA_DIR`). `None`: [`default_data_dir`], which a restarted
    /// process finds again. A temporary directory only on request:
    /// [`Builder::temp_data_dir`](crate::Builder::temp_data_dir).
    pub data_dir: Option<std::path::PathBuf>,
}

/// `[graphql]`: the endpoint and its limits.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GraphqlConfig {
    /// Where `graphql_router()` serves it. `graphql.path`; default `"/graphql"`.
    pub path: String,
    /// Deepest selection nesting a request may have. `graphql.max_depth`; default 15.
    pub max_depth: usize,
    /// Most fields (weighted by nesting) a request may select. `graphql.max_complexity`;
    /// default 1000.
    pub max_complexity: usize,
    /// Largest request body, in bytes. `graphql.max_body_bytes`; default 262144 (256 KiB).
    pub max_body_bytes: usize,
    /// Most rows a list field returns (`limit` above it is refused); none: no cap.
    /// `graphql.max_limit`; default 1000.
    pub max_limit: Option<u64>,
    /// Whether `__schema` / `__type` are answered. `graphql.introspection`; default true.
    pub introspection: bool,
    /// How many documents automatic persisted queries remember (the oldest is forgotten
    /// first); 0 turns them off. `graphql.persisted_queries`; default 1024.
    pub persisted_queries: usize,
    /// How many compiled query plans are kept (the least recently used is dropped); 0
    /// answers every request with the executor. `graphql.query_plans`; default 1024.
    pub query_plans: usize,
}

impl Default for GraphqlConfig {
    fn default() -> Self {
        GraphqlConfig {
            path: "/graphql".into(),
            max_depth: 15,
            max_complexity: 1000,
            max_body_bytes: 256 * 1024,
            max_limit: Some(1000),
            introspection: true,
            persisted_queries: 1024,
            query_plans: 1024,
        }
    }
}

/// One named database.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `postgres://user:pass@host:port/db` or `sqlite://path/to/file.db` or `sqlite::memory:`.
    /// `databases.<name>.url`; required.
    pub url: String,
    /// Most connections the pool opens (an in-memory SQLite database always has exactly
    /// one). `databases.<name>.max_connections`; default 16, at least 1.
    pub max_connections: u32,
    /// Connections the pool keeps open when idle. `databases.<name>.min_connections`;
    /// default 0.
    pub min_connections: u32,
    /// How long to wait for a free connection before failing (a transient error, so a
    /// step retries); also how long start waits for a PostgreSQL server that is not up
    /// yet. `databases.<name>.acquire_timeout`; default `"10s"`.
    #[serde(with = "humantime_serde")]
    pub acquire_timeout: Duration,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: String::new(),
            max_connections: 16,
            min_connections: 0,
            acquire_timeout: Duration::from_secs(10),
        }
    }
}

/// What a runtime does with a saga it finds unfinished; `recovery = "compensate"` or
/// `"forward"`. Defined with the rules the `#[saga]` macro checks.
pub use crate::grammar::RecoveryPolicy;

// By hand rather than derived: the type lives in `grammar`, which has no serde. The
// names are the grammar's, the same `#[saga(recovery = …)]` takes.
impl Serialize for RecoveryPolicy {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for RecoveryPolicy {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        RecoveryPolicy::parse(&name).map_err(serde::de::Error::custom)
    }
}

/// Saga defaults; steps may override retries and timeout.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SagaConfig {
    /// Database that holds the saga log (`fraiseql_saga`). `saga.log_database`; default:
    /// `primary` when configured, else the first database by name.
    pub log_database: Option<String>,
    /// Retries of a step after a transient error (so `step_retries + 1` attempts).
    /// `saga.step_retries`; default 3; a step's `retries = N` overrides it.
    pub step_retries: u32,
    /// How long one attempt of a step may run; after that it fails with
    /// [`Error::Timeout`]. `saga.step_timeout`; default `"30s"`; a step's `timeout = "…"`
    /// overrides it.
    #[serde(with = "humantime_serde")]
    pub step_timeout: Duration,
    /// Retries of a compensation after any error (so `compensation_retries + 1` attempts)
    /// before the saga is `failed`. `saga.compensation_retries`; default 10; a compensation's `retries = N` overrides it.
    pub compensation_retries: u32,
    /// How long one attempt of a compensation may run. `saga.compensation_timeout`;
    /// default `"30s"`; a compensation's `timeout = "…"` overrides it.
    #[serde(with = "humantime_serde")]
    pub compensation_timeout: Duration,
    /// First delay between attempts of a step or compensation; it grows exponentially,
    /// with jitter. `saga.backoff_initial`; default `"20ms"`.
    #[serde(with = "humantime_serde")]
    pub backoff_initial: Duration,
    /// Longest delay between attempts. `saga.backoff_max`; default `"2s"`.
    #[serde(with = "humantime_serde")]
    pub backoff_max: Duration,
    /// What recovery does with an unfinished saga. `saga.recovery`; default
    /// `"compensate"`; a saga's `#[saga(recovery = "forward")]` overrides it.
    pub recovery: RecoveryPolicy,
    /// How long a runtime owns a saga without renewing; another instance recovers it after.
    /// `saga.lease_ttl`; default `"30s"`, at least 100 ms.
    #[serde(with = "humantime_serde")]
    pub lease_ttl: Duration,
    /// How often to look for sagas whose owner is gone. `saga.recovery_interval`;
    /// default `"5s"`.
    #[serde(with = "humantime_serde")]
    pub recovery_interval: Duration,
    /// Whether this runtime recovers sagas at all (e.g. off on request-serving replicas).
    /// `saga.recover`; default true.
    pub recover: bool,
}

impl Default for SagaConfig {
    fn default() -> Self {
        SagaConfig {
            log_database: None,
            step_retries: 3,
            step_timeout: Duration::from_secs(30),
            compensation_retries: 10,
            compensation_timeout: Duration::from_secs(30),
            backoff_initial: Duration::from_millis(20),
            backoff_max: Duration::from_secs(2),
            recovery: RecoveryPolicy::Compensate,
            lease_ttl: Duration::from_secs(30),
            recovery_interval: Duration::from_secs(5),
            recover: true,
        }
    }
}

/// Where JetStream keeps the stream; `events.storage`, default `"file"`. It cannot be
/// changed on an existing stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamStorage {
    /// On disk: events survive a server restart (`"file"`, the default).
    File,
    /// In memory: faster, lost when the server stops (`"memory"`).
    Memory,
}

/// When JetStream may drop events; `events.retention`, default `"limits"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamRetention {
    /// Keep events within the stream's limits (`max_age`): history and rebuilds see them.
    Limits,
    /// Drop an event once every consumer has acknowledged it: history only holds what a
    /// consumer has not processed yet.
    Interest,
}

/// `[events]`: the bus and its stream.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    /// `nats://host:4222`, or several separated by commas. None: the embedded bus.
    /// `events.url`; default none.
    pub url: Option<String>,
    /// The JetStream stream that keeps the events (created or updated at start).
    /// `events.stream`; default `"FRAISEQL"`.
    pub stream: String,
    /// Subjects the stream captures; publishing elsewhere is refused. `events.subjects`;
    /// default `["fraiseql.>"]`.
    pub subjects: Vec<String>,
    /// JetStream de-duplicates by event id within this window. `events.duplicate_window`;
    /// default `"2m"`.
    #[serde(with = "humantime_serde")]
    pub duplicate_window: std::time::Duration,
    /// How long the stream keeps events (None: forever). `events.max_age`; default none.
    #[serde(with = "humantime_serde")]
    pub max_age: Option<std::time::Duration>,
    /// Where the stream's events are kept. `events.storage`; default `"file"`.
    pub storage: StreamStorage,
    /// When the stream may drop events. `events.retention`; default `"limits"`.
    pub retention: StreamRetention,
    /// Copies of the stream in a cluster (1 for a single server). `events.replicas`;
    /// default 1.
    pub replicas: usize,
    /// A NATS `.creds` file (JWT and NKey seed). `events.credentials_file`; default none.
    pub credentials_file: Option<std::path::PathBuf>,
    /// Token authentication. `events.token`; default none.
    pub token: Option<String>,
    /// User name, used with `password`. `events.user`; default none.
    pub user: Option<String>,
    /// Password, used with `user`. `events.password`; default none.
    pub password: Option<String>,
    /// NKey seed. `events.nkey`; default none.
    pub nkey: Option<String>,
    /// Refuse a connection without TLS. `events.tls_required`; default false.
    pub tls_required: bool,
    /// A CA certificate (PEM) to trust for the server's certificate.
    /// `events.tls_ca_file`; default none.
    pub tls_ca_file: Option<std::path::PathBuf>,
    /// A client certificate (PEM), used with `tls_client_key`. `events.tls_client_cert`;
    /// default none.
    pub tls_client_cert: Option<std::path::PathBuf>,
    /// The client certificate's private key (PEM). `events.tls_client_key`; default none.
    pub tls_client_key: Option<std::path::PathBuf>,
    /// How long start keeps trying to reach a NATS server; a refusal (credentials, TLS)
    /// fails at once. `events.connect_timeout`; default `"5s"`.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: std::time::Duration,
    /// A publish without the server's ack within this time has failed.
    /// `events.publish_timeout`; default `"5s"`.
    #[serde(with = "humantime_serde")]
    pub publish_timeout: std::time::Duration,
    /// How often the outbox sweep looks for events left behind. `events.relay_interval`;
    /// default `"1s"`.
    #[serde(with = "humantime_serde")]
    pub relay_interval: std::time::Duration,
    /// Publish attempts of an outbox event before it becomes a dead letter.
    /// `events.relay_max_attempts`; default 20, at least 1.
    pub relay_max_attempts: u32,
    /// Deliveries of an event to a durable handler before it becomes a dead event.
    /// `events.max_deliver`; default 5; a handler's `max_deliver = N` overrides it.
    pub max_deliver: u32,
    /// Delay before the first redelivery after a handler error; doubles each time.
    /// `events.redelivery_initial`; default `"100ms"`.
    #[serde(with = "humantime_serde")]
    pub redelivery_initial: std::time::Duration,
    /// Longest delay between redeliveries. `events.redelivery_max`; default `"10s"`.
    #[serde(with = "humantime_serde")]
    pub redelivery_max: std::time::Duration,
    /// Handlers running at once per subscription. `events.handler_concurrency`; default 16;
    /// a handler's `concurrency = N` overrides it.
    pub handler_concurrency: u32,
    /// A durable delivery not acknowledged within this time (its process died, say) is
    /// delivered again. Longer than the slowest handler. `events.ack_wait`; default `"30s"`.
    #[serde(with = "humantime_serde")]
    pub ack_wait: std::time::Duration,
    /// How long a handler's inbox (`#[subscribe(…, database = "…")]`) remembers an event
    /// it handled, so that a redelivery is not run again. Longer than
    /// `duplicate_window` and than any redelivery. `events.inbox_retention`; default
    /// `"7d"`.
    #[serde(with = "humantime_serde")]
    pub inbox_retention: std::time::Duration,
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            url: None,
            stream: "FRAISEQL".into(),
            subjects: vec!["fraiseql.>".into()],
            duplicate_window: std::time::Duration::from_secs(120),
            max_age: None,
            storage: StreamStorage::File,
            retention: StreamRetention::Limits,
            replicas: 1,
            credentials_file: None,
            token: None,
            user: None,
            password: None,
            nkey: None,
            tls_required: false,
            tls_ca_file: None,
            tls_client_cert: None,
            tls_client_key: None,
            connect_timeout: std::time::Duration::from_secs(5),
            publish_timeout: std::time::Duration::from_secs(5),
            relay_interval: std::time::Duration::from_secs(1),
            relay_max_attempts: 20,
            max_deliver: 5,
            redelivery_initial: std::time::Duration::from_millis(100),
            redelivery_max: std::time::Duration::from_secs(10),
            handler_concurrency: 16,
            ack_wait: std::time::Duration::from_secs(30),
            inbox_retention: std::time::Duration::from_secs(7 * 24 * 3600),
        }
    }
}

impl Config {
    /// Load `path` (TOML), then `FRAISEQL_*` environment variables over it.
    pub fn load(path: impl AsRef<Path>) -> Result<Config> {
        let path = path.as_ref();
        if !path.exists() {
            return Err(Error::config(format!("config file `{}` does not exist", path.display())));
        }
        Self::extract(Figment::from(Serialized::defaults(Config::default())).merge(Toml::file(path)))
    }

    /// Parse TOML text, then the environment over it.
    pub fn from_toml(text: &str) -> Result<Config> {
        Self::extract(Figment::from(Serialized::defaults(Config::default())).merge(Toml::string(text)))
    }

    /// Defaults plus the environment only.
    pub fn from_env() -> Result<Config> {
        Self::extract(Figment::from(Serialized::defaults(Config::default())))
    }

    fn extract(f: Figment) -> Result<Config> {
        // Only variables under a known section are configuration; others sharing the
        // prefix (e.g. test tooling's `FRAISEQL_TEST_*`) are not ours to reject.
        let env = Env::prefixed("FRAISEQL_").split("__").filter(|k| {
            // Depending on figment's order the key may still use `__` or already `.`.
            let k = k.as_str().to_ascii_lowercase().replace("__", ".");
            let first = k.split('.').next().unwrap_or("");
            matches!(first, "databases" | "saga" | "events" | "graphql" | "data_dir")
        });
        let f = f.merge(env);
        let cfg: Config = f.extract().map_err(|e| {
            let msgs: Vec<String> = e.clone().into_iter().map(|e| e.to_string()).collect();
            Error::config_from(msgs.join("; "), e)
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<()> {
        let mut problems = Vec::new();
        for (name, db) in &self.databases {
            // The name a step's or query's `database = "…"` uses, so the macros' rule.
            if let Err(why) = crate::grammar::check_name(name) {
                problems.push(format!("databases.{name}: `{name}` is not a valid database name; {why}"));
            }
            if db.url.is_empty() {
                problems.push(format!("databases.{name}.url is missing"));
            } else if !(db.url.starts_with("postgres://")
                || db.url.starts_with("postgresql://")
                || db.url.starts_with("sqlite:"))
            {
                problems.push(format!(
                    "databases.{name}.url must start with `postgres://`, `postgresql://` or `sqlite:` (got `{}`)",
                    redact(&db.url)
                ));
            }
            if db.max_connections == 0 {
                problems.push(format!("databases.{name}.max_connections must be at least 1"));
            }
        }
        if let Some(log) = &self.saga.log_database {
            if !self.databases.is_empty() && !self.databases.contains_key(log) {
                problems.push(format!("saga.log_database names `{log}`, which is not under [databases]"));
            }
        }
        for s in &self.events.subjects {
            if let Err(why) = crate::grammar::check_subject(s, crate::grammar::SubjectKind::Subscription) {
                problems.push(format!("events.subjects: `{s}` is not a valid subscription subject: {why}"));
            }
        }
        if self.events.subjects.is_empty() {
            problems.push("events.subjects must list at least one subject pattern".into());
        }
        if let Err(why) = crate::grammar::check_stream_name(&self.events.stream) {
            problems.push(format!("events.stream `{}` is not a valid stream name ({why})", self.events.stream));
        }
        if self.events.inbox_retention <= self.events.duplicate_window
            || self.events.inbox_retention <= self.events.ack_wait
        {
            problems.push(format!(
                "events.inbox_retention ({}) must be longer than events.duplicate_window ({}) and events.ack_wait ({}): \
                 an event delivered again after its inbox row expired would be handled twice",
                humantime::format_duration(self.events.inbox_retention),
                humantime::format_duration(self.events.duplicate_window),
                humantime::format_duration(self.events.ack_wait)
            ));
        }
        if self.events.relay_max_attempts == 0 {
            problems.push("events.relay_max_attempts must be at least 1".into());
        }
        if self.saga.lease_ttl < Duration::from_millis(100) {
            problems.push("saga.lease_ttl must be at least 100ms".into());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Error::config(problems.join("; ")))
        }
    }
}

/// Where the embedded default keeps its SQLite files when `data_dir` is not set:
/// `.fraiseql/<program>` under the current directory, `<program>` being the
/// executable's file name without extension (`./.fraiseql/orders/primary.db`).
///
/// Why there: a process restarted the way it was started (same working directory,
/// as systemd's `WorkingDirectory`, a container's `WORKDIR` or a developer's shell
/// arrange) finds the files, so it recovers the sagas its predecessor left unfinished;
/// two programs started in one directory do not mix their databases, while instances
/// of one program share them (as they should: any of them may recover the others'
/// sagas). It needs no home directory (containers often have none) and sits next to
/// the project like `target/`, where one looks for it. Add `.fraiseql/` to
/// `.gitignore`.
///
/// ```
/// let dir = fraiseql_runtime::config::default_data_dir().unwrap();
/// assert!(dir.parent().unwrap().ends_with(".fraiseql"));
/// ```
pub fn default_data_dir() -> std::io::Result<std::path::PathBuf> {
    let program = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "fraiseql".to_string());
    Ok(std::env::current_dir()?.join(".fraiseql").join(program))
}

/// A URL without its password, for messages.
pub(crate) fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.find(':') {
                Some(c) => format!("{}{}:***{}", &url[..s + 3], &creds[..c], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}
