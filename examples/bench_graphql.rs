//! Benchmark: queries and the GraphQL endpoint against hand-written sqlx / axum code
//! doing the same work, in the same run, on the same PostgreSQL, views and data.
//! Results go in BENCHMARKS.md.
//!
//! (a) `#[query]` call latency against the same statement through plain sqlx, decoded
//!     into the same struct;
//! (b) the GraphQL endpoint under load (50 keep-alive connections) against an axum +
//!     sqlx handler that answers the same request with the same JSON;
//! (c) with `BENCH_POSTGRAPHILE_URL` set (scripts/bench graphql starts PostGraphile on the
//!     same database), the same queries against PostGraphile.
//!
//! `scripts/bench graphql`, or `FRAISEQL_TEST_PG_URL=postgres://… cargo run --release --example bench_graphql`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use fraiseql::prelude::*;
use fraiseql::{Config, DatabaseConfig};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

#[derive(Debug, Clone, Serialize, Deserialize, Object)]
pub struct Customer {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, Object)]
pub struct Line {
    pub sku: String,
    pub quantity: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, Object)]
pub struct Order {
    pub id: String,
    pub status: String,
    pub total_cents: i64,
    pub customer: Customer,
    pub lines: Vec<Line>,
}

#[query(sql_source = "v_order")]
pub async fn order(id: String) -> fraiseql::Result<Option<Order>>;

#[query(sql_source = "v_order", order_by = "created_at desc")]
pub async fn orders(customer_id: Option<String>, limit: Option<i64>) -> fraiseql::Result<Vec<Order>>;

/// The same orders from a table that stores each order's JSON (a projection kept by
/// the write side — FraiseQL's `tv_` convention), instead of a view computing it.
#[query(sql_source = "tv_order", order_by = "created_at desc", name = "ordersStored")]
pub async fn orders_stored(customer_id: Option<String>, limit: Option<i64>) -> fraiseql::Result<Vec<Order>>;

const ORDERS: usize = 10_000;
const CONNECTIONS: usize = 50;

const SCHEMA: &str = "
CREATE TABLE tb_customer (id TEXT PRIMARY KEY, name TEXT NOT NULL);
CREATE TABLE tb_order (id TEXT PRIMARY KEY, customer_id TEXT NOT NULL REFERENCES tb_customer (id), status TEXT NOT NULL, total_cents BIGINT NOT NULL, created_at TIMESTAMPTZ NOT NULL);
CREATE INDEX tb_order_created ON tb_order (created_at DESC);
CREATE INDEX tb_order_customer ON tb_order (customer_id, created_at DESC);
CREATE TABLE tb_line (order_id TEXT NOT NULL REFERENCES tb_order (id), n INT NOT NULL, sku TEXT NOT NULL, quantity BIGINT NOT NULL, PRIMARY KEY (order_id, n));
CREATE VIEW v_order AS SELECT o.id, o.customer_id, o.status, o.created_at,
    jsonb_build_object('id', o.id, 'status', o.status, 'total_cents', o.total_cents,
        'customer', (SELECT jsonb_build_object('id', c.id, 'name', c.name) FROM tb_customer c WHERE c.id = o.customer_id),
        'lines', COALESCE((SELECT jsonb_agg(jsonb_build_object('sku', l.sku, 'quantity', l.quantity) ORDER BY l.n) FROM tb_line l WHERE l.order_id = o.id), '[]'::jsonb)) AS data
FROM tb_order o;
INSERT INTO tb_customer SELECT 'c' || i, 'Customer ' || i FROM generate_series(1, 100) i;
INSERT INTO tb_order SELECT 'o' || i, 'c' || (1 + i % 100), (ARRAY['new', 'paid', 'shipped'])[1 + i % 3], 100 * i, TIMESTAMPTZ '2026-01-01' + i * INTERVAL '1 minute'
    FROM generate_series(1, 10000) i;
