//! The GraphQL endpoint on PostgreSQL and SQLite: selection pushed into the SQL, nested
//! objects and lists, `where` / `orderBy` / `limit` / `offset`, sagas as mutations (a
//! compensated saga is an error), custom resolvers, introspection, limits, spec-shaped
//! errors, injection attempts, and GraphQL over HTTP.

mod common;

use std::sync::{Arc, Mutex};

use common::{Backend, TestDbs};
use fraiseql::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

#[derive(Debug, Clone, Serialize, Deserialize, Object)]
pub struct Customer {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, Object)]
pub struct Line {
    pub sku: String,
    pub quantity: i64,
}

/// An order, as `v_order` serves it.
#[derive(Debug, Clone, Serialize, Deserialize, Object)]
pub struct Order {
    pub id: String,
    pub customer_id: String,
    pub status: String,
    pub total_cents: i64,
    /// Free text; absent on most orders.
    pub note: Option<String>,
    pub customer: Customer,
    pub lines: Vec<Line>,
}

#[query(sql_source = "v_order")]
pub async fn order(id: Id) -> fraiseql::Result<Option<Order>>;

#[query(sql_source = "v_order", order_by = "created_at")]
pub async fn orders(customer_id: Option<String>) -> fraiseql::Result<Vec<Order>>;

#[query(sql_source = "v_order", order_by = "created_at")]
pub async fn orders_in(status: Vec<String>) -> fraiseql::Result<Vec<Order>>;

/// A custom resolver: how many orders a customer has, through the view query.
#[query]
pub async fn order_count(customer_id: String) -> fraiseql::Result<i64> {
    Ok(orders(Some(customer_id)).await?.len() as i64)
}

/// Waits `ms` milliseconds, then answers `ms`: root fields that finish out of order.
#[query]
pub async fn after_ms(ms: i64) -> fraiseql::Result<i64> {
    tokio::time::sleep(std::time::Duration::from_millis(ms as u64)).await;
    Ok(ms)
}

/// Nothing, or an error when asked to fail: a nullable root field that errors.
#[query]
pub async fn maybe_fail(fail: bool) -> fraiseql::Result<Option<i64>> {
    if fail {
        return Err(Error::InvalidArgument("asked to fail".into()));
    }
    Ok(None)
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, Object)]
pub struct Placed {
    pub order_id: String,
}

/// Places an order; over the credit limit it is compensated.
#[saga(steps = ["gql_insert_order", "gql_check_limit"], result = "gql_insert_order")]
pub async fn place_order(customer_id: String, total_cents: i64) -> fraiseql::Result<Placed>;

#[saga_step("gql_insert_order")]
async fn gql_insert_order(ctx: &mut SagaContext, customer_id: String, total_cents: i64) -> fraiseql::Result<Placed> {
    let id = format!("o-{}", ctx.saga_id());
    ctx.execute(
        "INSERT INTO tb_order (id, customer_id, status, total_cents, note, created_at) VALUES ($1, $2, 'new', $3, NULL, '2026-02-01T00:00:00Z')",
        (&id, &customer_id, total_cents),
    )
    .await?;
    Ok(Placed { order_id: id })
}

#[compensate("gql_insert_order")]
async fn gql_delete_order(ctx: &mut SagaContext) -> fraiseql::Result<()> {
    ctx.execute("DELETE FROM tb_order WHERE id = $1", (format!("o-{}", ctx.saga_id()),)).await?;
    Ok(())
}

#[saga_step("gql_check_limit")]
async fn gql_check_limit(_ctx: &mut SagaContext, total_cents: i64) -> fraiseql::Result<()> {
    if total_cents > 100_000 {
        return Err(Error::msg("over the credit limit"));
    }
    Ok(())
}

fn schema_sql(backend: Backend) -> String {
    let (obj, arr, agg, ts) = match backend {
        Backend::Postgres => ("jsonb_build_object", "jsonb_build_array", "jsonb_agg", "TIMESTAMPTZ"),
        Backend::Sqlite => ("json_object", "json_array", "json_group_array", "TEXT"),
    };
    let line = format!("{obj}('sku', l.sku, 'quantity', l.quantity)");
    let lines = match backend {
        Backend::Postgres => {
            format!("COALESCE((SELECT {agg}({line} ORDER BY l.n) FROM tb_line l WHERE l.order_id = o.id), '[]'::jsonb)")
        }
        Backend::Sqlite => format!(
            "(SELECT {agg}(json({line})) FROM (SELECT * FROM tb_line l WHERE l.order_id = o.id ORDER BY l.n) l)"
        ),
    };
    let _ = arr;
    format!(
        "CREATE TABLE tb_customer (id TEXT PRIMARY KEY, name TEXT NOT NULL);
         CREATE TABLE tb_order (id TEXT PRIMARY KEY, customer_id TEXT NOT NULL, status TEXT NOT NULL, total_cents BIGINT NOT NULL, note TEXT, created_at {ts} NOT NULL);
         CREATE TABLE tb_line (order_id TEXT NOT NULL, n INTEGER NOT NULL, sku TEXT NOT NULL, quantity INTEGER NOT NULL);
         CREATE VIEW v_order AS SELECT o.id, o.customer_id, o.status, o.created_at,
             {obj}('id', o.id, 'customer_id', o.customer_id, 'status', o.status, 'total_cents', o.total_cents, 'note', o.note,
                   'customer', (SELECT {obj}('id', c.id, 'name', c.name) FROM tb_customer c WHERE c.id = o.customer_id),
                   'lines', {lines}) AS data
         FROM tb_order o;"
    )
}

struct Setup {
    rt: Runtime,
    _dbs: TestDbs,
}

async fn setup(backend: Backend) -> Setup {
    common::init_tracing();
    let dbs = TestDbs::new(backend, &["primary"]).await;
    let rt = dbs.start(|c| c.graphql.max_limit = Some(100)).await;
    let db = rt.database("primary").unwrap();
    db.execute_script(&schema_sql(backend)).await.unwrap();
    db.execute_script(
        "INSERT INTO tb_customer VALUES ('c1', 'Ada'), ('c2', 'Grace');
         INSERT INTO tb_order VALUES ('o1', 'c1', 'paid', 1500, NULL, '2026-01-01T00:00:00Z'), ('o2', 'c1', 'pending', 700, 'gift wrap', '2026-01-02T00:00:00Z'),
             ('o3', 'c2', 'paid', 3200, NULL, '2026-01-03T00:00:00Z'), ('o4', 'c2', 'cancelled', 900, 'call first', '2026-01-04T00:00:00Z');
         INSERT INTO tb_line VALUES ('o1', 1, 'KB-01', 1), ('o1', 2, 'MOUSE-7', 2), ('o3', 1, 'DESK-3', 1);",
    )
    .await
    .unwrap();
    Setup { rt, _dbs: dbs }
}

async fn gql(rt: &Runtime, query: &str) -> Value {
    let resp = rt.graphql(query).await.unwrap();
    serde_json::to_value(&resp).unwrap()
}

async fn data(rt: &Runtime, query: &str) -> Value {
    let v = gql(rt, query).await;
    assert!(v.get("errors").is_none(), "{query}: {v}");
    v["data"].clone()
}

/// The statements GraphQL fields sent (from the runtime's `debug` event).
#[derive(Clone, Default)]
struct Statements(Arc<Mutex<Vec<String>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Statements {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        struct V<'a>(&'a Mutex<Vec<String>>);
        impl tracing::field::Visit for V<'_> {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "sql" {
                    self.0.lock().unwrap().push(format!("{value:?}"));
                }
            }
            fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
                if field.name() == "sql" {
                    self.0.lock().unwrap().push(value.to_string());
                }
            }
        }
        event.record(&mut V(&self.0));
    }
}

macro_rules! both_backends {
    ($(async fn $name:ident($s:ident: Setup) $body:block)*) => {
        $(
            mod $name {
                use super::*;
                async fn body($s: Setup) $body
                #[tokio::test(flavor = "current_thread")]
                async fn postgres() { body(setup(Backend::Postgres).await).await }
                #[tokio::test(flavor = "current_thread")]
                async fn sqlite() { body(setup(Backend::Sqlite).await).await }
            }
        )*
    };
}

