//! Crash recovery with real processes: a child process runs sagas and is killed with
//! SIGKILL at a chosen point (fault injection or a step killing itself); a fresh
//! runtime then recovers, and every step's and compensation's effect is present exactly
//! once. Also: two processes recovering at the same time never recover one saga twice.

mod common;
#[path = "common/three.rs"]
mod three;

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Backend, TestDbs};
use fraiseql::{Config, Runtime, SagaStatus};
use three::{effects, expect, three, Plan, DBS};

const CHILD_ENV: &str = "FRAISEQL_CRASH_CHILD";

/// The child side. Run directly (no `FRAISEQL_CRASH_CHILD`), it checks that the
/// workload it would run completes on an untouched runtime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child() {
    let mode = std::env::var(CHILD_ENV).unwrap_or_default();
    let plan: Plan = serde_json::from_str(&std::env::var("CRASH_PLAN").unwrap_or_else(|_| "{}".into())).unwrap();
    let count: usize = std::env::var("CRASH_SAGAS").ok().and_then(|n| n.parse().ok()).unwrap_or(1);
    match mode.as_str() {
        "" => {
            let dbs = TestDbs::new(Backend::Sqlite, &DBS).await;
            let rt = dbs.start(|_| {}).await;
            three::create_schema(&rt).await;
            let id = rt.scope(three("direct".into(), plan)).await.unwrap();
            assert_eq!(effects(&rt, &id).await, expect(&["s1", "s2", "s3"], &[]));
            rt.shutdown().await.unwrap();
        }
        "run" => {
            let rt = Runtime::builder().config(Config::from_env().unwrap()).start().await.unwrap();
            let futs: Vec<_> =
                (0..count).map(|_| tokio::spawn(rt.scope(three("crash".into(), plan.clone())))).collect();
            for f in futs {
                eprintln!("saga ended without a crash: {:?}", f.await);
            }
            // Reaching this line means the fault never fired: the parent checks for it.
            std::process::exit(3);
        }
        "recover" => {
            let rt = Runtime::builder().config(Config::from_env().unwrap()).start().await.unwrap();
            let mut recovered = 0;
            loop {
                recovered += rt.recover_now().await.unwrap();
                let open = rt.sagas().with_status(SagaStatus::Running).await.unwrap().len()
                    + rt.sagas().with_status(SagaStatus::Compensating).await.unwrap().len();
                if open == 0 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            println!("RECOVERED {recovered}");
            rt.shutdown().await.unwrap();
        }
        other => panic!("unknown child mode {other}"),
    }
}

fn child_command(dbs: &TestDbs, mode: &str, plan: &Plan, extra: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["child", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, mode)
        .env("CRASH_PLAN", serde_json::to_string(plan).unwrap())
        .env("FRAISEQL_SAGA__LEASE_TTL", "1s")
        .env("FRAISEQL_SAGA__BACKOFF_INITIAL", "2ms")
        .env("FRAISEQL_SAGA__RECOVERY_INTERVAL", "100ms")
        .env("RUST_LOG", "warn,sqlx=error")
        .stdin(Stdio::null());
    for (k, v) in dbs.env() {
        cmd.env(k, v);
    }
    for (k, v) in extra {
        cmd.env(k, v);
    }
    cmd
}

