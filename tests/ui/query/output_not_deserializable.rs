use fraiseql::prelude::*;

#[derive(serde::Serialize)]
struct Order {
    id: String,
}

#[query(sql_source = "v_order")]
async fn orders() -> fraiseql::Result<Vec<Order>>;

fn main() {}
