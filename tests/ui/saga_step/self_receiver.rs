use fraiseql::prelude::*;

struct Payments;

impl Payments {
    #[saga_step("charge")]
    async fn charge(&self, ctx: &mut SagaContext, total_cents: i64) -> fraiseql::Result<i64> {
        let _ = ctx;
        Ok(total_cents)
    }
}

fn main() {}
