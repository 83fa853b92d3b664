//! Configuration: file + environment, and clear errors for bad input.

use fraiseql::{Config, Error, RecoveryPolicy};

fn config_err(toml: &str) -> String {
    match Config::from_toml(toml) {
        Ok(c) => panic!("expected an error, got {c:?}"),
        Err(Error::Config { message, .. }) => message,
        Err(other) => panic!("expected a configuration error, got {other}"),
    }
}

#[test]
fn a_full_file_is_read() {
    let c = Config::from_toml(
        r#"
        [databases.primary]
        url = "postgres://app:secret@db.internal:5432/app"
        max_connections = 32
        acquire_timeout = "3s"

        [databases.ledger]
        url = "sqlite://ledger.db"

        [saga]
        log_database = "ledger"
        step_retries = 5
        step_timeout = "1m 30s"
        recovery = "forward"
        lease_ttl = "10s"
        "#,
    )
    .unwrap();
    assert_eq!(c.databases["primary"].max_connections, 32);
    assert_eq!(c.databases["primary"].acquire_timeout, std::time::Duration::from_secs(3));
    assert_eq!(c.saga.step_timeout, std::time::Duration::from_secs(90));
    assert_eq!(c.saga.recovery, RecoveryPolicy::Forward);
    assert_eq!(c.saga.log_database.as_deref(), Some("ledger"));
}

#[test]
fn environment_variables_override_the_file() {
    std::env::set_var("FRAISEQL_SAGA__COMPENSATION_RETRIES", "42");
    std::env::set_var("FRAISEQL_DATABASES__ENVONLY__URL", "sqlite::memory:");
    let c = Config::from_toml("[saga]\ncompensation_retries = 3\n").unwrap();
    std::env::remove_var("FRAISEQL_SAGA__COMPENSATION_RETRIES");
    std::env::remove_var("FRAISEQL_DATABASES__ENVONLY__URL");
    assert_eq!(c.saga.compensation_retries, 42);
    assert_eq!(c.databases["envonly"].url, "sqlite::memory:");
}

#[test]
fn an_unknown_key_is_named() {
    let msg = config_err("[saga]\nstep_retires = 3\n");
    assert!(msg.contains("step_retires"), "{msg}");
    assert!(msg.contains("step_retries"), "lists the valid keys: {msg}");
}

#[test]
fn a_bad_duration_is_named_with_its_key() {
    let msg = config_err("[saga]\nstep_timeout = \"banana\"\n");
    assert!(msg.contains("step_timeout"), "{msg}");
}

#[test]
fn a_bad_database_url_is_named_without_its_password() {
    let msg = config_err("[databases.primary]\nurl = \"mysql://root:hunter2@x/db\"\n");
    assert!(msg.contains("databases.primary.url must start with"), "{msg}");
    assert!(!msg.contains("hunter2"), "the password leaked: {msg}");
    let msg = config_err("[databases.primary]\nmax_connections = 4\n");
    assert!(msg.contains("databases.primary.url is missing"), "{msg}");
}

#[test]
fn a_log_database_that_is_not_configured_is_refused() {
    let msg = config_err("[databases.primary]\nurl = \"sqlite::memory:\"\n[saga]\nlog_database = \"nope\"\n");
    assert!(msg.contains("saga.log_database names `nope`"), "{msg}");
}

#[test]
fn a_missing_file_is_named() {
    let err = Config::load("does/not/exist.toml").unwrap_err().to_string();
    assert!(err.contains("does/not/exist.toml"), "{err}");
}

#[tokio::test]
async fn an_unreachable_database_fails_start_with_its_name_and_no_password() {
    let mut c = Config::default();
    c.databases.insert(
        "primary".into(),
        fraiseql::DatabaseConfig {
            // Nothing listens on port 1.
            url: "postgres://app:topsecret@127.0.0.1:1/app".into(),
            acquire_timeout: std::time::Duration::from_secs(2),
            ..Default::default()
        },
    );
    let err = fraiseql::Runtime::builder().config(c).set_default(false).start().await.unwrap_err().to_string();
    assert!(err.contains("database `primary`"), "{err}");
    assert!(!err.contains("topsecret"), "the password leaked: {err}");
}

/// The README's configuration reference is real: each of its TOML blocks loads.
#[test]
fn the_readme_configuration_blocks_load() {
    let readme = include_str!("../README.md");
    let blocks: Vec<&str> = readme.split("```toml").skip(1).map(|b| b.split("```").next().unwrap()).collect();
    assert!(blocks.len() >= 2, "the README shows its configuration");
    for block in blocks {
        if let Err(e) = Config::from_toml(block) {
            panic!("README block does not load: {e}\n{block}");
        }
    }
}

/// A database nobody listens on fails start with the operating system's reason and the
/// database's name, once `acquire_timeout` has passed (it may be starting too) — not a
/// pool timeout, and not later at the first query.
#[tokio::test]
async fn an_unreachable_database_fails_start_with_the_reason() {
    // A port nothing listens on: bind one, then let it go.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut c = Config::default();
    c.databases.insert(
        "primary".into(),
        fraiseql::DatabaseConfig {
            url: format!("postgres://app:secret@127.0.0.1:{port}/app"),
            acquire_timeout: std::time::Duration::from_millis(600),
            ..Default::default()
        },
    );
    let err = fraiseql::Runtime::builder().config(c).set_default(false).start().await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::Config { .. }), "{text}");
    assert!(text.contains("database `primary`") && text.to_lowercase().contains("refused"), "{text}");
    assert!(!text.contains("secret"), "the password is not shown: {text}");
    assert!(std::error::Error::source(&err).is_some(), "the driver's error is kept as the source");
}

#[test]
fn an_inbox_retention_shorter_than_redelivery_is_refused_with_the_reason() {
    let msg = config_err("[events]\ninbox_retention = \"1m\"\n");
    assert!(
        msg.contains("events.inbox_retention (1m) must be longer than events.duplicate_window (2m)")
            && msg.contains("handled twice"),
        "{msg}"
    );
    let c = Config::from_toml("[events]\ninbox_retention = \"1day\"\n").unwrap();
    assert_eq!(c.events.inbox_retention, std::time::Duration::from_secs(86_400));
}
