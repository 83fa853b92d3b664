use fraiseql::prelude::*;

#[subscribe("fraiseql.order.>")]
fn project(event: Event, ctx: &EventContext) -> fraiseql::Result<()> {
    let _ = (event, ctx);
    Ok(())
}

fn main() {}
