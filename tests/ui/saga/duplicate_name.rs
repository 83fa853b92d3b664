use fraiseql::prelude::*;

#[saga(steps = ["create_order", "charge"])]
async fn place_order(customer_id: String) -> fraiseql::Result<()>;

#[saga(steps = ["create_order", "charge"], name = "place_order")]
async fn place_order_v2(customer_id: String) -> fraiseql::Result<()>;

fn main() {}
