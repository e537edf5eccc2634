//! `kiln tsdb create-blocks-from rules`: what it says when it cannot do its job, and
//! (with KILN_INTEROP=1) that it records the same series and samples as promtool 2.42's
//! `create-blocks-from rules` run against the same server.

mod common;

use std::path::{Path, PathBuf};

use common::*;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

const RECORDING: &str = "groups:
  - name: g
    rules:
      - record: job:up:sum
        expr: sum by (job) (up)
";

const ALERTS_ONLY: &str = "groups:
  - name: g
    rules:
      - alert: Down
        expr: up == 0
";

const BROKEN: &str = "groups:
  - name: g
    rules:
      - record: job:up:sum
        expr: sum by (job) (up
";

#[test]
fn failures_are_explained_in_the_users_terms() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = |name: &str, text: &str| {
        let p = tmp.path().join(name);
        std::fs::write(&p, text).expect("write rule file");
        p.display().to_string()
    };
    let recording = file("recording.yml", RECORDING);
    let alerts = file("alerts.yml", ALERTS_ONLY);
    let broken = file("broken.yml", BROKEN);
    let http_config = file(
        "http.yml",
        "basic_auth:\n  username: kiln\n  username_file: user.txt\n",
    );
    let out_dir = tmp.path().join("out").display().to_string();
    let nobody = format!("http://127.0.0.1:{}", free_port());
    let failing = format!(
        "http://127.0.0.1:{}",
        serve_fixed(
            "application/json",
            r#"{"status":"error","errorType":"execution","error":"query timed out in expression evaluation"}"#
        )
    );

    /// Runs the command with `args` after `--output-dir`; checks the exit code and that
    /// stderr holds each of `want`.
    fn check(out_dir: &str, args: &[&str], code: i32, want: &[&str]) {
        let mut all = vec![
            "tsdb",
            "create-blocks-from",
            "rules",
            "--output-dir",
            out_dir,
        ];
        all.extend_from_slice(args);
        let out = kiln(&all);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
        for w in want {
            assert!(stderr.contains(w), "{args:?}: no {w:?} in {stderr}");
        }
    }

    let hour = [
        "--start",
        "2026-01-01T00:00:00Z",
        "--end",
        "2026-01-01T01:00:00Z",
    ];
    let cases: Vec<(Vec<&str>, i32, Vec<String>)> = vec![
        (
            vec!["--start", "yesterday", &recording],
            1,
            vec!["error: --start: cannot parse \"yesterday\" as a time: give RFC 3339 (2026-01-01T00:00:00Z) or Unix seconds\n".into()],
        ),
        (
            vec!["--start", "2026-01-01T02:00:00Z", "--end", "2026-01-01T01:00:00Z", &recording],
            1,
            vec!["--start (2026-01-01T02:00:00Z) is not before --end (2026-01-01T01:00:00Z)".into()],
        ),
        (
            [&hour[..], &["--url", &nobody, &broken]].concat(),
            1,
            vec![format!("{broken}:5:15: group \"g\", rule 1, \"job:up:sum\": could not parse expression")],
        ),
        (
            [&hour[..], &["--http.config.file", &http_config, &recording]].concat(),
            1,
            vec![format!("error: {http_config}:2:3: at most one of basic_auth username & username_file must be configured")],
        ),
        (
            [&hour[..], &["--url", &nobody, &recording]].concat(),
            1,
            vec![format!("error: cannot reach the Prometheus API at {nobody}/api/v1/query_range: ")],
        ),
        (
            [&hour[..], &["--url", &failing, &recording]].concat(),
            1,
            vec![
                format!("error: rule job:up:sum (group \"g\" in {recording}:4): the server answered HTTP 200, execution: query timed out in expression evaluation"),
                "error: 1 of 1 recording rules failed".into(),
            ],
        ),
        (
            [&hour[..], &["--url", &failing, &alerts]].concat(),
            0,
            vec![format!("warning: no recording rules in {alerts}: nothing to backfill (alerting rules are not backfilled)")],
        ),
    ];
    for (args, code, want) in &cases {
        let want: Vec<&str> = want.iter().map(String::as_str).collect();
        check(&out_dir, args, *code, &want);
    }
    assert!(!Path::new(&out_dir).exists(), "no run above wrote anything");
}

/// promtool 2.42 also evaluates alerting rules, writing their expressions' results as
/// series named after the alert (its help says they are not evaluated); Kiln skips
/// them, so those series are left out of the comparison.
#[test]
#[cfg_attr(
    not(kiln_interop),
    ignore = "interop: needs KILN_INTEROP=1 and promtool from Debian's prometheus (scripts/test installs it)"
)]
fn records_what_promtool_records() {
    require_peer("promtool", "prometheus");
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    backfill_example(&data);
    let server = start_kiln_server(&[
        "--storage.tsdb.retention.size=1GB",
        &format!("--storage.tsdb.path={}", data.display()),
        "--web.listen-address=127.0.0.1:0",
    ]);
    let url = format!("http://127.0.0.1:{}", server.port);
    let files = [
        "rules/ml-recording-rules.yml",
        "rules/ml-recording-rules-corrected.yml",
        "rules/ml-alerts.yml",
    ];
    let run = |program: &str, out: &Path| {
        let out_dir = out.display().to_string();
        let mut args = vec![
            "tsdb",
            "create-blocks-from",
            "rules",
            "--url",
            &url,
            "--start",
            "2026-01-01T00:00:00Z",
            "--end",
            "2026-01-01T03:00:00Z",
            "--output-dir",
            &out_dir,
        ];
        args.extend_from_slice(&files);
        let output = std::process::Command::new(program)
            .current_dir(repo())
            .args(&args)
            .output()
            .expect("run backfill");
        ok_stdout(program, output);
    };
    let kiln_out = tmp.path().join("kiln");
    let promtool_out = tmp.path().join("promtool");
    run(env!("CARGO_BIN_EXE_kiln"), &kiln_out);
    run("promtool", &promtool_out);

    let alerts = [
        "GPUUnderutilized",
        "ModelLatencySLOBurnRate",
        "ModelHighErrorRate",
        "TrainingStalled",
        "DataPipelineLag",
    ];
    let sorted_dump = |dir: &Path| {
        let mut lines: Vec<String> = promtool_dump(dir, &[])
            .lines()
            .filter(|l| {
                !alerts
                    .iter()
                    .any(|a| l.starts_with(&format!("{{__name__=\"{a}\"")))
            })
            .map(str::to_owned)
            .collect();
        lines.sort();
        lines.join("\n")
    };
    let want = sorted_dump(&promtool_out);
    let got = sorted_dump(&kiln_out);
    assert!(
        want.lines().count() > 10_000,
        "promtool recorded little: {}",
        want.lines().count()
    );
    assert_same_dump("recorded series, promtool vs kiln", &want, &got);
}
