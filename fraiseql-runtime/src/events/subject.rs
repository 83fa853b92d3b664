//! NATS subject rules, shared by both buses: tokens separated by `.`, `*` matches one
//! token, `>` (last) matches one or more. The rules are `crate::grammar`'s, which the
//! `#[subscribe]` macro checks too; these wrap its reasons in this crate's error.

use crate::error::{Error, Result};
use crate::grammar::{check_subject, SubjectKind};

/// A subject one can publish to: non-empty tokens, no wildcards, no whitespace.
pub fn check_publish_subject(subject: &str) -> Result<()> {
    check_subject(subject, SubjectKind::Publish)
        .map_err(|why| Error::InvalidArgument(format!("`{subject}` is not a valid publish subject: {why}")))
}

/// A subject one can subscribe to: like a publish subject, plus `*` tokens and a final `>`.
pub fn check_subscription_subject(subject: &str) -> Result<()> {
    check_subject(subject, SubjectKind::Subscription)
        .map_err(|why| Error::InvalidArgument(format!("`{subject}` is not a valid subscription subject: {why}")))
}

/// Whether `subject` (a publish subject) matches `pattern` (a subscription subject).
pub use crate::grammar::subject_matches as matches;

#[cfg(test)]
mod tests {
    use super::*;

    // The rules themselves are tested in `crate::grammar`.
    #[test]
    fn errors_name_the_subject_and_the_reason() {
        let e = check_publish_subject("a.*").unwrap_err().to_string();
        assert!(e.contains("`a.*` is not a valid publish subject: wildcards"), "{e}");
        let e = check_subscription_subject("a.>.c").unwrap_err().to_string();
        assert!(e.contains("`a.>.c` is not a valid subscription subject: `>` may only be the last token"), "{e}");
        assert!(check_subscription_subject("a.*.c.>").is_ok());
        assert!(matches("a.>", "a.b.c"));
    }
}
