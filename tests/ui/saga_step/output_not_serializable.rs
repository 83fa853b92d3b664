use fraiseql::prelude::*;

/// Lacks `Serialize`: a step's result is stored in the saga log.
struct Receipt {
    id: String,
}

#[saga_step("charge")]
async fn charge(ctx: &mut SagaContext, total_cents: i64) -> fraiseql::Result<Receipt> {
    let _ = ctx;
    Ok(Receipt { id: total_cents.to_string() })
}

fn main() {}
