//! Seed use case 3: transfer funds atomically across databases.
//!
//! update_customer (primary: both accounts exist and are active) → update_balance
//! (ledger: debit and credit) → record_transaction (ledger: the audit row, refused above
//! the daily limit). A refused transfer undoes the balance update; an unknown account
//! fails before any money moves. The committed transfer's events go out through the
//! outbox, and a compliance subscriber raises an alert for the large one.
//!
//! Zero services: `cargo run --example transfer_funds`. PostgreSQL: `--config file.toml`
//! or `FRAISEQL_DATABASES__PRIMARY__URL` / `FRAISEQL_DATABASES__LEDGER__URL`.

mod support;

use fraiseql::prelude::*;
use fraiseql::Backend;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// Amounts are integer cents: exact on every backend.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Transaction {
    pub id: String,
    pub from_account_id: String,
    pub to_account_id: String,
    pub amount_cents: i64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct TransferSaga {
    pub debited: bool,
    pub transaction_id: Option<String>,
}

const DAILY_LIMIT_CENTS: i64 = 1_000_000;

#[saga(steps = ["update_customer", "update_balance", "record_transaction"], state = TransferSaga)]
pub async fn transfer_funds_between_accounts(
    from_account_id: String,
    to_account_id: String,
    amount_cents: i64,
) -> fraiseql::Result<Transaction>;

#[saga_step("update_customer", database = "primary")]
async fn step_update_customer(
    ctx: &mut SagaContext<TransferSaga>,
    from_account_id: String,
    to_account_id: String,
) -> fraiseql::Result<()> {
    if from_account_id == to_account_id {
        return Err(Error::msg("cannot transfer to the same account"));
    }
    // On PostgreSQL, lock both account rows for the step (the seed's FOR UPDATE);
    // SQLite's write transaction already excludes other writers.
    let lock = if ctx.tx().backend() == Backend::Postgres { " FOR UPDATE" } else { "" };
    let sql = format!("SELECT id FROM tb_account WHERE id IN ($1, $2) AND active{lock}");
    let found: Vec<(String,)> = ctx.fetch_all(&sql, (&from_account_id, &to_account_id)).await?;
    if found.len() != 2 {
        return Err(Error::msg("one or both accounts not found (or not active)"));
    }
    Ok(())
}

#[saga_step("update_balance", database = "ledger")]
async fn step_update_balance(
    ctx: &mut SagaContext<TransferSaga>,
    from_account_id: String,
    to_account_id: String,
    amount_cents: i64,
) -> fraiseql::Result<()> {
    if amount_cents <= 0 {
        return Err(Error::msg("the amount must be positive"));
    }
    let debited = ctx
        .execute(
            "UPDATE tb_balance SET balance = balance - $1 WHERE account_id = $2 AND balance >= $1",
            (amount_cents, &from_account_id),
        )
        .await?;
    if debited == 0 {
        return Err(Error::msg(format!("insufficient funds in `{from_account_id}`")));
    }
    ctx.execute("UPDATE tb_balance SET balance = balance + $1 WHERE account_id = $2", (amount_cents, &to_account_id))
        .await?;
    ctx.debited = true;
    Ok(())
}

#[compensate("update_balance")]
async fn compensate_balance(
    ctx: &mut SagaContext<TransferSaga>,
    from_account_id: String,
    to_account_id: String,
    amount_cents: i64,
) -> fraiseql::Result<()> {
    ctx.execute("UPDATE tb_balance SET balance = balance + $1 WHERE account_id = $2", (amount_cents, &from_account_id))
        .await?;
    ctx.execute("UPDATE tb_balance SET balance = balance - $1 WHERE account_id = $2", (amount_cents, &to_account_id))
        .await?;
    ctx.debited = false;
    Ok(())
}

#[saga_step("record_transaction", database = "ledger")]
async fn step_record_transaction(
    ctx: &mut SagaContext<TransferSaga>,
    from_account_id: String,
    to_account_id: String,
    amount_cents: i64,
) -> fraiseql::Result<Transaction> {
    let (today,): (i64,) = ctx
        .fetch_one(
            "SELECT CAST(COALESCE(SUM(amount_cents), 0) AS BIGINT) FROM tb_transaction WHERE from_account_id = $1",
            (&from_account_id,),
        )
        .await?;
    if today + amount_cents > DAILY_LIMIT_CENTS {
        return Err(Error::msg(format!("transfer refused: exceeds the daily limit of {DAILY_LIMIT_CENTS} cents")));
    }
    let id = format!("tx-{}", ctx.saga_id());
    ctx.execute(
        "INSERT INTO tb_transaction (id, from_account_id, to_account_id, amount_cents, status) VALUES ($1, $2, $3, $4, 'completed')",
        (&id, &from_account_id, &to_account_id, amount_cents),
    )
    .await?;
    ctx.transaction_id = Some(id.clone());
    // Both through the outbox: they exist if and only if the transfer committed.
    ctx.publish(
        "fraiseql.transaction.completed",
        json!({ "transaction_id": id, "from_account_id": from_account_id, "to_account_id": to_account_id, "amount_cents": amount_cents }),
    )
    .await?;
    ctx.publish("compliance.transaction.created", json!({ "transaction_id": id, "amount_cents": amount_cents }))
        .await?;
    Ok(Transaction { id, from_account_id, to_account_id, amount_cents })
}

