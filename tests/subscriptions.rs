//! `#[subscribe]`: wildcards, queue groups, durable consumers (retry, poison payloads,
//! delivery budget), request/reply — on a real nats-server (one per test, so durable
//! consumers do not meet) with PostgreSQL, and on the embedded bus with SQLite.

mod common;

use std::time::Duration;

use common::{Backend, NatsServer, TestDbs};
use fraiseql::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::json;

const CHILD: &str = "FRAISEQL_CONSUMER_CHILD";

async fn seen(ctx: &EventContext, handler: &str, event_id: &str) -> fraiseql::Result<()> {
    let by = std::env::var("CHILD_NAME").unwrap_or_else(|_| "parent".into());
    ctx.database("primary")?
        .execute(
            "INSERT INTO seen (handler, event_id, attempt, by) VALUES ($1, $2, $3, $4)",
            (handler, event_id, ctx.attempt() as i64, by),
        )
        .await?;
    Ok(())
}

#[subscribe("fraiseql.sub.order.*")]
async fn on_order(event: Event, ctx: &EventContext) -> fraiseql::Result<()> {
    seen(ctx, "on_order", &event.id).await
}

#[subscribe("fraiseql.sub.q.>", queue = "workers")]
async fn worker_a(event: Event, ctx: &EventContext) -> fraiseql::Result<()> {
    seen(ctx, "worker", &event.id).await
}

