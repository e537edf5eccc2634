//! Kiln's data model, shared by every other crate: label sets ([`Labels`]), label
//! matchers ([`Matcher`]), samples and timestamps, and the Prometheus staleness marker.
//!
//! Module map:
//! - [`calendar`]: civil dates from Unix days.
//! - [`duration`]: Prometheus duration strings (`1d12h`).
//! - [`labels`]: the packed, sorted label set and its builder.
//! - [`matcher`]: `=`, `!=`, `=~`, `!~` with Prometheus 3 semantics.
//! - [`relabel`]: Prometheus relabeling (`relabel_configs`): every action, validation.
//! - [`selector`]: parsing series selectors (`up{job="a"}`) into matchers.
//! - [`value`]: sample values, the StaleNaN marker and Go-compatible float formatting.
//!
//! Nothing here does I/O; nothing here depends on tokio.

pub mod calendar;
pub mod duration;
pub mod labels;
pub mod matcher;
pub mod relabel;
pub mod selector;
pub mod value;

pub use duration::{DurationError, format_duration_ms, parse_duration_ms};
pub use labels::{Label, Labels, LabelsBuilder, METRIC_NAME};
pub use matcher::{MatchType, Matcher, MatcherError};
pub use selector::{SelectorError, parse_selector};
pub use value::{
    STALE_NAN, STALE_NAN_BITS, ShortestDigits, format_go_float, format_go_float_exp, is_stale_nan,
};

/// A timestamp in milliseconds since the Unix epoch, as Prometheus stores them.
pub type Timestamp = i64;

/// One float sample: a timestamp and its value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub t: Timestamp,
    pub v: f64,
}
