//! Metric linting in the manner of `promtool check metrics` (Prometheus 2.42, whose
//! rules come from client_golang's `testutil/promlint`). The rules, and where Kiln's
//! reading of the input differs from promtool's, are listed in `docs/lint.md`.
//!
//! The input is grouped into families the way Prometheus's text-format decoder does
//! (so `foo_bucket`, `foo_sum` and `foo_count` belong to `foo` only when `foo` was
//! declared a histogram before them), then each family with at least one sample is
//! checked. Problems come back sorted by metric name, then text.

use std::collections::{HashMap, HashSet};
use std::fmt;

use kiln_model::{Labels, METRIC_NAME};

use crate::error::{ParseError, ParseErrorReason};
use crate::parse::parse_go_float;
use crate::{Entry, Format, MetricType, Parser};

/// One lint finding about a metric family.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Problem {
    /// The family name.
    pub metric: String,
    /// What is wrong, in promlint's words.
    pub text: String,
}

impl fmt::Display for Problem {
    /// `metric text`, the line promtool prints.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.metric, self.text)
    }
}

/// Lints a text-format (0.0.4) exposition, as `promtool check metrics` reads stdin.
///
/// Errors are those of [`Parser`], plus what Prometheus's text decoder refuses and its
/// scrape parser accepts: a second `# HELP` or `# TYPE` for a family, a `# TYPE` after
/// the family's samples, a histogram `le` or summary `quantile` label that is not a
/// float, escapes it does not know, and blanks ending a sample or `# TYPE` line. The
/// earliest error by line is returned.
///
/// Allocates per family and per sample (this is a command-line check, not a hot path).
pub fn lint_text(input: &[u8]) -> Result<Vec<Problem>, ParseError> {
    let (strict, empty_labels) = decoder_check(input);
    let fams = match group(input, &empty_labels) {
        Ok(fams) => fams,
        Err(e) => {
            return Err(match strict {
                Some(s) if s.line <= e.line => s,
                _ => e,
            });
        }
    };
    if let Some(s) = strict {
        return Err(s);
    }
    let mut problems = Vec::new();
    for f in &fams.list {
        if f.metrics > 0 {
            f.check(&mut problems);
        }
    }
    problems.sort();
    Ok(problems)
}

/// The first line that Prometheus's text decoder refuses although [`Parser`] (which
/// follows Prometheus's more lenient scrape parser) accepts it: escapes other than
/// `\\`, `\"`, `\n` in label values or other than `\\`, `\n` in help text, and
/// blanks ending a sample or `# TYPE` line.
///
/// Also returns, by line number, the names of labels with an empty value, which the
/// decoder keeps and [`Parser`] drops (Kiln treats an empty value as no label).
fn decoder_check(input: &[u8]) -> (Option<ParseError>, HashMap<usize, Vec<String>>) {
    let mut empty_labels = HashMap::new();
    for (i, line) in input.split(|&b| b == b'\n').enumerate() {
        let fail = |column: usize, reason| {
            let err = ParseError {
                line: i + 1,
                column,
                reason,
            };
            (Some(err), HashMap::new())
        };
        let start = line
            .iter()
            .take_while(|&&b| b == b' ' || b == b'\t')
            .count();
        let body = &line[start..];
        let ends_blank = matches!(line.last(), Some(b' ' | b'\t'));
        let Some(comment) = body.strip_prefix(b"#") else {
            if body.is_empty() {
                continue;
            }
            if ends_blank {
                return fail(line.len(), ParseErrorReason::TrailingBlank);
            }
            // Backslashes only occur inside quoted label values here.
            let mut quoted = false;
            let mut j = 0;
            while j < line.len() {
                match line[j] {
                    b'"' => quoted = !quoted,
                    b'\\' if quoted => {
                        match line.get(j + 1) {
                            Some(b'\\' | b'"' | b'n') => {}
                            other => {
                                return fail(
                                    j + 1,
                                    ParseErrorReason::InvalidEscape {
                                        sequence: other.map_or(' ', |&b| char::from(b)),
                                    },
                                );
                            }
                        }
                        j += 1;
                    }
                    _ => {}
                }
                j += 1;
            }
            let empty = empty_valued_labels(body);
            if !empty.is_empty() {
                empty_labels.insert(i + 1, empty);
            }
            continue;
        };
        let comment = comment.trim_ascii_start();
        if comment.starts_with(b"TYPE ") || comment.starts_with(b"TYPE\t") {
            if ends_blank {
                return fail(line.len(), ParseErrorReason::TrailingBlank);
            }
        } else if comment.starts_with(b"HELP ") || comment.starts_with(b"HELP\t") {
            let mut j = 0;
            while j < line.len() {
                if line[j] == b'\\' {
                    match line.get(j + 1) {
                        Some(b'\\' | b'n') => {}
                        other => {
                            return fail(
                                j + 1,
                                ParseErrorReason::InvalidEscape {
                                    sequence: other.map_or(' ', |&b| char::from(b)),
                                },
                            );
                        }
                    }
                    j += 1;
                }
                j += 1;
            }
        }
    }
    (None, empty_labels)
}

