use fraiseql::prelude::*;

#[derive(serde::Deserialize, serde::Serialize)]
struct Order {
    id: String,
}

struct Colour;

#[query(sql_source = "v_order")]
async fn orders(colour: Colour) -> fraiseql::Result<Vec<Order>>;

fn main() {}
