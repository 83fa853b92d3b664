use fraiseql::prelude::*;

#[saga_step("charge", timeout = "10 parsecs")]
async fn charge(ctx: &mut SagaContext, total_cents: i64) -> fraiseql::Result<i64> {
    let _ = ctx;
    Ok(total_cents)
}

fn main() {}
