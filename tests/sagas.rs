//! Saga behaviour, the same on PostgreSQL (three databases on one server) and SQLite.

mod common;
#[path = "common/three.rs"]
mod three;

use std::time::Duration;

use common::{Backend, TestDbs};
use fraiseql::prelude::*;
use fraiseql::{Error, Phase, Runtime, SagaStatus};
use three::{effects, expect, three, Plan, DBS};

/// Every key a `keyed` step was handed, across attempts.
static KEYS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

#[saga(steps = ["keyed"])]
async fn keyed() -> fraiseql::Result<String>;

#[saga_step("keyed")]
async fn keyed_step(ctx: &mut SagaContext) -> fraiseql::Result<String> {
    KEYS.lock().unwrap().push(ctx.idempotency_key());
    if ctx.attempt() < 3 {
        return Err(Error::transient("the outside service timed out"));
    }
    Ok(ctx.idempotency_key())
}

async fn setup(backend: Backend, tweak: impl FnOnce(&mut fraiseql::Config)) -> (TestDbs, Runtime) {
    common::init_tracing();
    let dbs = TestDbs::new(backend, &DBS).await;
    let rt = dbs.start(tweak).await;
    three::create_schema(&rt).await;
    (dbs, rt)
}

async fn run(rt: &Runtime, plan: Plan) -> Result<String, Error> {
    rt.scope(three("t".into(), plan)).await
}

fn aborted(e: Error) -> (String, String, SagaStatus) {
    match e {
        Error::SagaAborted { saga_id, step, status, .. } => (saga_id.to_string(), step, status),
        other => panic!("expected SagaAborted, got {other:?}"),
    }
}

