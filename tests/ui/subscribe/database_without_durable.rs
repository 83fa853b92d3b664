use fraiseql::prelude::*;

#[subscribe("fraiseql.order.>", database = "ledger")]
async fn project(event: Event, ctx: &mut EventTx) -> fraiseql::Result<()> {
    let _ = (event, ctx);
    Ok(())
}

fn main() {}