INSERT INTO tb_line SELECT 'o' || i, n, 'SKU-' || ((i * n) % 50), n FROM generate_series(1, 10000) i, generate_series(1, 3) n;
CREATE TABLE tv_order AS SELECT * FROM v_order;
ALTER TABLE tv_order ADD PRIMARY KEY (id);
CREATE INDEX tv_order_created ON tv_order (created_at DESC);
CREATE INDEX tv_order_customer ON tv_order (customer_id, created_at DESC);
ANALYZE;
";

fn percentile(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p) as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// (a): `calls` sequential calls of `f`, latencies.
async fn timed<F, Fut>(calls: usize, mut f: F) -> anyhow::Result<Vec<Duration>>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let mut lat = Vec::with_capacity(calls);
    for i in 0..calls {
        let t = Instant::now();
        f(i).await?;
        lat.push(t.elapsed());
    }
    Ok(lat)
}

/// Read one HTTP/1.1 response: whether it is a 200, and its body into `buf`.
async fn read_response(
    r: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
    line: &mut String,
    buf: &mut Vec<u8>,
) -> anyhow::Result<bool> {
    line.clear();
    r.read_line(line).await?;
    let ok = line.starts_with("HTTP/1.1 200");
    let mut len = 0usize;
    loop {
        line.clear();
        r.read_line(line).await?;
        if line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse()?;
            }
        }
    }
    buf.resize(len, 0);
    r.read_exact(buf).await?;
    Ok(ok)
}

