//! Faults injected into a runtime's own sagas by the application's tests
//! (`fraiseql::testing`, feature `testing`): fail a step's attempts, time them out, or
//! stop the saga after a step as a killed process would. Unarmed (no fault ever
//! added), the executor's check is one atomic load.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use crate::status::Phase;

/// What a fault does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// The attempt fails with a transient error before the function runs.
    Fail,
    /// The attempt fails as a timed-out one does (`Error::Timeout`), without waiting.
    Timeout,
    /// Once the step commits, the saga stops where it is, its lease given up, as a
    /// process killed at that instant leaves it; recovery finishes it.
    CrashAfter,
}

/// One fault: where it applies and how many more times.
#[derive(Debug, Clone)]
pub(crate) struct Rule {
    pub(crate) kind: Kind,
    pub(crate) step: String,
    pub(crate) saga: Option<String>,
    pub(crate) phase: Phase,
    /// `None`: every time.
    pub(crate) remaining: Option<u32>,
}

/// The faults of one runtime.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    armed: AtomicBool,
    rules: Mutex<Vec<Rule>>,
}

// Adding and clearing belong to `fraiseql::testing`; without the feature nothing adds.
#[cfg_attr(not(feature = "testing"), allow(dead_code))]
impl Faults {
    pub(crate) fn add(&self, rule: Rule) {
        self.rules.lock().unwrap().push(rule);
        self.armed.store(true, Ordering::Release);
    }

    pub(crate) fn clear(&self) {
        self.rules.lock().unwrap().clear();
    }

    /// Whether a fault of `kinds` fires for this attempt (and count it).
    pub(crate) fn fires(&self, kinds: &[Kind], saga: &str, step: &str, phase: Phase) -> Option<Kind> {
        if !self.armed.load(Ordering::Acquire) {
            return None;
        }
        let mut rules = self.rules.lock().unwrap();
        let rule = rules.iter_mut().find(|r| {
            kinds.contains(&r.kind)
                && r.step == step
                && r.phase == phase
                && r.saga.as_deref().is_none_or(|s| s == saga)
                && r.remaining != Some(0)
        })?;
        if let Some(n) = rule.remaining.as_mut() {
            *n -= 1;
        }
        Some(rule.kind)
    }
}