#[subscribe("fraiseql.sub.q.>", queue = "workers")]
async fn worker_b(event: Event, ctx: &EventContext) -> fraiseql::Result<()> {
    seen(ctx, "worker", &event.id).await
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Flaky {
    pub fail_times: u32,
    #[serde(default)]
    pub sleep_ms: u64,
    /// Kill the process inside the handler (only in the child named `doomed`).
    #[serde(default)]
    pub kill_child: bool,
}

#[subscribe("fraiseql.sub.flaky.>", durable = "flaky", max_deliver = 4)]
async fn flaky(event: Event<Flaky>, ctx: &EventContext) -> fraiseql::Result<()> {
    if event.data.kill_child && std::env::var("CHILD_NAME").as_deref() == Ok("doomed") {
        // SAFETY: kill(2) on our own pid.
        #[allow(unsafe_code)]
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
    tokio::time::sleep(Duration::from_millis(event.data.sleep_ms)).await;
    if ctx.attempt() <= event.data.fail_times {
        return Err(Error::msg(format!("failing on purpose, attempt {}", ctx.attempt())));
    }
    seen(ctx, "flaky", &event.id).await
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Strict {
    pub amount: i64,
}

#[subscribe("fraiseql.sub.typed.>", durable = "typed")]
async fn typed(event: Event<Strict>, ctx: &EventContext) -> fraiseql::Result<()> {
    let _ = event.data.amount;
    seen(ctx, "typed", &event.id).await
}

#[derive(Debug, Serialize, Deserialize)]
pub struct PriceRequest {
    pub sku: String,
    pub quantity: i64,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct Price {
    pub cents: i64,
}

#[subscribe("rpc.price")]
async fn price(event: Event<PriceRequest>, _ctx: &EventContext) -> fraiseql::Result<Price> {
    if event.data.sku == "unknown" {
        return Err(Error::msg(format!("no price for `{}`", event.data.sku)));
    }
    Ok(Price { cents: 250 * event.data.quantity })
}

/// A core handler with a reply, on a subject the stream stores: JetStream publishes
/// reach it carrying the publisher's ack inbox, which it must leave to the stream.
#[subscribe("fraiseql.sub.answering.>")]
async fn answering(event: Event, ctx: &EventContext) -> fraiseql::Result<Price> {
    seen(ctx, "answering", &event.id).await?;
    Ok(Price { cents: 1 })
}

#[subscribe("rpc.slow")]
async fn slow(_event: Event, _ctx: &EventContext) -> fraiseql::Result<Price> {
    tokio::time::sleep(Duration::from_secs(3)).await;
    Ok(Price { cents: 0 })
}

static SLOW_WRITE_STARTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Still running when the test shuts the runtime down: its write must land first.
#[subscribe("fraiseql.sub.slow_write.>")]
async fn slow_write(event: Event, ctx: &EventContext) -> fraiseql::Result<()> {
    SLOW_WRITE_STARTED.store(true, std::sync::atomic::Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(800)).await;
    seen(ctx, "slow_write", &event.id).await
}

struct Setup {
    rt: Runtime,
    _dbs: TestDbs,
    _nats: Option<NatsServer>,
}

async fn setup(backend: Backend) -> Setup {
    common::init_tracing();
    let nats = match backend {
        Backend::Postgres => Some(NatsServer::start().await),
        Backend::Sqlite => None,
    };
    let dbs = TestDbs::new(backend, &["primary"]).await;
    // The table handlers write to must exist before their runtime starts.
    let pre = dbs.start(|_| {}).await;
    pre.database("primary").unwrap().execute_script("CREATE TABLE seen (handler TEXT NOT NULL, event_id TEXT NOT NULL, attempt BIGINT NOT NULL, by TEXT NOT NULL)").await.unwrap();
    pre.shutdown().await.unwrap();
    let url = nats.as_ref().map(|n| n.url());
    let rt = dbs
        .start(|c| {
            c.events.url = url;
            c.events.redelivery_initial = Duration::from_millis(20);
            c.events.redelivery_max = Duration::from_millis(100);
            // A delivery whose process died comes back after a second, not thirty.
            c.events.ack_wait = Duration::from_secs(1);
        })
        .await;
    Setup { rt, _dbs: dbs, _nats: nats }
}

async fn seen_rows(rt: &Runtime, handler: &str) -> Vec<(String, i64)> {
    rt.database("primary")
        .unwrap()
        .fetch_all("SELECT event_id, attempt FROM seen WHERE handler = $1 ORDER BY event_id", (handler,))
        .await
        .unwrap()
}

async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..300 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for: {what}");
}

macro_rules! on_both_buses {
    ($(async fn $name:ident($s:ident: Setup) $body:block)*) => {
        $(
            mod $name {
                use super::*;
                async fn body($s: Setup) $body
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn nats() { body(setup(Backend::Postgres).await).await }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn embedded() { body(setup(Backend::Sqlite).await).await }
            }
        )*
    };
}

on_both_buses! {
    async fn a_handler_running_at_shutdown_finishes_its_write_before_the_pools_close(s: Setup) {
        let id = s.rt.publish("fraiseql.sub.slow_write.one", json!({})).await.unwrap();
        eventually("the slow handler started", || async {
            SLOW_WRITE_STARTED.load(std::sync::atomic::Ordering::SeqCst)
        })
        .await;
        // The handler is asleep before its write; shutdown must wait for it.
        s.rt.shutdown().await.unwrap();
        let after = s._dbs.start(|_| {}).await;
        assert_eq!(seen_rows(&after, "slow_write").await, vec![(id, 1)]);
        after.shutdown().await.unwrap();
    }

    async fn wildcards_deliver_what_matches_and_nothing_else(s: Setup) {
        let rt = &s.rt;
        let a = rt.publish("fraiseql.sub.order.created", json!({})).await.unwrap();
        rt.publish("fraiseql.sub.order.item.added", json!({})).await.unwrap();
        let b = rt.publish("fraiseql.sub.order.paid", json!({})).await.unwrap();
        rt.publish("fraiseql.sub.invoice.created", json!({})).await.unwrap();
        eventually("two order events seen", || async { seen_rows(rt, "on_order").await.len() >= 2 }).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut want = vec![(a, 1), (b, 1)];
        want.sort();
        assert_eq!(seen_rows(rt, "on_order").await, want);
        rt.shutdown().await.unwrap();
    }

    async fn a_queue_group_handles_each_event_once(s: Setup) {
        let rt = &s.rt;
        let mut ids = Vec::new();
        for i in 0..30 {
            ids.push(rt.publish(&format!("fraiseql.sub.q.job{}", i % 3), json!({ "i": i })).await.unwrap());
        }
        eventually("30 jobs handled", || async { seen_rows(rt, "worker").await.len() >= 30 }).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let got: Vec<String> = seen_rows(rt, "worker").await.into_iter().map(|r| r.0).collect();
        ids.sort();
        assert_eq!(got, ids, "each job exactly once across the group");
        rt.shutdown().await.unwrap();
    }

    async fn a_durable_handler_that_fails_twice_then_succeeds_processes_the_event_once(s: Setup) {
        let rt = &s.rt;
        let id = rt.publish("fraiseql.sub.flaky.one", json!({ "fail_times": 2 })).await.unwrap();
        eventually("flaky succeeded", || async { !seen_rows(rt, "flaky").await.is_empty() }).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(seen_rows(rt, "flaky").await, vec![(id, 3)], "processed once, on the third delivery");
        assert!(rt.dead_events(Some("flaky")).await.unwrap().is_empty());
        rt.shutdown().await.unwrap();
    }

    async fn a_handler_that_keeps_failing_ends_as_a_dead_letter_after_its_budget(s: Setup) {
        let rt = &s.rt;
        let id = rt.publish("fraiseql.sub.flaky.two", json!({ "fail_times": 100 })).await.unwrap();
        eventually("dead letter", || async { !rt.dead_events(Some("flaky")).await.unwrap().is_empty() }).await;
        let dead = rt.dead_events(Some("flaky")).await.unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!((dead[0].event_id.as_str(), dead[0].attempts), (id.as_str(), 4));
        assert!(dead[0].reason.contains("failed 4 times; last error: failing on purpose, attempt 4"), "{}", dead[0].reason);
        assert!(seen_rows(rt, "flaky").await.is_empty());

        // Retried by hand, it runs as the next attempt; failing again it stays dead with
        // the new reason, succeeding it leaves the dead events.
        let other = rt.publish("fraiseql.sub.flaky.three", json!({ "fail_times": 5 })).await.unwrap();
        eventually("second dead letter", || async { rt.dead_events(Some("flaky")).await.unwrap().len() == 2 }).await;
        let r = rt.retry_dead_events(Some("flaky"), Some(&other)).await.unwrap();
        assert_eq!((r.processed, r.still_dead), (0, 1));
        let dead = rt.dead_events(Some("flaky")).await.unwrap();
        let again = dead.iter().find(|d| d.event_id == other).unwrap();
        assert_eq!(again.attempts, 5);
        assert!(again.reason.contains("attempt 5; error: failing on purpose, attempt 5"), "{}", again.reason);
        let r = rt.retry_dead_events(Some("flaky"), Some(&other)).await.unwrap();
        assert_eq!((r.processed, r.still_dead), (1, 0));
        assert_eq!(seen_rows(rt, "flaky").await, vec![(other.clone(), 6)]);
        let left: Vec<String> = rt.dead_events(None).await.unwrap().into_iter().map(|d| d.event_id).collect();
        assert_eq!(left, vec![id.clone()], "only the other event is still dead");
        assert_eq!(rt.retry_dead_events(Some("nobody"), None).await.unwrap(), fraiseql::RetriedDeadEvents::default());
        rt.shutdown().await.unwrap();
    }

    async fn a_poison_payload_is_a_dead_letter_on_first_delivery_and_the_consumer_goes_on(s: Setup) {
        let rt = &s.rt;
        let bad = rt.publish("fraiseql.sub.typed.x", json!({ "amount": "twelve" })).await.unwrap();
        let good = rt.publish("fraiseql.sub.typed.x", json!({ "amount": 12 })).await.unwrap();
        eventually("the good event after the poison one", || async { !seen_rows(rt, "typed").await.is_empty() }).await;
        assert_eq!(seen_rows(rt, "typed").await, vec![(good, 1)]);
        let dead = rt.dead_events(Some("typed")).await.unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!((dead[0].event_id.as_str(), dead[0].attempts), (bad.as_str(), 1));
        assert!(dead[0].reason.contains("does not deserialise into") && dead[0].reason.contains("Strict"), "{}", dead[0].reason);
        assert_eq!(dead[0].event["data"]["amount"], json!("twelve"), "the dead letter keeps the event");
        rt.shutdown().await.unwrap();
    }

    async fn request_reply_answers_and_says_why_when_it_cannot(s: Setup) {
        let rt = &s.rt;
        let p: Price = rt.request("rpc.price", PriceRequest { sku: "KB-01".into(), quantity: 3 }, Duration::from_secs(2)).await.unwrap();
        assert_eq!(p, Price { cents: 750 });
        let e = rt.request::<_, Price>("rpc.price", PriceRequest { sku: "unknown".into(), quantity: 1 }, Duration::from_secs(2)).await.unwrap_err();
        assert!(e.to_string().contains("no price for `unknown`"), "{e}");
        let e = rt.request::<_, Price>("rpc.slow", json!({}), Duration::from_millis(200)).await.unwrap_err();
        assert!(matches!(e, Error::Timeout(_)), "{e}");
        assert!(e.to_string().contains("within 200ms"), "{e}");
        let e = rt.request::<_, Price>("rpc.nobody", json!({}), Duration::from_millis(500)).await.unwrap_err();
        assert!(e.to_string().contains("no handler is subscribed to `rpc.nobody`"), "{e}");
        let e = rt.request::<_, Price>("fraiseql.sub.answering.x", json!({}), Duration::from_millis(500)).await.unwrap_err();
        assert!(e.to_string().contains("cannot send a request on `fraiseql.sub.answering.x`: the event stream stores that subject"), "{e}");
        rt.shutdown().await.unwrap();
    }
}

/// The child side of the multi-process tests: a runtime consuming until `STOP_AFTER`
/// flaky events are recorded. Run directly (no `FRAISEQL_CONSUMER_CHILD`), it checks
/// that the durable handler records what it processes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_child() {
    if std::env::var(CHILD).is_err() {
        let s = setup(Backend::Sqlite).await;
        let id = s.rt.publish("fraiseql.sub.flaky.direct", json!({ "fail_times": 0 })).await.unwrap();
        eventually("processed", || async { !seen_rows(&s.rt, "flaky").await.is_empty() }).await;
        assert_eq!(seen_rows(&s.rt, "flaky").await, vec![(id, 1)]);
        s.rt.shutdown().await.unwrap();
        return;
    }
    let rt = Runtime::builder().config(fraiseql::Config::from_env().unwrap()).start().await.unwrap();
    let db = rt.database("primary").unwrap().clone();
    db.execute(
        "INSERT INTO seen (handler, event_id, attempt, by) VALUES ('ready', $1, 0, $1)",
        (std::env::var("CHILD_NAME").unwrap(),),
    )
    .await
    .unwrap();
    let stop_after: i64 = std::env::var("STOP_AFTER").unwrap().parse().unwrap();
    for _ in 0..1500 {
        let (n,): (i64,) =
            db.fetch_optional("SELECT COUNT(*) FROM seen WHERE handler = 'flaky'", ()).await.unwrap().unwrap();
        if n >= stop_after {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    rt.shutdown().await.unwrap();
}

fn spawn_child(s: &Setup, name: &str, stop_after: usize) -> std::process::Child {
    let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
    cmd.args(["consumer_child", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .env("CHILD_NAME", name)
        .env("STOP_AFTER", stop_after.to_string())
        .env("FRAISEQL_EVENTS__URL", s._nats.as_ref().unwrap().url())
        .env("FRAISEQL_EVENTS__ACK_WAIT", "1s")
        .env("RUST_LOG", "error")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null());
    for (k, v) in s._dbs.env() {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap()
}

async fn wait_ready(rt: &Runtime, n: usize) {
    eventually("children ready", || async {
        let (c,): (i64,) = rt
            .database("primary")
            .unwrap()
            .fetch_optional("SELECT COUNT(*) FROM seen WHERE handler = 'ready'", ())
            .await
            .unwrap()
            .unwrap();
        c as usize >= n
    })
    .await;
}

/// Two processes on one durable consumer: every event processed once, by one of them,
/// and both take a share.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_on_one_durable_consumer_split_the_work() {
    let s = setup(Backend::Postgres).await;
    s.rt.shutdown().await.unwrap(); // only the children consume
    let children = [spawn_child(&s, "a", 60), spawn_child(&s, "b", 60)];
    // Publish through a runtime of our own that does not consume: a fresh one on the
    // same databases would start the same durable handler, so publish with raw NATS.
    let client = async_nats::connect(s._nats.as_ref().unwrap().url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let watcher = s._dbs.start(|c| c.events.url = None).await; // reads the table only
    wait_ready(&watcher, 2).await;
    for i in 0..60 {
        let body = serde_json::to_vec(&json!({ "fail_times": 0, "sleep_ms": 20, "i": i })).unwrap();
        js.publish(format!("fraiseql.sub.flaky.job{i}"), body.into()).await.unwrap().await.unwrap();
    }
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    let rows: Vec<(String, String)> = watcher
        .database("primary")
        .unwrap()
        .fetch_all("SELECT event_id, by FROM seen WHERE handler = 'flaky' ORDER BY event_id", ())
        .await
        .unwrap();
    let mut ids: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    ids.dedup();
    assert_eq!((rows.len(), ids.len()), (60, 60), "each event once: {rows:?}");
    let by_a = rows.iter().filter(|r| r.1 == "a").count();
    assert!(by_a > 0 && by_a < 60, "both processes took a share (a: {by_a}, b: {})", 60 - by_a);
    watcher.shutdown().await.unwrap();
}

/// A process killed inside a durable handler: the unacknowledged event is delivered
/// again (after `ack_wait`) and processed by the next process on that consumer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_whose_handler_was_killed_is_redelivered_and_processed() {
    let s = setup(Backend::Postgres).await;
    s.rt.shutdown().await.unwrap();
    let mut child = spawn_child(&s, "doomed", 1);
    let watcher = s._dbs.start(|c| c.events.url = None).await;
    wait_ready(&watcher, 1).await;
    let client = async_nats::connect(s._nats.as_ref().unwrap().url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let body = serde_json::to_vec(&json!({ "fail_times": 0, "kill_child": true })).unwrap();
    js.publish("fraiseql.sub.flaky.fragile", body.into()).await.unwrap().await.unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGKILL), "the handler killed its process");
    assert!(seen_rows(&watcher, "flaky").await.is_empty());
    // Another process on the same consumer: it gets the event once ack_wait has passed.
    let mut next = spawn_child(&s, "next", 1);
    assert!(next.wait().unwrap().success());
    let rows: Vec<(String, i64, String)> = watcher
        .database("primary")
        .unwrap()
        .fetch_all("SELECT event_id, attempt, by FROM seen WHERE handler = 'flaky'", ())
        .await
        .unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!((rows[0].1, rows[0].2.as_str()), (2, "next"), "redelivered (second delivery) to the next process");
    watcher.shutdown().await.unwrap();
}

/// A client that knows nothing of FraiseQL publishes bare JSON (with a `Nats-Msg-Id`
/// header) and our handler reads it as the event's data; it reads our events as JSON
/// envelopes with the documented fields and headers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_nats_clients_can_publish_events_we_handle_and_read_ours() {
    let s = setup(Backend::Postgres).await;
    let client = async_nats::connect(s._nats.as_ref().unwrap().url()).await.unwrap();
    let js = async_nats::jetstream::new(client.clone());
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", "from-python-1");
    js.publish_with_headers("fraiseql.sub.typed.external", headers, br#"{"amount": 42}"#.to_vec().into())
        .await
        .unwrap()
        .await
        .unwrap();
    eventually("handled", || async { !seen_rows(&s.rt, "typed").await.is_empty() }).await;
    assert_eq!(seen_rows(&s.rt, "typed").await, vec![("from-python-1".to_string(), 1)]);

    // Ours, read raw.
    let mut sub = client.subscribe("fraiseql.sub.raw.>").await.unwrap();
    client.flush().await.unwrap();
    let id = s.rt.publish("fraiseql.sub.raw.thing", json!({ "k": "v" })).await.unwrap();
    let msg =
        tokio::time::timeout(Duration::from_secs(5), futures_util::StreamExt::next(&mut sub)).await.unwrap().unwrap();
    let headers = msg.headers.clone().unwrap();
    assert_eq!(headers.get("Nats-Msg-Id").unwrap().as_str(), id);
    assert_eq!(headers.get("Fraiseql-Type").unwrap().as_str(), "sub.raw.thing");
    let body: serde_json::Value = serde_json::from_slice(&msg.payload).unwrap();
    assert_eq!(body["id"], json!(id));
    assert_eq!(body["subject"], json!("fraiseql.sub.raw.thing"));
    assert_eq!(body["type"], json!("sub.raw.thing"));
    assert_eq!(body["data"], json!({ "k": "v" }));
    assert!(body["time"].as_str().unwrap().ends_with('Z'));
    s.rt.shutdown().await.unwrap();
}

/// Outside events, with and without `Nats-Msg-Id`, have one id and one time however read:
/// live by a durable handler, in history (twice, a second apart), and on rebuild — so a
/// projection that de-duplicates by `event.id` does not double it on rebuild.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outside_event_has_one_id_and_one_time_live_in_history_and_on_rebuild() {
    let s = setup(Backend::Postgres).await;
    let client = async_nats::connect(s._nats.as_ref().unwrap().url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    js.publish("fraiseql.sub.typed.anonymous", br#"{"amount": 7}"#.to_vec().into()).await.unwrap().await.unwrap();
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", "outside-42");
    js.publish_with_headers("fraiseql.sub.typed.named", headers, br#"{"amount": 8}"#.to_vec().into())
        .await
        .unwrap()
        .await
        .unwrap();
    eventually("handled live", || async { seen_rows(&s.rt, "typed").await.len() == 2 }).await;
    let mut live: Vec<String> = seen_rows(&s.rt, "typed").await.into_iter().map(|r| r.0).collect();
    live.sort();
    assert!(live.contains(&"outside-42".to_string()), "the Nats-Msg-Id is the id: {live:?}");

    let first = s.rt.history("fraiseql.sub.typed.>", None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let second = s.rt.history("fraiseql.sub.typed.>", None).await.unwrap();
    assert_eq!(first.len(), 2, "{first:?}");
    let mut read: Vec<String> = first.iter().map(|e| e.id.clone()).collect();
    read.sort();
    assert_eq!(read, live, "history reads the ids the live handler saw");
    for (a, b) in first.iter().zip(&second) {
        assert_eq!((&a.id, &a.time), (&b.id, &b.time), "the time is the server's, not the reader's");
        assert!(a.time.ends_with('Z'), "{}", a.time);
    }

    assert_eq!(s.rt.rebuild("typed", None).await.unwrap(), 2);
    let mut after: Vec<String> = seen_rows(&s.rt, "typed").await.into_iter().map(|r| r.0).collect();
    after.sort();
    let twice: Vec<String> = live.iter().flat_map(|id| [id.clone(), id.clone()]).collect();
    assert_eq!(after, twice, "the rebuild saw the same ids");
    s.rt.shutdown().await.unwrap();
}

/// The server loses the stream (restarted with fresh storage, or an operator deleted it)
/// while events are published and consumed: the runtime recreates the stream on the next
/// publish and the durable consumer on its next pull, with no restart; every event
/// published after the loss is handled, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_and_consuming_resume_after_the_server_loses_the_stream() {
    let s = setup(Backend::Postgres).await;
    let client = async_nats::connect(s._nats.as_ref().unwrap().url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let rt = s.rt.clone();
    let load = tokio::spawn(async move {
        let mut sent = Vec::new();
        for i in 0..400 {
            let started = std::time::Instant::now();
            let r = rt.publish("fraiseql.sub.typed.load", json!({ "amount": i })).await;
            sent.push((started, r.map_err(|e| e.to_string())));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        sent
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    js.delete_stream("FRAISEQL").await.unwrap();
    let lost_at = std::time::Instant::now();
    let sent = load.await.unwrap();
    let failed: Vec<_> = sent.iter().filter_map(|(_, r)| r.as_ref().err()).collect();
    assert!(failed.is_empty(), "publishes failed around the loss: {failed:?}");
    let after: std::collections::BTreeSet<String> =
        sent.into_iter().filter(|(t, _)| *t > lost_at).map(|(_, r)| r.unwrap()).collect();
    assert!(after.len() > 100, "the load went on after the loss ({} events)", after.len());
    // The consumer notices within its heartbeat at worst.
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        let rows = seen_rows(&s.rt, "typed").await;
        let handled: Vec<&String> = rows.iter().map(|(id, _)| id).filter(|id| after.contains(*id)).collect();
        let distinct: std::collections::BTreeSet<&&String> = handled.iter().collect();
        assert_eq!(handled.len(), distinct.len(), "an event was handled twice");
        if distinct.len() == after.len() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} of {} events published after the loss were handled",
            distinct.len(),
            after.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    s.rt.shutdown().await.unwrap();
}

/// A JetStream publish is a request for the stream's ack. A core handler on a stored
/// subject sees the publisher's reply inbox and must not answer it: its answer would
/// race the ack, and a publisher reading it would fail ("did not match any variant").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handlers_do_not_answer_the_ack_inbox_of_jetstream_publishes() {
    let s = setup(Backend::Postgres).await;
    let client = async_nats::connect(s._nats.as_ref().unwrap().url()).await.unwrap();
    let inbox = client.new_inbox();
    let mut replies = client.subscribe(inbox.clone()).await.unwrap();
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", "answering-1");
    client
        .publish_with_reply_and_headers("fraiseql.sub.answering.x", inbox, headers, b"{}".to_vec().into())
        .await
        .unwrap();
    client.flush().await.unwrap();
    eventually("handled", || async { !seen_rows(&s.rt, "answering").await.is_empty() }).await;
    // Everything that reaches the inbox within a second: the stream's ack, alone.
    let mut got = Vec::new();
    while let Ok(Some(m)) =
        tokio::time::timeout(Duration::from_secs(1), futures_util::StreamExt::next(&mut replies)).await
    {
        got.push(String::from_utf8_lossy(&m.payload).to_string());
    }
    assert_eq!(got.len(), 1, "only the stream answers: {got:?}");
    assert!(got[0].contains("\"stream\""), "the stream's ack: {got:?}");
    // And through the runtime: many publishes, none failing on a foreign answer.
    let publishes = (0..200).map(|i| s.rt.publish("fraiseql.sub.answering.many", json!({ "i": i })));
    for r in futures_util::future::join_all(publishes).await {
        r.unwrap();
    }
    s.rt.shutdown().await.unwrap();
}
