use fraiseql::prelude::*;

pub struct Opaque {
    pub amount: i64,
}

#[subscribe("fraiseql.order.>")]
async fn project(event: Event<Opaque>, ctx: &EventContext) -> fraiseql::Result<()> {
    let _ = (event.data.amount, ctx);
    Ok(())
}

fn main() {}
