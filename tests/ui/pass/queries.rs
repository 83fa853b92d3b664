//! Every shape of `#[query]` the macro accepts.
use fraiseql::prelude::*;

#[derive(serde::Deserialize, serde::Serialize)]
pub struct Order {
    pub id: String,
}

#[query(sql_source = "public.v_order", database = "primary", data_column = "data", order_by = "created_at desc nulls last, id", limit = 10, name = "orderList")]
pub async fn orders(
    customer_id: Option<String>,
    r#type: Option<String>,
    paid: Option<bool>,
    min_total: Option<i64>,
    limit: Option<u32>,
    offset: Option<u64>,
    order_by: Option<String>,
) -> fraiseql::Result<Vec<Order>>;

#[query(sql_source = "v_order")]
pub async fn order(id: Id) -> fraiseql::Result<Option<Order>>;

#[query(sql_source = "v_order")]
pub async fn order_exactly(id: uuid::Uuid, ratio: f64) -> fraiseql::Result<Order>;

#[query(sql_source = "v_order")]
pub async fn orders_of(customer_id: Vec<String>, status: Option<Vec<String>>) -> fraiseql::Result<Vec<Order>>;

#[query]
pub async fn first_order(customer_id: String) -> fraiseql::Result<Option<Order>> {
    Ok(orders(Some(customer_id), None, None, None, Some(1), None, None).await?.into_iter().next())
}

fn main() {}
