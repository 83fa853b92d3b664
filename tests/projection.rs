//! A projection rebuilt from 10,000 events of history equals the one built live, on
//! NATS JetStream (a nats-server of the test's own) with PostgreSQL and on the embedded
//! bus with SQLite.

mod common;

use std::time::Duration;

use common::{Backend, NatsServer, TestDbs};
use fraiseql::prelude::*;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::json;

const ORDERS: usize = 2_500;
const EVENTS: usize = ORDERS * 4;

#[derive(Debug, Serialize, Deserialize)]
pub struct OrderEvent {
    pub order_id: i64,
    #[serde(default)]
    pub total_cents: i64,
}

#[subscribe("fraiseql.proj.order.>", durable = "proj", concurrency = 1)]
async fn project(event: Event<OrderEvent>, ctx: &EventContext) -> fraiseql::Result<()> {
    let db = ctx.database("primary")?;
    let id = event.data.order_id;
    match event.event_type.as_str() {
        "proj.order.created" => {
            db.execute(
                "INSERT INTO proj (order_id, total_cents, status, applied) VALUES ($1, $2, 'created', 1)",
                (id, event.data.total_cents),
            )
            .await?;
        }
        t => {
            let status = t.rsplit('.').next().unwrap_or("?");
            let amount = if status == "discounted" { event.data.total_cents } else { 0 };
            db.execute(
                "UPDATE proj SET status = $2, total_cents = total_cents - $3, applied = applied + 1 WHERE order_id = $1",
                (id, status, amount),
            )
            .await?;
        }
    }
    Ok(())
}

type Row = (i64, i64, String, i64);

async fn snapshot(rt: &Runtime) -> Vec<Row> {
    rt.database("primary")
        .unwrap()
        .fetch_all("SELECT order_id, total_cents, status, applied FROM proj ORDER BY order_id", ())
        .await
        .unwrap()
}

async fn body(backend: Backend) {
    common::init_tracing();
    let nats = match backend {
        Backend::Postgres => Some(NatsServer::start().await),
        Backend::Sqlite => None,
    };
    let dbs = TestDbs::new(backend, &["primary"]).await;
    let pre = dbs.start(|_| {}).await;
    pre.database("primary")
        .unwrap()
        .execute_script("CREATE TABLE proj (order_id BIGINT PRIMARY KEY, total_cents BIGINT NOT NULL, status TEXT NOT NULL, applied BIGINT NOT NULL)")
        .await
        .unwrap();
    pre.shutdown().await.unwrap();
    let url = nats.as_ref().map(|n| n.url());
    let rt = dbs.start(|c| c.events.url = url).await;

    // Four events per order, each round after the previous one (so per order in order).
    for (kind, extra) in [("created", 1000), ("confirmed", 0), ("discounted", 50), ("shipped", 0)] {
        let rt = &rt;
        futures_util::stream::iter(0..ORDERS)
            .map(|i| async move {
                let total = if kind == "created" { extra + i as i64 } else { extra };
                rt.publish(&format!("fraiseql.proj.order.{kind}"), json!({ "order_id": i, "total_cents": total }))
                    .await
                    .unwrap();
            })
            .buffer_unordered(32)
            .collect::<Vec<_>>()
            .await;
    }
    let applied = |rows: &Vec<Row>| rows.iter().map(|r| r.3).sum::<i64>() as usize;
    let mut live = snapshot(&rt).await;
    // Generous: on a loaded 2-core CI machine this takes a while; nextest bounds it anyway.
    for _ in 0..3000 {
        if applied(&live) == EVENTS {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        live = snapshot(&rt).await;
    }
    assert_eq!(applied(&live), EVENTS, "the live projection applied every event");
    assert_eq!(live.len(), ORDERS);
    assert!(live.iter().all(|r| r.2 == "shipped" && r.1 == 950 + r.0), "{:?}", &live[..3]);
    assert_eq!(rt.history("fraiseql.proj.order.>", None).await.unwrap().len(), EVENTS);
    let streamed = rt.subscribe_to_history("fraiseql.proj.order.created", None).await.unwrap().count().await;
    assert_eq!(streamed, ORDERS);

    rt.database("primary").unwrap().execute("DELETE FROM proj", ()).await.unwrap();
    assert_eq!(rt.rebuild("proj", None).await.unwrap(), EVENTS);
    assert_eq!(snapshot(&rt).await, live, "rebuilt from history == built live");
    rt.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projection_rebuilt_from_10000_events_equals_the_live_one_nats() {
    body(Backend::Postgres).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projection_rebuilt_from_10000_events_equals_the_live_one_embedded() {
    body(Backend::Sqlite).await
}
