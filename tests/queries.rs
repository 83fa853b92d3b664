//! `#[query]`: view-backed queries in every shape (one, optional, many; optional
//! filters; limit, offset, order_by), custom resolvers, calls by name with JSON
//! arguments, checks against the views, and injection attempts — on PostgreSQL and
//! SQLite.

mod common;

use common::{Backend, TestDbs};
use fraiseql::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Order {
    pub id: String,
    pub customer_id: String,
    pub status: String,
    pub total_cents: i64,
}

#[query(sql_source = "v_order")]
pub async fn order(id: Uuid) -> fraiseql::Result<Option<Order>>;

#[query(sql_source = "v_order", database = "primary", name = "orderExactly")]
pub async fn order_exactly(id: Uuid) -> fraiseql::Result<Order>;

#[query(sql_source = "v_order", order_by = "created_at desc", limit = 50)]
pub async fn orders(
    customer_id: Option<String>,
    status: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
    order_by: Option<String>,
) -> fraiseql::Result<Vec<Order>>;

/// Any of several values: `IN` on the column.
#[query(sql_source = "v_order", order_by = "created_at")]
pub async fn orders_of(customer_id: Vec<String>, status: Option<Vec<String>>) -> fraiseql::Result<Vec<Order>>;

/// The view's JSON is in another column.
#[query(sql_source = "v_order", data_column = "summary")]
pub async fn order_summaries(status: String) -> fraiseql::Result<Vec<serde_json::Value>>;

#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub struct OrderWithSiblings {
    pub order: Order,
    pub orders_of_customer: usize,
}

/// A custom resolver: its body combines two queries.
#[query]
pub async fn order_with_siblings(id: Uuid) -> fraiseql::Result<Option<OrderWithSiblings>> {
    let Some(order) = order(id).await? else { return Ok(None) };
    let siblings = orders(Some(order.customer_id.clone()), None, None, None, None).await?;
    Ok(Some(OrderWithSiblings { orders_of_customer: siblings.len(), order }))
}

/// Wrong on purpose: no such view, and no such column. Only `check_queries` and their
/// own calls notice; the other queries are not affected.
#[query(sql_source = "v_nowhere")]
pub async fn nowhere(id: String) -> fraiseql::Result<Option<Order>>;

#[query(sql_source = "v_order")]
pub async fn by_colour(colour: String) -> fraiseql::Result<Vec<Order>>;

const PG_SCHEMA: &str = "
CREATE TABLE tb_order (id UUID PRIMARY KEY, customer_id TEXT NOT NULL, status TEXT NOT NULL, total_cents BIGINT NOT NULL, created_at TIMESTAMPTZ NOT NULL);
CREATE VIEW v_order AS SELECT id, customer_id, status, total_cents, created_at,
    jsonb_build_object('id', id, 'customer_id', customer_id, 'status', status, 'total_cents', total_cents) AS data,
    jsonb_build_object('id', id, 'total', total_cents) AS summary
FROM tb_order;
";

const SQLITE_SCHEMA: &str = "
CREATE TABLE tb_order (id TEXT PRIMARY KEY, customer_id TEXT NOT NULL, status TEXT NOT NULL, total_cents INTEGER NOT NULL, created_at TEXT NOT NULL);
CREATE VIEW v_order AS SELECT id, customer_id, status, total_cents, created_at,
    json_object('id', id, 'customer_id', customer_id, 'status', status, 'total_cents', total_cents) AS data,
    json_object('id', id, 'total', total_cents) AS summary
FROM tb_order;
";

fn db_schema(backend: fraiseql::Backend) -> &'static str {
    match backend {
        fraiseql::Backend::Postgres => PG_SCHEMA,
        fraiseql::Backend::Sqlite => SQLITE_SCHEMA,
    }
}

struct Setup {
    rt: Runtime,
    _dbs: TestDbs,
    /// Ids in insertion (and `created_at`) order: c1 ×3, then c2 ×2.
    ids: Vec<Uuid>,
}

async fn setup(backend: Backend) -> Setup {
    common::init_tracing();
    let dbs = TestDbs::new(backend, &["primary"]).await;
    let rt = dbs.start(|_| {}).await;
    let db = rt.database("primary").unwrap();
    db.execute_script(match backend {
        Backend::Postgres => PG_SCHEMA,
        Backend::Sqlite => SQLITE_SCHEMA,
    })
    .await
    .unwrap();
    let rows = [
        ("c1", "paid", 1500),
        ("c1", "pending", 700),
        ("c1", "paid", 3200),
        ("c2", "paid", 900),
        ("c2", "cancelled", 2500),
    ];
    let mut ids = Vec::new();
    for (i, (customer, status, total)) in rows.iter().enumerate() {
        let id = Uuid::new_v4();
        let at = format!("2026-01-0{}T10:00:00Z", i + 1);
        let sql = match backend {
            Backend::Postgres => "INSERT INTO tb_order VALUES ($1::uuid, $2, $3, $4, $5::timestamptz)",
            Backend::Sqlite => "INSERT INTO tb_order VALUES ($1, $2, $3, $4, $5)",
        };
        db.execute(sql, (id.to_string(), *customer, *status, *total as i64, at)).await.unwrap();
        ids.push(id);
    }
    Setup { rt, _dbs: dbs, ids }
}

