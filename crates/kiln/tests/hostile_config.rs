//! Hostile configuration input (issue 20, items 5 and 10), against the real binary:
//!
//! - secrets written in the configuration (`user:password@` in `remote_write`,
//!   `remote_read`, `proxy_url`, HTTP SD and Kubernetes `api_server` URLs; remote
//!   storage `headers`) appear nowhere the server shows anything: the config API,
//!   `/metrics`, the targets and Alertmanager APIs, a query's answer, `/-/reload`'s
//!   answer, and every log line at debug level (start-up, remote-write and discovery
//!   errors, reload diffs, a failed reload). URLs show the password as `xxxxx`;
//! - YAML documents over the reader's limits (an alias bomb, too many nodes, too deep,
//!   too large a file) are refused by `/-/reload` with the limit named, the running
//!   configuration stays, and the server is unharmed.

mod common;

use std::path::Path;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use common::hostile::{CANARY_TIME, assert_unharmed, target_logged};
use common::{free_port, http};

/// Every secret the configurations below hold starts with this; nothing the server
/// shows may contain it.
const SECRET_MARK: &str = "pw-";

/// A configuration with a secret in every place one can be written. Everything it
/// points at is `closed` (a port nothing listens on), so each client fails and logs.
/// `write_password` is the remote-write URL's password.
fn config_with_secrets(closed: u16, write_password: &str) -> String {
    format!(
        r#"
global:
  scrape_interval: 1s
  scrape_timeout: 500ms
scrape_configs:
  - job_name: via-proxy
    proxy_url: http://proxyuser:pw-proxy@127.0.0.1:{closed}
    static_configs: [{{targets: ['127.0.0.1:{closed}']}}]
  - job_name: discovered
    http_sd_configs:
      - url: http://sduser:pw-sd@127.0.0.1:{closed}/sd
        refresh_interval: 1s
    kubernetes_sd_configs:
      - role: pod
        api_server: http://k8suser:pw-k8s@127.0.0.1:{closed}
alerting:
  alertmanagers:
    - proxy_url: http://amuser:pw-am@127.0.0.1:{closed}
      static_configs: [{{targets: ['127.0.0.1:{closed}']}}]
remote_write:
  - url: http://rwuser:{write_password}@127.0.0.1:{closed}/api/v1/write
    headers: {{X-Api-Key: pw-rw-header}}
    queue_config: {{batch_send_deadline: 100ms, min_backoff: 50ms, max_backoff: 200ms}}
remote_read:
  - url: http://rruser:pw-rr@127.0.0.1:{closed}/api/v1/read
    headers: {{X-Api-Key: pw-rr-header}}
    read_recent: true
"#
    )
}

/// Reads log lines until one holds every one of `parts` (bounded by a generous limit:
/// the clients fail within a few seconds), keeping every line read in `seen`.
fn wait_for_line(log: &Receiver<String>, seen: &mut Vec<String>, parts: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = log.recv_timeout(left).unwrap_or_else(|_| {
            panic!(
                "no log line with {parts:?}; the log so far:\n{}",
                seen.join("\n")
            )
        });
        let found = parts.iter().all(|p| line.contains(p));
        seen.push(line);
        if found {
            return;
        }
    }
}

/// Fails if `text`, something the server showed as `what`, holds a secret.
fn assert_no_secret(what: &str, text: &str) {
    if let Some(at) = text.find(SECRET_MARK) {
        let from = text[..at]
            .char_indices()
            .rev()
            .nth(80)
            .map_or(0, |(i, _)| i);
        panic!(
            "{what} shows a secret: ...{}...",
            &text[from..(at + 40).min(text.len())]
        );
    }
}

fn get(port: u16, path: &str) -> String {
    let (status, body) = http(port, "GET", path).unwrap_or_else(|| panic!("GET {path}"));
    assert_eq!(status, 200, "GET {path}: {body}");
    body
}

