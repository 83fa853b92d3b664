use fraiseql::prelude::*;

#[compensate("charge")]
fn refund(ctx: &mut SagaContext) -> fraiseql::Result<()> {
    let _ = ctx;
    Ok(())
}

fn main() {}
