//! A 3-node JetStream cluster (real nats-server processes of the test's own) holding the
//! stream in three replicas (`events.replicas = 3`), under load from sagas that publish
//! through the outbox, direct publishes and a durable handler. Nodes die by SIGKILL and
//! come back while the load goes on: first the node the runtime is connected to, then
//! the stream's leader. Every saga completes and every event's effect exists, once.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Backend, NatsCluster, TestDbs};
use fraiseql::prelude::*;
use fraiseql::{Runtime, SagaStatus};
use serde_json::json;

#[saga(steps = ["cl_place"])]
pub async fn cluster_order(n: i64) -> fraiseql::Result<String>;

/// The order row and its event commit together (outbox); the relay publishes the event.
#[saga_step("cl_place")]
async fn cl_place(ctx: &mut SagaContext, n: i64) -> fraiseql::Result<String> {
    let event_id = ctx.publish("fraiseql.cluster.order.placed", json!({ "n": n })).await?;
    ctx.execute("INSERT INTO orders (n, event_id) VALUES ($1, $2)", (n, &event_id)).await?;
    Ok(event_id)
}

/// The effect of an event: its row, keyed by the event id, counting the runs that
/// committed. The handler has an inbox (`database`), so a delivery repeated after a
/// node died with its ack is not applied again: every `n` must be 1.
#[subscribe("fraiseql.cluster.>", durable = "cluster-effects", database = "primary")]
async fn cluster_effect(event: Event, ctx: &mut EventTx) -> fraiseql::Result<()> {
    ctx.execute(
        "INSERT INTO effects (event_id, n) VALUES ($1, 1) ON CONFLICT (event_id) DO UPDATE SET n = effects.n + 1",
        (&event.id,),
    )
    .await?;
    Ok(())
}

/// What the load did: every saga's outcome, and every direct publish with when it was
/// started, when it returned, and what.
#[derive(Default)]
struct Load {
    sagas: Vec<Result<String, String>>,
    publishes: Vec<(Instant, Instant, Result<String, String>)>,
}

/// Sagas (two at a time) and direct publishes, paced, until `stop`.
fn start_load(rt: &Runtime, stop: &Arc<AtomicBool>, load: &Arc<Mutex<Load>>) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    for worker in 0..2i64 {
        let (rt, stop, load) = (rt.clone(), stop.clone(), load.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                let r = rt.scope(cluster_order(worker * 1_000_000 + i)).await.map_err(|e| e.to_string());
                load.lock().unwrap().sagas.push(r);
                i += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }));
    }
    let (rt, stop, load) = (rt.clone(), stop.clone(), load.clone());
    tasks.push(tokio::spawn(async move {
        let mut i = 0;
        while !stop.load(Ordering::SeqCst) {
            let started = Instant::now();
            let r = rt.publish("fraiseql.cluster.direct.sent", json!({ "i": i })).await.map_err(|e| e.to_string());
            load.lock().unwrap().publishes.push((started, Instant::now(), r));
            i += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }));
    tasks
}

