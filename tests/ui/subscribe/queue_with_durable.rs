use fraiseql::prelude::*;

#[subscribe("fraiseql.order.>", durable = "projection", queue = "workers")]
async fn project(event: Event, ctx: &EventContext) -> fraiseql::Result<()> {
    let _ = (event, ctx);
    Ok(())
}

fn main() {}
