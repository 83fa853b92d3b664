//! One trace across two processes (feature `opentelemetry`): a saga in one process
//! publishes an event from its step through the outbox and NATS; a durable handler in
//! another process handles it. Both export their spans by OTLP/HTTP to a collector this
//! test runs, through `fraiseql::otel::install`. The handler's span is a child of the
//! step's span, in the trace the caller's span began, and the message on the stream
//! carries the step's span as its `traceparent` header.

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Backend, NatsServer, TestDbs};
use fraiseql::prelude::*;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use serde_json::json;
use tracing::Instrument;

const ROLE: &str = "FRAISEQL_TRACING_ROLE";
const SUBJECT: &str = "fraiseql.traced.placed";

#[saga(steps = ["traced_place"])]
pub async fn traced_order(n: i64) -> fraiseql::Result<()>;

#[saga_step("traced_place")]
async fn traced_place(ctx: &mut SagaContext, n: i64) -> fraiseql::Result<()> {
    ctx.publish(SUBJECT, json!({ "n": n })).await?;
    Ok(())
}

#[subscribe("fraiseql.traced.placed", durable = "traced", database = "primary")]
async fn traced_handled(event: Event, ctx: &mut EventTx) -> fraiseql::Result<()> {
    ctx.execute("INSERT INTO handled (event_id) VALUES ($1)", (&event.id,)).await?;
    Ok(())
}

async fn handled(rt: &Runtime) -> i64 {
    let (n,): (i64,) = rt.database("primary").unwrap().fetch_one("SELECT COUNT(*) FROM handled", ()).await.unwrap();
    n
}

/// A span as the collector received it.
#[derive(Debug, Clone)]
struct Collected {
    service: String,
    name: String,
    trace_id: String,
    span_id: String,
    parent: String,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// An OTLP/HTTP (protobuf) trace receiver on a free port: what it received, and its URL.
async fn collector() -> (Arc<Mutex<Vec<Collected>>>, String) {
    let spans = Arc::new(Mutex::new(Vec::new()));
    let sink = spans.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: axum::body::Bytes| {
            let sink = sink.clone();
            async move {
                let req = ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf export request");
                let mut out = sink.lock().unwrap();
                for rs in req.resource_spans {
                    let service = rs
                        .resource
                        .iter()
                        .flat_map(|r| &r.attributes)
                        .find(|kv| kv.key == "service.name")
                        .and_then(|kv| kv.value.as_ref())
                        .map(|v| format!("{:?}", v.value))
                        .unwrap_or_default();
                    for ss in rs.scope_spans {
                        for s in ss.spans {
                            out.push(Collected {
                                service: service.clone(),
                                name: s.name,
                                trace_id: hex(&s.trace_id),
                                span_id: hex(&s.span_id),
                                parent: hex(&s.parent_span_id),
                            });
                        }
                    }
                }
                ([("content-type", "application/x-protobuf")], Vec::<u8>::new())
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (spans, url)
}

/// The two child roles; run directly (no role), it checks that an event published
/// outside any OpenTelemetry span carries no trace context.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tracing_child() {
    let Ok(role) = std::env::var(ROLE) else {
        let rt = fraiseql::testing::runtime().await.unwrap();
        let mut history = rt.follow_history(SUBJECT, None).await.unwrap();
        rt.publish(SUBJECT, json!({ "n": 0 })).await.unwrap();
        let ev = futures_util::StreamExt::next(&mut history).await.unwrap().unwrap();
        assert_eq!((ev.traceparent, ev.tracestate), (None, None));
        return;
    };
    let guard = fraiseql::otel::install(&role).unwrap();
    let config = fraiseql::Config::from_env().unwrap();
    match role.as_str() {
        "publisher" => {
            let rt = Runtime::builder().config(config).consume(false).start().await.unwrap();
            rt.scope(traced_order(1)).instrument(tracing::info_span!("checkout")).await.unwrap();
            for _ in 0..500 {
                if rt.outbox().pending().await.unwrap() == 0 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            assert_eq!(rt.outbox().pending().await.unwrap(), 0, "the event left the outbox");
            rt.shutdown().await.unwrap();
        }
        "consumer" => {
            let rt = Runtime::builder().config(config).start().await.unwrap();
            for _ in 0..1_000 {
                if handled(&rt).await == 1 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            assert_eq!(handled(&rt).await, 1, "the consumer handled the event");
            rt.shutdown().await.unwrap();
        }
        other => panic!("unknown role {other}"),
    }
    // Export what is left before exiting.
    guard.flush().unwrap();
    drop(guard);
    println!("ROLE DONE");
}

fn spawn(role: &str, dbs: &TestDbs, nats: &NatsServer, collector: &str) -> Child {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["tracing_child", "--exact", "--nocapture", "--test-threads=1"])
        .env(ROLE, role)
        .env("FRAISEQL_EVENTS__URL", nats.url())
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", collector)
        // Quiet logs: the spans are exported whatever RUST_LOG says.
        .env("RUST_LOG", "error")
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    for (k, v) in dbs.env() {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap()
}

fn finish(child: Child, role: &str) {
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && stdout.contains("ROLE DONE"), "the {role} process failed: {stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saga_its_step_and_the_handler_in_another_process_are_one_trace() {
    common::init_tracing();
    let (spans, url) = collector().await;
    let nats = NatsServer::start().await;
    let dbs = TestDbs::new(Backend::Postgres, &["primary"]).await;
    let setup = dbs.start(|c| c.events.url = Some(nats.url())).await;
    setup.database("primary").unwrap().execute_script("CREATE TABLE handled (event_id TEXT NOT NULL)").await.unwrap();
    setup.shutdown().await.unwrap();

    // The consumer first, so its durable consumer exists; then the publisher.
    let consumer = spawn("consumer", &dbs, &nats, &url);
    tokio::time::sleep(Duration::from_millis(500)).await;
    finish(spawn("publisher", &dbs, &nats, &url), "publisher");
    finish(consumer, "consumer");

    let spans = spans.lock().unwrap().clone();
    let one = |service: &str, name: &str| -> Collected {
        let found: Vec<_> = spans.iter().filter(|s| s.service.contains(service) && s.name == name).collect();
        assert_eq!(found.len(), 1, "one `{name}` span from the {service}: {spans:#?}");
        found[0].clone()
    };
    let checkout = one("publisher", "checkout");
    let saga = one("publisher", "saga");
    let step = one("publisher", "step");
    let handler = one("consumer", "handler");
    assert_eq!(saga.parent, checkout.span_id, "the saga's span is a child of the caller's");
    assert_eq!(step.parent, saga.span_id, "the step's span is a child of the saga's");
    assert_eq!(handler.parent, step.span_id, "the handler's span (other process) is a child of the step's");
    for s in [&saga, &step, &handler] {
        assert_eq!(s.trace_id, checkout.trace_id, "`{}` is in the caller's trace", s.name);
    }

    // The message itself carries the step's context, for other NATS clients.
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let msg = js.get_stream("FRAISEQL").await.unwrap().get_last_raw_message_by_subject(SUBJECT).await.unwrap();
    let traceparent = msg.headers.get("traceparent").map(|v| v.as_str().to_string());
    assert_eq!(traceparent, Some(format!("00-{}-{}-01", checkout.trace_id, step.span_id)));
    let envelope: serde_json::Value = serde_json::from_slice(&msg.payload).unwrap();
    assert_eq!(envelope["traceparent"].as_str(), traceparent.as_deref(), "the envelope carries it too");
}
