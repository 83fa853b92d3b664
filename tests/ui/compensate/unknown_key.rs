use fraiseql::prelude::*;

#[compensate("charge", database = "payments")]
async fn refund(ctx: &mut SagaContext) -> fraiseql::Result<()> {
    let _ = ctx;
    Ok(())
}

fn main() {}
