//! Label matchers with Prometheus 3 semantics.
//!
//! - Regexes are fully anchored: `=~"foo"` matches only `foo`, never `xfoo`.
//! - The syntax is RE2's. `.` matches any character including newline (Prometheus 3),
//!   and the Perl classes `\d \w \s \b` are ASCII-only as in RE2, while the `regex` crate's
//!   are Unicode: the pattern is rewritten before compiling so both agree.
//! - A matcher tests a value; a label that is absent is tested as the empty string, so
//!   `{foo=""}` selects series without `foo` and `{foo=~".*"}` selects every series.
//!   Applying that rule is the caller's job (the index does it).
//!
//! Common regex shapes are answered without running the regex engine: literals,
//! alternations of literals (`a|b|c`), literal prefixes (`foo.*`), `.*` and `.+`.

use std::collections::HashSet;
use std::fmt;

use regex::Regex;

/// The four matcher operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MatchType {
    /// `=`
    Equal,
    /// `!=`
    NotEqual,
    /// `=~`
    Regex,
    /// `!~`
    NotRegex,
}

impl fmt::Display for MatchType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MatchType::Equal => "=",
            MatchType::NotEqual => "!=",
            MatchType::Regex => "=~",
            MatchType::NotRegex => "!~",
        })
    }
}

/// A regex that failed to compile.
#[derive(Debug, thiserror::Error)]
#[error("invalid regular expression {pattern:?} for label {label:?}: {source}")]
pub struct MatcherError {
    pub label: String,
    pub pattern: String,
    #[source]
    pub source: Box<regex::Error>,
}

/// How a regex matcher decides, fastest first.
#[derive(Debug, Clone)]
enum RegexPlan {
    /// `.*`: everything, including the empty string.
    Any,
    /// `.+`: any non-empty string.
    NonEmpty,
    /// A literal with no metacharacters.
    Literal(String),
    /// An alternation of literals, `a|b|c`.
    Set(HashSet<String>),
    /// A literal prefix followed by `.*`.
    Prefix(String),
    /// Everything else.
    Engine(Regex),
}

/// One label matcher, e.g. `job=~"api|web"`.
#[derive(Debug, Clone)]
pub struct Matcher {
    pub kind: MatchType,
    pub name: String,
    pub value: String,
    plan: Option<RegexPlan>,
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind && self.name == other.name && self.value == other.value
    }
}

impl Matcher {
    /// Builds a matcher; regex matchers compile their pattern here.
    pub fn new(kind: MatchType, name: &str, value: &str) -> Result<Matcher, MatcherError> {
        let plan = match kind {
            MatchType::Regex | MatchType::NotRegex => {
                Some(plan_regex(value).map_err(|e| MatcherError {
                    label: name.to_owned(),
                    pattern: value.to_owned(),
                    source: Box::new(e),
                })?)
            }
            _ => None,
        };
        Ok(Matcher {
            kind,
            name: name.to_owned(),
            value: value.to_owned(),
            plan,
        })
    }

    /// `name="value"`; cannot fail.
    pub fn equal(name: &str, value: &str) -> Matcher {
        Matcher {
            kind: MatchType::Equal,
            name: name.to_owned(),
            value: value.to_owned(),
            plan: None,
        }
    }

    /// Whether `value` satisfies the matcher. An absent label is passed as `""`.
    pub fn matches(&self, value: &str) -> bool {
        match self.kind {
            MatchType::Equal => value == self.value,
            MatchType::NotEqual => value != self.value,
            MatchType::Regex => self.regex_matches(value),
            MatchType::NotRegex => !self.regex_matches(value),
        }
    }

    /// Whether the matcher selects series that lack the label (it matches `""`).
    pub fn matches_empty(&self) -> bool {
        self.matches("")
    }

    /// For `=` and for regexes that are a literal or a set of literals, the exact values
    /// that match; `None` when the set is open. Lets the index look up postings directly.
    pub fn set_matches(&self) -> Option<Vec<&str>> {
        match (&self.kind, &self.plan) {
            (MatchType::Equal, _) => Some(vec![self.value.as_str()]),
            (MatchType::Regex, Some(RegexPlan::Literal(s))) => Some(vec![s.as_str()]),
            (MatchType::Regex, Some(RegexPlan::Set(set))) => {
                let mut v: Vec<&str> = set.iter().map(String::as_str).collect();
                v.sort_unstable();
                Some(v)
            }
            _ => None,
        }
    }

    /// The literal prefix every matching value starts with, for `=~"prefix.*"`.
    pub fn prefix(&self) -> Option<&str> {
        match (&self.kind, &self.plan) {
            (MatchType::Regex, Some(RegexPlan::Prefix(p))) => Some(p),
            _ => None,
        }
    }

    fn regex_matches(&self, value: &str) -> bool {
        match &self.plan {
            Some(RegexPlan::Any) => true,
            Some(RegexPlan::NonEmpty) => !value.is_empty(),
            Some(RegexPlan::Literal(s)) => value == s,
            Some(RegexPlan::Set(set)) => set.contains(value),
            Some(RegexPlan::Prefix(p)) => value.starts_with(p.as_str()),
            Some(RegexPlan::Engine(re)) => re.is_match(value),
            None => false,
        }
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut q = String::new();
        crate::labels::go_quote_into(&mut q, &self.value);
        write!(f, "{}{}{}", self.name, self.kind, q)
    }
}

