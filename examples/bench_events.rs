//! Benchmark: events through FraiseQL against hand-written async-nats code with the same
//! guarantees, in the same run, on the same nats-server. Results go in BENCHMARKS.md.
//!
//! `scripts/bench events` starts a throwaway nats-server and PostgreSQL, or:
//! `FRAISEQL_TEST_NATS_URL=nats://… FRAISEQL_TEST_PG_URL=postgres://… cargo run --release --example bench_events`.
//!
//! On a cluster: `FRAISEQL_TEST_NATS_URL` lists its servers (comma-separated) and
//! `BENCH_EVENTS_REPLICAS=3` replicates both sides' streams; `scripts/bench events-cluster`
//! runs it with 1 and 3 replicas on the 3-node cluster of `scripts/services` and prints
//! the ratios.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer};
use fraiseql::prelude::*;
use fraiseql::{Config, DatabaseConfig};
use futures_util::StreamExt;
use serde_json::json;

const N: usize = 20_000;

static HANDLED: AtomicUsize = AtomicUsize::new(0);
/// When the durable handler first ran: (b) is timed from the first delivery on both sides.
static FIRST_HANDLED: OnceLock<Instant> = OnceLock::new();
static LATENCIES: OnceLock<std::sync::Mutex<Vec<Duration>>> = OnceLock::new();
/// Wakes the (c) loop when the outbox handler has run; it must not spin on a worker.
static HANDLED_NOTIFY: tokio::sync::Notify = tokio::sync::Notify::const_new();

