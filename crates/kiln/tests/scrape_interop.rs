//! Scraping real exporters (interop: built with `KILN_INTEROP=1`): a Python `prometheus_client` exporter
//! with fixed values and Debian's `prometheus-node-exporter`, scraped at the same time
//! by Kiln and by a real Prometheus with the same configuration. Kiln must store the
//! same series with the same values as Prometheus (for node_exporter, whose values move,
//! the same metric names).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    ChildGuard, free_port, http, require_peer, require_python_module, start_kiln_server,
    start_prometheus, url_encode,
};

fn spawn(cmd: &mut Command) -> ChildGuard {
    ChildGuard(
        cmd.stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}")),
    )
}

/// An instant query's answer as `canonical labels -> value`.
fn instant(port: u16, query: &str) -> Option<BTreeMap<String, String>> {
    let (status, body) = http(
        port,
        "GET",
        &format!("/api/v1/query?query={}", url_encode(query)),
    )?;
    if status != 200 {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    let mut out = BTreeMap::new();
    for r in v["data"]["result"].as_array()? {
        let metric: BTreeMap<String, String> = r["metric"]
            .as_object()?
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
            .collect();
        out.insert(format!("{metric:?}"), r["value"][1].as_str()?.to_owned());
    }
    Some(out)
}

fn wait_until(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ok() {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
#[cfg_attr(
    not(kiln_interop),
    ignore = "interop: needs KILN_INTEROP=1 and Debian's prometheus and prometheus-node-exporter, and Python's prometheus_client (scripts/test installs it)"
)]
fn kiln_stores_what_prometheus_stores_from_real_exporters() {
    require_peer("prometheus", "prometheus");
    require_peer("prometheus-node-exporter", "prometheus-node-exporter");
    require_python_module("prometheus_client");
    let tmp = tempfile::tempdir().expect("tempdir");
    let (py_port, node_port, prom_port) = (free_port(), free_port(), free_port());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/ml_exporter.py");
    let _python = spawn(Command::new("python3").arg(script).arg(py_port.to_string()));
    let _node = spawn(
        Command::new("prometheus-node-exporter")
            .arg(format!("--web.listen-address=127.0.0.1:{node_port}")),
    );
    let config = tmp.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: python\n    static_configs: [{{targets: ['127.0.0.1:{py_port}']}}]\n  - job_name: node\n    static_configs: [{{targets: ['127.0.0.1:{node_port}']}}]\n"
        ),
    )
    .expect("write config");
    let _prometheus = start_prometheus(&config, &tmp.path().join("prom"), prom_port, &[]);
    let kiln_dir = tmp.path().join("kiln");
    let kiln = start_kiln_server(&[
        "--web.listen-address",
        "127.0.0.1:0",
        "--storage.tsdb.path",
        kiln_dir.to_str().expect("path"),
        "--config.file",
        config.to_str().expect("path"),
    ]);
    let kiln_port = kiln.port;

    let both_up = |port: u16| {
        instant(port, "up == 1").is_some_and(|m| {
            m.keys().any(|k| k.contains("\"python\"")) && m.keys().any(|k| k.contains("\"node\""))
        })
    };
    wait_until(
        "both scrapers see both targets up",
        Duration::from_secs(60),
        || both_up(prom_port) && both_up(kiln_port),
    );
    // A couple more scrapes, so counters and staleness settle.
    std::thread::sleep(Duration::from_secs(2));

    // The Python exporter's values are fixed: same series, same values.
    let selector = "{job=\"python\", __name__!~\"up|scrape_.*\"}";
    let want = instant(prom_port, selector).expect("prometheus query");
    let got = instant(kiln_port, selector).expect("kiln query");
    assert!(want.len() >= 15, "too few series from Prometheus: {want:?}");
    let missing: Vec<_> = want.keys().filter(|k| !got.contains_key(*k)).collect();
    let extra: Vec<_> = got.keys().filter(|k| !want.contains_key(*k)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "series differ\nmissing in Kiln: {missing:#?}\nonly in Kiln: {extra:#?}"
    );
    for (series, value) in &want {
        assert_eq!(&got[series], value, "value of {series}");
    }

    // node_exporter's values move between scrapes: compare the metric names.
    let names = |port: u16| -> BTreeSet<String> {
        instant(port, "count by (__name__) ({job=\"node\"})")
            .expect("names query")
            .keys()
            .cloned()
            .collect()
    };
    let (want, got) = (names(prom_port), names(kiln_port));
    assert!(
        want.len() >= 50,
        "too few node_exporter metrics: {}",
        want.len()
    );
    let missing: Vec<_> = want.difference(&got).collect();
    let extra: Vec<_> = got.difference(&want).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "node_exporter metric names differ\nmissing in Kiln: {missing:#?}\nonly in Kiln: {extra:#?}"
    );

    // Metadata: the same families with the same type, help and unit.
    let metadata = |port: u16| -> serde_json::Value {
        let (status, body) = http(port, "GET", "/api/v1/metadata").expect("metadata");
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).expect("metadata JSON");
        v["data"].clone()
    };
    let (want, got) = (metadata(prom_port), metadata(kiln_port));
    for family in [
        "gpu_utilization_ratio",
        "training_tokens",
        "model_inference_duration_seconds",
        "trainer",
        "node_cpu_seconds_total",
    ] {
        assert_eq!(got[family], want[family], "metadata of {family}");
    }
    let names = |v: &serde_json::Value| -> BTreeSet<String> {
        v.as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default()
    };
    assert_eq!(names(&got), names(&want), "metadata families");
}

