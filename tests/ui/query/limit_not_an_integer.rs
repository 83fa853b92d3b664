use fraiseql::prelude::*;

#[derive(serde::Deserialize, serde::Serialize)]
struct Order {
    id: String,
}

#[query(sql_source = "v_order")]
async fn orders(limit: Option<String>) -> fraiseql::Result<Vec<Order>>;

fn main() {}
