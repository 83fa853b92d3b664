//! The states a saga, a step and a barrier go through. Each is an enum in code and a
//! stable lower-case name in the database (the names are part of the schema: renaming
//! one is a migration), read back with an error that names the unknown value.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A stored name that is not one of an enum's names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{value}` is not a {what} (expected {expected})")]
pub struct UnknownName {
    /// What was being read (`saga status`, `barrier outcome`, …).
    pub what: &'static str,
    /// The value found.
    pub value: String,
    /// The names that would have been accepted.
    pub expected: &'static str,
}

/// Implements `as_str`, `Display`, `FromStr` and `TryFrom<String>` (for `sqlx(try_from)`)
/// from one table of names, so code and storage cannot disagree.
macro_rules! stable_names {
    ($ty:ident, $what:literal, { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $ty {
            /// The stable name, as stored and shown.
            pub fn as_str(self) -> &'static str {
                match self { $($ty::$variant => $name),+ }
            }

            /// Every value, in declaration order.
            pub const ALL: &'static [$ty] = &[$($ty::$variant),+];
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad(self.as_str())
            }
        }

        impl FromStr for $ty {
            type Err = UnknownName;
            fn from_str(s: &str) -> Result<Self, UnknownName> {
                match s {
                    $($name => Ok($ty::$variant),)+
                    other => Err(UnknownName {
                        what: $what,
                        value: other.to_string(),
                        expected: concat!($($name, " "),+),
                    }),
                }
            }
        }

        impl TryFrom<String> for $ty {
            type Error = UnknownName;
            fn try_from(s: String) -> Result<Self, UnknownName> {
                s.parse()
            }
        }
    };
}

/// Where a saga stands. Also the `--status` of `sagas list` (clap spells the variants
/// as they are stored).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum SagaStatus {
    /// Steps are running forward.
    Running,
    /// A step failed; completed steps are being undone.
    Compensating,
    /// Every step committed.
    Completed,
    /// A step failed and every completed step was undone.
    Compensated,
    /// A compensation spent its budget: the saga needs an operator (`sagas retry`).
    Failed,
    /// Recovery found the saga's code changed (a step renamed or removed, the input no
    /// longer deserialising): left untouched for an operator.
    Stuck,
}

stable_names!(SagaStatus, "saga status", {
    Running => "running",
    Compensating => "compensating",
    Completed => "completed",
    Compensated => "compensated",
    Failed => "failed",
    Stuck => "stuck",
});

impl SagaStatus {
    /// Whether the saga is over (nothing runs it any more without an operator).
    pub fn is_terminal(self) -> bool {
        matches!(self, SagaStatus::Completed | SagaStatus::Compensated | SagaStatus::Failed)
    }
}

/// Whether an invocation runs a step or undoes one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// The step itself.
    Step,
    /// Its compensation.
    Compensation,
}

stable_names!(Phase, "phase", { Step => "step", Compensation => "compensation" });

impl Phase {
    /// 0 for a step, 1 for a compensation: an index into per-phase arrays.
    pub(crate) fn index(self) -> usize {
        match self {
            Phase::Step => 0,
            Phase::Compensation => 1,
        }
    }
}

/// What a barrier row says about a step (see the protocol in `saga/log.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BarrierOutcome {
    /// The step's transaction committed (the row was written inside it).
    Committed,
    /// A temporary fence: it waited out an in-flight transaction; a retry may lift it.
    Fenced,
    /// A permanent fence: this step never commits.
    Aborted,
}

stable_names!(BarrierOutcome, "barrier outcome", {
    Committed => "committed",
    Fenced => "fenced",
    Aborted => "aborted",
});

/// How a failed attempt of a step or compensation was judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptStatus {
    /// It will be tried again (a transient error within the budget).
    Retrying,
    /// It will not be tried again.
    Failed,
}

stable_names!(AttemptStatus, "attempt status", { Retrying => "retrying", Failed => "failed" });

/// What happened to one step or compensation, as inspection shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// Not run (yet).
    Pending,
    /// Committed.
    Committed,
    /// Fenced for good: it never commits.
    Aborted,
    /// Fenced while an attempt's commit was in doubt.
    Fenced,
    /// Failed, to be tried again.
    Retrying,
    /// Failed for good.
    Failed,
}

stable_names!(StepStatus, "step status", {
    Pending => "pending",
    Committed => "committed",
    Aborted => "aborted",
    Fenced => "fenced",
    Retrying => "retrying",
    Failed => "failed",
});

impl From<BarrierOutcome> for StepStatus {
    fn from(o: BarrierOutcome) -> Self {
        match o {
            BarrierOutcome::Committed => StepStatus::Committed,
            BarrierOutcome::Fenced => StepStatus::Fenced,
            BarrierOutcome::Aborted => StepStatus::Aborted,
        }
    }
}

impl From<AttemptStatus> for StepStatus {
    fn from(a: AttemptStatus) -> Self {
        match a {
            AttemptStatus::Retrying => StepStatus::Retrying,
            AttemptStatus::Failed => StepStatus::Failed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_say_what_was_expected() {
        for s in SagaStatus::ALL {
            assert_eq!(s.as_str().parse::<SagaStatus>().unwrap(), *s);
            // The serde name is the stored name.
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        for o in BarrierOutcome::ALL {
            assert_eq!(o.as_str().parse::<BarrierOutcome>().unwrap(), *o);
        }
        let e = "done".parse::<SagaStatus>().unwrap_err().to_string();
        assert!(e.contains("`done` is not a saga status") && e.contains("compensated"), "{e}");
    }
}
