//! FraiseQL's own tables under a running fleet: instances start beside a busy one with
//! no deadlock and no wait; tables of the release before versioning are brought forward;
//! a schema newer than this build is refused; the embedded default keeps its files where
//! a restarted process finds them.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Backend, TestDbs};
use fraiseql::prelude::*;
use fraiseql::{Config, SagaStatus};
use serde_json::json;
use sqlx::Connection;

const CHILD_ENV: &str = "FRAISEQL_MIGRATIONS_CHILD";

#[saga(steps = ["busy_write", "busy_mark"])]
async fn busy(tag: String) -> fraiseql::Result<()>;

/// The first step runs on the log database (so its transaction also logs the saga,
/// holding `fraiseql_saga`) and publishes (so it then inserts into `fraiseql_outbox`):
/// the pattern the schema script of the release before versioning deadlocked with.
#[saga_step("busy_write", database = "primary")]
async fn busy_write(ctx: &mut SagaContext, tag: String) -> fraiseql::Result<()> {
    let id = ctx.saga_id().to_string();
    ctx.execute("INSERT INTO busy_effect (saga_id, tag) VALUES ($1, $2)", (&id, &tag)).await?;
    // A little work while the transaction holds its locks.
    tokio::time::sleep(Duration::from_millis(2)).await;
    ctx.publish("fraiseql.busy.written", json!({ "saga_id": id, "tag": tag })).await?;
    Ok(())
}

#[compensate("busy_write")]
async fn undo_busy_write(ctx: &mut SagaContext) -> fraiseql::Result<()> {
    let id = ctx.saga_id().to_string();
    ctx.execute("DELETE FROM busy_effect WHERE saga_id = $1", (&id,)).await?;
    Ok(())
}

