use fraiseql::prelude::*;

/// Lacks `Deserialize`: cannot be injected from the saga's inputs.
struct Card {
    number: String,
}

#[saga_step("charge")]
async fn charge(ctx: &mut SagaContext, card: Card) -> fraiseql::Result<usize> {
    let _ = ctx;
    Ok(card.number.len())
}

fn main() {}
