use fraiseql::prelude::*;

#[compensate("charge")]
async fn refund(ctx: &mut SagaContext) -> fraiseql::Result<i32> {
    let _ = ctx;
    Ok(0)
}

fn main() {}
