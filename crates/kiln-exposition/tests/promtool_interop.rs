//! Compares the OpenMetrics parser with real `promtool tsdb create-blocks-from
//! openmetrics` (accept or reject, and the stored samples). Runs when `KILN_INTEROP=1`
//! and `promtool` is on PATH; says so when skipped.

#![allow(clippy::unwrap_used)]

use std::process::Command;

use kiln_exposition::{Entry, Format, Parser};
use kiln_model::format_go_float;

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
        let (series, rest) = l.rsplit_once(' ').unwrap();
        let (series, _) = series.rsplit_once(' ').unwrap();
        (series.to_owned(), rest.parse::<i64>().unwrap())
    });
    Some(out)
}

fn promtool(doc: &str) -> Option<Vec<String>> {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.om");
    std::fs::write(&input, doc).unwrap();
    let out = dir.path().join("out");
    let ok = Command::new("promtool")
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&input)
        .arg(&out)
        .output()
        .unwrap()
        .status
        .success();
    if !ok {
        return None;
    }
    std::fs::create_dir_all(out.join("wal")).unwrap();
    let dump = Command::new("promtool")
        .args(["tsdb", "dump"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(dump.status.success());
    Some(
        String::from_utf8(dump.stdout)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect(),
    )
}

#[test]
fn openmetrics_matches_promtool() {
    if std::env::var("KILN_INTEROP").as_deref() != Ok("1") {
        eprintln!("skipped: set KILN_INTEROP=1 (and install promtool) to compare with promtool");
        return;
    }
    let mut bad = Vec::new();
    for doc in DOCS {
        let (want, got) = (promtool(doc), ours(doc));
        if want != got {
            bad.push(format!(
                "{doc:?}:\n  promtool: {want:?}\n  kiln:     {got:?}"
            ));
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}
