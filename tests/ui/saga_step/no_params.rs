use fraiseql::prelude::*;

#[saga_step("charge")]
async fn charge() -> fraiseql::Result<()> {
    Ok(())
}

fn main() {}
