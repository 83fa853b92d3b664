use fraiseql::prelude::*;

/// Lacks `Serialize`: a query's result is served as JSON.
struct Total {
    cents: i64,
}

#[query]
async fn total() -> fraiseql::Result<Option<Total>> {
    Ok(Some(Total { cents: 1 }))
}

fn main() {}
