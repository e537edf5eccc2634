//! `kiln test rules` and `kiln check rules`: the repository's rule pack passes its unit
//! tests, and (interop tests, built with `KILN_INTEROP=1`) promtool agrees on every
//! verdict and prints the same failure report.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{kiln, promtool, require_peer};

fn repo_rule_tests() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../rules/tests");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 3,
        "rule pack tests missing in {}",
        dir.display()
    );
    files
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn args<'a>(cmd: &'a [&'a str], files: &'a [PathBuf]) -> Vec<&'a str> {
    let mut v: Vec<&str> = cmd.to_vec();
    v.extend(files.iter().filter_map(|f| f.to_str()));
    v
}

/// The rule pack's rule files (`rules/*.yml`).
fn repo_rule_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../rules");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("rules dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yml"))
        .collect();
    files.sort();
    files
}

#[test]
fn rule_pack_unit_tests_pass() {
    let files = repo_rule_tests();
    let out = kiln(&args(&["test", "rules"], &files));
    let report = text(&out);
    assert!(out.status.success(), "{report}");
    assert_eq!(report.matches("  SUCCESS").count(), files.len(), "{report}");
}

#[test]
#[cfg_attr(
    not(kiln_interop),
    ignore = "interop: needs KILN_INTEROP=1 and promtool from Debian's prometheus (scripts/test installs it)"
)]
fn promtool_passes_the_rule_pack_unit_tests() {
    require_peer("promtool", "prometheus");
    let out = promtool(&args(&["test", "rules"], &repo_rule_tests()));
    assert!(out.status.success(), "promtool: {}", text(&out));
}

#[test]
fn rule_pack_files_check() {
    let out = kiln(&args(&["check", "rules"], &repo_rule_files()));
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("SUCCESS: 13 rules found"),
        "{}",
        text(&out)
    );
}

#[test]
#[cfg_attr(
    not(kiln_interop),
    ignore = "interop: needs KILN_INTEROP=1 and promtool from Debian's prometheus (scripts/test installs it)"
)]
fn promtool_checks_the_rule_pack_files() {
    require_peer("promtool", "prometheus");
    let out = promtool(&args(&["check", "rules"], &repo_rule_files()));
    assert!(out.status.success(), "promtool: {}", text(&out));
}

const RULES: &str = r#"
groups:
  - name: example
    rules:
      - record: job:up:sum
        expr: sum by (job) (up)
      - alert: InstanceDown
        expr: up == 0
        for: 5m
        labels:
          severity: page
        annotations:
          summary: "Instance {{ $labels.instance }} down"
"#;

/// A test file with two deliberate mistakes: a wrong value and a wrong annotation.
const FAILING_TEST: &str = r#"
rule_files: [rules.yml]
evaluation_interval: 1m
tests:
  - name: wrong expectations
    interval: 1m
    input_series:
      - series: 'up{job="api", instance="a:1"}'
        values: '0x15'
      - series: 'up{job="api", instance="b:1"}'
        values: '1x15'
    promql_expr_test:
      - expr: job:up:sum
        eval_time: 2m
        exp_samples:
          - labels: 'job:up:sum{job="api"}'
            value: 2
    alert_rule_test:
      - eval_time: 10m
        alertname: InstanceDown
        exp_alerts:
          - exp_labels: {severity: page, instance: "a:1", job: api}
            exp_annotations: {summary: "Instance b:1 down"}
"#;

/// Writes [`RULES`] and [`FAILING_TEST`] into `dir`; returns the test file's path.
fn write_failing_test(dir: &Path) -> String {
    std::fs::write(dir.join("rules.yml"), RULES).expect("write");
    let test = dir.join("test.yml");
    std::fs::write(&test, FAILING_TEST).expect("write");
    test.to_str().expect("utf-8 path").to_owned()
}

