use fraiseql::prelude::*;

#[derive(serde::Deserialize, serde::Serialize)]
struct Order {
    id: String,
}

#[query(sql_source = "v_order")]
fn order(id: String) -> fraiseql::Result<Option<Order>>;

fn main() {}
