//! `kiln server` with Kubernetes discovery, end to end: a fake API server on loopback
//! (`crates/kiln-discovery/tests/fixtures/kubernetes/fake_apiserver.py`) serves
//! recorded-style list responses of an ML cluster; every role is discovered and shows
//! in the targets API with its `__meta_kubernetes_*` labels. Targets are dropped by
//! relabeling (their pod IPs are not on loopback), which keeps them listed with their
//! discovered labels; one job keeps a relabeled target and scrapes it.
//!
//! Debian's Prometheus 2.42 is built without Kubernetes discovery, so there is no
//! side-by-side run here; the per-label checks against Prometheus's documentation live
//! in `kiln-discovery`'s tests.

mod common;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{ChildGuard, free_port, http, start_kiln_server, wait_for};

/// Role -> number of targets the fixtures give.
const ROLES: [(&str, usize); 6] = [
    ("node", 3),
    ("pod", 12),
    ("service", 3),
    ("endpoints", 7),
    ("endpointslice", 7),
    ("ingress", 3),
];

#[test]
fn every_kubernetes_role_is_discovered() {
    let fixtures = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../kiln-discovery/tests/fixtures/kubernetes"
    );
    let api_port = free_port();
    let _api = ChildGuard(
        Command::new("python3")
            .arg(format!("{fixtures}/fake_apiserver.py"))
            .arg(api_port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the fake API server (python3)"),
    );
    let tmp = tempfile::tempdir().expect("tempdir");
    let api = format!("http://127.0.0.1:{api_port}");
    let mut yaml = String::from("global:\n  scrape_interval: 1s\nscrape_configs:\n");
    for (role, _) in ROLES {
        yaml.push_str(&format!(
            "  - job_name: k8s-{role}\n    kubernetes_sd_configs:\n      - role: {role}\n        \
             api_server: {api}\n    relabel_configs:\n      - action: drop\n        \
             source_labels: [__address__]\n        regex: '.*'\n"
        ));
    }
    // The lecture's pattern: keep pods annotated prometheus.io/scrape, take the port from
    // prometheus.io/port; here the address is then pointed at Kiln itself.
    yaml.push_str(&format!(
        "  - job_name: annotated-pods\n    kubernetes_sd_configs:\n      - role: pod\n        \
         api_server: {api}\n        namespaces: {{names: [ml-training]}}\n    relabel_configs:\n      \
         - source_labels: [__meta_kubernetes_pod_annotation_prometheus_io_scrape]\n        action: keep\n        regex: 'true'\n      \
         - source_labels: [__meta_kubernetes_pod_annotation_prometheus_io_port]\n        action: keepequal\n        target_label: __meta_kubernetes_pod_container_port_number\n      \
         - source_labels: [__meta_kubernetes_pod_name]\n        target_label: pod\n      \
         - target_label: __address__\n        replacement: KILN_ADDRESS\n    metrics_path: /metrics\n"
    ));
    let config = tmp.path().join("prometheus.yml");
    let kiln_port = free_port();
    std::fs::write(
        &config,
        yaml.replace("KILN_ADDRESS", &format!("127.0.0.1:{kiln_port}")),
    )
    .expect("write config");
    let kiln = start_kiln_server(&[
        "--web.listen-address",
        &format!("127.0.0.1:{kiln_port}"),
        "--storage.tsdb.path",
        tmp.path().join("data").to_str().expect("path"),
        "--config.file",
        config.to_str().expect("path"),
    ]);

    let deadline = Instant::now() + Duration::from_secs(30);
    let dropped = loop {
        let (_, body) = http(kiln.port, "GET", "/api/v1/targets?state=dropped").expect("targets");
        let v: serde_json::Value = serde_json::from_str(&body).expect("json");
        let mut by_job: BTreeMap<String, Vec<serde_json::Value>> = BTreeMap::new();
        for t in v["data"]["droppedTargets"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            let job = t["discoveredLabels"]["job"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            by_job.entry(job).or_default().push(t);
        }
        let complete = ROLES
            .iter()
            .all(|(role, n)| by_job.get(&format!("k8s-{role}")).map(Vec::len) == Some(*n));
        if complete {
            break by_job;
        }
        assert!(
            Instant::now() < deadline,
            "not every role discovered within 30 s: {:?}",
            by_job.iter().map(|(k, v)| (k, v.len())).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    let has = |job: &str, address: &str, name: &str, value: &str| {
        let found = dropped[job].iter().any(|t| {
            t["discoveredLabels"]["__address__"] == address && t["discoveredLabels"][name] == value
        });
        assert!(found, "{job}: no target {address} with {name}={value}");
    };
    has(
        "k8s-node",
        "10.0.1.11:10250",
        "__meta_kubernetes_node_name",
        "gpu-node-1",
    );
    has(
        "k8s-pod",
        "10.244.1.5:9400",
        "__meta_kubernetes_pod_container_name",
        "dcgm-exporter",
    );
    has(
        "k8s-service",
        "triton.ml-training.svc:8002",
        "__meta_kubernetes_service_port_name",
        "metrics",
    );
    has(
        "k8s-endpoints",
        "10.244.2.7:8002",
        "__meta_kubernetes_endpoint_ready",
        "true",
    );
    has(
        "k8s-endpointslice",
        "10.244.1.9:8000",
        "__meta_kubernetes_endpointslice_endpoint_conditions_ready",
        "false",
    );
    has(
        "k8s-ingress",
        "infer.example.com",
        "__meta_kubernetes_ingress_scheme",
        "https",
    );

    // The annotated trainer pod's metrics port became a scraped target.
    wait_for(
        kiln.port,
        "up%7Bjob%3D%22annotated-pods%22%7D",
        &[r#""pod":"trainer-0""#, r#","1"]"#],
        Duration::from_secs(30),
    );
}
