use fraiseql::prelude::*;

/// Lacks `Serialize`/`Deserialize`: cannot be kept in the saga log.
#[derive(Default)]
struct OrderSaga {
    order_id: Option<String>,
}

#[saga_step("create_order")]
async fn create_order(ctx: &mut SagaContext<OrderSaga>, customer_id: String) -> fraiseql::Result<()> {
    ctx.order_id = Some(customer_id);
    Ok(())
}

fn main() {}
