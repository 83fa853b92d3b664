use fraiseql::prelude::*;

/// Lacks `Serialize`/`Deserialize`: cannot be kept in the saga log.
#[derive(Default)]
struct OrderSaga {
    order_id: Option<String>,
}

#[compensate("create_order")]
async fn cancel_order(ctx: &mut SagaContext<OrderSaga>) -> fraiseql::Result<()> {
    ctx.order_id = None;
    Ok(())
}

fn main() {}
