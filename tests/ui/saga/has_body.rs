use fraiseql::prelude::*;

#[saga(steps = ["create_order", "charge"])]
async fn place_order(customer_id: String) -> fraiseql::Result<()> {
    let _ = customer_id;
    Ok(())
}

fn main() {}
