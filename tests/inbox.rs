//! The inbox: a durable handler declared with `database = "…"` runs in a transaction on
//! that database, and the runtime records the event in that transaction, so its effects
//! happen exactly once — also when its process is killed between the commit and the ack
//! (real processes, real SIGKILL, many times, on both buses), when an attempt fails after
//! writing, and when a rebuild replays history the inbox has seen. Expired inbox rows go;
//! the others stay, under load.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{Backend, NatsServer, TestDbs};
use fraiseql::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::json;

const CHILD: &str = "FRAISEQL_INBOX_CHILD";
const CONSUMER: &str = "inbox_credits";

#[derive(Debug, Serialize, Deserialize)]
struct Credit {
    account: String,
    cents: i64,
    /// The first attempt fails after writing (its writes must not stay).
    #[serde(default)]
    fail_first: bool,
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

/// Deliberately not idempotent: every run that commits adds a row, so an event applied
/// twice shows as two rows.
#[subscribe("fraiseql.inbox.credit.*", durable = "inbox_credits", database = "ledger", concurrency = 4)]
async fn credit(event: Event<Credit>, ctx: &mut EventTx) -> fraiseql::Result<()> {
    ctx.execute(
        "INSERT INTO effect (event_id, account, cents, attempt, replay, handled_at) VALUES ($1, $2, $3, $4, $5, $6)",
        (&event.id, &event.data.account, event.data.cents, ctx.attempt() as i64, ctx.is_replay(), now_ms()),
    )
    .await?;
    if !ctx.is_replay() {
        ctx.publish("fraiseql.inbox.credited", json!({ "for": event.id })).await?;
    }
    if event.data.fail_first && ctx.attempt() == 1 && !ctx.is_replay() {
        return Err(Error::msg("first attempt fails after writing"));
    }
    Ok(())
}

struct Setup {
    dbs: TestDbs,
    nats: Option<NatsServer>,
}

impl Setup {
    async fn new(bus_nats: bool, db: Backend) -> Setup {
        common::init_tracing();
        let nats = if bus_nats { Some(NatsServer::start().await) } else { None };
        let dbs = TestDbs::new(db, &["primary", "ledger"]).await;
        let pre = dbs.start(|_| {}).await;
        pre.database("ledger")
            .unwrap()
            .execute_script(
                "CREATE TABLE effect (event_id TEXT NOT NULL, account TEXT NOT NULL, cents BIGINT NOT NULL,
                 attempt BIGINT NOT NULL, replay BOOLEAN NOT NULL, handled_at BIGINT NOT NULL)",
            )
            .await
            .unwrap();
        pre.shutdown().await.unwrap();
        Setup { dbs, nats }
    }

    fn tweak(&self, c: &mut fraiseql::Config) {
        c.events.url = self.nats.as_ref().map(|n| n.url());
        c.events.redelivery_initial = Duration::from_millis(20);
        c.events.redelivery_max = Duration::from_millis(100);
        c.events.ack_wait = Duration::from_secs(1);
    }

    async fn start(&self, consume: bool) -> Runtime {
        let mut c = self.dbs.config();
        self.tweak(&mut c);
        Runtime::builder().config(c).set_default(false).consume(consume).start().await.expect("runtime starts")
    }

    fn env(&self) -> Vec<(String, String)> {
        let mut env = self.dbs.env();
        if let Some(n) = &self.nats {
            env.push(("FRAISEQL_EVENTS__URL".into(), n.url()));
        }
        env.push(("FRAISEQL_EVENTS__ACK_WAIT".into(), "1s".into()));
        env
    }
}

async fn effects(rt: &Runtime) -> Vec<(String, i64, bool)> {
    rt.database("ledger")
        .unwrap()
        .fetch_all("SELECT event_id, attempt, replay FROM effect ORDER BY event_id, attempt", ())
        .await
        .unwrap()
}

async fn count(rt: &Runtime, db: &str, sql: &str) -> i64 {
    let (n,): (i64,) = rt.database(db).unwrap().fetch_one(sql, ()).await.unwrap();
    n
}

async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..1500 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// The `for` of every `credited` event in history (published by the handler through
/// its database's outbox).
async fn credited(rt: &Runtime) -> Vec<String> {
    let events = rt.history("fraiseql.inbox.credited", None).await.unwrap();
    let mut out: Vec<String> = events.iter().map(|e| e.data["for"].as_str().unwrap().to_string()).collect();
    out.sort();
    out
}

