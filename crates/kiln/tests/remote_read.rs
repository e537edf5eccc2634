//! Remote read, both ends: Kiln serves `/api/v1/read`, and Kiln's `remote_read` client
//! merges a remote store's series into its queries. Between two Kilns always; with
//! `KILN_INTEROP=1` (interop tests) also a real Prometheus reading from Kiln and Kiln reading from a real
//! Prometheus.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;

const OM: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/gpu-fleet.om");

/// Queries compared between the store and its reader, over the example's data.
const QUERIES: &[&str] = &[
    "/api/v1/query?query=sum(nvidia_gpu_duty_cycle)&time=1767229200",
    "/api/v1/query?query=nvidia_gpu_duty_cycle%7Bgpu_id%3D%221%22%7D&time=1767229200",
    "/api/v1/query_range?query=sum%20by%20(gpu_id)%20(nvidia_gpu_duty_cycle)&start=1767225600&end=1767229200&step=600",
    // Off the 15 s grid: Prometheus 2.42's range selectors include a sample exactly at
    // their left end, Prometheus 3's (and Kiln's) do not.
    "/api/v1/query_range?query=rate(training_samples_processed_total%5B5m%5D)&start=1767225607&end=1767227407&step=300",
];

/// A Kiln data directory holding the example data as blocks.
fn backfilled_kiln(dir: &Path) -> PathBuf {
    let data = dir.join("store");
    backfill_example(&data);
    data
}

fn config_file(dir: &Path, name: &str, yaml: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, yaml).expect("write config");
    path
}

fn start(data: &Path, config: &Path) -> KilnServer {
    start_with(data, config, &[])
}

fn start_with(data: &Path, config: &Path, extra: &[&str]) -> KilnServer {
    let config = format!("--config.file={}", config.display());
    let data = format!("--storage.tsdb.path={}", data.display());
    let mut args = vec![
        config.as_str(),
        data.as_str(),
        "--web.listen-address=127.0.0.1:0",
        "--storage.tsdb.retention.time=0",
    ];
    args.extend_from_slice(extra);
    start_kiln_server(&args)
}

/// The `data` part of an API answer, with result series sorted.
fn data(port: u16, path: &str) -> serde_json::Value {
    let (status, body) = http(port, "GET", path).expect("query");
    assert_eq!(status, 200, "{path}: {body}");
    let mut v: serde_json::Value = serde_json::from_str(&body).expect("json");
    if let Some(r) = v["data"]["result"].as_array_mut() {
        r.sort_by_key(|x| x["metric"].to_string());
    }
    v["data"].take()
}

fn assert_same_answers(store: u16, reader: u16) {
    for q in QUERIES {
        let want = data(store, q);
        assert!(
            want["result"].as_array().is_some_and(|r| !r.is_empty()),
            "{q}: the store has nothing: {want}"
        );
        let got = data(reader, q);
        assert!(same(&got, &want), "{q}\nreader: {got}\nstore: {want}");
    }
}

/// Equal JSON, except that sample values (number strings) may differ in the last bits:
/// Prometheus 2.42's and Kiln's `rate` round differently (614.4 vs 614.4000000000001).
fn same(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (a, b) {
        (Value::String(x), Value::String(y)) => match (x.parse::<f64>(), y.parse::<f64>()) {
            (Ok(x), Ok(y)) => x == y || (x - y).abs() <= 1e-12 * x.abs().max(y.abs()),
            _ => x == y,
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

#[test]
fn kiln_reads_another_kilns_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store_data = backfilled_kiln(dir.path());
    // The store and the reader share external labels: the reader asks for its own
    // cluster's series, the store answers with its series labelled, the reader strips
    // the label again.
    let ext = "global:\n  external_labels: {cluster: b}\n";
    // Frames of at most ~256 bytes of chunks: the streamed answers span many frames,
    // more than are let in flight at once.
    let store = start_with(
        &store_data,
        &config_file(dir.path(), "store.yml", ext),
        &["--storage.remote.read-max-bytes-in-frame=256"],
    );
    let reader_config = config_file(
        dir.path(),
        "reader.yml",
        &format!(
            "{ext}remote_read:\n  - url: http://127.0.0.1:{}/api/v1/read\n",
            store.port
        ),
    );
    let reader = start(&dir.path().join("reader"), &reader_config);
    assert_same_answers(store.port, reader.port);

    // A reader whose selections lack the required matchers does not ask.
    let picky = config_file(
        dir.path(),
        "picky.yml",
        &format!(
            "remote_read:\n  - url: http://127.0.0.1:{}/api/v1/read\n    required_matchers: {{job: elsewhere}}\n",
            store.port
        ),
    );
    let picky = start(&dir.path().join("picky"), &picky);
    let none = data(picky.port, QUERIES[1]);
    assert_eq!(none["result"], serde_json::json!([]), "{none}");

    // A store that is down is a warning, not a failed query.
    drop(store);
    let (status, body) = http(reader.port, "GET", QUERIES[0]).expect("query");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"warnings\""), "{body}");
}

#[test]
#[cfg_attr(
    not(kiln_interop),
    ignore = "interop: needs KILN_INTEROP=1 and Debian's prometheus (scripts/test installs it)"
)]
fn a_real_prometheus_reads_kilns_data() {
    require_peer("prometheus", "prometheus");
    let dir = tempfile::tempdir().expect("tempdir");
    let store_data = backfilled_kiln(dir.path());
    let store = start(&store_data, &config_file(dir.path(), "store.yml", ""));
    let prom_config = config_file(
        dir.path(),
        "prometheus.yml",
        &format!(
            "remote_read:\n  - url: http://127.0.0.1:{}/api/v1/read\n",
            store.port
        ),
    );
    let port = free_port();
    let _prom = start_prometheus(&prom_config, &dir.path().join("prom"), port, &[]);
    wait_ready(port);
    assert_same_answers(store.port, port);
}

#[test]
#[cfg_attr(
    not(kiln_interop),
    ignore = "interop: needs KILN_INTEROP=1 and Debian's prometheus (prometheus and promtool) (scripts/test installs it)"
)]
fn kiln_reads_a_real_prometheus_data() {
    require_peer("prometheus", "prometheus");
    require_peer("promtool", "prometheus");
    let dir = tempfile::tempdir().expect("tempdir");
    let prom_data = dir.path().join("prom");
    ok_stdout(
        "promtool backfill",
        promtool(&[
            "tsdb",
            "create-blocks-from",
            "openmetrics",
            OM,
            prom_data.to_str().expect("path"),
        ]),
    );
    let prom_config = config_file(dir.path(), "prometheus.yml", "global: {}\n");
    let port = free_port();
    let _prom = start_prometheus(
        &prom_config,
        &prom_data,
        port,
        &["--storage.tsdb.retention.time=100y"],
    );
    wait_ready(port);
    let reader_config = config_file(
        dir.path(),
        "reader.yml",
        &format!("remote_read:\n  - url: http://127.0.0.1:{port}/api/v1/read\n"),
    );
    let reader = start(&dir.path().join("reader"), &reader_config);
    assert_same_answers(port, reader.port);
}

fn wait_ready(port: u16) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while http(port, "GET", "/-/ready").is_none_or(|(s, _)| s != 200) {
        assert!(std::time::Instant::now() < deadline, "prometheus not ready");
        std::thread::sleep(Duration::from_millis(200));
    }
}
