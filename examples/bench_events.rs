//! Benchmark: events through FraiseQL against hand-written async-nats (and sqlx) code
//! doing the same work, in the same run, on the same nats-server and PostgreSQL, in
//! interleaved rounds (the order alternates each round; medians reported). Results go
//! in BENCHMARKS.md.
//!
//! - (a) publish with the server's ack, 256 in flight: `rt.publish` / `js.publish`.
//! - (b) a durable consumer over a backlog, ack each: `#[subscribe(durable)]` / a pull loop.
//! - (e) the same with an inbox: `#[subscribe(durable, database)]` inserting one row /
//!   a hand-written consumer doing the same transaction (inbox insert, row, commit, ack)
//!   with the same concurrency.
//! - (d) replay: `rt.history` / an ordered consumer.
//! - (c) commit → handler latency through the outbox: sequential, and with sagas
//!   committing at 1,000/s.
//!
//! `scripts/bench events` starts a throwaway nats-server and PostgreSQL, or:
//! `FRAISEQL_TEST_NATS_URL=nats://… FRAISEQL_TEST_PG_URL=postgres://… cargo run --release --example bench_events`.
//!
//! On a cluster: `FRAISEQL_TEST_NATS_URL` lists its servers (comma-separated) and
//! `BENCH_EVENTS_REPLICAS=3` replicates both sides' streams; `scripts/bench events-cluster`
//! runs it with 1 and 3 replicas on the 3-node cluster of `scripts/services` and prints
//! the ratios.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer};
use fraiseql::prelude::*;
use fraiseql::{Config, DatabaseConfig};
use futures_util::StreamExt;
use serde_json::json;

const N: usize = 20_000;
const CONCURRENCY: usize = 64;

static HANDLED: AtomicUsize = AtomicUsize::new(0);
/// When the handler under test first ran this round: consumers are timed from the first
/// delivery on both sides.
static FIRST_HANDLED: Mutex<Option<Instant>> = Mutex::new(None);
static LATENCIES: OnceLock<Mutex<Vec<Duration>>> = OnceLock::new();
/// Wakes the (c) loop when the outbox handler has run; it must not spin on a worker.
static HANDLED_NOTIFY: tokio::sync::Notify = tokio::sync::Notify::const_new();

fn handled() {
    FIRST_HANDLED.lock().unwrap().get_or_insert_with(Instant::now);
    HANDLED.fetch_add(1, Ordering::Relaxed);
}

#[subscribe("bench.durable.>", durable = "bench-durable", concurrency = 64)]
async fn durable_handler(event: Event, _ctx: &EventContext) -> fraiseql::Result<()> {
    std::hint::black_box(event);
    handled();
    Ok(())
}

#[subscribe("bench.inbox.>", durable = "bench-inbox", database = "primary", concurrency = 64)]
async fn inbox_handler(event: Event, ctx: &mut EventTx) -> fraiseql::Result<()> {
    ctx.execute("INSERT INTO bench_effect (event_id) VALUES ($1)", (&event.id,)).await?;
    handled();
    Ok(())
}

/// Receives the outbox's events; the publisher put its commit instant in the data.
#[subscribe("bench.outbox.>")]
async fn outbox_handler(event: Event, _ctx: &EventContext) -> fraiseql::Result<()> {
    let sent = event.data["t_us"].as_u64().unwrap_or(0);
    LATENCIES.get_or_init(Default::default).lock().unwrap().push(Duration::from_micros(now_us().saturating_sub(sent)));
    HANDLED.fetch_add(1, Ordering::Relaxed);
    HANDLED_NOTIFY.notify_one();
    Ok(())
}

#[saga(steps = ["bench_emit"])]
async fn emit(i: i64) -> fraiseql::Result<()>;

#[saga_step("bench_emit", database = "primary")]
async fn bench_emit(ctx: &mut SagaContext, i: i64) -> fraiseql::Result<()> {
    ctx.execute("INSERT INTO bench_rows (i) VALUES ($1)", (i,)).await?;
    ctx.publish("bench.outbox.emitted", json!({ "i": i, "t_us": now_us() })).await?;
    Ok(())
}

fn now_us() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_micros() as u64
}

