use fraiseql::prelude::*;

#[saga_step("charge")]
async fn charge<T: serde::de::DeserializeOwned>(ctx: &mut SagaContext, amount: T) -> fraiseql::Result<()> {
    let _ = (ctx, amount);
    Ok(())
}

fn main() {}
