use fraiseql::prelude::*;

/// Lacks `Serialize` and `Deserialize`: saga inputs are stored in the saga log and read back.
struct Card {
    number: String,
}

#[saga(steps = ["charge"])]
async fn place_order(card: Card) -> fraiseql::Result<()>;

fn main() {}