/// Names of the labels written with an empty value (`a=""`) on a sample line, read
/// leniently: anything malformed ends the scan (the parser reports it).
fn empty_valued_labels(line: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let Some(open) = line.iter().position(|&b| b == b'{') else {
        return out;
    };
    let blank = |b: &u8| *b == b' ' || *b == b'\t';
    let mut rest = &line[open + 1..];
    loop {
        rest = rest.trim_ascii_start();
        let n = rest
            .iter()
            .take_while(|b| b.is_ascii_alphanumeric() || **b == b'_')
            .count();
        let name = &rest[..n];
        rest = &rest[n..];
        let skip = rest.iter().take_while(|b| blank(b)).count();
        rest = &rest[skip..];
        let Some(after_eq) = rest.strip_prefix(b"=") else {
            return out;
        };
        let Some(value) = after_eq.trim_ascii_start().strip_prefix(b"\"") else {
            return out;
        };
        // The value ends at the first quote not escaped.
        let mut j = 0;
        while j < value.len() && value[j] != b'"' {
            j += if value[j] == b'\\' { 2 } else { 1 };
        }
        if j == 0 && !name.is_empty() {
            out.push(String::from_utf8_lossy(name).into_owned());
        }
        rest = value.get(j + 1..).unwrap_or(b"").trim_ascii_start();
        match rest.split_first() {
            Some((b',', r)) => rest = r,
            _ => return out,
        }
    }
}

/// Reads the input into families, as Prometheus's text decoder groups it.
/// `empty_labels` holds, by line, the label names with empty values ([`decoder_check`]).
fn group(input: &[u8], empty_labels: &HashMap<usize, Vec<String>>) -> Result<Families, ParseError> {
    let mut fams = Families::default();
    let mut parser = Parser::new(input, Format::Text004);
    while let Some(entry) = parser.next() {
        let line = parser.line();
        let fail = |reason| ParseError {
            line,
            column: 1,
            reason,
        };
        match entry? {
            Entry::Help { family, text } => {
                // promtool reads a HELP line with empty text as no HELP line at all.
                if text.is_empty() {
                    continue;
                }
                let f = fams.family_for(family);
                if f.has_help {
                    return Err(fail(ParseErrorReason::SecondHelp {
                        family: f.name.clone(),
                    }));
                }
                f.has_help = true;
            }
            Entry::Type { family, kind } => {
                let f = fams.family_for(family);
                if f.kind.is_some() {
                    return Err(fail(ParseErrorReason::SecondType {
                        family: f.name.clone(),
                    }));
                }
                f.kind = Some(kind);
            }
            Entry::Sample(s) => {
                let name = s.labels.metric_name().unwrap_or("");
                let f = fams.family_for(name);
                let kind = *f.kind.get_or_insert(MetricType::Unknown);
                // Summaries and histograms keep `quantile`/`le` out of their labels
                // and merge lines with the same remaining labels into one metric.
                let special = match kind {
                    MetricType::Summary => Some("quantile"),
                    MetricType::Histogram => Some("le"),
                    _ => None,
                };
                let empty: &[String] = empty_labels.get(&line).map_or(&[], |v| v);
                if let Some(special) = special {
                    let value = s
                        .labels
                        .get(special)
                        .or_else(|| empty.iter().any(|n| n == special).then_some(""));
                    if let Some(v) = value
                        && parse_go_float(v).is_err()
                    {
                        return Err(fail(ParseErrorReason::InvalidLabelFloat {
                            label: special,
                            value: v.to_owned(),
                        }));
                    }
                    let key = (
                        s.labels.retain(|n| n != special && n != METRIC_NAME),
                        empty.to_vec(),
                    );
                    if !f.merged.insert(key) {
                        continue;
                    }
                }
                let names = s.labels.iter().map(|l| l.name);
                f.add_metric(names.chain(empty.iter().map(String::as_str)), special);
            }
            Entry::Unit { .. } | Entry::Eof => {}
        }
    }
    Ok(fams)
}

