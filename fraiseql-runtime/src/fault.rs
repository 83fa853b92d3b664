//! Crash points for fault tests (feature `fault-injection`, off by default and
//! compiled out without it). `FRAISEQL_FAULT=after_commit:reserve_inventory` makes the
//! process SIGKILL itself right after that step's transaction commits — a real crash,
//! with no destructors, no flushes and no unwinding.
//!
//! Points: `after_log_insert` (saga logged, no step run yet), `after_commit:<step>`,
//! `after_compensation_commit:<step>`, `before_commit:<step>` (barrier written, not
//! committed).

#[cfg(feature = "fault-injection")]
pub(crate) fn point(name: &str, step: &str) {
    use std::sync::OnceLock;
    static SPEC: OnceLock<Option<String>> = OnceLock::new();
    let Some(spec) = SPEC.get_or_init(|| std::env::var("FRAISEQL_FAULT").ok()).as_deref() else { return };
    let hit = match spec.split_once(':') {
        Some((p, s)) => p == name && s == step,
        None => spec == name,
    };
    if hit {
        eprintln!("fraiseql fault injection: SIGKILL at {name}:{step}");
        // SAFETY: kill(2) on our own pid with a signal that cannot be caught.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
}

#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub(crate) fn point(_name: &str, _step: &str) {}