fn percentile(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p) as usize]
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Raw and ours of one benchmark, round by round.
#[derive(Default)]
struct Pair {
    raw: Vec<f64>,
    ours: Vec<f64>,
}

impl Pair {
    fn push(&mut self, raw: f64, ours: f64) {
        self.raw.push(raw);
        self.ours.push(ours);
    }

    fn row(&self, what: &str, raw_note: &str, ours_note: &str) {
        let ratios: Vec<f64> = self.raw.iter().zip(&self.ours).map(|(r, o)| o / r).collect();
        println!(
            "| {what} | {:.0}{raw_note} | {:.0}{ours_note} | {:.2}× (rounds: {}) |",
            median(&self.raw),
            median(&self.ours),
            median(&ratios),
            ratios.iter().map(|r| format!("{r:.2}")).collect::<Vec<_>>().join(", ")
        );
    }
}

/// Run `a` then `b`, or `b` then `a` on odd rounds; results in (a, b) order.
async fn interleaved<A, B>(round: usize, a: A, b: B) -> anyhow::Result<(f64, f64)>
where
    A: std::future::Future<Output = anyhow::Result<f64>>,
    B: std::future::Future<Output = anyhow::Result<f64>>,
{
    if round % 2 == 0 {
        let a = a.await?;
        Ok((a, b.await?))
    } else {
        let b = b.await?;
        Ok((a.await?, b))
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Warnings (a publish kept in the outbox, a redelivery) explain outliers.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .init();
    let rounds: usize = std::env::var("BENCH_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(3);
    // `BENCH_ONLY=b,e` runs only those (for profiling one path).
    let only = std::env::var("BENCH_ONLY").unwrap_or_else(|_| "a,b,e,d,c".into());
    let runs = |what: &str| only.split(',').any(|o| o.trim() == what);
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
    let mut config = Config::default();
    config
        .databases
        .insert("primary".into(), DatabaseConfig { url: db_url.clone(), max_connections: 32, ..Default::default() });
    config.events.url = Some(nats_url.clone());
    config.events.subjects = vec!["bench.>".into()];
    config.events.replicas = replicas;
    // Not consuming: (a) and (d) run on it; the consumers of (b) and (e) start per round.
    let rt = Runtime::builder().config(config.clone()).consume(false).start().await?;
    rt.database("primary")?
        .execute_script(
            "CREATE TABLE bench_rows (i BIGINT NOT NULL);
             CREATE TABLE bench_effect (event_id TEXT NOT NULL);
             CREATE TABLE raw_inbox (consumer TEXT NOT NULL, event_id TEXT NOT NULL, PRIMARY KEY (consumer, event_id));
             CREATE TABLE raw_effect (event_id TEXT NOT NULL)",
        )
        .await?;
    // The same pool size as the runtime's (`max_connections = 32` above).
    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(32).connect(&db_url).await?;

    let data = json!({ "order_id": "ord-1", "total_cents": 1999 });
    // The hand-written publisher does what ours does per event: a unique id for the
    // server's de-duplication, and the same JSON envelope (id, subject, type, time, data).
    let raw_publish = |subject: String| {
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
                    acks.push(js.publish_with_headers(subject.clone(), h, body.into()).await?);
                }
                for a in acks {
                    a.await?;
                }
            }
            anyhow::Ok(N as f64 / t.elapsed().as_secs_f64())
        }
    };
    // A hand-written pull consumer over `subject`'s backlog of N; `work` per message.
    let raw_consume = |name: String, subject: String, concurrent: bool| {
        let (js, pool) = (js.clone(), pool.clone());
        async move {
            let c = js
                .get_stream("RAWBENCH")
                .await?
                .create_consumer(consumer::pull::Config {
                    durable_name: Some(name.clone()),
                    filter_subject: subject,
                    ack_policy: consumer::AckPolicy::Explicit,
                    ..Default::default()
                })
                .await?;
            let first: Mutex<Option<Instant>> = Mutex::new(None);
            let msgs = c.stream().max_messages_per_batch(CONCURRENCY * 4).messages().await?.take(N);
            let work = |m: Result<jetstream::Message, _>| {
                let (pool, first, name) = (&pool, &first, &name);
                async move {
                    first.lock().unwrap().get_or_insert_with(Instant::now);
                    let m = m.map_err(|e| anyhow::anyhow!("{e}"))?;
                    let v: serde_json::Value = serde_json::from_slice(&m.payload)?;
                    if concurrent {
                        // The inbox, by hand: the key and the effect in one transaction.
                        let id = v["id"].as_str().unwrap_or_default();
                        let mut tx = pool.begin().await?;
                        let new = sqlx::query(
                            "INSERT INTO raw_inbox (consumer, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                        )
                        .bind(name.as_str())
                        .bind(id)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                        if new == 1 {
                            sqlx::query("INSERT INTO raw_effect (event_id) VALUES ($1)")
                                .bind(id)
                                .execute(&mut *tx)
                                .await?;
                        }
                        tx.commit().await?;
                    } else {
                        std::hint::black_box(v);
                    }
                    m.ack().await.map_err(|e| anyhow::anyhow!("{e}"))?;
                    anyhow::Ok(())
                }
            };
            if concurrent {
                let results: Vec<_> = msgs.map(work).buffer_unordered(CONCURRENCY).collect().await;
                results.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
            } else {
                let mut msgs = msgs;
                while let Some(m) = msgs.next().await {
                    work(m).await?;
                }
            }
            let start = first.lock().unwrap().unwrap();
            anyhow::Ok((N - 1) as f64 / start.elapsed().as_secs_f64())
        }
    };
    // Ours: a consuming runtime over a backlog of N loaded on `subject`, timed from the
    // first handled event.
    let ours_consume = |subject: &'static str| {
        let (config, raw_publish) = (config.clone(), raw_publish);
        async move {
            raw_publish(subject.to_string()).await?;
            HANDLED.store(0, Ordering::Relaxed);
            *FIRST_HANDLED.lock().unwrap() = None;
            let consumer = Runtime::builder().config(config).set_default(false).start().await?;
            while HANDLED.load(Ordering::Relaxed) < N {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let start = FIRST_HANDLED.lock().unwrap().unwrap();
            let rate = (N - 1) as f64 / start.elapsed().as_secs_f64();
            consumer.shutdown().await?;
            anyhow::Ok(rate)
        }
    };

    let (mut a, mut b, mut e, mut d) = (Pair::default(), Pair::default(), Pair::default(), Pair::default());
    for round in 0..rounds {
        // (a) publish with ack, 256 in flight.
        let ours_publish = async {
            let t = Instant::now();
            let subject = format!("bench.pub{round}.x");
            for chunk in (0..N).collect::<Vec<_>>().chunks(256) {
                let futs =
                    chunk.iter().map(|_| rt.publish(&subject, json!({ "order_id": "ord-1", "total_cents": 1999 })));
                for r in futures_util::future::join_all(futs).await {
                    r?;
                }
            }
            anyhow::Ok(N as f64 / t.elapsed().as_secs_f64())
        };
        if runs("a") || runs("d") {
            let (raw, ours) = interleaved(round, raw_publish(format!("raw.a{round}.x")), ours_publish).await?;
            a.push(raw, ours);
        }

        // (b) durable consumer over a backlog, ack each.
        let raw_b = async {
            raw_publish(format!("raw.b{round}.x")).await?;
            raw_consume(format!("raw-b{round}"), format!("raw.b{round}.>"), false).await
        };
        if runs("b") {
            let (raw, ours) = interleaved(round, raw_b, ours_consume("bench.durable.x")).await?;
            b.push(raw, ours);
        }

        // (e) with the inbox: one transaction per event.
        let raw_e = async {
            raw_publish(format!("raw.e{round}.x")).await?;
            raw_consume(format!("raw-e{round}"), format!("raw.e{round}.>"), true).await
        };
        if runs("e") {
            let (raw, ours) = interleaved(round, raw_e, ours_consume("bench.inbox.x")).await?;
            e.push(raw, ours);
        }

        // (d) replay of (a)'s events.
        let raw_d = async {
            let t = Instant::now();
            let ordered = js
                .get_stream("RAWBENCH")
                .await?
                .create_consumer(consumer::pull::OrderedConfig {
                    filter_subject: format!("raw.a{round}.>"),
                    ..Default::default()
                })
                .await?;
            let mut m = ordered.messages().await?.take(N);
            while let Some(x) = m.next().await {
                let x = x.map_err(|e| anyhow::anyhow!("{e}"))?;
                std::hint::black_box(serde_json::from_slice::<serde_json::Value>(&x.payload)?);
            }
            anyhow::Ok(N as f64 / t.elapsed().as_secs_f64())
        };
        let ours_d = async {
            let t = Instant::now();
            let h = rt.history(&format!("bench.pub{round}.>"), None).await?;
            anyhow::ensure!(h.len() == N, "replayed {} of {N}", h.len());
            anyhow::Ok(N as f64 / t.elapsed().as_secs_f64())
        };
        if runs("d") {
            let (raw, ours) = interleaved(round, raw_d, ours_d).await?;
            d.push(raw, ours);
        }
        eprintln!("round {round} done");
    }
    let (effects,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM bench_effect").fetch_one(&pool).await?;
    let expected = if runs("e") { N * rounds } else { 0 };
    anyhow::ensure!(effects as usize == expected, "the inbox handler applied {effects} of {expected}");

    println!("{} server(s), stream replicas: {replicas}", servers.len());
    println!();
    println!("| benchmark (median of {rounds} interleaved rounds) | hand-written | FraiseQL | ratio |");
    println!("|---|---|---|---|");
    let row = |p: &Pair, what: &str, raw: &str, ours: &str| {
        if !p.raw.is_empty() {
            p.row(what, raw, ours)
        }
    };
    row(&a, "(a) publish with ack, 256 in flight, msgs/s", "", " (`rt.publish`)");
    row(
        &b,
        "(b) durable consumer over a backlog, ack each, msgs/s",
        " (one pull loop)",
        " (`#[subscribe(durable, concurrency = 64)]`)",
    );
    row(
        &e,
        "(e) durable consumer with an inbox (one transaction per event: inbox key + one row), msgs/s",
        " (sqlx + async-nats, 64 at once)",
        " (`#[subscribe(durable, database, concurrency = 64)]`)",
    );
    row(&d, "(d) replay, events/s", " (ordered consumer)", " (`rt.history`)");

    if !runs("c") {
        rt.shutdown().await?;
        return Ok(());
    }
    // (c) outbox end to end: commit → handler. Two baselines: a direct publish → core
    // subscriber round trip, and the same outbox written by hand with sqlx (insert the
    // row and the event in one transaction, commit, publish with ack, delete the row),
    // timed like ours: from before the event's insert to delivery.
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
    let consumer = Runtime::builder().config(config.clone()).start().await?;
    HANDLED.store(0, Ordering::Relaxed);
    let t = Instant::now();
    for i in 0..2000 {
        consumer.scope(emit(i)).await?;
        let target = i as usize + 1;
        while HANDLED.load(Ordering::Relaxed) < target {
            HANDLED_NOTIFY.notified().await;
        }
    }
    let ours_rate = 2000.0 / t.elapsed().as_secs_f64();
    let mut lat = std::mem::take(&mut *LATENCIES.get_or_init(Default::default).lock().unwrap());
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

    // (c') the same while sagas commit at 1,000/s for 5 s (started on a fixed schedule,
    // each on its own task, so a slow one does not slow the rate).
    HANDLED.store(0, Ordering::Relaxed);
    let total = 5_000usize;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let t = Instant::now();
    let mut running = Vec::with_capacity(total);
    for i in 0..total {
        tick.tick().await;
        running.push(tokio::spawn(consumer.scope(emit(10_000 + i as i64))));
    }
    for r in running {
        r.await??;
    }
    let rate = total as f64 / t.elapsed().as_secs_f64();
    while HANDLED.load(Ordering::Relaxed) < total {
        HANDLED_NOTIFY.notified().await;
    }
    let mut lat = std::mem::take(&mut *LATENCIES.get_or_init(Default::default).lock().unwrap());
    let (p50, p99, max) = (percentile(&mut lat, 0.5), percentile(&mut lat, 0.99), percentile(&mut lat, 1.0));
    println!(
        "| (c') commit → handler p50 / p99 / max ms, sagas committing at {rate:.0}/s | | {:.3} / {:.3} / {:.3} | target p99 ≤ 10 ms |",
        ms(p50),
        ms(p99),
        ms(max)
    );
    consumer.shutdown().await?;
    rt.shutdown().await?;
    Ok(())
}
