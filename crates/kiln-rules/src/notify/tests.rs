use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;

use kiln_config::{AlertmanagerConfig, Config};

use super::*;
use crate::file::parse_rule_file;

fn alert(labels: &[(&str, &str)]) -> OutgoingAlert {
    OutgoingAlert {
        labels: Labels::from_pairs(labels),
        annotations: [("summary".to_string(), "s \"q\"".to_string())].into(),
        starts_at_ms: 1_700_000_000_123,
        ends_at_ms: 1_700_000_240_000,
        generator_url: "http://kiln/graph?g0.expr=up&g0.tab=1".into(),
    }
}

#[test]
fn batches_are_alertmanager_v2_json() {
    let json = batch_json(&[alert(&[("alertname", "A"), ("job", "x")])]);
    let v: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
    assert_eq!(v[0]["labels"]["alertname"], "A");
    assert_eq!(v[0]["annotations"]["summary"], "s \"q\"");
    assert_eq!(v[0]["startsAt"], "2023-11-14T22:13:20.123Z");
    assert_eq!(v[0]["endsAt"], "2023-11-14T22:17:20.000Z");
    assert_eq!(
        v[0]["generatorURL"],
        "http://kiln/graph?g0.expr=up&g0.tab=1"
    );
}

#[test]
fn shaping_adds_external_labels_and_relabels() {
    let config = Config::parse(
        "global:\n  external_labels: {cluster: a, job: ext}\n\
         alerting:\n  alert_relabel_configs:\n    - {source_labels: [severity], regex: debug, action: drop}\n",
        "p.yml",
    )
    .expect("config");
    let shaping = AlertShaping {
        external_labels: config.global.external_labels.clone(),
        alert_relabel_configs: config.alerting.alert_relabel_configs.clone(),
    };
    let kept = shaping
        .apply(&alert(&[("alertname", "A"), ("job", "x")]))
        .expect("kept");
    assert_eq!(
        kept,
        Labels::from_pairs(&[("alertname", "A"), ("cluster", "a"), ("job", "x")]),
        "the alert's own labels win over external ones"
    );
    assert!(
        shaping
            .apply(&alert(&[("alertname", "A"), ("severity", "debug")]))
            .is_none()
    );
}

#[test]
fn firing_alerts_are_sent_then_resent_and_resolutions_sent() {
    let storage = std::sync::Arc::new(kiln_storage::mem::MemStorage::new());
    {
        use kiln_storage::Appendable;
        let mut app = storage.appender();
        for (i, v) in [0.0, 0.0, 0.0, 1.0].iter().enumerate() {
            app.append(
                0,
                &Labels::from_pairs(&[("__name__", "up"), ("job", "api")]),
                i as i64 * 60_000,
                kiln_storage::SampleValue::Float(*v),
            )
            .expect("append");
        }
        app.commit().expect("commit");
    }
    let specs = parse_rule_file(
        "groups:\n  - name: g\n    interval: 30s\n    rules:\n      - alert: Down\n        expr: up == 0\n        for: 1m\n",
        "r.yml",
    )
    .expect("rules");
    let mut g = Group::new(&specs[0], 60_000, 0);
    let queryable: Arc<dyn kiln_storage::Queryable> = storage.clone();
    let engine = kiln_promql::Engine::new(kiln_promql::EngineOptions::default());
    let ext = BTreeMap::new();
    let env = crate::EvalEnv {
        engine: &engine,
        queryable: &queryable,
        appendable: storage.as_ref(),
        external_labels: &ext,
        external_url: "",
    };
    let opts = crate::RestoreOptions::default();
    g.eval(&env, 0, &opts);
    assert!(
        due_alerts(&mut g, 0, "http://kiln").is_empty(),
        "pending alerts are not sent"
    );
    g.eval(&env, 60_000, &opts);
    let sent = due_alerts(&mut g, 60_000, "http://kiln/");
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].starts_at_ms, 60_000);
    assert_eq!(sent[0].ends_at_ms, 60_000 + 4 * RESEND_DELAY_MS);
    assert_eq!(
        sent[0].generator_url,
        "http://kiln/graph?g0.expr=up+%3D%3D+0&g0.tab=1"
    );
    g.eval(&env, 90_000, &opts);
    assert!(
        due_alerts(&mut g, 90_000, "").is_empty(),
        "not again within the resend delay"
    );
    g.eval(&env, 121_000, &opts);
    assert_eq!(
        due_alerts(&mut g, 121_000, "").len(),
        1,
        "re-sent after the delay"
    );
    g.eval(&env, 180_000, &opts);
    let resolved = due_alerts(&mut g, 180_000, "");
    assert_eq!(resolved.len(), 1, "the resolution is sent at once");
    assert_eq!(resolved[0].ends_at_ms, 180_000);
}