/// Every event applied once; a failed attempt leaves neither its write nor its event;
/// a rebuild replays every event although the inbox holds them all, and leaves the
/// live inbox as it was.
async fn applies_once_and_rebuilds(s: Setup) {
    let rt = s.start(true).await;
    let mut ids = Vec::new();
    for i in 0..6 {
        let credit = Credit { account: format!("a{i}"), cents: 100 + i, fail_first: i % 3 == 0 };
        ids.push(rt.publish(&format!("fraiseql.inbox.credit.a{i}"), credit).await.unwrap());
    }
    ids.sort();
    eventually("six events applied", || async { effects(&rt).await.len() >= 6 }).await;
    eventually("six events relayed", || async { rt.outbox().pending().await.unwrap() == 0 }).await;
    let applied = effects(&rt).await;
    assert_eq!(applied.iter().map(|e| e.0.clone()).collect::<Vec<_>>(), ids, "each once: {applied:?}");
    let retried = applied.iter().filter(|e| e.1 == 2).count();
    assert_eq!(retried, 2, "the two failing first attempts left nothing; their retries applied: {applied:?}");
    assert_eq!(credited(&rt).await, ids, "each handler's event published once, none for failed attempts");
    let live_inbox = format!("SELECT COUNT(*) FROM fraiseql_inbox WHERE consumer = '{CONSUMER}'");
    assert_eq!(count(&rt, "ledger", &live_inbox).await, 6);

    // A rebuild into a fresh projection: the inbox has every event, the replay runs them all.
    rt.database("ledger").unwrap().execute("DELETE FROM effect", ()).await.unwrap();
    assert_eq!(rt.rebuild(CONSUMER, None).await.unwrap(), 6);
    let rebuilt = effects(&rt).await;
    assert_eq!(rebuilt.iter().map(|e| e.0.clone()).collect::<Vec<_>>(), ids);
    assert!(rebuilt.iter().all(|e| e.2), "runs of a rebuild know they replay: {rebuilt:?}");
    assert_eq!(count(&rt, "ledger", "SELECT COUNT(*) FROM fraiseql_inbox").await, 6, "the rebuild's scope is gone");
    assert_eq!(credited(&rt).await, ids, "the replay published nothing again");
    rt.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applies_once_and_rebuilds_nats_postgres() {
    applies_once_and_rebuilds(Setup::new(true, Backend::Postgres).await).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applies_once_and_rebuilds_nats_sqlite() {
    applies_once_and_rebuilds(Setup::new(true, Backend::Sqlite).await).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applies_once_and_rebuilds_embedded_postgres() {
    applies_once_and_rebuilds(Setup::new(false, Backend::Postgres).await).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applies_once_and_rebuilds_embedded_sqlite() {
    applies_once_and_rebuilds(Setup::new(false, Backend::Sqlite).await).await
}

/// The child side of the crash tests: consume until `EXPECT` events are applied (the
/// fault kills it at its first commit). Run directly, it checks the handler applies an
/// event on an untouched runtime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbox_child() {
    if std::env::var(CHILD).is_err() {
        let s = Setup::new(false, Backend::Sqlite).await;
        let rt = s.start(true).await;
        rt.publish("fraiseql.inbox.credit.direct", Credit { account: "d".into(), cents: 1, fail_first: false })
            .await
            .unwrap();
        eventually("applied", || async { effects(&rt).await.len() == 1 }).await;
        rt.shutdown().await.unwrap();
        return;
    }
    let rt = Runtime::builder().config(fraiseql::Config::from_env().unwrap()).start().await.unwrap();
    let expect: i64 = std::env::var("EXPECT").unwrap().parse().unwrap();
    for _ in 0..3000 {
        if count(&rt, "ledger", "SELECT COUNT(DISTINCT event_id) FROM effect").await >= expect {
            rt.shutdown().await.unwrap();
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the child neither finished nor was killed");
}

/// SIGKILL between the handler's commit and its ack, again and again: each life of the
/// consumer process applies at least one new event and dies before acking it, so every
/// event but the last few is delivered again to a fresh process. Every effect exists
/// once, and so does every event the handler published.
async fn killed_between_commit_and_ack(s: Setup) {
    const EVENTS: usize = 20;
    let publisher = s.start(false).await;
    let mut ids = Vec::new();
    for i in 0..EVENTS {
        let credit = Credit { account: format!("k{i}"), cents: i as i64, fail_first: false };
        ids.push(publisher.publish(&format!("fraiseql.inbox.credit.k{i}"), credit).await.unwrap());
    }
    ids.sort();
    let (mut kills, mut lives) = (0, 0);
    while count(&publisher, "ledger", "SELECT COUNT(DISTINCT event_id) FROM effect").await < EVENTS as i64 {
        assert!(lives < EVENTS * 4, "no progress after {lives} processes");
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args(["inbox_child", "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD, "1")
            .env("EXPECT", EVENTS.to_string())
            .env("FRAISEQL_FAULT", format!("after_inbox_commit:{CONSUMER}"))
            .env("RUST_LOG", "error")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (k, v) in s.env() {
            cmd.env(k, v);
        }
        let status = cmd.status().unwrap();
        lives += 1;
        match status.signal() {
            Some(libc::SIGKILL) => kills += 1,
            _ => assert!(status.success(), "the child failed: {status:?}"),
        }
    }
    assert!(kills >= EVENTS / 4, "killed between commit and ack {kills} times in {lives} lives");
    let applied = effects(&publisher).await;
    assert_eq!(applied.iter().map(|e| e.0.clone()).collect::<Vec<_>>(), ids, "each effect once: {applied:?}");
    let redelivered = applied.iter().filter(|e| e.1 > 1).count();
    publisher.shutdown().await.unwrap();

    // A clean process relays what the killed ones committed to their outbox.
    let rt = s.start(true).await;
    eventually("the outbox relayed", || async { rt.outbox().pending().await.unwrap() == 0 }).await;
    assert_eq!(credited(&rt).await, ids, "each handler's event published once");
    let live_inbox = format!("SELECT COUNT(*) FROM fraiseql_inbox WHERE consumer = '{CONSUMER}'");
    assert_eq!(count(&rt, "ledger", &live_inbox).await, EVENTS as i64);
    eprintln!(
        "{EVENTS} events, {lives} processes, {kills} killed after a commit, {redelivered} applied on a redelivery"
    );
    rt.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_between_commit_and_ack_nats_postgres() {
    killed_between_commit_and_ack(Setup::new(true, Backend::Postgres).await).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_between_commit_and_ack_embedded_sqlite() {
    killed_between_commit_and_ack(Setup::new(false, Backend::Sqlite).await).await
}

/// Under a steady stream of events, the sweep removes inbox rows older than the
/// retention and only those: every event handled within the retention still has its row.
async fn the_sweep_removes_only_expired_rows(s: Setup) {
    const RETENTION_MS: i64 = 2_500;
    let mut c = s.dbs.config();
    s.tweak(&mut c);
    c.events.inbox_retention = Duration::from_millis(RETENTION_MS as u64);
    c.events.duplicate_window = Duration::from_secs(1);
    let rt = Runtime::builder().config(c).set_default(false).start().await.unwrap();
    let mut checked = 0;
    let started = now_ms();
    let mut i = 0;
    while now_ms() - started < 4 * RETENTION_MS {
        for _ in 0..10 {
            let credit = Credit { account: format!("s{i}"), cents: 1, fail_first: false };
            rt.publish(&format!("fraiseql.inbox.credit.s{i}"), credit).await.unwrap();
            i += 1;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        // Every event handled more than a second inside the retention has its row.
        let recent = now_ms() - RETENTION_MS + 1_000;
        let missing: i64 = count(
            &rt,
            "ledger",
            &format!(
                "SELECT COUNT(*) FROM effect e WHERE e.handled_at > {recent} AND NOT EXISTS
                 (SELECT 1 FROM fraiseql_inbox i WHERE i.consumer = '{CONSUMER}' AND i.event_id = e.event_id)"
            ),
        )
        .await;
        assert_eq!(missing, 0, "an unexpired inbox row was removed");
        checked += 1;
    }
    // Well past one sweep interval (a quarter of the retention): what expired is gone.
    let expired = now_ms() - RETENTION_MS - RETENTION_MS / 4 - 1_500;
    let stale =
        count(&rt, "ledger", &format!("SELECT COUNT(*) FROM fraiseql_inbox WHERE processed_at < {expired}")).await;
    assert_eq!(stale, 0, "expired inbox rows stay");
    let handled = count(&rt, "ledger", "SELECT COUNT(*) FROM effect").await;
    let kept = count(&rt, "ledger", "SELECT COUNT(*) FROM fraiseql_inbox").await;
    assert!(kept < handled, "nothing was swept ({kept} rows for {handled} events)");
    let dup = count(&rt, "ledger", "SELECT COUNT(*) - COUNT(DISTINCT event_id) FROM effect").await;
    assert_eq!(dup, 0);
    eprintln!("{handled} events handled, {kept} inbox rows kept, {checked} checks");
    rt.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweep_removes_only_expired_rows_nats_postgres() {
    the_sweep_removes_only_expired_rows(Setup::new(true, Backend::Postgres).await).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweep_removes_only_expired_rows_embedded_sqlite() {
    the_sweep_removes_only_expired_rows(Setup::new(false, Backend::Sqlite).await).await
}
