use fraiseql::prelude::*;

#[compensate("charge")]
async fn refund(total_cents: i64) -> fraiseql::Result<()> {
    let _ = total_cents;
    Ok(())
}

fn main() {}