/// Run the child until it is killed; recover in this process; return the saga's id and
/// final status.
async fn crash_then_recover(
    backend: Backend,
    plan: Plan,
    extra: &[(&str, &str)],
) -> (Runtime, String, SagaStatus, TestDbs) {
    common::init_tracing();
    let dbs = TestDbs::new(backend, &DBS).await;
    let rt = dbs.start(|_| {}).await;
    three::create_schema(&rt).await;
    rt.shutdown().await.unwrap();

    let out = child_command(&dbs, "run", &plan, extra).output().unwrap();
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGKILL),
        "the child should have been killed by SIGKILL, got {:?}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );

    let rt = dbs
        .start(|c| {
            c.saga.lease_ttl = Duration::from_secs(1);
            c.saga.recovery_interval = Duration::from_millis(100);
            for (k, v) in extra {
                match *k {
                    "FRAISEQL_SAGA__RECOVERY" if *v == "forward" => c.saga.recovery = fraiseql::RecoveryPolicy::Forward,
                    "FRAISEQL_SAGA__LOG_DATABASE" => c.saga.log_database = Some(v.to_string()),
                    _ => {}
                }
            }
        })
        .await;
    let all = rt.sagas().list(Default::default()).await.unwrap();
    assert_eq!(all.len(), 1, "the child logged one saga: {all:?}");
    let id = all[0].id.clone();
    for _ in 0..300 {
        let s = rt.sagas().get(&id).await.unwrap().summary.status;
        if s.is_terminal() {
            return (rt, id, s, dbs);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("saga {id} was not recovered: {:?}", rt.sagas().get(&id).await.unwrap());
}

macro_rules! crash_cases {
    ($($name:ident: $plan:expr, $extra:expr => $status:expr, done $done:expr, undone $undone:expr;)*) => {
        $(
            mod $name {
                use super::*;
                async fn body(backend: Backend) {
                    let (rt, id, status, _dbs) = crash_then_recover(backend, $plan, $extra).await;
                    assert_eq!(status, $status);
                    assert_eq!(effects(&rt, &id).await, expect(&$done, &$undone));
                    rt.shutdown().await.unwrap();
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() { body(Backend::Postgres).await }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() { body(Backend::Sqlite).await }
            }
        )*
    };
}

fn fail_at(i: usize) -> Plan {
    Plan { fail_at: Some(i), ..Plan::default() }
}

crash_cases! {
    // With the log on another database than the first step's, the saga is logged
    // before its first step runs.
    killed_between_the_log_write_and_the_first_step:
        Plan::default(), &[("FRAISEQL_FAULT", "after_log_insert:three"), ("FRAISEQL_SAGA__LOG_DATABASE", "third")]
        => SagaStatus::Compensated, done [], undone [];
    killed_inside_a_step:
        Plan { crash_inside: Some("step:1".into()), ..Plan::default() }, &[]
        => SagaStatus::Compensated, done ["s1"], undone ["s1"];
    // The first step's transaction writes the saga's log row with its barrier.
    killed_after_the_first_step_commits:
        Plan::default(), &[("FRAISEQL_FAULT", "after_commit:s1")]
        => SagaStatus::Compensated, done ["s1"], undone ["s1"];
    killed_after_a_step_commits:
        Plan::default(), &[("FRAISEQL_FAULT", "after_commit:s2")]
        => SagaStatus::Compensated, done ["s1", "s2"], undone ["s1", "s2"];
    killed_with_the_barrier_written_but_not_committed:
        Plan::default(), &[("FRAISEQL_FAULT", "before_commit:s3")]
        => SagaStatus::Compensated, done ["s1", "s2"], undone ["s1", "s2"];
    killed_after_the_last_step_commits_before_completion_is_recorded:
        Plan::default(), &[("FRAISEQL_FAULT", "after_commit:s3")]
        => SagaStatus::Completed, done ["s1", "s2", "s3"], undone [];
    // With the log on the last step's database, that step's transaction records the
    // saga's completion: killed before it commits, neither is there.
    killed_with_the_completion_written_by_the_last_step_but_not_committed:
        Plan::default(), &[("FRAISEQL_FAULT", "before_commit:s3"), ("FRAISEQL_SAGA__LOG_DATABASE", "third")]
        => SagaStatus::Compensated, done ["s1", "s2"], undone ["s1", "s2"];
    killed_inside_a_compensation:
        Plan { fail_at: Some(2), crash_inside: Some("compensation:1".into()), ..Plan::default() }, &[]
        => SagaStatus::Compensated, done ["s1", "s2"], undone ["s1", "s2"];
    killed_after_a_compensation_commits:
        fail_at(2), &[("FRAISEQL_FAULT", "after_compensation_commit:s2")]
        => SagaStatus::Compensated, done ["s1", "s2"], undone ["s1", "s2"];
    recovered_forward_when_configured:
        Plan::default(), &[("FRAISEQL_FAULT", "after_commit:s1"), ("FRAISEQL_SAGA__RECOVERY", "forward")]
        => SagaStatus::Completed, done ["s1", "s2", "s3"], undone [];
}

/// With the log on the first step's database, the saga is logged by the first step's
/// own transaction (with its barrier, just before the commit): killed inside that step,
/// or with the log row and the barrier written but not committed, nothing was logged
/// and nothing happened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_inside_the_first_step_leaves_nothing_behind() {
    let inside = Plan { crash_inside: Some("step:0".into()), ..Plan::default() };
    for backend in common::BACKENDS {
        for (plan, fault) in [(&inside, ""), (&Plan::default(), "before_commit:s1")] {
            common::init_tracing();
            let dbs = TestDbs::new(backend, &DBS).await;
            let rt = dbs.start(|_| {}).await;
            three::create_schema(&rt).await;
            let out = child_command(&dbs, "run", plan, &[("FRAISEQL_FAULT", fault)]).output().unwrap();
            assert_eq!(out.status.signal(), Some(libc::SIGKILL), "{}", String::from_utf8_lossy(&out.stderr));
            assert!(rt.sagas().list(Default::default()).await.unwrap().is_empty(), "{backend:?} {fault}");
            let (n,): (i64,) = rt
                .database("primary")
                .unwrap()
                .fetch_optional("SELECT COUNT(*) FROM effects", ())
                .await
                .unwrap()
                .unwrap();
            assert_eq!(n, 0, "the first step's effect rolled back with the log row ({backend:?} {fault})");
            rt.shutdown().await.unwrap();
        }
    }
}

/// With the log on the last step's database, that step's own transaction records the
/// saga's completion: killed right after it commits, the saga reads as completed, with
/// its result, before any recovery has run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_step_on_the_log_database_records_the_completion_itself() {
    for backend in common::BACKENDS {
        common::init_tracing();
        let dbs = TestDbs::new(backend, &DBS).await;
        let log_on_third = |c: &mut Config| {
            c.saga.log_database = Some("third".into());
            c.saga.recover = false;
        };
        let rt = dbs.start(log_on_third).await;
        three::create_schema(&rt).await;
        let extra = [("FRAISEQL_FAULT", "after_commit:s3"), ("FRAISEQL_SAGA__LOG_DATABASE", "third")];
        let out = child_command(&dbs, "run", &Plan::default(), &extra).output().unwrap();
        assert_eq!(out.status.signal(), Some(libc::SIGKILL), "{}", String::from_utf8_lossy(&out.stderr));
        let all = rt.sagas().list(Default::default()).await.unwrap();
        assert_eq!(all.len(), 1, "{all:?}");
        let saga = rt.sagas().get(&all[0].id).await.unwrap();
        assert_eq!(saga.summary.status, SagaStatus::Completed, "{backend:?}: {saga:?}");
        assert_eq!(saga.summary.owner, None, "{backend:?}: completed sagas have no owner");
        // s3 returns the saga's id: the result is the last step's output.
        assert_eq!(saga.result, Some(serde_json::Value::String(all[0].id.clone())), "{backend:?}");
        assert_eq!(saga.state["done"], serde_json::json!(["s1", "s2", "s3"]), "{backend:?}: the final state");
        assert_eq!(effects(&rt, &all[0].id).await, expect(&["s1", "s2", "s3"], &[]));
        rt.shutdown().await.unwrap();
    }
}

