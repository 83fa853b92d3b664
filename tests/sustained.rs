//! Sustained load from several processes: two runtime processes run one-step sagas that
//! publish an event, as fast as this machine allows, for `FRAISEQL_SUSTAINED_SECS`
//! (default 60) seconds, while both consume the events with a durable handler that has
//! an inbox. The outbox backlog, sampled all along, stays bounded (its maximum is
//! printed), and every committed saga's event is handled exactly once.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Backend, NatsServer, TestDbs};
use fraiseql::prelude::*;
use serde_json::json;

const CHILD: &str = "FRAISEQL_SUSTAINED_CHILD";
const PROCESSES: usize = 2;
const CONCURRENCY: usize = 16;

#[saga(steps = ["sustained_order"])]
pub async fn sustained(n: i64) -> fraiseql::Result<()>;

#[saga_step("sustained_order")]
async fn sustained_order(ctx: &mut SagaContext, n: i64) -> fraiseql::Result<()> {
    let id = ctx.saga_id().to_string();
    ctx.execute("INSERT INTO placed (saga_id, n) VALUES ($1, $2)", (&id, n)).await?;
    ctx.publish("fraiseql.sustained.placed", json!({ "saga_id": id })).await?;
    Ok(())
}

#[subscribe("fraiseql.sustained.placed", durable = "sustained", database = "primary", concurrency = 32)]
async fn count_placed(event: Event, ctx: &mut EventTx) -> fraiseql::Result<()> {
    let saga_id = event.data["saga_id"].as_str().unwrap_or_default().to_string();
    ctx.execute("INSERT INTO handled (saga_id, event_id) VALUES ($1, $2)", (&saga_id, &event.id)).await?;
    Ok(())
}

async fn count(rt: &Runtime, sql: &str) -> i64 {
    let (n,): (i64,) = rt.database("primary").unwrap().fetch_one(sql, ()).await.unwrap();
    n
}

/// The child side: sagas at full speed for `SECS`, then keep consuming until killed.
/// Run directly, it checks one saga's event is handled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sustained_child() {
    if std::env::var(CHILD).is_err() {
        let dbs = TestDbs::new(Backend::Sqlite, &["primary"]).await;
        schema(&dbs).await;
        let rt = dbs.start(|_| {}).await;
        rt.scope(sustained(1)).await.unwrap();
        for _ in 0..500 {
            if count(&rt, "SELECT COUNT(*) FROM handled").await == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(count(&rt, "SELECT COUNT(*) FROM handled").await, 1);
        rt.shutdown().await.unwrap();
        return;
    }
    let rt = Runtime::builder().config(fraiseql::Config::from_env().unwrap()).start().await.unwrap();
    let secs: u64 = std::env::var("SECS").unwrap().parse().unwrap();
    let until = Instant::now() + Duration::from_secs(secs);
    let workers: Vec<_> = (0..CONCURRENCY)
        .map(|w| {
            let rt = rt.clone();
            tokio::spawn(async move {
                let mut n = 0i64;
                while Instant::now() < until {
                    rt.scope(sustained(w as i64 * 1_000_000 + n)).await.unwrap();
                    n += 1;
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    println!("LOAD DONE");
    // Keep consuming (and relaying) until the parent has seen everything and kills us.
    tokio::time::sleep(Duration::from_secs(3600)).await;
}

async fn schema(dbs: &TestDbs) {
    let rt = dbs.start(|_| {}).await;
    rt.database("primary")
        .unwrap()
        .execute_script(
            "CREATE TABLE placed (saga_id TEXT PRIMARY KEY, n BIGINT NOT NULL);
             CREATE TABLE handled (saga_id TEXT NOT NULL, event_id TEXT NOT NULL)",
        )
        .await
        .unwrap();
    rt.shutdown().await.unwrap();
}

fn spawn(dbs: &TestDbs, nats: &NatsServer, secs: u64) -> Child {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["sustained_child", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .env("SECS", secs.to_string())
        .env("FRAISEQL_EVENTS__URL", nats.url())
        .env("FRAISEQL_DATABASES__PRIMARY__MAX_CONNECTIONS", "40")
        .env("RUST_LOG", "error")
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    for (k, v) in dbs.env() {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sagas_publishing_at_full_speed_from_two_processes_keep_the_outbox_bounded_and_each_event_is_handled_once() {
    common::init_tracing();
    let secs: u64 = std::env::var("FRAISEQL_SUSTAINED_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(60);
    let nats = NatsServer::start().await;
    let dbs = TestDbs::new(Backend::Postgres, &["primary"]).await;
    schema(&dbs).await;
    let watcher = Runtime::builder().config(dbs.config()).set_default(false).consume(false).start().await.unwrap();
    let mut children: Vec<Child> = (0..PROCESSES).map(|_| spawn(&dbs, &nats, secs)).collect();

    // Sample the backlog while the load runs.
    let started = Instant::now();
    let (mut max_pending, mut max_lag, mut samples) = (0u64, Duration::ZERO, 0);
    while started.elapsed() < Duration::from_secs(secs + 2) {
        for b in watcher.outbox().backlog().await.unwrap() {
            max_pending = max_pending.max(b.pending);
            max_lag = max_lag.max(b.lag);
        }
        samples += 1;
        for c in &mut children {
            assert!(c.try_wait().unwrap().is_none(), "a load process died");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // Every committed saga's event handled, then nothing more arrives.
    let mut last = (-1, -1);
    for _ in 0..600 {
        let placed = count(&watcher, "SELECT COUNT(*) FROM placed").await;
        let handled = count(&watcher, "SELECT COUNT(*) FROM handled").await;
        if placed == handled && (placed, handled) == last {
            break;
        }
        last = (placed, handled);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for c in &mut children {
        c.kill().unwrap();
        c.wait().unwrap();
    }
    let placed = count(&watcher, "SELECT COUNT(*) FROM placed").await;
    let handled = count(&watcher, "SELECT COUNT(*) FROM handled").await;
    let distinct = count(&watcher, "SELECT COUNT(DISTINCT saga_id) FROM handled").await;
    let unmatched = count(
        &watcher,
        "SELECT COUNT(*) FROM placed p WHERE NOT EXISTS (SELECT 1 FROM handled h WHERE h.saga_id = p.saga_id)",
    )
    .await;
    eprintln!(
        "{placed} sagas in {secs} s from {PROCESSES} processes ({:.0}/s); outbox backlog max {max_pending} events, \
         relay lag max {max_lag:?} ({samples} samples)",
        placed as f64 / secs as f64
    );
    assert!(placed > 0);
    assert_eq!((handled, distinct, unmatched), (placed, placed, 0), "every event handled exactly once");
    // Bounded: the relay keeps up, so the backlog is a small fraction of what was
    // published (the defect it guards against kept 90% of the events waiting).
    assert!(
        (max_pending as i64) < (placed / 10).max(1_000),
        "the outbox backlog grew to {max_pending} of {placed} events"
    );
    watcher.shutdown().await.unwrap();
}
