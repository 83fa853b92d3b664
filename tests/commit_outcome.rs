//! A commit whose outcome is unknown (the reply lost, or the connection dropped during
//! COMMIT) is resolved by reading the barrier back, never by guessing. This binary runs
//! with fault injection: the reply of s2's commit is lost (it did commit: it must not
//! run again) and the first commits of s1 (which also logs the saga) and s3 never
//! happen (they must run again, once).

mod common;
#[path = "common/three.rs"]
mod three;

use common::{Backend, TestDbs};
use fraiseql::SagaStatus;
use three::{effects, expect, three, Plan, DBS};

async fn body(backend: Backend) {
    // Set before the first fault check reads it (the runtime caches it once).
    std::env::set_var("FRAISEQL_FAULT", "lose_commit_reply:s2,fail_first_commit:s3,fail_first_commit:s1");
    common::init_tracing();
    let dbs = TestDbs::new(backend, &DBS).await;
    let rt = dbs.start(|_| {}).await;
    three::create_schema(&rt).await;
    let id = rt.scope(three("t".into(), Plan::default())).await.unwrap();
    assert_eq!(effects(&rt, &id).await, expect(&["s1", "s2", "s3"], &[]));
    let d = rt.sagas().get(&id).await.unwrap();
    let attempts: Vec<_> = d.steps.iter().map(|s| (s.step.as_str(), s.status.as_str(), s.attempts)).collect();
    assert_eq!(attempts, vec![("s1", "committed", 2), ("s2", "committed", 1), ("s3", "committed", 2)]);
    // The state the lost-reply step committed was read back, not lost.
    for _ in 0..100 {
        if rt.sagas().get(&id).await.unwrap().summary.status == SagaStatus::Completed {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let d = rt.sagas().get(&id).await.unwrap();
    assert_eq!(d.summary.status, SagaStatus::Completed);
    assert_eq!(d.state["done"], serde_json::json!(["s1", "s2", "s3"]));
    rt.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_commit_outcomes_are_read_back_postgres() {
    body(Backend::Postgres).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_commit_outcomes_are_read_back_sqlite() {
    body(Backend::Sqlite).await
}