/// 40 sagas stuck inside step 2 when their process is killed; two processes recover at
/// once. Each saga is recovered by exactly one of them and compensated exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_recovering_at_once_never_recover_a_saga_twice() {
    common::init_tracing();
    let dbs = TestDbs::new(Backend::Postgres, &DBS).await;
    // This process only watches: it must not recover anything itself.
    let rt = dbs.start(|c| c.saga.recover = false).await;
    three::create_schema(&rt).await;

    let plan = Plan { sleep_at: Some((1, 600_000)), ..Plan::default() };
    let mut child = child_command(&dbs, "run", &plan, &[("CRASH_SAGAS", "40"), ("FRAISEQL_SAGA__STEP_TIMEOUT", "1h")])
        .spawn()
        .unwrap();
    // Wait until all 40 are inside step 2 (step 1 committed, step 2 holding its transaction).
    let primary = rt.database("primary").unwrap().clone();
    for i in 0.. {
        let (n,): (i64,) = primary.fetch_optional("SELECT COUNT(*) FROM effects", ()).await.unwrap().unwrap();
        if n == 40 {
            break;
        }
        assert!(i < 600, "the child never got 40 sagas into step 2 (has {n})");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGKILL));

    let a = child_command(&dbs, "recover", &Plan::default(), &[("FRAISEQL_SAGA__RECOVER", "false")])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let b = child_command(&dbs, "recover", &Plan::default(), &[("FRAISEQL_SAGA__RECOVER", "false")])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    let count = |o: &std::process::Output| -> usize {
        let text = String::from_utf8_lossy(&o.stdout);
        text.lines()
            .find_map(|l| l.split_once("RECOVERED ").map(|x| x.1))
            .unwrap_or_else(|| {
                panic!("no count in child output: {text}\nstderr: {}", String::from_utf8_lossy(&o.stderr))
            })
            .trim()
            .parse()
            .unwrap()
    };
    let (na, nb) = (count(&a), count(&b));
    assert_eq!(na + nb, 40, "each saga recovered exactly once (a: {na}, b: {nb})");

    let sagas = rt.sagas().list(Default::default()).await.unwrap();
    assert_eq!(sagas.len(), 40);
    for s in &sagas {
        assert_eq!(s.status, SagaStatus::Compensated, "{s:?}");
        assert_eq!(effects(&rt, &s.id).await, expect(&["s1"], &["s1"]));
    }
    rt.shutdown().await.unwrap();
}

