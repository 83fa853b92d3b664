//! Benchmark: the outbox relay draining a backlog, against hand-written async-nats
//! publishing the same events with acks (256 in flight), in the same run, on the same
//! nats-server. Results go in BENCHMARKS.md.
//!
//! The backlog is what a relay faces after an outage: `BENCH_RELAY_N` (default 100,000)
//! committed rows in `fraiseql_outbox` of a PostgreSQL database. FraiseQL drains them with
//! `rt.outbox().flush()` until nothing is pending (publish, ack, delete each row); the
//! baseline publishes the same envelopes to another stream and awaits every ack.
//!
//! `scripts/bench relay`, or `FRAISEQL_TEST_NATS_URL=… FRAISEQL_TEST_PG_URL=… cargo run --release --example bench_relay`.

use std::time::{Duration, Instant};

use async_nats::jetstream;
use fraiseql::{Config, DatabaseConfig, Runtime};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .init();
    let n: i64 = std::env::var("BENCH_RELAY_N").ok().and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let nats_url = std::env::var("FRAISEQL_TEST_NATS_URL")
        .map_err(|_| anyhow::anyhow!("set FRAISEQL_TEST_NATS_URL (scripts/bench does)"))?;
    let pg_admin = std::env::var("FRAISEQL_TEST_PG_URL")
        .map_err(|_| anyhow::anyhow!("set FRAISEQL_TEST_PG_URL (scripts/bench does)"))?;
    let base = pg_admin.rsplit_once('/').unwrap().0.to_string();
    let admin = sqlx::PgPool::connect(&pg_admin).await?;
    sqlx::query("DROP DATABASE IF EXISTS bench_relay WITH (FORCE)").execute(&admin).await?;
    sqlx::query("CREATE DATABASE bench_relay").execute(&admin).await?;
    let client = async_nats::connect(&nats_url).await?;
    let js = jetstream::new(client.clone());
    for s in ["RELAYBENCH", "RELAYRAW"] {
        let _ = js.delete_stream(s).await;
    }
    js.create_stream(jetstream::stream::Config {
        name: "RELAYRAW".into(),
        subjects: vec!["relayraw.>".into()],
        ..Default::default()
    })
    .await?;

    let mut config = Config::default();
    config.databases.insert(
        "primary".into(),
        DatabaseConfig { url: format!("{base}/bench_relay"), max_connections: 16, ..Default::default() },
    );
    config.events.url = Some(nats_url.clone());
    config.events.stream = "RELAYBENCH".into();
    config.events.subjects = vec!["relaybench.>".into()];
    // The backlog is drained by hand, timed; the background sweep must not start first.
    config.events.relay_interval = Duration::from_secs(3600);
    let rt = Runtime::builder().config(config).start().await?;
    let db = rt.database("primary")?;
    let rounds: usize = std::env::var("BENCH_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(5);
    let (mut raws, mut ours, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        // The backlog: rows as `ctx.publish` writes them (one per millisecond), committed, due.
        db.execute(
            "INSERT INTO fraiseql_outbox (id, subject, event_type, payload, saga_id, status, attempts, created_at, next_attempt_at)
             SELECT $2 || g, 'relaybench.order.created', 'order.created',
                    json_build_object('id', $2 || g, 'subject', 'relaybench.order.created', 'type', 'order.created',
                                      'time', '2026-11-25T00:00:00Z', 'data', json_build_object('i', g))::text,
                    NULL, 'pending', 0, g, g
             FROM generate_series(1, $1::bigint) AS g",
            (n, format!("ev{round}-")),
        )
        .await?;
        db.execute_script("VACUUM ANALYZE fraiseql_outbox").await?;
        let payloads: Vec<(String, String)> =
            db.fetch_all("SELECT id, payload FROM fraiseql_outbox ORDER BY created_at", ()).await?;
        // Baseline: the same envelopes, published with their ids, 256 acks in flight.
        let baseline = async {
            let t = Instant::now();
            for chunk in payloads.chunks(256) {
                let mut acks = Vec::with_capacity(chunk.len());
                for (id, payload) in chunk {
                    let mut h = async_nats::HeaderMap::new();
                    h.insert("Nats-Msg-Id", format!("raw-{id}").as_str());
                    acks.push(
                        js.publish_with_headers("relayraw.order.created", h, payload.clone().into_bytes().into())
                            .await?,
                    );
                }
                for ack in acks {
                    ack.await?;
                }
            }
            anyhow::Ok(n as f64 / t.elapsed().as_secs_f64())
        };
        // FraiseQL: drain until nothing is pending.
        let drain = async {
            let t = Instant::now();
            while rt.outbox().pending().await? > 0 {
                rt.outbox().flush().await;
            }
            anyhow::Ok(n as f64 / t.elapsed().as_secs_f64())
        };
        // Interleaved: the order alternates from round to round.
        let (raw, relay) = if round % 2 == 0 {
            let raw = baseline.await?;
            (raw, drain.await?)
        } else {
            let relay = drain.await?;
            (baseline.await?, relay)
        };
        println!("round {round}: raw {raw:.0}/s, relay {relay:.0}/s, {:.2}×", relay / raw);
        raws.push(raw);
        ours.push(relay);
        ratios.push(relay / raw);
    }
    let stored = js.get_stream("RELAYBENCH").await?.info().await?.state.messages;
    assert_eq!(stored as i64, n * rounds as i64, "every outbox row reached the stream once");
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!("| benchmark | raw async-nats | FraiseQL | ratio |");
    println!("|---|---|---|---|");
    println!(
        "| outbox backlog of {n} drained (median of {rounds} interleaved rounds): events/s | {:.0} (publish with acks, 256 in flight) | {:.0} | {:.2}× (rounds: {}) |",
        median(&mut raws),
        median(&mut ours),
        median(&mut ratios.clone()),
        ratios.iter().map(|r| format!("{r:.2}")).collect::<Vec<_>>().join(", ")
    );
    rt.shutdown().await?;
    Ok(())
}
