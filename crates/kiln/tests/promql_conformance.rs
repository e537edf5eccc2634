//! Prometheus's own PromQL test scripts, run through `kiln promqltest` against the real
//! TSDB head. The scripts are read from `shared/promql-conformance/` beside the
//! repository (never copied into it); without that directory (decided when the test is
//! built, see build.rs) the test is reported as ignored with that reason.

mod common;

use std::path::PathBuf;

#[test]
#[cfg_attr(
    not(kiln_conformance),
    ignore = "conformance: needs Prometheus's PromQL test scripts in ../shared/promql-conformance beside the repository"
)]
fn prometheus_promql_test_scripts_pass() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/promql-conformance");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "test"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 10,
        "expected Prometheus's test scripts in {}",
        dir.display()
    );
    let args: Vec<&str> = std::iter::once("promqltest")
        .chain(files.iter().filter_map(|p| p.to_str()))
        .collect();
    let out = common::kiln(&args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary = stdout.lines().last().unwrap_or("").to_owned();
    assert!(
        out.status.success() && summary.contains(" 0 failed"),
        "kiln promqltest failed ({summary}):\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let passed: usize = summary
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(passed > 650, "too few evals ran: {summary}");
}
