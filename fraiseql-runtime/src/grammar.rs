//! The rules the macros check at compile time and the runtime checks (or relies on) when
//! it runs: names, NATS subjects, `order_by`, durations, the recovery policy and case
//! conversion, plus the defaults both sides assume.
//!
//! This one file is the only source of those rules. It depends on nothing but `std` and
//! `humantime`, so that `fraiseql-macros` compiles this very file too (with `#[path]`):
//! what an attribute accepts is exactly what the runtime accepts. Errors are plain
//! strings saying why; each side wraps them in its own error, on the user's token in the
//! macros, in `fraiseql::Error` at run time.

use std::time::Duration;

/// The database a step or a query uses when it names none.
pub const DEFAULT_DATABASE: &str = "primary";

/// The column of a view that holds each row's JSON document, unless `data_column` says
/// otherwise.
pub const DEFAULT_DATA_COLUMN: &str = "data";

// ---------------------------------------------------------------------------------------
// Names

/// Longest name of a saga, step, database or queue group.
pub const MAX_NAME_LEN: usize = 100;

/// A name of a saga, step, database or queue group. These end up in logs, SQL rows, CLI
/// output and configuration keys, so they keep to an alphabet that is never ambiguous
/// there: letters, digits, `_`, `-` and `.`, starting with a letter or `_`
/// (`create_order` and `payments.v2`, not `charge/card`).
pub fn check_name(name: &str) -> Result<(), &'static str> {
    let alphabet = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if !alphabet {
        Err("use letters, digits, `_`, `-` and `.`, starting with a letter or `_`")
    } else if name.len() > MAX_NAME_LEN {
        Err("use at most 100 characters")
    } else {
        Ok(())
    }
}

/// A JetStream durable consumer name: letters, digits, `-` and `_` (NATS forbids `.`,
/// `*`, `>` and whitespace there; the rest is kept out so names read the same in logs).
pub fn check_durable_name(name: &str) -> Result<(), &'static str> {
    if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        Ok(())
    } else {
        Err("a consumer name is letters, digits, `-` and `_`")
    }
}

/// A JetStream stream name: not empty, and no `.`, `*`, `>` or whitespace.
pub fn check_stream_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.contains(|c: char| c == '.' || c == '*' || c == '>' || c.is_whitespace()) {
        Err("no `.`, `*`, `>` or whitespace")
    } else {
        Ok(())
    }
}

/// Longest SQL identifier: PostgreSQL's (it cuts longer ones short, silently).
pub const MAX_SQL_IDENTIFIER_LEN: usize = 63;

/// An SQL identifier that needs no quoting to be read right: ASCII letters, digits and
/// `_`, not a digit first, at most 63 bytes. View and column names are spliced into
/// statements (quoted), so only these are accepted.
pub fn is_sql_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && s.len() <= MAX_SQL_IDENTIFIER_LEN
}

/// A view name, `v_order` or `schema.v_order`.
pub fn check_sql_source(s: &str) -> Result<(), &'static str> {
    let parts: Vec<&str> = s.split('.').collect();
    if parts.len() <= 2 && parts.iter().all(|p| is_sql_identifier(p)) {
        Ok(())
    } else {
        Err("use letters, digits and `_` (not first), optionally `schema.view`")
    }
}

/// A GraphQL name (of a type, field or argument): ASCII letters, digits and `_`, not a
/// digit first, and not `__` first (reserved for introspection).
pub fn is_graphql_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !s.starts_with("__")
}

// ---------------------------------------------------------------------------------------
// NATS subjects: tokens separated by `.`; `*` matches one token, a final `>` one or more.

/// Longest subject accepted, in bytes.
pub const MAX_SUBJECT_LEN: usize = 512;

/// What a subject is for: publishing takes a concrete subject, subscribing a pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubjectKind {
    /// Non-empty tokens, no wildcards, no whitespace.
    Publish,
    /// Like a publish subject, plus `*` tokens and a final `>`.
    Subscription,
}