/// A one-shot Alertmanager on loopback answering `status`; sends each request body.
fn fake_alertmanager(status: u16, bodies: mpsc::Sender<String>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            // Read headers, then Content-Length bytes of body.
            loop {
                let n = s.read(&mut chunk).unwrap_or(0);
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).to_string();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if body.len() >= len {
                        let path = head.split_whitespace().nth(1).unwrap_or("").to_owned();
                        let _ = bodies.send(format!("{path} {body}"));
                        break;
                    }
                }
            }
            let _ = write!(
                s,
                "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    });
    port
}

fn am_config(yaml: &str) -> AlertmanagerConfig {
    Config::parse(yaml, "p.yml")
        .expect("config")
        .alerting
        .alertmanagers
        .remove(0)
}

fn discovered(addr: &str) -> Vec<TargetGroup> {
    vec![TargetGroup {
        source: "0".into(),
        targets: vec![Labels::from_pairs(&[("__address__", addr)])],
        labels: Labels::empty(),
    }]
}

use kiln_discovery::TargetGroup;

#[tokio::test]
async fn batches_reach_every_alertmanager_and_failures_are_retried_then_dropped() {
    let (tx, rx) = mpsc::channel();
    let ok = fake_alertmanager(200, tx.clone());
    let failing = fake_alertmanager(500, tx);
    let set = Arc::new(
        AlertmanagerSet::new(am_config(
            "alerting:\n  alertmanagers:\n    - path_prefix: /am\n      static_configs: [{targets: [x]}]\n",
        ))
        .expect("set"),
    );
    set.update(&discovered(&format!("127.0.0.1:{ok}")));
    assert_eq!(
        set.status().active,
        vec![format!("http://127.0.0.1:{ok}/am/api/v2/alerts")]
    );
    let notifier = Notifier::new(10);
    notifier.configure(AlertShaping::default(), vec![set.clone()]);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(notifier.clone().run(stop_rx));
    notifier.send(vec![alert(&[("alertname", "A")])]);
    let got = tokio::task::spawn_blocking(move || {
        rx.recv_timeout(std::time::Duration::from_secs(10))
            .map(|b| (b, rx))
    })
    .await
    .expect("join")
    .expect("the Alertmanager got a POST");
    let (body, rx) = got;
    assert!(body.starts_with("/am/api/v2/alerts ["), "{body}");
    assert!(body.contains(r#""alertname":"A""#), "{body}");

    // Only a failing Alertmanager: the batch is tried MAX_ATTEMPTS times, then dropped.
    set.update(&discovered(&format!("127.0.0.1:{failing}")));
    notifier.send(vec![alert(&[("alertname", "B")])]);
    let tries = tokio::task::spawn_blocking(move || {
        (0..MAX_ATTEMPTS)
            .filter(|_| rx.recv_timeout(std::time::Duration::from_secs(10)).is_ok())
            .count()
    })
    .await
    .expect("join");
    assert_eq!(tries, MAX_ATTEMPTS as usize);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while notifier.counters.dropped.load(Ordering::Relaxed) == 0 {
        assert!(std::time::Instant::now() < deadline, "batch never given up");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let per = notifier.counters.per_alertmanager.lock().clone();
    assert_eq!(
        per[&format!("http://127.0.0.1:{ok}/am/api/v2/alerts")],
        (1, 0)
    );
    assert_eq!(
        per[&format!("http://127.0.0.1:{failing}/am/api/v2/alerts")],
        (0, MAX_ATTEMPTS as u64)
    );
    let _ = stop_tx.send(true);
    task.await.expect("notifier stops");
}

#[test]
fn the_queue_drops_the_oldest_alerts_when_full() {
    let notifier = Notifier::new(2);
    notifier.send(vec![
        alert(&[("alertname", "1")]),
        alert(&[("alertname", "2")]),
        alert(&[("alertname", "3")]),
    ]);
    assert_eq!(notifier.queue_len(), 2);
    assert_eq!(notifier.counters.dropped.load(Ordering::Relaxed), 1);
    let left: Vec<String> = notifier
        .queue
        .lock()
        .iter()
        .filter_map(|a| a.labels.get("alertname").map(str::to_owned))
        .collect();
    assert_eq!(left, ["2", "3"]);
}

#[test]
fn relabelling_picks_and_drops_alertmanagers() {
    let set = AlertmanagerSet::new(am_config(
        "alerting:\n  alertmanagers:\n    - scheme: https\n      static_configs: [{targets: [x]}]\n      relabel_configs:\n        - {source_labels: [__address__], regex: 'drop.*', action: drop}\n",
    ))
    .expect("set");
    let mut groups = discovered("am1:9093");
    groups[0]
        .targets
        .push(Labels::from_pairs(&[("__address__", "drop-me:9093")]));
    set.update(&groups);
    let status = set.status();
    assert_eq!(status.active, ["https://am1:9093/api/v2/alerts"]);
    assert_eq!(status.dropped.len(), 1);
    assert_eq!(
        status.dropped[0].get("__alerts_path__"),
        Some("/api/v2/alerts")
    );
}
