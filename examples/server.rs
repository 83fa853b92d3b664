//! The orders schema over GraphQL: view-backed queries as root fields, a saga as a
//! mutation, served with axum.
//!
//! `cargo run --example server` (embedded SQLite), then:
//!
//! ```sh
//! curl -s localhost:8080/graphql -H 'content-type: application/json' \
//!   -d '{"query":"{ orders(where: {status: {eq: \"paid\"}}, orderBy: [TOTAL_CENTS_DESC]) { id totalCents customer { name } } }"}'
//! ```
//!
//! With `CONSOLE_PASSWORD` set, the saga console is served too, at `/console`, behind
//! HTTP Basic authentication (user `operator`): the application's own auth in front of it.
//!
//! `--listen ADDR` picks the address (`127.0.0.1:0`: any free port, printed);
//! `--config fraiseql.toml` or `FRAISEQL_DATABASES__PRIMARY__URL=postgres://…` runs it on
//! PostgreSQL. `cargo run --example server -- --sdl` prints the schema and exits.

mod support;

use fraiseql::prelude::*;
use fraiseql::Backend;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, Object)]
pub struct Customer {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, Object)]
pub struct OrderLine {
    pub sku: String,
    pub quantity: i64,
}

/// An order with its customer and lines, as `v_order` serves it.
#[derive(Debug, Clone, Serialize, Deserialize, Object)]
pub struct Order {
    pub id: String,
    pub status: String,
    pub total_cents: i64,
    pub customer: Customer,
    pub lines: Vec<OrderLine>,
}

/// One order by id.
#[query(sql_source = "v_order")]
pub async fn order(id: Id) -> fraiseql::Result<Option<Order>>;

/// Orders, newest first unless `orderBy` says otherwise.
#[query(sql_source = "v_order", order_by = "created_at desc", limit = 100)]
pub async fn orders(customer_id: Option<String>) -> fraiseql::Result<Vec<Order>>;

#[derive(Debug, Clone, Default, Serialize, Deserialize, Object)]
pub struct PlacedOrder {
    pub order_id: String,
}

/// Place an order: insert it, then check the customer's credit; over the limit, the
/// insert is compensated and the mutation answers with a SAGA_ABORTED error.
#[saga(steps = ["insert_order", "check_credit"], result = "insert_order")]
pub async fn place_order(
    customer_id: String,
    sku: String,
    quantity: i64,
    total_cents: i64,
) -> fraiseql::Result<PlacedOrder>;

#[saga_step("insert_order", database = "primary")]
async fn insert_order(
    ctx: &mut SagaContext,
    customer_id: String,
    sku: String,
    quantity: i64,
    total_cents: i64,
) -> fraiseql::Result<PlacedOrder> {
    let id = format!("ord-{}", ctx.saga_id().simple());
    ctx.execute(
        "INSERT INTO tb_order (id, customer_id, status, total_cents, created_at) VALUES ($1, $2, 'new', $3, $4)",
        (&id, &customer_id, total_cents, now()),
    )
    .await?;
    ctx.execute("INSERT INTO tb_order_line (order_id, n, sku, quantity) VALUES ($1, 1, $2, $3)", (&id, &sku, quantity))
        .await?;
    Ok(PlacedOrder { order_id: id })
}

#[compensate("insert_order")]
async fn delete_order(ctx: &mut SagaContext<()>) -> fraiseql::Result<()> {
    let id = format!("ord-{}", ctx.saga_id().simple());
    ctx.execute("DELETE FROM tb_order_line WHERE order_id = $1", (&id,)).await?;
    ctx.execute("DELETE FROM tb_order WHERE id = $1", (&id,)).await?;
    Ok(())
}

#[saga_step("check_credit", database = "primary")]
async fn check_credit(ctx: &mut SagaContext, customer_id: String) -> fraiseql::Result<()> {
    let (open, limit): (i64, i64) = ctx
        .fetch_one(
            "SELECT CAST(COALESCE(SUM(o.total_cents), 0) AS BIGINT), MAX(c.credit_cents) FROM tb_customer c LEFT JOIN tb_order o ON o.customer_id = c.id AND o.status <> 'cancelled' WHERE c.id = $1",
            (&customer_id,),
        )
        .await?;
    if open > limit {
        return Err(Error::msg(format!("customer {customer_id} is over their credit limit ({open} > {limit} cents)")));
    }
    Ok(())
}

