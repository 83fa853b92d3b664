use fraiseql::prelude::*;

#[saga_step("charge")]
async fn charge(ctx: &mut SagaContext, total_cents: i64) -> Option<i64> {
    let _ = ctx;
    Some(total_cents)
}

fn main() {}
