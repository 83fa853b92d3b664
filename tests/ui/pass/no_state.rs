//! A saga without state: steps take `&mut SagaContext` (that is, `SagaContext<()>`).

use fraiseql::prelude::*;

#[saga(steps = ["debit", "credit"])]
async fn transfer(from: i64, to: i64, cents: i64) -> fraiseql::Result<()>;

#[saga_step("debit")]
async fn debit(ctx: &mut SagaContext, from: i64, cents: i64) -> fraiseql::Result<u64> {
    ctx.execute("UPDATE account SET balance = balance - $1 WHERE id = $2", (cents, from)).await
}

#[compensate("debit")]
async fn undo_debit(ctx: &mut SagaContext<()>, from: i64, cents: i64) -> fraiseql::Result<()> {
    ctx.execute("UPDATE account SET balance = balance + $1 WHERE id = $2", (cents, from)).await?;
    Ok(())
}

#[saga_step("credit")]
async fn credit(ctx: &mut SagaContext, to: i64, cents: i64) -> fraiseql::Result<()> {
    ctx.execute("UPDATE account SET balance = balance + $1 WHERE id = $2", (cents, to)).await?;
    Ok(())
}

/// The saga is an ordinary async fn: it can be called, and is `Send`.
#[allow(dead_code)]
fn spawnable() {
    fn assert_send<F: std::future::Future + Send>(_: F) {}
    assert_send(transfer(1, 2, 100));
}

fn main() {}
