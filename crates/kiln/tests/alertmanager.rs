//! Alert notification from `kiln server` to Alertmanager (interop: built with
//! `KILN_INTEROP=1`): the real Alertmanager from Debian (`prometheus-alertmanager`)
//! receives Kiln's alert with its labels (external labels added, relabelling applied)
//! and rendered annotations, a resolved alert's resolution arrives, and
//! `/api/v1/alertmanagers` and the notification metrics say so.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{ChildGuard, exporter, free_port, http, require_peer, start_kiln_server};

const EXPOSITION: &str = "# TYPE training_samples_processed_total counter\n\
training_samples_processed_total{job_id=\"j7\",job_name=\"gpt\"} 1000\n";

/// `{until}` is replaced by a Unix time a few seconds ahead: `Blip` fires, then resolves.
const RULES: &str = r#"
groups:
  - name: training
    interval: 1s
    rules:
      - alert: Blip
        expr: vector(time()) < {until}
      - alert: TrainingStalled
        expr: rate(training_samples_processed_total[1m]) == 0
        labels:
          severity: warning
          replica: r1
        annotations:
          summary: "Training job {{ $labels.job_name }} ({{ $labels.job_id }}) processes no samples"
"#;

#[test]
#[cfg_attr(
    not(kiln_interop),
    ignore = "interop: needs KILN_INTEROP=1 and Debian's prometheus-alertmanager (scripts/test installs it)"
)]
fn alerts_reach_a_real_alertmanager() {
    require_peer("prometheus-alertmanager", "prometheus-alertmanager");
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
    let until = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() + 6)
        .unwrap_or(0);
    std::fs::write(
        dir.path().join("training.rules.yml"),
        RULES.replace("{until}", &until.to_string()),
    )
    .expect("write");
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

    // The alerts as Alertmanager's own API shows them.
    let am_alert = |name: &str| -> Option<serde_json::Value> {
        let (status, body) = http(am_port, "GET", "/api/v2/alerts")?;
        let v: serde_json::Value = serde_json::from_str(&body).ok().filter(|_| status == 200)?;
        v.as_array()?
            .iter()
            .find(|a| a["labels"]["alertname"] == name)
            .cloned()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let alert = loop {
        if let Some(a) = am_alert("TrainingStalled") {
            break a;
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

    // Blip fired, then resolved: the resolution is sent at once, so Alertmanager drops it
    // from its active alerts long before the firing alert's endsAt (4 minutes ahead).
    let deadline = Instant::now() + Duration::from_secs(60);
    while am_alert("Blip").is_none() {
        assert!(Instant::now() < deadline, "Blip never reached Alertmanager");
        std::thread::sleep(Duration::from_millis(300));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while am_alert("Blip").is_some() {
        assert!(
            Instant::now() < deadline,
            "Blip's resolution never reached Alertmanager"
        );
        std::thread::sleep(Duration::from_millis(300));
    }

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
