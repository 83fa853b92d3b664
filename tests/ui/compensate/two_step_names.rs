use fraiseql::prelude::*;

#[compensate("charge", "reserve")]
async fn refund(ctx: &mut SagaContext) -> fraiseql::Result<()> {
    let _ = ctx;
    Ok(())
}

fn main() {}