both_backends! {
    async fn the_selection_is_pushed_into_one_statement(s: Setup) {
        use tracing_subscriber::layer::SubscriberExt;
        let seen = Statements::default();
        let subscriber = tracing_subscriber::registry().with(seen.clone()).with(tracing_subscriber::filter::LevelFilter::DEBUG);
        let _guard = tracing::subscriber::set_default(subscriber);
        let d = data(&s.rt, r#"{ order(id: "o1") { id status customer { name } lines { sku } } }"#).await;
        assert_eq!(d, json!({ "order": { "id": "o1", "status": "paid", "customer": { "name": "Ada" }, "lines": [{ "sku": "KB-01" }, { "sku": "MOUSE-7" }] } }));
        let statements = seen.0.lock().unwrap().clone();
        assert_eq!(statements.len(), 1, "one root field, one statement: {statements:#?}");
        let sql = &statements[0];
        for key in ["'id'", "'status'", "'customer'", "'name'", "'lines'", "'sku'"] {
            assert!(sql.contains(key), "{key} is asked for: {sql}");
        }
        for key in ["'total_cents'", "'note'", "'quantity'", "'customer_id'"] {
            assert!(!sql.contains(key), "{key} was not selected: {sql}");
        }
        // The database returns only those keys: run the statement's projection directly.
        let db = s.rt.database("primary").unwrap();
        let doc: (String,) = db.fetch_optional(&sql.replace("$1::text", "'o1'").replace("$1", "'o1'").replace("$2", "2"), ()).await.unwrap().unwrap();
        let doc: Value = serde_json::from_str(&doc.0).unwrap();
        let mut keys: Vec<&str> = doc.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort();
        assert_eq!(keys, vec!["customer", "id", "lines", "status"]);
        drop(_guard);
        s.rt.shutdown().await.unwrap();
    }

    async fn lists_filter_order_and_page(s: Setup) {
        let ids = |d: &Value| d["orders"].as_array().unwrap().iter().map(|o| o["id"].as_str().unwrap().to_string()).collect::<Vec<_>>();
        let d = data(&s.rt, r#"{ orders { id } }"#).await;
        assert_eq!(ids(&d), ["o1", "o2", "o3", "o4"], "the default order");
        let d = data(&s.rt, r#"{ orders(customerId: "c2") { id } }"#).await;
        assert_eq!(ids(&d), ["o3", "o4"]);
        let d = data(&s.rt, r#"{ orders(where: { status: { eq: "paid" }, totalCents: { gte: 2000 } }) { id } }"#).await;
        assert_eq!(ids(&d), ["o3"]);
        let d = data(&s.rt, r#"{ orders(where: { _or: [{ status: { eq: "pending" } }, { totalCents: { lt: 1000 } }] }, orderBy: [TOTAL_CENTS_DESC]) { id } }"#).await;
        assert_eq!(ids(&d), ["o4", "o2"]);
        let d = data(&s.rt, r#"{ orders(where: { _not: { status: { in: ["paid", "cancelled"] } } }) { id } }"#).await;
        assert_eq!(ids(&d), ["o2"]);
        let d = data(&s.rt, r#"{ orders(where: { note: { contains: "first" } }) { id note } }"#).await;
        assert_eq!(d, json!({ "orders": [{ "id": "o4", "note": "call first" }] }));
        let d = data(&s.rt, r#"{ orders(where: { note: { isNull: true } }, orderBy: [STATUS_ASC, ID_DESC]) { id } }"#).await;
        assert_eq!(ids(&d), ["o3", "o1"]);
        let d = data(&s.rt, r#"{ orders(orderBy: [TOTAL_CENTS_ASC], limit: 2, offset: 1) { id totalCents } }"#).await;
        assert_eq!(d, json!({ "orders": [{ "id": "o4", "totalCents": 900 }, { "id": "o1", "totalCents": 1500 }] }));
        let d = data(&s.rt, r#"{ orders(where: { status: { in: [] } }) { id } }"#).await;
        assert_eq!(ids(&d), Vec::<String>::new());
        let d = data(&s.rt, r#"{ ordersIn(status: ["cancelled", "pending"]) { id } }"#).await;
        assert_eq!(d["ordersIn"], json!([{ "id": "o2" }, { "id": "o4" }]));
        // Variables, aliases and fragments.
        let resp = s
            .rt
            .graphql(
                async_graphql::Request::new("query Q($c: String) { a: orders(customerId: $c) { ...F } b: orderCount(customerId: \"c1\") } fragment F on Order { id customer { id } }")
                    .variables(async_graphql::Variables::from_json(json!({ "c": "c2" }))),
            )
            .await
            .unwrap();
        let v = serde_json::to_value(&resp).unwrap();
        assert_eq!(v["data"], json!({ "a": [{ "id": "o3", "customer": { "id": "c2" } }, { "id": "o4", "customer": { "id": "c2" } }], "b": 2 }), "{v}");
        s.rt.shutdown().await.unwrap();
    }

    async fn sagas_are_mutations_and_compensation_is_an_error(s: Setup) {
        let d = data(&s.rt, r#"mutation { placeOrder(customerId: "c1", totalCents: 4200) { orderId } }"#).await;
        let id = d["placeOrder"]["orderId"].as_str().unwrap().to_string();
        let q = format!(r#"{{ order(id: "{id}") {{ status totalCents customer {{ name }} lines {{ sku }} }} }}"#);
        assert_eq!(data(&s.rt, &q).await, json!({ "order": { "status": "new", "totalCents": 4200, "customer": { "name": "Ada" }, "lines": [] } }));

        let v = gql(&s.rt, r#"mutation { placeOrder(customerId: "c1", totalCents: 500000) { orderId } }"#).await;
        assert_eq!(v["data"], Value::Null, "{v}");
        let e = &v["errors"][0];
        assert_eq!(e["path"], json!(["placeOrder"]));
        assert_eq!(e["locations"], json!([{ "line": 1, "column": 12 }]));
        assert_eq!(e["extensions"]["code"], json!("SAGA_ABORTED"));
        assert_eq!(e["extensions"]["step"], json!("gql_check_limit"));
        assert_eq!(e["extensions"]["status"], json!("compensated"));
        assert!(e["message"].as_str().unwrap().contains("over the credit limit"), "{e}");
        let d = data(&s.rt, r#"{ orders(customerId: "c1") { id } }"#).await;
        assert_eq!(d["orders"].as_array().unwrap().len(), 3, "the compensated order is gone: {d}");
        s.rt.shutdown().await.unwrap();
    }

    async fn introspection_describes_the_registered_types(s: Setup) {
        let d = data(&s.rt, r#"{ __type(name: "Order") { name description fields { name description type { kind name ofType { kind name } } } } }"#).await;
        let t = &d["__type"];
        assert_eq!(t["description"], json!("An order, as `v_order` serves it."));
        let fields: Vec<&str> = t["fields"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
        assert_eq!(fields, ["id", "customerId", "status", "totalCents", "note", "customer", "lines"]);
        let note = t["fields"].as_array().unwrap().iter().find(|f| f["name"] == "note").unwrap();
        assert_eq!(note["type"], json!({ "kind": "SCALAR", "name": "String", "ofType": null }), "Option<String> is nullable");
        assert_eq!(note["description"], json!("Free text; absent on most orders."));
        let d = data(&s.rt, r#"{ __schema { queryType { fields { name args { name } } } mutationType { fields { name args { name type { ofType { name } } } } } } }"#).await;
        let q = &d["__schema"]["queryType"]["fields"];
        let orders = q.as_array().unwrap().iter().find(|f| f["name"] == "orders").unwrap();
        let args: Vec<&str> = orders["args"].as_array().unwrap().iter().map(|a| a["name"].as_str().unwrap()).collect();
        assert_eq!(args, ["customerId", "limit", "offset", "where", "orderBy"]);
        let m = &d["__schema"]["mutationType"]["fields"][0];
        assert_eq!(m["name"], json!("placeOrder"));
        assert_eq!(m["args"], json!([{ "name": "customerId", "type": { "ofType": { "name": "String" } } }, { "name": "totalCents", "type": { "ofType": { "name": "Int" } } }]));
        let sdl = s.rt.graphql_sdl().unwrap();
        assert!(sdl.contains("type Order") && sdl.contains("input OrderWhere") && sdl.contains("enum OrderOrderBy"), "{sdl}");
        s.rt.shutdown().await.unwrap();
    }

    async fn bad_requests_get_spec_shaped_errors_and_never_reach_sql(s: Setup) {
        let v = gql(&s.rt, r#"{ orders { id secret } }"#).await;
        assert_eq!(v["data"], Value::Null);
        assert!(v["errors"][0]["message"].as_str().unwrap().contains("Unknown field \"secret\" on type \"Order\""), "{v}");
        assert_eq!(v["errors"][0]["locations"], json!([{ "line": 1, "column": 15 }]));
        let v = gql(&s.rt, r#"{ order(id: 12.5) { id } }"#).await;
        assert!(v["errors"][0]["message"].as_str().unwrap().contains("Invalid value for argument \"id\""), "{v}");
        let v = gql(&s.rt, r#"{ orders(orderBy: [PASSWORD_ASC]) { id } }"#).await;
        assert!(v["errors"][0]["message"].as_str().unwrap().contains("PASSWORD_ASC"), "{v}");
        let v = gql(&s.rt, r#"{ orders(where: { secret: { eq: "x" } }) { id } }"#).await;
        assert!(v["errors"][0]["message"].as_str().unwrap().contains("secret"), "{v}");
        let v = gql(&s.rt, r#"{ orders(limit: 1000) { id } }"#).await;
        assert_eq!(v["errors"][0]["extensions"]["code"], json!("BAD_USER_INPUT"), "{v}");
        assert!(v["errors"][0]["message"].as_str().unwrap().contains("above the most this server returns at once (100)"), "{v}");
        assert_eq!(v["errors"][0]["path"], json!(["orders"]));
        let v = gql(&s.rt, r#"{ orders(limit: -1) { id } }"#).await;
        assert!(v["errors"][0]["message"].as_str().unwrap().contains("limit must be a number of rows"), "{v}");
        let v = gql(&s.rt, "{ orders { id ").await;
        assert!(v["errors"][0]["message"].as_str().unwrap().contains("expected"), "a syntax error: {v}");
        // Deeper than the limit (15): refused before execution.
        let mut deep = "{ __schema { types { fields { type {".to_string();
        deep += &" ofType {".repeat(14);
        deep += &format!(" name {}", "}".repeat(19));
        let v = gql(&s.rt, &deep).await;
        assert!(v["errors"][0]["message"].as_str().unwrap().contains("nested too deep"), "{v}");
        // Too many fields (complexity above 1000): refused before execution.
        let wide = format!("{{ {} }}", (0..1001).map(|i| format!("a{i}: orderCount(customerId: \"c1\")")).collect::<Vec<_>>().join(" "));
        let v = gql(&s.rt, &wide).await;
        assert!(v["errors"][0]["message"].as_str().unwrap().contains("too complex"), "{v}");
        s.rt.shutdown().await.unwrap();
    }

    async fn injection_attempts_change_nothing_and_leak_nothing(s: Setup) {
        let attempts = [
            "o1' OR '1'='1",
            "o1'; DROP TABLE tb_order; --",
            "x\" OR \"\"=\"",
            "') OR 1=1 --",
            "%",
            "o1' UNION SELECT data FROM v_order --",
        ];
        for a in attempts {
            let a = serde_json::to_string(a).unwrap();
            assert_eq!(data(&s.rt, &format!("{{ order(id: {a}) {{ id }} }}")).await, json!({ "order": null }), "{a}");
            assert_eq!(data(&s.rt, &format!("{{ orders(customerId: {a}) {{ id }} }}")).await, json!({ "orders": [] }), "{a}");
            for op in ["eq", "gt", "contains"] {
                let d = data(&s.rt, &format!("{{ orders(where: {{ status: {{ {op}: {a} }}, _or: [{{ note: {{ eq: {a} }} }}] }}) {{ id }} }}")).await;
                assert_eq!(d, json!({ "orders": [] }), "{op} {a}");
            }
            let d = data(&s.rt, &format!("{{ orders(where: {{ id: {{ in: [{a}, {a}] }} }}) {{ id }} }}")).await;
            assert_eq!(d, json!({ "orders": [] }), "in {a}");
            let d = data(&s.rt, &format!("{{ orderCount(customerId: {a}) }}")).await;
            assert_eq!(d, json!({ "orderCount": 0 }), "{a}");
        }
        // Wrong types for a column, in a variable: refused before SQL, naming the argument.
        let resp = s.rt.graphql(async_graphql::Request::new("query($n: Int) { orders(where: { totalCents: { eq: $n } }) { id } }").variables(async_graphql::Variables::from_json(json!({ "n": "1 OR 1=1" })))).await.unwrap();
        let v = serde_json::to_value(&resp).unwrap();
        assert!(v["errors"][0]["message"].as_str().unwrap().contains("Invalid value for argument"), "{v}");
        assert_eq!(data(&s.rt, "{ orders { id } }").await["orders"].as_array().unwrap().len(), 4, "the table is intact");
        s.rt.shutdown().await.unwrap();
    }

    async fn a_failing_database_is_an_error_for_that_request_only(s: Setup) {
        let db = s.rt.database("primary").unwrap();
        db.execute_script("DROP VIEW v_order; CREATE VIEW v_order AS SELECT o.id, o.customer_id, o.status, o.created_at, 'not json' AS data FROM tb_order o").await.unwrap();
        let v = gql(&s.rt, r#"{ orders { id } orderCount(customerId: "c1") }"#).await;
        assert_eq!(v["data"], Value::Null, "{v}");
        let errors = v["errors"].as_array().unwrap();
        assert!(errors.iter().any(|e| e["extensions"]["code"] == json!("DATABASE_ERROR") && e["path"] == json!(["orders"])), "{v}");
        assert!(!v.to_string().contains("not json"), "the database's text is not shown: {v}");
        db.execute_script(&format!("DROP VIEW v_order; {}", schema_sql(if db.backend() == fraiseql::Backend::Postgres { Backend::Postgres } else { Backend::Sqlite }).split(";").filter(|s| s.contains("CREATE VIEW")).collect::<Vec<_>>().join(";"))).await.unwrap();
        assert_eq!(data(&s.rt, "{ orders { id } }").await["orders"].as_array().unwrap().len(), 4, "the next request is served");
        s.rt.shutdown().await.unwrap();
    }

    async fn graphql_over_http(s: Setup) {
        use tower::ServiceExt;
        let app = s.rt.graphql_router().unwrap();
        let call = |req: axum::http::Request<axum::body::Body>| {
            let app = app.clone();
            async move {
                let resp = app.oneshot(req).await.unwrap();
                let status = resp.status();
                let ct = resp.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
                let body = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
                (status.as_u16(), ct, serde_json::from_slice::<Value>(&body).unwrap_or(Value::String(String::from_utf8_lossy(&body).into())))
            }
        };
        let post = |body: String, ct: &str, accept: &str| {
            axum::http::Request::post("/graphql").header("content-type", ct).header("accept", accept).body(axum::body::Body::from(body)).unwrap()
        };
        let (st, ct, v) = call(post(json!({ "query": "{ order(id: \"o3\") { id customer { name } } }" }).to_string(), "application/json", "application/json")).await;
        assert_eq!((st, ct.as_str(), &v), (200, "application/json", &json!({ "data": { "order": { "id": "o3", "customer": { "name": "Grace" } } } })));
        let (st, _, v) = call(post("{ orderCount(customerId: \"c2\") }".into(), "application/graphql", "application/json")).await;
        assert_eq!((st, &v), (200, &json!({ "data": { "orderCount": 2 } })));
        let get = |q: &str| axum::http::Request::get(format!("/graphql?query={}", q.replace(' ', "%20").replace('"', "%22").replace('{', "%7B").replace('}', "%7D"))).body(axum::body::Body::empty()).unwrap();
        let (st, _, v) = call(get("{ orders(customerId: \"c1\") { id } }")).await;
        assert_eq!((st, &v), (200, &json!({ "data": { "orders": [{ "id": "o1" }, { "id": "o2" }] } })));
        let (st, _, v) = call(get("mutation { placeOrder(customerId: \"c1\", totalCents: 1) { orderId } }")).await;
        assert_eq!(st, 405, "{v}");
        assert_eq!(v["errors"][0]["message"], json!("mutations are sent with POST"));
        let (st, _, v) = call(post("x".repeat(300 * 1024), "application/json", "application/json")).await;
        assert_eq!(st, 413, "{v}");
        assert!(v["errors"][0]["message"].as_str().unwrap().contains("larger than 262144 bytes"), "{v}");
        let (st, _, v) = call(post("{ not json".into(), "application/json", "application/json")).await;
        assert_eq!(st, 400, "{v}");
        assert!(v["errors"][0]["message"].as_str().unwrap().contains("not a GraphQL request"), "{v}");
        let (st, ct, v) = call(post(json!({ "query": "{ nope }" }).to_string(), "application/json", "application/graphql-response+json")).await;
        assert_eq!((st, ct.as_str()), (400, "application/graphql-response+json; charset=utf-8"), "{v}");
        let (st, _, _) = call(post("{}".into(), "text/plain", "application/json")).await;
        assert_eq!(st, 415);
        // A retried mutation with the same Idempotency-Key runs its saga once.
        let keyed = |key: &str| {
            axum::http::Request::post("/graphql")
                .header("content-type", "application/json")
                .header("idempotency-key", key)
                .body(axum::body::Body::from(json!({ "query": "mutation { a: placeOrder(customerId: \"c2\", totalCents: 5) { orderId } b: placeOrder(customerId: \"c2\", totalCents: 6) { orderId } }" }).to_string()))
                .unwrap()
        };
        let (_, _, first) = call(keyed("retry-1")).await;
        let (_, _, again) = call(keyed("retry-1")).await;
        let (_, _, other) = call(keyed("retry-2")).await;
        assert_eq!(first, again, "the same key: the same orders");
        assert_ne!(first["data"]["a"], first["data"]["b"], "two mutations of one request are two sagas: {first}");
        assert_ne!(first["data"]["a"], other["data"]["a"], "another key: another order");
        let d = data(&s.rt, r#"{ orders(customerId: "c2") { id } }"#).await;
        assert_eq!(d["orders"].as_array().unwrap().len(), 2 + 4, "c2's two orders plus four new ones: {d}");
        let (st, _, v) = call(keyed("bad key with spaces")).await;
        assert_eq!(st, 400, "{v}");
        s.rt.shutdown().await.unwrap();
    }
}

/// Run `tests/interop/<script>` with graphql-js, its arguments each JSON document written
/// to a file of its own (removed afterwards).
fn graphql_js(script: &str, inputs: &[&Value]) -> std::process::Output {
    let node_path = std::env::var("FRAISEQL_TEST_NODE_PATH")
        .expect("FRAISEQL_TEST_NODE_PATH is not set: run the suite with `scripts/test` (it installs graphql-js)");
    let dir = std::env::temp_dir().join(format!("fraiseql-interop-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let files: Vec<_> = inputs
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let f = dir.join(format!("{i}.json"));
            std::fs::write(&f, serde_json::to_string(v).unwrap()).unwrap();
            f
        })
        .collect();
    let out = std::process::Command::new("node")
        .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop").join(script))
        .args(&files)
        .env("NODE_PATH", node_path)
        .output()
        .expect("node (scripts/test installs Node.js)");
    let _ = std::fs::remove_dir_all(&dir);
    out
}

/// Interoperability with the reference implementation: graphql-js builds a client schema
/// from our introspection result and validates a set of queries exactly as we do.
#[tokio::test(flavor = "current_thread")]
async fn graphql_js_reads_our_introspection_and_validates_like_we_do() {
    let s = setup(Backend::Sqlite).await;
    let intro = s.rt.graphql(fraiseql::graphql::INTROSPECTION_QUERY).await.unwrap();
    assert!(intro.errors.is_empty(), "{:?}", intro.errors);
    let queries = [
        (r#"{ order(id: "o1") { id status customer { id name } lines { sku quantity } note } }"#, true),
        (
            r#"query($c: String, $w: OrderWhere) { orders(customerId: $c, where: $w, orderBy: [TOTAL_CENTS_DESC, ID_ASC], limit: 2, offset: 0) { id totalCents } }"#,
            true,
        ),
        (
            r#"{ orders(where: { _or: [{ status: { in: ["paid"] } }, { note: { contains: "x", isNull: false } }], _not: { totalCents: { lt: 5 } } }) { id } }"#,
            true,
        ),
        (r#"{ orderCount(customerId: "c1") }"#, true),
        (r#"mutation { placeOrder(customerId: "c1", totalCents: 10) { orderId } }"#, true),
        (r#"{ a: orders { ...F } } fragment F on Order { id customer { name } }"#, true),
        (r#"{ orders { id secret } }"#, false),
        (r#"{ order { id } }"#, false),
        (r#"{ order(id: "o1") }"#, false),
        (r#"{ orders(orderBy: [PASSWORD_ASC]) { id } }"#, false),
        (r#"{ orders(where: { totalCents: { eq: "many" } }) { id } }"#, false),
        (r#"mutation { placeOrder(customerId: "c1") { orderId } }"#, false),
        (r#"{ orderCount }"#, false),
        (r#"{ orders { id ...G } } fragment G on Customer { name }"#, false),
    ];
    // Our own verdict first: a query that fails validation has no data at all.
    for (q, valid) in &queries {
        let resp =
            s.rt.graphql(async_graphql::Request::new(*q).variables(async_graphql::Variables::from_json(json!({}))))
                .await
                .unwrap();
        let ran = resp.data != async_graphql::Value::Null || resp.errors.is_empty();
        let validation_error = resp.errors.iter().any(|e| e.path.is_empty());
        assert_eq!(!validation_error && ran, *valid, "our validation of {q}: {:?}", resp.errors);
    }
    let list: Vec<Value> = queries.iter().map(|(q, v)| json!({ "query": q, "valid": v })).collect();
    let out = graphql_js("validate.cjs", &[&serde_json::to_value(&intro).unwrap(), &json!(list)]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "graphql-js disagrees:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let summary: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(summary["failed"], json!(0));
    for t in [
        "Query",
        "Mutation",
        "Order",
        "Customer",
        "Line",
        "Placed",
        "OrderWhere",
        "OrderOrderBy",
        "StringFilter",
        "IntFilter",
    ] {
        assert!(summary["types"].as_array().unwrap().contains(&json!(t)), "graphql-js sees `{t}`: {stdout}");
    }
    s.rt.shutdown().await.unwrap();
}

/// A request with variables; the response as JSON, and `data` as the exact text the
/// server serialises (key order included: `serde_json::Value` would sort the keys).
async fn request(rt: &Runtime, query: &str, variables: Value) -> (Value, String) {
    let resp = rt
        .graphql(async_graphql::Request::new(query).variables(async_graphql::Variables::from_json(variables)))
        .await
        .unwrap();
    (serde_json::to_value(&resp).unwrap(), serde_json::to_string(&resp.data).unwrap())
}

// Defects found by clients nobody here wrote (issue 11): each answer as the GraphQL spec
// and the GraphQL over HTTP spec require.
both_backends! {
    async fn include_and_skip_use_variable_defaults(s: Setup) {
        // Not sent: the default applies (true), so the field is included in every row.
        let (v, _) = request(&s.rt, "query($v: Boolean = true) { orders(limit: 2) { id status @include(if: $v) } }", json!({})).await;
        assert_eq!(v["data"], json!({ "orders": [{ "id": "o1", "status": "paid" }, { "id": "o2", "status": "pending" }] }), "{v}");
        let (v, _) = request(&s.rt, "query($v: Boolean = true) { orders(limit: 1) { id status @include(if: $v) } }", json!({ "v": false })).await;
        assert_eq!(v["data"], json!({ "orders": [{ "id": "o1" }] }), "{v}");
        let (v, _) = request(&s.rt, "query($s: Boolean = true) { orders(limit: 1) { id note @skip(if: $s) } }", json!({})).await;
        assert_eq!(v["data"], json!({ "orders": [{ "id": "o1" }] }), "{v}");
        // A variable used only by a directive (on `__typename` too) is used.
        for (w, expect) in [(true, json!({ "orders": [{ "id": "o1", "__typename": "Order" }] })), (false, json!({ "orders": [{ "id": "o1" }] }))] {
            let (v, _) = request(&s.rt, "query($w: Boolean!) { orders(limit: 1) { id __typename @include(if: $w) } }", json!({ "w": w })).await;
            assert_eq!(v["data"], expect, "{v}");
            assert!(v.get("errors").is_none(), "{v}");
        }
        let (v, _) = request(&s.rt, "query($w: Boolean!) { orders(limit: 1) { id ... @skip(if: $w) { status } } }", json!({ "w": false })).await;
        assert_eq!(v["data"], json!({ "orders": [{ "id": "o1", "status": "paid" }] }), "{v}");
        s.rt.shutdown().await.unwrap();
    }

    async fn a_null_in_a_non_null_field_nulls_its_nearest_nullable_parent(s: Setup) {
        // Two mutations, the second compensated: its field is non-null, so `data` is null.
        let (v, _) = request(&s.rt, r#"mutation { ok: placeOrder(customerId: "c1", totalCents: 10) { orderId } bad: placeOrder(customerId: "c1", totalCents: 500000) { orderId } }"#, json!({})).await;
        assert_eq!(v["data"], Value::Null, "{v}");
        assert_eq!(v["errors"].as_array().unwrap().len(), 1, "{v}");
        assert_eq!(v["errors"][0]["path"], json!(["bad"]), "{v}");
        assert_eq!(v["errors"][0]["extensions"]["code"], json!("SAGA_ABORTED"), "{v}");
        // A nullable root field that fails is null; its siblings stay, in order.
        let (v, text) = request(&s.rt, r#"{ a: maybeFail(fail: true) b: orderCount(customerId: "c2") c: maybeFail(fail: false) }"#, json!({})).await;
        assert_eq!(text, r#"{"a":null,"b":2,"c":null}"#, "{v}");
        assert_eq!(v["errors"][0]["path"], json!(["a"]), "{v}");
        assert_eq!(v["errors"].as_array().unwrap().len(), 1, "{v}");
        // A non-null field of a nested object is null in the data: the object is null
        // (it is nullable), with the error at the field's path.
        let db = s.rt.database("primary").unwrap();
        db.execute_script("INSERT INTO tb_order VALUES ('o9', 'nobody', 'new', 1, NULL, '2026-01-09T00:00:00Z')").await.unwrap();
        let (v, _) = request(&s.rt, r#"{ order(id: "o9") { id customer { name } } n: afterMs(ms: 1) }"#, json!({})).await;
        assert_eq!(v["data"], json!({ "order": null, "n": 1 }), "{v}");
        assert_eq!(v["errors"][0]["path"], json!(["order", "customer"]), "{v}");
        assert_eq!(v["errors"][0]["extensions"]["code"], json!("INTERNAL"), "{v}");
        assert!(v["errors"][0]["message"].as_str().unwrap().contains("`customer` has no value"), "{v}");
        // In a non-null list of non-null orders: the list and then `data` are null.
        let (v, _) = request(&s.rt, r#"{ orders(customerId: "nobody") { id customer { name } } }"#, json!({})).await;
        assert_eq!(v["data"], Value::Null, "{v}");
        assert_eq!(v["errors"][0]["path"], json!(["orders", 0, "customer"]), "{v}");
        s.rt.shutdown().await.unwrap();
    }

    async fn skipped_selections_are_empty_objects_not_nulls(s: Setup) {
        let (v, _) = request(&s.rt, "{ orders(limit: 2) { id @skip(if: true) } }", json!({})).await;
        assert_eq!(v["data"], json!({ "orders": [{}, {}] }), "{v}");
        let (v, text) = request(&s.rt, "query($no: Boolean = false) { orders @include(if: $no) { id } }", json!({})).await;
        assert_eq!(text, "{}", "{v}");
        assert!(v.get("errors").is_none(), "{v}");
        let (v, _) = request(&s.rt, r#"{ order(id: "o1") { customer { name @skip(if: true) } } }"#, json!({})).await;
        assert_eq!(v["data"], json!({ "order": { "customer": {} } }), "{v}");
        let (v, _) = request(&s.rt, r#"{ order(id: "o1") { ...F } } fragment F on Order { id @skip(if: true) }"#, json!({})).await;
        assert_eq!(v["data"], json!({ "order": {} }), "{v}");
        // A null from the database stays null, whatever its selection.
        let (v, _) = request(&s.rt, r#"{ order(id: "none") { id @skip(if: true) } }"#, json!({})).await;
        assert_eq!(v["data"], json!({ "order": null }), "{v}");
        let (v, _) = request(&s.rt, r#"{ order(id: "none") { ... @include(if: false) { id } } }"#, json!({})).await;
        assert_eq!(v["data"], json!({ "order": null }), "{v}");
        s.rt.shutdown().await.unwrap();
    }

    async fn response_keys_follow_the_selection_order(s: Setup) {
        // The fields finish in the order b, c, a; the response lists a, b, c.
        for _ in 0..3 {
            let (v, text) = request(&s.rt, "{ a: afterMs(ms: 40) b: afterMs(ms: 1) c: afterMs(ms: 20) }", json!({})).await;
            assert_eq!(text, r#"{"a":40,"b":1,"c":20}"#, "{v}");
        }
        let (v, text) = request(&s.rt, r#"{ z: orderCount(customerId: "c1") order(id: "o1") { status id customer { name id } } a: orders(limit: 1) { totalCents id } }"#, json!({})).await;
        assert_eq!(text, r#"{"z":2,"order":{"status":"paid","id":"o1","customer":{"name":"Ada","id":"c1"}},"a":[{"totalCents":1500,"id":"o1"}]}"#, "{v}");
        // Fragments merge into the selection in document order.
        let (v, text) = request(&s.rt, r#"{ order(id: "o1") { ...F status ... on Order { note id } } } fragment F on Order { id totalCents }"#, json!({})).await;
        assert_eq!(text, r#"{"order":{"id":"o1","totalCents":1500,"status":"paid","note":null}}"#, "{v}");
        s.rt.shutdown().await.unwrap();
    }

    async fn request_errors_carry_a_code_and_a_bounded_message(s: Setup) {
        let code = |v: &Value| v["errors"][0]["extensions"]["code"].clone();
        let (v, _) = request(&s.rt, "{ orders { id ", json!({})).await;
        assert_eq!(code(&v), json!("GRAPHQL_PARSE_FAILED"), "{v}");
        let (v, _) = request(&s.rt, "{ orders { id secret } }", json!({})).await;
        assert_eq!(code(&v), json!("GRAPHQL_VALIDATION_FAILED"), "{v}");
        let (v, _) = request(&s.rt, "query($n: Int!) { orders(limit: $n) { id } }", json!({})).await;
        assert_eq!(code(&v), json!("BAD_USER_INPUT"), "a missing variable: {v}");
        assert!(v["errors"][0]["message"].as_str().unwrap().contains("`$n` of type `Int!`"), "{v}");
        let mut deep = "{ __schema { types { fields { type {".to_string();
        deep += &" ofType {".repeat(14);
        deep += &format!(" name {}", "}".repeat(19));
        let (v, _) = request(&s.rt, &deep, json!({})).await;
        assert_eq!(code(&v), json!("QUERY_TOO_DEEP"), "{v}");
        let wide = format!("{{ {} }}", (0..1001).map(|i| format!("a{i}: orderCount(customerId: \"c1\")")).collect::<Vec<_>>().join(" "));
        let (v, _) = request(&s.rt, &wide, json!({})).await;
        assert_eq!(code(&v), json!("QUERY_TOO_COMPLEX"), "{v}");
        // 5,000 levels: refused with a short answer that does not echo the document.
        let huge = format!("{{ {} id {} }}", "orders { customer { ".repeat(2500), "} } ".repeat(2500));
        let (v, _) = request(&s.rt, &huge, json!({})).await;
        assert_eq!(code(&v), json!("QUERY_TOO_DEEP"), "{}", &v.to_string()[..500.min(v.to_string().len())]);
        assert!(v.to_string().len() < 1024, "{} bytes: {}", v.to_string().len(), &v.to_string()[..1024]);
        let (v, _) = request(&s.rt, &format!("{{ orders {{ id {} }}", "x ".repeat(20_000)), json!({})).await;
        assert!(v.to_string().len() < 4096, "a long error is cut: {} bytes", v.to_string().len());
        s.rt.shutdown().await.unwrap();
    }
}

/// One call to the router: status, headers and the body (JSON when it parses).
async fn http_call(
    app: &axum::Router,
    req: axum::http::Request<axum::body::Body>,
) -> (u16, axum::http::HeaderMap, Value) {
    use tower::ServiceExt;
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
    (
        status,
        headers,
        serde_json::from_slice::<Value>(&body).unwrap_or(Value::String(String::from_utf8_lossy(&body).into())),
    )
}

fn http_post(body: &str, content_type: Option<&str>, accept: &str) -> axum::http::Request<axum::body::Body> {
    let mut r = axum::http::Request::post("/graphql").header("accept", accept);
    if let Some(ct) = content_type {
        r = r.header("content-type", ct);
    }
    r.body(axum::body::Body::from(body.to_string())).unwrap()
}

const GRAPHQL_RESPONSE: &str = "application/graphql-response+json";

both_backends! {
    async fn status_codes_follow_the_media_type(s: Setup) {
        let app = s.rt.graphql_router().unwrap();
        let body = |q: &str| json!({ "query": q }).to_string();
        let compensated = body(r#"mutation { placeOrder(customerId: "c1", totalCents: 500000) { orderId } }"#);
        // A field error is not a request error: 200 under both media types, with `data`.
        for accept in [GRAPHQL_RESPONSE, "application/json"] {
            let (st, _, v) = http_call(&app, http_post(&compensated, Some("application/json"), accept)).await;
            assert_eq!(st, 200, "{accept}: {v}");
            assert_eq!(v["data"], Value::Null, "{v}");
            assert!(v.as_object().unwrap().contains_key("data"), "{v}");
            assert_eq!(v["errors"][0]["extensions"]["code"], json!("SAGA_ABORTED"), "{v}");
        }
        // Parse and validation errors: 400 without `data` under the newer media type,
        // 200 under application/json; neither ran, so neither has `data`.
        for (q, code) in [("{ orders { id ", "GRAPHQL_PARSE_FAILED"), ("{ orders { nope } }", "GRAPHQL_VALIDATION_FAILED")] {
            let (st, h, v) = http_call(&app, http_post(&body(q), Some("application/json"), GRAPHQL_RESPONSE)).await;
            assert_eq!(st, 400, "{q}: {v}");
            assert!(h["content-type"].to_str().unwrap().starts_with(GRAPHQL_RESPONSE));
            assert!(!v.as_object().unwrap().contains_key("data"), "{q}: no data under {GRAPHQL_RESPONSE}: {v}");
            assert_eq!(v["errors"][0]["extensions"]["code"], json!(code), "{v}");
            let (st, h, v) = http_call(&app, http_post(&body(q), Some("application/json"), "application/json")).await;
            assert_eq!(st, 200, "{q}: {v}");
            assert_eq!(h["content-type"].to_str().unwrap(), "application/json");
            assert!(!v.as_object().unwrap().contains_key("data"), "{q}: {v}");
            assert_eq!(v["errors"][0]["extensions"]["code"], json!(code), "{v}");
        }
        s.rt.shutdown().await.unwrap();
    }

    async fn http_requests_are_read_as_the_spec_says(s: Setup) {
        let app = s.rt.graphql_router().unwrap();
        let doc = "query A { a: orderCount(customerId: \"c1\") } query B { b: orderCount(customerId: \"c2\") }";
        let enc = |s: &str| s.bytes().map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") }).collect::<String>();
        let get = |qs: String| axum::http::Request::get(format!("/graphql?{qs}")).header("accept", "application/json").body(axum::body::Body::empty()).unwrap();
        let (st, _, v) = http_call(&app, get(format!("query={}&operationName=B", enc(doc)))).await;
        assert_eq!((st, &v), (200, &json!({ "data": { "b": 2 } })), "GET honours operationName");
        let (st, _, v) = http_call(&app, get(format!("query={}&variables={}", enc("query($c: String!) { orderCount(customerId: $c) }"), enc(r#"{"c":"c2"}"#)))).await;
        assert_eq!((st, &v), (200, &json!({ "data": { "orderCount": 2 } })));
        let (st, _, v) = http_call(&app, http_post(&json!({ "query": doc, "operationName": "A" }).to_string(), Some("application/json"), "application/json")).await;
        assert_eq!((st, &v), (200, &json!({ "data": { "a": 2 } })));
        // No Content-Type: refused, naming what is understood.
        let (st, h, v) = http_call(&app, http_post(&json!({ "query": "{ orderCount(customerId: \"c1\") }" }).to_string(), None, "application/json")).await;
        assert_eq!(st, 415, "{v}");
        assert!(h["content-type"].to_str().unwrap().starts_with("application/json"));
        assert!(v["errors"][0]["message"].as_str().unwrap().contains("application/json"), "{v}");
        // A JSON array is not a request (no batching).
        for b in [r#"["{ orderCount(customerId: \"c1\") }"]"#, r#"[{ "query": "{ orderCount(customerId: \"c1\") }" }]"#] {
            let (st, _, v) = http_call(&app, http_post(b, Some("application/json"), "application/json")).await;
            assert_eq!(st, 400, "{b}: {v}");
            assert!(v["errors"][0]["message"].as_str().unwrap().contains("JSON object"), "{v}");
            assert!(v.get("data").is_none(), "{v}");
        }
        // Other methods: 405 with Allow and a JSON error.
        for m in ["PUT", "DELETE", "PATCH"] {
            let req = axum::http::Request::builder().method(m).uri("/graphql").header("content-type", "application/json").body(axum::body::Body::from("{}")).unwrap();
            let (st, h, v) = http_call(&app, req).await;
            assert_eq!(st, 405, "{m}: {v}");
            assert_eq!(h["allow"].to_str().unwrap(), "GET, POST", "{m}");
            assert!(h["content-type"].to_str().unwrap().starts_with("application/json"), "{m}");
            assert!(v["errors"][0]["message"].as_str().unwrap().contains("GET or POST"), "{m}: {v}");
        }
        s.rt.shutdown().await.unwrap();
    }

    async fn the_sdl_is_what_introspection_serves(s: Setup) {
        let (intro, _) = request(&s.rt, fraiseql::graphql::INTROSPECTION_QUERY, json!({})).await;
        let builtin = ["String", "Int", "Float", "Boolean", "ID"];
        let mut served: Vec<String> = intro["data"]["__schema"]["types"].as_array().unwrap().iter()
            .map(|t| t["name"].as_str().unwrap().to_string())
            .filter(|n| !n.starts_with("__") && !builtin.contains(&n.as_str()))
            .collect();
        served.sort();
        let sdl = s.rt.graphql_sdl().unwrap();
        let mut exported: Vec<String> = sdl.lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                match w.next()? {
                    "type" | "input" | "enum" | "scalar" | "interface" | "union" => w.next().map(|n| n.trim_end_matches('{').to_string()),
                    _ => None,
                }
            })
            .filter(|n| !builtin.contains(&n.as_str()))
            .collect();
        exported.sort();
        assert_eq!(exported, served, "{sdl}");
        // Root field descriptions are the fns' doc comments, and no source path leaks.
        let fields = intro["data"]["__schema"]["types"].as_array().unwrap().iter().find(|t| t["name"] == "Query").unwrap()["fields"].clone();
        let desc = |name: &str| fields.as_array().unwrap().iter().find(|f| f["name"] == name).unwrap()["description"].clone();
        assert_eq!(desc("afterMs"), json!("Waits `ms` milliseconds, then answers `ms`: root fields that finish out of order."));
        assert_eq!(desc("order"), Value::Null, "no doc comment, no description");
        let mutation = intro["data"]["__schema"]["types"].as_array().unwrap().iter().find(|t| t["name"] == "Mutation").unwrap();
        assert_eq!(mutation["fields"][0]["description"], json!("Places an order; over the credit limit it is compensated."));
        let text = intro.to_string() + &sdl;
        assert!(!text.contains(".rs") && !text.contains("tests/"), "a source path leaks: {text}");
        s.rt.shutdown().await.unwrap();
    }
}

both_backends! {
    async fn automatic_persisted_queries_round_trip(s: Setup) {
        use sha2::Digest;
        let app = s.rt.graphql_router().unwrap();
        let apq = |outcome: &str| format!("fraiseql_graphql_persisted_queries_total{{outcome=\"{outcome}\"}}");
        s.rt.render_metrics().await.unwrap();
        let doc = "query($c: String!) { orderCount(customerId: $c) }";
        let hash: String = sha2::Sha256::digest(doc).iter().map(|b| format!("{b:02x}")).collect();
        let pq = json!({ "persistedQuery": { "version": 1, "sha256Hash": hash } });
        let hash_only = json!({ "extensions": pq, "variables": { "c": "c1" } }).to_string();
        // The hash alone, unknown: PersistedQueryNotFound, 200 so the client reads it.
        for accept in ["application/json", GRAPHQL_RESPONSE] {
            let (st, _, v) = http_call(&app, http_post(&hash_only, Some("application/json"), accept)).await;
            assert_eq!(st, 200, "{accept}: {v}");
            assert_eq!(v["errors"][0]["message"], json!("PersistedQueryNotFound"), "{v}");
            assert_eq!(v["errors"][0]["extensions"]["code"], json!("PERSISTED_QUERY_NOT_FOUND"), "{v}");
            assert!(v.get("data").is_none(), "{v}");
        }
        assert_eq!(counter(&s.rt, &apq("miss")).await, 2, "one miss per request");
        // The client retries with the document: it runs, and is remembered.
        let both = json!({ "query": doc, "extensions": pq, "variables": { "c": "c1" } }).to_string();
        let (st, _, v) = http_call(&app, http_post(&both, Some("application/json"), "application/json")).await;
        assert_eq!((st, &v), (200, &json!({ "data": { "orderCount": 2 } })));
        let (st, _, v) = http_call(&app, http_post(&hash_only, Some("application/json"), "application/json")).await;
        assert_eq!((st, &v), (200, &json!({ "data": { "orderCount": 2 } })), "the hash alone now runs");
        assert_eq!((counter(&s.rt, &apq("stored")).await, counter(&s.rt, &apq("hit")).await), (1, 1));
        // GET with the hash: what CDNs cache.
        let enc = |s: &str| s.bytes().map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") }).collect::<String>();
        let get = axum::http::Request::get(format!("/graphql?extensions={}&variables={}", enc(&pq.to_string()), enc(r#"{"c":"c2"}"#)))
            .header("accept", GRAPHQL_RESPONSE)
            .body(axum::body::Body::empty())
            .unwrap();
        let (st, _, v) = http_call(&app, get).await;
        assert_eq!((st, &v), (200, &json!({ "data": { "orderCount": 2 } })));
        // A hash that is not the document's is refused, and nothing is remembered.
        let wrong = json!({ "query": "{ orderCount(customerId: \"c2\") }", "extensions": pq }).to_string();
        let (st, _, v) = http_call(&app, http_post(&wrong, Some("application/json"), "application/json")).await;
        assert_eq!(st, 400, "{v}");
        assert!(v["errors"][0]["message"].as_str().unwrap().contains("not the SHA-256"), "{v}");
        // A persisted mutation is not run by GET either.
        let m = r#"mutation { placeOrder(customerId: "c1", totalCents: 1) { orderId } }"#;
        let mh: String = sha2::Sha256::digest(m).iter().map(|b| format!("{b:02x}")).collect();
        let mpq = json!({ "persistedQuery": { "version": 1, "sha256Hash": mh } });
        let get = |x: &Value| axum::http::Request::get(format!("/graphql?extensions={}", enc(&x.to_string()))).body(axum::body::Body::empty()).unwrap();
        let (st, _, v) = http_call(&app, http_post(&json!({ "query": m, "extensions": mpq }).to_string(), Some("application/json"), "application/json")).await;
        assert_eq!(st, 200, "{v}");
        let (st, h, v) = http_call(&app, get(&mpq)).await;
        assert_eq!(st, 405, "{v}");
        assert_eq!(h["allow"], "POST");
        assert_eq!(data(&s.rt, r#"{ orderCount(customerId: "c1") }"#).await, json!({ "orderCount": 3 }), "the mutation ran once, by POST");
        s.rt.shutdown().await.unwrap();
    }
}

/// A response body as compact JSON text, key order kept (the database prints `" : "`
/// where serde prints `":"`; nothing else may differ).
fn compact(text: &str) -> String {
    let (mut out, mut in_string, mut escaped) = (String::with_capacity(text.len()), false, false);
    for c in text.chars() {
        if in_string {
            out.push(c);
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
        } else if !c.is_whitespace() {
            in_string = c == '"';
            out.push(c);
        }
    }
    out
}

/// The body of one POST, as text.
async fn post_text(app: &axum::Router, query: &str, variables: &Value) -> String {
    use tower::ServiceExt;
    let body = json!({ "query": query, "variables": variables }).to_string();
    let resp = app.clone().oneshot(http_post(&body, Some("application/json"), "application/json")).await.unwrap();
    assert_eq!(resp.status(), 200);
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// A counter's value from /metrics (`name{labels}`), 0 before its first increment.
async fn counter(rt: &Runtime, series: &str) -> u64 {
    let text = rt.render_metrics().await.unwrap();
    let prefix = format!("{series} ");
    text.lines().find_map(|l| l.strip_prefix(prefix.as_str())).map_or(0, |n| n.trim().parse().unwrap())
}

/// How many requests the compiled path answered with this outcome.
async fn plans(rt: &Runtime, outcome: &str) -> u64 {
    counter(rt, &format!("fraiseql_graphql_plans_total{{outcome=\"{outcome}\"}}")).await
}

both_backends! {
    async fn a_compiled_plan_answers_exactly_as_the_executor_did(s: Setup) {
        let app = s.rt.graphql_router().unwrap();
        s.rt.render_metrics().await.unwrap();
        // (document, variables of each request, whether the compiled path serves it)
        let corpus: Vec<(&str, Vec<Value>, bool)> = vec![
            ("{ orders { id status totalCents } }", vec![json!({})], true),
            ("{ orders { id note customer { name } lines { sku quantity } } }", vec![json!({})], true),
            (r#"{ a: orders(customerId: "c1") { key: id n: note } b: order(id: "o3") { id __typename } }"#, vec![json!({})], true),
            ("query Q { orders { ...F } } fragment F on Order { id ... on Order { status } customer { ...C } } fragment C on Customer { name __typename }", vec![json!({})], true),
            (
                "query($withLines: Boolean = true, $skipNote: Boolean!) { orders { id lines @include(if: $withLines) { sku } note @skip(if: $skipNote) } }",
                vec![json!({ "skipNote": false }), json!({ "withLines": false, "skipNote": true }), json!({ "skipNote": false })],
                true,
            ),
            (r#"{ orders(where: { status: { eq: "paid" } }, orderBy: [TOTAL_CENTS_DESC], limit: 1) { id } }"#, vec![json!({})], true),
            ("query($c: String, $n: Int) { orders(customerId: $c, limit: $n) { id } }", vec![json!({ "c": "c2", "n": 1 }), json!({ "c": "c1" })], true),
            (r#"{ order(id: "nope") { id } }"#, vec![json!({})], true),
            ("{ __typename orders { id } }", vec![json!({})], true),
            (r#"{ ordersIn(status: ["paid", "pending"]) { id } }"#, vec![json!({})], true),
            // A custom resolver's field: the executor answers, every time.
            (r#"{ orderCount(customerId: "c1") orders { id } }"#, vec![json!({})], false),
            // A variable of an input type: not coerced by the plan.
            ("query($w: OrderWhere) { orders(where: $w) { id } }", vec![json!({ "w": { "status": { "eq": "paid" } } })], false),
        ];
        let mut expected_hits = 0;
        for (q, requests, compiled) in &corpus {
            // The first request is answered by the executor, which the plan is learnt from.
            let first = post_text(&app, q, &requests[0]).await;
            assert!(!first.contains("errors"), "{q}: {first}");
            for vars in requests {
                let executed = if vars == &requests[0] { first.clone() } else {
                    // The executor's answer for these variables: a document it alone sees.
                    post_text(&app, &format!("{q} "), vars).await
                };
                let before = plans(&s.rt, "hit").await;
                let again = post_text(&app, q, vars).await;
                assert_eq!(compact(&again), compact(&executed), "{q} with {vars}");
                let served = plans(&s.rt, "hit").await - before;
                assert_eq!(served, u64::from(*compiled), "{q} with {vars}: served by the plan");
                expected_hits += u64::from(*compiled);
            }
        }
        assert!(expected_hits >= 12);

        // One statement per root field on the compiled path too.
        {
            use tracing_subscriber::layer::SubscriberExt;
            let seen = Statements::default();
            let subscriber = tracing_subscriber::registry().with(seen.clone()).with(tracing_subscriber::filter::LevelFilter::DEBUG);
            let _guard = tracing::subscriber::set_default(subscriber);
            let before = plans(&s.rt, "hit").await;
            post_text(&app, corpus[2].0, &json!({})).await;
            assert_eq!(plans(&s.rt, "hit").await - before, 1);
            assert_eq!(seen.0.lock().unwrap().len(), 2, "two root fields, two statements");
        }

        // Variables the plan cannot take as they are (a string for an Int, a number for
        // a String): the executor answers, with its error naming the argument.
        let q = corpus[6].0;
        for (bad, argument) in [(json!({ "c": "c1", "n": "many" }), "limit"), (json!({ "c": 5 }), "customerId")] {
            let before = plans(&s.rt, "fallback").await;
            let v: Value = serde_json::from_str(&post_text(&app, q, &bad).await).unwrap();
            assert_eq!(plans(&s.rt, "fallback").await - before, 1, "{bad}: left to the executor");
            assert_eq!(v["errors"][0]["extensions"]["code"], json!("GRAPHQL_VALIDATION_FAILED"), "{bad}: {v}");
            assert!(v["errors"][0]["message"].as_str().unwrap().contains(argument), "{bad}: {v}");
            assert!(v.get("data").is_none(), "{bad}: {v}");
        }

        // A row that breaks its type (an order whose customer does not exist, where
        // `customer` is non-null): the plan leaves it to the executor, whose answer —
        // an error and the null propagated — is the same as a fresh document's.
        s.rt.database("primary").unwrap()
            .execute_script("INSERT INTO tb_order VALUES ('o5', 'c9', 'paid', 10, NULL, '2026-01-05T00:00:00Z')")
            .await
            .unwrap();
        let q = corpus[1].0;
        let before = plans(&s.rt, "fallback").await;
        let again = post_text(&app, q, &json!({})).await;
        assert_eq!(plans(&s.rt, "fallback").await - before, 1, "left to the executor");
        let fresh = post_text(&app, &format!("{q} "), &json!({})).await;
        assert!(fresh.contains("errors"), "{fresh}");
        assert_eq!(compact(&again), compact(&fresh));
        s.rt.shutdown().await.unwrap();
    }
}

/// The reference implementation's answers: graphql-js executes a corpus over the schema
/// our introspection describes, with resolvers reading the rows the view returns; our
/// endpoint answers the same, key order included — the first time (the executor) and
/// again (the compiled plan).
#[tokio::test(flavor = "current_thread")]
async fn graphql_js_executes_a_corpus_to_the_same_answers_key_order_included() {
    let s = setup(Backend::Postgres).await;
    let intro = s.rt.graphql(fraiseql::graphql::INTROSPECTION_QUERY).await.unwrap();
    let rows: Vec<(String,)> =
        s.rt.database("primary")
            .unwrap()
            .fetch_all("SELECT data::text FROM v_order ORDER BY created_at", ())
            .await
            .unwrap();
    let rows: Vec<Value> = rows.iter().map(|(r,)| serde_json::from_str(r).unwrap()).collect();
    let cases: Vec<(&str, Value)> = vec![
        ("{ orders { id status totalCents note } }", json!({})),
        ("{ orders { id customer { id name } lines { sku quantity } } }", json!({})),
        (r#"{ a: orders(customerId: "c1") { key: id n: note } b: order(id: "o3") { id __typename } c: order(id: "none") { id } }"#, json!({})),
        ("query Q { orders(limit: 2, offset: 1) { ...F } } fragment F on Order { id ... on Order { status } customer { ...C } } fragment C on Customer { name __typename }", json!({})),
        ("query($withLines: Boolean = true, $skipNote: Boolean!) { orders { id lines @include(if: $withLines) { sku } note @skip(if: $skipNote) } }", json!({ "skipNote": false })),
        ("query($withLines: Boolean = true, $skipNote: Boolean!) { orders { id lines @include(if: $withLines) { sku } note @skip(if: $skipNote) } }", json!({ "withLines": false, "skipNote": true })),
        ("query($c: String, $n: Int) { orders(customerId: $c, limit: $n) { totalCents id } }", json!({ "c": "c2", "n": 1 })),
        (r#"{ __typename ordersIn(status: ["paid", "pending"]) { status id } }"#, json!({})),
        (r#"{ orders { lines { quantity sku } id lines2: lines { sku } } }"#, json!({})),
        (r#"{ orders { ... @skip(if: true) { id } status } }"#, json!({})),
    ];
    let list: Vec<Value> = cases.iter().map(|(q, v)| json!({ "query": q, "variables": v })).collect();
    let out = graphql_js("differential.cjs", &[&serde_json::to_value(&intro).unwrap(), &json!(rows), &json!(list)]);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "graphql-js failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let expected: Vec<&str> = stdout.lines().collect();
    assert_eq!(expected.len(), cases.len(), "{stdout}");
    let app = s.rt.graphql_router().unwrap();
    s.rt.render_metrics().await.unwrap();
    let hits_before = plans(&s.rt, "hit").await;
    for ((q, vars), reference) in cases.iter().zip(expected) {
        assert!(!reference.contains("errors"), "graphql-js: {q}: {reference}");
        for pass in ["executor", "plan"] {
            let ours = post_text(&app, q, vars).await;
            assert_eq!(compact(&ours), compact(reference), "{q} with {vars} ({pass})");
        }
    }
    // Every document but the repeated one was compiled after its first answer.
    assert_eq!(plans(&s.rt, "hit").await - hits_before, cases.len() as u64 + 1);
    s.rt.shutdown().await.unwrap();
}
