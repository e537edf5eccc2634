//! Kiln's OpenMetrics encoder and parser against promtool 2.42's (interop tests, built
//! with `KILN_INTEROP=1`), through `promtool tsdb create-blocks-from openmetrics` and
//! `promtool tsdb dump`:
//! - a document Kiln encodes is backfilled by promtool, and every sample comes back with
//!   the same labels, value and millisecond timestamp, including the timestamps whose
//!   nearest decimal would be truncated to the wrong millisecond;
//! - for each document of a table, Kiln's parser accepts or rejects it as promtool does,
//!   and reads the same samples.

mod common;

use std::path::Path;

use kiln_exposition::{
    Entry, Format, MetricFamily, MetricType, Parser, encode_openmetrics_eof,
    encode_openmetrics_family_header, encode_openmetrics_sample,
};
use kiln_model::{Labels, format_go_float};

use common::{promtool, promtool_dump, require_peer};

/// promtool's backfill of the OpenMetrics file `input` into `out`: its dump lines, or
/// `None` when promtool rejects the file.
fn promtool_backfill(input: &Path, out: &Path) -> Option<Vec<String>> {
    let created = promtool(&[
        "tsdb",
        "create-blocks-from",
        "openmetrics",
        input.to_str().expect("utf-8 path"),
        out.to_str().expect("utf-8 path"),
    ]);
    if !created.status.success() {
        return None;
    }
    Some(promtool_dump(out, &[]).lines().map(str::to_owned).collect())
}

/// Small timestamps: at today's magnitudes (around 2^40 ms) the nearest float64 of
/// any millisecond always reads back exactly, so only small ones exercise the nudge.
/// (Backfill walks every 2h window between the oldest and newest sample, so the test
/// keeps to one window.)
const START_MS: i64 = 1_000;

/// The document and the `promtool tsdb dump` lines it must produce.
fn document() -> (Vec<u8>, Vec<String>) {
    let mut out = Vec::new();
    let mut want = Vec::new();
    let values = [
        0.0,
        -0.0,
        1.0,
        -1.5,
        1e6,
        1.25e-7,
        f64::INFINITY,
        f64::NAN,
        0.1,
        299.999,
    ];
    let families = [
        ("gpu_temp_celsius", MetricType::Gauge, "gpu_temp_celsius"),
        (
            "train_steps_total",
            MetricType::Counter,
            "train_steps_total",
        ),
        ("loss", MetricType::Unknown, "loss"),
    ];
    for (fam, kind, series) in families {
        encode_openmetrics_family_header(
            &mut out,
            &MetricFamily {
                name: fam,
                help: Some("help with \\ and \" and\nnewline"),
                kind,
                unit: (kind == MetricType::Gauge).then_some("celsius"),
            },
        );
        for (i, path) in ["C:\\x", "a\"b", "line\nbreak", "ü"].iter().enumerate() {
            let labels = Labels::from_pairs(&[("__name__", series), ("path", path)]);
            for k in 0..400i64 {
                let ts = START_MS + k * 1_001 + i as i64 * 3 + 5;
                let v = values[(k as usize + i) % values.len()];
                encode_openmetrics_sample(&mut out, kind, &labels, v, Some(ts));
                let v = if v.is_nan() { f64::NAN } else { v + 0.0 };
                want.push(format!("{labels} {} {ts}", format_go_float(v)));
            }
        }
    }
    encode_openmetrics_eof(&mut out);
    want.sort();
    (out, want)
}

