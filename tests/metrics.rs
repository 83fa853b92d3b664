//! `GET /metrics`: the series of events and handlers, with the values the work done
//! implies (the saga and query series are checked on `examples/server.rs`, in
//! tests/examples.rs). One runtime per test process (nextest), so counts start at zero.

mod common;

use std::time::Duration;

use common::{metric, Backend, TestDbs};
use fraiseql::prelude::*;
use serde::Deserialize;
use serde_json::json;
use tower::ServiceExt;

#[derive(Debug, Deserialize)]
struct Paid {
    cents: i64,
}

#[subscribe("fraiseql.metered.paid", durable = "metered-totals", database = "primary")]
async fn total(event: Event<Paid>, ctx: &mut EventTx) -> fraiseql::Result<()> {
    ctx.execute("UPDATE metered SET cents = cents + $1", (event.data.cents,)).await?;
    Ok(())
}

/// Slow on purpose: what is published behind the first event waits.
#[subscribe("fraiseql.metered.audit", durable = "metered-audit")]
async fn audit(event: Event<Paid>, _ctx: &EventContext) -> fraiseql::Result<()> {
    if event.data.cents == 0 {
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    Ok(())
}

#[saga(steps = ["metered_pay"])]
pub async fn metered_pay(cents: i64) -> fraiseql::Result<()>;

#[saga_step("metered_pay")]
async fn pay(ctx: &mut SagaContext, cents: i64) -> fraiseql::Result<()> {
    ctx.publish("fraiseql.metered.paid", json!({ "cents": cents })).await?;
    Ok(())
}

async fn scrape(rt: &Runtime) -> String {
    let router = rt.metrics_router().unwrap();
    let resp = router
        .oneshot(axum::http::Request::builder().uri("/metrics").body(axum::body::Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
    String::from_utf8(body.to_vec()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_handlers_outbox_and_consumers_show_in_metrics() {
    common::init_tracing();
    let dbs = TestDbs::new(Backend::Sqlite, &["primary"]).await;
    let pre = dbs.start(|_| {}).await;
    pre.database("primary")
        .unwrap()
        .execute_script("CREATE TABLE metered (cents BIGINT NOT NULL); INSERT INTO metered VALUES (0)")
        .await
        .unwrap();
    pre.shutdown().await.unwrap();
    let rt = dbs.start(|c| c.events.redelivery_initial = Duration::from_millis(10)).await;
    scrape(&rt).await; // installs the recorder before the work

    for cents in [100, 250, 50] {
        rt.scope(metered_pay(cents)).await.unwrap();
    }
    // A payload the handler's type does not fit: a dead event on its first delivery.
    rt.publish("fraiseql.metered.paid", json!({ "cents": "many" })).await.unwrap();
    for _ in 0..500 {
        if rt.dead_events(None).await.unwrap().len() == 1 && rt.outbox().pending().await.unwrap() == 0 {
            let (c,): (i64,) =
                rt.database("primary").unwrap().fetch_one("SELECT cents FROM metered", ()).await.unwrap();
            if c == 400 {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let text = scrape(&rt).await;
    let value = |name: &str, labels: &[(&str, &str)]| metric(&text, name, labels);
    let consumer = ("consumer", "metered-totals");
    assert_eq!(value("fraiseql_events_handled_total", &[consumer, ("outcome", "ok")]), Some(3.0), "{text}");
    assert_eq!(value("fraiseql_events_handled_total", &[consumer, ("outcome", "dead")]), Some(1.0), "{text}");
    assert_eq!(value("fraiseql_handler_duration_seconds_count", &[consumer]), Some(4.0));
    assert_eq!(value("fraiseql_events_published_total", &[("via", "outbox")]), Some(3.0), "{text}");
    assert_eq!(value("fraiseql_events_published_total", &[("via", "publish")]), Some(1.0));
    assert_eq!(value("fraiseql_consumer_pending", &[consumer]), Some(0.0), "{text}");
    assert_eq!(value("fraiseql_outbox_pending", &[("database", "primary")]), Some(0.0));
    assert_eq!(value("fraiseql_outbox_dead", &[("database", "primary")]), Some(0.0));
    assert_eq!(value("fraiseql_sagas_finished_total", &[("saga", "metered_pay"), ("status", "completed")]), Some(3.0));
    for line in text.lines().filter(|l| l.starts_with("# TYPE")) {
        let name = line.split_whitespace().nth(2).unwrap();
        assert!(name.starts_with("fraiseql_"), "{line}");
        if line.ends_with("counter") {
            assert!(name.ends_with("_total"), "a counter's name ends in _total: {line}");
        }
        if line.ends_with("histogram") {
            assert!(name.ends_with("_seconds"), "durations are in seconds: {line}");
        }
    }

    // The consumer's lag: a slow event holds the (in-order) embedded consumer, and what
    // comes after it waits.
    for cents in [0, 1, 2] {
        rt.publish("fraiseql.metered.audit", json!({ "cents": cents })).await.unwrap();
    }
    let consumers = rt.consumers().await.unwrap();
    let names: Vec<(&str, Option<&str>)> = consumers.iter().map(|c| (c.name.as_str(), c.database.as_deref())).collect();
    assert_eq!(names, [("metered-audit", None), ("metered-totals", Some("primary"))], "{consumers:?}");
    assert_eq!(consumers[0].pending, Some(3), "the slow event and the two behind it: {consumers:?}");
    let text = scrape(&rt).await;
    assert_eq!(metric(&text, "fraiseql_consumer_pending", &[("consumer", "metered-audit")]), Some(3.0), "{text}");
    assert_eq!(metric(&text, "fraiseql_consumer_pending", &[consumer]), Some(0.0), "{text}");
    rt.shutdown().await.unwrap();
}

/// On NATS the lag comes from JetStream: what waits, and what is delivered unacknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_consumer_shows_the_events_it_has_not_handled() {
    common::init_tracing();
    let nats = common::NatsServer::start().await;
    let dbs = TestDbs::new(Backend::Postgres, &["primary"]).await;
    let rt = dbs.start(|c| c.events.url = Some(nats.url())).await;
    rt.publish("fraiseql.metered.audit", json!({ "cents": 0 })).await.unwrap();
    let audit = |list: Vec<fraiseql::ConsumerInfo>| list.into_iter().find(|c| c.name == "metered-audit").unwrap();
    assert_eq!(audit(rt.consumers().await.unwrap()).pending, Some(1), "the slow event, being handled");
    let text = scrape(&rt).await;
    assert_eq!(metric(&text, "fraiseql_consumer_pending", &[("consumer", "metered-audit")]), Some(1.0), "{text}");
    for _ in 0..200 {
        if audit(rt.consumers().await.unwrap()).pending == Some(0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(audit(rt.consumers().await.unwrap()).pending, Some(0), "handled and acknowledged");
    rt.shutdown().await.unwrap();
}
