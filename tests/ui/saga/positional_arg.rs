use fraiseql::prelude::*;

#[saga("place_order", steps = ["create_order", "charge"])]
async fn place_order(customer_id: String) -> fraiseql::Result<()>;

fn main() {}
