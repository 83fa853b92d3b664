//! Benchmark: a 3-step saga over 3 PostgreSQL databases against hand-written sqlx
//! doing the same three transactions with no saga machinery, in the same run, on the
//! same server, interleaved round by round. Results go in BENCHMARKS.md.
//!
//! The matrix: PostgreSQL's `fsync` / `synchronous_commit` off and on (switched with
//! `ALTER SYSTEM` and a reload, then restored), steps of one statement and of five,
//! concurrency 1, 32 and 128. Also counted, not estimated: round trips per saga (through a
//! proxy that counts the client's writes) and rows written and transactions per saga
//! (`pg_stat_database`), and CPU time per saga of this process and of the PostgreSQL
//! server (`/proc`): on two cores shared by both, that is where throughput goes. Beside
//! the plain baseline (sqlx's default pools, which check each connection they hand out
//! with a round trip), the same baseline through pools without that check, as the
//! runtime's own transactions take a recently used connection: the saga against
//! hand-written code on equal terms. `BENCH_QUICK=1` runs only fsync off, one statement.
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

/// The same saga with steps of five statements: each step's own, and four audit rows.
#[saga(steps = ["b5_order", "b5_stock", "b5_payment"])]
async fn bench_order5(order_id: i64, sku: i64, amount: i64) -> fraiseql::Result<()>;