#[derive(Default)]
struct Families {
    list: Vec<Family>,
    by_name: HashMap<String, usize>,
}

impl Families {
    /// The family a HELP/TYPE/sample name belongs to: the one of that exact name, else
    /// the summary it is the `_sum`/`_count` of, else the histogram it is the
    /// `_sum`/`_count`/`_bucket` of, else a new family.
    fn family_for(&mut self, name: &str) -> &mut Family {
        let found = self.by_name.get(name).copied().or_else(|| {
            let parent = |suffixes: &[&str], kind: MetricType| {
                let base = suffixes.iter().find_map(|s| name.strip_suffix(s))?;
                let i = *self.by_name.get(base)?;
                (self.list[i].kind == Some(kind)).then_some(i)
            };
            parent(&["_count", "_sum"], MetricType::Summary)
                .or_else(|| parent(&["_count", "_sum", "_bucket"], MetricType::Histogram))
        });
        let i = match found {
            Some(i) => i,
            None => {
                self.by_name.insert(name.to_owned(), self.list.len());
                self.list.push(Family {
                    name: name.to_owned(),
                    ..Family::default()
                });
                self.list.len() - 1
            }
        };
        &mut self.list[i]
    }
}

#[derive(Default)]
struct Family {
    name: String,
    has_help: bool,
    /// `None` until a `# TYPE` line or the first sample (which makes it untyped).
    kind: Option<MetricType>,
    /// Metrics (label sets) seen.
    metrics: usize,
    /// Label sets of summary/histogram metrics, without `quantile`/`le`, with the
    /// names of empty-valued labels.
    merged: HashSet<(Labels, Vec<String>)>,
    /// Per-metric label findings, one per (metric, label) occurrence as promlint counts.
    camel_labels: usize,
    le_labels: usize,
    quantile_labels: usize,
}

impl Family {
    /// Counts one metric with these label names (`__name__` and the kind's special
    /// label are skipped).
    fn add_metric<'n>(&mut self, names: impl Iterator<Item = &'n str>, special: Option<&str>) {
        self.metrics += 1;
        for name in names {
            if name == METRIC_NAME || Some(name) == special {
                continue;
            }
            if is_camel_case(name) {
                self.camel_labels += 1;
            }
            if name == "le" {
                self.le_labels += 1; // only reached when not a histogram
            }
            if name == "quantile" {
                self.quantile_labels += 1; // only reached when not a summary
            }
        }
    }

    fn check(&self, out: &mut Vec<Problem>) {
        let mut add = |text: &str| {
            out.push(Problem {
                metric: self.name.clone(),
                text: text.to_owned(),
            })
        };
        let name = self.name.as_str();
        let kind = self.kind.unwrap_or(MetricType::Unknown);
        let untyped = kind == MetricType::Unknown;
        let is = |k| kind == k;

        // help
        if !self.has_help {
            add("no help text");
        }
        // units
        if let Some((unit, base)) = non_base_unit(name) {
            add(&format!("use base unit {base:?} instead of {unit:?}"));
        }
        // counter naming
        let total = name.ends_with("_total");
        if is(MetricType::Counter) && !total {
            add("counter metrics should have \"_total\" suffix");
        } else if !untyped && !is(MetricType::Counter) && total {
            add("non-counter metrics should not have \"_total\" suffix");
        }
        // reserved histogram/summary suffixes and labels
        if !untyped {
            let hist = is(MetricType::Histogram);
            let summary = is(MetricType::Summary);
            if !hist && name.ends_with("_bucket") {
                add("non-histogram metrics should not have \"_bucket\" suffix");
            }
            if !hist && !summary && name.ends_with("_count") {
                add("non-histogram and non-summary metrics should not have \"_count\" suffix");
            }
            if !hist && !summary && name.ends_with("_sum") {
                add("non-histogram and non-summary metrics should not have \"_sum\" suffix");
            }
            for _ in 0..self.le_labels {
                add("non-histogram metrics should not have \"le\" label");
            }
            for _ in 0..self.quantile_labels {
                add("non-summary metrics should not have \"quantile\" label");
            }
        }
        // type in name (whatever the family's own type, untyped included)
        let lower = name.to_ascii_lowercase();
        for t in [
            "counter",
            "gauge",
            "summary",
            "histogram",
            "gauge_histogram",
        ] {
            if has_word(&lower, t) {
                add(&format!("metric name should not include type '{t}'"));
            }
        }
        // reserved characters
        if name.contains(':') {
            add("metric names should not contain ':'");
        }
        // camelCase
        if is_camel_case(name) {
            add("metric names should be written in 'snake_case' not 'camelCase'");
        }
        for _ in 0..self.camel_labels {
            add("label names should be written in 'snake_case' not 'camelCase'");
        }
        // abbreviated units
        for a in UNIT_ABBREVIATIONS {
            if has_word(&lower, a) {
                add("metric names should not contain abbreviated units");
            }
        }
    }
}

