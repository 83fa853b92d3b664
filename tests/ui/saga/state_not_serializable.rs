use fraiseql::prelude::*;

/// Lacks `Serialize`/`Deserialize`: cannot be kept in the saga log.
#[derive(Default)]
struct OrderSaga {
    order_id: Option<String>,
}

#[saga(steps = ["create_order"], state = OrderSaga)]
async fn place_order(customer_id: String) -> fraiseql::Result<()>;

fn main() {}
