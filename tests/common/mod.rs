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

/// Each test's databases go when the test ends: a full run creates hundreds, at about
/// 8 MB each, and CI's disk is shared with the build. `WITH (FORCE)` ends the
/// connections a killed child or a leaked pool still holds.
impl Drop for TestDbs {
    fn drop(&mut self) {
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
            return;
        }
        let names: Vec<String> =
            self.urls.values().filter_map(|u| u.rsplit_once('/').map(|(_, db)| db.to_string())).collect();
        // Drop may run inside a test's runtime, which cannot be blocked on: a thread of
        // its own with a runtime of its own.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            rt.block_on(async move {
                let pool = sqlx::PgPool::connect(&pg_admin_url()).await?;
                for db in names {
                    sqlx::query(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)")).execute(&pool).await?;
                }
                pool.close().await;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
            })
        })
        .join();
        if let Ok(Err(e)) = dropped {
            eprintln!("test databases were not dropped: {e}");
        }
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

/// A 3-node JetStream cluster of a test's own: real nats-server processes (the binary
/// `scripts/test` installed) on free loopback ports, each with its own config file and
/// store, so that a test can SIGKILL a node and start it again as it was.
pub(crate) struct NatsCluster {
    pub dir: PathBuf,
    pub nodes: Vec<ClusterNode>,
}

pub(crate) struct ClusterNode {
    /// The server's name (`server_name`), as JetStream reports leaders: `n1`, `n2`, `n3`.
    pub name: String,
    pub port: u16,
    pub monitor_port: u16,
    conf: PathBuf,
    child: Option<std::process::Child>,
}

impl NatsCluster {
    pub(crate) async fn start() -> NatsCluster {
        // All nine ports held at once, so that no two are the same.
        let listeners: Vec<_> = (0..9).map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap()).collect();
        let ports: Vec<u16> = listeners.iter().map(|l| l.local_addr().unwrap().port()).collect();
        drop(listeners);
        let dir = std::env::temp_dir().join(format!("fraiseql-nats-cluster-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let routes: Vec<String> = (0..3).map(|i| format!("nats-route://127.0.0.1:{}", ports[6 + i])).collect();
        let nodes = (0..3)
            .map(|i| {
                let name = format!("n{}", i + 1);
                let conf = dir.join(format!("{name}.conf"));
                let text = format!(
                    "server_name: {name}\nlisten: 127.0.0.1:{}\nhttp: 127.0.0.1:{}\nlog_file: {:?}\n\
                     jetstream {{ store_dir: {:?} }}\n\
                     cluster {{ name: test, listen: 127.0.0.1:{}, routes: [{}] }}\n",
                    ports[i],
                    ports[3 + i],
                    dir.join(format!("{name}.log")),
                    dir.join(&name),
                    ports[6 + i],
                    routes.join(", ")
                );
                std::fs::write(&conf, text).unwrap();
                ClusterNode { name, port: ports[i], monitor_port: ports[3 + i], conf, child: None }
            })
            .collect();
        let mut cluster = NatsCluster { dir, nodes };
        for i in 0..3 {
            cluster.spawn(i);
        }
        cluster.wait_healthy().await;
        cluster
    }

    /// Every node's client URL, comma-separated: one `events.url`.
    pub(crate) fn urls(&self) -> String {
        self.nodes.iter().map(|n| format!("nats://127.0.0.1:{}", n.port)).collect::<Vec<_>>().join(",")
    }

    pub(crate) fn index_of(&self, server_name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == server_name)
    }

    pub(crate) fn is_running(&self, i: usize) -> bool {
        self.nodes[i].child.is_some()
    }

    fn spawn(&mut self, i: usize) {
        let bin = std::env::var("FRAISEQL_TEST_NATS_SERVER").expect(
            "FRAISEQL_TEST_NATS_SERVER is not set: run the suite with `scripts/test` (it installs nats-server ≥ 2.10)",
        );
        let node = &mut self.nodes[i];
        assert!(node.child.is_none(), "node {} already running", node.name);
        let child = std::process::Command::new(bin)
            .arg("-c")
            .arg(&node.conf)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start nats-server");
        node.child = Some(child);
    }

    /// SIGKILL node `i` (a crash: no goodbye to the cluster or its clients), and reap it.
    pub(crate) fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// Start node `i` again with its config and store; it rejoins and catches up.
    pub(crate) async fn restart(&mut self, i: usize) {
        self.spawn(i);
        self.wait_healthy().await;
    }

    /// Until every running node answers `/healthz` (JetStream current with the meta
    /// leader, its streams and consumers caught up) and one of them names a meta leader.
    pub(crate) async fn wait_healthy(&self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let mut healthy = true;
            let mut leader = None;
            for (i, n) in self.nodes.iter().enumerate() {
                if !self.is_running(i) {
                    continue;
                }
                healthy &= matches!(http_get(n.monitor_port, "/healthz").await, Some((200, _)));
                if leader.is_none() {
                    leader = self
                        .monitor(i, "/jsz")
                        .await
                        .and_then(|j| j["meta_cluster"]["leader"].as_str().map(str::to_string))
                        .filter(|l| !l.is_empty());
                }
            }
            if healthy && leader.is_some() {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the NATS cluster is not healthy after 60 s (logs in {})",
                self.dir.display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A monitoring endpoint of node `i` as JSON; None if it does not answer.
    pub(crate) async fn monitor(&self, i: usize, path: &str) -> Option<serde_json::Value> {
        match http_get(self.nodes[i].monitor_port, path).await {
            Some((200, body)) => serde_json::from_str(&body).ok(),
            _ => None,
        }
    }

    /// The running nodes that hold a client connection named `name` (`/connz`).
    pub(crate) async fn nodes_with_client(&self, name: &str) -> Vec<usize> {
        let mut out = Vec::new();
        for i in 0..self.nodes.len() {
            if !self.is_running(i) {
                continue;
            }
            let Some(c) = self.monitor(i, "/connz").await else { continue };
            let has = c["connections"].as_array().is_some_and(|a| a.iter().any(|c| c["name"] == name));
            if has {
                out.push(i);
            }
        }
        out
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
        // The servers' logs explain a failure: kept when the test panicked.
        if std::thread::panicking() {
            eprintln!("NATS cluster logs kept in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// `GET path` on 127.0.0.1:`port` (a nats-server's monitoring endpoint): the status and
/// the body; None if nothing answered.
pub(crate) async fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let path = path.to_string();
    tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
        let mut raw = String::new();
        s.read_to_string(&mut raw).ok()?;
        let (head, body) = raw.split_once("\r\n\r\n")?;
        let status = head.split_whitespace().nth(1)?.parse().ok()?;
        Some((status, body.to_string()))
    })
    .await
    .unwrap()
}

/// The value of one series in Prometheus text: `name` with (at least) these labels.
pub(crate) fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let (n, rest) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        if n != name {
            return None;
        }
        let have: Vec<(&str, &str)> = rest
            .split("\",")
            .filter(|p| !p.is_empty())
            .filter_map(|p| p.split_once("=\""))
            .map(|(k, v)| (k, v.trim_end_matches('"')))
            .collect();
        labels.iter().all(|l| have.contains(l)).then(|| value.parse().ok()).flatten()
    })
}