/// Whether `name` contains `_word_` or ends with `_word`.
fn has_word(name: &str, word: &str) -> bool {
    name.match_indices(word).any(|(i, _)| {
        let before = i.checked_sub(1).and_then(|j| name.as_bytes().get(j));
        let after = name.as_bytes().get(i + word.len());
        before == Some(&b'_') && matches!(after, None | Some(b'_'))
    })
}

/// A lowercase ASCII letter directly followed by an uppercase one.
fn is_camel_case(s: &str) -> bool {
    s.as_bytes()
        .windows(2)
        .any(|w| w[0].is_ascii_lowercase() && w[1].is_ascii_uppercase())
}

/// Units promlint knows, with the base unit it wants instead.
const UNITS: &[(&str, &str)] = &[
    // Base units.
    ("amperes", "amperes"),
    ("bytes", "bytes"),
    ("celsius", "celsius"),
    ("grams", "grams"),
    ("joules", "joules"),
    ("kelvin", "kelvin"),
    ("meters", "meters"),
    ("metres", "metres"),
    ("seconds", "seconds"),
    ("volts", "volts"),
    // Others.
    ("minutes", "seconds"),
    ("hours", "seconds"),
    ("days", "seconds"),
    ("weeks", "seconds"),
    ("kelvins", "kelvin"),
    ("fahrenheit", "celsius"),
    ("rankine", "celsius"),
    ("inches", "meters"),
    ("yards", "meters"),
    ("miles", "meters"),
    ("bits", "bytes"),
    ("calories", "joules"),
    ("pounds", "grams"),
    ("ounces", "grams"),
];

const UNIT_PREFIXES: &[&str] = &[
    "pico", "nano", "micro", "milli", "centi", "deci", "deca", "hecto", "kilo", "kibi", "mega",
    "mibi", "giga", "gibi", "tera", "tebi", "peta", "pebi",
];

const UNIT_ABBREVIATIONS: &[&str] = &[
    "s", "ms", "us", "ns", "sec", "b", "kb", "mb", "gb", "tb", "pb", "m", "h", "d",
];

/// The first `_`-separated word of `name` that is a known unit other than a base unit,
/// with or without a prefix (`milliseconds`, `kilobytes`), and the base unit wanted
/// instead. Case-sensitive, as promlint.
///
/// promlint looks for a unit in an order that changes from run to run (a Go map), so
/// for a name with several unit words (`kelvins_bytes`) promtool reports a problem only
/// sometimes; this always reports the first non-base one.
fn non_base_unit(name: &str) -> Option<(&str, &'static str)> {
    name.split('_').find_map(|word| {
        UNITS.iter().find_map(|&(unit, base)| {
            let prefix = word.strip_suffix(unit)?;
            let known = prefix.is_empty() || UNIT_PREFIXES.contains(&prefix);
            (known && word != base).then_some((word, base))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_and_units() {
        assert!(has_word("a_s", "s"));
        assert!(has_word("a_s_b", "s"));
        assert!(!has_word("a_sb", "s"));
        assert!(!has_word("s_a", "s"));
        assert!(has_word("x_ms_ms", "ms"));
        assert_eq!(
            non_base_unit("a_milliseconds_total"),
            Some(("milliseconds", "seconds"))
        );
        assert_eq!(non_base_unit("a_thermometers"), None);
        assert_eq!(non_base_unit("a_kelvins"), Some(("kelvins", "kelvin")));
        assert_eq!(non_base_unit("a_bytes"), None);
        assert_eq!(
            non_base_unit("bytes_per_kilobytes"),
            Some(("kilobytes", "bytes"))
        );
        assert!(is_camel_case("fooBar") && !is_camel_case("Foo_Bar"));
    }
}
