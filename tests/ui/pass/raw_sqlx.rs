//! A step that uses sqlx directly, through the transaction the runtime opened.

use fraiseql::prelude::*;
use fraiseql::sqlx;

#[derive(Debug, serde::Serialize, serde::Deserialize, sqlx::FromRow)]
pub struct Account {
    pub id: i64,
    pub balance: i64,
}

#[saga(steps = ["open_account"])]
pub async fn open_account(owner: String) -> fraiseql::Result<Account>;

#[saga_step("open_account", database = "ledger")]
async fn insert_account(ctx: &mut SagaContext, owner: String) -> fraiseql::Result<Account> {
    let account: Account = sqlx::query_as("INSERT INTO account (owner, balance) VALUES ($1, 0) RETURNING id, balance")
        .bind(&owner)
        .fetch_one(ctx.pg()?)
        .await?;
    let (count,): (i64,) = sqlx::query_as("SELECT count(*) FROM account WHERE owner = $1").bind(&owner).fetch_one(ctx.pg()?).await?;
    if count > 1 {
        return Err(Error::msg(format!("`{owner}` already has an account")));
    }
    Ok(account)
}

fn main() {}

/// A durable handler in a transaction on `ledger` (with the inbox): sqlx directly, and
/// an event published through that database's outbox.
#[subscribe("fraiseql.account.opened", durable = "statements", database = "ledger")]
async fn open_statement(event: Event<Account>, ctx: &mut EventTx) -> fraiseql::Result<()> {
    sqlx::query("INSERT INTO statement (account_id) VALUES ($1)").bind(event.data.id).execute(ctx.pg()?).await?;
    ctx.publish("fraiseql.statement.opened", event.data.id).await?;
    Ok(())
}
