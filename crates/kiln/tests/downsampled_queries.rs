//! Queries over downsampled data through `kiln store`, against `kiln server` holding the
//! same fifteen days raw: at raw resolution the answers are equal; at 5m and 1h they are
//! within the documented error (docs/store-gateway.md#downsampled-data) for the
//! functions whose aggregate the store reads; where raw data is gone, coarser data
//! answers with a warning.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{
    compact_once, directory_bucket, http, ok_stdout, start_kiln_server, start_store, upload_blocks,
    url_encode,
};

/// 2023-10-26 00:00 UTC: on a 14-day boundary (counted from the epoch, as the
/// compactor's windows are), so the first 14-day window fills.
const START: i64 = 1_698_278_400;
const DAYS: i64 = 15;

fn kiln(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .output()
        .expect("run kiln")
}

/// A matrix answer: `(labels, [(t, v)])` per series.
type Series = Vec<(String, Vec<(f64, f64)>)>;

/// A matrix answer, external labels dropped, sorted; and its warnings.
fn matrix(port: u16, path: &str) -> (Series, Vec<String>) {
    let (status, body) = http(port, "GET", path).expect("answer");
    assert_eq!(status, 200, "{path}: {body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    let mut out = Vec::new();
    for r in v["data"]["result"].as_array().expect("result") {
        let mut m = r["metric"].as_object().expect("metric").clone();
        m.remove("cluster");
        let key = serde_json::to_string(&m).expect("labels");
        let points = r["values"]
            .as_array()
            .expect("values")
            .iter()
            .map(|p| {
                let t = p[0].as_f64().expect("t");
                let v: f64 = p[1].as_str().expect("v").parse().expect("number");
                (t, v)
            })
            .collect();
        out.push((key, points));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    let warnings = v["warnings"]
        .as_array()
        .map(|w| {
            w.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    (out, warnings)
}

/// The largest relative error of `got` against `want` over points both have, and how
/// many of `want`'s points `got` has.
fn compare(want: &Series, got: &Series) -> (f64, usize, usize) {
    let (mut worst, mut matched, mut total) = (0.0f64, 0, 0);
    for (labels, points) in want {
        let Some((_, other)) = got.iter().find(|(l, _)| l == labels) else {
            total += points.len();
            continue;
        };
        for (t, v) in points {
            total += 1;
            if let Some((_, g)) = other.iter().find(|(ot, _)| ot == t) {
                matched += 1;
                if v.is_finite() && g.is_finite() {
                    let scale = v.abs().max(1.0);
                    worst = worst.max((g - v).abs() / scale);
                }
            }
        }
    }
    (worst, matched, total)
}

#[test]
fn downsampled_answers_stay_within_the_documented_error() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    let om = root.join("in.om");
    common::write_openmetrics(&om, START, DAYS * 24, 60);
    let data = root.join("data");
    common::backfill(&om, &data);
    // Prometheus's copy, taken before `kiln server` (which compacts) opens the data.
    #[cfg(kiln_interop)]
    let prom_data = {
        let p = root.join("prom-data");
        common::copy_dir(&data, &p);
        p
    };
    let config = directory_bucket(root);
    upload_blocks(&config, &data, &["cluster=eu-1"]);
    let work = root.join("work");
    for _ in 0..2 {
        compact_once(&config, &work, &[]);
    }
    let config = config.to_str().expect("path");
    let wide = ok_stdout(
        "ls",
        kiln(&[
            "tools",
            "bucket",
            "--objstore.config-file",
            config,
            "ls",
            "-o",
            "wide",
        ]),
    );
    assert!(wide.contains("Downsample: 300000"), "{wide}");
    assert!(wide.contains("Downsample: 3600000"), "{wide}");

    let server = start_kiln_server(&[
        "--storage.tsdb.path",
        data.to_str().expect("path"),
        "--web.listen-address",
        "127.0.0.1:0",
    ]);
    let store = start_store(Path::new(config), &root.join("store"), "127.0.0.1:0");

    // Twelve days inside the 14-day block, 2h steps between samples.
    let (start, end, step) = (START + 3600 + 17, START + 13 * 86_400 - 17, 7200);
    let range = |q: &str, res: &str| {
        format!(
            "/api/v1/query_range?query={}&start={start}&end={end}&step={step}&max_source_resolution={res}",
            url_encode(q)
        )
    };
    // Function, largest relative error allowed at 5m and at 1h (docs/store-gateway.md).
    // Measured (this data, 6h ranges, 2h steps): max 1.0e-4, min 1.7e-4 at both
    // resolutions; avg 9.6e-4 at 5m, 8.2e-3 at 1h; increase 8.3e-3 at 5m, 9.6e-2 at 1h;
    // sum_over_time 1.6e-2 at both (a window at each end of the range counted whole).
    let cases: [(&str, f64, f64); 5] = [
        ("max_over_time(gpu_temperature_celsius[6h])", 1e-3, 1e-3),
        ("min_over_time(gpu_temperature_celsius[6h])", 1e-3, 1e-3),
        ("avg_over_time(gpu_temperature_celsius[6h])", 5e-3, 2e-2),
        ("increase(training_steps_total[6h])", 2e-2, 0.15),
        ("sum_over_time(gpu_temperature_celsius[6h])", 2e-2, 2e-2),
    ];
    for (q, err_5m, err_1h) in cases {
        let (raw, _) = matrix(server.port, &range(q, "raw"));
        assert!(!raw.is_empty(), "{q}");
        let (store_raw, w) = matrix(store.port, &range(q, "raw"));
        assert!(w.is_empty(), "{q}: {w:?}");
        assert_eq!(compare(&raw, &store_raw).0, 0.0, "{q} at raw");
        for (res, allowed) in [("5m", err_5m), ("1h", err_1h)] {
            let (got, _) = matrix(store.port, &range(q, res));
            let (worst, matched, total) = compare(&raw, &got);
            assert!(
                matched * 10 >= total * 9,
                "{q} at {res}: {matched}/{total} points"
            );
            assert!(
                worst <= allowed,
                "{q} at {res}: relative error {worst} > {allowed}"
            );
        }
    }

    // A real Prometheus over the same data answers the raw queries as the store does.
    #[cfg(kiln_interop)]
    {
        common::require_peer("prometheus", "prometheus");
        let prom_config = root.join("prometheus.yml");
        std::fs::write(&prom_config, "global:\n  scrape_interval: 1h\n").expect("config");
        let port = common::free_port();
        let _prom = common::start_prometheus(
            &prom_config,
            &prom_data,
            port,
            &["--storage.tsdb.retention.time=100y"],
        );
        common::wait_ready(port, std::time::Duration::from_secs(60));
        // From 7h on: where a range reaches back before the data's first sample,
        // Prometheus 2.42 and 3 extrapolate `increase` differently (Kiln follows 3; see
        // docs/compatibility.md).
        let later = |q: &str| {
            range(q, "raw").replace(
                &format!("start={start}"),
                &format!("start={}", START + 7 * 3600 + 17),
            )
        };
        for (q, _, _) in cases {
            let (prom, _) = matrix(port, &later(q));
            let (ours, _) = matrix(store.port, &later(q));
            let (worst, matched, total) = compare(&prom, &ours);
            assert_eq!(
                (matched, total),
                (total, prom.iter().map(|s| s.1.len()).sum()),
                "{q}"
            );
            assert!(worst < 1e-9, "{q}: store and Prometheus differ by {worst}");
        }
    }

    // `auto` with a 2h step reads 1h data here (a fifth of the step, 24 min, allows
    // 5m); the answer carries no warning while the data it asks for is there.
    let (_, w) = matrix(
        store.port,
        &range("max_over_time(gpu_temperature_celsius[6h])", "auto"),
    );
    assert!(w.is_empty(), "{w:?}");
}

/// Raw blocks gone (retention), 5m data answers raw queries with a warning.
#[test]
fn coarser_data_fills_in_for_expired_raw_data_with_a_warning() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    let om = root.join("in.om");
    common::write_openmetrics(&om, START, 3 * 24, 60);
    let data = root.join("data");
    common::backfill(&om, &data);
    let config = directory_bucket(root);
    upload_blocks(&config, &data, &["cluster=eu-1"]);
    let work = root.join("work");
    compact_once(&config, &work, &[]);
    // Raw retention of one day: the (old) raw blocks go, their 5m version stays.
    compact_once(&config, &work, &["--retention.resolution-raw", "1d"]);
    let store = start_store(&config, &root.join("store"), "127.0.0.1:0");
    let path = format!(
        "/api/v1/query_range?query={}&start={}&end={}&step=3600",
        url_encode("max_over_time(gpu_temperature_celsius[1h])"),
        START + 3600,
        START + 40 * 3600
    );
    let (got, warnings) = matrix(store.port, &path);
    assert_eq!(got.len(), 4, "the 5m data answers");
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("5m downsampled data") && w.contains("raw resolution")),
        "{warnings:?}"
    );
}
