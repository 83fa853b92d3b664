//! FraiseQL for Rust: sagas across several databases with compensation, as attribute
//! macros over a durable runtime.
//!
//! ```no_run
//! use fraiseql::prelude::*;
//!
//! #[saga(steps = ["debit"])]
//! async fn transfer(from: i64, cents: i64) -> fraiseql::Result<()>;
//!
//! #[saga_step("debit")]
//! async fn debit(ctx: &mut SagaContext, from: i64, cents: i64) -> fraiseql::Result<()> {
//!     ctx.execute("UPDATE account SET cents = cents - $1 WHERE id = $2", (cents, from)).await?;
//!     Ok(())
//! }
//!
//! # #[tokio::main] async fn main() -> fraiseql::Result<()> {
//! let rt = Runtime::embedded().await?;
//! transfer(7, 250).await?;
//! rt.shutdown().await
//! # }
//! ```
//!
//! See the README for the quick start and the configuration reference.

#![warn(missing_docs)]

// The README's example is compiled as a doc test, so it cannot drift from the API.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

pub use fraiseql_macros::{compensate, query, saga, saga_step, subscribe, Object};
#[cfg(feature = "console")]
pub use fraiseql_runtime::console;
#[cfg(feature = "graphql")]
pub use fraiseql_runtime::graphql;
pub use fraiseql_runtime::{
    cli, config, db, events, migrate, publish, registry, request, roles, with_idempotency_key, Args, Backend, Bind,
    Builder, Config, ConsumerInfo, DatabaseConfig, Databases, Db, DeadEvent, DeadLetter, Describe, Error, Event,
    EventContext, EventStream, EventTx, EventsConfig, Id, ListFilter, Outbox, OutboxBacklog, Phase, QueryValue,
    RecoveryPolicy, Result, RetriedDeadEvents, Row, Runtime, SagaConfig, SagaContext, SagaCounts, SagaDetail,
    SagaStatus, SagaSummary, Sagas, StepRecord, StepStatus, StreamRetention, StreamStorage, Tx,
};

/// `use fraiseql::prelude::*;` brings the macros and the types their functions name.
pub mod prelude {
    pub use fraiseql_macros::{compensate, query, saga, saga_step, subscribe, Object};
    pub use fraiseql_runtime::{publish, request, Error, Event, EventContext, EventTx, Id, Runtime, SagaContext};
}

#[doc(hidden)]
pub use fraiseql_runtime::__private;
/// The sqlx FraiseQL runs on, for steps that use it directly.
pub use sqlx;

/// One trace from a saga to the handlers of its events, exported by OTLP (feature
/// `opentelemetry`): see the README's "Tracing".
#[cfg(feature = "opentelemetry")]
pub use fraiseql_runtime::otel;

/// Helpers for testing your own sagas (feature `testing`): see the README's "Testing
/// your sagas".
#[cfg(feature = "testing")]
pub use fraiseql_runtime::testing;
