use fraiseql::prelude::*;

#[saga_step("charge")]
async fn charge(ctx: &mut SagaContext, customer_id: &str) -> fraiseql::Result<usize> {
    let _ = ctx;
    Ok(customer_id.len())
}

fn main() {}
