//! The seed's use cases, as built example programs, run end to end: on the embedded
//! default (no services) and on PostgreSQL (through `FRAISEQL_*` environment variables).

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{Backend, TestDbs};

/// `target/<profile>/examples/<name>`, next to this test's own binary in `deps/`.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let path = exe.parent().unwrap().parent().unwrap().join("examples").join(name);
    assert!(
        path.exists(),
        "example `{name}` is not built at {}: run the suite with `scripts/test` (it builds all targets) or `cargo build --examples`",
        path.display()
    );
    path
}

async fn run(name: &str, backend: Backend, dbs: &[&str], expect: &[&str]) {
    let mut cmd = Command::new(example(name));
    cmd.env("RUST_LOG", "warn");
    let _keep;
    if backend == Backend::Postgres {
        let t = TestDbs::new(backend, dbs).await;
        for (k, v) in t.env() {
            cmd.env(k, v);
        }
        _keep = t;
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{name} failed on {backend:?}:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    for e in expect {
        assert!(stdout.contains(e), "{name} on {backend:?}: output lacks `{e}`:\n{stdout}");
    }
    // Each event exactly once: the same subject and data never show up twice.
    let events: Vec<&str> = stdout.lines().filter(|l| l.starts_with("event ")).collect();
    let mut unique = events.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), events.len(), "{name}: an event was delivered twice: {events:#?}");
}

const ORDERS: &[&str] = &[
    "stock after order 1: [(\"KB-01\", 8), (\"MOUSE-7\", 4)]",
    "order 2 failed as expected",
    "stock after order 2 (reservation released): [(\"KB-01\", 8), (\"MOUSE-7\", 4)]",
    "orders: [(\"alice\", \"created\"), (\"bob\", \"cancelled\")]",
    "compensation  inventory   committed",
    "event fraiseql.payment.processed",
    "event fraiseql.inventory.released",
    "event fraiseql.order.cancelled {\"order_id\":\"ord-",
];
const TRANSFER: &[&str] = &[
    "transferred: Transaction",
    "balances (unchanged): [(\"acc-alice\", 1975000), (\"acc-bob\", 75000)]",
    "total money conserved: 2050000",
    "event fraiseql.transaction.completed",
    "event compliance.transaction.created",
    "event compliance.alert.suspicious_transaction",
];
const WITH_HISTORY: &[&str] = &[
    "1 view-backed queries checked",
    "order ord-1: status shipped, 4 events, 3 status changes: created→paid, paid→packed, packed→shipped",
    "order ord-2: status cancelled, 2 events, 1 status changes: created→cancelled",
    "order ord-9: None",
    "as JSON: status \"cancelled\" after 2 events",
];
const PROJECTION: &[&str] = &[
    "published 150 events for 50 orders",
    "live projection: 50 orders, 40 shipped, 10 cancelled",
    "rebuilt from 150 events: 50 orders",
    "rebuilt projection is identical to the live one",
    "order ord-007: Some((\"ord-007\", \"shipped\"))",
];

#[tokio::test]
async fn orders_runs_on_the_embedded_default() {
    run("orders", Backend::Sqlite, &[], ORDERS).await;
}

#[tokio::test]
async fn orders_runs_on_postgres() {
    run("orders", Backend::Postgres, &["primary", "inventory", "payments"], ORDERS).await;
}

#[tokio::test]
async fn transfer_funds_runs_on_the_embedded_default() {
    run("transfer_funds", Backend::Sqlite, &[], TRANSFER).await;
}

#[tokio::test]
async fn transfer_funds_runs_on_postgres() {
    run("transfer_funds", Backend::Postgres, &["primary", "ledger"], TRANSFER).await;
}

#[tokio::test]
async fn order_projection_runs_on_the_embedded_default() {
    run("order_projection", Backend::Sqlite, &[], PROJECTION).await;
}

#[tokio::test]
async fn order_projection_runs_on_postgres() {
    run("order_projection", Backend::Postgres, &["primary"], PROJECTION).await;
}

#[tokio::test]
async fn order_with_history_runs_on_the_embedded_default() {
    run("order_with_history", Backend::Sqlite, &[], WITH_HISTORY).await;
}

#[tokio::test]
async fn order_with_history_runs_on_postgres() {
    run("order_with_history", Backend::Postgres, &["primary"], WITH_HISTORY).await;
}

