//! Benchmark: a 3-step saga over 3 PostgreSQL databases against hand-written sqlx
//! doing the same three transactions with no saga machinery, in the same run, on the
//! same server. Results go in BENCHMARKS.md.
//!
//! `scripts/bench` starts the throwaway PostgreSQL and runs this in release mode, or:
//! `FRAISEQL_TEST_PG_URL=postgres://… cargo run --release --example bench_saga`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use fraiseql::prelude::*;
use fraiseql::{Config, DatabaseConfig};
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;

#[saga(steps = ["b_order", "b_stock", "b_payment"])]
async fn bench_order(order_id: i64, sku: i64, amount: i64) -> fraiseql::Result<()>;

#[saga_step("b_order", database = "primary")]
async fn b_order(ctx: &mut SagaContext, order_id: i64, amount: i64) -> fraiseql::Result<()> {
    sqlx::query("INSERT INTO orders (id, customer, total) VALUES ($1, 'c', $2)")
        .bind(order_id)
        .bind(amount)
        .execute(ctx.pg()?)
        .await?;
    Ok(())
}

#[saga_step("b_stock", database = "inventory")]
async fn b_stock(ctx: &mut SagaContext, sku: i64) -> fraiseql::Result<()> {
    sqlx::query("UPDATE stock SET available = available - 1 WHERE sku = $1").bind(sku).execute(ctx.pg()?).await?;
    Ok(())
}

#[saga_step("b_payment", database = "payments")]
async fn b_payment(ctx: &mut SagaContext, order_id: i64, amount: i64) -> fraiseql::Result<()> {
    sqlx::query("INSERT INTO payments (order_id, amount) VALUES ($1, $2)")
        .bind(order_id)
        .bind(amount)
        .execute(ctx.pg()?)
        .await?;
    Ok(())
}

struct Baseline {
    primary: PgPool,
    inventory: PgPool,
    payments: PgPool,
}

impl Baseline {
    async fn run(&self, order_id: i64, sku: i64, amount: i64) -> anyhow::Result<()> {
        let mut tx = self.primary.begin().await?;
        sqlx::query("INSERT INTO orders (id, customer, total) VALUES ($1, 'c', $2)")
            .bind(order_id)
            .bind(amount)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        let mut tx = self.inventory.begin().await?;
        sqlx::query("UPDATE stock SET available = available - 1 WHERE sku = $1").bind(sku).execute(&mut *tx).await?;
        tx.commit().await?;
        let mut tx = self.payments.begin().await?;
        sqlx::query("INSERT INTO payments (order_id, amount) VALUES ($1, $2)")
            .bind(order_id)
            .bind(amount)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}

impl Baseline {
    /// The same work with the minimum a durable saga needs, written by hand: a log row
    /// before the first step and a marker row inside each step's transaction. The gap
    /// between this and `Baseline` is what durability itself costs; the gap between
    /// this and the saga is the framework's own overhead.
    async fn run_durable(&self, order_id: i64, sku: i64, amount: i64) -> anyhow::Result<()> {
        let id = order_id.to_string();
        sqlx::query("INSERT INTO hand_log (id, status, input) VALUES ($1, 'running', $2)")
            .bind(&id)
            .bind("{}")
            .execute(&self.primary)
            .await?;
        let mut tx = self.primary.begin().await?;
        sqlx::query("INSERT INTO orders (id, customer, total) VALUES ($1, 'c', $2)")
            .bind(order_id)
            .bind(amount)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO hand_marker (id, idx) VALUES ($1, 0)").bind(&id).execute(&mut *tx).await?;
        tx.commit().await?;
        let mut tx = self.inventory.begin().await?;
        sqlx::query("UPDATE stock SET available = available - 1 WHERE sku = $1").bind(sku).execute(&mut *tx).await?;
        sqlx::query("INSERT INTO hand_marker (id, idx) VALUES ($1, 1)").bind(&id).execute(&mut *tx).await?;
        tx.commit().await?;
        let mut tx = self.payments.begin().await?;
        sqlx::query("INSERT INTO payments (order_id, amount) VALUES ($1, $2)")
            .bind(order_id)
            .bind(amount)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO hand_marker (id, idx) VALUES ($1, 2)").bind(&id).execute(&mut *tx).await?;
        tx.commit().await?;
        sqlx::query("UPDATE hand_log SET status = 'completed' WHERE id = $1").bind(&id).execute(&self.primary).await?;
        Ok(())
    }
}

#[derive(Clone, Copy)]
enum Which {
    Baseline,
    HandDurable,
    Saga,
}

struct Stats {
    per_sec: f64,
    p50: Duration,
    p99: Duration,
}

async fn measure(
    which: Which,
    base: Arc<Baseline>,
    rt: Runtime,
    concurrency: usize,
    total: usize,
    next_id: Arc<std::sync::atomic::AtomicI64>,
) -> anyhow::Result<Stats> {
    let started = Instant::now();
    let per_task = total / concurrency;
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (base, rt, next_id) = (base.clone(), rt.clone(), next_id.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(per_task);
            for _ in 0..per_task {
                let id = next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let sku = id % 1000;
                let t = Instant::now();
                match which {
                    Which::Baseline => base.run(id, sku, 100).await?,
                    Which::HandDurable => base.run_durable(id, sku, 100).await?,
                    Which::Saga => rt.scope(bench_order(id, sku, 100)).await?,
                }
                lat.push(t.elapsed());
            }
            anyhow::Ok(lat)
        }));
    }
    let mut all = Vec::with_capacity(total);
    for t in tasks {
        all.extend(t.await??);
    }
    let elapsed = started.elapsed();
    all.sort();
    Ok(Stats {
        per_sec: all.len() as f64 / elapsed.as_secs_f64(),
        p50: all[all.len() / 2],
        p99: all[all.len() * 99 / 100],
    })
}

