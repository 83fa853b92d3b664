//! Crash points for fault tests (feature `fault-injection`, off by default and
//! compiled out without it). `FRAISEQL_FAULT=after_commit:reserve_inventory` makes the
//! process SIGKILL itself right after that step's transaction commits — a real crash,
//! with no destructors, no flushes and no unwinding.
//!
//! Crash points: `after_log_insert` (saga logged, no step run yet),
//! `after_commit:<step>`, `after_compensation_commit:<step>`, `before_commit:<step>`
//! (barrier written, not committed), `before_inbox_commit:<consumer>` /
//! `after_inbox_commit:<consumer>` (a transactional handler's work and inbox row
//! written / committed, not acked), `after_relay_publish:<subject>`.
//!
//! Behaviour points (no crash; several may be given, comma-separated):
//! `lose_commit_reply:<step>` (the commit happens, its reply is reported lost) and
//! `fail_first_commit:<step>` (the first attempt's commit does not happen and is
//! reported as a lost connection).

#[cfg(feature = "fault-injection")]
pub(crate) fn active(name: &str, step: &str) -> bool {
    use std::sync::OnceLock;
    static SPEC: OnceLock<Option<String>> = OnceLock::new();
    let Some(spec) = SPEC.get_or_init(|| std::env::var("FRAISEQL_FAULT").ok()).as_deref() else { return false };
    spec.split(',').map(str::trim).any(|one| match one.split_once(':') {
        Some((p, s)) => p == name && s == step,
        None => one == name,
    })
}

#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub(crate) fn active(_name: &str, _step: &str) -> bool {
    false
}

#[cfg(feature = "fault-injection")]
pub(crate) fn point(name: &str, step: &str) {
    if active(name, step) {
        eprintln!("fraiseql fault injection: SIGKILL at {name}:{step}");
        // SAFETY: kill(2) on our own pid with a signal that cannot be caught.
        #[allow(unsafe_code)] // the one unsafe call of the runtime, in the test-only fault feature
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
}

#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub(crate) fn point(_name: &str, _step: &str) {}
