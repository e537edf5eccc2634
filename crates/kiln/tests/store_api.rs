//! `kiln server --grpc-address` read by a StoreAPI client generated outside Rust: Python's
//! `grpcio-tools` compiles `crates/kiln-storeapi/proto/` and a Python script calls Info,
//! LabelNames, LabelValues and Series; what it gets must match what the data directory
//! holds (`kiln tsdb dump`). No real Thanos querier runs here.

mod common;

use common::{
    data_with_blocks, external_labels_config, free_port, kiln, ok_stdout, python_storeapi_client,
    start_kiln_server,
};

const CLIENT: &str = r#"
import json, sys
sys.path.insert(0, sys.argv[1])
import grpc
import store_pb2, store_pb2_grpc, info_pb2, info_pb2_grpc

channel = grpc.insecure_channel(sys.argv[2])
info = info_pb2_grpc.InfoStub(channel).Info(info_pb2.InfoRequest(), timeout=10)
store = store_pb2_grpc.StoreStub(channel)
names = store.LabelNames(store_pb2.LabelNamesRequest(start=0, end=2**62), timeout=10)
values = store.LabelValues(store_pb2.LabelValuesRequest(label="gpu", start=0, end=2**62), timeout=10)
eq = store_pb2.LabelMatcher.EQ
req = store_pb2.SeriesRequest(
    min_time=0, max_time=2**62,
    matchers=[store_pb2.LabelMatcher(type=eq, name="__name__", value=sys.argv[3]),
              store_pb2.LabelMatcher(type=eq, name="cluster", value="eu-1")])
series = {}
for resp in store.Series(req, timeout=30):
    if resp.WhichOneof("result") != "series":
        continue
    key = ",".join(f"{l.name}={l.value}" for l in resp.series.labels)
    s = series.setdefault(key, {"chunks": 0, "min": None, "max": None})
    for c in resp.series.chunks:
        assert c.raw.type == store_pb2.Chunk.XOR
        s["chunks"] += 1
        s["min"] = c.min_time if s["min"] is None else min(s["min"], c.min_time)
        s["max"] = c.max_time if s["max"] is None else max(s["max"], c.max_time)
print(json.dumps({
    "component": info.ComponentType,
    "label_sets": [[[l.name, l.value] for l in ls.labels] for ls in info.label_sets],
    "min_time": info.store.min_time,
    "names": list(names.names),
    "gpu_values": list(values.values),
    "series": series,
}))
"#;

#[test]
#[cfg_attr(
    not(kiln_interop),
    ignore = "interop: needs KILN_INTEROP=1 and Python's grpcio-tools (scripts/test installs it)"
)]
fn a_python_grpc_client_reads_the_server() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = data_with_blocks(tmp.path());
    let cfg = external_labels_config(tmp.path());
    let grpc_port = free_port();
    let _server = start_kiln_server(&[
        "--config.file",
        cfg.to_str().expect("path"),
        "--storage.tsdb.path",
        data.to_str().expect("path"),
        "--web.listen-address",
        "127.0.0.1:0",
        "--grpc-address",
        &format!("127.0.0.1:{grpc_port}"),
    ]);

    // The client, generated from Kiln's proto files by Python's protoc.
    let got = python_storeapi_client(tmp.path(), CLIENT, grpc_port, &["gpu_temperature_celsius"]);
    assert_eq!(got["component"], "sidecar");
    assert_eq!(
        got["label_sets"],
        serde_json::json!([[["cluster", "eu-1"], ["replica", "0"]]])
    );
    assert_eq!(got["min_time"], 1_700_000_000_000i64);
    let names: Vec<&str> = got["names"]
        .as_array()
        .expect("names")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(
        names.contains(&"__name__") && names.contains(&"cluster"),
        "{names:?}"
    );
    assert_eq!(got["gpu_values"], serde_json::json!(["0", "1", "2", "3"]));

    // The same series as the data directory holds, with the external labels added.
    let dump = ok_stdout(
        "kiln tsdb dump",
        kiln(&[
            "tsdb",
            "dump",
            "--match",
            "gpu_temperature_celsius",
            data.to_str().expect("path"),
        ]),
    );
    let mut stored: Vec<String> = dump
        .lines()
        .filter_map(|l| l.split_once("} ").map(|(labels, _)| labels.to_owned()))
        .collect();
    stored.sort();
    stored.dedup();
    let series = got["series"].as_object().expect("series");
    assert_eq!(series.len(), stored.len(), "{series:?}");
    for (labels, s) in series {
        assert!(
            labels.contains(",cluster=eu-1,") && labels.ends_with(",replica=0"),
            "{labels}"
        );
        assert!(s["chunks"].as_u64().expect("chunks") >= 1, "{labels}: {s}");
        assert!(
            s["min"].as_i64().expect("min") >= 1_700_000_000_000,
            "{labels}: {s}"
        );
    }
}
