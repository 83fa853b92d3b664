//! Events: publish, the transactional outbox, history — on NATS JetStream (with a real
//! nats-server, stopped and restarted where the test says so) and on the embedded bus.

mod common;

use std::time::Duration;

use common::{Backend, NatsServer, TestDbs};
use fraiseql::prelude::*;
use fraiseql::Config;
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Order {
    pub id: String,
}

#[saga(steps = ["ev_create", "ev_confirm"])]
pub async fn order_flow(prefix: String, fail_confirm: bool) -> fraiseql::Result<String>;

#[saga_step("ev_create")]
async fn ev_create(ctx: &mut SagaContext, prefix: String) -> fraiseql::Result<String> {
    let id = format!("ord-{}", ctx.saga_id());
    ctx.execute("INSERT INTO orders (id, status) VALUES ($1, 'created')", (&id,)).await?;
    ctx.publish(&format!("{prefix}.order.created"), json!({ "order_id": id })).await?;
    Ok(id)
}

#[compensate("ev_create")]
async fn ev_cancel(ctx: &mut SagaContext, prefix: String) -> fraiseql::Result<()> {
    let id = format!("ord-{}", ctx.saga_id());
    ctx.execute("UPDATE orders SET status = 'cancelled' WHERE id = $1", (&id,)).await?;
    ctx.publish(&format!("{prefix}.order.cancelled"), json!({ "order_id": id, "reason": "saga_compensated" })).await?;
    Ok(())
}

#[saga_step("ev_confirm")]
async fn ev_confirm(ctx: &mut SagaContext, prefix: String, fail_confirm: bool) -> fraiseql::Result<String> {
    let id = format!("ord-{}", ctx.saga_id());
    ctx.publish(&format!("{prefix}.order.confirmed"), json!({ "order_id": id })).await?;
    if fail_confirm {
        return Err(Error::msg("confirmation refused"));
    }
    Ok(id)
}

#[saga(steps = ["ev_burst"])]
pub async fn burst(prefix: String, n: u32) -> fraiseql::Result<()>;

#[saga_step("ev_burst")]
async fn ev_burst(ctx: &mut SagaContext, prefix: String, n: u32) -> fraiseql::Result<()> {
    for i in 0..n {
        ctx.publish(&format!("{prefix}.burst.e{i}"), json!({ "i": i })).await?;
    }
    Ok(())
}

/// A unique subject prefix (and stream) per test, so tests share a server safely.
fn prefix() -> (String, String) {
    let tag = uuid::Uuid::new_v4().simple().to_string()[..10].to_string();
    (format!("fraiseql.t{tag}"), format!("T{tag}"))
}

async fn start(
    backend: Backend,
    nats_url: Option<String>,
    tweak: impl FnOnce(&mut Config),
) -> (TestDbs, Runtime, String) {
    common::init_tracing();
    let (prefix, stream) = prefix();
    let dbs = TestDbs::new(backend, &["primary"]).await;
    let rt = dbs
        .start(|c| {
            c.events.url = nats_url;
            c.events.stream = stream;
            c.events.subjects = vec![format!("{prefix}.>")];
            c.events.relay_interval = Duration::from_millis(100);
            tweak(c);
        })
        .await;
    rt.database("primary")
        .unwrap()
        .execute_script("CREATE TABLE orders (id TEXT PRIMARY KEY, status TEXT NOT NULL)")
        .await
        .unwrap();
    (dbs, rt, prefix)
}

/// Both buses: PostgreSQL + the shared nats-server, and SQLite + the embedded bus.
fn buses() -> [(Backend, Option<String>); 2] {
    [(Backend::Postgres, Some(common::nats_url())), (Backend::Sqlite, None)]
}