/// Whether `subject` is valid for `kind`; the error says why not. `fraiseql.order.>` is
/// a subscription subject, `fraiseql.order.created` is both.
pub fn check_subject(subject: &str, kind: SubjectKind) -> Result<(), &'static str> {
    if subject.is_empty() {
        return Err("it is empty");
    }
    if subject.len() > MAX_SUBJECT_LEN {
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
            "*" | ">" if kind == SubjectKind::Publish => return Err("wildcards (`*`, `>`) are only for subscriptions"),
            ">" if i + 1 != tokens.len() => return Err("`>` may only be the last token"),
            _ if t.len() > 1 && (t.contains('*') || t.contains('>')) => return Err("`*` and `>` must be whole tokens"),
            _ => {}
        }
    }
    Ok(())
}

/// Whether `subject` (a publish subject) matches `pattern` (a subscription subject).
pub fn subject_matches(pattern: &str, subject: &str) -> bool {
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

// ---------------------------------------------------------------------------------------
// `order_by`: `column [asc|desc] [nulls first|last], …`

/// Where nulls sort in an [`OrderTerm`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NullsOrder {
    /// `nulls first`: nulls before every value.
    First,
    /// `nulls last`: nulls after every value.
    Last,
}

/// One term of an `order_by`: a column and its direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderTerm<'a> {
    /// As written (an SQL identifier).
    pub column: &'a str,
    /// `desc` was given (else `asc`, the default).
    pub descending: bool,
    /// `None`: the database's default for the direction.
    pub nulls: Option<NullsOrder>,
}

impl OrderTerm<'_> {
    /// The direction in SQL: `ASC`, `DESC NULLS LAST`, …
    pub fn direction_sql(&self) -> &'static str {
        match (self.descending, self.nulls) {
            (false, None) => "ASC",
            (true, None) => "DESC",
            (false, Some(NullsOrder::First)) => "ASC NULLS FIRST",
            (false, Some(NullsOrder::Last)) => "ASC NULLS LAST",
            (true, Some(NullsOrder::First)) => "DESC NULLS FIRST",
            (true, Some(NullsOrder::Last)) => "DESC NULLS LAST",
        }
    }
}

/// Parse `created_at desc nulls last, id`: columns (SQL identifiers) separated by `,`,
/// each optionally followed by `asc` or `desc` and then `nulls first` or `nulls last`
/// (any case). Whether the columns exist is for the caller to check, and
/// `created_at sideways` is an error.
pub fn parse_order_by(spec: &str) -> Result<Vec<OrderTerm<'_>>, String> {
    if spec.trim().is_empty() {
        return Err("it is empty".into());
    }
    let mut terms = Vec::new();
    for part in spec.split(',') {
        let words: Vec<&str> = part.split_whitespace().collect();
        let Some((&column, rest)) = words.split_first() else {
            return Err(format!("`{spec}` has an empty ordering term"));
        };
        if !is_sql_identifier(column) {
            return Err(format!("`{column}` is not a column name (letters, digits and `_`, not a digit first)"));
        }
        let rest = rest.iter().map(|w| w.to_ascii_lowercase()).collect::<Vec<_>>().join(" ");
        let (descending, nulls) = match rest.as_str() {
            "" | "asc" => (false, None),
            "desc" => (true, None),
            "asc nulls first" => (false, Some(NullsOrder::First)),
            "asc nulls last" => (false, Some(NullsOrder::Last)),
            "desc nulls first" => (true, Some(NullsOrder::First)),
            "desc nulls last" => (true, Some(NullsOrder::Last)),
            other => {
                return Err(format!(
                    "`{other}` after `{column}` is not a direction (asc or desc, then optionally nulls first/last)"
                ))
            }
        };
        terms.push(OrderTerm { column, descending, nulls });
    }
    Ok(terms)
}

// ---------------------------------------------------------------------------------------
// Durations

/// A duration written as the configuration writes them (`humantime`): `"250ms"`, `"30s"`,
/// `"10 seconds"`, `"1m 30s"`, `"2h"`. It must be at least a millisecond.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text.trim())
        .map_err(|e| format!("`{text}` is not a duration such as \"250ms\", \"10 seconds\" or \"1m 30s\" ({e})"))?;
    if d < Duration::from_millis(1) {
        return Err(format!("`{text}` is shorter than a millisecond"));
    }
    Ok(d)
}

/// [`parse_duration`] in whole milliseconds (what registrations store).
pub fn parse_duration_ms(text: &str) -> Result<u64, String> {
    let d = parse_duration(text)?;
    u64::try_from(d.as_millis()).map_err(|_| format!("`{text}` is too long"))
}

