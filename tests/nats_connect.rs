//! Connecting to NATS and managing the stream: secured servers (token, user and
//! password, NKey, TLS) with right and wrong credentials, and stream configurations that
//! are updated in place or refused with the reason. Each test runs its own nats-server.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use async_nats::jetstream;
use common::{Backend, NatsServer, TestDbs};
use fraiseql::{Config, Runtime, StreamRetention, StreamStorage};
use serde_json::json;

async fn start(dbs: &TestDbs, tweak: impl FnOnce(&mut Config)) -> fraiseql::Result<Runtime> {
    common::init_tracing();
    let mut c = dbs.config();
    c.events.connect_timeout = Duration::from_secs(3);
    tweak(&mut c);
    Runtime::builder().config(c).set_default(false).start().await
}

/// The runtime publishes, and reads its event back from the stream.
async fn round_trip(rt: &Runtime) {
    let id = rt.publish("fraiseql.secured.ping", json!({ "n": 1 })).await.unwrap();
    let h = rt.history("fraiseql.secured.>", None).await.unwrap();
    assert_eq!(h.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), vec![id.as_str()]);
}

async fn refused(dbs: &TestDbs, tweak: impl FnOnce(&mut Config)) -> String {
    match start(dbs, tweak).await {
        Ok(rt) => {
            rt.shutdown().await.unwrap();
            panic!("started with wrong credentials")
        }
        Err(e) => e.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_protected_server() {
    let nats = NatsServer::start_with(|_| vec!["--auth".into(), "s3cret-token".into()]).await;
    let dbs = TestDbs::new(Backend::Sqlite, &["primary"]).await;
    let rt = start(&dbs, |c| {
        c.events.url = Some(nats.url());
        c.events.token = Some("s3cret-token".into());
    })
    .await
    .unwrap();
    round_trip(&rt).await;
    rt.shutdown().await.unwrap();
    let err = refused(&dbs, |c| {
        c.events.url = Some(nats.url());
        c.events.token = Some("wrong".into());
    })
    .await;
    assert!(err.contains("authorization violation") && err.contains(&nats.url()), "{err}");
    assert!(!err.contains("wrong"), "the token is not printed: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_and_password_protected_server() {
    let nats =
        NatsServer::start_with(|_| vec!["--user".into(), "app".into(), "--pass".into(), "pa55word".into()]).await;
    let dbs = TestDbs::new(Backend::Sqlite, &["primary"]).await;
    let rt = start(&dbs, |c| {
        c.events.url = Some(nats.url());
        c.events.user = Some("app".into());
        c.events.password = Some("pa55word".into());
    })
    .await
    .unwrap();
    round_trip(&rt).await;
    rt.shutdown().await.unwrap();
    let err = refused(&dbs, |c| c.events.url = Some(nats.url())).await;
    assert!(err.contains("authorization violation"), "no credentials: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_nkey_protected_server() {
    let user = nkeys::KeyPair::new_user();
    let public = user.public_key();
    let nats = NatsServer::start_with(|dir| {
        let conf = dir.join("nkey.conf");
        std::fs::write(&conf, format!("authorization {{ users = [ {{ nkey: \"{public}\" }} ] }}\n")).unwrap();
        vec!["-c".into(), conf.display().to_string()]
    })
    .await;
    let dbs = TestDbs::new(Backend::Sqlite, &["primary"]).await;
    let rt = start(&dbs, |c| {
        c.events.url = Some(nats.url());
        c.events.nkey = Some(user.seed().unwrap());
    })
    .await
    .unwrap();
    round_trip(&rt).await;
    rt.shutdown().await.unwrap();
    let other = nkeys::KeyPair::new_user();
    let err = refused(&dbs, |c| {
        c.events.url = Some(nats.url());
        c.events.nkey = Some(other.seed().unwrap());
    })
    .await;
    assert!(err.contains("authorization violation"), "another key: {err}");
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl (scripts/test installs it)");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A throwaway CA and a server certificate for 127.0.0.1 signed by it.
fn certificates(dir: &Path) {
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
    openssl(
        dir,
        &[
            &["req", "-x509"][..],
            &ec,
            &["-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=fraiseql test CA"],
        ]
        .concat(),
    );
    openssl(
        dir,
        &[&["req"][..], &ec, &["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost"]].concat(),
    );
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_server_with_a_private_ca() {
    let nats = NatsServer::start_with(|dir| {
        certificates(dir);
        let f = |n: &str| dir.join(n).display().to_string();
        vec!["--tls".into(), "--tlscert".into(), f("server.pem"), "--tlskey".into(), f("server.key")]
    })
    .await;
    let dbs = TestDbs::new(Backend::Sqlite, &["primary"]).await;
    let rt = start(&dbs, |c| {
        c.events.url = Some(nats.url());
        c.events.tls_required = true;
        c.events.tls_ca_file = Some(nats.dir.join("ca.pem"));
    })
    .await
    .unwrap();
    round_trip(&rt).await;
    rt.shutdown().await.unwrap();
    // Without the CA the server's certificate is not trusted.
    let err = refused(&dbs, |c| {
        c.events.url = Some(nats.url());
        c.events.tls_required = true;
    })
    .await;
    assert!(err.to_lowercase().contains("certificate"), "an untrusted certificate: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_is_created_updated_or_refused_with_the_reason() {
    let nats = NatsServer::start().await;
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = jetstream::new(client);
    let dbs = TestDbs::new(Backend::Sqlite, &["primary"]).await;

    // Created from the configuration.
    let rt = start(&dbs, |c| {
        c.events.url = Some(nats.url());
        c.events.stream = "ORDERS".into();
        c.events.subjects = vec!["orders.>".into()];
        c.events.max_age = Some(Duration::from_secs(3600));
    })
    .await
    .unwrap();
    rt.shutdown().await.unwrap();
    let info = js.get_stream("ORDERS").await.unwrap().info().await.unwrap().config.clone();
    assert_eq!(
        (info.subjects, info.max_age, info.storage),
        (vec!["orders.>".to_string()], Duration::from_secs(3600), jetstream::stream::StorageType::File)
    );

    // Updated in place when subjects or retention change; its events stay.
    let rt = start(&dbs, |c| {
        c.events.url = Some(nats.url());
        c.events.stream = "ORDERS".into();
        c.events.subjects = vec!["orders.>".into(), "billing.>".into()];
        c.events.retention = StreamRetention::Interest;
    })
    .await
    .unwrap();
    rt.publish("billing.invoice.sent", json!({})).await.unwrap();
    rt.shutdown().await.unwrap();
    let mut stream = js.get_stream("ORDERS").await.unwrap();
    let info = stream.info().await.unwrap();
    assert_eq!(info.config.subjects, vec!["orders.>".to_string(), "billing.>".to_string()]);
    assert_eq!(info.config.retention, jetstream::stream::RetentionPolicy::Interest);

    // Storage cannot change in place: refused, naming both.
    let err = refused(&dbs, |c| {
        c.events.url = Some(nats.url());
        c.events.stream = "ORDERS".into();
        c.events.subjects = vec!["orders.>".into(), "billing.>".into()];
        c.events.storage = StreamStorage::Memory;
    })
    .await;
    assert!(err.contains("stream `ORDERS` exists with storage File but events.storage says Memory"), "{err}");

    // Subjects another stream already captures: the server's reason, with ours.
    let err = refused(&dbs, |c| {
        c.events.url = Some(nats.url());
        c.events.stream = "AUDIT".into();
        c.events.subjects = vec!["orders.created".into()];
    })
    .await;
    assert!(err.contains("cannot create stream `AUDIT`") && err.contains("overlap"), "{err}");
}

/// The server loses the stream while the runtime runs (an operator's delete; a server
/// restarted with fresh storage looks the same): the next publish recreates it from the
/// configuration and goes through, with no restart and no consumer to do it first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_recreates_a_stream_the_server_lost() {
    let nats = NatsServer::start().await;
    let dbs = TestDbs::new(Backend::Sqlite, &["primary"]).await;
    let url = nats.url();
    let rt = start(&dbs, |c| c.events.url = Some(url.clone())).await.unwrap();
    round_trip(&rt).await;
    let js = jetstream::new(async_nats::connect(&url).await.unwrap());
    js.delete_stream("FRAISEQL").await.unwrap();
    assert!(js.get_stream("FRAISEQL").await.is_err(), "the stream is gone");
    let id = rt.publish("fraiseql.secured.after", json!({ "n": 2 })).await.unwrap();
    let info = js.get_stream("FRAISEQL").await.unwrap().info().await.unwrap().clone();
    assert_eq!(info.config.subjects, vec!["fraiseql.>".to_string()], "recreated from the configuration");
    let h = rt.history("fraiseql.secured.>", None).await.unwrap();
    assert_eq!(h.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), vec![id.as_str()], "the new stream holds it");
    rt.shutdown().await.unwrap();
}
