use fraiseql::prelude::*;

#[saga_step("charge")]
async fn charge(total_cents: i64, ctx: &mut SagaContext) -> fraiseql::Result<i64> {
    let _ = ctx;
    Ok(total_cents)
}

fn main() {}