/// A minimal HTTP/1.1 keep-alive client: POST `body` to `path` over and over for `dur`.
async fn connection(
    addr: String,
    host: String,
    path: String,
    body: String,
    until: Instant,
) -> anyhow::Result<(Vec<Duration>, usize)> {
    let stream = tokio::net::TcpStream::connect(&addr).await?;
    stream.set_nodelay(true)?;
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    let req = format!("POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nAccept: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len());
    let (mut lat, mut bad) = (Vec::new(), 0);
    let mut line = String::new();
    let mut buf = Vec::new();
    while Instant::now() < until {
        let t = Instant::now();
        w.write_all(req.as_bytes()).await?;
        let ok = read_response(&mut r, &mut line, &mut buf).await?;
        lat.push(t.elapsed());
        if !ok || buf.starts_with(b"{\"errors\"") || buf.windows(9).any(|w| w == b"\"errors\":") {
            bad += 1;
        }
    }
    Ok((lat, bad))
}

struct Load {
    rps: f64,
    p50: Duration,
    p99: Duration,
    bad: usize,
}

async fn load(url: &str, body: &str, dur: Duration) -> anyhow::Result<Load> {
    let rest = url.strip_prefix("http://").ok_or_else(|| anyhow::anyhow!("http:// URLs only"))?;
    let (addr, path) =
        rest.split_once('/').map(|(a, p)| (a.to_string(), format!("/{p}"))).unwrap_or((rest.to_string(), "/".into()));
    let until = Instant::now() + dur;
    let t = Instant::now();
    let tasks: Vec<_> = (0..CONNECTIONS)
        .map(|_| tokio::spawn(connection(addr.clone(), addr.clone(), path.clone(), body.to_string(), until)))
        .collect();
    let (mut lat, mut bad) = (Vec::new(), 0);
    for task in tasks {
        let (l, b) = task.await??;
        lat.extend(l);
        bad += b;
    }
    let rps = lat.len() as f64 / t.elapsed().as_secs_f64();
    Ok(Load { rps, p50: percentile(&mut lat, 0.5), p99: percentile(&mut lat, 0.99), bad })
}

/// The hand-written endpoint: the same statement FraiseQL's field would cost, its rows
/// spliced into the response as they come.
#[derive(Deserialize)]
struct Req {
    query: String,
}

async fn baseline(
    axum::extract::State(pool): axum::extract::State<Arc<sqlx::PgPool>>,
    axum::Json(req): axum::Json<Req>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let nested = req.query.contains("customer");
    let limit = if req.query.contains("limit: 1000") { 1000 } else { 20 };
    // The statement FraiseQL builds for the same selection (one evaluation of `data`
    // per row, only the selected keys).
    let sql = format!(
        "{} LIMIT {limit}",
        if nested {
            "SELECT jsonb_build_object('id', d.v->'id', 'status', d.v->'status', 'customer', jsonb_build_object('name', d.v->'customer'->'name'),
            'lines', (SELECT jsonb_agg(jsonb_build_object('sku', x->'sku', 'quantity', x->'quantity') ORDER BY o) FROM jsonb_array_elements(d.v->'lines') WITH ORDINALITY t(x, o)))::text
         FROM v_order r CROSS JOIN LATERAL (SELECT r.data AS v OFFSET 0) d ORDER BY r.created_at DESC"
        } else {
            "SELECT jsonb_build_object('id', d.v->'id', 'status', d.v->'status', 'totalCents', d.v->'total_cents')::text
         FROM v_order r CROSS JOIN LATERAL (SELECT r.data AS v OFFSET 0) d ORDER BY r.created_at DESC"
        }
    );
    match sqlx::query_scalar::<_, String>(&sql).fetch_all(&*pool).await {
        Ok(rows) => (
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            format!("{{\"data\":{{\"orders\":[{}]}}}}", rows.join(",")),
        )
            .into_response(),
        Err(e) => (axum::http::StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn serve(app: axum::Router) -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(format!("http://{addr}/graphql"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .init();
    let pg_admin = std::env::var("FRAISEQL_TEST_PG_URL")
        .map_err(|_| anyhow::anyhow!("set FRAISEQL_TEST_PG_URL (scripts/bench does)"))?;
    let base = pg_admin.rsplit_once('/').unwrap().0.to_string();
    let db_url = std::env::var("BENCH_GRAPHQL_DB_URL").unwrap_or_else(|_| format!("{base}/bench_graphql"));
    if std::env::var("BENCH_GRAPHQL_DB_URL").is_err() {
        let admin = sqlx::PgPool::connect(&pg_admin).await?;
        sqlx::query("DROP DATABASE IF EXISTS bench_graphql WITH (FORCE)").execute(&admin).await?;
        sqlx::query("CREATE DATABASE bench_graphql").execute(&admin).await?;
        let pool = sqlx::PgPool::connect(&db_url).await?;
        sqlx::raw_sql(SCHEMA).execute(&pool).await?;
    }
    if std::env::args().any(|a| a == "--prepare-only") {
        println!("prepared {db_url}");
        return Ok(());
    }
    let mut config = Config::default();
    config
        .databases
        .insert("primary".into(), DatabaseConfig { url: db_url.clone(), max_connections: 16, ..Default::default() });
    let rt = Runtime::builder().config(config).start().await?;
    rt.check_queries().await?;
    let profiling = std::env::var("BENCH_PROFILE").is_ok();
    let pool = Arc::new(sqlx::postgres::PgPoolOptions::new().max_connections(16).connect(&db_url).await?);

    println!("| benchmark | hand-written | FraiseQL | ratio |");
    println!("|---|---|---|---|");

    // (a) Sequential calls, three interleaved rounds; the same statement on both sides.
    let calls = 3000;
    let (mut raw_one, mut ours_one, mut raw_many, mut ours_many) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _round in 0..(if profiling { 0 } else { 3 }) {
        raw_one.extend(
            timed(calls, |i| {
                let pool = pool.clone();
                async move {
                    let rows: Vec<String> =
                        sqlx::query_scalar("SELECT \"data\"::text FROM \"v_order\" WHERE \"id\" = $1::text LIMIT 2")
                            .bind(format!("o{}", 1 + i % ORDERS))
                            .fetch_all(&*pool)
                            .await?;
                    let o: Option<Order> = rows.first().map(|r| serde_json::from_str(r)).transpose()?;
                    anyhow::ensure!(o.is_some());
                    Ok(())
                }
            })
            .await?,
        );
        ours_one.extend(
            rt.scope(timed(calls, |i| async move {
                anyhow::ensure!(order(format!("o{}", 1 + i % ORDERS)).await?.is_some());
                Ok(())
            }))
            .await?,
        );
        raw_many.extend(
            timed(calls / 3, |i| {
                let pool = pool.clone();
                async move {
                    let rows: Vec<String> = sqlx::query_scalar(
                        "SELECT \"data\"::text FROM \"v_order\" WHERE \"customer_id\" = $1::text ORDER BY \"created_at\" DESC LIMIT 20",
                    )
                    .bind(format!("c{}", 1 + i % 100))
                    .fetch_all(&*pool)
                    .await?;
                    let v: Vec<Order> = rows.iter().map(|r| serde_json::from_str(r)).collect::<Result<_, _>>()?;
                    anyhow::ensure!(v.len() == 20);
                    Ok(())
                }
            })
            .await?,
        );
        ours_many.extend(
            rt.scope(timed(calls / 3, |i| async move {
                anyhow::ensure!(orders(Some(format!("c{}", 1 + i % 100)), Some(20)).await?.len() == 20);
                Ok(())
            }))
            .await?,
        );
    }
    for (what, raw, ours) in [
        ("`order(id)`, one row", &mut raw_one, &mut ours_one),
        ("`orders(customer_id, limit 20)`", &mut raw_many, &mut ours_many),
    ] {
        if profiling {
            break;
        }
        let (r50, r99, o50, o99) =
            (percentile(raw, 0.5), percentile(raw, 0.99), percentile(ours, 0.5), percentile(ours, 0.99));
        println!(
            "| (a) {what}: p50 / p99 ms | {:.3} / {:.3} (sqlx, same statement) | {:.3} / {:.3} | p50 {:.2}×, p99 {:.2}× |",
            ms(r50),
            ms(r99),
            ms(o50),
            ms(o99),
            o50.as_secs_f64() / r50.as_secs_f64(),
            o99.as_secs_f64() / r99.as_secs_f64()
        );
    }

    // (b) The endpoint under load, against the hand-written one; both in this process.
    let ours_url = serve(rt.graphql_router()?).await?;
    let base_url =
        serve(axum::Router::new().route("/graphql", axum::routing::post(baseline)).with_state(pool.clone())).await?;
    let dur = Duration::from_secs(std::env::var("BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(5));
    let flat = serde_json::json!({ "query": "{ orders(limit: 20) { id status totalCents } }" }).to_string();
    let nested =
        serde_json::json!({ "query": "{ orders(limit: 20) { id status customer { name } lines { sku quantity } } }" })
            .to_string();
    if let Ok(which) = std::env::var("BENCH_PROFILE") {
        // Only FraiseQL's endpoint under load, for a profiler: `flat` or `nested`.
        let l = load(&ours_url, if which == "flat" { &flat } else { &nested }, dur).await?;
        println!("profile run ({which}): {:.0} req/s, p50 {:.1} ms, {} bad", l.rps, ms(l.p50), l.bad);
        return Ok(());
    }
    let postgraphile = std::env::var("BENCH_POSTGRAPHILE_URL").ok();
    let pg_flat = serde_json::json!({ "query": "{ allTbOrders(first: 20, orderBy: CREATED_AT_DESC) { nodes { id status totalCents } } }" }).to_string();
    let pg_nested = serde_json::json!({ "query": "{ allTbOrders(first: 20, orderBy: CREATED_AT_DESC) { nodes { id status tbCustomerByCustomerId { name } tbLinesByOrderId(orderBy: N_ASC) { nodes { sku quantity } } } } }" }).to_string();
    let best = |v: &Vec<Load>| {
        v.iter()
            .max_by(|a, b| a.rps.total_cmp(&b.rps))
            .map(|l| (l.rps, l.p50, l.p99, v.iter().map(|l| l.bad).sum::<usize>()))
            .unwrap()
    };
    for (what, body, pg_body) in [
        ("flat list, 20 rows × 3 fields", &flat, &pg_flat),
        ("nested: 20 orders with customer and lines", &nested, &pg_nested),
    ] {
        let stored_body = body.replace("{ orders(", "{ ordersStored(");
        // Warm up, then measure each twice, interleaved.
        for (url, b) in [(&ours_url, body), (&base_url, body), (&ours_url, &stored_body)] {
            load(url, b, Duration::from_millis(500)).await?;
        }
        let (mut ours, mut base, mut stored, mut pgl) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for _ in 0..2 {
            base.push(load(&base_url, body, dur).await?);
            ours.push(load(&ours_url, body, dur).await?);
            stored.push(load(&ours_url, &stored_body, dur).await?);
            if let Some(pg_url) = &postgraphile {
                pgl.push(load(pg_url, pg_body, dur).await?);
            }
        }
        let (brps, bp50, bp99, bbad) = best(&base);
        let (orps, op50, op99, obad) = best(&ours);
        let (srps, sp50, sp99, sbad) = best(&stored);
        anyhow::ensure!(
            bbad == 0 && obad == 0 && sbad == 0,
            "failed responses: hand-written {bbad}, FraiseQL {obad}, stored {sbad}"
        );
        println!(
            "| (b) {what}, {CONNECTIONS} connections: req/s, p50 / p99 ms | {brps:.0}, {:.1} / {:.1} (axum + sqlx, same statement on `v_order`) | {orps:.0}, {:.1} / {:.1} | {:.2}× req/s |",
            ms(bp50),
            ms(bp99),
            ms(op50),
            ms(op99),
            orps / brps
        );
        if !pgl.is_empty() {
            let (prps, pp50, pp99, pbad) = best(&pgl);
            anyhow::ensure!(pbad == 0, "PostGraphile failed {pbad} responses");
            println!(
                "| (c) {what}, {CONNECTIONS} connections: req/s, p50 / p99 ms | {prps:.0}, {:.1} / {:.1} (PostGraphile, tables) | {orps:.0}, {:.1} / {:.1} (`v_order`); {srps:.0}, {:.1} / {:.1} (`tv_order`) | {:.2}× / {:.2}× req/s |",
                ms(pp50),
                ms(pp99),
                ms(op50),
                ms(op99),
                ms(sp50),
                ms(sp99),
                orps / prps,
                srps / prps
            );
        } else {
            println!(
                "| FraiseQL on `tv_order` (stored JSON), {what} | | {srps:.0}, {:.1} / {:.1} | |",
                ms(sp50),
                ms(sp99)
            );
        }
    }
    sequential_costs(&ours_url, &base_url, &pool).await?;
    rt.shutdown().await?;
    Ok(())
}

/// One keep-alive connection sending each body in turn: each request's latency.
async fn one_by_one(url: &str, bodies: impl IntoIterator<Item = String>) -> anyhow::Result<Vec<Duration>> {
    let rest = url.strip_prefix("http://").ok_or_else(|| anyhow::anyhow!("http:// URLs only"))?;
    let (addr, path) = rest.split_once('/').map(|(a, p)| (a.to_string(), format!("/{p}"))).unwrap();
    let stream = tokio::net::TcpStream::connect(&addr).await?;
    stream.set_nodelay(true)?;
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    let (mut lat, mut line, mut buf) = (Vec::new(), String::new(), Vec::new());
    for body in bodies {
        let req = format!("POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len());
        let t = Instant::now();
        w.write_all(req.as_bytes()).await?;
        let ok = read_response(&mut r, &mut line, &mut buf).await?;
        lat.push(t.elapsed());
        anyhow::ensure!(ok, "not 200: {}", String::from_utf8_lossy(&buf));
        anyhow::ensure!(!buf.windows(9).any(|w| w == b"\"errors\":"), "{}", String::from_utf8_lossy(&buf));
    }
    Ok(lat)
}

/// (d) what a plan saves, (e) persisted queries, (f) a 1,000-row response beyond its SQL:
/// sequential requests on one connection, p50 of each.
async fn sequential_costs(ours: &str, base: &str, pool: &sqlx::PgPool) -> anyhow::Result<()> {
    use sha2::{Digest, Sha256};
    const N: usize = 2000;
    let fields = "id status totalCents";
    let doc = |alias: &str| format!("{{ {alias}orders(limit: 20) {{ {fields} }} }}");
    let body = |q: &str| serde_json::json!({ "query": q }).to_string();
    // (d) The same document (a plan hit) against a new document each time (parsed,
    // validated and executed by the executor, then compiled).
    let mut hit = Vec::new();
    let mut miss = Vec::new();
    for round in 0..3 {
        hit.extend(one_by_one(ours, (0..N).map(|_| body(&doc("")))).await?);
        miss.extend(one_by_one(ours, (0..N).map(|i| body(&doc(&format!("o{round}_{i}: "))))).await?);
    }
    let (h, m) = (percentile(&mut hit, 0.5), percentile(&mut miss, 0.5));
    println!(
        "| (d) one request, flat list: plan hit vs miss (a new document: executor, then compiled), p50 ms | {:.3} (miss) | {:.3} (hit) | hit saves {:.3} ms |",
        ms(m),
        ms(h),
        ms(m) - ms(h)
    );
    // (e) Automatic persisted queries: the hash alone against the whole document.
    let q = doc("");
    let hash = format!("{:x}", Sha256::digest(q.as_bytes()));
    let apq =
        serde_json::json!({ "extensions": { "persistedQuery": { "version": 1, "sha256Hash": hash } } }).to_string();
    let register =
        serde_json::json!({ "query": q, "extensions": { "persistedQuery": { "version": 1, "sha256Hash": hash } } })
            .to_string();
    one_by_one(ours, [register]).await?;
    let (mut full, mut hashed) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        full.extend(one_by_one(ours, (0..N).map(|_| body(&q))).await?);
        hashed.extend(one_by_one(ours, (0..N).map(|_| apq.clone())).await?);
    }
    let (f, a) = (percentile(&mut full, 0.5), percentile(&mut hashed, 0.5));
    println!(
        "| (e) one request, flat list: document vs persisted hash, p50 ms | {:.3} (document) | {:.3} (hash) | {:.2}× |",
        ms(f),
        ms(a),
        a.as_secs_f64() / f.as_secs_f64()
    );
    // (f) 1,000 orders with customer and lines (≈ 120 KB): the endpoint against its
    // statement alone, and against the hand-written endpoint.
    let big = body("{ orders(limit: 1000) { id status customer { name } lines { sku quantity } } }");
    let sql = "SELECT json_build_object('id', (d.v->'id'), 'status', (d.v->'status'), 'customer', CASE WHEN jsonb_typeof((d.v->'customer')) = 'object' THEN json_build_object('name', ((d.v->'customer')->'name')) END,
            'lines', CASE WHEN jsonb_typeof((d.v->'lines')) = 'array' THEN COALESCE((SELECT json_agg(CASE WHEN jsonb_typeof(x) = 'object' THEN json_build_object('sku', (x->'sku'), 'quantity', (x->'quantity')) END ORDER BY o) FROM jsonb_array_elements((d.v->'lines')) WITH ORDINALITY t(x, o)), '[]'::json) END)::text
         FROM v_order r CROSS JOIN LATERAL (SELECT r.data AS v OFFSET 0) d ORDER BY r.created_at DESC LIMIT 1000";
    let (mut endpoint, mut statement, mut hand) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..3 {
        endpoint.extend(one_by_one(ours, (0..100).map(|_| big.clone())).await?);
        for _ in 0..100 {
            let t = Instant::now();
            let rows: Vec<String> = sqlx::query_scalar(sql).fetch_all(pool).await?;
            anyhow::ensure!(rows.len() == 1000);
            statement.push(t.elapsed());
        }
        hand.extend(one_by_one(base, (0..100).map(|_| big.clone())).await?);
    }
    let (e, st, hd) = (percentile(&mut endpoint, 0.5), percentile(&mut statement, 0.5), percentile(&mut hand, 0.5));
    println!(
        "| (f) 1,000 orders with customer and lines, one request, p50 ms | {:.3} (its statement alone, sqlx); {:.3} (axum + sqlx, 1,000 rows) | {:.3} | {:.3} ms beyond the SQL |",
        ms(st),
        ms(hd),
        ms(e),
        ms(e) - ms(st)
    );
    Ok(())
}
