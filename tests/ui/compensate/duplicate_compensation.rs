use fraiseql::prelude::*;

#[compensate("charge")]
async fn refund(ctx: &mut SagaContext) -> fraiseql::Result<()> {
    let _ = ctx;
    Ok(())
}

#[compensate("charge")]
async fn refund_again(ctx: &mut SagaContext) -> fraiseql::Result<()> {
    let _ = ctx;
    Ok(())
}

fn main() {}
