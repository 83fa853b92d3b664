use fraiseql::prelude::*;

#[derive(serde::Deserialize, serde::Serialize)]
struct Order {
    id: String,
}

#[query(sql_source = "v_order")]
async fn order(id: String) -> fraiseql::Result<Option<Order>> {
    Ok(Some(Order { id }))
}

fn main() {}
