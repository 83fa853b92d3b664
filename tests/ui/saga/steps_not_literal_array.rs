use fraiseql::prelude::*;

const STEPS: [&str; 2] = ["create_order", "charge"];

#[saga(steps = STEPS)]
async fn place_order(customer_id: String) -> fraiseql::Result<()>;

fn main() {}