async fn history_eventually(rt: &Runtime, filter: &str, n: usize) -> Vec<fraiseql::Event> {
    for _ in 0..200 {
        let h = rt.history(filter, None).await.unwrap();
        if h.len() >= n {
            return h;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    rt.history(filter, None).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_stores_events_that_history_replays_in_order() {
    for (backend, url) in buses() {
        let (_dbs, rt, prefix) = start(backend, url, |_| {}).await;
        let mut ids = Vec::new();
        for i in 0..5 {
            ids.push(rt.publish(&format!("{prefix}.order.created"), json!({ "n": i })).await.unwrap());
        }
        rt.publish(&format!("{prefix}.invoice.sent"), json!({ "n": 99 })).await.unwrap();
        let h = rt.history(&format!("{prefix}.order.>"), None).await.unwrap();
        assert_eq!(h.iter().map(|e| e.id.clone()).collect::<Vec<_>>(), ids, "{backend:?}");
        assert_eq!(h.iter().map(|e| e.data["n"].as_i64().unwrap()).collect::<Vec<_>>(), vec![0, 1, 2, 3, 4]);
        assert!(h
            .iter()
            .all(|e| e.event_type == format!("{}.order.created", prefix.split_once('.').unwrap().1)
                && e.saga_id.is_none()));
        assert_eq!(rt.history(&format!("{prefix}.*.sent"), None).await.unwrap().len(), 1);
        assert_eq!(rt.history(&format!("{prefix}.>"), None).await.unwrap().len(), 6);
        rt.shutdown().await.unwrap();
    }
}

/// History as a stream: it ends once caught up; following goes on with live events
/// published meanwhile, in order, with none missed or repeated, until shutdown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_streams_and_follows_live_events_without_gap_or_repeat() {
    use futures_util::StreamExt;
    for (backend, url) in buses() {
        let (_dbs, rt, prefix) = start(backend, url, |_| {}).await;
        let subject = format!("{prefix}.order.created");
        let filter = format!("{prefix}.order.>");
        let mut ids = Vec::new();
        for i in 0..3 {
            ids.push(rt.publish(&subject, json!({ "n": i })).await.unwrap());
        }
        rt.publish(&format!("{prefix}.invoice.sent"), json!({})).await.unwrap();
        let past: Vec<String> =
            rt.subscribe_to_history(&filter, None).await.unwrap().map(|e| e.unwrap().id).collect().await;
        assert_eq!(past, ids, "{backend:?}: caught up, then the stream ends");

        let mut follow = rt.follow_history(&filter, None).await.unwrap();
        // Publish while the follower reads: the switch from past to live loses nothing.
        let publisher = {
            let (rt, subject) = (rt.clone(), subject.clone());
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for i in 3..53 {
                    ids.push(rt.publish(&subject, json!({ "n": i })).await.unwrap());
                }
                ids
            })
        };
        let mut seen = Vec::new();
        while seen.len() < 53 {
            let next = tokio::time::timeout(Duration::from_secs(10), follow.next()).await;
            let event = next
                .unwrap_or_else(|_| panic!("{backend:?}: no event after {} of 53", seen.len()))
                .expect("following")
                .unwrap();
            seen.push(event.id);
        }
        ids.extend(publisher.await.unwrap());
        assert_eq!(seen, ids, "{backend:?}: every event once, in order");
        rt.shutdown().await.unwrap();
        let end =
            tokio::time::timeout(Duration::from_secs(10), follow.next()).await.expect("following ends at shutdown");
        assert!(end.is_none(), "{backend:?}: nothing after the end");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_subjects_are_refused_with_the_reason() {
    for (backend, url) in buses() {
        let (_dbs, rt, prefix) = start(backend, url, |_| {}).await;
        let e = rt.publish(&format!("{prefix}..x"), json!({})).await.unwrap_err().to_string();
        assert!(e.contains("empty token"), "{e}");
        let e = rt.publish(&format!("{prefix}.order.*"), json!({})).await.unwrap_err().to_string();
        assert!(e.contains("wildcards"), "{e}");
        let e = rt.publish("elsewhere.order.created", json!({})).await.unwrap_err().to_string();
        assert!(e.contains("not captured by the event stream"), "{e}");
        // Inside a step, a bad subject fails the step like any error.
        let err = rt.scope(order_flow("bad..prefix".into(), false)).await.unwrap_err();
        assert!(err.to_string().contains("empty token"), "{err}");
        rt.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_publishes_if_and_only_if_it_commits() {
    for (backend, url) in buses() {
        let (_dbs, rt, prefix) = start(backend, url, |_| {}).await;
        let id = rt.scope(order_flow(prefix.clone(), false)).await.unwrap();
        let h = history_eventually(&rt, &format!("{prefix}.>"), 2).await;
        let subjects: Vec<_> = h.iter().map(|e| e.subject.clone()).collect();
        assert_eq!(
            subjects,
            vec![format!("{prefix}.order.created"), format!("{prefix}.order.confirmed")],
            "{backend:?}"
        );
        assert!(h.iter().all(|e| e.data["order_id"] == json!(id)));
        assert!(h.iter().all(|e| e.saga_id.as_deref() == Some(&id["ord-".len()..])));

        // The confirm step fails: its event never happens; the compensation's does.
        let err = rt.scope(order_flow(prefix.clone(), true)).await.unwrap_err();
        let saga_id = match err {
            Error::SagaAborted { saga_id, .. } => saga_id.to_string(),
            other => panic!("{other}"),
        };
        let h = history_eventually(&rt, &format!("{prefix}.>"), 4).await;
        let of_saga: Vec<_> =
            h.iter().filter(|e| e.saga_id.as_deref() == Some(saga_id.as_str())).map(|e| e.subject.clone()).collect();
        assert_eq!(of_saga, vec![format!("{prefix}.order.created"), format!("{prefix}.order.cancelled")]);
        assert_eq!(h.len(), 4);
        // The relay removes a row after the server's ack: soon after history shows it.
        for _ in 0..100 {
            if rt.outbox().pending().await.unwrap() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(rt.outbox().pending().await.unwrap(), 0);
        rt.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_committed_while_nats_is_stopped_are_delivered_after_it_restarts() {
    let mut nats = NatsServer::start().await;
    let (_dbs, rt, prefix) = start(Backend::Postgres, Some(nats.url()), |_| {}).await;
    nats.stop();
    // The saga does not depend on the bus: its events wait in the outbox.
    let id = rt.scope(order_flow(prefix.clone(), false)).await.unwrap();
    assert_eq!(rt.outbox().pending().await.unwrap(), 2);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rt.outbox().pending().await.unwrap(), 2, "nothing can be delivered while the server is down");
    nats.restart().await;
    for _ in 0..400 {
        if rt.outbox().pending().await.unwrap() == 0 {
            break;
        }
        rt.outbox().flush().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(rt.outbox().pending().await.unwrap(), 0);
    let h = rt.history(&format!("{prefix}.>"), None).await.unwrap();
    assert_eq!(h.len(), 2, "each event once: {h:?}");
    assert!(h.iter().all(|e| e.data["order_id"] == json!(id)));
    rt.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undeliverable_events_become_dead_letters_that_can_be_retried() {
    let mut nats = NatsServer::start().await;
    let (_dbs, rt, prefix) = start(Backend::Postgres, Some(nats.url()), |c| {
        c.events.relay_max_attempts = 2;
        c.events.relay_interval = Duration::from_millis(50);
        c.events.publish_timeout = Duration::from_millis(300);
    })
    .await;
    nats.stop();
    rt.scope(order_flow(prefix.clone(), false)).await.unwrap();
    let mut dead = Vec::new();
    for _ in 0..200 {
        rt.outbox().flush().await;
        dead = rt.outbox().dead_letters().await.unwrap();
        if dead.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(dead.len(), 2, "{dead:?}");
    assert!(dead.iter().all(|d| d.attempts == 2 && d.last_error.is_some() && d.database == "primary"), "{dead:?}");
    assert_eq!(rt.outbox().pending().await.unwrap(), 0, "dead letters are not retried on their own");

    nats.restart().await;
    let mut revived = 0;
    for _ in 0..100 {
        revived += rt.outbox().retry(None).await.unwrap();
        if rt.outbox().dead_letters().await.unwrap().is_empty() && rt.outbox().pending().await.unwrap() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(revived >= 2);
    assert!(rt.outbox().dead_letters().await.unwrap().is_empty());
    assert_eq!(rt.history(&format!("{prefix}.>"), None).await.unwrap().len(), 2);
    rt.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_server_without_jetstream_is_refused_at_start() {
    let bin =
        std::env::var("FRAISEQL_TEST_NATS_SERVER").expect("FRAISEQL_TEST_NATS_SERVER is not set: run `scripts/test`");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = std::process::Command::new(bin)
        .args(["-a", "127.0.0.1", "-p", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let dbs = TestDbs::new(Backend::Sqlite, &["primary"]).await;
    let mut c = dbs.config();
    c.events.url = Some(format!("nats://127.0.0.1:{port}"));
    let err = Runtime::builder().config(c).set_default(false).start().await.unwrap_err().to_string();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(err.contains("has no JetStream"), "{err}");
}

const RELAY_CHILD: &str = "FRAISEQL_RELAY_CHILD";

/// The relay's process is killed right after the server acked an event and before the
/// outbox row was removed. The next start publishes the row again; the server drops
/// the repeat (same `Nats-Msg-Id`), so subscribers see the event once.
/// Run directly (no `FRAISEQL_RELAY_CHILD`), it is the child's workload, uninterrupted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_child() {
    if std::env::var(RELAY_CHILD).as_deref() != Ok("run") {
        let (_dbs, rt, prefix) = start(Backend::Postgres, Some(common::nats_url()), |_| {}).await;
        rt.scope(order_flow(prefix.clone(), false)).await.unwrap();
        assert_eq!(history_eventually(&rt, &format!("{prefix}.>"), 2).await.len(), 2);
        rt.shutdown().await.unwrap();
        return;
    }
    let rt = Runtime::builder().config(Config::from_env().unwrap()).start().await.unwrap();
    let prefix = std::env::var("RELAY_PREFIX").unwrap();
    rt.scope(order_flow(prefix, false)).await.unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    std::process::exit(3); // the fault never fired
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_relayed_twice_after_a_crash_is_delivered_once() {
    use std::os::unix::process::ExitStatusExt;
    for (backend, url) in buses() {
        let (dbs, rt, prefix) = start(backend, url.clone(), |_| {}).await;
        let stream = rt.config().events.stream.clone();
        rt.shutdown().await.unwrap();
        let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
        cmd.args(["relay_child", "--exact", "--nocapture", "--test-threads=1"])
            .env(RELAY_CHILD, "run")
            .env("RELAY_PREFIX", &prefix)
            .env("FRAISEQL_FAULT", format!("after_relay_publish:{prefix}.order.confirmed"))
            .env("FRAISEQL_EVENTS__STREAM", &stream)
            .env("FRAISEQL_EVENTS__SUBJECTS", format!("[\"{prefix}.>\"]"))
            .stdin(std::process::Stdio::null());
        if let Some(u) = &url {
            cmd.env("FRAISEQL_EVENTS__URL", u);
        }
        for (k, v) in dbs.env() {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        assert_eq!(out.status.signal(), Some(libc::SIGKILL), "{backend:?}: {}", String::from_utf8_lossy(&out.stderr));

        let rt = dbs
            .start(|c| {
                c.events.url = url.clone();
                c.events.stream = stream.clone();
                c.events.subjects = vec![format!("{prefix}.>")];
            })
            .await;
        assert!(rt.outbox().pending().await.unwrap() >= 1, "the acked event's row outlived the crash");
        // Its grace period has not passed: publish what is left now.
        for _ in 0..100 {
            rt.outbox().flush().await;
            if rt.outbox().pending().await.unwrap() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(rt.outbox().pending().await.unwrap(), 0);
        let h = rt.history(&format!("{prefix}.>"), None).await.unwrap();
        let subjects: Vec<_> = h.iter().map(|e| e.subject.clone()).collect();
        assert_eq!(
            subjects,
            vec![format!("{prefix}.order.created"), format!("{prefix}.order.confirmed")],
            "{backend:?}: each event once"
        );
        rt.shutdown().await.unwrap();
    }
}

/// More events commit than one process's relay holds (its server is unreachable, so
/// nothing drains): the rest are left to the sweeps, and another instance — whose
/// periodic sweep would not run for an hour — is woken by PostgreSQL NOTIFY and
/// publishes them. Nothing is lost, nothing published twice, and the backlog shows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_beyond_one_relay_is_published_by_another_instance_woken_by_notify() {
    const SAGAS: u32 = 50;
    const EACH: u32 = 100; // 5,000 events: more than the relay's 4,096
    let mut unreachable = NatsServer::start().await;
    let healthy = NatsServer::start().await;
    let (dbs, a, prefix) = start(Backend::Postgres, Some(unreachable.url()), |c| {
        c.events.relay_interval = Duration::from_secs(3600);
        c.events.publish_timeout = Duration::from_secs(60);
    })
    .await;
    let mut config = a.config().clone();
    config.events.url = Some(healthy.url());
    let b = Runtime::builder().config(config).set_default(false).consume(false).start().await.unwrap();
    unreachable.stop();

    let sagas: Vec<_> = (0..SAGAS).map(|_| tokio::spawn(a.scope(burst(prefix.clone(), EACH)))).collect();
    for s in sagas {
        s.await.unwrap().unwrap();
    }
    let total = (SAGAS * EACH) as usize;
    let backlog = a.outbox().backlog().await.unwrap();
    assert!(backlog[0].pending > 0 && backlog[0].oldest_pending_at.is_some(), "{backlog:?}");

    // B publishes what A left to the sweeps; A's relay keeps the rest (it cannot publish).
    let mut published = Vec::new();
    for _ in 0..300 {
        published = b.history(&format!("{prefix}.>"), None).await.unwrap();
        let pending = a.outbox().pending().await.unwrap() as usize;
        if !published.is_empty() && published.len() + pending == total {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let again = b.history(&format!("{prefix}.>"), None).await.unwrap();
            if again.len() == published.len() {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pending = a.outbox().pending().await.unwrap() as usize;
    assert!(!published.is_empty(), "no other instance published the overflow");
    assert_eq!(published.len() + pending, total, "published by B + still in the outbox = committed");
    let mut ids: Vec<&str> = published.iter().map(|e| e.id.as_str()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), published.len(), "nothing published twice");
    let left: Vec<(String,)> =
        a.database("primary").unwrap().fetch_all("SELECT id FROM fraiseql_outbox", ()).await.unwrap();
    assert!(left.iter().all(|(id,)| ids.binary_search(&id.as_str()).is_err()), "published rows leave the outbox");
    eprintln!(
        "{total} committed: {} published by the instance woken by NOTIFY, {pending} kept by the stuck relay",
        published.len()
    );
    b.shutdown().await.unwrap();
    drop(dbs);
}
