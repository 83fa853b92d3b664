//! Helpers for testing your own sagas (feature `testing`): a runtime on a temporary
//! SQLite database and the embedded bus in one line, faults injected into your sagas
//! by step name, and the saga's record to assert on.
//!
//! ```text
//! let rt = fraiseql::testing::runtime().await?;
//! rt.inject(Fault::fail("charge_card"));                 // every attempt fails
//! let err = rt.scope(checkout("alice".into(), 4200)).await.unwrap_err();
//! let saga = fraiseql::testing::last_saga(&rt, "checkout").await?;
//! assert_eq!(saga.summary.status, SagaStatus::Compensated);
//! ```
//!
//! Faults act where the runtime would meet the real thing: an injected failure or
//! timeout replaces the attempt (its transaction rolls back; retries, backoff and
//! compensation follow as they would), and an injected crash leaves the saga after a
//! step's commit as a killed process does — running, with an expired lease — until
//! [`Runtime::recover_now`] finishes it by the saga's recovery policy.

use std::time::Duration;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::saga::faults::{Kind, Rule};
use crate::saga::inspect::{ListFilter, SagaDetail};
use crate::status::Phase;
use crate::Runtime;

/// A fault to inject with [`Runtime::inject`]: what happens, at which step, how often.
#[derive(Debug, Clone)]
pub struct Fault {
    pub(crate) rule: Rule,
}

impl Fault {
    fn new(kind: Kind, step: &str) -> Fault {
        Fault { rule: Rule { kind, step: step.to_string(), saga: None, phase: Phase::Step, remaining: None } }
    }

    /// Attempts of `step` fail with a transient error before its function runs: retried
    /// with backoff, then compensated once the step's retries are spent. Every attempt,
    /// unless [`Fault::once`] or [`Fault::times`] says otherwise.
    pub fn fail(step: &str) -> Fault {
        Fault::new(Kind::Fail, step)
    }

    /// Attempts of `step` fail as one that ran past its timeout does
    /// ([`Error::Timeout`]), without the wait: the saga compensates.
    pub fn timeout(step: &str) -> Fault {
        Fault::new(Kind::Timeout, step)
    }

    /// Once `step` commits, the saga stops as if its process were killed at that instant:
    /// the call returns [`Error::FaultInjected`], the saga stays `running` with an expired
    /// lease, and [`Runtime::recover_now`] finishes it (compensating by default, or
    /// forward with `recovery = "forward"`).
    pub fn crash_after(step: &str) -> Fault {
        Fault::new(Kind::CrashAfter, step)
    }

    /// Only the first time it applies.
    pub fn once(self) -> Fault {
        self.times(1)
    }

    /// Only the first `n` times it applies.
    pub fn times(mut self, n: u32) -> Fault {
        self.rule.remaining = Some(n);
        self
    }

    /// Only in the saga called `saga` (by default, in every saga that has the step).
    pub fn in_saga(mut self, saga: &str) -> Fault {
        self.rule.saga = Some(saga.to_string());
        self
    }

    /// In the step's compensation rather than the step (for [`Fault::fail`] and
    /// [`Fault::timeout`]): a compensation that keeps failing leaves the saga `failed`.
    pub fn in_compensation(mut self) -> Fault {
        self.rule.phase = Phase::Compensation;
        self
    }
}

impl Runtime {
    /// Inject a fault into this runtime's sagas (see [`crate::testing`]).
    pub fn inject(&self, fault: Fault) {
        self.sagas().engine.faults.add(fault.rule);
    }

    /// Remove every injected fault.
    pub fn clear_faults(&self) {
        self.sagas().engine.faults.clear();
    }
}

/// A runtime for a test: the embedded default on a fresh temporary directory (removed at
/// shutdown), retries with millisecond backoff, and no background recovery (call
/// [`Runtime::recover_now`] where the test wants it). Not the process's default runtime:
/// run sagas with `rt.scope(my_saga(…))`.
pub async fn runtime() -> Result<Runtime> {
    let mut config = Config::default();
    config.saga.backoff_initial = Duration::from_millis(1);
    config.saga.backoff_max = Duration::from_millis(5);
    config.saga.recovery_interval = Duration::from_secs(3600);
    config.events.redelivery_initial = Duration::from_millis(5);
    config.events.redelivery_max = Duration::from_millis(50);
    Runtime::builder().config(config).temp_data_dir().set_default(false).start().await
}

/// The most recent saga called `saga`, with its steps, attempts and errors.
pub async fn last_saga(rt: &Runtime, saga: &str) -> Result<SagaDetail> {
    let filter = ListFilter { name: Some(saga.to_string()), limit: Some(1), ..ListFilter::default() };
    let newest = rt.sagas().list(filter).await?;
    let summary = newest.first().ok_or_else(|| Error::NotFound(format!("no saga called `{saga}` has run")))?;
    rt.sagas().get(&summary.id).await
}
