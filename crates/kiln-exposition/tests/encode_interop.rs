//! Kiln's OpenMetrics encoder read by the real thing: a document encoded here is
//! backfilled with `promtool tsdb create-blocks-from openmetrics` (Prometheus 2.42's
//! parser) and dumped; every sample must come back with the same labels, value and
//! millisecond timestamp, including the timestamps whose nearest decimal would be
//! truncated to the wrong millisecond. Runs when `KILN_INTEROP=1`.

#![allow(clippy::unwrap_used)]

use std::process::Command;

use kiln_exposition::{
    MetricFamily, MetricType, encode_openmetrics_eof, encode_openmetrics_family_header,
    encode_openmetrics_sample,
};
use kiln_model::{Labels, format_go_float};

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
fn promtool_reads_encoded_openmetrics() {
    if std::env::var("KILN_INTEROP").as_deref() != Ok("1") {
        eprintln!(
            "SKIPPED encode_interop: set KILN_INTEROP=1 (and install promtool) to backfill Kiln's OpenMetrics with promtool"
        );
        return;
    }
    let (doc, want) = document();
    let text = String::from_utf8(doc.clone()).unwrap();
    assert!(
        text.lines()
            .any(|l| l.rsplit(' ').next().is_some_and(|ts| ts.len() > 14)),
        "no timestamp needed the float nudge; the test lost its point"
    );
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.om");
    std::fs::write(&input, &doc).unwrap();
    let out = dir.path().join("out");
    let created = Command::new("promtool")
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&input)
        .arg(&out)
        .output()
        .unwrap();
    assert!(created.status.success(), "{created:?}");
    std::fs::create_dir_all(out.join("wal")).unwrap();
    let dump = Command::new("promtool")
        .args(["tsdb", "dump"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(dump.status.success(), "{dump:?}");
    let mut got: Vec<String> = String::from_utf8(dump.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
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
