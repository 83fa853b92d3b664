use fraiseql::prelude::*;

#[subscribe("fraiseql.order.>", durabel = "projection")]
async fn project(event: Event, ctx: &EventContext) -> fraiseql::Result<()> {
    let _ = (event, ctx);
    Ok(())
}

fn main() {}
