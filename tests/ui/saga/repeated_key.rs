use fraiseql::prelude::*;

#[saga(steps = ["create_order"], name = "orders", name = "orders_v2")]
async fn place_order(customer_id: String) -> fraiseql::Result<()>;

fn main() {}