fn is_literal(s: &str) -> bool {
    !s.chars().any(regex_syntax::is_meta_character)
}

/// Compiles `pattern` the way Prometheus 3 does for label matching and `label_replace`:
/// fully anchored, `.` matching newline, RE2's ASCII Perl classes.
pub fn compile_anchored(pattern: &str) -> Result<Regex, regex::Error> {
    Regex::new(&format!("^(?s:{})$", rewrite_perl_classes(pattern)))
}

fn plan_regex(pattern: &str) -> Result<RegexPlan, regex::Error> {
    // Compile first so that an invalid pattern is an error even when a fast path would
    // have answered it.
    let re = compile_anchored(pattern)?;
    Ok(match pattern {
        ".*" => RegexPlan::Any,
        ".+" => RegexPlan::NonEmpty,
        p if is_literal(p) => RegexPlan::Literal(p.to_owned()),
        p if p.contains('|') && p.split('|').all(is_literal) => {
            RegexPlan::Set(p.split('|').map(str::to_owned).collect())
        }
        p if p.ends_with(".*") && is_literal(&p[..p.len() - 2]) => {
            RegexPlan::Prefix(p[..p.len() - 2].to_owned())
        }
        _ => RegexPlan::Engine(re),
    })
}

/// Rewrites RE2's ASCII-only Perl classes into explicit ASCII classes, which the `regex`
/// crate otherwise reads as Unicode classes. Escaped backslashes are left alone.
fn rewrite_perl_classes(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len() + 16);
    let mut chars = pattern.chars();
    let mut in_class = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('d') => out.push_str("[0-9]"),
                Some('D') => out.push_str("[^0-9]"),
                Some('w') => out.push_str("[0-9A-Za-z_]"),
                Some('W') => out.push_str("[^0-9A-Za-z_]"),
                Some('s') => out.push_str("[\\t\\n\\f\\r ]"),
                Some('S') => out.push_str("[^\\t\\n\\f\\r ]"),
                Some('b') if !in_class => out.push_str("(?-u:\\b)"),
                Some('B') if !in_class => out.push_str("(?-u:\\B)"),
                Some(other) => {
                    out.push('\\');
                    out.push(other);
                }
                None => out.push('\\'),
            },
            '[' => {
                in_class = true;
                out.push(c);
            }
            ']' => {
                in_class = false;
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(kind: MatchType, pattern: &str, value: &str, want: bool) {
        let m = Matcher::new(kind, "l", pattern).expect("valid pattern");
        assert_eq!(m.matches(value), want, "{m} against {value:?}");
    }

    #[test]
    fn matcher_table() {
        use MatchType::*;
        let cases: &[(MatchType, &str, &str, bool)] = &[
            (Equal, "a", "a", true),
            (Equal, "a", "b", false),
            (Equal, "", "", true),
            (NotEqual, "a", "b", true),
            (NotEqual, "a", "a", false),
            (Regex, "foo", "foo", true),
            (Regex, "foo", "xfoo", false),
            (Regex, "foo", "foox", false),
            (Regex, "a|b", "b", true),
            (Regex, "a|b", "ab", false),
            (Regex, "api.*", "api-server", true),
            (Regex, "api.*", "xapi", false),
            (Regex, ".*", "", true),
            (Regex, ".+", "", false),
            (Regex, ".+", "x", true),
            (Regex, "a.b", "a\nb", true),
            (Regex, ".*", "line1\nline2", true),
            (Regex, "f.o|ba[rz]", "baz", true),
            (Regex, "\\d+", "123", true),
            (Regex, "\\d+", "١٢٣", false),
            (Regex, "\\w+", "héllo", false),
            (Regex, "[\\d]+x", "12x", true),
            (Regex, "a\\.b", "a.b", true),
            (Regex, "a\\.b", "axb", false),
            (Regex, "(?i)GPU", "gpu", true),
            (NotRegex, "a|b", "c", true),
            (NotRegex, "a|b", "a", false),
            (NotRegex, ".*", "", false),
        ];
        for (kind, pattern, value, want) in cases {
            check(*kind, pattern, value, *want);
            // Run twice: plans must not keep state between calls.
            check(*kind, pattern, value, *want);
        }
    }

    #[test]
    fn invalid_regex_is_an_error_naming_the_label() {
        let err = Matcher::new(MatchType::Regex, "job", "a(b").expect_err("must fail");
        assert!(err.to_string().contains("job"), "{err}");
    }

    #[test]
    fn set_matches_for_index_lookups() {
        let m = Matcher::new(MatchType::Regex, "l", "b|a").expect("valid");
        assert_eq!(m.set_matches(), Some(vec!["a", "b"]));
        let m = Matcher::new(MatchType::Regex, "l", "a.*").expect("valid");
        assert_eq!(m.set_matches(), None);
        assert_eq!(m.prefix(), Some("a"));
    }
}
