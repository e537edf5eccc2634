//! `kiln check metrics` on its own, and against promtool 2.42's `check metrics`
//! (an interop test, built with `KILN_INTEROP=1`): same exit code, same problem lines (compared as sorted lists,
//! duplicates counted), the same line for a parse error.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::require_peer;
use kiln_exposition::{MetricFamily, MetricType, encode_text_family_header, encode_text_sample};
use kiln_model::Labels;

fn run_with_stdin(mut cmd: Command, input: &[u8]) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input)
        .expect("write stdin");
    child.wait_with_output().expect("wait")
}

fn kiln_check(input: &[u8]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kiln"));
    cmd.args(["check", "metrics"]);
    run_with_stdin(cmd, input)
}

fn promtool_check(input: &[u8]) -> Output {
    let mut cmd = Command::new("promtool");
    cmd.args(["check", "metrics"]);
    run_with_stdin(cmd, input)
}

fn lines(out: &Output) -> Vec<String> {
    let mut v: Vec<String> = String::from_utf8_lossy(&out.stderr)
        .lines()
        .map(str::to_owned)
        .collect();
    v.sort();
    v
}

#[test]
fn exit_codes_and_output() {
    let clean = b"# HELP up Whether the target is up.\n# TYPE up gauge\nup 1\n";
    let out = kiln_check(clean);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(out.stderr.is_empty() && out.stdout.is_empty(), "{out:?}");

    let out = kiln_check(b"# TYPE requests counter\nrequests 1\n");
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert_eq!(
        lines(&out),
        [
            "requests counter metrics should have \"_total\" suffix",
            "requests no help text"
        ]
    );

    let out = kiln_check(b"# HELP m x\nm 1\nm{ 2\n");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("error while linting: line 3, column 4: "),
        "{err}"
    );
}

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../kiln-exposition/tests/fixtures/lint")
}

/// An exposition written by Kiln's own text encoder, with escapes and special values,
/// and names that trip several rules.
fn encoded_document() -> Vec<u8> {
    let mut out = Vec::new();
    let fams: &[(&str, MetricType, &[&str])] = &[
        ("http_requests_total", MetricType::Counter, &[""]),
        ("gpu_memory_used_bytes", MetricType::Gauge, &[""]),
        (
            "rpc_duration_seconds",
            MetricType::Histogram,
            &["_bucket", "_sum", "_count"],
        ),
        (
            "rpc_latency_milliseconds",
            MetricType::Summary,
            &["", "_sum", "_count"],
        ),
        ("jobRuns", MetricType::Counter, &[""]),
        ("cache_size_kb", MetricType::Unknown, &[""]),
    ];
    for (i, (name, kind, suffixes)) in fams.iter().enumerate() {
        let help = format!("Help for {name}: a \\ backslash\nand a \"quote\".");
        encode_text_family_header(
            &mut out,
            &MetricFamily {
                name,
                help: (i % 3 != 2).then_some(help.as_str()),
                kind: *kind,
                unit: None,
            },
        );
        for suffix in *suffixes {
            let series = format!("{name}{suffix}");
            let values = [0.0, 1.0, -1.5, 1e6, 1.25e-7, f64::INFINITY, f64::NAN];
            for (j, v) in values.iter().enumerate() {
                let mut pairs = vec![
                    ("__name__", series.clone()),
                    ("path", format!("C:\\dir\n\"{j}\"")),
                ];
                match (*kind, *suffix) {
                    (MetricType::Histogram, "_bucket") => {
                        pairs.push(("le", ["0.1", "1", "+Inf"][j % 3].to_owned()))
                    }
                    (MetricType::Summary, "") => {
                        pairs.push(("quantile", ["0.5", "0.99"][j % 2].to_owned()))
                    }
                    _ => pairs.push(("podName", format!("p{j}"))),
                }
                let labels = Labels::from_pairs(&pairs);
                let ts = (j % 2 == 0).then_some(1_700_000_000_000 + j as i64);
                encode_text_sample(&mut out, &labels, *v, ts);
            }
        }
    }
    out
}

#[test]
#[cfg_attr(
    not(kiln_interop),
    ignore = "interop: needs KILN_INTEROP=1 and promtool from Debian's prometheus (scripts/test installs it)"
)]
fn matches_promtool() {
    require_peer("promtool", "prometheus");
    let mut inputs: Vec<(String, Vec<u8>)> = Vec::new();
    for e in std::fs::read_dir(fixture_dir()).expect("fixture dir") {
        let path = e.expect("entry").path();
        if path.extension().is_some_and(|x| x == "prom") {
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
            inputs.push((
                name.unwrap_or_default(),
                std::fs::read(&path).expect("read fixture"),
            ));
        }
    }
    inputs.sort();
    assert!(inputs.len() >= 20, "fixtures missing");
    inputs.push(("kiln-encoded".into(), encoded_document()));
    inputs.push((
        "examples/gpu-fleet.om as text".into(),
        b"# HELP DCGM_FI_DEV_GPU_TEMP GPU temperature (in C).\n# TYPE DCGM_FI_DEV_GPU_TEMP gauge\nDCGM_FI_DEV_GPU_TEMP{gpu=\"0\",UUID=\"GPU-1\",modelName=\"H100\"} 41\n".to_vec(),
    ));

    let mut bad = Vec::new();
    for (name, input) in &inputs {
        let (want, got) = (promtool_check(input), kiln_check(input));
        let (wc, gc) = (want.status.code(), got.status.code());
        if name == "kiln-encoded" && wc != Some(3) {
            // promtool must read Kiln's encoding (and find the planted problems).
            bad.push(format!("{name}: promtool {want:?}"));
        }
        if wc != gc {
            bad.push(format!(
                "{name}: exit promtool {wc:?}, kiln {gc:?}\n  promtool: {:?}\n  kiln: {:?}",
                lines(&want),
                lines(&got)
            ));
        } else if wc == Some(1) {
            // Messages differ; the line must not.
            let p = String::from_utf8_lossy(&want.stderr).into_owned();
            let k = String::from_utf8_lossy(&got.stderr).into_owned();
            let pline = p.split("in line ").nth(1).and_then(|r| r.split(':').next());
            let kline = k.split("line ").nth(1).and_then(|r| r.split(',').next());
            if pline.is_none() || pline != kline {
                bad.push(format!(
                    "{name}: error lines differ\n  promtool: {p}\n  kiln: {k}"
                ));
            }
        } else if lines(&want) != lines(&got) {
            bad.push(format!(
                "{name}:\n  promtool: {:#?}\n  kiln: {:#?}",
                lines(&want),
                lines(&got)
            ));
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n\n"));
}