/// The server closes every connection of the runtime's pools (an administrator, a
/// restart, a proxy's timeout) while they sit in the pools, used moments ago: steps take
/// another connection when their `BEGIN` finds one closed, so no attempt fails — here
/// with no retries at all, where one failed attempt would fail its saga.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_closed_by_the_server_are_replaced_at_begin() {
    common::init_tracing();
    let dbs = TestDbs::new(Backend::Postgres, &DBS).await;
    let rt = dbs.start(|c| c.saga.step_retries = 0).await;
    three::create_schema(&rt).await;
    let admin = sqlx::PgPool::connect(&common::pg_admin_url()).await.unwrap();
    let names: Vec<String> = dbs.urls.values().map(|u| u.rsplit_once('/').unwrap().1.to_string()).collect();
    let run = |n: usize, tag: &str| {
        let futs: Vec<_> =
            (0..n).map(|i| tokio::spawn(rt.scope(three(format!("{tag}-{i}"), Plan::default())))).collect();
        async move {
            for f in futs {
                f.await.unwrap().expect("every saga completes");
            }
        }
    };
    for round in 0..3 {
        // Several connections in each pool, all just used.
        run(12, &format!("warm-{round}")).await;
        // The filter first (`OFFSET 0` keeps the planner from merging the two): other
        // tests' connections, and this one, must live.
        let killed: Vec<i32> = sqlx::query_scalar(
            "SELECT pid FROM (SELECT pid FROM pg_stat_activity WHERE datname = ANY($1) OFFSET 0) mine
             WHERE pg_terminate_backend(pid)",
        )
        .bind(&names)
        .fetch_all(&admin)
        .await
        .unwrap();
        assert!(killed.len() >= 3, "round {round}: the pools held connections to close (closed {killed:?})");
        // Gone for sure before the next sagas start (terminating only signals them), and
        // well within the second after which a pooled connection is checked anyway.
        for _ in 0..100 {
            let (left,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM pg_stat_activity WHERE pid = ANY($1)")
                .bind(&killed)
                .fetch_one(&admin)
                .await
                .unwrap();
            if left == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        run(12, &format!("after-{round}")).await;
    }
    let all = rt.sagas().list(fraiseql::ListFilter { limit: Some(1000), ..Default::default() }).await.unwrap();
    assert_eq!(all.len(), 72);
    assert!(all.iter().all(|s| s.status == SagaStatus::Completed), "{all:?}");
    admin.close().await;
    rt.shutdown().await.unwrap();
}