/// `examples/server.rs` started on a free port: the process, its `host:port`, and the
/// databases it uses (dropped after the process).
async fn start_server(backend: Backend) -> (std::process::Child, String, Option<TestDbs>) {
    use std::io::{BufRead, BufReader};
    let mut cmd = Command::new(example("server"));
    cmd.args(["--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "warn")
        .env("CONSOLE_PASSWORD", CONSOLE_PASSWORD)
        .stdout(std::process::Stdio::piped());
    let mut keep = None;
    if backend == Backend::Postgres {
        let t = TestDbs::new(backend, &["primary"]).await;
        for (k, v) in t.env() {
            cmd.env(k, v);
        }
        keep = Some(t);
    }
    let mut child = cmd.spawn().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut addr = None;
    for _ in 0..20 {
        let mut line = String::new();
        if out.read_line(&mut line).unwrap() == 0 {
            break;
        }
        if let Some(rest) = line.trim().strip_prefix("GraphQL at http://") {
            addr = Some(rest.trim_end_matches("/graphql").to_string());
            break;
        }
    }
    (child, addr.expect("the server prints its address"), keep)
}

/// The password the server example's console is started with (user `operator`).
const CONSOLE_PASSWORD: &str = "correct horse";

/// Stop the server with Ctrl-C, as a person would.
fn interrupt(child: &mut std::process::Child) {
    // SAFETY: kill(2) on our own child.
    #[allow(unsafe_code)]
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    assert!(child.wait().unwrap().success(), "the server stops cleanly on Ctrl-C");
}

/// `examples/server.rs` really serves GraphQL over HTTP: a query, a mutation, and a
/// compensated mutation, over a TCP connection; then it stops on Ctrl-C.
async fn serve(backend: Backend) {
    use std::io::{Read, Write};
    let (mut child, addr, _keep) = start_server(backend).await;
    let post = |query: &str| {
        let body = serde_json::json!({ "query": query }).to_string();
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        write!(s, "POST /graphql HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        let (head, body) = resp.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200"), "{resp}");
        serde_json::from_str::<serde_json::Value>(body).unwrap_or_else(|e| panic!("{e}: {body}"))
    };
    let v = post(
        "{ orders(where: {status: {eq: \"paid\"}}, orderBy: [TOTAL_CENTS_DESC]) { id totalCents customer { name } } }",
    );
    assert_eq!(
        v,
        serde_json::json!({ "data": { "orders": [{ "id": "ord-1", "totalCents": 4200, "customer": { "name": "Alice" } }, { "id": "ord-2", "totalCents": 1300, "customer": { "name": "Bob" } }] } })
    );
    let v = post(
        "mutation { placeOrder(customerId: \"alice\", sku: \"KB-01\", quantity: 1, totalCents: 900) { orderId } }",
    );
    let id = v["data"]["placeOrder"]["orderId"].as_str().unwrap_or_else(|| panic!("{v}")).to_string();
    let v = post(&format!("{{ order(id: \"{id}\") {{ status lines {{ sku quantity }} }} }}"));
    assert_eq!(
        v,
        serde_json::json!({ "data": { "order": { "status": "new", "lines": [{ "sku": "KB-01", "quantity": 1 }] } } })
    );
    let v = post(
        "mutation { placeOrder(customerId: \"bob\", sku: \"DESK-3\", quantity: 1, totalCents: 9000) { orderId } }",
    );
    assert_eq!(v["errors"][0]["extensions"]["code"], "SAGA_ABORTED", "{v}");
    assert_eq!(v["errors"][0]["path"], serde_json::json!(["placeOrder"]));

    // What `curl /metrics` shows after those requests.
    let metrics = {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        write!(s, "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        let (head, body) = resp.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200") && head.contains("text/plain; version=0.0.4"), "{head}");
        body.to_string()
    };
    let value = |name: &str, labels: &[(&str, &str)]| common::metric(&metrics, name, labels);
    let order = [("saga", "place_order")];
    assert_eq!(value("fraiseql_sagas_started_total", &order), Some(2.0), "{metrics}");
    assert_eq!(value("fraiseql_sagas_finished_total", &[order[0], ("status", "completed")]), Some(1.0));
    assert_eq!(value("fraiseql_sagas_finished_total", &[order[0], ("status", "compensated")]), Some(1.0));
    let attempts = |step, phase, outcome| {
        value(
            "fraiseql_step_duration_seconds_count",
            &[order[0], ("step", step), ("phase", phase), ("outcome", outcome)],
        )
    };
    assert_eq!(attempts("insert_order", "step", "committed"), Some(2.0), "{metrics}");
    assert_eq!(attempts("check_credit", "step", "committed"), Some(1.0));
    assert_eq!(attempts("check_credit", "step", "failed"), Some(1.0));
    assert_eq!(attempts("insert_order", "compensation", "committed"), Some(1.0));
    assert_eq!(value("fraiseql_query_duration_seconds_count", &[("query", "orders")]), Some(1.0));
    assert_eq!(value("fraiseql_query_duration_seconds_count", &[("query", "order")]), Some(1.0));
    assert_eq!(value("fraiseql_outbox_pending", &[("database", "primary")]), Some(0.0));
    let requests = |outcome| {
        value("fraiseql_graphql_requests_total", &[("operation", "anonymous"), ("status", "200"), ("outcome", outcome)])
    };
    assert_eq!((requests("ok"), requests("field_error")), (Some(3.0), Some(1.0)), "{metrics}");
    assert!(metrics.contains("# HELP fraiseql_sagas_finished_total"), "{metrics}");
    assert!(!metrics.contains("saga_id") && !metrics.contains("ord-"), "no ids in labels: {metrics}");

    // The saga console, behind the example's own authentication (HTTP Basic).
    let console = |authorization: Option<&str>| {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        let auth = authorization.map(|a| format!("Authorization: {a}\r\n")).unwrap_or_default();
        write!(s, "GET /console/sagas?status=compensated HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n")
            .unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        resp
    };
    let basic = |credentials: &str| {
        use base64::Engine;
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(credentials))
    };
    for refused in [console(None), console(Some(&basic("operator:guess")))] {
        assert!(refused.starts_with("HTTP/1.1 401") && refused.contains("www-authenticate: Basic"), "{refused}");
    }
    let page = console(Some(&basic(&format!("operator:{CONSOLE_PASSWORD}"))));
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.contains("<title>Sagas · FraiseQL console</title>"), "{page}");
    assert_eq!(page.matches("data-saga-id=").count(), 1, "the over-limit order is the compensated one: {page}");
    interrupt(&mut child);
}

