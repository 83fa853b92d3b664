use fraiseql::prelude::*;

#[query(sql_source = "v_order")]
async fn order(id: String) -> fraiseql::Result<()>;

fn main() {}
