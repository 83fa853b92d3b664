use fraiseql::prelude::*;

#[subscribe("fraiseql.order.>", durable = "projection", database = "ledger")]
async fn project(event: Event, ctx: &EventContext) -> fraiseql::Result<()> {
    let _ = (event, ctx);
    Ok(())
}

#[subscribe("fraiseql.order.>", durable = "other")]
async fn other(event: Event, ctx: &mut EventTx) -> fraiseql::Result<()> {
    let _ = (event, ctx);
    Ok(())
}

fn main() {}
