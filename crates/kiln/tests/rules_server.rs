//! Rules in `kiln server`: recording and alerting rules evaluated on their interval
//! over scraped data, `/api/v1/rules`, `/api/v1/alerts`, `ALERTS`, the
//! `prometheus_rule_*` metrics, and reloads (a bad rule file keeps the running rules).

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{exporter, http, start_kiln_server, url_encode, wait_for};

const EXPOSITION: &str = "# TYPE gpu_util gauge\n\
gpu_util{gpu=\"0\"} 10\n\
gpu_util{gpu=\"1\"} 90\n";

const RULES: &str = r#"
groups:
  - name: gpu
    interval: 1s
    rules:
      - record: job:gpu_util:avg
        expr: avg by (job) (gpu_util)
      - alert: GpuIdle
        expr: gpu_util < 20
        labels:
          severity: warning
        annotations:
          summary: "GPU {{ $labels.gpu }} at {{ $value }}% on {{ $labels.instance | stripPort }}"
      - alert: GpuHot
        expr: gpu_util > 50
        for: 1h
"#;

const RULES_RELOADED: &str = r#"
groups:
  - name: gpu
    interval: 1s
    rules:
      - record: job:gpu_util:max
        expr: max by (job) (gpu_util)
"#;

fn poll(port: u16, path: &str, want: &[&str], limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    loop {
        if let Some((200, body)) = http(port, "GET", path)
            && want.iter().all(|w| body.contains(w))
        {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "{path}: no {want:?} within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn rules_are_evaluated_served_and_reloaded() {
    let target = exporter(EXPOSITION);
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = dir.path().join("gpu.rules.yml");
    std::fs::write(&rules, RULES).expect("write rules");
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n  external_labels: {{cluster: a}}\n\
             rule_files: ['*.rules.yml']\n\
             scrape_configs:\n  - job_name: gpus\n    static_configs: [{{targets: ['127.0.0.1:{target}']}}]\n"
        ),
    )
    .expect("write config");
    let data = dir.path().join("data");
    let server = start_kiln_server(&[
        &format!("--config.file={}", config.display()),
        &format!("--storage.tsdb.path={}", data.display()),
        "--web.listen-address=127.0.0.1:0",
        "--web.enable-lifecycle",
    ]);
    let port = server.port;
    let limit = Duration::from_secs(20);

    // The recording rule's series, computed from scraped data.
    wait_for(
        port,
        "job:gpu_util:avg",
        &[r#""job":"gpus""#, r#""50""#],
        limit,
    );
    // An alert without `for` fires at once; one with `for` is pending.
    let alerts = poll(
        port,
        "/api/v1/alerts",
        &[r#""alertname":"GpuIdle""#, r#""alertname":"GpuHot""#],
        limit,
    );
    assert!(
        alerts.contains(r#""state":"firing""#) && alerts.contains(r#""state":"pending""#),
        "{alerts}"
    );
    assert!(
        alerts.contains(r#""summary":"GPU 0 at 10% on 127.0.0.1""#),
        "annotation rendered: {alerts}"
    );
    assert!(alerts.contains(r#""value":"1e+01""#), "{alerts}");
    let q = url_encode(r#"ALERTS{alertname="GpuIdle",alertstate="firing",severity="warning"}"#);
    wait_for(port, &q, &[r#""gpu":"0""#], limit);
    let q = url_encode(r#"ALERTS_FOR_STATE{alertname="GpuHot"}"#);
    wait_for(port, &q, &[r#""gpu":"1""#], limit);

    let rules_json = poll(port, "/api/v1/rules", &[r#""health":"ok""#], limit);
    for want in [
        r#""name":"gpu""#,
        r#""type":"recording""#,
        r#""type":"alerting""#,
        r#""duration":3600"#,
        r#""interval":1"#,
        r#""query":"avg by (job) (gpu_util)""#,
    ] {
        assert!(rules_json.contains(want), "{want} in {rules_json}");
    }
    let (_, only_alerts) =
        http(port, "GET", "/api/v1/rules?type=alert&exclude_alerts=true").expect("rules");
    assert!(
        !only_alerts.contains("recording") && !only_alerts.contains(r#""alerts":"#),
        "{only_alerts}"
    );
    let (status, _) = http(port, "GET", "/api/v1/rules?type=bogus").expect("rules");
    assert_eq!(status, 400);

    let metrics = poll(
        port,
        "/metrics",
        &["prometheus_rule_group_last_evaluation_timestamp_seconds{rule_group="],
        limit,
    );
    let group_key = format!("{};gpu", rules.display());
    assert!(
        metrics.contains(&format!(
            "prometheus_rule_group_rules{{rule_group=\"{group_key}\"}} 3"
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains("prometheus_rule_evaluations_total{"),
        "{metrics}"
    );

    // A broken rule file: the reload fails and the running rules stay.
    std::fs::write(
        &rules,
        "groups:\n  - name: gpu\n    rules:\n      - record: x\n        expr: sum(\n",
    )
    .expect("write");
    let (status, body) = http(port, "POST", "/-/reload").expect("reload");
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("could not parse expression"), "{body}");
    let (_, still) = http(port, "GET", "/api/v1/rules").expect("rules");
    assert!(still.contains("GpuIdle"), "{still}");

    // A good new file: the old rules go (their series turn stale), the new one runs.
    std::fs::write(&rules, RULES_RELOADED).expect("write");
    let (status, body) = http(port, "POST", "/-/reload").expect("reload");
    assert_eq!(status, 200, "{body}");
    wait_for(port, "job:gpu_util:max", &[r#""90""#], limit);
    let (_, alerts) = http(port, "GET", "/api/v1/alerts").expect("alerts");
    assert!(!alerts.contains("GpuIdle"), "{alerts}");
    // The removed recording rule's series got a staleness marker: no value now.
    let deadline = Instant::now() + limit;
    loop {
        let (_, body) = http(port, "GET", "/api/v1/query?query=job:gpu_util:avg").expect("query");
        if body.contains(r#""result":[]"#) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "job:gpu_util:avg still answers: {body}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn invalid_rule_files_stop_the_server_from_starting() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("bad.yml"),
        "groups:\n  - name: g\n    rules:\n      - alert: A\n",
    )
    .expect("write");
    let config = dir.path().join("prometheus.yml");
    std::fs::write(&config, "rule_files: [bad.yml]\n").expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kiln"))
        .arg("server")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg("--web.listen-address=127.0.0.1:0")
        .output()
        .expect("run kiln");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("field 'expr' must be set"), "{stderr}");
}

/// The `activeAt` of the first alert `/api/v1/alerts` lists, as Unix ms.
fn active_at(port: u16) -> Option<i64> {
    let (_, body) = http(port, "GET", "/api/v1/alerts")?;
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    kiln_model::calendar::parse_rfc3339_ms(v["data"]["alerts"][0]["activeAt"].as_str()?)
}

fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[test]
fn pending_time_survives_a_restart() {
    let target = exporter(EXPOSITION);
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("slow.rules.yml"),
        "groups:\n  - name: g\n    interval: 1s\n    rules:\n      - alert: GpuHot\n        expr: gpu_util > 50\n        for: 1h\n",
    )
    .expect("write rules");
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files: ['slow.rules.yml']\n\
             scrape_configs:\n  - job_name: gpus\n    static_configs: [{{targets: ['127.0.0.1:{target}']}}]\n"
        ),
    )
    .expect("write config");
    let args = [
        format!("--config.file={}", config.display()),
        format!("--storage.tsdb.path={}", dir.path().join("data").display()),
        "--web.listen-address=127.0.0.1:0".to_owned(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let limit = Duration::from_secs(20);
    let mut server = start_kiln_server(&args);
    poll(server.port, "/api/v1/alerts", &["GpuHot"], limit);
    let first = active_at(server.port).expect("activeAt");
    // Let it be pending a while (ALERTS_FOR_STATE written every second), then stop.
    std::thread::sleep(Duration::from_secs(4));
    let _ = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status();
    let _ = server.child.wait();
    drop(server);
    std::thread::sleep(Duration::from_secs(2));
    let restarted = start_kiln_server(&args);
    poll(
        restarted.port,
        "/api/v1/alerts",
        &["GpuHot", "pending"],
        limit,
    );
    let after = active_at(restarted.port).expect("activeAt");
    // Restored: the pending time before the stop counts (activeAt moved forward by the
    // outage only), so the alert is older than the restart by at least that time; a
    // fresh alert would be active from the restart on.
    assert!(
        after > first,
        "moved forward by the outage: {first} -> {after}"
    );
    let pending_before_stop = 3_000;
    assert!(
        after + pending_before_stop < unix_ms(),
        "activeAt {after} was not restored (first run: {first})"
    );
}
