//! Seed use case 2: an immutable event log plus live queries on the latest state.
//!
//! Order events go to the bus; a durable subscriber projects them into
//! `tb_order_projection` (the current state a query reads). Then the projection is
//! dropped and rebuilt from the event history with one call, and compared with the live
//! one: identical.
//!
//! Zero services: `cargo run --example order_projection`. NATS + PostgreSQL:
//! `FRAISEQL_EVENTS__URL=nats://127.0.0.1:4222 FRAISEQL_DATABASES__PRIMARY__URL=postgres://…`.

mod support;

use std::time::Duration;

use fraiseql::prelude::*;
use fraiseql::Backend;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// Every order event carries the order id; `order.created` also the customer and total.
#[derive(Debug, Serialize, Deserialize)]
pub struct OrderEvent {
    pub order_id: String,
    #[serde(default)]
    pub customer_id: Option<String>,
    #[serde(default)]
    pub total_cents: Option<i64>,
}

/// One handler per event type, dispatched on the envelope's `type` (the seed's
/// `project_order_state`). `concurrency = 1`: a projection applies events in order.
#[subscribe("fraiseql.order.>", durable = "order-projection", concurrency = 1)]
async fn project_order_state(event: Event<OrderEvent>, ctx: &EventContext) -> fraiseql::Result<()> {
    let db = ctx.database("primary")?;
    let id = &event.data.order_id;
    match event.event_type.as_str() {
        "order.created" => {
            db.execute(
                "INSERT INTO tb_order_projection (order_id, customer_id, total_cents, status, version) VALUES ($1, $2, $3, 'created', 1)
                 ON CONFLICT (order_id) DO NOTHING",
                (id, event.data.customer_id.as_deref().unwrap_or(""), event.data.total_cents.unwrap_or(0)),
            )
            .await?;
        }
        "order.confirmed" | "order.shipped" | "order.cancelled" => {
            let status = event.event_type.trim_start_matches("order.");
            db.execute(
                "UPDATE tb_order_projection SET status = $2, version = version + 1 WHERE order_id = $1",
                (id, status),
            )
            .await?;
        }
        _ => {} // other order events do not change this projection
    }
    Ok(())
}

/// The current state, as the projection's view serves it.
#[derive(Debug, Serialize, Deserialize)]
pub struct ProjectedOrder {
    pub order_id: String,
    pub status: String,
    pub total_cents: i64,
}

/// The seed's query: it always reads the projected state.
#[query(sql_source = "v_order_projection", database = "primary")]
pub async fn order(order_id: String) -> fraiseql::Result<Option<ProjectedOrder>>;

async fn snapshot(rt: &Runtime) -> anyhow::Result<Vec<(String, String, i64, String, i64)>> {
    Ok(rt
        .database("primary")?
        .fetch_all(
            "SELECT order_id, customer_id, total_cents, status, version FROM tb_order_projection ORDER BY order_id",
            (),
        )
        .await?)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // The projection table must exist before the subscriber starts consuming.
    let rt = support::start("warn", &[]).await?;
    let primary = rt.database("primary")?;
    primary
        .execute_script(
            "CREATE TABLE IF NOT EXISTS tb_order_projection (order_id TEXT PRIMARY KEY, customer_id TEXT NOT NULL,
                 total_cents BIGINT NOT NULL, status TEXT NOT NULL, version BIGINT NOT NULL)",
        )
        .await?;
    let data = match primary.backend() {
        Backend::Postgres => "jsonb_build_object('order_id', order_id, 'status', status, 'total_cents', total_cents)",
        Backend::Sqlite => "json_object('order_id', order_id, 'status', status, 'total_cents', total_cents)",
    };
    primary
        .execute_script(&format!(
            "DROP VIEW IF EXISTS v_order_projection; CREATE VIEW v_order_projection AS SELECT order_id, {data} AS data FROM tb_order_projection"
        ))
        .await?;

    let n_orders = 50;
    let mut published = 0;
    for i in 0..n_orders {
        let id = format!("ord-{i:03}");
        rt.publish(
            "fraiseql.order.created",
            json!({ "order_id": id, "customer_id": format!("c{}", i % 7), "total_cents": 1000 + i }),
        )
        .await?;
        rt.publish("fraiseql.order.confirmed", json!({ "order_id": id })).await?;
        published += 2;
        let last = if i % 5 == 0 { "fraiseql.order.cancelled" } else { "fraiseql.order.shipped" };
        rt.publish(last, json!({ "order_id": id })).await?;
        published += 1;
    }
    println!("published {published} events for {n_orders} orders");

    // Live: wait until the durable subscriber has applied every event.
    let total_versions = |rows: &Vec<(String, String, i64, String, i64)>| rows.iter().map(|r| r.4).sum::<i64>();
    let mut live = snapshot(&rt).await?;
    for _ in 0..500 {
        if total_versions(&live) == published as i64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        live = snapshot(&rt).await?;
    }
    anyhow::ensure!(total_versions(&live) == published as i64, "the live projection did not catch up");
    let shipped = live.iter().filter(|r| r.3 == "shipped").count();
    let cancelled = live.iter().filter(|r| r.3 == "cancelled").count();
    println!("live projection: {} orders, {shipped} shipped, {cancelled} cancelled", live.len());

    // Drop it and rebuild it from history, with the same handler.
    primary.execute("DELETE FROM tb_order_projection", ()).await?;
    let applied = rt.rebuild("order-projection", None).await?;
    let rebuilt = snapshot(&rt).await?;
    println!("rebuilt from {applied} events: {} orders", rebuilt.len());
    anyhow::ensure!(rebuilt == live, "the rebuilt projection differs from the live one");
    println!("rebuilt projection is identical to the live one");

    // The query side reads the projection (the seed's `order(id)` query).
    let one = order("ord-007".into()).await?;
    println!("order ord-007: {:?}", one.map(|o| (o.order_id, o.status)));
    rt.shutdown().await?;
    Ok(())
}
