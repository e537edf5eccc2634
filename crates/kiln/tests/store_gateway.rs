//! `kiln store` over a directory bucket that `kiln tools bucket upload-blocks` filled:
//! its query API answers as `kiln server` over the data directory the blocks came from
//! (with the blocks' external labels added), and (interop) a StoreAPI client generated
//! by Python's grpcio-tools reads Info and Series. No real Thanos querier runs here.

mod common;

use std::path::Path;

use common::{
    data_with_blocks, directory_bucket, free_port, http, python_storeapi_client, start_kiln_server,
    start_store, upload_blocks, url_encode,
};

const START: i64 = 1_700_000_000;

/// Uploads `data`'s blocks with `cluster="eu-1", replica="0"` into a directory bucket
/// and returns the `objstore.yml` naming it.
fn bucket_with_blocks(tmp: &Path, data: &Path) -> std::path::PathBuf {
    let config = directory_bucket(tmp);
    upload_blocks(&config, data, &["cluster=eu-1", "replica=0"]);
    config
}

fn store_over(tmp: &Path, config: &Path, grpc_port: u16) -> common::KilnServer {
    start_store(
        config,
        &tmp.join("store"),
        &format!("127.0.0.1:{grpc_port}"),
    )
}

fn get_json(port: u16, path: &str) -> serde_json::Value {
    let (status, body) = http(port, "GET", path).expect("HTTP answer");
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).expect("json")
}

/// A query answer's data without the external labels (so the server's and the
/// store's compare), warnings dropped.
fn without_external(mut v: serde_json::Value) -> serde_json::Value {
    if let Some(results) = v["data"]["result"].as_array_mut() {
        for r in results {
            if let Some(m) = r["metric"].as_object_mut() {
                m.remove("cluster");
                m.remove("replica");
            }
        }
    }
    v["data"].take()
}

#[test]
fn store_answers_as_the_server_over_the_same_blocks() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = data_with_blocks(tmp.path());
    let config = bucket_with_blocks(tmp.path(), &data);
    let server = start_kiln_server(&[
        "--storage.tsdb.path",
        data.to_str().expect("path"),
        "--web.listen-address",
        "127.0.0.1:0",
    ]);
    let store = store_over(tmp.path(), &config, free_port());

    // Off-grid ranges and steps over the five hours, instant queries between samples.
    let queries = [
        "gpu_temperature_celsius",
        "rate(training_steps_total[5m])",
        "histogram_quantile(0.9, sum by (le) (rate(inference_latency_seconds_bucket[10m])))",
        "avg_over_time(gpu_power_watts[17m])",
        "max by (gpu) (gpu_temperature_celsius{gpu=~\"[1-3]\"})",
        "count(up)",
    ];
    for q in queries {
        for (start, end, step) in [
            (START + 7, START + 5 * 3600 - 13, 97),
            (START + 3600 + 31, START + 3 * 3600, 421),
        ] {
            let path = format!(
                "/api/v1/query_range?query={}&start={start}&end={end}&step={step}",
                url_encode(q)
            );
            let want = without_external(get_json(server.port, &path));
            let got = get_json(store.port, &path);
            assert_eq!(
                without_external(got),
                want,
                "{q} [{start}, {end}] step {step}"
            );
        }
        let path = format!(
            "/api/v1/query?query={}&time={}",
            url_encode(q),
            START + 2 * 3600 + 29
        );
        assert_eq!(
            without_external(get_json(store.port, &path)),
            without_external(get_json(server.port, &path)),
            "{q} instant"
        );
    }
    // Series carry the blocks' external labels.
    let series = get_json(
        store.port,
        &format!(
            "/api/v1/series?match[]=gpu_temperature_celsius&start={START}&end={}",
            START + 5 * 3600
        ),
    );
    let series = series["data"].as_array().expect("series");
    assert_eq!(series.len(), 4);
    assert!(
        series
            .iter()
            .all(|s| s["cluster"] == "eu-1" && s["replica"] == "0")
    );
    let labels = get_json(store.port, "/api/v1/labels");
    let labels: Vec<&str> = labels["data"]
        .as_array()
        .expect("labels")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(
        labels.contains(&"cluster") && labels.contains(&"gpu"),
        "{labels:?}"
    );
    let gpus = get_json(store.port, "/api/v1/label/gpu/values");
    assert_eq!(gpus["data"], serde_json::json!(["0", "1", "2", "3"]));
    let cluster = get_json(store.port, "/api/v1/label/cluster/values");
    assert_eq!(cluster["data"], serde_json::json!(["eu-1"]));

    let (_, metrics) = http(store.port, "GET", "/metrics").expect("metrics");
    let blocks = std::fs::read_dir(&data)
        .expect("list")
        .flatten()
        .filter(|e| e.path().join("meta.json").exists())
        .count();
    assert!(
        metrics.contains(&format!("thanos_bucket_store_blocks_loaded {blocks}")),
        "{metrics}"
    );
    assert!(metrics.contains("thanos_objstore_bucket_operations_total{bucket="));
}

