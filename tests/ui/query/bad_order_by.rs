use fraiseql::prelude::*;

#[derive(serde::Deserialize, serde::Serialize)]
struct Order {
    id: String,
}

#[query(sql_source = "v_order", order_by = "created_at sideways")]
async fn orders() -> fraiseql::Result<Vec<Order>>;

fn main() {}
