use fraiseql::prelude::*;

#[saga(steps = ["create_order", "charge", "create_order"])]
async fn place_order(customer_id: String) -> fraiseql::Result<()>;

fn main() {}
