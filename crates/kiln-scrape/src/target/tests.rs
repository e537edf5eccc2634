//! Target population against Prometheus 3's documented behaviour.

use super::*;
use kiln_config::Config;

fn config(yaml: &str) -> ScrapeConfig {
    Config::parse(yaml, "test.yml")
        .expect("config")
        .scrape_configs
        .remove(0)
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_pairs(pairs)
}

fn active(outcome: Result<TargetOutcome, TargetError>) -> Target {
    match outcome {
        Ok(TargetOutcome::Active(t)) => t,
        other => panic!("expected an active target, got {other:?}"),
    }
}

#[test]
fn defaults_instance_and_url() {
    let cfg = config(
        "scrape_configs:\n  - job_name: node\n    scrape_interval: 30s\n    params:\n      module: [if_mib, extra]\n      'match[]': ['{job=\"a b\"}']\n",
    );
    let t = active(populate_target(
        &cfg,
        &labels(&[("__address__", "10.0.0.1:9100")]),
        &labels(&[("rack", "r1")]),
    ));
    assert_eq!(
        *t.discovered_labels(),
        labels(&[
            ("__address__", "10.0.0.1:9100"),
            ("__metrics_path__", "/metrics"),
            ("__param_match[]", "{job=\"a b\"}"),
            ("__param_module", "if_mib"),
            ("__scheme__", "http"),
            ("__scrape_interval__", "30s"),
            ("__scrape_timeout__", "10s"),
            ("job", "node"),
            ("rack", "r1"),
        ])
    );
    assert_eq!(
        t.series_labels(),
        labels(&[
            ("instance", "10.0.0.1:9100"),
            ("job", "node"),
            ("rack", "r1")
        ])
    );
    assert_eq!(
        t.url(),
        "http://10.0.0.1:9100/metrics?match%5B%5D=%7Bjob%3D%22a+b%22%7D&module=if_mib&module=extra"
    );
    assert_eq!(t.interval(), Duration::from_secs(30));
    assert_eq!(t.timeout(), Duration::from_secs(10));
}

#[test]
fn relabeling_shapes_the_target() {
    // The lecture's pod scraping: keep annotated pods, take path and port from
    // annotations.
    let cfg = config(
        r#"
scrape_configs:
  - job_name: ml-training-jobs
    relabel_configs:
      - source_labels: [__meta_kubernetes_pod_annotation_prometheus_io_scrape]
        action: keep
        regex: true
      - source_labels: [__meta_kubernetes_pod_annotation_prometheus_io_path]
        action: replace
        target_label: __metrics_path__
        regex: (.+)
      - source_labels: [__address__, __meta_kubernetes_pod_annotation_prometheus_io_port]
        action: replace
        regex: ([^:]+)(?::\d+)?;(\d+)
        replacement: $1:$2
        target_label: __address__
      - source_labels: [__meta_kubernetes_namespace]
        target_label: namespace
      - source_labels: [__meta_kubernetes_pod_name]
        target_label: __param_pod
"#,
    );
    let pod = labels(&[
        ("__address__", "10.1.2.3:8080"),
        ("__meta_kubernetes_namespace", "training"),
        ("__meta_kubernetes_pod_name", "trainer-0"),
        (
            "__meta_kubernetes_pod_annotation_prometheus_io_scrape",
            "true",
        ),
        (
            "__meta_kubernetes_pod_annotation_prometheus_io_path",
            "/stats",
        ),
        (
            "__meta_kubernetes_pod_annotation_prometheus_io_port",
            "9400",
        ),
    ]);
    let t = active(populate_target(&cfg, &pod, &Labels::empty()));
    assert_eq!(t.url(), "http://10.1.2.3:9400/stats?pod=trainer-0");
    assert_eq!(
        t.series_labels(),
        labels(&[
            ("instance", "10.1.2.3:9400"),
            ("job", "ml-training-jobs"),
            ("namespace", "training")
        ])
    );
    // No __meta_ label survives; the discovered set keeps them.
    assert!(t.labels().iter().all(|l| !l.name.starts_with("__meta_")));
    assert!(
        t.discovered_labels()
            .get("__meta_kubernetes_pod_name")
            .is_some()
    );

    let unannotated = labels(&[("__address__", "10.1.2.4:8080")]);
    match populate_target(&cfg, &unannotated, &Labels::empty()) {
        Ok(TargetOutcome::Dropped { discovered }) => {
            assert_eq!(discovered.get("__address__"), Some("10.1.2.4:8080"))
        }
        other => panic!("expected a dropped target, got {other:?}"),
    }
}

