//! Kiln's PromQL parser, written to say what Prometheus says.
//!
//! Users meet parse errors in Grafana, `promtool` and rule files, and compare them
//! with Prometheus's, so this parser reports Prometheus's messages at Prometheus's
//! positions: `1:22: parse error: unexpected <by>`, `1:6: parse error: expected type
//! range vector in call to function "rate", got instant vector`.
//!
//! Module map:
//! - [`lexer`]: tokens, following Prometheus's lexer states and messages;
//! - [`parse`]: recursive descent to a [`syntax`] tree (positions kept), with the
//!   error wording of Prometheus's grammar;
//! - [`check`]: type checks, in Prometheus's order;
//! - [`print`]: the tree back to text, in Prometheus's canonical layout;
//! - [`go`]: number and string literals read as Go reads them, Go's quoting.
//!
//! The grammar is Prometheus 3's: UTF-8 names in quotes (`{"metric.name"}`,
//! `by ("label.name")`), numbers as durations (`[300]`), durations as numbers
//! (`x > 5m`), and duration expressions (`[5m * 2]`, `offset step()`), which Kiln
//! accepts without a feature flag. Experimental syntax Kiln does not evaluate
//! (`anchored`, `smoothed`, `fill(...)`, the `</` and `>/` operators, `info()`) is
//! refused with Prometheus's "not enabled" message or a "not supported" one.

mod check;
pub(crate) mod go;
mod lexer;
mod parse;
pub(crate) mod print;
pub(crate) mod syntax;

use syntax::Node;

/// The deepest nesting a query may have (parentheses, calls, operators waiting for
/// their right side): enough for any real query and for generated ones Prometheus
/// takes, and a bound on the memory a hostile query can make the parser use.
pub(crate) const MAX_NESTING: usize = 10_000;

/// Runs `f` with enough stack for one more level of recursion over the query, growing
/// the stack on the heap when it runs low, so nesting is bounded by [`MAX_NESTING`]
/// and not by the calling thread's stack size.
pub(crate) fn with_stack<R>(f: impl FnOnce() -> R) -> R {
    stacker::maybe_grow(64 * 1024, 1024 * 1024, f)
}

/// A query that does not parse or check: where (a byte offset) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParseError {
    pub(crate) pos: usize,
    pub(crate) message: String,
}

impl ParseError {
    pub(crate) fn new(pos: usize, message: impl Into<String>) -> Self {
        ParseError {
            pos,
            message: message.into(),
        }
    }

    /// Prometheus's text: `<line>:<column>: parse error: <message>`, the column
    /// counted in bytes from 1.
    pub(crate) fn render(&self, query: &str) -> String {
        if query.is_empty() {
            return format!("unknown position: parse error: {}", self.message);
        }
        if self.pos > query.len() {
            return format!("invalid position: parse error: {}", self.message);
        }
        let (line, col) = line_col(query, self.pos);
        format!("{line}:{col}: parse error: {}", self.message)
    }
}

/// The 1-based line and byte column of `offset` in `text`.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text.as_bytes()[..offset.min(text.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let col = match before.iter().rposition(|&b| b == b'\n') {
        Some(nl) => offset - nl,
        None => offset + 1,
    };
    (line, col)
}

/// Parses and checks a query.
pub(crate) fn parse(query: &str) -> Result<Node, ParseError> {
    let node = parse::Parser::new(query).parse_query()?;
    check::check(&node)?;
    Ok(node)
}

