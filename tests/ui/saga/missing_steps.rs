use fraiseql::prelude::*;

#[saga(name = "place_order")]
async fn place_order(customer_id: String) -> fraiseql::Result<()>;

fn main() {}