#[subscribe("bench.durable.>", durable = "bench-durable", concurrency = 64)]
async fn durable_handler(_event: Event, _ctx: &EventContext) -> fraiseql::Result<()> {
    FIRST_HANDLED.get_or_init(Instant::now);
    HANDLED.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// Receives the outbox's events; the publisher put its commit instant in the data.
#[subscribe("bench.outbox.>")]
async fn outbox_handler(event: Event, _ctx: &EventContext) -> fraiseql::Result<()> {
    let sent = event.data["t_us"].as_u64().unwrap_or(0);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_micros() as u64;
    LATENCIES.get_or_init(Default::default).lock().unwrap().push(Duration::from_micros(now.saturating_sub(sent)));
    HANDLED.fetch_add(1, Ordering::Relaxed);
    HANDLED_NOTIFY.notify_one();
    Ok(())
}

#[saga(steps = ["bench_emit"])]
async fn emit(i: i64) -> fraiseql::Result<()>;

#[saga_step("bench_emit", database = "primary")]
async fn bench_emit(ctx: &mut SagaContext, i: i64) -> fraiseql::Result<()> {
    ctx.execute("INSERT INTO bench_rows (i) VALUES ($1)", (i,)).await?;
    let t_us = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_micros() as u64;
    ctx.publish("bench.outbox.emitted", json!({ "i": i, "t_us": t_us })).await?;
    Ok(())
}

fn percentile(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p) as usize]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Warnings (a publish kept in the outbox, a redelivery) explain outliers.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .init();
    let nats_url = std::env::var("FRAISEQL_TEST_NATS_URL")
        .map_err(|_| anyhow::anyhow!("set FRAISEQL_TEST_NATS_URL (scripts/bench does)"))?;
    let pg_admin = std::env::var("FRAISEQL_TEST_PG_URL")
        .map_err(|_| anyhow::anyhow!("set FRAISEQL_TEST_PG_URL (scripts/bench does)"))?;
    let replicas: usize = match std::env::var("BENCH_EVENTS_REPLICAS") {
        Ok(r) => r.parse().map_err(|e| anyhow::anyhow!("BENCH_EVENTS_REPLICAS={r}: {e}"))?,
        Err(_) => 1,
    };
    let base = pg_admin.rsplit_once('/').unwrap().0.to_string();
    let admin = sqlx::PgPool::connect(&pg_admin).await?;
    sqlx::query("DROP DATABASE IF EXISTS bench_events WITH (FORCE)").execute(&admin).await?;
    sqlx::query("CREATE DATABASE bench_events").execute(&admin).await?;
    let db_url = format!("{base}/bench_events");
    let servers: Vec<&str> = nats_url.split(',').map(str::trim).collect();
    let client = async_nats::connect(servers.as_slice()).await?;
    let js = jetstream::new(client.clone());
    for s in ["FRAISEQL", "RAWBENCH"] {
        let _ = js.delete_stream(s).await;
    }
    js.create_stream(jetstream::stream::Config {
        name: "RAWBENCH".into(),
        subjects: vec!["raw.>".into()],
        num_replicas: replicas,
        ..Default::default()
    })
    .await?;

    // The stream FraiseQL would create, created here so that the durable consumer's
    // backlog can be loaded before its runtime (and handler) starts.
    js.create_stream(jetstream::stream::Config {
        name: "FRAISEQL".into(),
        subjects: vec!["bench.>".into()],
        duplicate_window: Duration::from_secs(120),
        num_replicas: replicas,
        ..Default::default()
    })
    .await?;
    let data = json!({ "order_id": "ord-1", "total_cents": 1999 });
    // The hand-written publisher does what ours does per event: a unique id for the
    // server's de-duplication, and the same JSON envelope (id, subject, type, time, data).
    let raw_publish = |subject: &'static str| {
        let (js, data) = (js.clone(), data.clone());
        async move {
            let t = Instant::now();
            for chunk in (0..N).collect::<Vec<_>>().chunks(256) {
                let mut acks = Vec::with_capacity(chunk.len());
                for _ in chunk {
                    let id = uuid::Uuid::now_v7().to_string();
                    let time =
                        time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339)?;
                    let body = serde_json::to_vec(
                        &json!({ "id": id, "subject": subject, "type": "x", "time": time, "data": data }),
                    )?;
                    let mut h = async_nats::HeaderMap::new();
                    h.insert("Nats-Msg-Id", id.as_str());
                    acks.push(js.publish_with_headers(subject, h, body.into()).await?);
                }
                for a in acks {
                    a.await?;
                }
            }
            anyhow::Ok(N as f64 / t.elapsed().as_secs_f64())
        }
    };

    println!("{} server(s), stream replicas: {replicas}", servers.len());
    println!();
    println!("| benchmark | raw async-nats | FraiseQL | ratio |");
    println!("|---|---|---|---|");

    // (a) raw side; and the backlog of the durable consumer of (b).
    let raw_a = raw_publish("raw.a.x").await?;
    raw_publish("bench.durable.x").await?;

    // (b) durable consumer, ack per message, over a backlog of N.
    let raw_consumer = js
        .get_stream("RAWBENCH")
        .await?
        .create_consumer(consumer::pull::Config {
            durable_name: Some("raw".into()),
            ack_policy: consumer::AckPolicy::Explicit,
            ..Default::default()
        })
        .await?;
    // Timed from the first delivery to the last ack; each payload decoded, as a handler would.
    let mut msgs = raw_consumer.messages().await?.take(N);
    let mut t = None;
    while let Some(m) = msgs.next().await {
        t.get_or_insert_with(Instant::now);
        let m = m.map_err(|e| anyhow::anyhow!("{e}"))?;
        std::hint::black_box(serde_json::from_slice::<serde_json::Value>(&m.payload)?);
        m.ack().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let raw_b = (N - 1) as f64 / t.unwrap().elapsed().as_secs_f64();

    let mut config = Config::default();
    config
        .databases
        .insert("primary".into(), DatabaseConfig { url: db_url.clone(), max_connections: 32, ..Default::default() });
    config.events.url = Some(nats_url.clone());
    config.events.subjects = vec!["bench.>".into()];
    config.events.replicas = replicas;
    if let Ok(ms) = std::env::var("BENCH_RELAY_INTERVAL_MS") {
        config.events.relay_interval = Duration::from_millis(ms.parse()?);
    }
    let rt = Runtime::builder().config(config).start().await?;
    while HANDLED.load(Ordering::Relaxed) < N {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let ours_b = (N - 1) as f64 / FIRST_HANDLED.get().unwrap().elapsed().as_secs_f64();
    rt.database("primary")?.execute_script("CREATE TABLE bench_rows (i BIGINT NOT NULL)").await?;

    // (a) FraiseQL side: rt.publish (ack awaited), 256 in flight.
    let t = Instant::now();
    for chunk in (0..N).collect::<Vec<_>>().chunks(256) {
        let futs = chunk.iter().map(|_| rt.publish("bench.pub.x", json!({ "order_id": "ord-1", "total_cents": 1999 })));
        for r in futures_util::future::join_all(futs).await {
            r?;
        }
    }
    let ours_a = N as f64 / t.elapsed().as_secs_f64();
    println!("| (a) publish with ack, 256 in flight, msgs/s | {raw_a:.0} | {ours_a:.0} | {:.2}× |", ours_a / raw_a);
    println!("| (b) durable consumer over a backlog, ack each, msgs/s | {raw_b:.0} (one pull loop) | {ours_b:.0} (`#[subscribe(durable, concurrency = 64)]`) | {:.2}× |", ours_b / raw_b);

    // (d) replay: ordered consumer over the stream.
    let t = Instant::now();
    let ordered = js
        .get_stream("RAWBENCH")
        .await?
        .create_consumer(consumer::pull::OrderedConfig { filter_subject: "raw.>".into(), ..Default::default() })
        .await?;
    let mut m = ordered.messages().await?.take(N);
    let mut n = 0;
    while let Some(x) = m.next().await {
        let x = x.map_err(|e| anyhow::anyhow!("{e}"))?;
        std::hint::black_box(serde_json::from_slice::<serde_json::Value>(&x.payload)?);
        n += 1;
    }
    let raw_d = n as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    let h = rt.history("bench.durable.>", None).await?;
    anyhow::ensure!(h.len() == N, "replayed {} of {N}", h.len());
    let ours_d = h.len() as f64 / t.elapsed().as_secs_f64();
    println!("| (d) replay, events/s | {raw_d:.0} | {ours_d:.0} | {:.2}× |", ours_d / raw_d);

    // (c) outbox end to end: commit → handler. Two baselines: a direct publish → core
    // subscriber round trip (the yardstick), and the same outbox written by hand
    // with sqlx (insert the row and the event in one transaction, commit, publish with
    // ack, delete the row), timed like ours: from before the event's insert to delivery.
    let mut sub = client.subscribe("raw.c.>").await?;
    client.flush().await?;
    let mut raw_lat = Vec::new();
    for i in 0..2000 {
        let t = Instant::now();
        let ack = js.publish("raw.c.x", format!("{i}").into()).await?;
        sub.next().await;
        raw_lat.push(t.elapsed());
        ack.await?;
    }
    let pool = sqlx::PgPool::connect(&db_url).await?;
    sqlx::query("CREATE TABLE raw_outbox (id TEXT PRIMARY KEY, subject TEXT NOT NULL, payload TEXT NOT NULL)")
        .execute(&pool)
        .await?;
    let mut outbox_lat = Vec::new();
    for i in 0..2000i64 {
        let mut tx = pool.begin().await?;
        sqlx::query("INSERT INTO bench_rows (i) VALUES ($1)").bind(i).execute(&mut *tx).await?;
        let t = Instant::now();
        let id = uuid::Uuid::now_v7().to_string();
        let body = serde_json::to_string(&json!({ "id": id, "subject": "raw.c.outbox", "data": { "i": i } }))?;
        sqlx::query("INSERT INTO raw_outbox (id, subject, payload) VALUES ($1, $2, $3)")
            .bind(&id)
            .bind("raw.c.outbox")
            .bind(&body)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        let mut h = async_nats::HeaderMap::new();
        h.insert("Nats-Msg-Id", id.as_str());
        let ack = js.publish_with_headers("raw.c.outbox", h, body.into()).await?;
        sub.next().await;
        outbox_lat.push(t.elapsed());
        ack.await?;
        sqlx::query("DELETE FROM raw_outbox WHERE id = $1").bind(&id).execute(&pool).await?;
    }
    HANDLED.store(0, Ordering::Relaxed);
    let t = Instant::now();
    for i in 0..2000 {
        emit(i).await?;
        let target = i as usize + 1;
        while HANDLED.load(Ordering::Relaxed) < target {
            HANDLED_NOTIFY.notified().await;
        }
    }
    let ours_rate = 2000.0 / t.elapsed().as_secs_f64();
    let mut lat = LATENCIES.get_or_init(Default::default).lock().unwrap().clone();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let (rp50, rp99) = (percentile(&mut raw_lat, 0.5), percentile(&mut raw_lat, 0.99));
    let (op50, op99) = (percentile(&mut outbox_lat, 0.5), percentile(&mut outbox_lat, 0.99));
    let (p50, p99) = (percentile(&mut lat, 0.5), percentile(&mut lat, 0.99));
    println!(
        "| (c) commit → handler p50 / p99 ms (sequential) | {:.3} / {:.3} (publish+consume); {:.3} / {:.3} (hand-written sqlx outbox) | {:.3} / {:.3} ({ours_rate:.0} sagas/s) | p50 {:.2}× direct, {:.2}× hand-written outbox |",
        ms(rp50),
        ms(rp99),
        ms(op50),
        ms(op99),
        ms(p50),
        ms(p99),
        p50.as_secs_f64() / rp50.as_secs_f64(),
        p50.as_secs_f64() / op50.as_secs_f64()
    );
    rt.shutdown().await?;
    Ok(())
}