/// Wait until direct publishes started after `since` are acknowledged: publishing goes on
/// with the node down. Reports how long after `since` the first one returned, and how
/// many failed meanwhile.
async fn publishes_succeed_after(load: &Mutex<Load>, since: Instant, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        {
            let load = load.lock().unwrap();
            let after: Vec<_> = load.publishes.iter().filter(|(t, _, _)| *t > since).collect();
            let ok: Vec<Instant> = after.iter().filter(|p| p.2.is_ok()).map(|p| p.1).collect();
            if ok.len() >= 5 {
                let first = *ok.iter().min().unwrap();
                let failed = after.iter().filter(|p| p.2.is_err() && p.1 <= first).count();
                let first = first.duration_since(since);
                eprintln!("after {what}: the first publish acknowledged after {first:?}; {failed} failed before it");
                return;
            }
        }
        assert!(Instant::now() < deadline, "no publish succeeded within 60 s after {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replicated_stream_loses_nothing_when_nodes_are_killed_under_load() {
    common::init_tracing();
    let mut cluster = NatsCluster::start().await;
    let dbs = TestDbs::new(Backend::Postgres, &["primary"]).await;
    // The tables the step and the handler write to exist before the handler can run.
    let pre = dbs.start(|_| {}).await;
    pre.database("primary")
        .unwrap()
        .execute_script(
            "CREATE TABLE orders (n BIGINT PRIMARY KEY, event_id TEXT NOT NULL);
             CREATE TABLE effects (event_id TEXT PRIMARY KEY, n BIGINT NOT NULL)",
        )
        .await
        .unwrap();
    pre.shutdown().await.unwrap();
    let rt = dbs
        .start(|c| {
            c.events.url = Some(cluster.urls());
            c.events.replicas = 3;
            c.events.relay_interval = Duration::from_millis(200);
            // An ack lost with a dying consumer leader comes back in seconds, not 30.
            c.events.ack_wait = Duration::from_secs(3);
        })
        .await;

    // The stream really is replicated on all three nodes.
    let urls: Vec<String> = cluster.urls().split(',').map(str::to_string).collect();
    let js = async_nats::jetstream::new(async_nats::connect(urls).await.unwrap());
    let stream_leader = || {
        let js = js.clone();
        async move {
            let info = js.get_stream("FRAISEQL").await.unwrap().info().await.unwrap().clone();
            assert_eq!(info.config.num_replicas, 3);
            let c = info.cluster.expect("a clustered stream");
            assert_eq!(c.replicas.len(), 2, "a leader and two replicas: {c:?}");
            c.leader.expect("the stream has a leader")
        }
    };
    stream_leader().await;

    let stop = Arc::new(AtomicBool::new(false));
    let load = Arc::new(Mutex::new(Load::default()));
    let tasks = start_load(&rt, &stop, &load);
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // 1. The node the runtime is connected to.
    let connected = cluster.nodes_with_client("fraiseql").await;
    assert_eq!(connected.len(), 1, "the runtime holds one connection: {connected:?}");
    let victim = connected[0];
    let leader = stream_leader().await;
    eprintln!("killing {} (the runtime's server; the stream's leader is {leader})", cluster.nodes[victim].name);
    cluster.kill(victim);
    let killed_at = Instant::now();
    publishes_succeed_after(&load, killed_at, "killing the runtime's server").await;
    let now_on = cluster.nodes_with_client("fraiseql").await;
    assert!(
        now_on.len() == 1 && now_on[0] != victim,
        "reconnected to another node while {} is down: {now_on:?}",
        cluster.nodes[victim].name
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.restart(victim).await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    // 2. The stream's leader (it may be the node the runtime is now connected to).
    let leader = stream_leader().await;
    let victim = cluster.index_of(&leader).unwrap();
    let on: Vec<&str> =
        cluster.nodes_with_client("fraiseql").await.into_iter().map(|i| cluster.nodes[i].name.as_str()).collect();
    eprintln!("killing {leader} (the stream's leader; the runtime is on {on:?})");
    cluster.kill(victim);
    let killed_at = Instant::now();
    publishes_succeed_after(&load, killed_at, "killing the stream's leader").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.restart(victim).await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        t.await.unwrap();
    }
    let load = std::mem::take(&mut *load.lock().unwrap());

    // Every saga completed; its event is the one its order row names.
    let saga_errors: Vec<_> = load.sagas.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(saga_errors.is_empty(), "sagas failed: {saga_errors:?}");
    let db = rt.database("primary").unwrap().clone();
    let orders: Vec<(String,)> = db.fetch_all("SELECT event_id FROM orders", ()).await.unwrap();
    let from_sagas: BTreeSet<String> = load.sagas.iter().map(|r| r.clone().unwrap()).collect();
    assert_eq!(orders.into_iter().map(|r| r.0).collect::<BTreeSet<_>>(), from_sagas);
    for status in [SagaStatus::Running, SagaStatus::Compensating, SagaStatus::Compensated, SagaStatus::Failed] {
        assert!(rt.sagas().with_status(status).await.unwrap().is_empty(), "a saga is {status:?}");
    }
    assert_eq!(rt.sagas().with_status(SagaStatus::Completed).await.unwrap().len(), from_sagas.len());

    // The events that must have an effect: every committed saga's (the outbox keeps it
    // until the stream acknowledged it) and every acknowledged direct publish. A direct
    // publish that failed may or may not be stored; its effect is allowed, not required.
    let acked: BTreeSet<String> = load.publishes.iter().filter_map(|(_, _, r)| r.clone().ok()).collect();
    let failed_publishes: Vec<&String> = load.publishes.iter().filter_map(|(_, _, r)| r.as_ref().err()).collect();
    let expected: BTreeSet<String> = from_sagas.union(&acked).cloned().collect();
    let load_ended = Instant::now();
    let deadline = load_ended + Duration::from_secs(120);
    loop {
        let rows: Vec<(String, i64)> = db.fetch_all("SELECT event_id, n FROM effects", ()).await.unwrap();
        let effects: BTreeMap<String, i64> = rows.into_iter().collect();
        let missing = expected.iter().filter(|id| !effects.contains_key(*id)).count();
        if missing == 0 {
            eprintln!("every effect in place {:?} after the load ended", load_ended.elapsed());
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{missing} of {} events have no effect 120 s after the load (outbox pending: {:?}, dead letters: {:?})",
            expected.len(),
            rt.outbox().pending().await,
            rt.outbox().dead_letters().await.map(|d| d.len()),
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(rt.outbox().pending().await.unwrap(), 0);
    assert!(rt.outbox().dead_letters().await.unwrap().is_empty(), "an event could not be published");
    assert!(rt.dead_events(None).await.unwrap().is_empty(), "a delivery ended as a dead event");

    // Repeats are counted once the consumer has nothing left in flight: every delivery
    // acknowledged, none pending.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut consumer: async_nats::jetstream::consumer::PullConsumer =
            js.get_stream("FRAISEQL").await.unwrap().get_consumer("cluster-effects").await.unwrap();
        let info = consumer.info().await.unwrap();
        if info.num_ack_pending == 0 && info.num_pending == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the consumer still has deliveries in flight: {info:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let rows: Vec<(String, i64)> = db.fetch_all("SELECT event_id, n FROM effects", ()).await.unwrap();
    let effects: BTreeMap<String, i64> = rows.into_iter().collect();
    // Nothing invented: an effect of no known event can only be that of a publish whose
    // ack did not come back (its id was never returned), so there are at most as many.
    let unknown = effects.keys().filter(|id| !expected.contains(*id)).count();
    assert!(
        unknown <= failed_publishes.len(),
        "{unknown} effects of unknown events, only {} publishes unacknowledged",
        failed_publishes.len()
    );
    // Each stored event once (a relay's retry after a lost ack carries the same
    // Nats-Msg-Id, which the stream drops), and each has its effect.
    let stored = js.get_stream("FRAISEQL").await.unwrap().info().await.unwrap().state.messages;
    assert_eq!(stored as usize, effects.len(), "events in the stream and events with an effect");

    // A delivery whose ack died with a node comes again; the inbox acks it unrun.
    let repeated: Vec<_> = effects.iter().filter(|(_, n)| **n > 1).collect();
    assert!(repeated.is_empty(), "effects applied more than once: {repeated:?}");
    let reasons: BTreeSet<&String> = failed_publishes.iter().copied().collect();
    eprintln!(
        "sagas {}, direct publishes acked {} (failed {}: {reasons:?}), effects {}, effects of unacknowledged publishes {}, \
         effects applied twice {}",
        from_sagas.len(),
        acked.len(),
        failed_publishes.len(),
        effects.len(),
        unknown,
        repeated.len()
    );
    rt.shutdown().await.unwrap();
}