/// A regex that does not compile, worded as Go's `regexp` words it for Prometheus 3,
/// which compiles `^(?s:<pattern>)$`: `error parsing regexp: missing closing ):
/// `^(?s:(foo)$``. Kiln's regex engine is not Go's, so the reason is mapped from its
/// own, and the fragment shown follows Go's choice for each reason.
pub(crate) fn regex_error(pattern: &str, fallback: &regex::Error) -> String {
    use regex_syntax::ast::ErrorKind as K;
    let anchored = format!("^(?s:{pattern})$");
    let parsed = regex_syntax::ast::parse::Parser::new().parse(pattern);
    let Err(e) = parsed else {
        let text = fallback.to_string();
        let reason = text.lines().last().unwrap_or_default().trim().to_owned();
        return format!("error parsing regexp: {reason}: `{pattern}`");
    };
    let span = e.span();
    let from = span.start.offset.min(pattern.len());
    let mut to = span.end.offset.clamp(from, pattern.len());
    if to == from {
        to = pattern[from..]
            .chars()
            .next()
            .map_or(from, |c| from + c.len_utf8());
    }
    let piece = &pattern[from..to];
    let (code, fragment) = match e.kind() {
        K::GroupUnclosed => ("missing closing )", anchored.clone()),
        K::GroupUnopened => ("unexpected )", anchored.clone()),
        K::ClassUnclosed => ("missing closing ]", format!("{})$", &pattern[from..])),
        K::ClassRangeInvalid | K::ClassRangeLiteral => {
            ("invalid character class range", piece.to_owned())
        }
        K::ClassEscapeInvalid
        | K::EscapeUnrecognized
        | K::EscapeHexInvalid
        | K::EscapeHexInvalidDigit
        | K::EscapeHexEmpty => ("invalid escape sequence", piece.to_owned()),
        K::EscapeUnexpectedEof => ("missing closing )", anchored.clone()),
        K::RepetitionMissing => ("missing argument to repetition operator", piece.to_owned()),
        K::RepetitionCountInvalid
        | K::RepetitionCountDecimalEmpty
        | K::RepetitionCountUnclosed
        | K::DecimalEmpty
        | K::DecimalInvalid => ("invalid repeat count", piece.to_owned()),
        K::GroupNameInvalid
        | K::GroupNameEmpty
        | K::GroupNameUnexpectedEof
        | K::GroupNameDuplicate { .. } => ("invalid named capture", piece.to_owned()),
        K::FlagUnrecognized
        | K::FlagDanglingNegation
        | K::FlagRepeatedNegation { .. }
        | K::FlagDuplicate { .. }
        | K::FlagUnexpectedEof
        | K::UnsupportedLookAround
        | K::UnsupportedBackreference => ("invalid or unsupported Perl syntax", piece.to_owned()),
        K::NestLimitExceeded(_) => ("expression nests too deeply", anchored.clone()),
        _ => ("invalid regular expression", pattern.to_owned()),
    };
    format!("error parsing regexp: {code}: `{fragment}`")
}

/// What Go's `regexp` refuses although Kiln's regex engine takes it: a repetition of a
/// repetition (`a**`, `a+*`, `a{2}{3}`; lazy `a*?` is one operator). Prometheus
/// refuses such a matcher, so Kiln does too, with Go's words.
pub(crate) fn go_regex_refuses(pattern: &str) -> Option<String> {
    use regex_syntax::ast::{Ast, Visitor, visit};
    struct Nested<'p> {
        pattern: &'p str,
        found: Option<String>,
    }
    impl Visitor for Nested<'_> {
        type Output = Option<String>;
        type Err = ();
        fn visit_pre(&mut self, ast: &Ast) -> Result<(), ()> {
            if self.found.is_none()
                && let Ast::Repetition(outer) = ast
                && let Ast::Repetition(inner) = outer.ast.as_ref()
            {
                let (from, to) = (inner.op.span.start.offset, outer.op.span.end.offset);
                self.found = self.pattern.get(from..to).map(str::to_owned);
            }
            Ok(())
        }
        fn finish(self) -> Result<Option<String>, ()> {
            Ok(self.found)
        }
    }
    let ast = regex_syntax::ast::parse::Parser::new()
        .parse(pattern)
        .ok()?;
    let fragment = visit(
        &ast,
        Nested {
            pattern,
            found: None,
        },
    )
    .ok()
    .flatten()?;
    Some(format!(
        "error parsing regexp: invalid nested repetition operator: `{fragment}`"
    ))
}

#[cfg(test)]
mod tests;
