//! Every key of every macro, on a saga with shared state.

use fraiseql::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Item {
    pub sku: String,
    pub quantity: i64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Receipt {
    pub order_id: String,
    pub charged_cents: i64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct OrderSaga {
    pub order_id: Option<String>,
    pub reserved: Vec<String>,
    pub charged_cents: i64,
}

/// Returns the value of `create_order`, not of the last step.
#[saga(
    steps = ["create_order", "reserve_inventory", "charge"],
    state = OrderSaga,
    result = "create_order",
    name = "place_order.v2",
    recovery = "forward",
)]
pub async fn place_order(customer_id: String, items: Vec<Item>, total_cents: i64) -> fraiseql::Result<String>;

#[saga_step("create_order", database = "primary")]
async fn create_order(ctx: &mut SagaContext<OrderSaga>, customer_id: String) -> fraiseql::Result<String> {
    let id = format!("ord-{customer_id}-{}", ctx.saga_id());
    ctx.execute("INSERT INTO tb_order (id, customer_id) VALUES ($1, $2)", (&id, &customer_id)).await?;
    ctx.order_id = Some(id.clone());
    Ok(id)
}

#[compensate("create_order", retries = 10, timeout = "10 seconds")]
async fn cancel_order(ctx: &mut SagaContext<OrderSaga>) -> fraiseql::Result<()> {
    let id = ctx.order_id.clone();
    ctx.execute("UPDATE tb_order SET status = 'cancelled' WHERE id = $1", (id,)).await?;
    Ok(())
}

#[saga_step("reserve_inventory", database = "inventory", retries = 5, timeout = "250ms")]
async fn reserve_inventory(ctx: &mut SagaContext<OrderSaga>, items: Vec<Item>) -> fraiseql::Result<usize> {
    for item in &items {
        ctx.execute("UPDATE tb_stock SET available = available - $1 WHERE sku = $2", (item.quantity, &item.sku)).await?;
        ctx.reserved.push(item.sku.clone());
    }
    Ok(items.len())
}

/// Injected parameters work in compensations too.
#[compensate("reserve_inventory")]
async fn release_inventory(ctx: &mut SagaContext<OrderSaga>, items: Vec<Item>) -> fraiseql::Result<()> {
    for item in &items {
        ctx.execute("UPDATE tb_stock SET available = available + $1 WHERE sku = $2", (item.quantity, &item.sku)).await?;
    }
    ctx.reserved.clear();
    Ok(())
}

/// `order_id` is injected from the saga's state (it is not a saga input).
#[saga_step("charge", database = "payments", timeout = "1m 30s")]
async fn charge(ctx: &mut SagaContext<OrderSaga>, order_id: Option<String>, total_cents: i64) -> fraiseql::Result<Receipt> {
    if total_cents <= 0 {
        return Err(Error::msg("nothing to charge"));
    }
    ctx.charged_cents = total_cents;
    Ok(Receipt { order_id: order_id.unwrap_or_default(), charged_cents: total_cents })
}

/// Durations read as the configuration reads them (humantime); the policy is the enum.
fn main() {
    let (sagas, steps, compensations) = fraiseql::registry::Registry::linked();
    let timeout = |name: &str| steps.iter().find(|s| s.name == name).and_then(|s| s.timeout_ms);
    assert_eq!(timeout("charge"), Some(90_000));
    assert_eq!(timeout("reserve_inventory"), Some(250));
    assert_eq!(compensations.iter().find(|c| c.step == "create_order").and_then(|c| c.timeout_ms), Some(10_000));
    let saga = sagas.iter().find(|s| s.name == "place_order.v2").unwrap();
    assert_eq!(saga.recovery, Some(fraiseql::RecoveryPolicy::Forward));
}
