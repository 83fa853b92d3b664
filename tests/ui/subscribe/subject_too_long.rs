use fraiseql::prelude::*;

/// The runtime refuses subjects over 512 bytes; so does the macro.
#[subscribe("fraiseql.order.order.order.order.order.order.order.order.order.order.order.order.order.order.order.order.order.order.order.order.order.order.order.order.order.order.order.order.order.order.order.order.order.order.order.order.order.order.order.order.order.order.order.order.order.order.order.order.order.order.order.order.order.order.order.order.order.order.order.order.order.order.order.order.order.order.order.order.order.order.order.order.order.order.order.order.order.order.order.order.order.order.order.order.order")]
async fn project(event: Event, ctx: &EventContext) -> fraiseql::Result<()> {
    let _ = (event, ctx);
    Ok(())
}

fn main() {}
