//! `kiln server`'s log: `--log.format=json` lines from start-up to shutdown, a reload
//! saying what changed, `--log.level=warn` keeping info lines out, and the flags'
//! errors.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use common::{http, start_kiln_server_logged};
use serde_json::Value;

/// How long the server gets to log what a step causes; a bound for a broken server,
/// not a timing under test.
const PATIENCE: Duration = Duration::from_secs(60);

/// Reads log lines into `seen` until one has `msg`; panics past [`PATIENCE`].
fn wait_for_msg(lines: &Receiver<String>, seen: &mut Vec<String>, msg: &str) {
    let deadline = Instant::now() + PATIENCE;
    if seen.iter().any(|l| parse(l)["msg"] == msg) {
        return;
    }
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no {msg:?} line; the log so far:\n{}", seen.join("\n")));
        let found = parse(&line)["msg"] == msg;
        seen.push(line);
        if found {
            return;
        }
    }
}

/// A JSON log line as an object; panics on anything else.
fn parse(line: &str) -> serde_json::Map<String, Value> {
    match serde_json::from_str::<Value>(line) {
        Ok(Value::Object(m)) => m,
        other => panic!("not a JSON object log line: {line:?} ({other:?})"),
    }
}

/// The one line with `msg`, asserting its level and that every `(key, value)` of
/// `want` is in it.
fn check(
    seen: &[String],
    msg: &str,
    level: &str,
    want: &[(&str, Value)],
) -> serde_json::Map<String, Value> {
    let matching: Vec<_> = seen
        .iter()
        .map(|l| parse(l))
        .filter(|m| m["msg"] == msg)
        .collect();
    let [line] = matching.as_slice() else {
        panic!(
            "want one {msg:?} line, got {}:\n{}",
            matching.len(),
            seen.join("\n")
        );
    };
    assert_eq!(line["level"], level, "{line:?}");
    for (k, v) in want {
        assert_eq!(line.get(*k), Some(v), "{k} of {line:?}");
    }
    line.clone()
}

fn send_signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill {signal} {pid}");
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write file");
}

const RULES: &str =
    "groups:\n  - name: first\n    rules:\n      - record: one\n        expr: vector(1)\n";

#[test]
fn json_log_from_start_to_shutdown_with_reloads() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let config = tmp.path().join("prometheus.yml");
    let rules = tmp.path().join("rules.yml");
    let config_text = "global:\n  scrape_interval: 1h\nrule_files: [rules.yml]\nscrape_configs:\n  - job_name: nothing\n    static_configs: [{targets: ['127.0.0.1:1']}]\n";
    write(&config, config_text);
    write(&rules, RULES);
    let data_arg = format!("--storage.tsdb.path={}", data.display());
    let config_arg = format!("--config.file={}", config.display());
    let (mut server, lines) = start_kiln_server_logged(&[
        &config_arg,
        &data_arg,
        "--web.listen-address=127.0.0.1:0",
        "--web.enable-lifecycle",
        "--log.format=json",
    ]);
    let mut seen = Vec::new();
    wait_for_msg(
        &lines,
        &mut seen,
        "Server is ready to receive web requests.",
    );

    // SIGHUP after a rule file gained a group.
    write(
        &rules,
        &format!(
            "{RULES}  - name: second\n    rules:\n      - record: two\n        expr: vector(2)\n"
        ),
    );
    send_signal(server.child.id(), "-HUP");
    wait_for_msg(&lines, &mut seen, "Configuration reloaded");
    // /-/reload with nothing changed, then with a broken file.
    assert_eq!(
        http(server.port, "POST", "/-/reload").map(|r| r.0),
        Some(200)
    );
    wait_for_msg(
        &lines,
        &mut seen,
        "Configuration reloaded: configuration unchanged",
    );
    write(&config, "scrape_configs: [{job_name: x, bogus: 1}]\n");
    assert_eq!(
        http(server.port, "POST", "/-/reload").map(|r| r.0),
        Some(500)
    );
    wait_for_msg(
        &lines,
        &mut seen,
        "Error reloading config; the running configuration stays",
    );

    send_signal(server.child.id(), "-TERM");
    let status = server.child.wait().expect("wait for kiln");
    assert!(status.success(), "{status}");
    seen.extend(lines.iter());

    // Every line is one JSON object led by time, level, source and msg; no colour.
    for line in &seen {
        let fields = parse(line);
        let at: Vec<usize> = ["\"time\":", "\"level\":", "\"source\":", "\"msg\":"]
            .iter()
            .map(|k| {
                line.find(k)
                    .unwrap_or_else(|| panic!("{k} missing in {line}"))
            })
            .collect();
        assert_eq!(at[0], 1, "{line}");
        assert!(at.windows(2).all(|w| w[0] < w[1]), "header order in {line}");
        assert!(fields.len() >= 4 && !line.contains('\u{1b}'), "{line}");
    }

    let start = check(
        &seen,
        "Starting Kiln server",
        "INFO",
        &[
            ("version", Value::from(env!("CARGO_PKG_VERSION"))),
            ("storage_path", Value::from(data.display().to_string())),
            ("retention", Value::from("15d")),
            ("listen_address", Value::from("127.0.0.1:0")),
        ],
    );
    assert!(
        start["source"]
            .as_str()
            .is_some_and(|s| s.starts_with("kiln/src/server.rs:")),
        "{start:?}"
    );
    check(
        &seen,
        "Completed loading of configuration file",
        "INFO",
        &[
            ("filename", Value::from(config.display().to_string())),
            ("scrape_pools", Value::from(1)),
            ("rule_files", Value::from(1)),
            ("rule_groups", Value::from(1)),
        ],
    );
    check(
        &seen,
        "Blocks loaded",
        "INFO",
        &[
            ("component", Value::from("tsdb")),
            ("blocks", Value::from(0)),
        ],
    );
    check(
        &seen,
        "TSDB started",
        "INFO",
        &[("component", Value::from("tsdb"))],
    );
    check(
        &seen,
        "Listening on",
        "INFO",
        &[("component", Value::from("web"))],
    );
    check(
        &seen,
        "Server is ready to receive web requests.",
        "INFO",
        &[],
    );
    let rule_file = format!("{};second", rules.display());
    check(
        &seen,
        "Rule groups changed",
        "INFO",
        &[
            ("component", Value::from("rules")),
            ("added", Value::from(format!("[{rule_file}]"))),
            ("removed", Value::from("[]")),
        ],
    );
    check(
        &seen,
        "Configuration reloaded",
        "INFO",
        &[
            ("trigger", Value::from("SIGHUP")),
            ("rule_groups", Value::from(1)),
            ("scrape_pools", Value::from(0)),
        ],
    );
    check(
        &seen,
        "Configuration reloaded: configuration unchanged",
        "INFO",
        &[("trigger", Value::from("web"))],
    );
    let failed = check(
        &seen,
        "Error reloading config; the running configuration stays",
        "ERROR",
        &[("trigger", Value::from("web"))],
    );
    assert!(
        failed["err"].as_str().is_some_and(|e| e.contains("bogus")),
        "{failed:?}"
    );
    check(
        &seen,
        "Received an OS signal, exiting gracefully...",
        "WARN",
        &[("signal", Value::from("terminated"))],
    );
    for stopped in [
        "Web handler stopped",
        "Scrape manager stopped",
        "Rule manager stopped",
        "TSDB stopped",
    ] {
        check(&seen, stopped, "INFO", &[]);
    }
    let last = seen.last().map(|l| parse(l)).expect("lines");
    assert_eq!(last["msg"], "See you next time!");
    assert_eq!(last["level"], "INFO");
}

