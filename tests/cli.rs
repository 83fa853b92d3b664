//! The mountable `sagas` subcommand, parsed by clap as a user's binary would.

mod common;
#[path = "common/three.rs"]
mod three;

use clap::Parser;
use common::{Backend, TestDbs};
use fraiseql::cli::{EventsCommand, GraphqlCommand, SagasCommand};
use fraiseql::prelude::*;
use three::{three, Plan, DBS};

#[derive(Parser)]
#[command(name = "myapp")]
enum MyApp {
    #[command(subcommand)]
    Sagas(SagasCommand),
    #[command(subcommand)]
    Events(EventsCommand),
    #[command(subcommand)]
    Graphql(GraphqlCommand),
}

async fn run(rt: &fraiseql::Runtime, args: &[&str]) -> Result<String, fraiseql::Error> {
    let mut out = Vec::new();
    match MyApp::try_parse_from(args).unwrap() {
        MyApp::Sagas(cmd) => cmd.run(rt, &mut out).await?,
        MyApp::Events(cmd) => cmd.run(rt, &mut out).await?,
        MyApp::Graphql(cmd) => cmd.run(rt, &mut out).await?,
    }
    Ok(String::from_utf8(out).unwrap())
}

#[derive(Debug, serde::Deserialize)]
pub struct Amount {
    pub cents: i64,
}

#[subscribe("fraiseql.cli.>", durable = "cli-amounts")]
async fn amounts(event: Event<Amount>, _ctx: &EventContext) -> fraiseql::Result<()> {
    let _ = event.data.cents;
    Ok(())
}