// ---------------------------------------------------------------------------------------
// Recovery policy

/// What a runtime does with a saga it finds unfinished (its process died). Written
/// `"compensate"` or `"forward"` in `#[saga(recovery = …)]` and in the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecoveryPolicy {
    /// Undo the committed steps (the default).
    Compensate,
    /// Run the remaining steps.
    Forward,
}

impl RecoveryPolicy {
    /// Every policy, in the order messages list them.
    pub const ALL: [RecoveryPolicy; 2] = [RecoveryPolicy::Compensate, RecoveryPolicy::Forward];

    /// The name it is written as: `"compensate"` or `"forward"`.
    pub fn as_str(self) -> &'static str {
        match self {
            RecoveryPolicy::Compensate => "compensate",
            RecoveryPolicy::Forward => "forward",
        }
    }

    /// The policy written `name`.
    pub fn parse(name: &str) -> Result<RecoveryPolicy, String> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str() == name)
            .ok_or_else(|| format!("`{name}` is not a recovery policy: use \"compensate\" or \"forward\""))
    }
}

impl std::fmt::Display for RecoveryPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

// ---------------------------------------------------------------------------------------
// Case conversion

/// A `#[serde(rename_all = "…")]` rule, applied to field names exactly as serde applies
/// it (serde_derive's `RenameRule::apply_to_field`), so that `#[derive(Object)]` predicts
/// the JSON names serde writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RenameRule {
    /// `"lowercase"`.
    Lower,
    /// `"UPPERCASE"`.
    Upper,
    /// `"PascalCase"`.
    Pascal,
    /// `"camelCase"`.
    Camel,
    /// `"snake_case"`.
    Snake,
    /// `"SCREAMING_SNAKE_CASE"`.
    ScreamingSnake,
    /// `"kebab-case"`.
    Kebab,
    /// `"SCREAMING-KEBAB-CASE"`.
    ScreamingKebab,
}