const CLIENT: &str = r#"
import json, sys
sys.path.insert(0, sys.argv[1])
import grpc
import store_pb2, store_pb2_grpc, info_pb2, info_pb2_grpc

channel = grpc.insecure_channel(sys.argv[2])
info = info_pb2_grpc.InfoStub(channel).Info(info_pb2.InfoRequest(), timeout=10)
store = store_pb2_grpc.StoreStub(channel)
eq = store_pb2.LabelMatcher.EQ
req = store_pb2.SeriesRequest(
    min_time=0, max_time=2**62,
    matchers=[store_pb2.LabelMatcher(type=eq, name="__name__", value="gpu_temperature_celsius")])
series = []
chunks = 0
for resp in store.Series(req, timeout=30):
    if resp.WhichOneof("result") != "series":
        continue
    series.append(",".join(f"{l.name}={l.value}" for l in resp.series.labels))
    chunks += len(resp.series.chunks)
other = store_pb2.SeriesRequest(
    min_time=0, max_time=2**62,
    matchers=[store_pb2.LabelMatcher(type=eq, name="cluster", value="us-1"),
              store_pb2.LabelMatcher(type=eq, name="__name__", value="gpu_temperature_celsius")])
none = sum(1 for r in store.Series(other, timeout=30) if r.WhichOneof("result") == "series")
print(json.dumps({
    "component": info.ComponentType,
    "label_sets": [[[l.name, l.value] for l in ls.labels] for ls in info.label_sets],
    "min_time": info.store.min_time,
    "max_time": info.store.max_time,
    "series": series,
    "chunks": chunks,
    "other_cluster": none,
}))
"#;

#[test]
#[cfg_attr(
    not(kiln_interop),
    ignore = "interop: needs KILN_INTEROP=1 and Python's grpcio-tools (scripts/test installs it)"
)]
fn a_python_grpc_client_reads_the_store() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = data_with_blocks(tmp.path());
    let config = bucket_with_blocks(tmp.path(), &data);
    let grpc_port = free_port();
    let _store = store_over(tmp.path(), &config, grpc_port);

    let got = python_storeapi_client(tmp.path(), CLIENT, grpc_port, &[]);
    assert_eq!(got["component"], "store");
    assert_eq!(
        got["label_sets"],
        serde_json::json!([[["cluster", "eu-1"], ["replica", "0"]]])
    );
    assert_eq!(got["min_time"], START * 1000);
    let max = got["max_time"].as_i64().expect("max");
    assert!(
        ((START + 5 * 3600 - 60) * 1000..i64::MAX).contains(&max),
        "{max}"
    );
    let series = got["series"].as_array().expect("series");
    assert_eq!(series.len(), 4, "{series:?}");
    assert!(series.iter().all(|s| {
        let s = s.as_str().unwrap_or_default();
        s.contains("cluster=eu-1") && s.ends_with("replica=0")
    }));
    assert!(got["chunks"].as_u64().expect("chunks") >= 4);
    assert_eq!(got["other_cluster"], 0);
}
