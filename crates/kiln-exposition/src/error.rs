//! Parse errors.

/// A parse failure at a place in the input. Every variant is bad input data.
///
/// `line` and `column` are 1-based; the column counts bytes from the start of the line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {reason}")]
pub struct ParseError {
    pub line: usize,
    pub column: usize,
    pub reason: ParseErrorReason,
}

/// What was wrong. Texts quoted from the input are cut to a few dozen characters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseErrorReason {
    #[error("line is longer than the limit of {limit} bytes")]
    LineTooLong { limit: usize },
    #[error("invalid UTF-8")]
    InvalidUtf8,
    #[error("expected {expected}, found {found}")]
    Unexpected {
        expected: &'static str,
        found: String,
    },
    #[error("invalid metric type {found:?} (expected one of {allowed})")]
    UnknownMetricType {
        found: String,
        allowed: &'static str,
    },
    #[error("invalid sample value {text:?}")]
    InvalidValue { text: String },
    #[error("sample value {text:?} is out of the float64 range")]
    ValueOutOfRange { text: String },
    #[error("invalid timestamp {text:?}")]
    InvalidTimestamp { text: String },
    #[error("label name {name:?} appears more than once")]
    DuplicateLabel { name: String },
    #[error("label {name:?} is longer than the limit of {limit} bytes")]
    LabelTooLong { name: String, limit: usize },
    #[error("more than {limit} labels")]
    TooManyLabels { limit: usize },
    #[error("unit {unit:?} is not a suffix of metric family {family:?}")]
    UnitNotSuffix { family: String, unit: String },
    #[error(
        "metric {metric:?} does not support exemplars (only counter _total and histogram _bucket samples do)"
    )]
    ExemplarNotAllowed { metric: String },
    #[error("exemplar labels have {runes} characters, more than the limit of {limit}")]
    ExemplarLabelsTooLong { runes: usize, limit: usize },
    #[error("OpenMetrics input does not end with \"# EOF\"")]
    MissingEof,
    #[error("unexpected data after \"# EOF\"")]
    DataAfterEof,
    /// A family's second `# HELP` line (checked by [`crate::lint_text`], as
    /// Prometheus's text decoder does; the streaming parser does not).
    #[error("second HELP line for metric name {family:?}")]
    SecondHelp { family: String },
    /// A family's second `# TYPE` line, or one after its samples ([`crate::lint_text`]).
    #[error("second TYPE line for metric name {family:?}, or TYPE reported after samples")]
    SecondType { family: String },
    /// A histogram's `le` or a summary's `quantile` label that is not a float
    /// ([`crate::lint_text`]).
    #[error("expected float as value for '{label}' label, got {value:?}")]
    InvalidLabelFloat { label: &'static str, value: String },
    /// An escape other than `\\`, `\"`, `\n` in a label value, or other than `\\`,
    /// `\n` in help text ([`crate::lint_text`]; Prometheus's scrape parser keeps such
    /// a backslash, its text decoder refuses it).
    #[error("invalid escape sequence '\\{sequence}'")]
    InvalidEscape { sequence: char },
    /// Blanks at the end of a sample or `# TYPE` line ([`crate::lint_text`], as
    /// Prometheus's text decoder).
    #[error("blank at the end of the line")]
    TrailingBlank,
}

/// Cuts input text for an error message.
pub(crate) fn snippet(s: &str) -> String {
    const MAX: usize = 40;
    if s.is_empty() {
        return "end of line".to_owned();
    }
    match s.char_indices().nth(MAX) {
        Some((i, _)) => format!("{:?}...", &s[..i]),
        None => format!("{s:?}"),
    }
}