/// Waits until the batched completion record reaches the log.
async fn status_eventually(rt: &Runtime, id: &str, want: SagaStatus) -> fraiseql::SagaDetail {
    for _ in 0..200 {
        let d = rt.sagas().get(id).await.unwrap();
        if d.summary.status == want {
            return d;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("saga {id} never reached {want}: {:?}", rt.sagas().get(id).await.unwrap().summary);
}

macro_rules! on_both_backends {
    ($(async fn $name:ident($backend:ident: Backend) $body:block)*) => {
        $(
            mod $name {
                use super::*;
                async fn body($backend: Backend) $body
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() { body(Backend::Postgres).await }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() { body(Backend::Sqlite).await }
            }
        )*
    };
}

on_both_backends! {
    async fn all_steps_commit_and_the_saga_completes(backend: Backend) {
        let (_dbs, rt) = setup(backend, |_| {}).await;
        let id = run(&rt, Plan::default()).await.unwrap();
        assert_eq!(effects(&rt, &id).await, expect(&["s1", "s2", "s3"], &[]));
        let d = status_eventually(&rt, &id, SagaStatus::Completed).await;
        assert_eq!(d.result, Some(serde_json::json!(id)));
        assert_eq!(d.state["done"], serde_json::json!(["s1", "s2", "s3"]));
        let steps: Vec<_> = d.steps.iter().map(|s| (s.step.as_str(), s.phase.as_str(), s.status.as_str(), s.attempts)).collect();
        assert_eq!(steps, vec![("s1", "step", "committed", 1), ("s2", "step", "committed", 1), ("s3", "step", "committed", 1)]);
        assert!(d.steps.iter().all(|s| s.duration_ms().is_some()));
        rt.shutdown().await.unwrap();
    }

    async fn a_failure_at_each_position_compensates_exactly_the_completed_steps_in_reverse(backend: Backend) {
        let (_dbs, rt) = setup(backend, |_| {}).await;
        let all = ["s1", "s2", "s3"];
        for fail_at in 0..3 {
            let err = run(&rt, Plan { fail_at: Some(fail_at), ..Plan::default() }).await.unwrap_err();
            let (id, step, status) = aborted(err);
            assert_eq!(step, all[fail_at]);
            assert_eq!(status, SagaStatus::Compensated);
            // The failing step's own writes rolled back; the ones before it are undone.
            assert_eq!(effects(&rt, &id).await, expect(&all[..fail_at], &all[..fail_at]), "failure at {fail_at}");
            let d = rt.sagas().get(&id).await.unwrap();
            assert_eq!(d.summary.status, SagaStatus::Compensated);
            assert_eq!(d.summary.failed_step.as_deref(), Some(all[fail_at]));
            // Compensations ran in reverse: each saw the state the later ones left.
            assert_eq!(d.state["done"], serde_json::json!([]));
            let comp_order: Vec<_> = d.steps.iter().filter(|s| s.phase == Phase::Compensation).map(|s| (s.step.clone(), s.started_at.unwrap())).collect();
            assert_eq!(comp_order.len(), fail_at);
            assert!(comp_order.windows(2).all(|w| w[0].1 >= w[1].1), "compensations not in reverse order: {comp_order:?}");
        }
        rt.shutdown().await.unwrap();
    }

    async fn a_panicking_step_is_a_failure_not_a_dead_runtime(backend: Backend) {
        let (_dbs, rt) = setup(backend, |_| {}).await;
        let err = run(&rt, Plan { panic_at: Some(1), ..Plan::default() }).await.unwrap_err();
        let msg = err.to_string();
        let (id, step, status) = aborted(err);
        assert!(msg.contains("panicked: s2 panics on purpose"), "{msg}");
        assert_eq!((step.as_str(), status), ("s2", SagaStatus::Compensated));
        assert_eq!(effects(&rt, &id).await, expect(&["s1"], &["s1"]));
        // The runtime still works.
        let id = run(&rt, Plan::default()).await.unwrap();
        assert_eq!(effects(&rt, &id).await, expect(&["s1", "s2", "s3"], &[]));
        rt.shutdown().await.unwrap();
    }

    async fn a_step_that_times_out_is_rolled_back_and_compensated(backend: Backend) {
        let (_dbs, rt) = setup(backend, |c| c.saga.step_timeout = Duration::from_millis(300)).await;
        let err = run(&rt, Plan { sleep_at: Some((2, 5_000)), ..Plan::default() }).await.unwrap_err();
        let msg = err.to_string();
        let (id, step, status) = aborted(err);
        assert!(msg.contains("timed out"), "{msg}");
        assert_eq!((step.as_str(), status), ("s3", SagaStatus::Compensated));
        assert_eq!(effects(&rt, &id).await, expect(&["s1", "s2"], &["s1", "s2"]));
        rt.shutdown().await.unwrap();
    }

    async fn transient_errors_are_retried_with_backoff(backend: Backend) {
        let (_dbs, rt) = setup(backend, |_| {}).await;
        let id = run(&rt, Plan { transient: vec![0, 2, 0], ..Plan::default() }).await.unwrap();
        assert_eq!(effects(&rt, &id).await, expect(&["s1", "s2", "s3"], &[]));
        let d = status_eventually(&rt, &id, SagaStatus::Completed).await;
        let s2 = d.steps.iter().find(|s| s.step == "s2").unwrap();
        assert_eq!(s2.attempts, 3);
        assert!(s2.error.as_deref().unwrap().contains("flaky"));
        // More transient failures than the budget (3 retries): the step fails.
        let err = run(&rt, Plan { transient: vec![0, 4, 0], ..Plan::default() }).await.unwrap_err();
        let (id, step, _) = aborted(err);
        assert_eq!(step, "s2");
        assert_eq!(effects(&rt, &id).await, expect(&["s1"], &["s1"]));
        let d = rt.sagas().get(&id).await.unwrap();
        let s2 = d.steps.iter().find(|s| s.step == "s2" && s.phase == Phase::Step).unwrap();
        assert_eq!((s2.status.as_str(), s2.attempts), ("failed", 4));
        rt.shutdown().await.unwrap();
    }

    async fn a_compensation_that_fails_then_succeeds_is_retried(backend: Backend) {
        let (_dbs, rt) = setup(backend, |_| {}).await;
        let err = run(&rt, Plan { fail_at: Some(2), comp_fail: vec![2, 1, 0], ..Plan::default() }).await.unwrap_err();
        let (id, _, status) = aborted(err);
        assert_eq!(status, SagaStatus::Compensated);
        assert_eq!(effects(&rt, &id).await, expect(&["s1", "s2"], &["s1", "s2"]));
        let d = rt.sagas().get(&id).await.unwrap();
        let attempts: Vec<_> = d.steps.iter().filter(|s| s.phase == Phase::Compensation).map(|s| (s.step.as_str(), s.attempts)).collect();
        assert_eq!(attempts, vec![("s1", 3), ("s2", 2)]);
        rt.shutdown().await.unwrap();
    }

    async fn a_compensation_whose_budget_is_spent_leaves_the_saga_failed_and_retryable(backend: Backend) {
        let (_dbs, rt) = setup(backend, |c| c.saga.compensation_retries = 2).await;
        let tag = format!("fixable-{backend:?}");
        let err = rt.scope(three(tag.clone(), Plan { fail_at: Some(2), comp_fail_until_fixed: Some(0), ..Plan::default() })).await.unwrap_err();
        let msg = err.to_string();
        let (id, _, status) = aborted(err);
        assert_eq!(status, SagaStatus::Failed, "{msg}");
        // s2 was undone; s1's undo never committed.
        assert_eq!(effects(&rt, &id).await, expect(&["s1", "s2"], &["s2"]));
        let failed = rt.sagas().with_status(SagaStatus::Failed).await.unwrap();
        assert!(failed.iter().any(|s| s.id == id));
        let d = rt.sagas().get(&id).await.unwrap();
        assert!(d.summary.error.as_deref().unwrap().contains("compensation of `s1` failed after 3 attempts"), "{:?}", d.summary.error);
        // An operator fixes the cause and retries.
        three::FIXED.lock().unwrap().push(tag);
        assert_eq!(rt.sagas().retry(&id).await.unwrap(), SagaStatus::Compensated);
        assert_eq!(effects(&rt, &id).await, expect(&["s1", "s2"], &["s1", "s2"]));
        rt.shutdown().await.unwrap();
    }

    async fn the_same_idempotency_key_runs_one_saga_and_returns_the_same_result(backend: Backend) {
        let (_dbs, rt) = setup(backend, |_| {}).await;
        let a = rt.scope(fraiseql::with_idempotency_key("k-1", three("t".into(), Plan::default()))).await.unwrap();
        let b = rt.scope(fraiseql::with_idempotency_key("k-1", three("t".into(), Plan::default()))).await.unwrap();
        assert_eq!(a, b);
        // Concurrent duplicates as well.
        let futs = (0..8).map(|_| rt.scope(fraiseql::with_idempotency_key("k-2", three("t".into(), Plan::default()))));
        let results: Vec<_> = futures_join_all(futs).await;
        let first = results[0].as_ref().unwrap().clone();
        assert!(results.iter().all(|r| r.as_ref().unwrap() == &first));
        let all = rt.sagas().list(Default::default()).await.unwrap();
        assert_eq!(all.len(), 2, "{all:?}");
        // A failed saga's key replays the failure, it does not run again.
        let e1 = rt.scope(fraiseql::with_idempotency_key("k-3", three("t".into(), Plan { fail_at: Some(0), ..Plan::default() }))).await.unwrap_err();
        let e2 = rt.scope(fraiseql::with_idempotency_key("k-3", three("t".into(), Plan::default()))).await.unwrap_err();
        assert_eq!(aborted(e1).0, aborted(e2).0);
        rt.shutdown().await.unwrap();
    }

    async fn a_step_gets_the_same_idempotency_key_on_every_attempt(backend: Backend) {
        let (_dbs, rt) = setup(backend, |_| {}).await;
        let key = rt.scope(keyed()).await.unwrap();
        let saga_id = key.split(':').next().unwrap().to_string();
        assert_eq!(key, format!("{saga_id}:keyed:step"));
        let seen: Vec<String> = KEYS.lock().unwrap().iter().filter(|k| k.starts_with(&saga_id)).cloned().collect();
        assert_eq!(seen, vec![key.clone(), key.clone(), key]);
        rt.shutdown().await.unwrap();
    }

    async fn a_logged_saga_whose_code_changed_is_left_stuck_for_an_operator(backend: Backend) {
        let (_dbs, rt) = setup(backend, |c| c.saga.recover = false).await;
        let log = rt.database("primary").unwrap();
        let rows = [
            ("00000000-0000-7000-8000-000000000001", "three", r#"["s1","renamed","s3"]"#, r#"{"tag":"t","plan":{}}"#),
            ("00000000-0000-7000-8000-000000000002", "three", r#"["s1","s2","s3"]"#, r#"{"tag":5,"plan":{}}"#),
            ("00000000-0000-7000-8000-000000000003", "retired_saga", r#"["s1"]"#, r#"{}"#),
        ];
        for (id, name, steps, input) in rows {
            log.execute(
                "INSERT INTO fraiseql_saga (id, name, status, steps, input, state, owner, lease_until, created_at, updated_at)
                 VALUES ($1, $2, 'running', $3, $4, '{\"done\":[]}', 'a-dead-instance', 0, 0, 0)",
                (id, name, steps, input),
            )
            .await
            .unwrap();
        }
        assert_eq!(rt.recover_now().await.unwrap(), 3);
        let stuck = rt.sagas().with_status(SagaStatus::Stuck).await.unwrap();
        assert_eq!(stuck.len(), 3, "{stuck:?}");
        let error = |id: &str| stuck.iter().find(|s| s.id == id).unwrap().error.clone().unwrap();
        assert!(error(rows[0].0).contains("changed since it started: logged steps [\"s1\", \"renamed\", \"s3\"], current steps [\"s1\", \"s2\", \"s3\"]"), "{}", error(rows[0].0));
        assert!(error(rows[1].0).contains("logged input no longer deserialises into the saga's parameters: input `tag`"), "{}", error(rows[1].0));
        assert!(error(rows[2].0).contains("saga `retired_saga` is no longer registered"), "{}", error(rows[2].0));
        // Nothing ran: no step touched any database.
        for (id, ..) in rows {
            assert!(effects(&rt, id).await.is_empty());
        }
        // Stuck sagas are not picked up again by recovery.
        assert_eq!(rt.recover_now().await.unwrap(), 0);
        rt.shutdown().await.unwrap();
    }

    async fn shutdown_lets_running_sagas_finish_and_refuses_new_ones(backend: Backend) {
        let (_dbs, rt) = setup(backend, |_| {}).await;
        let running: Vec<_> = (0..5).map(|_| tokio::spawn(rt.scope(three("t".into(), Plan { sleep_at: Some((1, 300)), ..Plan::default() })))).collect();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let stopping = tokio::spawn({
            let rt = rt.clone();
            async move { rt.shutdown().await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let refused = rt.scope(three("late".into(), Plan::default())).await.unwrap_err();
        assert!(matches!(refused, Error::ShuttingDown), "{refused}");
        let mut ids = Vec::new();
        for r in running {
            ids.push(r.await.unwrap().expect("in-flight sagas finish during shutdown"));
        }
        stopping.await.unwrap().unwrap();
        // A fresh runtime on the same databases sees every one of them recorded as completed.
        let rt = _dbs.start(|_| {}).await;
        for id in ids {
            assert_eq!(rt.sagas().get(&id).await.unwrap().summary.status, SagaStatus::Completed);
        }
        rt.shutdown().await.unwrap();
    }

    async fn many_sagas_run_concurrently(backend: Backend) {
        let (_dbs, rt) = setup(backend, |_| {}).await;
        let futs = (0..40).map(|i| rt.scope(three("t".into(), Plan { fail_at: (i % 4 == 0).then_some(i % 3), ..Plan::default() })));
        let results = futures_join_all(futs).await;
        let ok = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(ok, 30);
        rt.shutdown().await.unwrap();
        let rt = _dbs.start(|_| {}).await;
        let completed = rt.sagas().with_status(SagaStatus::Completed).await.unwrap().len();
        let compensated = rt.sagas().with_status(SagaStatus::Compensated).await.unwrap().len();
        assert_eq!((completed, compensated), (30, 10), "shutdown records every completion");
        rt.shutdown().await.unwrap();
    }
}

async fn futures_join_all<F>(futs: impl IntoIterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futs.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

#[tokio::test]
async fn two_runtimes_in_one_process_are_independent() {
    common::init_tracing();
    let a = TestDbs::new(Backend::Sqlite, &DBS).await;
    let b = TestDbs::new(Backend::Postgres, &DBS).await;
    let (ra, rb) = (a.start(|_| {}).await, b.start(|_| {}).await);
    three::create_schema(&ra).await;
    three::create_schema(&rb).await;
    let (x, y) =
        tokio::join!(ra.scope(three("a".into(), Plan::default())), rb.scope(three("b".into(), Plan::default())));
    let (x, y) = (x.unwrap(), y.unwrap());
    assert_eq!(effects(&ra, &x).await.len(), 3);
    assert!(effects(&ra, &y).await.is_empty());
    assert_eq!(effects(&rb, &y).await.len(), 3);
    ra.shutdown().await.unwrap();
    rb.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_saga_outside_any_runtime_says_so() {
    let err = three("x".into(), Plan::default()).await.unwrap_err();
    assert!(matches!(err, Error::NoRuntime), "{err}");
    assert!(err.to_string().contains("no FraiseQL runtime is running"));
}

#[saga(steps = ["echo_text"])]
async fn tricky_text(text: String) -> fraiseql::Result<String>;

#[saga_step("echo_text")]
async fn echo_text(_ctx: &mut SagaContext, text: String) -> fraiseql::Result<String> {
    Ok(format!("{text}|{text}"))
}

/// Text a saga keeps (its input in the log row, a step's output in its barrier):
/// quotes, backslashes, `$$`, SQL of its own, control characters and non-ASCII come back
/// exactly, through recovery (which reads the barrier) as through the live path.
async fn text_round_trips(backend: Backend) {
    let (_dbs, rt) = setup(backend, |_| {}).await;
    let nasty = "it's \\ \"quoted\" \\\\' $$ $tag$ '; DROP TABLE fraiseql_saga; -- \u{1} \t\n ü 🚀 E'\\x'".to_string();
    let want = format!("{nasty}|{nasty}");
    assert_eq!(rt.scope(tricky_text(nasty.clone())).await.unwrap(), want);
    let live = fraiseql::testing::last_saga(&rt, "tricky_text").await.unwrap();
    assert_eq!(live.input["text"], serde_json::json!(nasty));
    // The only step runs on the log database: its transaction logged the saga, wrote
    // the barrier and recorded the completion (on PostgreSQL in one statement).
    assert_eq!(live.summary.status, SagaStatus::Completed);
    assert_eq!(live.result, Some(serde_json::json!(want)));
    let (output,): (String,) = rt
        .database("primary")
        .unwrap()
        .fetch_one("SELECT output FROM fraiseql_barrier WHERE saga_id = $1", (&live.summary.id,))
        .await
        .unwrap();
    assert_eq!(serde_json::from_str::<String>(&output).unwrap(), want, "the barrier keeps the output as it was");
    // The same after a crash: the saga is over with its last commit.
    rt.inject(fraiseql::testing::Fault::crash_after("echo_text").once());
    let crashed = rt.scope(tricky_text(nasty.clone())).await.unwrap_err();
    assert!(matches!(crashed, Error::FaultInjected(_)), "{crashed:?}");
    let id = fraiseql::testing::last_saga(&rt, "tricky_text").await.unwrap().summary.id;
    assert_ne!(id, live.summary.id);
    assert_eq!(rt.recover_now().await.unwrap(), 0, "nothing to recover");
    let d = status_eventually(&rt, &id, SagaStatus::Completed).await;
    assert_eq!(d.input["text"], serde_json::json!(nasty));
    assert_eq!(d.result, Some(serde_json::json!(want)));
    rt.shutdown().await.unwrap();
    // With the log elsewhere, the result is read back from the barrier by recovery.
    let (_dbs2, rt2) = setup(backend, |c| c.saga.log_database = Some("second".into())).await;
    rt2.inject(fraiseql::testing::Fault::crash_after("echo_text").once());
    let crashed = rt2.scope(tricky_text(nasty.clone())).await.unwrap_err();
    assert!(matches!(crashed, Error::FaultInjected(_)), "{crashed:?}");
    let id = fraiseql::testing::last_saga(&rt2, "tricky_text").await.unwrap().summary.id;
    assert_eq!(rt2.recover_now().await.unwrap(), 1);
    let d = status_eventually(&rt2, &id, SagaStatus::Completed).await;
    assert_eq!(d.input["text"], serde_json::json!(nasty));
    assert_eq!(d.result, Some(serde_json::json!(want)));
    rt2.shutdown().await.unwrap();
}

on_both_backends! {
    async fn any_text_round_trips_through_the_log_and_the_barrier(backend: Backend) {
        text_round_trips(backend).await;
    }
}

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Tally {
    n: i64,
}

#[saga(steps = ["tally_set", "tally_keep", "tally_read"], state = Tally, result = "tally_read", recovery = "forward")]
async fn tally(n: i64) -> fraiseql::Result<i64>;

#[saga_step("tally_set")]
async fn tally_set(ctx: &mut SagaContext<Tally>, n: i64) -> fraiseql::Result<()> {
    ctx.n = n;
    Ok(())
}

#[saga_step("tally_keep")]
async fn tally_keep(_ctx: &mut SagaContext<Tally>) -> fraiseql::Result<()> {
    Ok(())
}

#[saga_step("tally_read")]
async fn tally_read(ctx: &mut SagaContext<Tally>) -> fraiseql::Result<i64> {
    Ok(ctx.n)
}

// A step that leaves the state as it was writes no state into its barrier; a saga
// recovered right after it still has the state of the step before.
on_both_backends! {
    async fn an_unchanged_state_is_not_written_again_and_recovery_carries_it(backend: Backend) {
        let (_dbs, rt) = setup(backend, |_| {}).await;
        rt.inject(fraiseql::testing::Fault::crash_after("tally_keep").once());
        let crashed = rt.scope(tally(41)).await.unwrap_err();
        assert!(matches!(crashed, Error::FaultInjected(_)), "{crashed:?}");
        let id = fraiseql::testing::last_saga(&rt, "tally").await.unwrap().summary.id;
        let db = rt.database("primary").unwrap();
        let states: Vec<(i64, Option<String>)> = db
            .fetch_all("SELECT idx, state FROM fraiseql_barrier WHERE saga_id = $1 AND phase = 'step' ORDER BY idx", (&id,))
            .await
            .unwrap();
        assert_eq!(states, vec![(0, Some(r#"{"n":41}"#.to_string())), (1, None)], "the second step wrote no state");
        rt.recover_now().await.unwrap();
        let d = status_eventually(&rt, &id, SagaStatus::Completed).await;
        assert_eq!(d.result, Some(serde_json::json!(41)), "the third step read the first step's state");
        assert_eq!(d.state, serde_json::json!({ "n": 41 }));
        rt.shutdown().await.unwrap();
    }
}