#[test]
#[cfg_attr(
    not(kiln_interop),
    ignore = "interop: needs KILN_INTEROP=1 and promtool from Debian's prometheus (scripts/test installs it)"
)]
fn promtool_reads_encoded_openmetrics() {
    require_peer("promtool", "prometheus");
    let (doc, want) = document();
    let text = String::from_utf8(doc.clone()).expect("utf-8 document");
    assert!(
        text.lines()
            .any(|l| l.rsplit(' ').next().is_some_and(|ts| ts.len() > 14)),
        "no timestamp needed the float nudge; the test lost its point"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in.om");
    std::fs::write(&input, &doc).expect("write document");
    let mut got = promtool_backfill(&input, &dir.path().join("out"))
        .unwrap_or_else(|| panic!("promtool rejected Kiln's OpenMetrics:\n{text}"));
    got.sort();
    let diff: Vec<_> = want
        .iter()
        .zip(&got)
        .filter(|(w, g)| w != g)
        .take(5)
        .collect();
    assert!(
        diff.is_empty() && got.len() == want.len(),
        "{} vs {} lines; first differences (want, got): {diff:#?}",
        want.len(),
        got.len()
    );
}

/// Documents whose samples all carry timestamps (promtool's backfill requires them),
/// in time order per series (it drops out-of-order samples).
const DOCS: &[&str] = &[
    "# TYPE m gauge\nm 1 1\nm 3 1.005\nm 2 2.0019\n# EOF\n",
    "m{a=\"x\\qy\",b=\"x\\ny\\\\z\\\"w\"} 1 1\n# EOF\n",
    "m 1e-3 1e-3\nm Inf 1\nm .5 1.9\nm inf 2\nm -Inf 3\nm NaN 4\nm -0 5\nm 1 6.0000009\n# EOF\n",
    "m 1 1\n# EOF",
    "# HELP m some \\\"help\\\"\n# TYPE m_seconds gauge\n# UNIT m_seconds seconds\nm_seconds 1 1\n# EOF\n",
    "# TYPE c counter\nc_total 1 1 # {trace_id=\"a\"} 1 0.5\nc_total 2 2 # {} 2\n# EOF\n",
    "# TYPE h histogram\nh_bucket{le=\"1\"} 1 1 # {a=\"b\"} 1 0.5\nh_count 1 1\nh_sum 1 1\n# EOF\n",
    "# TYPE m gauge\n# TYPE m gauge\nm 1 1\n# EOF\n",
    "m{} 1 1\nns:m 2 1\n# EOF\n",
    // Rejected by both:
    "# TYPE m gauge\n# foo bar\nm 1 1\n# EOF\n",
    "# TYPE m gauge\n\nm 1 1\n# EOF\n",
    "m 1 1\n",
    "m 1 1\n# EOF\nm 2 2\n",
    "m 1 1\n# EOF\n\n",
    "# TYPE m gauge\nm 1 1 # {a=\"b\"} 1\n# EOF\n",
    "# TYPE m counter\nm_created 1 1 # {a=\"b\"} 1\n# EOF\n",
    "m{a=\"x\",a=\"y\"} 1 1\n# EOF\n",
    "m{a=\"x\",} 1 1\n# EOF\n",
    "m 1  1\n# EOF\n",
    "m\t1 1\n# EOF\n",
    "m +nan 1\n# EOF\n",
    "m 1e400 1\n# EOF\n",
    "m 0x10 1\n# EOF\n",
    "m 1_0 1\n# EOF\n",
    "m 1 NaN\n# EOF\n",
    "# UNIT m seconds\nm 1 1\n# EOF\n",
    "# TYPE m untyped\nm 1 1\n# EOF\n",
    "# TYPE m gauge \nm 1 1\n# EOF\n",
    "# HELP m\nm 1 1\n# EOF\n",
    "m{a=\"x\"}1 1\n# EOF\n",
    "m 1 1 \n# EOF\n",
    "m{a=\"1\"} 1 1\r\n# EOF\n",
    "# EOF \n",
    " m 1 1\n# EOF\n",
];

/// Our reading of a document in `promtool tsdb dump` form, or `None` if rejected.
fn ours(doc: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    for e in Parser::new(doc.as_bytes(), Format::OpenMetrics) {
        if let Entry::Sample(s) = e.ok()? {
            out.push(format!(
                "{} {} {}",
                s.labels,
                format_go_float(s.value),
                s.timestamp_ms?
            ));
        }
    }
    // promtool dump sorts by series, then time.
    out.sort_by_key(|l| {
        let (series, rest) = l.rsplit_once(' ').expect("value and timestamp");
        let (series, _) = series.rsplit_once(' ').expect("series and value");
        (series.to_owned(), rest.parse::<i64>().expect("timestamp"))
    });
    Some(out)
}

/// promtool's reading of a document in `promtool tsdb dump` form, or `None` if rejected.
fn promtools(doc: &str) -> Option<Vec<String>> {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in.om");
    std::fs::write(&input, doc).expect("write document");
    promtool_backfill(&input, &dir.path().join("out"))
}

#[test]
#[cfg_attr(
    not(kiln_interop),
    ignore = "interop: needs KILN_INTEROP=1 and promtool from Debian's prometheus (scripts/test installs it)"
)]
fn openmetrics_parser_matches_promtool() {
    require_peer("promtool", "prometheus");
    let mut bad = Vec::new();
    for doc in DOCS {
        let (want, got) = (promtools(doc), ours(doc));
        if want != got {
            bad.push(format!(
                "{doc:?}:\n  promtool: {want:?}\n  kiln:     {got:?}"
            ));
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}
