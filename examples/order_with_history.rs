//! Seed use case 4, hybrid queries: the current order from the database (consistent)
//! and its status history from the event stream (complete), fetched concurrently.
//!
//! Each status change is a saga step: the row is updated and the
//! `fraiseql.order.status_changed` event written to the outbox in the same
//! transaction, so the history holds exactly the changes that happened. `order` is a
//! view-backed `#[query]`; `order_with_history` is a custom resolver combining it with
//! the event history.
//!
//! Zero services: `cargo run --example order_with_history`. NATS + PostgreSQL:
//! `FRAISEQL_EVENTS__URL=nats://127.0.0.1:4222 FRAISEQL_DATABASES__PRIMARY__URL=postgres://…`.

mod support;

use fraiseql::prelude::*;
use fraiseql::Backend;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// What the view `v_order` serves in its `data` column.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Order {
    pub id: String,
    pub customer_id: String,
    pub status: String,
    pub total_cents: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusChange {
    pub from: String,
    pub to: String,
    /// When the event was published (RFC 3339).
    pub at: String,
}

/// The seed's `OrderWithHistory`: current state plus what happened to it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrderWithHistory {
    pub order: Order,
    pub status_history: Vec<StatusChange>,
    /// Every event about this order, of any type.
    pub all_events: usize,
}

#[query(sql_source = "v_order", database = "primary")]
pub async fn order(id: String) -> fraiseql::Result<Option<Order>>;

/// The hybrid query: the view and the event history, concurrently.
#[query]
pub async fn order_with_history(id: String) -> fraiseql::Result<Option<OrderWithHistory>> {
    let rt = Runtime::current()?;
    let (current, history) = tokio::join!(order(id.clone()), rt.history("fraiseql.order.>", None));
    let Some(order) = current? else { return Ok(None) };
    // Subjects carry the event type, the data the order id. (Subjects such as
    // `fraiseql.order.<id>.status_changed` would let the stream do this filtering.)
    let events: Vec<Event> = history?.into_iter().filter(|e| e.data["order_id"] == json!(id)).collect();
    let status_history = events
        .iter()
        .filter(|e| e.event_type == "order.status_changed")
        .map(|e| StatusChange {
            from: e.data["from"].as_str().unwrap_or_default().to_string(),
            to: e.data["to"].as_str().unwrap_or_default().to_string(),
            at: e.time.clone(),
        })
        .collect();
    Ok(Some(OrderWithHistory { order, status_history, all_events: events.len() }))
}

#[saga(steps = ["insert_order"])]
pub async fn create_order(order_id: String, customer_id: String, total_cents: i64) -> fraiseql::Result<()>;

#[saga_step("insert_order", database = "primary")]
async fn insert_order(
    ctx: &mut SagaContext,
    order_id: String,
    customer_id: String,
    total_cents: i64,
) -> fraiseql::Result<()> {
    ctx.execute(
        "INSERT INTO tb_order (id, customer_id, status, total_cents) VALUES ($1, $2, 'created', $3)",
        (&order_id, &customer_id, total_cents),
    )
    .await?;
    ctx.publish(
        "fraiseql.order.created",
        json!({ "order_id": order_id, "customer_id": customer_id, "total_cents": total_cents }),
    )
    .await?;
    Ok(())
}

#[saga(steps = ["set_status"])]
pub async fn change_status(order_id: String, to: String) -> fraiseql::Result<()>;

#[saga_step("set_status", database = "primary")]
async fn set_status(ctx: &mut SagaContext, order_id: String, to: String) -> fraiseql::Result<()> {
    let (from,): (String,) = ctx.fetch_one("SELECT status FROM tb_order WHERE id = $1", (&order_id,)).await?;
    ctx.execute("UPDATE tb_order SET status = $2 WHERE id = $1", (&order_id, &to)).await?;
    ctx.publish("fraiseql.order.status_changed", json!({ "order_id": order_id, "from": from, "to": to })).await?;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let rt = support::start("warn", &[]).await?;
    let primary = rt.database("primary")?;
    let data = match primary.backend() {
        Backend::Postgres => {
            "jsonb_build_object('id', id, 'customer_id', customer_id, 'status', status, 'total_cents', total_cents)"
        }
        Backend::Sqlite => {
            "json_object('id', id, 'customer_id', customer_id, 'status', status, 'total_cents', total_cents)"
        }
    };
    primary
        .execute_script(&format!(
            "CREATE TABLE IF NOT EXISTS tb_order (id TEXT PRIMARY KEY, customer_id TEXT NOT NULL, status TEXT NOT NULL, total_cents BIGINT NOT NULL);
             CREATE VIEW v_order AS SELECT id, customer_id, status, {data} AS data FROM tb_order;"
        ))
        .await?;
    // Catch a view that does not fit its queries now, not at the first request.
    println!("{} view-backed queries checked", rt.check_queries().await?);

    create_order("ord-1".into(), "alice".into(), 4200).await?;
    create_order("ord-2".into(), "bob".into(), 1300).await?;
    for to in ["paid", "packed", "shipped"] {
        change_status("ord-1".into(), to.into()).await?;
    }
    change_status("ord-2".into(), "cancelled".into()).await?;
    support::print_events(&rt, "fraiseql.order.>").await?; // also waits for the relay

    for id in ["ord-1", "ord-2"] {
        let o = order_with_history(id.into()).await?.expect("the order exists");
        let changes: Vec<String> = o.status_history.iter().map(|c| format!("{}→{}", c.from, c.to)).collect();
        println!(
            "order {id}: status {}, {} events, {} status changes: {}",
            o.order.status,
            o.all_events,
            o.status_history.len(),
            changes.join(", ")
        );
    }
    println!("order ord-9: {:?}", order_with_history("ord-9".into()).await?.map(|o| o.order.id));
    // The same resolver, by name with JSON arguments (what the GraphQL endpoint does).
    let v = rt.query("order_with_history", json!({ "id": "ord-2" })).await?;
    println!("as JSON: status {} after {} events", v["order"]["status"], v["all_events"]);
    rt.shutdown().await?;
    Ok(())
}
