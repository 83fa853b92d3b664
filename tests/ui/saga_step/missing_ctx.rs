use fraiseql::prelude::*;

#[saga_step("charge")]
async fn charge(total_cents: i64) -> fraiseql::Result<i64> {
    Ok(total_cents)
}

fn main() {}
