use fraiseql::prelude::*;

#[compensate(retries = 3)]
async fn refund(ctx: &mut SagaContext) -> fraiseql::Result<()> {
    let _ = ctx;
    Ok(())
}

fn main() {}
