use fraiseql::prelude::*;

#[saga(steps = ["create_order", "charge"])]
async fn place_order((customer_id, total_cents): (String, i64)) -> fraiseql::Result<()>;

fn main() {}
