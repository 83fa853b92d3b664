//! Reading the console's query strings and forms: each value checked, and a bad one
//! reported by the name of its parameter (the page answers 400 with that message).

use std::collections::BTreeMap;

use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime};

use crate::status::SagaStatus;

/// URL-encoded pairs (a query string or a form body), each name at most once, each
/// name one the page knows.
pub(super) struct Params {
    values: BTreeMap<String, String>,
}

impl Params {
    pub(super) fn parse(raw: &[u8], known: &[&str]) -> Result<Params, String> {
        let pairs: Vec<(String, String)> =
            serde_urlencoded::from_bytes(raw).map_err(|e| format!("the query string is not URL-encoded pairs: {e}"))?;
        let mut values = BTreeMap::new();
        for (name, value) in pairs {
            if !known.contains(&name.as_str()) {
                return Err(format!("unknown parameter `{name}` (this page takes {})", list(known)));
            }
            if values.insert(name.clone(), value).is_some() {
                return Err(format!("parameter `{name}` is given more than once"));
            }
        }
        Ok(Params { values })
    }

    /// The value of `name`, if given and not empty (an empty form field means "any").
    pub(super) fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
    }

    pub(super) fn status(&self, name: &str) -> Result<Option<SagaStatus>, String> {
        self.get(name)
            .map(|v| {
                v.parse().map_err(|_| {
                    let names: Vec<&str> = SagaStatus::ALL.iter().map(|s| s.as_str()).collect();
                    format!("parameter `{name}`: `{v}` is not a saga status (expected one of {})", list(&names))
                })
            })
            .transpose()
    }

    /// A time as milliseconds since the Unix epoch: `YYYY-MM-DDTHH:MM[:SS]` or
    /// `YYYY-MM-DD` in UTC, RFC 3339, or an age before `now_ms` (`15m`, `1h`, `7d`).
    pub(super) fn time(&self, name: &str, now_ms: i64) -> Result<Option<i64>, String> {
        let Some(v) = self.get(name) else { return Ok(None) };
        parse_time(v, now_ms).map(Some).ok_or_else(|| {
            format!(
                "parameter `{name}`: `{v}` is not a time (expected YYYY-MM-DDTHH:MM in UTC, RFC 3339, or an age such as 15m, 1h or 7d)"
            )
        })
    }

    pub(super) fn number(&self, name: &str, min: u32, max: u32) -> Result<Option<u32>, String> {
        let Some(v) = self.get(name) else { return Ok(None) };
        match v.parse::<u32>() {
            Ok(n) if (min..=max).contains(&n) => Ok(Some(n)),
            _ => Err(format!("parameter `{name}`: `{v}` is not a whole number from {min} to {max}")),
        }
    }

    /// A saga id: a UUID, as the log stores it (lower-case, hyphenated).
    pub(super) fn saga_id(&self, name: &str) -> Result<Option<String>, String> {
        self.get(name).map(|v| saga_id(v).map_err(|e| format!("parameter `{name}`: {e}"))).transpose()
    }
}

/// A saga id from a URL: a UUID, in the form the log stores.
pub(super) fn saga_id(v: &str) -> Result<String, String> {
    uuid::Uuid::parse_str(v).map(|u| u.hyphenated().to_string()).map_err(|_| format!("`{v}` is not a saga id (a UUID)"))
}

fn list(names: &[&str]) -> String {
    names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
}

fn parse_time(v: &str, now_ms: i64) -> Option<i64> {
    let ms = |t: OffsetDateTime| (t.unix_timestamp_nanos() / 1_000_000) as i64;
    if let Ok(t) = OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339) {
        return Some(ms(t));
    }
    let v = v.replacen(' ', "T", 1);
    let minutes = format_description!("[year]-[month]-[day]T[hour]:[minute]");
    let seconds = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    for format in [minutes, seconds] {
        if let Ok(t) = PrimitiveDateTime::parse(&v, format) {
            return Some(ms(t.assume_utc()));
        }
    }
    if let Ok(d) = time::Date::parse(&v, format_description!("[year]-[month]-[day]")) {
        return Some(ms(d.midnight().assume_utc()));
    }
    // An age: `1h` means an hour before now.
    let age = humantime::parse_duration(&v).ok()?;
    Some(now_ms.saturating_sub(i64::try_from(age.as_millis()).ok()?))
}

/// `ms` as the value of an `<input type="datetime-local">` (UTC, to the minute).
pub(super) fn input_time(ms: i64) -> String {
    format_ms(ms, format_description!("[year]-[month]-[day]T[hour]:[minute]"))
}

/// `ms` (since the Unix epoch) in UTC, as `format` says; empty if out of range.
pub(super) fn format_ms(ms: i64, format: &[time::format_description::BorrowedFormatItem<'_>]) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(format).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_ages_and_bad_values() {
        let p = |q: &str| Params::parse(q.as_bytes(), &["from", "status", "limit"]);
        let now = 1_800_000_000_000;
        let given = p("from=2026-11-25T10:30").unwrap();
        assert_eq!(given.time("from", now).unwrap(), Some(1_795_602_600_000));
        assert_eq!(p("from=2026-11-25T10%3A30%3A00Z").unwrap().time("from", now).unwrap(), Some(1_795_602_600_000));
        assert_eq!(p("from=1h").unwrap().time("from", now).unwrap(), Some(now - 3_600_000));
        assert_eq!(p("from=").unwrap().time("from", now).unwrap(), None);
        let e = p("from=yesterday-ish").unwrap().time("from", now).unwrap_err();
        assert!(e.starts_with("parameter `from`: `yesterday-ish` is not a time"), "{e}");
        let e = p("status=done").unwrap().status("status").unwrap_err();
        assert!(e.contains("parameter `status`: `done` is not a saga status") && e.contains("`failed`"), "{e}");
        let e = p("limit=0").unwrap().number("limit", 1, 500).unwrap_err();
        assert!(e.contains("parameter `limit`"), "{e}");
        let e = p("colour=red").err().unwrap();
        assert!(e.contains("unknown parameter `colour`"), "{e}");
        let e = p("status=failed&status=stuck").err().unwrap();
        assert!(e.contains("`status` is given more than once"), "{e}");
    }
}
