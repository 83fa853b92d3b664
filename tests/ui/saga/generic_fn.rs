use fraiseql::prelude::*;

#[saga(steps = ["create_order", "charge"])]
async fn place_order<T: serde::Serialize>(customer_id: T) -> fraiseql::Result<()>;

fn main() {}