#[saga_step("busy_mark", database = "primary")]
async fn busy_mark(ctx: &mut SagaContext, tag: String) -> fraiseql::Result<()> {
    if tag == "hang" {
        // For the restart story: the parent kills the process while this step waits.
        println!("HANGING {}", ctx.saga_id());
        std::io::stdout().flush().unwrap();
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    let id = ctx.saga_id().to_string();
    ctx.execute("UPDATE busy_effect SET marked = 1 WHERE saga_id = $1", (&id,)).await?;
    Ok(())
}

const BUSY_SCHEMA: &str =
    "CREATE TABLE IF NOT EXISTS busy_effect (saga_id TEXT PRIMARY KEY, tag TEXT NOT NULL, marked INT NOT NULL DEFAULT 0)";

async fn count(db: &fraiseql::Db, sql: &str) -> i64 {
    let (n,): (i64,) = db.fetch_optional(sql, ()).await.unwrap().unwrap();
    n
}

/// The versions this build brings each component to, for the components a database
/// needs (the log database with the embedded bus: all of them).
fn latest(components: &[&str]) -> BTreeMap<String, i64> {
    fraiseql::migrate::latest_versions()
        .into_iter()
        .filter(|(c, _)| components.contains(c))
        .map(|(c, v)| (c.to_string(), v))
        .collect()
}

const ALL: [&str; 3] = ["steps", "log", "embedded_bus"];

/// The child side: `busy` runs sagas 16 at a time until its stdin closes, then reports;
/// `embedded-*` run on the zero-config default in the current directory. Run directly
/// (no `FRAISEQL_MIGRATIONS_CHILD`), it checks that the busy workload completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child() {
    match std::env::var(CHILD_ENV).unwrap_or_default().as_str() {
        "" => {
            let dbs = TestDbs::new(Backend::Sqlite, &["primary"]).await;
            let rt = dbs.start(|_| {}).await;
            rt.database("primary").unwrap().execute_script(BUSY_SCHEMA).await.unwrap();
            rt.scope(busy("direct".into())).await.unwrap();
            assert_eq!(count(rt.database("primary").unwrap(), "SELECT SUM(marked) FROM busy_effect").await, 1);
            rt.shutdown().await.unwrap();
        }
        "busy" => busy_child().await,
        "embedded-run" => {
            let rt = fraiseql::Runtime::embedded().await.unwrap();
            rt.database("primary").unwrap().execute_script(BUSY_SCHEMA).await.unwrap();
            let r = rt.scope(busy("hang".into())).await;
            panic!("the saga should have hung until this process was killed: {r:?}");
        }
        "embedded-recover" => {
            let rt = fraiseql::Runtime::embedded().await.unwrap();
            let id = std::env::var("SAGA_ID").unwrap();
            for _ in 0..300 {
                rt.recover_now().await.unwrap();
                let status = rt.sagas().get(&id).await.unwrap().summary.status;
                if status.is_terminal() {
                    let left = count(rt.database("primary").unwrap(), "SELECT COUNT(*) FROM busy_effect").await;
                    println!("STATUS {status} EFFECTS {left}");
                    rt.shutdown().await.unwrap();
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!("saga {id} was not recovered");
        }
        other => panic!("unknown child mode {other}"),
    }
}

async fn busy_child() {
    common::init_tracing(); // its warnings (step attempts that failed, and why) go to stderr
    let rt = fraiseql::Runtime::builder().config(Config::from_env().unwrap()).start().await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let _ = std::io::stdin().read_to_end(&mut Vec::new());
            stop.store(true, Ordering::SeqCst);
        });
    }
    let completed = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let workers: Vec<_> = (0..16)
        .map(|w| {
            let (rt, stop, completed, errors) = (rt.clone(), stop.clone(), completed.clone(), errors.clone());
            tokio::spawn(async move {
                let mut i = 0;
                while !stop.load(Ordering::SeqCst) {
                    i += 1;
                    match rt.scope(busy(format!("w{w}-{i}"))).await {
                        Ok(()) => {
                            if completed.fetch_add(1, Ordering::SeqCst) == 0 {
                                println!("READY");
                            }
                        }
                        Err(e) => errors.lock().unwrap().push(e.to_string()),
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    rt.shutdown().await.unwrap();
    let errors = errors.lock().unwrap();
    println!("DONE completed={} failed={}", completed.load(Ordering::SeqCst), errors.len());
    for e in errors.iter() {
        println!("SAGA ERROR {e}");
    }
}

fn child_command(mode: &str) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["child", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, mode)
        .env("RUST_LOG", "warn,sqlx=error")
        .stdin(Stdio::null());
    cmd
}

/// A busy instance runs sagas whose first step, on the log database, publishes; ten
/// other instances start and stop beside it, one after another. Every start succeeds,
/// and no transaction of the busy instance is chosen as a deadlock victim.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_start_beside_a_busy_one_without_deadlocks() {
    common::init_tracing();
    let dbs = TestDbs::new(Backend::Postgres, &["primary"]).await;
    let rt = dbs.start(|_| {}).await;
    let primary = rt.database("primary").unwrap().clone();
    primary.execute_script(BUSY_SCHEMA).await.unwrap();
    rt.shutdown().await.unwrap();

    let mut cmd = child_command("busy");
    for (k, v) in dbs.env() {
        cmd.env(k, v);
    }
    let mut child = cmd
        .env("FRAISEQL_SAGA__BACKOFF_INITIAL", "2ms")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Drain both pipes on threads, so a chatty child never blocks on a full pipe.
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            // libtest's "test child ... " may precede it on the same line.
            if line.ends_with("READY") {
                let _ = ready_tx.send(());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let stderr = child.stderr.take().unwrap();
    let err = std::thread::spawn(move || {
        let mut all = String::new();
        BufReader::new(stderr).read_to_string(&mut all).unwrap();
        all
    });
    if ready_rx.recv_timeout(Duration::from_secs(60)).is_err() {
        child.kill().unwrap();
        child.wait().unwrap();
        panic!("the busy child never completed a saga:\n{}\n{}", out.join().unwrap(), err.join().unwrap());
    }

    let mut failed_starts = Vec::new();
    for i in 0..10 {
        let mut c = dbs.config();
        c.saga.recover = false;
        let start = fraiseql::Runtime::builder().config(c).set_default(false).start();
        match tokio::time::timeout(Duration::from_secs(30), start).await {
            Ok(Ok(rt)) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                rt.shutdown().await.unwrap();
            }
            Ok(Err(e)) => failed_starts.push(format!("start {i}: {e}")),
            Err(_) => failed_starts.push(format!("start {i}: still waiting after 30s")),
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    drop(child.stdin.take()); // tells the child to finish its sagas and stop
    let status = child.wait().unwrap();
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
    assert!(status.success(), "the busy child failed ({status:?}):\n{out}\n{err}");

    // Both kinds of victim, reported together: a start that failed, and a transaction of
    // the busy instance that was chosen to break a deadlock (and retried).
    let rt = dbs.start(|c| c.saga.recover = false).await;
    let primary = rt.database("primary").unwrap().clone();
    let victims =
        count(&primary, "SELECT COUNT(*) FROM fraiseql_saga_attempt WHERE error LIKE '%deadlock detected%'").await;
    let logged = err.lines().filter(|l| l.contains("deadlock detected") || l.contains("40P01")).count();
    assert!(
        failed_starts.is_empty() && victims == 0 && logged == 0,
        "{} of 10 starts failed; the busy instance had {victims} step attempts and {logged} logged errors that \
         were deadlock victims\nfailed starts:\n{}\nbusy instance:\n{}",
        failed_starts.len(),
        failed_starts.join("\n"),
        err.lines().filter(|l| l.contains("deadlock")).take(10).collect::<Vec<_>>().join("\n")
    );
    let done =
        out.lines().find_map(|l| l.split_once("DONE ").map(|x| x.1)).unwrap_or_else(|| panic!("no report:\n{out}"));
    let completed: i64 = done.split(' ').next().unwrap().trim_start_matches("completed=").parse().unwrap();
    assert!(done.ends_with("failed=0"), "sagas of the busy instance failed: {done}\n{out}");
    assert!(completed > 0, "{done}");
    println!("busy instance: {done}");
    let sagas = count(&primary, "SELECT COUNT(*) FROM fraiseql_saga").await;
    let finished = count(&primary, "SELECT COUNT(*) FROM fraiseql_saga WHERE status = 'completed'").await;
    assert_eq!((sagas, finished), (completed, completed), "every saga the busy instance started completed");
    rt.shutdown().await.unwrap();
}

/// With another connection holding every FraiseQL table but the version table in ACCESS
/// EXCLUSIVE mode (stronger than any running step's locks), a start on a current schema
/// completes: it reads the version table and nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_on_a_current_schema_waits_for_no_open_transaction() {
    common::init_tracing();
    let dbs = TestDbs::new(Backend::Postgres, &["primary"]).await;
    let rt = dbs.start(|_| {}).await;
    rt.shutdown().await.unwrap();

    let mut blocker = sqlx::PgConnection::connect(&dbs.urls["primary"]).await.unwrap();
    let tables: Vec<(String,)> = sqlx::query_as(
        "SELECT tablename::text FROM pg_tables WHERE tablename LIKE 'fraiseql%' AND tablename <> 'fraiseql_schema_version'",
    )
    .fetch_all(&mut blocker)
    .await
    .unwrap();
    let tables: Vec<String> = tables.into_iter().map(|t| t.0).collect();
    assert!(tables.len() >= 7, "{tables:?}");
    sqlx::raw_sql(&format!("BEGIN; LOCK TABLE {} IN ACCESS EXCLUSIVE MODE", tables.join(", ")))
        .execute(&mut blocker)
        .await
        .unwrap();

    let start = fraiseql::Runtime::builder().config(dbs.config()).set_default(false).start();
    let started = tokio::time::timeout(Duration::from_secs(20), start).await;
    sqlx::raw_sql("ROLLBACK").execute(&mut blocker).await.unwrap();
    let rt = started.expect("the start waited for a transaction holding FraiseQL's tables").unwrap();
    rt.shutdown().await.unwrap();
}

/// The schema exactly as the release before versioning created it (no version table).
const PREVIOUS_RELEASE: &str = "
CREATE TABLE IF NOT EXISTS fraiseql_barrier (
    saga_id TEXT NOT NULL,
    idx BIGINT NOT NULL,
    phase TEXT NOT NULL,
    outcome TEXT NOT NULL,
    owner TEXT NOT NULL,
    step TEXT NOT NULL,
    state TEXT,
    output TEXT,
    attempt BIGINT NOT NULL,
    started_at BIGINT NOT NULL,
    finished_at BIGINT NOT NULL,
    PRIMARY KEY (saga_id, idx, phase)
);
CREATE TABLE IF NOT EXISTS fraiseql_outbox (
    id TEXT PRIMARY KEY,
    subject TEXT NOT NULL,
    event_type TEXT NOT NULL,
    payload TEXT NOT NULL,
    saga_id TEXT,
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS fraiseql_outbox_due ON fraiseql_outbox (next_attempt_at) WHERE status = 'pending';
CREATE TABLE IF NOT EXISTS fraiseql_saga (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    idempotency_key TEXT,
    status TEXT NOT NULL,
    steps TEXT NOT NULL,
    input TEXT NOT NULL,
    state TEXT NOT NULL,
    result TEXT,
    failed_step TEXT,
    error TEXT,
    owner TEXT,
    lease_until BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS fraiseql_saga_key ON fraiseql_saga (idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS fraiseql_saga_open ON fraiseql_saga (lease_until) WHERE status IN ('running', 'compensating');
CREATE INDEX IF NOT EXISTS fraiseql_saga_trouble ON fraiseql_saga (id) WHERE status IN ('compensated', 'failed', 'stuck');
CREATE TABLE IF NOT EXISTS fraiseql_saga_attempt (
    saga_id TEXT NOT NULL,
    idx BIGINT NOT NULL,
    phase TEXT NOT NULL,
    step TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    status TEXT NOT NULL,
    error TEXT,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (saga_id, idx, phase)
);
CREATE TABLE IF NOT EXISTS fraiseql_dead_event (
    consumer TEXT NOT NULL,
    event_id TEXT NOT NULL,
    subject TEXT NOT NULL,
    payload TEXT NOT NULL,
    reason TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (consumer, event_id)
);
CREATE TABLE IF NOT EXISTS fraiseql_consumer (name TEXT PRIMARY KEY, acked_seq BIGINT NOT NULL);
";

fn previous_event_table(backend: Backend) -> String {
    let seq = match backend {
        Backend::Postgres => "seq BIGSERIAL PRIMARY KEY",
        Backend::Sqlite => "seq INTEGER PRIMARY KEY AUTOINCREMENT",
    };
    format!("CREATE TABLE IF NOT EXISTS fraiseql_event ({seq}, id TEXT NOT NULL UNIQUE, subject TEXT NOT NULL, payload TEXT NOT NULL, published_at BIGINT NOT NULL)")
}

/// Run a script on a test database without starting FraiseQL.
async fn run_script(dbs: &TestDbs, name: &str, script: &str) {
    let url = &dbs.urls[name];
    match dbs.backend {
        Backend::Postgres => {
            let mut c = sqlx::PgConnection::connect(url).await.unwrap();
            sqlx::raw_sql(script).execute(&mut c).await.unwrap();
            c.close().await.unwrap();
        }
        Backend::Sqlite => {
            let opts: sqlx::sqlite::SqliteConnectOptions = url.parse().unwrap();
            let mut c = sqlx::SqliteConnection::connect_with(&opts.create_if_missing(true)).await.unwrap();
            sqlx::raw_sql(script).execute(&mut c).await.unwrap();
            c.close().await.unwrap();
        }
    }
}

/// A database that the release before versioning set up, with a completed saga in it:
/// the start records the current versions, and the saga is still there to read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_on_the_previous_release_s_tables_brings_them_forward() {
    common::init_tracing();
    for backend in common::BACKENDS {
        let dbs = TestDbs::new(backend, &["primary"]).await;
        let id = "0193a000-0000-7000-8000-000000000001";
        let script = format!(
            "{PREVIOUS_RELEASE}{};
             {BUSY_SCHEMA};
             INSERT INTO busy_effect (saga_id, tag, marked) VALUES ('{id}', 'old', 1);
             INSERT INTO fraiseql_saga (id, name, status, steps, input, state, result, lease_until, created_at, updated_at)
                 VALUES ('{id}', 'busy', 'completed', '[\"busy_write\",\"busy_mark\"]', '{{\"tag\":\"old\"}}', 'null', 'null', 0, 1000, 2000);
             INSERT INTO fraiseql_barrier (saga_id, idx, phase, outcome, owner, step, state, output, attempt, started_at, finished_at)
                 VALUES ('{id}', 0, 'step', 'committed', 'old-instance', 'busy_write', 'null', 'null', 1, 1000, 1100),
                        ('{id}', 1, 'step', 'committed', 'old-instance', 'busy_mark', 'null', 'null', 1, 1100, 1200);",
            previous_event_table(backend)
        );
        run_script(&dbs, "primary", &script).await;

        let rt = dbs.start(|_| {}).await;
        let primary = rt.database("primary").unwrap().clone();
        assert_eq!(fraiseql::migrate::applied_versions(&primary).await.unwrap(), latest(&ALL), "{backend:?}");
        let saga = rt.sagas().get(id).await.unwrap();
        assert_eq!(saga.summary.status, SagaStatus::Completed, "{backend:?}");
        assert_eq!(saga.input, json!({ "tag": "old" }));
        let steps: Vec<(&str, &str)> = saga.steps.iter().map(|s| (s.step.as_str(), s.status.as_str())).collect();
        assert_eq!(steps, [("busy_write", "committed"), ("busy_mark", "committed")], "{backend:?}");
        // And the tables work as before: a new saga beside the old one.
        rt.scope(busy("new".into())).await.unwrap();
        assert_eq!(count(&primary, "SELECT COUNT(*) FROM busy_effect WHERE marked = 1").await, 2);
        rt.shutdown().await.unwrap();
    }
}

/// A migration that needs a table running transactions hold (here: the outbox index a
/// release before versioning lacked, beside an open transaction that wrote to the
/// outbox) gives way: it waits at most briefly for the lock, rolls back and tries again,
/// so the other writers of that table are never queued behind it; it completes once the
/// table is free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_waiting_for_a_busy_table_does_not_hold_up_its_writers() {
    common::init_tracing();
    let dbs = TestDbs::new(Backend::Postgres, &["primary"]).await;
    let script = format!(
        "{PREVIOUS_RELEASE}{}; DROP INDEX fraiseql_outbox_due; {BUSY_SCHEMA}",
        previous_event_table(Backend::Postgres)
    );
    run_script(&dbs, "primary", &script).await;
    const INSERT: &str =
        "INSERT INTO fraiseql_outbox (id, subject, event_type, payload, status, attempts, created_at, next_attempt_at)
                          VALUES ($1, 'fraiseql.busy.x', 'busy.x', '{}', 'dead', 0, 0, 0)";

    let mut blocker = sqlx::PgConnection::connect(&dbs.urls["primary"]).await.unwrap();
    sqlx::raw_sql("BEGIN").execute(&mut blocker).await.unwrap();
    sqlx::query(INSERT).bind("held").execute(&mut blocker).await.unwrap();

    let config = dbs.config();
    let start =
        tokio::spawn(async move { fraiseql::Runtime::builder().config(config).set_default(false).start().await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut writer = sqlx::PgConnection::connect(&dbs.urls["primary"]).await.unwrap();
    for i in 0..5 {
        let insert = sqlx::query(INSERT).bind(format!("w{i}")).execute(&mut writer);
        let written = tokio::time::timeout(Duration::from_secs(10), insert).await;
        assert!(written.is_ok(), "a writer of the outbox was queued behind the waiting migration");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!start.is_finished(), "the index cannot have been built while the outbox is written to");

    sqlx::raw_sql("COMMIT").execute(&mut blocker).await.unwrap();
    let rt = tokio::time::timeout(Duration::from_secs(60), start)
        .await
        .expect("the migration completes once the table is free")
        .unwrap()
        .expect("runtime starts");
    let primary = rt.database("primary").unwrap();
    assert_eq!(fraiseql::migrate::applied_versions(primary).await.unwrap(), latest(&ALL));
    let (index,): (Option<String>,) =
        sqlx::query_as("SELECT to_regclass('fraiseql_outbox_due')::text").fetch_one(&mut writer).await.unwrap();
    assert_eq!(index.as_deref(), Some("fraiseql_outbox_due"));
    rt.shutdown().await.unwrap();
}

/// Applying migrations to a fresh database, then starting again (also two instances at
/// once on a fresh database): each version is recorded once, in each database only
/// the components it needs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_apply_once_and_starting_again_changes_nothing() {
    common::init_tracing();
    for backend in common::BACKENDS {
        let dbs = TestDbs::new(backend, &["primary", "other"]).await;
        let (a, b) = tokio::join!(dbs.start(|_| {}), dbs.start(|_| {}));
        a.shutdown().await.unwrap();
        b.shutdown().await.unwrap();
        for _ in 0..2 {
            let rt = dbs.start(|_| {}).await;
            let primary = rt.database("primary").unwrap();
            let other = rt.database("other").unwrap();
            assert_eq!(fraiseql::migrate::applied_versions(primary).await.unwrap(), latest(&ALL), "{backend:?}");
            assert_eq!(fraiseql::migrate::applied_versions(other).await.unwrap(), latest(&["steps"]), "{backend:?}");
            let rows = count(primary, "SELECT COUNT(*) FROM fraiseql_schema_version").await;
            let versions: i64 = latest(&ALL).values().sum();
            assert_eq!(rows, versions, "{backend:?}: one row per applied version");
            assert_eq!(count(other, "SELECT COUNT(*) FROM fraiseql_schema_version").await, latest(&["steps"])["steps"]);
            rt.shutdown().await.unwrap();
        }
    }
}

/// A database migrated by a newer release is refused, naming the database, the
/// component and both versions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_newer_than_this_build_is_refused() {
    common::init_tracing();
    for backend in common::BACKENDS {
        let dbs = TestDbs::new(backend, &["primary"]).await;
        dbs.start(|_| {}).await.shutdown().await.unwrap();
        run_script(
            &dbs,
            "primary",
            "INSERT INTO fraiseql_schema_version (component, version, description, applied_at) VALUES ('log', 99, 'from the future', 0)",
        )
        .await;
        let err = fraiseql::Runtime::builder().config(dbs.config()).set_default(false).start().await.unwrap_err();
        let known = latest(&["log"])["log"];
        match &err {
            fraiseql::Error::SchemaTooNew { database, component, found, known: k } => {
                assert_eq!((database.as_str(), component.as_str(), *found, *k), ("primary", "log", 99, known));
            }
            other => panic!("{backend:?}: expected SchemaTooNew, got {other:?}"),
        }
        let msg = err.to_string();
        for part in ["database `primary`", "`log`", "version 99", &format!("up to version {known}")] {
            assert!(msg.contains(part), "{backend:?}: `{part}` missing from: {msg}");
        }
    }
}

/// The zero-config default keeps its files in `.fraiseql/<program>/` under the current
/// directory: a process killed inside a saga leaves it there, and the next process
/// started in the same directory recovers it (compensates its first step).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_default_keeps_its_files_where_a_restart_finds_them() {
    let cwd = std::env::temp_dir().join(format!("fraiseql-cwd-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&cwd).unwrap();
    let mut run = child_command("embedded-run")
        .current_dir(&cwd)
        .env("FRAISEQL_SAGA__STEP_TIMEOUT", "1h")
        .env("FRAISEQL_SAGA__LEASE_TTL", "1s")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(run.stdout.take().unwrap()).lines();
    let id = loop {
        let line = lines.next().expect("the child printed HANGING before it ended").unwrap();
        if let Some((_, id)) = line.split_once("HANGING ") {
            break id.to_string();
        }
    };
    run.kill().unwrap(); // SIGKILL, inside the second step
    assert_eq!(run.wait().unwrap().signal(), Some(libc::SIGKILL));

    let exe = std::env::current_exe().unwrap();
    let program = exe.file_stem().unwrap();
    assert!(cwd.join(".fraiseql").join(program).join("primary.db").exists(), "the default location");

    let out = child_command("embedded-recover")
        .current_dir(&cwd)
        .env("FRAISEQL_SAGA__LEASE_TTL", "1s")
        .env("SAGA_ID", &id)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("STATUS compensated EFFECTS 0"), "recovered and compensated: {stdout}");
    std::fs::remove_dir_all(&cwd).unwrap();
}
