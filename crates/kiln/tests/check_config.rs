//! `kiln check config`, and its verdicts against promtool 2.42's `check config`
//! (an interop test: built with `KILN_INTEROP=1`) on configs both versions agree about.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::require_peer;

fn run(program: &str, file: &Path) -> Output {
    Command::new(program)
        .args(["check", "config"])
        .arg(file)
        .output()
        .unwrap_or_else(|e| panic!("running {program}: {e}"))
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write config");
    path
}

const VALID: &str = r#"
global:
  scrape_interval: 15s
  external_labels: {cluster: a}
scrape_configs:
  - job_name: kiln
    static_configs: [{targets: ['127.0.0.1:9090']}]
  - job_name: nodes
    file_sd_configs: [{files: ['targets/*.json']}]
    relabel_configs:
      - source_labels: [__address__]
        modulus: 2
        target_label: __tmp_shard
        action: hashmod
      - source_labels: [__tmp_shard]
        regex: '0'
        action: keep
      - action: labelmap
        regex: __meta_(.+)
"#;

/// Configs both Prometheus 2.42 and 3.x reject.
const INVALID: &[&str] = &[
    "global:\n  scrape_interval: 15s\n  scrape_intervall: 1m\n",
    "global:\n  scrape_interval: 10s\n  scrape_timeout: 20s\n",
    "scrape_configs:\n  - job_name: a\n  - job_name: a\n",
    "scrape_configs:\n  - job_name: a\n    scrape_interval: 5s\n    scrape_timeout: 6s\n",
    "scrape_configs:\n  - job_name: a\n    relabel_configs: [{action: hashmod, target_label: x}]\n",
    "scrape_configs:\n  - job_name: a\n    relabel_configs: [{action: keep, regex: '('}]\n",
    "scrape_configs:\n  - job_name: a\n    static_configs: [{targets: ['a:1'], labels: {0bad: x}}]\n",
    "scrape_configs:\n  - job_name: a\n    tls_config: {ca: x, ca_file: y.pem}\n",
    "scrape_configs:\n  - job_name: a\n    dns_sd_configs: [{names: [x], type: A}]\n",
    "scrape_configs:\n  - job_name: a\n    kubernetes_sd_configs: [{api_server: 'http://x'}]\n",
    "scrape_configs: [\n",
];

#[test]
fn valid_config_succeeds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write(dir.path(), "prometheus.yml", VALID);
    let out = run(env!("CARGO_BIN_EXE_kiln"), &file);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("SUCCESS: ") && stdout.contains("is valid prometheus config file syntax"),
        "{stdout}"
    );
}

#[test]
fn invalid_configs_fail_with_the_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (i, text) in INVALID.iter().enumerate() {
        let file = write(dir.path(), &format!("bad{i}.yml"), text);
        let out = run(env!("CARGO_BIN_EXE_kiln"), &file);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "config {text:?}: {stdout}");
        assert!(stdout.contains("FAILED: "), "config {text:?}: {stdout}");
    }
    // A syntax error names its file, line and column.
    let file = write(dir.path(), "typo.yml", INVALID[0]);
    let stdout =
        String::from_utf8_lossy(&run(env!("CARGO_BIN_EXE_kiln"), &file).stdout).into_owned();
    let at = format!("{}:3:3: field scrape_intervall not found", file.display());
    assert!(stdout.contains(&at), "{stdout}");
}

#[test]
#[cfg_attr(
    not(kiln_interop),
    ignore = "interop: needs KILN_INTEROP=1 and promtool from Debian's prometheus (scripts/test installs it)"
)]
fn same_verdicts_as_promtool() {
    require_peer("promtool", "prometheus");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cases = vec![("valid", VALID)];
    cases.extend(INVALID.iter().map(|t| ("invalid", *t)));
    for (i, (kind, text)) in cases.into_iter().enumerate() {
        let file = write(dir.path(), &format!("c{i}.yml"), text);
        let kiln = run(env!("CARGO_BIN_EXE_kiln"), &file);
        let promtool = run("promtool", &file);
        assert_eq!(
            kiln.status.success(),
            promtool.status.success(),
            "{kind} config {text:?}\nkiln: {}\npromtool: {}{}",
            String::from_utf8_lossy(&kiln.stdout),
            String::from_utf8_lossy(&promtool.stdout),
            String::from_utf8_lossy(&promtool.stderr),
        );
    }
}
