#![allow(dead_code)] // each example uses the part it needs
//! What every example does before its own story: logging, and a runtime configured by
//! `--config fraiseql.toml` when given (else the environment, else the embedded default,
//! in a temporary directory).

use fraiseql::{Config, Runtime};

/// `extra_subjects`: event subjects the example publishes beyond `fraiseql.>`.
pub(crate) async fn start(default_log: &str, extra_subjects: &[&str]) -> anyhow::Result<Runtime> {
    // Logs go to stderr: stdout is the program's output (`server --sdl > schema.graphql`).
    tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| default_log.into()))
        .with_writer(std::io::stderr)
        .init();
    let args: Vec<String> = std::env::args().collect();
    let mut config = match args.iter().position(|a| a == "--config") {
        Some(i) => Config::load(args.get(i + 1).ok_or_else(|| anyhow::anyhow!("--config needs a path"))?)?,
        None => Config::from_env()?,
    };
    for s in extra_subjects {
        if !config.events.subjects.iter().any(|have| have == s) {
            config.events.subjects.push(s.to_string());
        }
    }
    // Each run of an example tells its story from the start: on the embedded default,
    // a fresh temporary directory unless `FRAISEQL_DATA_DIR` names one (a program of
    // your own keeps its files where a restart finds them: see `default_data_dir`).
    let temp = config.databases.is_empty() && config.data_dir.is_none();
    let builder = Runtime::builder().config(config);
    Ok(if temp { builder.temp_data_dir() } else { builder }.start().await?)
}

/// Print the events a run published (from the bus's history), once the relay has
/// published everything the outbox holds.
pub(crate) async fn print_events(rt: &Runtime, filter: &str) -> anyhow::Result<()> {
    for _ in 0..100 {
        if rt.outbox().pending().await? == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    for e in rt.history(filter, None).await? {
        println!("event {} {}", e.subject, e.data);
    }
    Ok(())
}
