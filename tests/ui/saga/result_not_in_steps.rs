use fraiseql::prelude::*;

#[saga(steps = ["create_order", "charge"], result = "refund")]
async fn place_order(customer_id: String) -> fraiseql::Result<i64>;

fn main() {}