#[test]
#[cfg_attr(
    not(kiln_interop),
    ignore = "interop: needs KILN_INTEROP=1 and Debian's prometheus (scripts/test installs it)"
)]
fn kiln_federates_from_prometheus() {
    require_peer("prometheus", "prometheus");
    let tmp = tempfile::tempdir().expect("tempdir");
    let prom_port = free_port();
    let prom_config = tmp.path().join("prometheus.yml");
    std::fs::write(
        &prom_config,
        format!(
            "global:\n  scrape_interval: 1s\n  external_labels: {{cluster: regional}}\nscrape_configs:\n  - job_name: prometheus\n    static_configs: [{{targets: ['127.0.0.1:{prom_port}']}}]\n"
        ),
    )
    .expect("write prometheus config");
    let _prometheus = start_prometheus(&prom_config, &tmp.path().join("prom"), prom_port, &[]);
    // The lecture's global Prometheus: federate with honor_labels from the regional one.
    let kiln_config = tmp.path().join("kiln.yml");
    std::fs::write(
        &kiln_config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: federate-regional\n    honor_labels: true\n    metrics_path: /federate\n    params:\n      'match[]': ['{{job=\"prometheus\"}}']\n    static_configs: [{{targets: ['127.0.0.1:{prom_port}']}}]\n"
        ),
    )
    .expect("write kiln config");
    let kiln_dir = tmp.path().join("kiln");
    let kiln = start_kiln_server(&[
        "--web.listen-address",
        "127.0.0.1:0",
        "--storage.tsdb.path",
        kiln_dir.to_str().expect("path"),
        "--config.file",
        kiln_config.to_str().expect("path"),
    ]);
    let want = format!(
        "{{\"__name__\": \"up\", \"cluster\": \"regional\", \"instance\": \"127.0.0.1:{prom_port}\", \"job\": \"prometheus\"}}"
    );
    wait_until(
        "Kiln has Prometheus's up series",
        Duration::from_secs(60),
        || {
            instant(kiln.port, "up{job=\"prometheus\"}")
                .is_some_and(|m| m.get(&want).is_some_and(|v| v == "1"))
        },
    );
    // Every federated series carries the external label, and none got Kiln's target
    // instance (honor_labels keeps Prometheus's own).
    let federated = instant(kiln.port, "{job=\"prometheus\"}").expect("query");
    assert!(
        federated.len() > 50,
        "few federated series: {}",
        federated.len()
    );
    for series in federated.keys() {
        assert!(series.contains("\"cluster\": \"regional\""), "{series}");
        assert!(
            series.contains(&format!("\"instance\": \"127.0.0.1:{prom_port}\"")),
            "{series}"
        );
    }
}
