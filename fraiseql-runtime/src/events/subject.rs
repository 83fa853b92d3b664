//! NATS subject rules, shared by both buses: tokens separated by `.`, `*` matches one
//! token, `>` (last) matches one or more.

use crate::error::{Error, Result};

/// A subject one can publish to: non-empty tokens, no wildcards, no whitespace.
pub fn check_publish_subject(subject: &str) -> Result<()> {
    check(subject, false).map_err(|why| Error::msg(format!("`{subject}` is not a valid publish subject: {why}")))
}

/// A subject one can subscribe to: like a publish subject, plus `*` tokens and a final `>`.
pub fn check_subscription_subject(subject: &str) -> Result<()> {
    check(subject, true).map_err(|why| Error::msg(format!("`{subject}` is not a valid subscription subject: {why}")))
}

fn check(subject: &str, wildcards: bool) -> std::result::Result<(), &'static str> {
    if subject.is_empty() {
        return Err("it is empty");
    }
    if subject.len() > 512 {
        return Err("it is longer than 512 bytes");
    }
    let tokens: Vec<&str> = subject.split('.').collect();
    for (i, t) in tokens.iter().enumerate() {
        if t.is_empty() {
            return Err("it has an empty token (`..`, or a leading or trailing `.`)");
        }
        if t.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("it contains whitespace");
        }
        match *t {
            "*" | ">" if !wildcards => return Err("wildcards (`*`, `>`) are only for subscriptions"),
            ">" if i + 1 != tokens.len() => return Err("`>` may only be the last token"),
            _ if t.len() > 1 && (t.contains('*') || t.contains('>')) => return Err("`*` and `>` must be whole tokens"),
            _ => {}
        }
    }
    Ok(())
}

/// Whether `subject` (a publish subject) matches `pattern` (a subscription subject).
pub fn matches(pattern: &str, subject: &str) -> bool {
    let mut p = pattern.split('.');
    let mut s = subject.split('.');
    loop {
        match (p.next(), s.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_like_nats() {
        assert!(matches("fraiseql.order.>", "fraiseql.order.created"));
        assert!(matches("fraiseql.order.>", "fraiseql.order.item.added"));
        assert!(!matches("fraiseql.order.>", "fraiseql.order"));
        assert!(matches("fraiseql.*.created", "fraiseql.order.created"));
        assert!(!matches("fraiseql.*.created", "fraiseql.order.item.created"));
        assert!(matches("a.b", "a.b"));
        assert!(!matches("a.b", "a.b.c"));
        assert!(matches(">", "a"));
    }

    #[test]
    fn bad_subjects_say_why() {
        for (s, why) in [
            ("", "empty"),
            ("a..b", "empty token"),
            (".a", "empty token"),
            ("a.b ", "whitespace"),
            ("a.*", "only for subscriptions"),
            ("a.>", "only for subscriptions"),
        ] {
            let e = check_publish_subject(s).unwrap_err().to_string();
            assert!(e.contains(why), "{s:?}: {e}");
        }
        assert!(check_subscription_subject("a.*.c.>").is_ok());
        assert!(check_subscription_subject("a.>.c").unwrap_err().to_string().contains("last token"));
        assert!(check_subscription_subject("a.b*").unwrap_err().to_string().contains("whole tokens"));
    }
}