async fn fresh_db(admin: &PgPool, base_url: &str, name: &str, schema: &str) -> anyhow::Result<String> {
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(admin).await?;
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(admin).await?;
    let url = format!("{base_url}/{name}");
    let pool = PgPool::connect(&url).await?;
    sqlx::raw_sql(schema).execute(&pool).await?;
    pool.close().await;
    Ok(url)
}

fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let admin_url = std::env::var("FRAISEQL_TEST_PG_URL")
        .map_err(|_| anyhow::anyhow!("set FRAISEQL_TEST_PG_URL (scripts/bench does)"))?;
    let scale: usize = std::env::var("BENCH_SCALE").ok().and_then(|s| s.parse().ok()).unwrap_or(1);
    let base_url = admin_url.rsplit_once('/').unwrap().0.to_string();
    let admin = PgPool::connect(&admin_url).await?;
    let mut urls = Vec::new();
    for (name, schema) in [
        (
            "bench_primary",
            "CREATE TABLE orders (id BIGINT PRIMARY KEY, customer TEXT NOT NULL, total BIGINT NOT NULL);
             CREATE TABLE hand_log (id TEXT PRIMARY KEY, status TEXT NOT NULL, input TEXT NOT NULL);
             CREATE TABLE hand_marker (id TEXT NOT NULL, idx INT NOT NULL, PRIMARY KEY (id, idx))",
        ),
        (
            "bench_inventory",
            "CREATE TABLE stock (sku BIGINT PRIMARY KEY, available BIGINT NOT NULL);
             INSERT INTO stock SELECT g, 1000000000 FROM generate_series(0, 999) g;
             CREATE TABLE hand_marker (id TEXT NOT NULL, idx INT NOT NULL, PRIMARY KEY (id, idx))",
        ),
        (
            "bench_payments",
            "CREATE TABLE payments (id BIGSERIAL PRIMARY KEY, order_id BIGINT NOT NULL, amount BIGINT NOT NULL);
             CREATE TABLE hand_marker (id TEXT NOT NULL, idx INT NOT NULL, PRIMARY KEY (id, idx))",
        ),
    ] {
        urls.push(fresh_db(&admin, &base_url, name, schema).await?);
    }
    let settings: Vec<(String, String)> = sqlx::query_as(
        "SELECT name, setting FROM pg_settings WHERE name IN ('fsync', 'synchronous_commit', 'server_version', 'shared_buffers') ORDER BY name",
    )
    .fetch_all(&admin)
    .await?;
    let pool = |url: String| async move { PgPoolOptions::new().max_connections(40).connect(&url).await };
    let base = Arc::new(Baseline {
        primary: pool(urls[0].clone()).await?,
        inventory: pool(urls[1].clone()).await?,
        payments: pool(urls[2].clone()).await?,
    });
    let mut config = Config::default();
    for (name, url) in ["primary", "inventory", "payments"].iter().zip(&urls) {
        config
            .databases
            .insert(name.to_string(), DatabaseConfig { url: url.clone(), max_connections: 40, ..Default::default() });
    }
    let rt = Runtime::builder().config(config).start().await?;
    let next_id = Arc::new(std::sync::atomic::AtomicI64::new(1));

    println!("PostgreSQL settings: {settings:?}");
    println!("| concurrency | round | baseline/s | hand-durable/s | saga/s | saga ÷ baseline | baseline p50 ms | hand-durable p50 ms | saga p50 ms | saga p50 ÷ baseline | baseline p99 ms | saga p99 ms |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    // Warm every path (pools, statement caches) before measuring.
    for w in [Which::Baseline, Which::HandDurable, Which::Saga] {
        measure(w, base.clone(), rt.clone(), 8, 800, next_id.clone()).await?;
    }
    for (concurrency, total) in [(1usize, 1500 * scale), (32, 8000 * scale)] {
        let mut ratios = Vec::new();
        for round in 1..=3 {
            let b = measure(Which::Baseline, base.clone(), rt.clone(), concurrency, total, next_id.clone()).await?;
            let h = measure(Which::HandDurable, base.clone(), rt.clone(), concurrency, total, next_id.clone()).await?;
            let s = measure(Which::Saga, base.clone(), rt.clone(), concurrency, total, next_id.clone()).await?;
            ratios.push((
                s.per_sec / b.per_sec,
                s.p50.as_secs_f64() / b.p50.as_secs_f64(),
                h.per_sec / b.per_sec,
                h.p50.as_secs_f64() / b.p50.as_secs_f64(),
            ));
            println!(
                "| {concurrency} | {round} | {:.0} | {:.0} | {:.0} | {:.2}× | {} | {} | {} | {:.2}× | {} | {} |",
                b.per_sec,
                h.per_sec,
                s.per_sec,
                s.per_sec / b.per_sec,
                ms(b.p50),
                ms(h.p50),
                ms(s.p50),
                s.p50.as_secs_f64() / b.p50.as_secs_f64(),
                ms(b.p99),
                ms(s.p99)
            );
        }
        let median = |f: fn(&(f64, f64, f64, f64)) -> f64| {
            let mut v: Vec<f64> = ratios.iter().map(f).collect();
            v.sort_by(|a, b| a.partial_cmp(b).unwrap());
            v[v.len() / 2]
        };
        println!(
            "concurrency {concurrency}: saga ÷ baseline: throughput {:.2}×, p50 {:.2}×; hand-written durable ÷ baseline: throughput {:.2}×, p50 {:.2}×",
            median(|r| r.0),
            median(|r| r.1),
            median(|r| r.2),
            median(|r| r.3)
        );
    }
    rt.shutdown().await?;
    Ok(())
}
