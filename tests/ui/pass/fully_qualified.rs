//! The macros by path, without the prelude; attributes and docs on the functions are kept.

#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Counter {
    hits: u32,
}

/// Counts.
#[fraiseql::saga(steps = ["count"], state = Counter)]
#[allow(clippy::unused_async)]
pub(crate) async fn count_once() -> fraiseql::Result<u32>;

/// The step.
#[fraiseql::saga_step("count")]
#[inline]
async fn count(ctx: &mut fraiseql::SagaContext<Counter>) -> fraiseql::Result<u32> {
    ctx.state.hits += 1;
    Ok(ctx.hits)
}

#[fraiseql::compensate("count")]
async fn uncount(ctx: &mut fraiseql::SagaContext<Counter>) -> fraiseql::Result<()> {
    ctx.hits -= 1;
    Ok(())
}

fn main() {
    let _ = count_once;
}