fn ids_of(orders: &[Order]) -> Vec<String> {
    orders.iter().map(|o| o.id.clone()).collect()
}

macro_rules! both_backends {
    ($(async fn $name:ident($s:ident: Setup) $body:block)*) => {
        $(
            mod $name {
                use super::*;
                async fn body($s: Setup) $body
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() { body(setup(Backend::Postgres).await).await }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() { body(setup(Backend::Sqlite).await).await }
            }
        )*
    };
}

both_backends! {
    async fn one_optional_and_many(s: Setup) {
        let ids: Vec<String> = s.ids.iter().map(Uuid::to_string).collect();
        s.rt.scope(async {
            let o = order(s.ids[2]).await.unwrap().expect("found");
            assert_eq!(o, Order { id: ids[2].clone(), customer_id: "c1".into(), status: "paid".into(), total_cents: 3200 });
            assert_eq!(order(Uuid::new_v4()).await.unwrap(), None);
            assert_eq!(order_exactly(s.ids[0]).await.unwrap().total_cents, 1500);
            let e = order_exactly(Uuid::new_v4()).await.unwrap_err();
            assert!(matches!(e, Error::NotFound(_)) && e.to_string().contains("query `orderExactly`: no row in `v_order` matches"), "{e}");

            // Default ordering (created_at desc); optional filters only when given.
            let all = orders(None, None, None, None, None).await.unwrap();
            assert_eq!(ids_of(&all), ids.iter().rev().cloned().collect::<Vec<_>>());
            let c1 = orders(Some("c1".into()), None, None, None, None).await.unwrap();
            assert_eq!(ids_of(&c1), vec![ids[2].clone(), ids[1].clone(), ids[0].clone()]);
            let c1_paid = orders(Some("c1".into()), Some("paid".into()), None, None, None).await.unwrap();
            assert_eq!(ids_of(&c1_paid), vec![ids[2].clone(), ids[0].clone()]);

            // Pages and the caller's ordering.
            let page = orders(None, None, Some(2), Some(1), Some("total_cents asc".into())).await.unwrap();
            assert_eq!(page.iter().map(|o| o.total_cents).collect::<Vec<_>>(), vec![900, 1500]);
            let rest = orders(None, None, None, Some(3), Some("total_cents DESC, id".into())).await.unwrap();
            assert_eq!(rest.iter().map(|o| o.total_cents).collect::<Vec<_>>(), vec![900, 700]);

            // Lists: any of several values, bound (an empty list matches nothing).
            let both = orders_of(vec!["c1".into(), "c2".into()], None).await.unwrap();
            assert_eq!(ids_of(&both), ids.clone());
            let paid_or_cancelled = orders_of(vec!["c2".into(), "c9".into()], Some(vec!["paid".into(), "cancelled".into()])).await.unwrap();
            assert_eq!(ids_of(&paid_or_cancelled), vec![ids[3].clone(), ids[4].clone()]);
            assert!(orders_of(vec![], None).await.unwrap().is_empty());
            assert!(orders_of(vec!["c1' OR '1'='1".into(), "c1\"".into()], None).await.unwrap().is_empty());

            let summaries = order_summaries("paid".into()).await.unwrap();
            let mut totals: Vec<i64> = summaries.iter().map(|v| v["total"].as_i64().unwrap()).collect();
            totals.sort();
            assert_eq!(totals, vec![900, 1500, 3200]);
            assert!(summaries.iter().all(|v| v.get("status").is_none()), "the other column: {summaries:?}");
        })
        .await;
        s.rt.shutdown().await.unwrap();
    }

    async fn custom_resolvers_and_calls_by_name(s: Setup) {
        let got = s.rt.scope(order_with_siblings(s.ids[3])).await.unwrap().unwrap();
        assert_eq!((got.order.customer_id.as_str(), got.orders_of_customer), ("c2", 2));

        // By name, with JSON arguments: what a GraphQL endpoint or a CLI does.
        let v = s.rt.query("orders", json!({ "customer_id": "c1", "limit": 2, "order_by": "total_cents" })).await.unwrap();
        assert_eq!(v.as_array().unwrap().iter().map(|o| o["total_cents"].as_i64().unwrap()).collect::<Vec<_>>(), vec![700, 1500]);
        let v = s.rt.query("orders_of", json!({ "customer_id": ["c2"], "status": ["cancelled"] })).await.unwrap();
        assert_eq!(v.as_array().unwrap().len(), 1, "{v}");
        let v = s.rt.query("order_with_siblings", json!({ "id": s.ids[0] })).await.unwrap();
        assert_eq!(v["orders_of_customer"], json!(3));
        let v = s.rt.query("orderExactly", json!({ "id": s.ids[4] })).await.unwrap();
        assert_eq!(v["status"], json!("cancelled"));

        let e = s.rt.query("orders", json!({ "limit": "ten" })).await.unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)) && e.to_string().contains("query `orders`: argument `limit`"), "{e}");
        let e = s.rt.query("order", json!({})).await.unwrap_err();
        assert!(e.to_string().contains("query `order`: argument `id`"), "a required argument: {e}");
        let e = s.rt.query("no_such_query", json!({})).await.unwrap_err();
        assert!(e.to_string().contains("no query named `no_such_query`"), "{e}");
        s.rt.shutdown().await.unwrap();
    }

    async fn queries_are_checked_against_their_views(s: Setup) {
        let e = s.rt.check_queries().await.unwrap_err().to_string();
        assert!(e.contains("2 of 7 queries do not fit their views"), "{e}");
        assert!(e.contains("query `nowhere`") && e.contains("view `v_nowhere` does not exist in database `primary`"), "{e}");
        assert!(e.contains("query `by_colour`") && e.contains("lacks a column `colour` for the argument of that name"), "{e}");
        assert!(e.contains("its columns: ") && e.contains("customer_id"), "{e}");
        // A call says the same, and the other queries are unaffected.
        let e = s.rt.scope(by_colour("red".into())).await.unwrap_err().to_string();
        assert!(e.contains("lacks a column `colour`"), "{e}");
        assert_eq!(s.rt.scope(orders(None, None, None, None, None)).await.unwrap().len(), 5);
        s.rt.shutdown().await.unwrap();
    }

    async fn a_view_changed_while_running_is_read_again(s: Setup) {
        let rt = &s.rt;
        assert_eq!(rt.scope(orders(Some("c1".into()), None, None, None, None)).await.unwrap().len(), 3);
        // A migration renames the filter column; the cached columns are now wrong.
        let db = rt.database("primary").unwrap();
        let create = db_schema(db.backend()).split(';').find(|st| st.contains("CREATE VIEW")).unwrap().to_string();
        db.execute_script(&format!("DROP VIEW v_order; {}", create.replace("SELECT id, customer_id,", "SELECT id, customer_id AS customer,"))).await.unwrap();
        let e = rt.scope(orders(Some("c1".into()), None, None, None, None)).await.unwrap_err();
        assert!(matches!(e, Error::Database { .. }), "the first call fails on the database: {e}");
        let e = rt.scope(orders(Some("c1".into()), None, None, None, None)).await.unwrap_err();
        assert!(e.to_string().contains("lacks a column `customer_id`"), "the next one has read the view again: {e}");
        db.execute_script(&format!("DROP VIEW v_order; {create}")).await.unwrap();
        assert_eq!(rt.scope(orders(Some("c1".into()), None, None, None, None)).await.unwrap().len(), 3, "and the view restored works");
        s.rt.shutdown().await.unwrap();
    }

    async fn injection_attempts_change_nothing_and_leak_nothing(s: Setup) {
        s.rt.scope(async {
            for attempt in ["c1' OR '1'='1", "c1'; DROP TABLE tb_order; --", "c1\" OR \"1\"=\"1", "%", "c1' UNION SELECT data FROM v_order --"] {
                assert!(orders(Some(attempt.into()), None, None, None, None).await.unwrap().is_empty(), "{attempt}");
            }
            for (spec, why) in [
                ("total_cents; DROP TABLE tb_order", "`total_cents;` is not a column"),
                ("(SELECT 1)", "`(SELECT` is not a column"),
                ("password", "`password` is not a column of the view"),
                ("total_cents sideways", "`sideways` after `total_cents` is not a direction"),
                ("total_cents desc, ", "empty ordering term"),
            ] {
                let e = orders(None, None, None, None, Some(spec.into())).await.unwrap_err();
                assert!(matches!(e, Error::InvalidArgument(_)), "{spec}: {e}");
                assert!(e.to_string().contains("query `orders`: order_by: ") && e.to_string().contains(why), "{spec}: {e}");
            }
            let e = orders(None, None, Some(-1), None, None).await.unwrap_err();
            assert!(e.to_string().contains("limit must not be negative"), "{e}");
            assert_eq!(orders(None, None, None, None, None).await.unwrap().len(), 5, "the table is intact");
        })
        .await;
        s.rt.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_without_a_runtime_says_so() {
    let e = order(Uuid::new_v4()).await.unwrap_err();
    assert!(matches!(e, Error::NoRuntime), "{e}");
}