#[test]
fn secrets_in_the_config_are_never_shown() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("prometheus.yml");
    let closed = free_port();
    std::fs::write(&config, config_with_secrets(closed, "pw-rw")).expect("write config");
    let config_arg = format!("--config.file={}", config.display());
    // A reload replacing the remote-write queue flushes it first: its receiver is down,
    // so only as long as the flush deadline.
    let (t, log) = target_logged(&[
        &config_arg,
        "--web.enable-lifecycle",
        "--log.level=debug",
        "--storage.remote.flush-deadline=1s",
    ]);
    let port = t.port();
    let mut seen = Vec::new();

    // Each client fails and says so, naming its endpoint redacted (the Kubernetes
    // watcher names the API path only).
    let shown = |user: &str| format!("{user}:xxxxx@127.0.0.1:{closed}");
    for user in ["rwuser", "sduser"] {
        wait_for_line(&log, &mut seen, &[&shown(user)]);
    }
    wait_for_line(&log, &mut seen, &["kubernetes_sd: list failed"]);

    let config_api = get(port, "/api/v1/status/config");
    for want in [
        shown("rwuser"),
        shown("rruser"),
        shown("sduser"),
        shown("k8suser"),
        shown("proxyuser"),
        shown("amuser"),
        "X-Api-Key: <secret>".to_owned(),
    ] {
        assert!(config_api.contains(&want), "want {want:?} in {config_api}");
    }
    let metrics = get(port, "/metrics");
    let label = format!("url=\"http://{}/api/v1/write\"", shown("rwuser"));
    assert!(metrics.contains(&label), "want {label} in /metrics");
    let query = get(
        port,
        &format!("/api/v1/query?query=hostile_canary&time={CANARY_TIME}"),
    );
    for (what, text) in [
        ("/api/v1/status/config", config_api),
        ("/metrics", metrics),
        ("/api/v1/targets", get(port, "/api/v1/targets")),
        ("/api/v1/alertmanagers", get(port, "/api/v1/alertmanagers")),
        ("a query that reads remotely", query),
    ] {
        assert_no_secret(what, &text);
    }

    // A reload that changes the remote-write password: logged as a change, by name.
    std::fs::write(&config, config_with_secrets(closed, "pw-rw-new")).expect("write config");
    let (status, body) = http(port, "POST", "/-/reload").expect("reload");
    assert_eq!(status, 200, "{body}");
    wait_for_line(&log, &mut seen, &["Remote write queues changed"]);

    // A reload that fails on a URL with a password: the answer and the log quote it
    // redacted.
    std::fs::write(
        &config,
        "remote_write:\n  - url: http://rwuser:pw-bad@127.0.0.1:99999/x\n",
    )
    .expect("write config");
    let (status, body) = http(port, "POST", "/-/reload").expect("reload");
    assert_eq!(status, 500, "{body}");
    assert!(
        body.contains("url \"http://rwuser:xxxxx@127.0.0.1:99999/x\": invalid port number"),
        "{body}"
    );
    assert_no_secret("/-/reload's answer", &body);
    wait_for_line(&log, &mut seen, &["Error reloading config"]);

    // Every line logged so far, at debug level.
    seen.extend(log.try_iter());
    for line in &seen {
        assert_no_secret("the log", line);
    }
    assert_unharmed(&t, "secrets in the config");
}

/// The message each over-limit document gets from `/-/reload` (after the file's path).
struct Case {
    what: &'static str,
    write: fn(&Path),
    want: &'static str,
}

/// Nine anchors, each a list of ten aliases of the one before: 10^9 values.
fn write_alias_bomb(path: &Path) {
    let mut text =
        String::from("storage:\n  l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for i in 1..=9 {
        let prev = format!("*l{}", i - 1);
        text.push_str(&format!("  l{i}: &l{i} [{}]\n", vec![prev; 10].join(", ")));
    }
    std::fs::write(path, text).expect("write");
}

/// 250,001 rule files: more YAML nodes than a document may hold.
fn write_too_many_nodes(path: &Path) {
    let items = vec!["r.yml"; 250_001].join(", ");
    std::fs::write(path, format!("rule_files: [{items}]\n")).expect("write");
}

fn write_too_deep(path: &Path) {
    let text = format!("storage: {}{}\n", "[".repeat(1000), "]".repeat(1000));
    std::fs::write(path, text).expect("write");
}

/// A file just over 64 MiB (sparse: NUL bytes, which are text to the reader).
fn write_too_large(path: &Path) {
    let f = std::fs::File::create(path).expect("create");
    f.set_len((64 << 20) + 1).expect("set_len");
}

const CASES: &[Case] = &[
    Case {
        what: "an alias bomb",
        write: write_alias_bomb,
        want: ": aliases (`*name`) expand to more than 250,000 YAML nodes (values, lists and \
               mappings), the most Kiln reads from one file; this is what a YAML bomb (\"billion \
               laughs\") looks like",
    },
    Case {
        what: "too many nodes",
        write: write_too_many_nodes,
        want: ": the document is too large: it holds more than 250,000 YAML nodes (values, \
               lists and mappings), the most Kiln reads from one file; split it into several \
               smaller files",
    },
    Case {
        what: "lists nested 1,000 deep",
        write: write_too_deep,
        want: "1:74: lists and mappings are nested more than 64 levels deep here, the most \
               Kiln reads",
    },
    Case {
        what: "a file over 64 MiB",
        write: write_too_large,
        want: "prometheus.yml: the file is larger than 64 MiB, the most Kiln reads as one YAML \
               document",
    },
];

#[test]
fn documents_over_the_yaml_limits_are_refused_by_reload() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("prometheus.yml");
    let good = "scrape_configs:\n  - job_name: still-running\n    \
                static_configs: [{targets: ['127.0.0.1:1']}]\n";
    std::fs::write(&config, good).expect("write config");
    let config_arg = format!("--config.file={}", config.display());
    let (t, _log) = target_logged(&[&config_arg, "--web.enable-lifecycle"]);
    let port = t.port();
    for case in CASES {
        (case.write)(&config);
        let (status, body) = http(port, "POST", "/-/reload")
            .unwrap_or_else(|| panic!("{}: /-/reload did not answer", case.what));
        assert_eq!(status, 500, "{}: {body}", case.what);
        assert!(
            body.contains(&format!("{}", config.display())) && body.contains(case.want),
            "{}: want {:?} in {body:?}",
            case.what,
            case.want
        );
        let running = get(port, "/api/v1/status/config");
        assert!(
            running.contains("still-running"),
            "{}: {running}",
            case.what
        );
        assert_unharmed(&t, case.what);
    }
    std::fs::write(&config, good).expect("write config");
    assert_eq!(http(port, "POST", "/-/reload").map(|r| r.0), Some(200));
}
