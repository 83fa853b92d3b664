use fraiseql::prelude::*;

#[saga(steps = ["create_order", "charge"])]
fn place_order(customer_id: String) -> fraiseql::Result<()>;

fn main() {}
