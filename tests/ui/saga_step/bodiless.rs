use fraiseql::prelude::*;

#[saga_step("charge")]
async fn charge(ctx: &mut SagaContext, total_cents: i64) -> fraiseql::Result<i64>;

fn main() {}
