use fraiseql::prelude::*;

#[saga_step("charge")]
async fn charge(ctx: SagaContext, total_cents: i64) -> fraiseql::Result<i64> {
    let _ = ctx;
    Ok(total_cents)
}

fn main() {}
