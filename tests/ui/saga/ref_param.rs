use fraiseql::prelude::*;

#[saga(steps = ["create_order", "charge"])]
async fn place_order(customer_id: &str, total_cents: i64) -> fraiseql::Result<()>;

fn main() {}
