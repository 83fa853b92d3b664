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
    /// Named databases: `[databases.primary] url = "postgres://…"`.
    pub databases: BTreeMap<String, DatabaseConfig>,
    /// Saga defaults.
    pub saga: SagaConfig,
    /// Where embedded SQLite files go when a database has no URL (`None`: a fresh
    /// temporary directory, removed at shutdown).
    pub data_dir: Option<std::path::PathBuf>,
}

/// One named database.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `postgres://user:pass@host:port/db` or `sqlite://path/to/file.db` or `sqlite::memory:`.
    pub url: String,
    pub max_connections: u32,
    pub min_connections: u32,
    #[serde(with = "humantime_serde")]
    pub acquire_timeout: Duration,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig { url: String::new(), max_connections: 16, min_connections: 0, acquire_timeout: Duration::from_secs(10) }
    }
}

/// What a runtime does with a saga it finds unfinished (its process died).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecoveryPolicy {
    /// Undo the committed steps (the default).
    Compensate,
    /// Run the remaining steps.
    Forward,
}

/// Saga defaults; steps may override retries and timeout.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SagaConfig {
    /// Database that holds the saga log (`fraiseql_saga`). Default: `primary` when
    /// configured, else the first database by name.
    pub log_database: Option<String>,
    /// Retries of a step after a transient error (so `step_retries + 1` attempts).
    pub step_retries: u32,
    #[serde(with = "humantime_serde")]
    pub step_timeout: Duration,
    /// Attempts of a compensation before the saga is `failed`.
    pub compensation_retries: u32,
    #[serde(with = "humantime_serde")]
    pub compensation_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub backoff_initial: Duration,
    #[serde(with = "humantime_serde")]
    pub backoff_max: Duration,
    pub recovery: RecoveryPolicy,
    /// How long a runtime owns a saga without renewing; another instance recovers it after.
    #[serde(with = "humantime_serde")]
    pub lease_ttl: Duration,
    /// How often to look for sagas whose owner is gone.
    #[serde(with = "humantime_serde")]
    pub recovery_interval: Duration,
    /// Whether this runtime recovers sagas at all (e.g. off on request-serving replicas).
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

impl Config {
    /// Load `path` (TOML), then `FRAISEQL_*` environment variables over it.
    pub fn load(path: impl AsRef<Path>) -> Result<Config> {
        let path = path.as_ref();
        if !path.exists() {
            return Err(Error::Config(format!("config file `{}` does not exist", path.display())));
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
            matches!(first, "databases" | "saga" | "data_dir")
        });
        let f = f.merge(env);
        let cfg: Config = f.extract().map_err(|e| {
            let msgs: Vec<String> = e.into_iter().map(|e| e.to_string()).collect();
            Error::Config(msgs.join("; "))
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<()> {
        let mut problems = Vec::new();
        for (name, db) in &self.databases {
            if db.url.is_empty() {
                problems.push(format!("databases.{name}.url is missing"));
            } else if !(db.url.starts_with("postgres://") || db.url.starts_with("postgresql://") || db.url.starts_with("sqlite:")) {
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
        if self.saga.lease_ttl < Duration::from_millis(100) {
            problems.push("saga.lease_ttl must be at least 100ms".into());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Error::Config(problems.join("; ")))
        }
    }
}

/// A URL without its password, for messages.
pub fn redact(url: &str) -> String {
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
