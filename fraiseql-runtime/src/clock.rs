//! Wall-clock time as FraiseQL stores it: milliseconds since the Unix epoch in the
//! databases (`BIGINT`, the same on every backend), RFC 3339 in event envelopes.

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, in milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Now, as RFC 3339 in UTC (`2026-11-24T05:00:00.123Z`).
pub(crate) fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

/// `since` as milliseconds since the Unix epoch (the start of time when `None`).
pub(crate) fn ms_since(since: Option<time::OffsetDateTime>) -> i64 {
    since.map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64).unwrap_or(i64::MIN)
}
