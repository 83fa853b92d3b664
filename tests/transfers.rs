//! 500 concurrent transfers between two databases with random failures injected in
//! steps and compensations: money is conserved and every saga ends terminal.

mod common;

use std::time::Duration;

use common::{Backend, TestDbs};
use fraiseql::prelude::*;
use fraiseql::SagaStatus;
use rand::Rng;
use serde::{Deserialize, Serialize};

const ACCOUNTS: i64 = 10;
const OPENING: i64 = 10_000;
const TRANSFERS: usize = 500;

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Chaos {
    /// Step that fails for good (0 debit, 1 credit, 2 record).
    pub fail_step: Option<usize>,
    /// Per step: transient failures before it succeeds.
    pub transient: [u32; 3],
    /// Per step: failed attempts of its compensation before it succeeds.
    pub comp_fail: [u32; 3],
}

#[saga(steps = ["debit", "credit", "record"])]
pub async fn transfer(from: i64, to: i64, amount: i64, chaos: Chaos) -> fraiseql::Result<String>;

fn inject(ctx: &SagaContext, idx: usize, chaos: &Chaos) -> fraiseql::Result<()> {
    if ctx.attempt() <= chaos.transient[idx] {
        return Err(Error::transient("injected transient failure"));
    }
    Ok(())
}

#[saga_step("debit", database = "primary")]
async fn debit(ctx: &mut SagaContext, from: i64, amount: i64, chaos: Chaos) -> fraiseql::Result<()> {
    inject(ctx, 0, &chaos)?;
    let n = ctx
        .execute("UPDATE account SET balance = balance - $1 WHERE id = $2 AND balance >= $1", (amount, from))
        .await?;
    if n == 0 {
        return Err(Error::msg("insufficient funds"));
    }
    if chaos.fail_step == Some(0) {
        return Err(Error::msg("injected failure in debit"));
    }
    Ok(())
}

#[compensate("debit")]
async fn undo_debit(ctx: &mut SagaContext, from: i64, amount: i64, chaos: Chaos) -> fraiseql::Result<()> {
    if ctx.attempt() <= chaos.comp_fail[0] {
        return Err(Error::msg("injected failure in undo_debit"));
    }
    ctx.execute("UPDATE account SET balance = balance + $1 WHERE id = $2", (amount, from)).await?;
    Ok(())
}

#[saga_step("credit", database = "ledger")]
async fn credit(ctx: &mut SagaContext, to: i64, amount: i64, chaos: Chaos) -> fraiseql::Result<()> {
    inject(ctx, 1, &chaos)?;
    ctx.execute("UPDATE account SET balance = balance + $1 WHERE id = $2", (amount, to)).await?;
    if chaos.fail_step == Some(1) {
        return Err(Error::msg("injected failure in credit"));
    }
    Ok(())
}

#[compensate("credit")]
async fn undo_credit(ctx: &mut SagaContext, to: i64, amount: i64, chaos: Chaos) -> fraiseql::Result<()> {
    if ctx.attempt() <= chaos.comp_fail[1] {
        return Err(Error::msg("injected failure in undo_credit"));
    }
    ctx.execute("UPDATE account SET balance = balance - $1 WHERE id = $2", (amount, to)).await?;
    Ok(())
}

#[saga_step("record", database = "audit")]
async fn record(ctx: &mut SagaContext, from: i64, to: i64, amount: i64, chaos: Chaos) -> fraiseql::Result<String> {
    inject(ctx, 2, &chaos)?;
    let id = ctx.saga_id().to_string();
    ctx.execute("INSERT INTO moved (id, from_id, to_id, amount) VALUES ($1, $2, $3, $4)", (&id, from, to, amount))
        .await?;
    if chaos.fail_step == Some(2) {
        return Err(Error::msg("injected failure in record"));
    }
    Ok(id)
}

async fn sum(rt: &Runtime, db: &str) -> i64 {
    let (s,): (i64,) = rt
        .database(db)
        .unwrap()
        .fetch_optional("SELECT CAST(COALESCE(SUM(balance), 0) AS BIGINT) FROM account", ())
        .await
        .unwrap()
        .unwrap();
    s
}

async fn body(backend: Backend) {
    common::init_tracing();
    let dbs = TestDbs::new(backend, &["primary", "ledger", "audit"]).await;
    let rt = dbs
        .start(|c| {
            c.saga.compensation_retries = 10;
            c.saga.step_retries = 3;
        })
        .await;
    for db in ["primary", "ledger"] {
        let d = rt.database(db).unwrap();
        d.execute_script("CREATE TABLE account (id BIGINT PRIMARY KEY, balance BIGINT NOT NULL)").await.unwrap();
        for id in 0..ACCOUNTS {
            d.execute("INSERT INTO account (id, balance) VALUES ($1, $2)", (id, OPENING)).await.unwrap();
        }
    }
    rt.database("audit")
        .unwrap()
        .execute_script("CREATE TABLE moved (id TEXT PRIMARY KEY, from_id BIGINT, to_id BIGINT, amount BIGINT)")
        .await
        .unwrap();
    let total_before = sum(&rt, "primary").await + sum(&rt, "ledger").await;

    let mut rng = rand::rng();
    let mut handles = Vec::new();
    for _ in 0..TRANSFERS {
        let chaos = Chaos {
            fail_step: if rng.random_bool(0.3) { Some(rng.random_range(0..3)) } else { None },
            transient: [0; 3].map(|_| if rng.random_bool(0.2) { rng.random_range(1..=3) } else { 0 }),
            comp_fail: [0; 3].map(|_| if rng.random_bool(0.3) { rng.random_range(1..=5) } else { 0 }),
        };
        let (from, to, amount) =
            (rng.random_range(0..ACCOUNTS), rng.random_range(0..ACCOUNTS), rng.random_range(1..=100));
        handles.push(tokio::spawn(rt.scope(transfer(from, to, amount, chaos))));
    }
    let mut ok = 0;
    for h in handles {
        match h.await.unwrap() {
            Ok(_) => ok += 1,
            Err(Error::SagaAborted { status, .. }) => assert_eq!(status, SagaStatus::Compensated),
            Err(other) => panic!("unexpected error: {other}"),
        }
    }
    // Completions are recorded off the caller's path; wait for the log to catch up.
    for _ in 0..500 {
        if rt.sagas().with_status(SagaStatus::Running).await.unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let completed = rt.sagas().with_status(SagaStatus::Completed).await.unwrap().len();
    let compensated = rt.sagas().with_status(SagaStatus::Compensated).await.unwrap().len();
    assert_eq!(completed, ok);
    assert_eq!(completed + compensated, TRANSFERS, "every saga is terminal");
    assert!(ok > 100 && compensated > 50, "the mix exercised both paths: {ok} completed, {compensated} compensated");

    let total_after = sum(&rt, "primary").await + sum(&rt, "ledger").await;
    assert_eq!(total_after, total_before, "money is conserved");
    let (moved, count): (i64, i64) = rt
        .database("audit")
        .unwrap()
        .fetch_optional("SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT), COUNT(*) FROM moved", ())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(count as usize, ok, "one audit row per completed transfer");
    assert_eq!(sum(&rt, "ledger").await - ACCOUNTS * OPENING, moved, "the ledger received exactly what was recorded");
    rt.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn money_is_conserved_across_500_concurrent_transfers_postgres() {
    body(Backend::Postgres).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn money_is_conserved_across_500_concurrent_transfers_sqlite() {
    body(Backend::Sqlite).await
}
