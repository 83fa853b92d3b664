use fraiseql::prelude::*;

#[derive(serde::Deserialize, serde::Serialize)]
struct Order {
    id: String,
}

#[query(sql_source = "v_order")]
async fn order(id: &str) -> fraiseql::Result<Option<Order>>;

fn main() {}
