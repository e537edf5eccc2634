//! Parsers and encoders for the Prometheus text exposition format 0.0.4 and the
//! OpenMetrics 1.0 text format, content negotiation, and a `promtool check metrics`
//! style linter. Pure: no I/O, no async.
//!
//! Module map:
//! - `parse` (private): [`Parser`], one line at a time, for both formats.
//! - `error` (private): [`ParseError`] (line, column, [`ParseErrorReason`]).
//! - `encode` (private): [`MetricFamily`] and the `encode_*` functions, appending into a
//!   `Vec<u8>` (`docs/format/encoding.md`).
//! - `negotiate` (private): [`Format::content_type`], [`Format::from_content_type`],
//!   [`negotiate`] (Accept header).
//! - `lint` (private): [`lint_text`] and [`Problem`], promlint's rules (`docs/lint.md`).
//! - this file: the entry types ([`Entry`], [`SampleLine`], [`MetricType`]), the
//!   [`Format`] switch and the [`ParserOptions`] limits.
//!
//! Write path: for each family, `encode_text_family_header` (or the OpenMetrics one),
//! then `encode_text_sample` per sample; OpenMetrics ends with `encode_openmetrics_eof`.
//! Encoders allocate nothing but the output vector's growth.
//!
//! Read path: `Parser::new(bytes, format)` is an `Iterator` of
//! `Result<Entry, ParseError>`; the first error ends it. The format's rules are in
//! `docs/format/openmetrics.md`, including how OpenMetrics' float-second timestamps
//! become milliseconds (truncated, as promtool 2.42 does).
//!
//! Allocation: the parser borrows the input; each sample allocates its label set, and
//! a label value or help text with escapes allocates its unescaped copy. Line length,
//! label size and label count are limited by [`ParserOptions`], so no input makes it
//! scan or allocate beyond those bounds per line.

mod encode;
mod error;
mod lint;
mod negotiate;
mod parse;

use std::borrow::Cow;

pub use encode::{
    MetricFamily, encode_openmetrics_eof, encode_openmetrics_family_header,
    encode_openmetrics_sample, encode_text_family_header, encode_text_header, encode_text_sample,
    encode_text_sample_with_extra, openmetrics_family_name,
};
pub use error::{ParseError, ParseErrorReason};
pub use lint::{Problem, lint_text};
pub use negotiate::negotiate;
pub use parse::{Parser, series_labels};

/// Which text format to parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// Prometheus text exposition format 0.0.4 (`text/plain; version=0.0.4`).
    Text004,
    /// OpenMetrics 1.0 text (`application/openmetrics-text; version=1.0.0`).
    OpenMetrics,
}

/// A metric family's type, from a `# TYPE` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetricType {
    Counter,
    Gauge,
    Histogram,
    GaugeHistogram,
    Summary,
    Info,
    StateSet,
    /// OpenMetrics `unknown`, text format `untyped`, or no `# TYPE` line.
    Unknown,
}

impl MetricType {
    /// The OpenMetrics name (`unknown` for [`MetricType::Unknown`]).
    pub fn as_str(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
            MetricType::GaugeHistogram => "gaugehistogram",
            MetricType::Summary => "summary",
            MetricType::Info => "info",
            MetricType::StateSet => "stateset",
            MetricType::Unknown => "unknown",
        }
    }

    /// Parses an OpenMetrics type name (case-sensitive, as the format requires).
    pub fn from_openmetrics(s: &str) -> Option<MetricType> {
        Some(match s {
            "counter" => MetricType::Counter,
            "gauge" => MetricType::Gauge,
            "histogram" => MetricType::Histogram,
            "gaugehistogram" => MetricType::GaugeHistogram,
            "summary" => MetricType::Summary,
            "info" => MetricType::Info,
            "stateset" => MetricType::StateSet,
            "unknown" => MetricType::Unknown,
            _ => return None,
        })
    }

    /// Parses a text-format 0.0.4 type name (`untyped` is [`MetricType::Unknown`]).
    pub fn from_text(s: &str) -> Option<MetricType> {
        Some(match s {
            "counter" => MetricType::Counter,
            "gauge" => MetricType::Gauge,
            "histogram" => MetricType::Histogram,
            "summary" => MetricType::Summary,
            "untyped" => MetricType::Unknown,
            _ => return None,
        })
    }
}

/// One parsed line.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry<'a> {
    /// `# HELP family text`, escapes resolved.
    Help { family: &'a str, text: Cow<'a, str> },
    /// `# TYPE family type`.
    Type { family: &'a str, kind: MetricType },
    /// `# UNIT family unit` (OpenMetrics only).
    Unit { family: &'a str, unit: &'a str },
    /// A sample line.
    Sample(SampleLine<'a>),
    /// `# EOF`, the last entry of an OpenMetrics document.
    Eof,
}

/// One sample line. Exemplars are checked for syntax and dropped.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleLine<'a> {
    /// The line's series as written: the metric name and its `{...}` label set, if any
    /// (a slice of the input). The same series written the same way gives the same
    /// text, which is what a scrape cache keys on (Prometheus's does too).
    pub series: &'a str,
    /// All labels, the metric name as `__name__` included. Labels with an empty value
    /// are absent, as everywhere in Kiln. Empty when [`ParserOptions::skip_labels`] is
    /// set: [`series_labels`] builds them from `series` when needed.
    pub labels: kiln_model::Labels,
    /// The value; `NaN` has Go's NaN bits (`0x7ff8000000000001`), as Prometheus stores.
    pub value: f64,
    /// Milliseconds since the epoch, if the line had a timestamp. OpenMetrics gives
    /// seconds: they are multiplied by 1000 and truncated toward zero.
    pub timestamp_ms: Option<i64>,
    /// Names of labels written with an empty value (`instance=""`). They are absent from
    /// `labels`, but a scrape with `honor_labels` counts them as present, so the target's
    /// label of that name is not added (Prometheus does the same; federation relies on
    /// it). Empty, and not allocated, for almost every sample.
    pub empty_label_names: Vec<String>,
}

/// Limits that keep hostile input from costing more than a bounded amount per line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParserOptions {
    /// Longest line accepted, in bytes without the newline. Default 1 MiB.
    pub max_line_bytes: usize,
    /// Longest label name, and longest label value after unescaping, in bytes.
    /// Default 64 KiB.
    pub max_label_bytes: usize,
    /// Most labels on one sample, the metric name included. Default 512.
    pub max_labels: usize,
    /// Do not parse label sets: find where each ends (respecting quoted values) and
    /// build neither [`SampleLine::labels`] nor `empty_label_names`. Checking the label
    /// set is left to [`series_labels`]: for callers that look the series text up in a
    /// cache first and build (and so fully check) labels only for texts they have not
    /// seen; a text seen before was checked then. Default false.
    pub skip_labels: bool,
}

impl Default for ParserOptions {
    fn default() -> Self {
        ParserOptions {
            max_line_bytes: 1 << 20,
            max_label_bytes: 64 << 10,
            max_labels: 512,
            skip_labels: false,
        }
    }
}
