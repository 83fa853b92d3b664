//! The facade under another name (`fql = { package = "fraiseql", … }`): with
//! `crate = fql`, the code the macros generate reaches the runtime through `fql`, and
//! the registrations still land in the distributed slices.
//!
//! This crate depends on neither `linkme` nor `serde_json`: generated code must get
//! both through the facade.

use fql::SagaContext;

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Tally {
    pub counted: i64,
}

#[fql::saga(steps = ["renamed_dep.count", "renamed_dep.confirm"], state = Tally, crate = fql)]
pub async fn renamed_dep_tally(amount: i64) -> fql::Result<i64>;

#[fql::saga_step("renamed_dep.count", retries = 2, timeout = "5s", crate = fql)]
async fn count(ctx: &mut SagaContext<Tally>, amount: i64) -> fql::Result<i64> {
    ctx.counted += amount;
    Ok(ctx.counted)
}

#[fql::compensate("renamed_dep.count", crate = fql)]
async fn uncount(ctx: &mut SagaContext<Tally>, amount: i64) -> fql::Result<()> {
    ctx.counted -= amount;
    Ok(())
}

#[fql::saga_step("renamed_dep.confirm", crate = fql)]
async fn confirm(ctx: &mut SagaContext<Tally>, counted: i64) -> fql::Result<i64> {
    let _ = ctx;
    Ok(counted)
}

#[cfg(test)]
mod tests {
    use fql::registry::Registry;

    #[test]
    fn registrations_made_through_a_renamed_dependency_are_linked() {
        let (sagas, steps, compensations) = Registry::linked();

        let saga =
            sagas.iter().find(|s| s.name == "renamed_dep_tally").expect("saga `renamed_dep_tally` is registered");
        assert_eq!(saga.function, "renamed_dep_tally");
        assert_eq!(saga.steps, ["renamed_dep.count", "renamed_dep.confirm"]);
        assert_eq!(saga.location.module, module_path!().trim_end_matches("::tests"));

        let count =
            steps.iter().find(|s| s.name == "renamed_dep.count").expect("step `renamed_dep.count` is registered");
        assert_eq!(count.function, "count");
        assert_eq!(count.retries, Some(2));
        assert_eq!(count.timeout_ms, Some(5_000));
        assert!(steps.iter().any(|s| s.name == "renamed_dep.confirm"), "step `renamed_dep.confirm` is registered");

        let undo = compensations
            .iter()
            .find(|c| c.step == "renamed_dep.count")
            .expect("compensation of `renamed_dep.count` is registered");
        assert_eq!(undo.function, "uncount");
    }
}