#[tokio::test]
async fn server_serves_graphql_on_the_embedded_default() {
    serve(Backend::Sqlite).await;
}

#[tokio::test]
async fn server_serves_graphql_on_postgres() {
    serve(Backend::Postgres).await;
}

/// `server --sdl > schema.graphql` gives a schema file: stdout is the SDL alone (it
/// parses, and holds the example's types), the logs go to stderr.
#[test]
fn server_sdl_writes_only_the_schema_to_stdout() {
    let out = Command::new(example("server")).arg("--sdl").env("RUST_LOG", "debug").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(!stderr.is_empty(), "debug logs are written, to stderr");
    let doc = fraiseql::graphql::async_graphql::parser::parse_schema(stdout.as_ref())
        .unwrap_or_else(|e| panic!("stdout is not SDL ({e}):\n{stdout}"));
    let names: Vec<String> = doc
        .definitions
        .iter()
        .filter_map(|d| match d {
            fraiseql::graphql::async_graphql::parser::types::TypeSystemDefinition::Type(t) => {
                Some(t.node.name.node.to_string())
            }
            _ => None,
        })
        .collect();
    for t in ["Query", "Mutation", "Order", "OrderLine", "Customer", "PlacedOrder", "OrderWhere"] {
        assert!(names.iter().any(|n| n == t), "`{t}` in {names:?}");
    }
}

/// The GraphQL over HTTP spec's own audit suite (graphql-http's `serverAudits`, run by
/// Node.js) against `examples/server.rs` on PostgreSQL: every MUST and SHOULD audit passes.
#[tokio::test]
async fn graphql_http_audits_pass_against_the_server_on_postgres() {
    let node_path = std::env::var("FRAISEQL_TEST_NODE_PATH")
        .expect("FRAISEQL_TEST_NODE_PATH is not set: run the suite with `scripts/test` (it installs graphql-http)");
    let (mut child, addr, _keep) = start_server(Backend::Postgres).await;
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/audit.cjs");
    let out = Command::new("node")
        .arg(&script)
        .arg(format!("http://{addr}/graphql"))
        .env("NODE_PATH", &node_path)
        .output()
        .expect("node (scripts/test installs Node.js)");
    interrupt(&mut child);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let failed: Vec<&str> =
        stdout.lines().filter(|l| l.contains("\"status\"") && !l.contains("\"status\":\"ok\"")).collect();
    assert!(out.status.success(), "audits failed:\n{}\n{}", failed.join("\n"), String::from_utf8_lossy(&out.stderr));
    let counts: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap_or("")).unwrap();
    assert_eq!(counts["failed"], 0, "{stdout}");
    assert!(counts["ok"].as_u64().unwrap() >= 30, "the suite ran its MUST and SHOULD audits: {stdout}");
}