#[test]
fn own_labels_win_and_schedule_can_be_relabeled() {
    let cfg = config(
        "scrape_configs:\n  - job_name: j\n    scrape_interval: 1m\n    relabel_configs:\n      - target_label: __scrape_interval__\n        replacement: 15s\n      - target_label: __scrape_timeout__\n        replacement: 5s\n",
    );
    let t = active(populate_target(
        &cfg,
        &labels(&[
            ("__address__", "a:1"),
            ("job", "mine"),
            ("instance", "custom"),
        ]),
        &labels(&[("job", "group"), ("zone", "z")]),
    ));
    assert_eq!(
        t.series_labels(),
        labels(&[("instance", "custom"), ("job", "mine"), ("zone", "z")])
    );
    assert_eq!(t.interval(), Duration::from_secs(15));
    assert_eq!(t.timeout(), Duration::from_secs(5));
}

/// Config lines added to a base config, the target's labels, and the expected error.
type ErrorCase<'a> = (&'a str, &'a [(&'a str, &'a str)], TargetError);

#[test]
fn bad_targets_are_errors() {
    let base = "scrape_configs:\n  - job_name: j\n    scrape_interval: 10s\n";
    let cases: &[ErrorCase<'_>] = &[
        ("", &[("x", "y")], TargetError::NoAddress),
        (
            "",
            &[("__address__", "http://a:1/metrics")],
            TargetError::InvalidAddress("http://a:1/metrics".into()),
        ),
        (
            "    relabel_configs:\n      - {target_label: __scrape_timeout__, replacement: 20s}\n",
            &[("__address__", "a:1")],
            TargetError::TimeoutAboveInterval {
                timeout: "20s".into(),
                interval: "10s".into(),
            },
        ),
        (
            "    relabel_configs:\n      - {target_label: __scrape_interval__, replacement: soon}\n",
            &[("__address__", "a:1")],
            TargetError::BadDuration {
                what: "interval",
                value: "soon".into(),
            },
        ),
        (
            "    relabel_configs:\n      - {target_label: __scrape_interval__, replacement: '0'}\n",
            &[("__address__", "a:1")],
            TargetError::ZeroDuration { what: "interval" },
        ),
        (
            "    relabel_configs:\n      - {target_label: __scheme__, replacement: ftp}\n",
            &[("__address__", "a:1")],
            TargetError::InvalidScheme("ftp".into()),
        ),
    ];
    for (extra, target, want) in cases {
        let cfg = config(&format!("{base}{extra}"));
        let got = populate_target(&cfg, &labels(target), &Labels::empty());
        assert_eq!(
            got.as_ref().err(),
            Some(want),
            "{extra} {target:?}: {got:?}"
        );
    }
}

#[test]
fn static_groups_populate_and_dedupe() {
    let cfg = config(
        "scrape_configs:\n  - job_name: j\n    static_configs:\n      - targets: ['a:1', 'b:2', 'a:1']\n        labels: {env: prod}\n      - targets: ['c:3', '']\n    relabel_configs:\n      - {source_labels: [__address__], regex: 'b:.*', action: drop}\n",
    );
    let groups: Vec<TargetGroup> = cfg
        .static_configs
        .iter()
        .enumerate()
        .map(|(i, s)| TargetGroup::from_static(i, s))
        .collect();
    let got = populate_targets(&cfg, &groups);
    let urls: Vec<&str> = got.active.iter().map(|t| t.url()).collect();
    assert_eq!(urls, ["http://a:1/metrics", "http://c:3/metrics"]);
    assert_eq!(got.active[0].series_labels().get("env"), Some("prod"));
    assert_eq!(got.dropped.len(), 1);
    assert_eq!(got.errors.len(), 1);
    assert_eq!(got.errors[0].1, TargetError::NoAddress);
}