#[derive(Debug, Deserialize)]
pub struct TransactionCreated {
    pub transaction_id: String,
    pub amount_cents: i64,
}

/// Above this a transfer raises a compliance alert.
const SUSPICIOUS_CENTS: i64 = 20_000;

/// The compliance service (seed use case 3): checks each transaction and raises an alert
/// for suspicious ones. Durable: an alert is never lost to a restart.
#[subscribe("compliance.transaction.created", durable = "compliance-check")]
async fn compliance_check_transaction(event: Event<TransactionCreated>, ctx: &EventContext) -> fraiseql::Result<()> {
    if event.data.amount_cents > SUSPICIOUS_CENTS {
        ctx.publish(
            "compliance.alert.suspicious_transaction",
            json!({ "transaction_id": event.data.transaction_id, "amount_cents": event.data.amount_cents, "reason": "exceeds_single_transfer_threshold" }),
        )
        .await?;
    }
    Ok(())
}

async fn setup(rt: &Runtime) -> anyhow::Result<()> {
    let primary = rt.database("primary")?;
    primary
        .execute_script(
            "CREATE TABLE IF NOT EXISTS tb_account (id TEXT PRIMARY KEY, owner TEXT NOT NULL, active BOOLEAN NOT NULL)",
        )
        .await?;
    primary.execute("DELETE FROM tb_account", ()).await?;
    primary
        .execute(
            "INSERT INTO tb_account (id, owner, active) VALUES ('acc-alice', 'alice', TRUE), ('acc-bob', 'bob', TRUE)",
            (),
        )
        .await?;
    let ledger = rt.database("ledger")?;
    ledger
        .execute_script(
            "CREATE TABLE IF NOT EXISTS tb_balance (account_id TEXT PRIMARY KEY, balance BIGINT NOT NULL CHECK (balance >= 0));
             CREATE TABLE IF NOT EXISTS tb_transaction (id TEXT PRIMARY KEY, from_account_id TEXT NOT NULL, to_account_id TEXT NOT NULL,
                                                        amount_cents BIGINT NOT NULL, status TEXT NOT NULL)",
        )
        .await?;
    ledger.execute("DELETE FROM tb_balance", ()).await?;
    ledger.execute("DELETE FROM tb_transaction", ()).await?;
    ledger
        .execute("INSERT INTO tb_balance (account_id, balance) VALUES ('acc-alice', 2000000), ('acc-bob', 50000)", ())
        .await?;
    Ok(())
}

async fn balances(rt: &Runtime) -> anyhow::Result<Vec<(String, i64)>> {
    Ok(rt.database("ledger")?.fetch_all("SELECT account_id, balance FROM tb_balance ORDER BY account_id", ()).await?)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let rt = support::start("warn", &["compliance.>"]).await?;
    setup(&rt).await?;
    println!("balances: {:?}", balances(&rt).await?);

    let tx = transfer_funds_between_accounts("acc-alice".into(), "acc-bob".into(), 25_000).await?;
    println!("transferred: {tx:?}");
    println!("balances: {:?}", balances(&rt).await?);

    // Over the daily limit: the balance update is compensated.
    let err = transfer_funds_between_accounts("acc-alice".into(), "acc-bob".into(), 990_000).await.unwrap_err();
    println!("refused: {err}");
    println!("balances (unchanged): {:?}", balances(&rt).await?);

    // Unknown account: fails in the first step, nothing to undo.
    let err = transfer_funds_between_accounts("acc-alice".into(), "acc-mallory".into(), 100).await.unwrap_err();
    println!("refused: {err}");

    let total: i64 = balances(&rt).await?.iter().map(|b| b.1).sum();
    anyhow::ensure!(total == 2_050_000, "money must be conserved, total is {total}");
    println!("total money conserved: {total}");
    // Only the committed transfer published its events; the refused ones published none.
    support::print_events(&rt, "fraiseql.transaction.>").await?;
    // The compliance subscriber runs asynchronously: wait for its alert.
    for _ in 0..250 {
        if !rt.history("compliance.alert.>", None).await?.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    support::print_events(&rt, "compliance.>").await?;
    rt.shutdown().await?;
    Ok(())
}
