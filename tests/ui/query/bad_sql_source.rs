use fraiseql::prelude::*;

#[derive(serde::Deserialize, serde::Serialize)]
struct Order {
    id: String,
}

#[query(sql_source = "v_order; DROP TABLE tb_order")]
async fn order(id: String) -> fraiseql::Result<Option<Order>>;

fn main() {}
