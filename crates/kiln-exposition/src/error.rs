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
