//! A three-step saga over three databases whose every step and compensation records its
//! effect in an `effects` table of its own database, and fails, panics, sleeps or
//! crashes on demand (the `Plan` is part of the saga's input).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Mutex;

use fraiseql::prelude::*;
use serde::{Deserialize, Serialize};

pub(crate) const DBS: [&str; 3] = ["primary", "second", "third"];

/// Tags whose `comp_fail_until_fixed` cause an operator has fixed.
pub(crate) static FIXED: Mutex<Vec<String>> = Mutex::new(Vec::new());

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct Plan {
    /// Step index that fails with a business error (after writing its effect).
    pub fail_at: Option<usize>,
    pub panic_at: Option<usize>,
    /// (step index, milliseconds) to sleep inside the step.
    pub sleep_at: Option<(usize, u64)>,
    /// Per step: how many attempts fail with a transient error first.
    pub transient: Vec<u32>,
    /// Per step: how many attempts of its compensation fail first.
    pub comp_fail: Vec<u32>,
    /// Step index whose compensation fails until `FIXED` is set.
    pub comp_fail_until_fixed: Option<usize>,
    /// `"step:<i>"` or `"compensation:<i>"`: SIGKILL the process inside that function,
    /// after its effect is written and before its transaction commits.
    pub crash_inside: Option<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Trail {
    pub done: Vec<String>,
}

#[saga(steps = ["s1", "s2", "s3"], state = Trail)]
pub async fn three(tag: String, plan: Plan) -> fraiseql::Result<String>;

pub(crate) const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS effects (saga_id TEXT NOT NULL, step TEXT NOT NULL, phase TEXT NOT NULL, tag TEXT NOT NULL)";

/// Only the crash tests' child process dies; the recovering process runs the same
/// plan (it is part of the saga's input) and must live.
fn kill_self() {
    if std::env::var("FRAISEQL_CRASH_CHILD").as_deref() == Ok("run") {
        // SAFETY: kill(2) on our own pid.
        #[allow(unsafe_code)]
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
}

async fn step(ctx: &mut SagaContext<Trail>, idx: usize, tag: &str, plan: &Plan) -> fraiseql::Result<String> {
    if ctx.attempt() <= plan.transient.get(idx).copied().unwrap_or(0) {
        return Err(Error::transient(format!("s{} is flaky (attempt {})", idx + 1, ctx.attempt())));
    }
    let id = ctx.saga_id().to_string();
    let name = ctx.step();
    ctx.execute("INSERT INTO effects (saga_id, step, phase, tag) VALUES ($1, $2, 'do', $3)", (&id, name, tag)).await?;
    if plan.crash_inside.as_deref() == Some(&format!("step:{idx}")) {
        kill_self();
    }
    if let Some((i, ms)) = plan.sleep_at {
        if i == idx {
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
        }
    }
    if plan.panic_at == Some(idx) {
        panic!("s{} panics on purpose", idx + 1);
    }
    if plan.fail_at == Some(idx) {
        return Err(Error::msg(format!("s{} fails on purpose", idx + 1)));
    }
    ctx.done.push(name.to_string());
    Ok(id)
}

async fn undo(ctx: &mut SagaContext<Trail>, idx: usize, tag: &str, plan: &Plan) -> fraiseql::Result<()> {
    if ctx.attempt() <= plan.comp_fail.get(idx).copied().unwrap_or(0) {
        return Err(Error::msg(format!("undo of s{} fails (attempt {})", idx + 1, ctx.attempt())));
    }
    if plan.comp_fail_until_fixed == Some(idx) && !FIXED.lock().unwrap().iter().any(|t| t == tag) {
        return Err(Error::msg(format!("undo of s{} cannot succeed until fixed", idx + 1)));
    }
    let id = ctx.saga_id().to_string();
    let name = ctx.step();
    ctx.execute("INSERT INTO effects (saga_id, step, phase, tag) VALUES ($1, $2, 'undo', $3)", (&id, name, tag))
        .await?;
    if plan.crash_inside.as_deref() == Some(&format!("compensation:{idx}")) {
        kill_self();
    }
    ctx.done.retain(|s| s != name);
    Ok(())
}

#[saga_step("s1", database = "primary")]
async fn s1(ctx: &mut SagaContext<Trail>, tag: String, plan: Plan) -> fraiseql::Result<String> {
    step(ctx, 0, &tag, &plan).await
}

#[saga_step("s2", database = "second")]
async fn s2(ctx: &mut SagaContext<Trail>, tag: String, plan: Plan) -> fraiseql::Result<String> {
    step(ctx, 1, &tag, &plan).await
}

#[saga_step("s3", database = "third")]
async fn s3(ctx: &mut SagaContext<Trail>, tag: String, plan: Plan) -> fraiseql::Result<String> {
    step(ctx, 2, &tag, &plan).await
}

#[compensate("s1")]
async fn undo_s1(ctx: &mut SagaContext<Trail>, tag: String, plan: Plan) -> fraiseql::Result<()> {
    undo(ctx, 0, &tag, &plan).await
}

#[compensate("s2")]
async fn undo_s2(ctx: &mut SagaContext<Trail>, tag: String, plan: Plan) -> fraiseql::Result<()> {
    undo(ctx, 1, &tag, &plan).await
}

#[compensate("s3")]
async fn undo_s3(ctx: &mut SagaContext<Trail>, tag: String, plan: Plan) -> fraiseql::Result<()> {
    undo(ctx, 2, &tag, &plan).await
}

pub(crate) async fn create_schema(rt: &Runtime) {
    for db in DBS {
        rt.database(db).unwrap().execute_script(SCHEMA).await.unwrap();
    }
}

/// (step, phase) → how many times the effect is present, across the three databases.
pub(crate) async fn effects(rt: &Runtime, saga_id: &str) -> BTreeMap<(String, String), i64> {
    let mut out = BTreeMap::new();
    for db in DBS {
        let rows: Vec<(String, String, i64)> = rt
            .database(db)
            .unwrap()
            .fetch_all("SELECT step, phase, COUNT(*) FROM effects WHERE saga_id = $1 GROUP BY step, phase", (saga_id,))
            .await
            .unwrap();
        for (s, p, n) in rows {
            out.insert((s, p), n);
        }
    }
    out
}

/// The expected effects map: steps `done` each once, and `undone` each undone once.
pub(crate) fn expect(done: &[&str], undone: &[&str]) -> BTreeMap<(String, String), i64> {
    let mut m = BTreeMap::new();
    for s in done {
        m.insert((s.to_string(), "do".to_string()), 1);
    }
    for s in undone {
        m.insert((s.to_string(), "undo".to_string()), 1);
    }
    m
}
