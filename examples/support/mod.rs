//! What every example does before its own story: logging, and a runtime configured by
//! `--config fraiseql.toml` when given (else the environment, else the embedded default).

use fraiseql::Runtime;

pub async fn start(default_log: &str) -> anyhow::Result<Runtime> {
    tracing_subscriber::fmt().with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| default_log.into())).init();
    let args: Vec<String> = std::env::args().collect();
    let builder = match args.iter().position(|a| a == "--config") {
        Some(i) => Runtime::builder().config_file(args.get(i + 1).ok_or_else(|| anyhow::anyhow!("--config needs a path"))?),
        None => Runtime::builder(),
    };
    Ok(builder.start().await?)
}
