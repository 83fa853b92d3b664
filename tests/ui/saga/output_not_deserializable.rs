use fraiseql::prelude::*;

/// Lacks `Deserialize`: a saga's result is read back from its log.
#[derive(serde::Serialize)]
pub struct Receipt {
    pub id: String,
}

#[saga(steps = ["charge"])]
async fn place_order(customer_id: String) -> fraiseql::Result<Receipt>;

fn main() {}
