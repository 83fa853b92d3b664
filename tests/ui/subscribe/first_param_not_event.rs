use fraiseql::prelude::*;

#[subscribe("fraiseql.order.>")]
async fn project(data: String, ctx: &EventContext) -> fraiseql::Result<()> {
    let _ = (data, ctx);
    Ok(())
}

fn main() {}
