use fraiseql::prelude::*;

#[derive(serde::Deserialize, serde::Serialize)]
struct Order {
    id: String,
}

#[query(database = "primary")]
async fn order(id: String) -> fraiseql::Result<Option<Order>>;

fn main() {}
