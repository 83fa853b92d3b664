//! Seed use case 1: an order saga over three databases.
//!
//! create_order (primary) → reserve_inventory (inventory) → process_payment (payments).
//! The first order goes through; the second one's card is declined, so the stock
//! reservation and the order are compensated, in reverse order, each in its own
//! transaction on its own database. Every step and compensation publishes its event
//! through the transactional outbox (so order 2's payment event never exists).
//!
//! Zero services: `cargo run --example orders` (SQLite files in a temporary directory).
//! PostgreSQL: `cargo run --example orders -- --config fraiseql.toml`, or set
//! `FRAISEQL_DATABASES__PRIMARY__URL` (and `__INVENTORY__`, `__PAYMENTS__`).
//!
//! `-- --console 127.0.0.1:8080` then serves the saga console over these orders (with
//! GraphQL and metrics) until Ctrl-C. Built with `--features fraiseql/testing`, two more
//! orders first meet an outage (injected faults: their payment fails, and so does the
//! release of their stock) and wait in the console for an operator.

mod support;

use fraiseql::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Item {
    pub sku: String,
    pub quantity: i64,
    pub price_cents: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Order {
    pub id: String,
    pub customer_id: String,
    pub total_cents: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Payment {
    pub id: String,
    pub order_id: String,
    pub amount_cents: i64,
    pub status: String,
}

/// What the steps hand each other (the seed's `ctx.order_id`, `ctx.reservations`).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct OrderSaga {
    pub order_id: Option<String>,
    pub total_cents: i64,
    pub reservations: Vec<(String, String, i64)>,
    pub transaction_id: Option<String>,
}

#[saga(steps = ["create_order", "reserve_inventory", "process_payment"], state = OrderSaga)]
pub async fn create_order_with_events(
    customer_id: String,
    items: Vec<Item>,
    payment_method_id: String,
) -> fraiseql::Result<Payment>;

#[saga_step("create_order", database = "primary")]
async fn step_create_order(
    ctx: &mut SagaContext<OrderSaga>,
    customer_id: String,
    items: Vec<Item>,
) -> fraiseql::Result<Order> {
    if items.is_empty() {
        return Err(Error::msg("an order needs at least one item"));
    }
    let total_cents: i64 = items.iter().map(|i| i.quantity * i.price_cents).sum();
    let id = format!("ord-{}", ctx.saga_id());
    ctx.execute(
        "INSERT INTO tb_order (id, customer_id, total_cents, status) VALUES ($1, $2, $3, 'created')",
        (&id, &customer_id, total_cents),
    )
    .await?;
    ctx.order_id = Some(id.clone());
    ctx.total_cents = total_cents;
    // Through the step's outbox: published if and only if this step commits.
    ctx.publish(
        "fraiseql.order.created",
        json!({ "order_id": id, "customer_id": customer_id, "total_cents": total_cents, "items": items }),
    )
    .await?;
    Ok(Order { id, customer_id, total_cents })
}

#[compensate("create_order")]
async fn compensate_order_creation(ctx: &mut SagaContext<OrderSaga>) -> fraiseql::Result<()> {
    let id = ctx.order_id.clone();
    ctx.execute("UPDATE tb_order SET status = 'cancelled' WHERE id = $1", (&id,)).await?;
    ctx.publish("fraiseql.order.cancelled", json!({ "order_id": id, "reason": "saga_compensated" })).await?;
    Ok(())
}

#[saga_step("reserve_inventory", database = "inventory")]
async fn step_reserve_inventory(ctx: &mut SagaContext<OrderSaga>, items: Vec<Item>) -> fraiseql::Result<usize> {
    let order_id = ctx.order_id.clone().ok_or_else(|| Error::msg("no order id in saga state"))?;
    for item in &items {
        let updated = ctx
            .execute(
                "UPDATE tb_stock SET available = available - $1 WHERE sku = $2 AND available >= $1",
                (item.quantity, &item.sku),
            )
            .await?;
        if updated == 0 {
            return Err(Error::msg(format!("not enough stock of `{}`", item.sku)));
        }
        let reservation = format!("{order_id}/{}", item.sku);
        ctx.execute(
            "INSERT INTO tb_reservation (id, order_id, sku, quantity, status) VALUES ($1, $2, $3, $4, 'held')",
            (&reservation, &order_id, &item.sku, item.quantity),
        )
        .await?;
        ctx.reservations.push((reservation, item.sku.clone(), item.quantity));
    }
    let reservations = ctx.reservations.clone();
    ctx.publish("fraiseql.inventory.reserved", json!({ "order_id": order_id, "reservations": reservations })).await?;
    Ok(ctx.reservations.len())
}

#[compensate("reserve_inventory")]
async fn compensate_inventory_reservation(ctx: &mut SagaContext<OrderSaga>) -> fraiseql::Result<()> {
    let reservations = ctx.reservations.clone();
    for (id, sku, quantity) in &reservations {
        ctx.execute("UPDATE tb_stock SET available = available + $1 WHERE sku = $2", (*quantity, sku)).await?;
        ctx.execute("UPDATE tb_reservation SET status = 'released' WHERE id = $1", (id,)).await?;
    }
    let order_id = ctx.order_id.clone();
    ctx.publish("fraiseql.inventory.released", json!({ "order_id": order_id, "reservations": reservations })).await?;
    Ok(())
}

#[saga_step("process_payment", database = "payments")]
async fn step_process_payment(
    ctx: &mut SagaContext<OrderSaga>,
    customer_id: String,
    total_cents: i64,
    payment_method_id: String,
) -> fraiseql::Result<Payment> {
    let order_id = ctx.order_id.clone().unwrap_or_default();
    let limit: Option<(i64,)> = ctx
        .fetch_optional(
            "SELECT limit_cents FROM tb_payment_method WHERE id = $1 AND customer_id = $2",
            (&payment_method_id, &customer_id),
        )
        .await?;
    match limit {
        None => {
            return Err(Error::msg(format!(
                "payment method `{payment_method_id}` not found for customer `{customer_id}`"
            )))
        }
        Some((limit,)) if limit < total_cents => {
            return Err(Error::msg(format!(
                "payment declined: {total_cents} cents exceeds the card's limit of {limit}"
            )))
        }
        Some(_) => {}
    }
    let id = format!("pay-{}", ctx.saga_id());
    ctx.execute(
        "INSERT INTO tb_payment (id, order_id, customer_id, amount_cents, status) VALUES ($1, $2, $3, $4, 'completed')",
        (&id, &order_id, &customer_id, total_cents),
    )
    .await?;
    ctx.transaction_id = Some(id.clone());
    ctx.publish(
        "fraiseql.payment.processed",
        json!({ "order_id": order_id, "transaction_id": id, "amount_cents": total_cents, "status": "completed" }),
    )
    .await?;
    Ok(Payment { id, order_id, amount_cents: total_cents, status: "completed".into() })
}

const SCHEMA: &[(&str, &str)] = &[
    ("primary", "CREATE TABLE IF NOT EXISTS tb_order (id TEXT PRIMARY KEY, customer_id TEXT NOT NULL, total_cents BIGINT NOT NULL, status TEXT NOT NULL)"),
    ("inventory", "CREATE TABLE IF NOT EXISTS tb_stock (sku TEXT PRIMARY KEY, available BIGINT NOT NULL CHECK (available >= 0));
                   CREATE TABLE IF NOT EXISTS tb_reservation (id TEXT PRIMARY KEY, order_id TEXT NOT NULL, sku TEXT NOT NULL, quantity BIGINT NOT NULL, status TEXT NOT NULL)"),
    ("payments", "CREATE TABLE IF NOT EXISTS tb_payment_method (id TEXT PRIMARY KEY, customer_id TEXT NOT NULL, limit_cents BIGINT NOT NULL);
                  CREATE TABLE IF NOT EXISTS tb_payment (id TEXT PRIMARY KEY, order_id TEXT NOT NULL, customer_id TEXT NOT NULL, amount_cents BIGINT NOT NULL, status TEXT NOT NULL)"),
];

async fn setup(rt: &Runtime) -> anyhow::Result<()> {
    for (db, sql) in SCHEMA {
        rt.database(db)?.execute_script(sql).await?;
    }
    let inv = rt.database("inventory")?;
    inv.execute("DELETE FROM tb_stock", ()).await?;
    inv.execute("INSERT INTO tb_stock (sku, available) VALUES ('KB-01', 10), ('MOUSE-7', 5)", ()).await?;
    let pay = rt.database("payments")?;
    pay.execute("DELETE FROM tb_payment_method", ()).await?;
    pay.execute("INSERT INTO tb_payment_method (id, customer_id, limit_cents) VALUES ('pm_gold', 'alice', 1000000), ('pm_basic', 'bob', 5000)", ()).await?;
    Ok(())
}

async fn stock(rt: &Runtime) -> anyhow::Result<Vec<(String, i64)>> {
    Ok(rt.database("inventory")?.fetch_all("SELECT sku, available FROM tb_stock ORDER BY sku", ()).await?)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let rt = support::start("info,sqlx=warn", &[]).await?;
    setup(&rt).await?;
    println!("stock before: {:?}", stock(&rt).await?);

    let items = vec![
        Item { sku: "KB-01".into(), quantity: 2, price_cents: 4_999 },
        Item { sku: "MOUSE-7".into(), quantity: 1, price_cents: 2_499 },
    ];
    let paid = create_order_with_events("alice".into(), items.clone(), "pm_gold".into()).await?;
    println!("order 1 paid: {paid:?}");
    println!("stock after order 1: {:?}", stock(&rt).await?);

    // Bob's card has a 50.00 limit: payment is declined, the saga compensates.
    match create_order_with_events("bob".into(), items, "pm_basic".into()).await {
        Ok(p) => anyhow::bail!("bob's order should have been declined, got {p:?}"),
        Err(e) => println!("order 2 failed as expected: {e}"),
    }
    println!("stock after order 2 (reservation released): {:?}", stock(&rt).await?);

    let orders: Vec<(String, String)> =
        rt.database("primary")?.fetch_all("SELECT customer_id, status FROM tb_order ORDER BY customer_id", ()).await?;
    println!("orders: {orders:?}");

    let cmd = fraiseql::cli::SagasCommand::List { status: None, name: None, limit: 10, json: false };
    cmd.run(&rt, &mut std::io::stdout()).await?;
    let failed = rt.sagas().with_status(fraiseql::SagaStatus::Compensated).await?;
    if let Some(s) = failed.first() {
        fraiseql::cli::SagasCommand::Show { id: s.id.clone(), json: false }.run(&rt, &mut std::io::stdout()).await?;
    }
    // What the two sagas published (order 2's events are its creation, reservation, and
    // their compensations: its payment step never committed, so it published nothing).
    support::print_events(&rt, "fraiseql.>").await?;
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--console") {
        let listen =
            args.get(i + 1).ok_or_else(|| anyhow::anyhow!("--console needs an address, e.g. 127.0.0.1:8080"))?;
        serve_console(&rt, listen).await?;
    }
    rt.shutdown().await?;
    Ok(())
}

/// `--console ADDR`: the saga console over this run's orders, beside GraphQL and the
/// metrics, until Ctrl-C. It has no authentication of its own: this serves it on the
/// address given (loopback, for a demo); `examples/server.rs` puts a password in front.
async fn serve_console(rt: &Runtime, listen: &str) -> anyhow::Result<()> {
    #[cfg(feature = "testing")]
    {
        use fraiseql::testing::Fault;
        // An outage: the payment provider fails every attempt, and the inventory
        // database every release of a reservation, until the compensation's retry
        // budget is spent. Both sagas are `failed` and keep their reservations.
        rt.inject(Fault::fail("process_payment"));
        rt.inject(Fault::fail("reserve_inventory").in_compensation());
        let keyboard = vec![Item { sku: "KB-01".into(), quantity: 1, price_cents: 4_999 }];
        let mouse = vec![Item { sku: "MOUSE-7".into(), quantity: 1, price_cents: 2_499 }];
        let (three, four) = tokio::join!(
            create_order_with_events("alice".into(), keyboard, "pm_gold".into()),
            create_order_with_events("alice".into(), mouse, "pm_gold".into()),
        );
        for (n, outcome) in [(3, three), (4, four)] {
            match outcome {
                Ok(p) => anyhow::bail!("order {n} should have met the outage, got {p:?}"),
                Err(e) => println!("order {n} waits for an operator: {e}"),
            }
        }
        // The outage is over: in the console, an operator retries one (its compensations
        // run again: the order is cancelled, the stock released) and runs the other
        // again from its payment (it completes).
        rt.clear_faults();
    }
    #[cfg(not(feature = "testing"))]
    println!("(build with `--features fraiseql/testing` for an order that waits for an operator)");
    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!("Saga console at http://{}/console", listener.local_addr()?);
    let app = rt.console_router()?.merge(rt.graphql_router()?).merge(rt.metrics_router()?);
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

/// The saga's failure paths, tested the way an application tests its own sagas:
/// `fraiseql::testing` (in `[dev-dependencies]`: `fraiseql = { …, features = ["testing"] }`).
#[cfg(all(test, feature = "testing"))]
mod tests {
    use super::*;
    use fraiseql::testing::{self, Fault};
    use fraiseql::SagaStatus;

    async fn shop() -> Runtime {
        let rt = testing::runtime().await.unwrap();
        setup(&rt).await.unwrap();
        rt
    }

    fn keyboard() -> Vec<Item> {
        vec![Item { sku: "KB-01".into(), quantity: 2, price_cents: 4_999 }]
    }

    #[tokio::test]
    async fn an_inventory_outage_cancels_the_order() {
        let rt = shop().await;
        rt.inject(Fault::fail("reserve_inventory"));
        let e = rt.scope(create_order_with_events("alice".into(), keyboard(), "pm_gold".into())).await.unwrap_err();
        assert!(e.to_string().contains("injected failure"), "{e}");
        let saga = testing::last_saga(&rt, "create_order_with_events").await.unwrap();
        assert_eq!(saga.summary.status, SagaStatus::Compensated);
        assert_eq!(saga.step("reserve_inventory").unwrap().attempts, 4, "tried, then retried three times");
        assert_eq!(saga.compensation("create_order").unwrap().status, fraiseql::StepStatus::Committed);
        assert_eq!(stock(&rt).await.unwrap(), [("KB-01".to_string(), 10), ("MOUSE-7".to_string(), 5)]);
    }

    #[tokio::test]
    async fn a_payment_that_fails_once_is_retried_and_the_order_completes() {
        let rt = shop().await;
        rt.inject(Fault::fail("process_payment").once());
        let paid = rt.scope(create_order_with_events("alice".into(), keyboard(), "pm_gold".into())).await.unwrap();
        assert_eq!(paid.amount_cents, 9_998);
        let saga = testing::last_saga(&rt, "create_order_with_events").await.unwrap();
        assert_eq!((saga.summary.status, saga.step("process_payment").unwrap().attempts), (SagaStatus::Completed, 2));
    }

    #[tokio::test]
    async fn a_crash_after_the_reservation_is_compensated_by_recovery() {
        let rt = shop().await;
        rt.inject(Fault::crash_after("reserve_inventory"));
        let e = rt.scope(create_order_with_events("alice".into(), keyboard(), "pm_gold".into())).await.unwrap_err();
        assert!(matches!(e, Error::FaultInjected(_)), "{e}");
        assert_eq!(stock(&rt).await.unwrap()[0], ("KB-01".to_string(), 8), "reserved, then the process died");
        assert_eq!(
            testing::last_saga(&rt, "create_order_with_events").await.unwrap().summary.status,
            SagaStatus::Running
        );
        assert_eq!(rt.recover_now().await.unwrap(), 1);
        let saga = testing::last_saga(&rt, "create_order_with_events").await.unwrap();
        assert_eq!(saga.summary.status, SagaStatus::Compensated);
        assert!(saga.step("process_payment").unwrap().attempts == 0, "payment never ran");
        assert_eq!(stock(&rt).await.unwrap()[0], ("KB-01".to_string(), 10), "the reservation was released");
    }

    #[tokio::test]
    async fn a_payment_that_times_out_compensates_and_a_stuck_refund_fails_the_saga() {
        let rt = shop().await;
        rt.inject(Fault::timeout("process_payment"));
        rt.inject(Fault::fail("reserve_inventory").in_compensation());
        let e = rt.scope(create_order_with_events("alice".into(), keyboard(), "pm_gold".into())).await.unwrap_err();
        assert!(e.to_string().contains("after"), "{e}");
        let saga = testing::last_saga(&rt, "create_order_with_events").await.unwrap();
        assert_eq!(saga.summary.status, SagaStatus::Failed, "a compensation that keeps failing waits for an operator");
        assert!(saga.step("process_payment").unwrap().error.as_deref().unwrap_or("").contains("injected"));
        rt.clear_faults();
        assert_eq!(rt.sagas().retry(&saga.summary.id).await.unwrap(), SagaStatus::Compensated);
        assert_eq!(stock(&rt).await.unwrap()[0], ("KB-01".to_string(), 10));
    }

    /// A saga left `failed` (payment down, and the reservation's release down too) is
    /// re-driven from its payment once the outage is over: the fork starts with the
    /// order and reservation the original made, and runs only the payment — also when
    /// its process dies right after the payment commits.
    #[tokio::test]
    async fn a_failed_saga_is_forked_from_its_payment_after_the_outage() {
        let rt = shop().await;
        rt.inject(Fault::fail("process_payment"));
        rt.inject(Fault::fail("reserve_inventory").in_compensation());
        rt.scope(create_order_with_events("alice".into(), keyboard(), "pm_gold".into())).await.unwrap_err();
        let original = testing::last_saga(&rt, "create_order_with_events").await.unwrap();
        assert_eq!(original.summary.status, SagaStatus::Failed);
        assert_eq!(stock(&rt).await.unwrap()[0], ("KB-01".to_string(), 8), "still reserved");
        let e = rt.sagas().fork(&original.summary.id, "nonexistent").await.unwrap_err();
        assert!(e.to_string().contains("has no step `nonexistent`"), "{e}");

        // A fork whose payment fails too compensates only what it ran: nothing of the
        // original's order or reservation.
        let failed_fork = rt.sagas().fork(&original.summary.id, "process_payment").await.unwrap();
        assert_eq!(failed_fork.summary.status, SagaStatus::Compensated);
        assert_eq!(
            stock(&rt).await.unwrap()[0],
            ("KB-01".to_string(), 8),
            "the fork did not undo the original's steps"
        );

        rt.clear_faults();
        rt.inject(Fault::crash_after("process_payment").once());
        let e = rt.sagas().fork(&original.summary.id, "process_payment").await.unwrap_err();
        assert!(matches!(e, Error::FaultInjected(_)), "{e}");
        assert_eq!(rt.recover_now().await.unwrap(), 1);
        let fork = testing::last_saga(&rt, "create_order_with_events").await.unwrap();
        assert_ne!(fork.summary.id, original.summary.id);
        assert_eq!(fork.summary.status, SagaStatus::Completed);
        let ran: Vec<(usize, &str)> = fork.steps.iter().map(|s| (s.index, s.step.as_str())).collect();
        assert_eq!(ran, [(2, "process_payment")], "the fork runs from the payment on");
        let order_id = original.state["order_id"].as_str().unwrap().to_string();
        let payments: Vec<(String,)> =
            rt.database("payments").unwrap().fetch_all("SELECT order_id FROM tb_payment", ()).await.unwrap();
        assert_eq!(payments, [(order_id,)], "paid once, for the original's order");
        assert_eq!(stock(&rt).await.unwrap()[0], ("KB-01".to_string(), 8));
    }
}
