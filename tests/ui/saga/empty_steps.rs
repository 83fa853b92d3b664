use fraiseql::prelude::*;

#[saga(steps = [])]
async fn place_order(customer_id: String) -> fraiseql::Result<()>;

fn main() {}
