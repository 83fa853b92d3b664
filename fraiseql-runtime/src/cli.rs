//! Subcommands a user's binary can mount: `myapp sagas list --status failed`,
//! `myapp events dead-letters`.
//!
//! ```text
//! #[derive(clap::Parser)]
//! enum Cli { Serve, #[command(subcommand)] Sagas(fraiseql::cli::SagasCommand) }
//! // …
//! Cli::Sagas(cmd) => cmd.run(&rt, &mut std::io::stdout()).await?,
//! ```
//!
//! (`tests/cli.rs` runs exactly this.)

use std::io::Write;
use std::time::Duration;

use clap::Subcommand;

use crate::error::{Error, Result};
use crate::saga::inspect::ListFilter;
use crate::saga::SagaStatus;
use crate::Runtime;

/// `sagas list|show|retry|fork`.
#[derive(Debug, Clone, Subcommand)]
pub enum SagasCommand {
    /// List sagas, newest first.
    List {
        /// Only sagas in this status.
        #[arg(long, value_enum)]
        status: Option<SagaStatus>,
        /// Only sagas with this name.
        #[arg(long)]
        name: Option<String>,
        /// At most this many sagas.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one saga with per-step status, attempts, timings and errors.
    Show {
        /// The saga's id (a UUID, as `sagas list` prints it).
        id: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Retry the compensations of a failed saga.
    Retry {
        /// The saga's id.
        id: String,
    },
    /// Start a new saga with this one's input and its state before a step, running from
    /// that step on (after fixing data or code).
    Fork {
        /// The saga's id.
        id: String,
        /// The step to start from.
        #[arg(long)]
        from: String,
    },
}

/// `events outbox|consumers|dead-letters|retry|dead-events|retry-dead-events|rebuild`.
#[derive(Debug, Clone, Subcommand)]
pub enum EventsCommand {
    /// Each database's outbox: events waiting to be published, dead letters, and how far
    /// the relay is behind (the age of the oldest waiting event).
    Outbox {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// This service's durable consumers, with the events each has not handled yet.
    Consumers {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Events the outbox could not publish within their budget.
    DeadLetters {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Put dead letters back in line and publish them: one by id, or all with --all.
    Retry {
        /// The dead letter's id (its event id).
        id: Option<String>,
        /// Every dead letter.
        #[arg(long, conflicts_with = "id")]
        all: bool,
    },
    /// Events handlers could not process (poison payloads, spent delivery budgets).
    DeadEvents {
        /// Only this durable consumer's.
        #[arg(long)]
        consumer: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Run dead events through their handler again: one by event id, or --all (of one
    /// --consumer, or every consumer's).
    RetryDeadEvents {
        /// The dead event's id.
        event_id: Option<String>,
        /// Only this durable consumer's (a durable name, or `core:function`).
        #[arg(long)]
        consumer: Option<String>,
        /// Every dead event (of `--consumer`, if given).
        #[arg(long, conflicts_with = "event_id")]
        all: bool,
    },
    /// Rebuild a projection: run a `#[subscribe]` handler (function or durable name) over history.
    Rebuild {
        /// The handler's function name or durable name.
        handler: String,
    },
}

impl EventsCommand {
    /// Run the command against `rt`, printing to `out`; an error if it could not do
    /// what was asked (or some dead events failed again).
    pub async fn run(&self, rt: &Runtime, out: &mut dyn Write) -> Result<()> {
        let io = |e: std::io::Error| Error::msg(format!("writing output: {e}"));
        match self {
            EventsCommand::Outbox { json } => {
                let list = rt.outbox().backlog().await?;
                if *json {
                    writeln!(out, "{}", serde_json::to_string_pretty(&list)?).map_err(io)?;
                    return Ok(());
                }
                writeln!(out, "{:<20}  {:>10}  {:>8}  {:>12}", "DATABASE", "PENDING", "DEAD", "LAG").map_err(io)?;
                for b in &list {
                    let lag = humantime::format_duration(Duration::from_millis(b.lag.as_millis() as u64));
                    writeln!(out, "{:<20}  {:>10}  {:>8}  {:>12}", b.database, b.pending, b.dead, lag.to_string())
                        .map_err(io)?;
                }
            }
            EventsCommand::Consumers { json } => {
                let list = rt.consumers().await?;
                if *json {
                    writeln!(out, "{}", serde_json::to_string_pretty(&list)?).map_err(io)?;
                    return Ok(());
                }
                writeln!(out, "{:<24}  {:<32}  {:<12}  {:>10}", "CONSUMER", "SUBJECT", "INBOX", "PENDING")
                    .map_err(io)?;
                for c in &list {
                    let pending = c.pending.map_or("-".to_string(), |p| p.to_string());
                    let inbox = c.database.as_deref().unwrap_or("-");
                    writeln!(out, "{:<24}  {:<32}  {:<12}  {:>10}", c.name, c.subject, inbox, pending).map_err(io)?;
                }
            }
            EventsCommand::DeadLetters { json } => {
                let list = rt.outbox().dead_letters().await?;
                if *json {
                    writeln!(out, "{}", serde_json::to_string_pretty(&list)?).map_err(io)?;
                    return Ok(());
                }
                writeln!(out, "{:<36}  {:<10}  {:<40}  {:>8}  LAST ERROR", "ID", "DATABASE", "SUBJECT", "ATTEMPTS")
                    .map_err(io)?;
                for d in &list {
                    writeln!(
                        out,
                        "{:<36}  {:<10}  {:<40}  {:>8}  {}",
                        d.id,
                        d.database,
                        d.subject,
                        d.attempts,
                        d.last_error.as_deref().unwrap_or("")
                    )
                    .map_err(io)?;
                }
            }
            EventsCommand::Retry { id, all } => {
                if id.is_none() && !all {
                    return Err(Error::msg("say which dead letter to retry (an id), or --all"));
                }
                let n = rt.outbox().retry(id.as_deref()).await?;
                writeln!(out, "{n} dead letter(s) put back in line").map_err(io)?;
            }
            EventsCommand::DeadEvents { consumer, json } => {
                let list = rt.dead_events(consumer.as_deref()).await?;
                if *json {
                    writeln!(out, "{}", serde_json::to_string_pretty(&list)?).map_err(io)?;
                    return Ok(());
                }
                writeln!(out, "{:<20}  {:<36}  {:<36}  {:>8}  REASON", "CONSUMER", "EVENT", "SUBJECT", "ATTEMPTS")
                    .map_err(io)?;
                for d in &list {
                    writeln!(
                        out,
                        "{:<20}  {:<36}  {:<36}  {:>8}  {}",
                        d.consumer, d.event_id, d.subject, d.attempts, d.reason
                    )
                    .map_err(io)?;
                }
            }
            EventsCommand::RetryDeadEvents { event_id, consumer, all } => {
                if event_id.is_none() && !all {
                    return Err(Error::msg("say which dead event to retry (an event id), or --all"));
                }
                let r = rt.retry_dead_events(consumer.as_deref(), event_id.as_deref()).await?;
                writeln!(out, "{} processed, {} still dead", r.processed, r.still_dead).map_err(io)?;
                if r.still_dead > 0 {
                    return Err(Error::msg(format!(
                        "{} dead event(s) failed again; see `events dead-events`",
                        r.still_dead
                    )));
                }
            }
            EventsCommand::Rebuild { handler } => {
                let n = rt.rebuild(handler, None).await?;
                writeln!(out, "rebuilt with `{handler}` from {n} events").map_err(io)?;
            }
        }
        Ok(())
    }
}

fn time(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| ms.to_string())
}

impl SagasCommand {
    /// Run the command against `rt`, printing to `out`.
    pub async fn run(&self, rt: &Runtime, out: &mut dyn Write) -> Result<()> {
        let io = |e: std::io::Error| Error::msg(format!("writing output: {e}"));
        match self {
            SagasCommand::List { status, name, limit, json } => {
                let list = rt
                    .sagas()
                    .list(ListFilter { status: *status, name: name.clone(), limit: Some(*limit), ..Default::default() })
                    .await?;
                if *json {
                    writeln!(out, "{}", serde_json::to_string_pretty(&list)?).map_err(io)?;
                    return Ok(());
                }
                writeln!(out, "{:<36}  {:<28}  {:<12}  {:<25}  ERROR", "ID", "NAME", "STATUS", "CREATED")
                    .map_err(io)?;
                for s in &list {
                    writeln!(
                        out,
                        "{:<36}  {:<28}  {:<12}  {:<25}  {}",
                        s.id,
                        s.name,
                        s.status,
                        time(s.created_at),
                        s.error.as_deref().unwrap_or("")
                    )
                    .map_err(io)?;
                }
            }
            SagasCommand::Show { id, json } => {
                let d = rt.sagas().get(id).await?;
                if *json {
                    writeln!(out, "{}", serde_json::to_string_pretty(&d)?).map_err(io)?;
                    return Ok(());
                }
                let s = &d.summary;
                writeln!(
                    out,
                    "saga {} ({})\nstatus: {}\ncreated: {}\nupdated: {}",
                    s.id,
                    s.name,
                    s.status,
                    time(s.created_at),
                    time(s.updated_at)
                )
                .map_err(io)?;
                if let Some(k) = &s.idempotency_key {
                    writeln!(out, "idempotency key: {k}").map_err(io)?;
                }
                if let Some(e) = &s.error {
                    writeln!(out, "error: {e} (step {})", s.failed_step.as_deref().unwrap_or("?")).map_err(io)?;
                }
                writeln!(out, "input: {}\nstate: {}", d.input, d.state).map_err(io)?;
                if let Some(r) = &d.result {
                    writeln!(out, "result: {r}").map_err(io)?;
                }
                writeln!(
                    out,
                    "\n  #  {:<24}  {:<12}  {:<10}  {:<10}  {:>8}  {:>9}  ERROR",
                    "STEP", "PHASE", "DATABASE", "STATUS", "ATTEMPTS", "TIME(ms)"
                )
                .map_err(io)?;
                for st in &d.steps {
                    writeln!(
                        out,
                        "{:>3}  {:<24}  {:<12}  {:<10}  {:<10}  {:>8}  {:>9}  {}",
                        st.index,
                        st.step,
                        st.phase,
                        st.database,
                        st.status,
                        st.attempts,
                        st.duration_ms().map(|d| d.to_string()).unwrap_or_default(),
                        st.error.as_deref().unwrap_or("")
                    )
                    .map_err(io)?;
                }
            }
            SagasCommand::Retry { id } => {
                let status = rt.sagas().retry(id).await?;
                writeln!(out, "saga {id}: {status}").map_err(io)?;
            }
            SagasCommand::Fork { id, from } => {
                let fork = rt.sagas().fork(id, from).await?;
                writeln!(out, "saga {id} forked from `{from}` as {}: {}", fork.summary.id, fork.summary.status)
                    .map_err(io)?;
            }
        }
        Ok(())
    }
}

/// `graphql sdl|introspection`: the schema the endpoint serves.
#[cfg(feature = "graphql")]
#[derive(Debug, Clone, Subcommand)]
pub enum GraphqlCommand {
    /// Print the schema in SDL (for code generators, schema registries, reviews).
    Sdl,
    /// Print the standard introspection result as JSON (what GraphQL clients load).
    Introspection,
}

#[cfg(feature = "graphql")]
impl GraphqlCommand {
    /// Run the command against `rt`, printing to `out`.
    pub async fn run(&self, rt: &Runtime, out: &mut dyn Write) -> Result<()> {
        let io = |e: std::io::Error| Error::msg(format!("writing output: {e}"));
        match self {
            GraphqlCommand::Sdl => write!(out, "{}", rt.graphql_sdl()?).map_err(io)?,
            GraphqlCommand::Introspection => {
                let resp = rt.graphql(crate::graphql::INTROSPECTION_QUERY).await?;
                if !resp.errors.is_empty() {
                    return Err(Error::msg(format!("introspection failed: {:?}", resp.errors)));
                }
                writeln!(out, "{}", serde_json::to_string_pretty(&resp)?).map_err(io)?;
            }
        }
        Ok(())
    }
}
