use fraiseql::prelude::*;

#[saga_step("charge")]
async fn charge(ctx: &mut SagaContext, total_cents: i64) -> fraiseql::Result<i64> {
    let _ = ctx;
    Ok(total_cents)
}

#[saga_step("charge")]
async fn charge_again(ctx: &mut SagaContext, total_cents: i64) -> fraiseql::Result<i64> {
    let _ = ctx;
    Ok(total_cents)
}

fn main() {}