#[tokio::test]
async fn events_subcommands_list_dead_events_and_rebuild() {
    let dbs = TestDbs::new(Backend::Sqlite, &DBS).await;
    let rt = dbs.start(|_| {}).await;
    rt.publish("fraiseql.cli.paid", serde_json::json!({ "cents": "lots" })).await.unwrap();
    rt.publish("fraiseql.cli.paid", serde_json::json!({ "cents": 5 })).await.unwrap();
    let mut out = String::new();
    for _ in 0..100 {
        out = run(&rt, &["myapp", "events", "dead-events", "--consumer", "cli-amounts"]).await.unwrap();
        if out.lines().count() > 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(
        out.contains("cli-amounts") && out.contains("fraiseql.cli.paid") && out.contains("does not deserialise into"),
        "{out}"
    );
    // Both events handled (one dead, one processed): nothing pending.
    let mut cols = Vec::new();
    for _ in 0..100 {
        let out = run(&rt, &["myapp", "events", "consumers"]).await.unwrap();
        let line = out.lines().find(|l| l.starts_with("cli-amounts")).unwrap_or_else(|| panic!("{out}")).to_string();
        cols = line.split_whitespace().map(String::from).collect::<Vec<_>>();
        if cols.last().map(String::as_str) == Some("0") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(cols, ["cli-amounts", "fraiseql.cli.>", "-", "0"]);
    let json: serde_json::Value =
        serde_json::from_str(&run(&rt, &["myapp", "events", "consumers", "--json"]).await.unwrap()).unwrap();
    assert_eq!(json[0]["name"], "cli-amounts", "{json}");
    let out = run(&rt, &["myapp", "events", "dead-letters"]).await.unwrap();
    assert_eq!(out.lines().count(), 1, "no dead letters, only the header: {out}");
    let out = run(&rt, &["myapp", "events", "retry", "--all"]).await.unwrap();
    assert!(out.contains("0 dead letter(s) put back in line"), "{out}");
    let err = run(&rt, &["myapp", "events", "retry"]).await.unwrap_err();
    assert!(err.to_string().contains("an id), or --all"), "{err}");
    let out = run(&rt, &["myapp", "events", "rebuild", "cli-amounts"]).await.unwrap();
    assert!(out.contains("rebuilt with `cli-amounts` from 1 events"), "the poison event is skipped: {out}");
    let err = run(&rt, &["myapp", "events", "rebuild", "nobody"]).await.unwrap_err();
    assert!(err.to_string().contains("no #[subscribe] handler or durable consumer named `nobody`"), "{err}");

    // The outbox's backlog: a row a killed process left a minute ago, not yet due.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    rt.database("primary")
        .unwrap()
        .execute(
            "INSERT INTO fraiseql_outbox (id, subject, event_type, payload, status, attempts, created_at, next_attempt_at)
             VALUES ('left-behind', 'fraiseql.cli.paid', 'cli.paid', '{}', 'pending', 0, $1, $2)",
            (now - 60_000, now + 3_600_000),
        )
        .await
        .unwrap();
    let out = run(&rt, &["myapp", "events", "outbox"]).await.unwrap();
    let primary = out.lines().find(|l| l.starts_with("primary")).unwrap_or_else(|| panic!("{out}"));
    let cols: Vec<&str> = primary.split_whitespace().collect();
    assert_eq!(&cols[1..3], &["1", "0"], "one pending, none dead: {out}");
    assert!(cols[3].starts_with("1m"), "lagging a minute behind: {out}");
    let json: serde_json::Value =
        serde_json::from_str(&run(&rt, &["myapp", "events", "outbox", "--json"]).await.unwrap()).unwrap();
    let primary = json.as_array().unwrap().iter().find(|b| b["database"] == "primary").unwrap();
    assert_eq!((primary["pending"].as_u64(), primary["oldest_pending_at"].as_i64()), (Some(1), Some(now - 60_000)));
    assert!(primary["lag"].as_u64().unwrap() >= 60_000, "{primary}");
    rt.shutdown().await.unwrap();
}

#[tokio::test]
async fn list_show_and_retry_from_the_command_line() {
    let dbs = TestDbs::new(Backend::Sqlite, &DBS).await;
    let rt = dbs.start(|_| {}).await;
    three::create_schema(&rt).await;
    rt.scope(three("ok".into(), Plan::default())).await.unwrap();
    let err = rt.scope(three("bad".into(), Plan { fail_at: Some(1), ..Plan::default() })).await.unwrap_err();
    let failed_id = match err {
        fraiseql::Error::SagaAborted { saga_id, .. } => saga_id.to_string(),
        other => panic!("{other}"),
    };

    let out = run(&rt, &["myapp", "sagas", "list", "--status", "compensated"]).await.unwrap();
    assert!(out.contains(&failed_id), "{out}");
    assert!(out.contains("s2 fails on purpose"), "{out}");
    assert_eq!(out.lines().count(), 2, "header + one saga: {out}");

    let out = run(&rt, &["myapp", "sagas", "show", &failed_id]).await.unwrap();
    assert!(out.contains("status: compensated"), "{out}");
    for needle in ["s1", "step", "compensation", "committed", "failed", "primary", "second"] {
        assert!(out.contains(needle), "`{needle}` missing from:\n{out}");
    }

    let json = run(&rt, &["myapp", "sagas", "show", &failed_id, "--json"]).await.unwrap();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["status"], "compensated");
    let steps: Vec<(String, String)> = v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                format!("{}/{}", s["step"].as_str().unwrap(), s["phase"].as_str().unwrap()),
                s["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let want =
        [("s1/step", "committed"), ("s1/compensation", "committed"), ("s2/step", "failed"), ("s3/step", "pending")];
    assert_eq!(steps, want.map(|(a, b)| (a.to_string(), b.to_string())));

    let err = run(&rt, &["myapp", "sagas", "retry", &failed_id]).await.unwrap_err();
    assert!(err.to_string().contains("no failed or stuck saga"), "{err}");
    let err = run(&rt, &["myapp", "sagas", "show", "nope"]).await.unwrap_err();
    assert!(err.to_string().contains("no saga with id `nope`"), "{err}");
    rt.shutdown().await.unwrap();
}

#[test]
fn a_bad_status_lists_the_valid_ones() {
    let err = match MyApp::try_parse_from(["myapp", "sagas", "list", "--status", "broken"]) {
        Ok(_) => panic!("`broken` is not a status"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("compensated") && err.contains("failed") && err.contains("stuck"), "{err}");
}

#[tokio::test]
async fn graphql_subcommands_print_the_schema() {
    let dbs = TestDbs::new(Backend::Sqlite, &DBS).await;
    let rt = dbs.start(|_| {}).await;
    let sdl = run(&rt, &["myapp", "graphql", "sdl"]).await.unwrap();
    assert!(sdl.contains("type Mutation") && sdl.contains("three("), "the saga of this binary is a mutation: {sdl}");
    let json = run(&rt, &["myapp", "graphql", "introspection"]).await.unwrap();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["data"]["__schema"]["mutationType"]["name"], "Mutation", "{json}");
    rt.shutdown().await.unwrap();
}
