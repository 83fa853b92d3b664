//! FraiseQL for Rust: sagas across several databases with compensation, as attribute
//! macros over a durable runtime.
//!
//! ```ignore
//! use fraiseql::prelude::*;
//!
//! #[saga(steps = ["debit", "credit"])]
//! async fn transfer(from: i64, to: i64, cents: i64) -> fraiseql::Result<()>;
//! ```
//!
//! See the README for the quick start and the configuration reference.

pub use fraiseql_macros::{compensate, saga, saga_step};
pub use fraiseql_runtime::{
    cli, config, db, registry, with_idempotency_key, Args, Backend, Bind, Builder, Config, DatabaseConfig, Databases, Db, Error,
    ListFilter, RecoveryPolicy, Result, Row, Runtime, SagaConfig, SagaContext, SagaDetail, SagaStatus, SagaSummary, Sagas,
    StepRecord, Tx,
};

/// `use fraiseql::prelude::*;` brings the macros and the types their functions name.
pub mod prelude {
    pub use fraiseql_macros::{compensate, saga, saga_step};
    pub use fraiseql_runtime::{Error, Runtime, SagaContext};
}


#[doc(hidden)]
pub use fraiseql_runtime::__private;
/// The sqlx FraiseQL runs on, for steps that use it directly.
pub use sqlx;
