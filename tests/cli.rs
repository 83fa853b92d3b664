//! The mountable `sagas` subcommand, parsed by clap as a user's binary would.

mod common;
#[path = "common/three.rs"]
mod three;

use clap::Parser;
use common::{Backend, TestDbs};
use fraiseql::cli::SagasCommand;
use three::{three, Plan, DBS};

#[derive(Parser)]
#[command(name = "myapp")]
enum MyApp {
    #[command(subcommand)]
    Sagas(SagasCommand),
}

async fn run(rt: &fraiseql::Runtime, args: &[&str]) -> Result<String, fraiseql::Error> {
    let MyApp::Sagas(cmd) = MyApp::try_parse_from(args).unwrap();
    let mut out = Vec::new();
    cmd.run(rt, &mut out).await?;
    Ok(String::from_utf8(out).unwrap())
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
        .map(|s| (format!("{}/{}", s["step"].as_str().unwrap(), s["phase"].as_str().unwrap()), s["status"].as_str().unwrap().to_string()))
        .collect();
    let want = [("s1/step", "committed"), ("s1/compensation", "committed"), ("s2/step", "failed"), ("s3/step", "pending")];
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