async fn audit(conn: &mut sqlx::PgConnection, order_id: i64) -> sqlx::Result<()> {
    for n in 0..4 {
        sqlx::query("INSERT INTO audit (order_id, n) VALUES ($1, $2)")
            .bind(order_id)
            .bind(n)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

#[saga_step("b5_order", database = "primary")]
async fn b5_order(ctx: &mut SagaContext, order_id: i64, amount: i64) -> fraiseql::Result<()> {
    b_order(ctx, order_id, amount).await?;
    audit(ctx.pg()?, order_id).await?;
    Ok(())
}

#[saga_step("b5_stock", database = "inventory")]
async fn b5_stock(ctx: &mut SagaContext, order_id: i64, sku: i64) -> fraiseql::Result<()> {
    b_stock(ctx, sku).await?;
    audit(ctx.pg()?, order_id).await?;
    Ok(())
}

#[saga_step("b5_payment", database = "payments")]
async fn b5_payment(ctx: &mut SagaContext, order_id: i64, amount: i64) -> fraiseql::Result<()> {
    b_payment(ctx, order_id, amount).await?;
    audit(ctx.pg()?, order_id).await?;
    Ok(())
}

struct Baseline {
    primary: PgPool,
    inventory: PgPool,
    payments: PgPool,
    /// The same databases through pools that skip sqlx's check of a connection when it
    /// is handed out (`test_before_acquire(false)`), as the runtime's transactions do
    /// with a connection used within the last second: the baseline on equal terms.
    lean: [PgPool; 3],
}

impl Baseline {
    /// The three transactions; with `five`, each also writes four audit rows; with
    /// `lean`, through the pools without the check on acquire.
    async fn run(&self, order_id: i64, sku: i64, amount: i64, five: bool, lean: bool) -> anyhow::Result<()> {
        let (primary, inventory, payments) = if lean {
            (&self.lean[0], &self.lean[1], &self.lean[2])
        } else {
            (&self.primary, &self.inventory, &self.payments)
        };
        let mut tx = primary.begin().await?;
        sqlx::query("INSERT INTO orders (id, customer, total) VALUES ($1, 'c', $2)")
            .bind(order_id)
            .bind(amount)
            .execute(&mut *tx)
            .await?;
        if five {
            audit(&mut tx, order_id).await?;
        }
        tx.commit().await?;
        let mut tx = inventory.begin().await?;
        sqlx::query("UPDATE stock SET available = available - 1 WHERE sku = $1").bind(sku).execute(&mut *tx).await?;
        if five {
            audit(&mut tx, order_id).await?;
        }
        tx.commit().await?;
        let mut tx = payments.begin().await?;
        sqlx::query("INSERT INTO payments (order_id, amount) VALUES ($1, $2)")
            .bind(order_id)
            .bind(amount)
            .execute(&mut *tx)
            .await?;
        if five {
            audit(&mut tx, order_id).await?;
        }
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

#[derive(Clone, Copy, PartialEq)]
enum Which {
    Baseline,
    /// The baseline through pools without sqlx's check on acquire.
    BaselineLean,
    HandDurable,
    Saga,
}

/// Steps of one statement, or of five.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Size {
    One,
    Five,
}

struct Stats {
    per_sec: f64,
    p50: Duration,
    p99: Duration,
    /// CPU time per saga, in µs: this process's (the client and the runtime) and the
    /// PostgreSQL server's (every `postgres` process). On two cores shared by both, what
    /// one side burns the other cannot use.
    cpu_client_us: f64,
    cpu_server_us: f64,
}

/// CPU seconds used so far by this process, and by every `postgres` process alive, read
/// from `/proc` (`utime` + `stime`, in clock ticks).
fn cpu_seconds() -> (f64, f64) {
    fn ticks(stat: &str) -> Option<(String, u64)> {
        // `pid (comm) state ...`: comm may hold spaces, so split after its closing parenthesis.
        let open = stat.find('(')?;
        let close = stat.rfind(')')?;
        let comm = stat[open + 1..close].to_string();
        let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
        // After comm: state is field 3 of the line; utime and stime are fields 14 and 15.
        let utime: u64 = fields.get(11)?.parse().ok()?;
        let stime: u64 = fields.get(12)?.parse().ok()?;
        Some((comm, utime + stime))
    }
    // Linux reports these in USER_HZ, which is 100 whatever the kernel's own tick rate.
    let hz = 100.0;
    let own = std::fs::read_to_string("/proc/self/stat").ok().and_then(|s| ticks(&s)).map_or(0, |t| t.1);
    let mut server = 0;
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        if !entry.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if let Some((comm, t)) = std::fs::read_to_string(entry.path().join("stat")).ok().and_then(|s| ticks(&s)) {
            if comm.starts_with("postgres") {
                server += t;
            }
        }
    }
    (own as f64 / hz, server as f64 / hz)
}

async fn measure(
    which: Which,
    size: Size,
    base: Arc<Baseline>,
    rt: Runtime,
    concurrency: usize,
    total: usize,
    next_id: Arc<std::sync::atomic::AtomicI64>,
) -> anyhow::Result<Stats> {
    let cpu0 = cpu_seconds();
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
                match (which, size) {
                    (Which::Baseline, _) => base.run(id, sku, 100, size == Size::Five, false).await?,
                    (Which::BaselineLean, _) => base.run(id, sku, 100, size == Size::Five, true).await?,
                    (Which::HandDurable, _) => base.run_durable(id, sku, 100).await?,
                    (Which::Saga, Size::One) => rt.scope(bench_order(id, sku, 100)).await?,
                    (Which::Saga, Size::Five) => rt.scope(bench_order5(id, sku, 100)).await?,
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
    let cpu1 = cpu_seconds();
    all.sort();
    Ok(Stats {
        per_sec: all.len() as f64 / elapsed.as_secs_f64(),
        p50: all[all.len() / 2],
        p99: all[all.len() * 99 / 100],
        cpu_client_us: (cpu1.0 - cpu0.0) * 1e6 / all.len() as f64,
        cpu_server_us: (cpu1.1 - cpu0.1) * 1e6 / all.len() as f64,
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

/// A TCP proxy in front of PostgreSQL that counts the client's writes: sqlx writes each
/// request (a query, `BEGIN`, `COMMIT`) in one go and waits for its answer, so a write
/// is a round trip. Returns its address and the counter.
async fn counting_proxy(upstream: String) -> anyhow::Result<(String, Arc<std::sync::atomic::AtomicU64>)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?.to_string();
    let writes = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = writes.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let (upstream, counter) = (upstream.clone(), counter.clone());
            tokio::spawn(async move {
                let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else { return };
                let _ = (client.set_nodelay(true), server.set_nodelay(true));
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let up = async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Ok(n @ 1..) = cr.read(&mut buf).await {
                        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if sw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                };
                let down = async move {
                    let _ = tokio::io::copy(&mut sr, &mut cw).await;
                };
                tokio::join!(up, down);
            });
        }
    });
    Ok((addr, writes))
}

/// Rows written (inserted, updated, deleted) in the bench databases' own tables —
/// FraiseQL's included, the catalog's (autovacuum's statistics) not — and transactions
/// committed, as the statistics collector has them.
async fn written(dbs: &[PgPool]) -> anyhow::Result<(i64, i64)> {
    let (mut rows, mut xacts) = (0, 0);
    for db in dbs {
        // Read in a fresh snapshot of the statistics.
        sqlx::query("SELECT pg_stat_clear_snapshot()").execute(db).await?;
        let (r,): (i64,) = sqlx::query_as(
            "SELECT COALESCE(SUM(n_tup_ins + n_tup_upd + n_tup_del), 0)::bigint FROM pg_stat_user_tables",
        )
        .fetch_one(db)
        .await?;
        let (x,): (i64,) =
            sqlx::query_as("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")
                .fetch_one(db)
                .await?;
        rows += r;
        xacts += x;
    }
    Ok((rows, xacts))
}

/// PostgreSQL's durability: `fsync` and `synchronous_commit` both off or both on, by
/// `ALTER SYSTEM` and a reload (both take effect without a restart).
async fn durability(admin: &PgPool, on: bool) -> anyhow::Result<()> {
    let v = if on { "on" } else { "off" };
    sqlx::query(&format!("ALTER SYSTEM SET fsync = {v}")).execute(admin).await?;
    sqlx::query(&format!("ALTER SYSTEM SET synchronous_commit = {v}")).execute(admin).await?;
    sqlx::query("SELECT pg_reload_conf()").execute(admin).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    Ok(())
}

struct Setup {
    base: Arc<Baseline>,
    rt: Runtime,
}

async fn connect(urls: &[String], size: u32) -> anyhow::Result<Setup> {
    let pool = |url: String| async move { PgPoolOptions::new().max_connections(size).connect(&url).await };
    let lean = |url: String| async move {
        PgPoolOptions::new().max_connections(size).test_before_acquire(false).connect(&url).await
    };
    let base = Arc::new(Baseline {
        primary: pool(urls[0].clone()).await?,
        inventory: pool(urls[1].clone()).await?,
        payments: pool(urls[2].clone()).await?,
        lean: [lean(urls[0].clone()).await?, lean(urls[1].clone()).await?, lean(urls[2].clone()).await?],
    });
    let mut config = Config::default();
    for (name, url) in ["primary", "inventory", "payments"].iter().zip(urls) {
        config
            .databases
            .insert(name.to_string(), DatabaseConfig { url: url.clone(), max_connections: size, ..Default::default() });
    }
    let rt = Runtime::builder().config(config).set_default(false).start().await?;
    Ok(Setup { base, rt })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if let Ok(spec) = std::env::var("BENCH_CHILD") {
        return child(&spec).await;
    }
    let admin_url = std::env::var("FRAISEQL_TEST_PG_URL")
        .map_err(|_| anyhow::anyhow!("set FRAISEQL_TEST_PG_URL (scripts/bench does)"))?;
    let scale: usize = std::env::var("BENCH_SCALE").ok().and_then(|s| s.parse().ok()).unwrap_or(1);
    let quick = std::env::var("BENCH_QUICK").is_ok();
    let base_url = admin_url.rsplit_once('/').unwrap().0.to_string();
    let admin = PgPool::connect(&admin_url).await?;
    let mut urls = Vec::new();
    for (name, schema) in [
        (
            "bench_primary",
            "CREATE TABLE orders (id BIGINT PRIMARY KEY, customer TEXT NOT NULL, total BIGINT NOT NULL);
             CREATE TABLE hand_log (id TEXT PRIMARY KEY, status TEXT NOT NULL, input TEXT NOT NULL);
             CREATE TABLE hand_marker (id TEXT NOT NULL, idx INT NOT NULL, PRIMARY KEY (id, idx));
             CREATE TABLE audit (order_id BIGINT NOT NULL, n INT NOT NULL)",
        ),
        (
            "bench_inventory",
            "CREATE TABLE stock (sku BIGINT PRIMARY KEY, available BIGINT NOT NULL);
             INSERT INTO stock SELECT g, 1000000000 FROM generate_series(0, 999) g;
             CREATE TABLE hand_marker (id TEXT NOT NULL, idx INT NOT NULL, PRIMARY KEY (id, idx));
             CREATE TABLE audit (order_id BIGINT NOT NULL, n INT NOT NULL)",
        ),
        (
            "bench_payments",
            "CREATE TABLE payments (id BIGSERIAL PRIMARY KEY, order_id BIGINT NOT NULL, amount BIGINT NOT NULL);
             CREATE TABLE hand_marker (id TEXT NOT NULL, idx INT NOT NULL, PRIMARY KEY (id, idx));
             CREATE TABLE audit (order_id BIGINT NOT NULL, n INT NOT NULL)",
        ),
    ] {
        urls.push(fresh_db(&admin, &base_url, name, schema).await?);
    }
    let settings: Vec<(String, String)> = sqlx::query_as(
        "SELECT name, setting FROM pg_settings WHERE name IN ('fsync', 'synchronous_commit', 'server_version', 'shared_buffers') ORDER BY name",
    )
    .fetch_all(&admin)
    .await?;
    println!("PostgreSQL settings at start: {settings:?}");
    let next_id = Arc::new(std::sync::atomic::AtomicI64::new(1));

    // Counted: round trips, rows and transactions per saga, 200 sagas of each kind one
    // after another through a counting proxy, on pools of one connection per database
    // (so statements are prepared once). Backends report their statistics when they
    // exit: each kind's pools are closed before the counters are read.
    {
        let upstream = base_url.rsplit_once('@').map(|(_, h)| h.to_string()).unwrap_or_default();
        let (proxy, writes) = counting_proxy(upstream.clone()).await?;
        let via: Vec<String> = urls.iter().map(|u| u.replace(&upstream, &proxy)).collect();
        println!();
        println!("| counted per saga (200 one after another, steps of one statement) | round trips (with sqlx's pool checks) | rows written | transactions |");
        println!("|---|---|---|---|");
        const N: usize = 200;
        let mut stat_pools = Vec::new();
        for u in &urls {
            stat_pools.push(PgPoolOptions::new().max_connections(1).connect(u).await?);
        }
        for (what, which) in [
            ("hand-written", Which::Baseline),
            ("hand-written, pools without the check on acquire", Which::BaselineLean),
            ("hand-written durable", Which::HandDurable),
            ("saga", Which::Saga),
        ] {
            let (rows0, x0) = written(&stat_pools).await?;
            let Setup { base, rt } = connect(&via, 1).await?;
            let w0 = writes.load(std::sync::atomic::Ordering::Relaxed);
            measure(which, Size::One, base.clone(), rt.clone(), 1, N, next_id.clone()).await?;
            // A saga's completion is recorded in batches, off the caller's path: wait for it.
            rt.sagas().list(fraiseql::ListFilter::default()).await?;
            let w1 = writes.load(std::sync::atomic::Ordering::Relaxed);
            rt.shutdown().await?;
            for p in [&base.primary, &base.inventory, &base.payments].into_iter().chain(&base.lean) {
                p.close().await;
            }
            // Backends report their statistics when they exit (and within a second
            // otherwise); the pools are closed.
            tokio::time::sleep(Duration::from_millis(1500)).await;
            let (rows1, x1) = written(&stat_pools).await?;
            println!(
                "| {what} | {:.1} | {:.1} | {:.1} |",
                (w1 - w0) as f64 / N as f64,
                (rows1 - rows0) as f64 / N as f64,
                (x1 - x0) as f64 / N as f64
            );
        }
        if std::env::var("BENCH_COUNT_ONLY").is_ok() {
            return Ok(());
        }
    }

    // 40 connections per database and side: 240 in all, within the server's limit; at
    // concurrency 128 callers queue for connections, as they would in production.
    if std::env::var("BENCH_PROCESSES_ONLY").is_err() {
        matrix(&admin, &urls, scale, quick, next_id.clone()).await?;
    }
    processes(&urls, scale).await
}

/// One process of the multi-process mode: `BENCH_CHILD = "<urls>;<pool>;<concurrency>;<sagas>;<first id>"`.
/// Runs its sagas, then prints `DONE`.
async fn child(spec: &str) -> anyhow::Result<()> {
    let parts: Vec<&str> = spec.split(';').collect();
    let urls: Vec<String> = parts[0].split(',').map(String::from).collect();
    let (pool, concurrency, sagas, first): (u32, usize, usize, i64) =
        (parts[1].parse()?, parts[2].parse()?, parts[3].parse()?, parts[4].parse()?);
    let Setup { base, rt } = connect(&urls, pool).await?;
    let next_id = Arc::new(std::sync::atomic::AtomicI64::new(first));
    // One kind of load alone, to profile it (`perf record` beside this process):
    // `BENCH_CHILD_LOAD=baseline|lean|durable`, sagas by default.
    let which = match std::env::var("BENCH_CHILD_LOAD").as_deref() {
        Ok("baseline") => Which::Baseline,
        Ok("lean") => Which::BaselineLean,
        Ok("durable") => Which::HandDurable,
        _ => Which::Saga,
    };
    // Warm the pools first, so that the time measured is the load's, not the start's.
    measure(which, Size::One, base.clone(), rt.clone(), concurrency, concurrency, next_id.clone()).await?;
    let started = Instant::now();
    measure(which, Size::One, base, rt.clone(), concurrency, sagas, next_id).await?;
    let took = started.elapsed();
    rt.shutdown().await?;
    println!("DONE {}", took.as_secs_f64());
    Ok(())
}

/// Item 4: the same load (total concurrency 32, 6,000 sagas) from 1, 2 and 4 runtime
/// processes on one PostgreSQL, each with its own pools (40 connections per database
/// in all, split between them); total throughput, and every saga done exactly once.
async fn processes(urls: &[String], scale: usize) -> anyhow::Result<()> {
    const CONCURRENCY: usize = 32;
    let total = 6000 * scale;
    let primary = PgPool::connect(&urls[0]).await?;
    let payments = PgPool::connect(&urls[2]).await?;
    println!();
    println!("### Several processes, one database server (total concurrency {CONCURRENCY}, fsync off)");
    println!();
    println!("| processes | round | sagas/s (all processes) | sagas completed | orders | duplicate payments |");
    println!("|---|---|---|---|---|---|");
    let exe = std::env::current_exe()?;
    let mut first_id: i64 = 10_000_000_000;
    for round in 1..=2 {
        for n in [1usize, 2, 4] {
            // Each process runs `per` sagas, a multiple of its concurrency.
            let c = CONCURRENCY / n;
            let per = total / n / c * c;
            let lo = first_id;
            let started = Instant::now();
            let children: Vec<_> = (0..n)
                .map(|i| {
                    let spec = format!(
                        "{};{};{};{per};{}",
                        urls.join(","),
                        (40 / n).max(2),
                        c,
                        first_id + (i as i64) * 1_000_000_000
                    );
                    std::process::Command::new(&exe)
                        .env("BENCH_CHILD", spec)
                        .stdout(std::process::Stdio::piped())
                        .spawn()
                })
                .collect::<Result<_, _>>()?;
            // The slowest process's load time (each warms its pools before it starts
            // the clock; the processes start together).
            let mut slowest = 0f64;
            for c in children {
                let out = c.wait_with_output()?;
                let stdout = String::from_utf8_lossy(&out.stdout);
                let took =
                    stdout.lines().find_map(|l| l.strip_prefix("DONE ")).and_then(|t| t.trim().parse::<f64>().ok());
                anyhow::ensure!(out.status.success() && took.is_some(), "a load process failed: {stdout}");
                slowest = slowest.max(took.unwrap_or_default());
            }
            let _ = started;
            first_id += n as i64 * 1_000_000_000;
            let hi = first_id;
            let (completed,): (i64,) = sqlx::query_as(
                "SELECT COUNT(*) FROM fraiseql_saga WHERE name = 'bench_order' AND status = 'completed' AND input::jsonb->>'order_id' ~ '^[0-9]+$'
                   AND (input::jsonb->>'order_id')::bigint >= $1 AND (input::jsonb->>'order_id')::bigint < $2",
            )
            .bind(lo)
            .bind(hi)
            .fetch_one(&primary)
            .await?;
            let (orders,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM orders WHERE id >= $1 AND id < $2")
                .bind(lo)
                .bind(hi)
                .fetch_one(&primary)
                .await?;
            let (dup,): (i64,) = sqlx::query_as(
                "SELECT COUNT(*) FROM (SELECT order_id FROM payments WHERE order_id >= $1 AND order_id < $2 GROUP BY order_id HAVING COUNT(*) > 1) d",
            )
            .bind(lo)
            .bind(hi)
            .fetch_one(&payments)
            .await?;
            // Each process also ran `c` sagas to warm up.
            let done = ((per + c) * n) as i64;
            println!(
                "| {n} | {round} | {:.0} | {completed} of {done} | {orders} | {dup} |",
                (per * n) as f64 / slowest
            );
            anyhow::ensure!(completed == done && orders == done && dup == 0, "a saga was lost or done twice");
        }
    }
    Ok(())
}

/// Item 3's matrix (see the module's opening comment).
async fn matrix(
    admin: &PgPool,
    urls: &[String],
    scale: usize,
    quick: bool,
    next_id: Arc<std::sync::atomic::AtomicI64>,
) -> anyhow::Result<()> {
    let Setup { base, rt } = connect(urls, 40).await?;
    for w in [Which::Baseline, Which::BaselineLean, Which::HandDurable, Which::Saga] {
        measure(w, Size::One, base.clone(), rt.clone(), 8, 800, next_id.clone()).await?;
    }
    measure(Which::Saga, Size::Five, base.clone(), rt.clone(), 8, 400, next_id.clone()).await?;
    let mut summary = Vec::new();
    let result = async {
        for fsync in if quick { vec![false] } else { vec![false, true] } {
            durability(admin, fsync).await?;
            for size in if quick { vec![Size::One] } else { vec![Size::One, Size::Five] } {
                println!();
                println!("### fsync and synchronous_commit {}, steps of {} statement(s)", if fsync { "on" } else { "off" }, if size == Size::One { 1 } else { 5 });
                println!();
                println!("| concurrency | round | baseline/s | saga/s | saga ÷ baseline | baseline p50 / p99 ms | saga p50 / p99 ms | p50 ÷ | p99 ÷ | hand-durable ÷ baseline | saga ÷ lean baseline (throughput, p50) | CPU µs per saga, client + server: baseline | saga |");
                println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
                for concurrency in [1usize, 32, 128] {
                    let total = scale * if concurrency == 1 { if fsync { 600 } else { 1500 } } else { 6000 };
                    let mut ratios: Vec<(f64, f64, f64, f64, f64)> = Vec::new();
                    for round in 1..=3 {
                        // The order alternates, so neither side always runs on a warmer machine.
                        let (b, s) = if round % 2 == 1 {
                            let b = measure(Which::Baseline, size, base.clone(), rt.clone(), concurrency, total, next_id.clone()).await?;
                            (b, measure(Which::Saga, size, base.clone(), rt.clone(), concurrency, total, next_id.clone()).await?)
                        } else {
                            let s = measure(Which::Saga, size, base.clone(), rt.clone(), concurrency, total, next_id.clone()).await?;
                            (measure(Which::Baseline, size, base.clone(), rt.clone(), concurrency, total, next_id.clone()).await?, s)
                        };
                        let h = if size == Size::One {
                            let h = measure(Which::HandDurable, size, base.clone(), rt.clone(), concurrency, total, next_id.clone()).await?;
                            format!("{:.2}× ({:.0} + {:.0} µs)", h.per_sec / b.per_sec, h.cpu_client_us, h.cpu_server_us)
                        } else {
                            "".into()
                        };
                        let l = measure(Which::BaselineLean, size, base.clone(), rt.clone(), concurrency, total, next_id.clone()).await?;
                        let lean = format!("{:.2}×, {:.2}×", s.per_sec / l.per_sec, s.p50.as_secs_f64() / l.p50.as_secs_f64());
                        // Step overhead: the saga's p50 beyond the same transactions', per step.
                        let overhead_us = (s.p50.as_secs_f64() - b.p50.as_secs_f64()) * 1e6 / 3.0;
                        ratios.push((
                            s.per_sec / b.per_sec,
                            s.p50.as_secs_f64() / b.p50.as_secs_f64(),
                            s.p99.as_secs_f64() / b.p99.as_secs_f64(),
                            overhead_us,
                            s.per_sec / l.per_sec,
                        ));
                        println!(
                            "| {concurrency} | {round} | {:.0} | {:.0} | {:.2}× | {} / {} | {} / {} | {:.2}× | {:.2}× | {h} | {lean} | {:.0} + {:.0} | {:.0} + {:.0} |",
                            b.per_sec,
                            s.per_sec,
                            s.per_sec / b.per_sec,
                            ms(b.p50),
                            ms(b.p99),
                            ms(s.p50),
                            ms(s.p99),
                            s.p50.as_secs_f64() / b.p50.as_secs_f64(),
                            s.p99.as_secs_f64() / b.p99.as_secs_f64(),
                            b.cpu_client_us,
                            b.cpu_server_us,
                            s.cpu_client_us,
                            s.cpu_server_us,
                        );
                    }
                    summary.push(format!(
                        "| {} | {} | {concurrency} | {:.2}× | {:.2}× | {:.2}× | {:.0} µs | {:.2}× |",
                        if fsync { "on" } else { "off" },
                        if size == Size::One { 1 } else { 5 },
                        median(ratios.iter().map(|r| r.0).collect()),
                        median(ratios.iter().map(|r| r.1).collect()),
                        median(ratios.iter().map(|r| r.2).collect()),
                        median(ratios.iter().map(|r| r.3).collect()),
                        median(ratios.iter().map(|r| r.4).collect()),
                    ));
                }
            }
        }
        anyhow::Ok(())
    }
    .await;
    // Put the throwaway server back as the test suite expects it, whatever happened.
    durability(admin, false).await?;
    result?;
    println!();
    println!("### Medians of 3 interleaved rounds");
    println!();
    println!("| fsync | statements per step | concurrency | saga ÷ baseline (throughput) | p50 ÷ | p99 ÷ | step overhead (p50, per step) | saga ÷ lean baseline (throughput) |");
    println!("|---|---|---|---|---|---|---|---|");
    for line in summary {
        println!("{line}");
    }
    rt.shutdown().await?;
    Ok(())
}
