//! Shared by the integration tests: throwaway databases on the real PostgreSQL that
//! `scripts/test` starts (or SQLite files), and runtimes configured for them.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use fraiseql::{Config, DatabaseConfig, Runtime};

/// Which backend a conformance test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    Postgres,
    Sqlite,
}

pub(crate) const BACKENDS: [Backend; 2] = [Backend::Postgres, Backend::Sqlite];

/// The admin URL of the test PostgreSQL. Missing means the suite was not started by
/// `scripts/test`: fail loudly, never skip.
pub(crate) fn pg_admin_url() -> String {
    std::env::var("FRAISEQL_TEST_PG_URL").expect(
        "FRAISEQL_TEST_PG_URL is not set: integration tests need the PostgreSQL that `scripts/test` starts \
         (or run `scripts/services start` and `eval \"$(scripts/services env)\"`)",
    )
}

/// A set of freshly created databases, one per name, for one test.
pub(crate) struct TestDbs {
    pub backend: Backend,
    pub urls: BTreeMap<String, String>,
    pub dir: Option<PathBuf>,
}

impl TestDbs {
    pub(crate) async fn new(backend: Backend, names: &[&str]) -> TestDbs {
        let tag = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
        match backend {
            Backend::Postgres => {
                let admin = pg_admin_url();
                let pool = sqlx::PgPool::connect(&admin).await.expect("connect to the test PostgreSQL");
                let mut urls = BTreeMap::new();
                for n in names {
                    let db = format!("t_{tag}_{n}");
                    sqlx::query(&format!("CREATE DATABASE {db}")).execute(&pool).await.expect("create test database");
                    let base = admin.rsplit_once('/').unwrap().0;
                    urls.insert(n.to_string(), format!("{base}/{db}"));
                }
                pool.close().await;
                TestDbs { backend, urls, dir: None }
            }
            Backend::Sqlite => {
                let dir = std::env::temp_dir().join(format!("fraiseql-test-{tag}"));
                std::fs::create_dir_all(&dir).unwrap();
                let urls = names
                    .iter()
                    .map(|n| (n.to_string(), format!("sqlite://{}", dir.join(format!("{n}.db")).display())))
                    .collect();
                TestDbs { backend, urls, dir: Some(dir) }
            }
        }
    }

    pub(crate) fn config(&self) -> Config {
        let mut c = Config::default();
        for (n, u) in &self.urls {
            c.databases
                .insert(n.clone(), DatabaseConfig { url: u.clone(), max_connections: 20, ..DatabaseConfig::default() });
        }
        c.saga.backoff_initial = Duration::from_millis(2);
        c.saga.backoff_max = Duration::from_millis(50);
        c.saga.recovery_interval = Duration::from_millis(200);
        c
    }

    /// Environment variables that configure a child process for these databases.
    pub(crate) fn env(&self) -> Vec<(String, String)> {
        self.urls.iter().map(|(n, u)| (format!("FRAISEQL_DATABASES__{}__URL", n.to_uppercase()), u.clone())).collect()
    }

    pub(crate) async fn start(&self, tweak: impl FnOnce(&mut Config)) -> Runtime {
        let mut c = self.config();
        tweak(&mut c);
        Runtime::builder().config(c).set_default(false).start().await.expect("runtime starts")
    }
}

pub(crate) fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "warn,sqlx=error".into()))
        .with_test_writer()
        .try_init();
}

/// A nats-server of a test's own, which the test can stop and restart (same port, same
/// JetStream store), from the binary `scripts/test` installed.
pub(crate) struct NatsServer {
    pub port: u16,
    pub dir: PathBuf,
    args: Vec<String>,
    child: Option<std::process::Child>,
}

impl NatsServer {
    pub(crate) async fn start() -> NatsServer {
        Self::start_with(|_| Vec::new()).await
    }

    /// A server with extra command-line arguments, given its (empty, private) directory
    /// to put files such as keys and a config file in.
    pub(crate) async fn start_with(args: impl FnOnce(&std::path::Path) -> Vec<String>) -> NatsServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let dir = std::env::temp_dir().join(format!("fraiseql-nats-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let args = args(&dir);
        let mut s = NatsServer { port, dir, args, child: None };
        s.restart().await;
        s
    }

    pub(crate) fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub(crate) async fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let bin = std::env::var("FRAISEQL_TEST_NATS_SERVER").expect(
            "FRAISEQL_TEST_NATS_SERVER is not set: run the suite with `scripts/test` (it installs nats-server ≥ 2.10)",
        );
        let child = std::process::Command::new(bin)
            .args(["-js", "-a", "127.0.0.1", "-p", &self.port.to_string(), "-sd"])
            .arg(&self.dir)
            .args(&self.args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start nats-server");
        self.child = Some(child);
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("nats-server did not start on port {}", self.port);
    }

    /// Really stop it (SIGKILL), and reap it.
    pub(crate) fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The shared nats-server of the suite.
pub(crate) fn nats_url() -> String {
    std::env::var("FRAISEQL_TEST_NATS_URL")
        .expect("FRAISEQL_TEST_NATS_URL is not set: run the suite with `scripts/test`")
}
