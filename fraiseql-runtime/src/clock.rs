//! Wall-clock time as FraiseQL stores it: milliseconds since the Unix epoch in the
//! databases (`BIGINT`, the same on every backend), RFC 3339 in event envelopes.

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, in milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Now, as RFC 3339 in UTC (`2026-11-24T05:00:00.123Z`).
pub(crate) fn now_rfc3339() -> String {
    rfc3339(time::OffsetDateTime::now_utc())
}

/// `t` as RFC 3339 in UTC.
pub(crate) fn rfc3339(t: time::OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC).format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

/// Milliseconds since the Unix epoch as a time (`None` if out of range).
pub(crate) fn from_ms(ms: i64) -> Option<time::OffsetDateTime> {
    time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000).ok()
}

/// `since` as milliseconds since the Unix epoch (the start of time when `None`).
pub(crate) fn ms_since(since: Option<time::OffsetDateTime>) -> i64 {
    since.map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64).unwrap_or(i64::MIN)
}
