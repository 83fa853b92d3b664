use fraiseql::prelude::*;

/// Lacks `Serialize`: a handler's reply is sent as JSON.
pub struct Price {
    pub cents: i64,
}

#[subscribe("rpc.price")]
async fn price(event: Event, ctx: &EventContext) -> fraiseql::Result<Price> {
    let _ = (event, ctx);
    Ok(Price { cents: 1 })
}

fn main() {}
