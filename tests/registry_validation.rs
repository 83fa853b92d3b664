//! Startup validation: this binary registers sagas that are wrong in every way the
//! registry checks, and the report names each problem and where it was declared.

use std::collections::{BTreeSet, HashMap};

use fraiseql::prelude::*;
use fraiseql::registry::Registry;
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct GoodState {
    pub order_id: Option<i64>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct OtherState {
    pub x: i64,
}

/// Serialises to a map with non-string keys, which JSON cannot represent.
#[derive(Debug, Serialize, Deserialize)]
pub struct Unserialisable {
    pub by_pair: HashMap<(i64, i64), String>,
}

impl Default for Unserialisable {
    fn default() -> Self {
        Unserialisable { by_pair: HashMap::from([((1, 2), "x".to_string())]) }
    }
}

// A saga listing a step nobody declares, whose result type differs from its last step's.
#[saga(steps = ["known", "ghost_step"], state = GoodState)]
pub async fn lists_unknown_step(customer_id: i64) -> fraiseql::Result<String>;

#[saga(steps = ["known", "typed_param", "wrong_state"], state = GoodState, result = "known")]
pub async fn mismatched(customer_id: i64, note: String) -> fraiseql::Result<String>;

#[saga_step("known", database = "primary")]
async fn known(ctx: &mut SagaContext<GoodState>, customer_id: i64) -> fraiseql::Result<i64> {
    ctx.order_id = Some(customer_id);
    Ok(customer_id)
}

// `note` is a String in the saga's input; `missing` is neither input nor state field.
#[saga_step("typed_param", database = "ledger_not_configured")]
async fn typed_param(_ctx: &mut SagaContext<GoodState>, note: i64, missing: String) -> fraiseql::Result<()> {
    let _ = (note, missing);
    Ok(())
}

#[saga_step("wrong_state")]
async fn wrong_state(_ctx: &mut SagaContext<OtherState>) -> fraiseql::Result<()> {
    Ok(())
}

#[saga_step("orphan_step")]
async fn orphan_step(_ctx: &mut SagaContext<GoodState>) -> fraiseql::Result<()> {
    Ok(())
}

#[compensate("no_such_step")]
async fn compensates_nothing(_ctx: &mut SagaContext<GoodState>) -> fraiseql::Result<()> {
    Ok(())
}

#[saga(steps = ["bad_state_step"], state = Unserialisable)]
pub async fn bad_state() -> fraiseql::Result<()>;

#[saga_step("bad_state_step")]
async fn bad_state_step(_ctx: &mut SagaContext<Unserialisable>) -> fraiseql::Result<()> {
    Ok(())
}

// The same step name from two modules (one module would not compile).
mod elsewhere {
    use super::*;
    #[saga_step("known")]
    async fn known_again(_ctx: &mut SagaContext<GoodState>) -> fraiseql::Result<i64> {
        Ok(1)
    }

    #[compensate("known")]
    async fn undo_known_here(_ctx: &mut SagaContext<GoodState>) -> fraiseql::Result<()> {
        Ok(())
    }
}

#[compensate("known")]
async fn undo_known(_ctx: &mut SagaContext<GoodState>) -> fraiseql::Result<()> {
    Ok(())
}

// Two handlers claiming one durable consumer name.
#[subscribe("fraiseql.a.>", durable = "shared-name")]
async fn first_handler(_event: Event, _ctx: &EventContext) -> fraiseql::Result<()> {
    Ok(())
}

#[subscribe("fraiseql.b.>", durable = "shared-name")]
async fn second_handler(_event: Event, _ctx: &EventContext) -> fraiseql::Result<()> {
    Ok(())
}

fn report(configured: &[&str]) -> String {
    let set: BTreeSet<String> = configured.iter().map(|s| s.to_string()).collect();
    match Registry::build(Some(&set)) {
        Ok(_) => panic!("this registry is broken on purpose and must not validate"),
        Err(e) => e.to_string(),
    }
}

fn assert_has(report: &str, needle: &str) {
    assert!(report.contains(needle), "report lacks `{needle}`:\n{report}");
}

#[test]
fn linked_registrations_are_all_found() {
    let (sagas, steps, comps) = Registry::linked();
    assert_eq!((sagas.len(), steps.len(), comps.len()), (3, 6, 3));
}

#[test]
fn every_problem_is_reported_once_with_where_it_was_declared() {
    let r = report(&["primary"]);
    let file = file!();
    assert_has(&r, "problem(s) in the registered sagas");
    assert_has(&r, &format!("saga `lists_unknown_step` at {file}:"));
    assert_has(&r, "lists step `ghost_step`, which no #[saga_step] declares");
    assert_has(&r, "step `known` is declared twice: by `known");
    assert_has(&r, "`known` at");
    assert_has(&r, "`known_again` at");
    assert_has(&r, "step `known` has two compensations");
    assert_has(&r, "compensation `compensates_nothing` at");
    assert_has(&r, "is for step `no_such_step`, which no #[saga_step] declares");
    assert_has(&r, "step `orphan_step` (`orphan_step` at");
    assert_has(&r, "is used by no saga");
    assert_has(&r, "uses database `ledger_not_configured`, which is not configured (configured: `primary`)");
    assert_has(&r, "parameter `note: i64` is injected from the saga input `note: String`, a different type");
    assert_has(
        &r,
        "parameter `missing: String` cannot be injected: it is neither a saga input (`customer_id`, `note`)",
    );
    assert_has(&r, "nor a field of the state");
    assert_has(&r, "takes `SagaContext<OtherState>` but saga `mismatched` has state `GoodState`");
    assert_has(&r, "saga `lists_unknown_step`");
    assert_has(&r, "saga `mismatched` at");
    assert_has(&r, "returns `String` but its result step `known`");
    assert_has(&r, "its state type `Unserialisable` cannot be (de)serialised");
    assert_has(&r, "key must be a string");
    assert_has(&r, "durable consumer `shared-name` is declared twice");
    assert_has(&r, "each durable handler needs its own name");
    // One line per problem, each with a location in this file.
    let lines: Vec<&str> = r.lines().filter(|l| l.starts_with("  - ")).collect();
    assert_eq!(lines.len(), 12, "{r}");
    assert!(lines.iter().all(|l| l.contains(file)), "every problem says where: {r}");
}

#[tokio::test]
async fn a_runtime_refuses_to_start_with_the_same_report() {
    let mut config = fraiseql::Config::default();
    let dir = std::env::temp_dir().join(format!("fraiseql-regval-{}", std::process::id()));
    config.databases.insert(
        "primary".into(),
        fraiseql::DatabaseConfig { url: format!("sqlite://{}/p.db", dir.display()), ..Default::default() },
    );
    let err = Runtime::builder().config(config).set_default(false).start().await.unwrap_err();
    assert!(matches!(err, Error::Registry(_)), "{err}");
    assert_has(&err.to_string(), "lists step `ghost_step`");
    assert_has(&err.to_string(), "(3 sagas, 6 steps, 3 compensations linked into this binary)");
}