impl RenameRule {
    /// Every rule with the name serde knows it by.
    pub const ALL: [(&'static str, RenameRule); 8] = [
        ("lowercase", RenameRule::Lower),
        ("UPPERCASE", RenameRule::Upper),
        ("PascalCase", RenameRule::Pascal),
        ("camelCase", RenameRule::Camel),
        ("snake_case", RenameRule::Snake),
        ("SCREAMING_SNAKE_CASE", RenameRule::ScreamingSnake),
        ("kebab-case", RenameRule::Kebab),
        ("SCREAMING-KEBAB-CASE", RenameRule::ScreamingKebab),
    ];

    /// The rule serde calls `name`.
    pub fn parse(name: &str) -> Result<RenameRule, String> {
        Self::ALL.iter().find(|(n, _)| *n == name).map(|(_, r)| *r).ok_or_else(|| {
            let names = Self::ALL.iter().map(|(n, _)| format!("\"{n}\"")).collect::<Vec<_>>().join(", ");
            format!("`{name}` is not a serde rename rule; serde knows {names}")
        })
    }

    /// The name serde writes for a field called `field` (a Rust identifier, `r#` removed).
    pub fn apply_to_field(self, field: &str) -> String {
        match self {
            RenameRule::Lower | RenameRule::Snake => field.to_owned(),
            RenameRule::Upper | RenameRule::ScreamingSnake => field.to_ascii_uppercase(),
            RenameRule::Pascal => capitalize_words(field, true),
            RenameRule::Camel => {
                let pascal = capitalize_words(field, true);
                let mut chars = pascal.chars();
                match chars.next() {
                    Some(first) => first.to_ascii_lowercase().to_string() + chars.as_str(),
                    None => pascal,
                }
            }
            RenameRule::Kebab => field.replace('_', "-"),
            RenameRule::ScreamingKebab => field.to_ascii_uppercase().replace('_', "-"),
        }
    }
}

/// `_` removed and the letter after each one upper-cased (the first one too if `first`).
fn capitalize_words(s: &str, first: bool) -> String {
    let mut out = String::with_capacity(s.len());
    let mut capitalize = first;
    for c in s.chars() {
        if c == '_' {
            capitalize = true;
        } else if capitalize {
            out.push(c.to_ascii_uppercase());
            capitalize = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// `fooBar` from `foo_bar`: the GraphQL name of a field or argument. Leading underscores
/// are kept (so `_id` and `id` stay apart) and nothing else changes case; on a snake_case
/// name it is what serde's `rename_all = "camelCase"` gives.
pub fn camel_case(name: &str) -> String {
    let body = name.trim_start_matches('_');
    let leading = &name[..name.len() - body.len()];
    format!("{leading}{}", capitalize_words(body, false))
}

/// `TOTAL_CENTS` from `totalCents` (or `total_cents`): a GraphQL enum value naming a
/// field.
pub fn screaming_snake_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_keep_to_their_alphabet() {
        for ok in ["create_order", "_x", "payments.v2", "a-b", "A1"] {
            assert_eq!(check_name(ok), Ok(()), "{ok}");
        }
        for bad in ["", "1st", "charge/card", "a b", "-x", ".x", "é"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        assert_eq!(check_name(&"a".repeat(100)), Ok(()));
        assert_eq!(check_name(&"a".repeat(101)), Err("use at most 100 characters"));

        assert!(check_durable_name("order-projection_1").is_ok());
        assert!(check_durable_name("a.b").is_err() && check_durable_name("").is_err());
        assert!(check_stream_name("FRAISEQL").is_ok());
        for bad in ["", "a.b", "a*", ">", "a b"] {
            assert!(check_stream_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sql_identifiers_and_sources() {
        assert!(is_sql_identifier("v_order") && is_sql_identifier("_x1"));
        assert!(!is_sql_identifier("1x") && !is_sql_identifier("a-b") && !is_sql_identifier(""));
        assert!(is_sql_identifier(&"a".repeat(63)) && !is_sql_identifier(&"a".repeat(64)));
        assert!(check_sql_source("v_order").is_ok() && check_sql_source("public.v_order").is_ok());
        for bad in ["a.b.c", "v_order; DROP TABLE x", ".v", "v.", ""] {
            assert!(check_sql_source(bad).is_err(), "{bad}");
        }
        assert!(is_graphql_name("orderList") && is_graphql_name("_x"));
        assert!(!is_graphql_name("__typename") && !is_graphql_name("a-b") && !is_graphql_name("9"));
    }

    #[test]
    fn subjects_say_why_they_are_bad() {
        use SubjectKind::*;
        for (s, kind, why) in [
            ("", Publish, "empty"),
            ("a..b", Publish, "empty token"),
            (".a", Subscription, "empty token"),
            ("a.b ", Publish, "whitespace"),
            ("a.\u{7}", Publish, "whitespace"),
            ("a.*", Publish, "only for subscriptions"),
            ("a.>", Publish, "only for subscriptions"),
            ("a.>.c", Subscription, "last token"),
            ("a.b*", Subscription, "whole tokens"),
        ] {
            let e = check_subject(s, kind).unwrap_err();
            assert!(e.contains(why), "{s:?}: {e}");
        }
        assert_eq!(check_subject("a.*.c.>", Subscription), Ok(()));
        assert_eq!(check_subject("fraiseql.order.created", Publish), Ok(()));
        let long = format!("a.{}", "b".repeat(MAX_SUBJECT_LEN));
        assert_eq!(check_subject(&long, Subscription), Err("it is longer than 512 bytes"));
        assert_eq!(check_subject(&long[..MAX_SUBJECT_LEN], Subscription), Ok(()));
    }

    #[test]
    fn wildcards_match_like_nats() {
        assert!(subject_matches("fraiseql.order.>", "fraiseql.order.created"));
        assert!(subject_matches("fraiseql.order.>", "fraiseql.order.item.added"));
        assert!(!subject_matches("fraiseql.order.>", "fraiseql.order"));
        assert!(subject_matches("fraiseql.*.created", "fraiseql.order.created"));
        assert!(!subject_matches("fraiseql.*.created", "fraiseql.order.item.created"));
        assert!(subject_matches("a.b", "a.b"));
        assert!(!subject_matches("a.b", "a.b.c"));
        assert!(subject_matches(">", "a"));
    }

    #[test]
    fn order_by_terms() {
        let t = parse_order_by("created_at DESC nulls last, id,name  asc").unwrap();
        let dirs: Vec<_> = t.iter().map(|t| (t.column, t.direction_sql())).collect();
        assert_eq!(dirs, [("created_at", "DESC NULLS LAST"), ("id", "ASC"), ("name", "ASC")]);
        assert_eq!(parse_order_by("x asc nulls first").unwrap()[0].direction_sql(), "ASC NULLS FIRST");
        for (spec, why) in [
            ("", "empty"),
            ("total_cents desc, ", "empty ordering term"),
            ("total_cents sideways", "`sideways` after `total_cents` is not a direction"),
            ("a desc nulls", "`desc nulls` after `a`"),
            ("a;drop", "not a column name"),
            ("\"a\"", "not a column name"),
        ] {
            let e = parse_order_by(spec).unwrap_err();
            assert!(e.contains(why), "{spec:?}: {e}");
        }
    }

    #[test]
    fn durations_read_like_the_configuration() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("10 seconds"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("1m 30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration(" 2h "), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration_ms("1min"), Ok(60_000));
        for bad in ["", "soon", "10", "-1s", "10 parsecs"] {
            let e = parse_duration(bad).unwrap_err();
            assert!(e.contains("is not a duration"), "{bad:?}: {e}");
        }
        assert!(parse_duration("0s").unwrap_err().contains("shorter than a millisecond"));
        assert!(parse_duration("500us").unwrap_err().contains("shorter than a millisecond"));
    }

    #[test]
    fn recovery_policies_by_name() {
        for p in RecoveryPolicy::ALL {
            assert_eq!(RecoveryPolicy::parse(p.as_str()), Ok(p));
        }
        assert!(RecoveryPolicy::parse("retry").unwrap_err().contains("\"compensate\" or \"forward\""));
        assert!(RecoveryPolicy::parse("Forward").is_err());
    }

    #[test]
    fn rename_rules_match_serde() {
        // serde_derive's own test table for fields.
        for (original, upper, pascal, camel, screaming, kebab, screaming_kebab) in [
            ("outcome", "OUTCOME", "Outcome", "outcome", "OUTCOME", "outcome", "OUTCOME"),
            ("very_tasty", "VERY_TASTY", "VeryTasty", "veryTasty", "VERY_TASTY", "very-tasty", "VERY-TASTY"),
            ("a", "A", "A", "a", "A", "a", "A"),
            ("z42", "Z42", "Z42", "z42", "Z42", "z42", "Z42"),
        ] {
            let apply = |name: &str| RenameRule::parse(name).unwrap().apply_to_field(original);
            assert_eq!(apply("lowercase"), original);
            assert_eq!(apply("snake_case"), original);
            assert_eq!(apply("UPPERCASE"), upper);
            assert_eq!(apply("PascalCase"), pascal);
            assert_eq!(apply("camelCase"), camel);
            assert_eq!(apply("SCREAMING_SNAKE_CASE"), screaming);
            assert_eq!(apply("kebab-case"), kebab);
            assert_eq!(apply("SCREAMING-KEBAB-CASE"), screaming_kebab);
        }
        // serde leaves the rest of a word as written.
        assert_eq!(RenameRule::Camel.apply_to_field("order_ID"), "orderID");
        assert_eq!(RenameRule::Camel.apply_to_field("_private"), "private");
        assert!(RenameRule::parse("Title Case").unwrap_err().contains("\"camelCase\""));
    }

    #[test]
    fn graphql_case() {
        assert_eq!(camel_case("customer_id"), "customerId");
        assert_eq!(camel_case("id"), "id");
        assert_eq!(camel_case("_private"), "_private");
        assert_eq!(camel_case("__x_y"), "__xY");
        assert_eq!(camel_case("total_cents_v2"), "totalCentsV2");
        assert_eq!(camel_case("totalCents"), "totalCents");
        for snake in ["customer_id", "total_cents_v2", "a", "very_tasty"] {
            assert_eq!(camel_case(snake), RenameRule::Camel.apply_to_field(snake), "{snake}");
        }
        assert_eq!(screaming_snake_case("totalCents"), "TOTAL_CENTS");
        assert_eq!(screaming_snake_case("id"), "ID");
        assert_eq!(screaming_snake_case(&camel_case("total_cents_v2")), "TOTAL_CENTS_V2");
    }
}