#[test]
fn logfmt_at_warn_has_no_info_lines() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let port = common::free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args([
            "server",
            &format!("--storage.tsdb.path={}", tmp.path().join("data").display()),
            &format!("--web.listen-address=127.0.0.1:{port}"),
            "--log.format=logfmt",
            "--log.level=warn",
        ])
        .env_remove("KILN_LOG")
        .stderr(Stdio::piped())
        .spawn()
        .expect("start kiln server");
    let mut server = common::ChildGuard(child);
    let deadline = Instant::now() + PATIENCE;
    while http(port, "GET", "/-/ready").map(|r| r.0) != Some(200) {
        assert!(Instant::now() < deadline, "kiln never became ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    send_signal(server.0.id(), "-TERM");
    let status = server.0.wait().expect("wait");
    assert!(status.success(), "{status}");
    let mut stderr = String::new();
    use std::io::Read;
    server
        .0
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("read stderr");
    let lines: Vec<&str> = stderr.lines().collect();
    // The signal line is a warning, so there is at least one line, and nothing else
    // may be below warn.
    assert!(
        lines.iter().any(|l| l.contains(" level=WARN ")
            && l.contains(r#"msg="Received an OS signal, exiting gracefully...""#)),
        "{stderr}"
    );
    for l in &lines {
        assert!(
            l.starts_with("time=") && l.contains(" source="),
            "not a logfmt log line: {l}"
        );
        assert!(
            l.contains(" level=WARN ") || l.contains(" level=ERROR "),
            "below warn: {l}"
        );
    }
}

#[test]
fn log_flags_before_or_after_the_mode_and_their_errors() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = tmp.path().join("prometheus.yml");
    write(&config, "scrape_configs: []\n");
    let file = config.to_str().expect("utf-8 path");
    for args in [
        vec!["--log.level=debug", "check", "config", file],
        vec![
            "check",
            "config",
            file,
            "--log.level=error",
            "--log.format=json",
        ],
        vec!["--log.format", "json", "check", "config", file],
    ] {
        let out = common::kiln(&args);
        assert!(out.status.success(), "{args:?}: {out:?}");
    }
    for (args, want) in [
        (
            vec!["server", "--log.level=verbose"],
            "[possible values: debug, info, warn, error]",
        ),
        (
            vec!["--log.format=xml", "server"],
            "[possible values: logfmt, json]",
        ),
    ] {
        let out = common::kiln(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{args:?}: {err}");
    }
}
