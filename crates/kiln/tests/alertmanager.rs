//! Alert notification from `kiln server` to Alertmanager: with `KILN_INTEROP=1`, the
//! real Alertmanager from Debian (`prometheus-alertmanager`) receives Kiln's alert
//! with its labels (external labels added, relabelling applied) and rendered
//! annotations, and `/api/v1/alertmanagers` and the notification metrics say so.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{ChildGuard, exporter, free_port, http, interop_enabled, start_kiln_server};

const EXPOSITION: &str = "# TYPE training_samples_processed_total counter\n\
training_samples_processed_total{job_id=\"j7\",job_name=\"gpt\"} 1000\n";

const RULES: &str = r#"
groups:
  - name: training
    interval: 1s
    rules:
      - alert: TrainingStalled
        expr: rate(training_samples_processed_total[1m]) == 0
        labels:
          severity: warning
          replica: r1
        annotations:
          summary: "Training job {{ $labels.job_name }} ({{ $labels.job_id }}) processes no samples"
"#;

#[test]
fn alerts_reach_a_real_alertmanager() {
    if !interop_enabled("alerts_reach_a_real_alertmanager") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let am_port = free_port();
    let am_config = dir.path().join("alertmanager.yml");
    std::fs::write(
        &am_config,
        "route:\n  receiver: blackhole\n  group_wait: 1s\nreceivers:\n  - name: blackhole\n",
    )
    .expect("write");
    let _am = ChildGuard(
        Command::new("prometheus-alertmanager")
            .arg(format!("--config.file={}", am_config.display()))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("am").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{am_port}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus-alertmanager (Debian package prometheus-alertmanager)"),
    );
    let target = exporter(EXPOSITION);
    std::fs::write(dir.path().join("training.rules.yml"), RULES).expect("write");
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n  external_labels: {{cluster: train-a}}\n\
             rule_files: ['training.rules.yml']\n\
             alerting:\n  alert_relabel_configs: [{{action: labeldrop, regex: replica}}]\n  alertmanagers:\n\
             \x20   - static_configs: [{{targets: ['127.0.0.1:{am_port}', '127.0.0.1:1']}}]\n\
             \x20     relabel_configs: [{{source_labels: [__address__], regex: '.*:1', action: drop}}]\n\
             scrape_configs:\n  - job_name: trainers\n    static_configs: [{{targets: ['127.0.0.1:{target}']}}]\n"
        ),
    )
    .expect("write config");
    let server = start_kiln_server(&[
        &format!("--config.file={}", config.display()),
        &format!("--storage.tsdb.path={}", dir.path().join("data").display()),
        "--web.listen-address=127.0.0.1:0",
        "--web.external-url=http://kiln.example:9090",
    ]);

    // The alert as Alertmanager's own API shows it.
    let deadline = Instant::now() + Duration::from_secs(60);
    let alert = loop {
        if let Some((200, body)) = http(am_port, "GET", "/api/v2/alerts") {
            let v: serde_json::Value = serde_json::from_str(&body).expect("alertmanager JSON");
            if let Some(a) = v.as_array().and_then(|a| a.first()) {
                break a.clone();
            }
        }
        assert!(Instant::now() < deadline, "no alert reached Alertmanager");
        std::thread::sleep(Duration::from_millis(500));
    };
    let labels = &alert["labels"];
    assert_eq!(labels["alertname"], "TrainingStalled", "{alert}");
    assert_eq!(labels["job_id"], "j7", "{alert}");
    assert_eq!(labels["job"], "trainers", "{alert}");
    assert_eq!(labels["severity"], "warning", "{alert}");
    assert_eq!(
        labels["cluster"], "train-a",
        "external label added: {alert}"
    );
    assert!(labels.get("replica").is_none(), "relabelled away: {alert}");
    assert_eq!(
        alert["annotations"]["summary"], "Training job gpt (j7) processes no samples",
        "{alert}"
    );
    assert_eq!(alert["status"]["state"], "active", "{alert}");
    let generator = alert["generatorURL"].as_str().unwrap_or_default();
    assert!(
        generator.starts_with("http://kiln.example:9090/graph?g0.expr="),
        "{generator}"
    );

    let (_, ams) = http(server.port, "GET", "/api/v1/alertmanagers").expect("alertmanagers");
    assert!(
        ams.contains(&format!(
            r#""activeAlertmanagers":[{{"url":"http://127.0.0.1:{am_port}/api/v2/alerts"}}]"#
        )),
        "{ams}"
    );
    assert!(
        ams.contains("127.0.0.1:1/api/v2/alerts"),
        "dropped one listed: {ams}"
    );
    let (_, metrics) = http(server.port, "GET", "/metrics").expect("metrics");
    assert!(
        metrics.contains(&format!(
            "prometheus_notifications_sent_total{{alertmanager=\"http://127.0.0.1:{am_port}/api/v2/alerts\"}}"
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains("prometheus_notifications_alertmanagers_discovered 1"),
        "{metrics}"
    );
}