#[test]
fn failing_tests_fail_with_promtools_report() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_failing_test(dir.path());
    let out = kiln(&["test", "rules", &path]);
    let report = text(&out);
    assert_eq!(out.status.code(), Some(1), "{report}");
    assert!(report.contains("  FAILED:"), "{report}");
    assert!(
        report.contains(r#"exp: {__name__="job:up:sum", job="api"} 2E+00"#)
            && report.contains(r#"got: {__name__="job:up:sum", job="api"} 1E+00"#),
        "{report}"
    );
    assert!(
        report.contains("alertname: InstanceDown, time: 10m"),
        "{report}"
    );
    assert!(
        report.contains(r#"Annotations:{summary="Instance a:1 down"}"#),
        "{report}"
    );
}

#[test]
#[cfg_attr(
    not(kiln_interop),
    ignore = "interop: needs KILN_INTEROP=1 and promtool from Debian's prometheus (scripts/test installs it)"
)]
fn promtool_prints_the_same_failure_report() {
    require_peer("promtool", "prometheus");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_failing_test(dir.path());
    let report = text(&kiln(&["test", "rules", &path]));
    let p = promtool(&["test", "rules", &path]);
    assert_eq!(p.status.code(), Some(1), "{}", text(&p));
    // promtool prints the same failure lines (to stderr).
    let lines = |s: &str| {
        let mut v: Vec<String> = s
            .lines()
            .map(str::trim_end)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        lines(&report),
        lines(&text(&p)),
        "kiln:\n{report}\npromtool:\n{}",
        text(&p)
    );
}

/// Rule files that promtool 2.42 and Kiln both reject.
const BAD_RULE_FILES: &[&str] = &[
    "groups:\n  - name: g\n    rules:\n      - record: x\n        expr: sum(\n",
    "groups:\n  - name: g\n    rules:\n      - record: x\n        alert: y\n        expr: up\n",
    "groups:\n  - name: g\n    rules:\n      - expr: up\n",
    "groups:\n  - name: g\n    rules:\n      - record: x\n        expr: up\n        for: 1m\n",
    "groups:\n  - name: g\n    rulez: []\n",
    "groups:\n  - name: g\n  - name: g\n",
    "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up\n        annotations:\n          s: '{{ $labels.x '\n",
    "groups:\n  - name: g\n    rules:\n      - record: x\n        expr: up\n        labels:\n          __name__: y\n",
];

/// Writes each of [`BAD_RULE_FILES`] into `dir`; returns (content, path) pairs.
fn write_bad_rule_files(dir: &Path) -> Vec<(&'static str, String)> {
    BAD_RULE_FILES
        .iter()
        .enumerate()
        .map(|(i, bad)| {
            let file = dir.join(format!("bad{i}.yml"));
            std::fs::write(&file, bad).expect("write");
            (*bad, file.to_str().expect("utf-8").to_owned())
        })
        .collect()
}

#[test]
fn check_rules_accepts_good_files_and_rejects_bad_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = dir.path().join("good.yml");
    std::fs::write(&good, RULES).expect("write");
    let good_path = good.to_str().expect("utf-8");
    let out = kiln(&["check", "rules", good_path]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("SUCCESS: 2 rules found"),
        "{}",
        text(&out)
    );
    for (bad, path) in write_bad_rule_files(dir.path()) {
        let out = kiln(&["check", "rules", &path]);
        assert_eq!(out.status.code(), Some(1), "{bad:?}: {}", text(&out));
        assert!(text(&out).contains("FAILED"), "{bad:?}: {}", text(&out));
    }
}

#[test]
#[cfg_attr(
    not(kiln_interop),
    ignore = "interop: needs KILN_INTEROP=1 and promtool from Debian's prometheus (scripts/test installs it)"
)]
fn promtool_rejects_the_same_bad_rule_files() {
    require_peer("promtool", "prometheus");
    let dir = tempfile::tempdir().expect("tempdir");
    for (bad, path) in write_bad_rule_files(dir.path()) {
        let p = promtool(&["check", "rules", &path]);
        assert_eq!(
            p.status.code(),
            Some(1),
            "promtool accepted {bad:?}: {}",
            text(&p)
        );
    }
}