/// HTTP Basic authentication for the console: user `operator`, the password given.
async fn operators_only(
    axum::extract::State(password): axum::extract::State<String>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    use base64::Engine;
    use sha2::{Digest, Sha256};
    let expected = format!("operator:{password}");
    let given = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .unwrap_or_default();
    // Digests compared, so the time taken says nothing about how much of the password matched.
    if Sha256::digest(&given) == Sha256::digest(expected.as_bytes()) {
        return next.run(request).await;
    }
    (
        axum::http::StatusCode::UNAUTHORIZED,
        [(axum::http::header::WWW_AUTHENTICATE, "Basic realm=\"FraiseQL console\"")],
        "the saga console is for operators: sign in",
    )
        .into_response()
}

fn now() -> String {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| format!("{:020}", d.as_micros()))
        .unwrap_or_default()
}

async fn prepare(rt: &Runtime) -> anyhow::Result<()> {
    let db = rt.database("primary")?;
    let (obj, lines) = match db.backend() {
        Backend::Postgres => (
            "jsonb_build_object",
            "COALESCE((SELECT jsonb_agg(jsonb_build_object('sku', l.sku, 'quantity', l.quantity) ORDER BY l.n) FROM tb_order_line l WHERE l.order_id = o.id), '[]'::jsonb)",
        ),
        Backend::Sqlite => (
            "json_object",
            "(SELECT json_group_array(json(json_object('sku', l.sku, 'quantity', l.quantity))) FROM (SELECT * FROM tb_order_line WHERE order_id = o.id ORDER BY n) l)",
        ),
    };
    db.execute_script(&format!(
        "CREATE TABLE IF NOT EXISTS tb_customer (id TEXT PRIMARY KEY, name TEXT NOT NULL, credit_cents BIGINT NOT NULL);
         CREATE TABLE IF NOT EXISTS tb_order (id TEXT PRIMARY KEY, customer_id TEXT NOT NULL REFERENCES tb_customer (id), status TEXT NOT NULL,
             total_cents BIGINT NOT NULL, created_at TEXT NOT NULL);
         CREATE INDEX IF NOT EXISTS tb_order_customer ON tb_order (customer_id);
         CREATE TABLE IF NOT EXISTS tb_order_line (order_id TEXT NOT NULL, n INTEGER NOT NULL, sku TEXT NOT NULL, quantity BIGINT NOT NULL, PRIMARY KEY (order_id, n));
         DROP VIEW IF EXISTS v_order;
         CREATE VIEW v_order AS SELECT o.id, o.customer_id, o.status, o.created_at,
             {obj}('id', o.id, 'status', o.status, 'total_cents', o.total_cents,
                   'customer', (SELECT {obj}('id', c.id, 'name', c.name) FROM tb_customer c WHERE c.id = o.customer_id),
                   'lines', {lines}) AS data
         FROM tb_order o;"
    ))
    .await?;
    let (n,): (i64,) = db.fetch_optional("SELECT COUNT(*) FROM tb_customer", ()).await?.unwrap_or((0,));
    if n == 0 {
        db.execute_script(
            "INSERT INTO tb_customer VALUES ('alice', 'Alice', 100000), ('bob', 'Bob', 5000);
             INSERT INTO tb_order VALUES ('ord-1', 'alice', 'paid', 4200, '00000000000000000001'), ('ord-2', 'bob', 'paid', 1300, '00000000000000000002'),
                 ('ord-3', 'alice', 'shipped', 9900, '00000000000000000003');
             INSERT INTO tb_order_line VALUES ('ord-1', 1, 'KB-01', 1), ('ord-2', 1, 'MOUSE-7', 2), ('ord-3', 1, 'DESK-3', 1), ('ord-3', 2, 'KB-01', 2);",
        )
        .await?;
    }
    println!("{} view-backed queries checked", rt.check_queries().await?);
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let rt = support::start("info,sqlx=warn", &[]).await?;
    if args.iter().any(|a| a == "--sdl") {
        print!("{}", rt.graphql_sdl()?);
        rt.shutdown().await?;
        return Ok(());
    }
    prepare(&rt).await?;
    let listen = args
        .iter()
        .position(|a| a == "--listen")
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
        .unwrap_or("127.0.0.1:8080");
    let listener = tokio::net::TcpListener::bind(listen).await?;
    // GraphQL at /graphql, Prometheus metrics at /metrics.
    let mut app = rt.graphql_router()?.merge(rt.metrics_router()?);
    // The saga console at /console, for operators only: it has no authentication of its
    // own, so the application layers its own in front. Without a password, none is served.
    if let Ok(password) = std::env::var("CONSOLE_PASSWORD") {
        let console = rt.console_router()?.layer(axum::middleware::from_fn_with_state(password, operators_only));
        app = app.merge(console);
        println!("Saga console at http://{}/console", listener.local_addr()?);
    }
    // Last: whoever waits for this line may stop reading the output here.
    println!("GraphQL at http://{}/graphql", listener.local_addr()?);
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    rt.shutdown().await?;
    Ok(())
}
