//! `kiln server` end to end: the Prometheus HTTP API over a backfilled data directory,
//! graceful shutdown on SIGTERM, and (interop tests, built with `KILN_INTEROP=1`) the real
//! promtool querying it and a real Prometheus federating from it.

mod common;

use std::process::Command;

use common::*;

fn start(data: &std::path::Path) -> KilnServer {
    start_with(data, &[])
}

fn start_with(data: &std::path::Path, extra_args: &[&str]) -> KilnServer {
    let data = data.to_str().expect("path");
    let mut args = vec![
        "--web.listen-address",
        "127.0.0.1:0",
        "--storage.tsdb.retention.time",
        "0",
        "--storage.tsdb.path",
        data,
    ];
    args.extend_from_slice(extra_args);
    start_kiln_server(&args)
}

fn backfilled() -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    backfill_example(&data);
    (tmp, data)
}

#[test]
fn http_api_answers_like_prometheus_and_shuts_down_cleanly() {
    let (_tmp, data) = backfilled();
    let mut server = start(&data);
    let get = |path: &str| http(server.port, "GET", path).expect("http request");

    let (status, body) = get("/api/v1/query?query=sum(nvidia_gpu_duty_cycle)&time=1767229200");
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1767229200,"530"]}]}}"#
    );

    let (status, body) = get(
        "/api/v1/query_range?query=training_samples_processed_total%7Bjob_id%3D%22bert-finetune-0977%22%7D&start=1767225600&end=1767225720&step=60",
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"__name__":"training_samples_processed_total","job_id":"bert-finetune-0977","job_name":"bert-finetune","namespace":"nlp"},"values":[[1767225600,"288192"],[1767225660,"288960"],[1767225720,"289760"]]}]}}"#
    );

    let (_, body) = get("/api/v1/label/gpu_id/values");
    assert_eq!(body, r#"{"status":"success","data":["0","1","2","3"]}"#);
    let (_, body) = get("/api/v1/series?match%5B%5D=training_samples_processed_total");
    assert!(
        body.contains(r#"{"__name__":"training_samples_processed_total","job_id":"llama-pretrain-0412","job_name":"llama-pretrain","namespace":"llm-research"}"#),
        "{body}"
    );
    // The server's own scrape adds label names of its own; the example data's are there.
    let (_, body) = get("/api/v1/labels");
    assert!(
        body.starts_with(r#"{"status":"success","data":["__name__","#),
        "{body}"
    );
    for name in [
        "gpu_id",
        "job_name",
        "model_version",
        "pipeline_stage",
        "validation_rule",
    ] {
        assert!(body.contains(&format!("\"{name}\"")), "{name}: {body}");
    }

    // Errors carry Prometheus's errorType and status.
    let (status, body) = get("/api/v1/query?query=sum(");
    assert_eq!(status, 400);
    assert!(
        body.starts_with(r#"{"status":"error","errorType":"bad_data","error":"#),
        "{body}"
    );
    let (status, _) = get("/api/v1/query_range?query=up&start=10&end=0&step=1");
    assert_eq!(status, 400);
    assert_eq!(get("/-/healthy").0, 200);
    assert_eq!(get("/-/ready").0, 200);

    // SIGTERM: the server stops serving and closes the database, exit code 0.
    let pid = server.child.id().to_string();
    Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("send SIGTERM");
    let status = server.child.wait().expect("wait for server");
    assert!(status.success(), "clean shutdown: {status}");
}

#[test]
#[cfg_attr(
    not(kiln_interop),
    ignore = "interop: needs KILN_INTEROP=1 and promtool from Debian's prometheus (scripts/test installs it)"
)]
fn promtool_queries_kiln() {
    require_peer("promtool", "prometheus");
    let (_tmp, data) = backfilled();
    let server = start(&data);
    let url = format!("http://127.0.0.1:{}", server.port);
    let out = ok_stdout(
        "promtool query instant",
        promtool(&[
            "query",
            "instant",
            "--time=1767229200",
            &url,
            "nvidia_gpu_duty_cycle{node=\"gpu-node-2\",gpu_id=\"1\"}",
        ]),
    );
    assert_eq!(
        out.trim(),
        r#"nvidia_gpu_duty_cycle{gpu_id="1", job_name="bert-finetune", namespace="nlp", node="gpu-node-2"} => 11 @[1767229200]"#
    );
    let out = ok_stdout(
        "promtool query range",
        promtool(&[
            "query",
            "range",
            "--start=1767225600",
            "--end=1767229200",
            "--step=30m",
            &url,
            "sum by (gpu_id) (nvidia_gpu_duty_cycle)",
        ]),
    );
    assert!(
        out.contains("{gpu_id=\"0\"} =>\n97 @[1767225600]\n107 @[1767227400]\n96 @[1767229200]"),
        "{out}"
    );
    let out = ok_stdout(
        "promtool query labels",
        promtool(&["query", "labels", &url, "gpu_id"]),
    );
    assert_eq!(out.lines().collect::<Vec<_>>(), vec!["0", "1", "2", "3"]);
    let out = ok_stdout(
        "promtool query series",
        promtool(&[
            "query",
            "series",
            "--match=training_samples_processed_total",
            &url,
        ]),
    );
    assert_eq!(out.lines().count(), 3, "{out}");
}

/// A data directory backfilled with samples up to 30 s ago, so `/federate` (which looks
/// back 5 minutes from now) sees them. Returns the newest sample time, in seconds.
fn backfilled_recent() -> (tempfile::TempDir, std::path::PathBuf, i64) {
    use std::fmt::Write as _;
    let tmp = tempfile::tempdir().expect("tempdir");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let newest = now - 30;
    let mut om = String::new();
    om.push_str("# TYPE job:gpu_utilization:avg gauge\n");
    for i in (0..10).rev() {
        let _ = writeln!(
            om,
            "job:gpu_utilization:avg{{job_name=\"llm\"}} {} {}",
            0.5 + i as f64 / 100.0,
            newest - i * 15
        );
    }
    om.push_str("# TYPE model_predictions_total counter\n");
    for i in (0..10).rev() {
        let _ = writeln!(
            om,
            "model_predictions_total{{model_name=\"bert\",job=\"serving\",instance=\"10.0.0.5:8080\"}} {} {}",
            1000 - i * 10,
            newest - i * 15
        );
    }
    om.push_str("# TYPE unrelated gauge\n");
    let _ = writeln!(om, "unrelated 1 {newest}");
    om.push_str("# EOF\n");
    let file = tmp.path().join("recent.om");
    std::fs::write(&file, om).expect("write openmetrics");
    let data = tmp.path().join("data");
    backfill(&file, &data);
    (tmp, data, newest)
}

/// The lecture's federation selectors that match the data above, URL-encoded.
const FEDERATE_QUERY: &str =
    "match%5B%5D=%7B__name__%3D~%22job%3A.%2A%22%7D&match%5B%5D=%7B__name__%3D~%22model_.%2A%22%7D";

#[test]
fn federate_serves_newest_samples() {
    let (_tmp, data, newest) = backfilled_recent();
    let server = start(&data);
    let (status, body) =
        http(server.port, "GET", &format!("/federate?{FEDERATE_QUERY}")).expect("http request");
    assert_eq!(status, 200, "{body}");
    let t = newest * 1000;
    assert_eq!(
        body,
        format!(
            "# TYPE job:gpu_utilization:avg untyped\n\
             job:gpu_utilization:avg{{job_name=\"llm\",instance=\"\"}} 0.5 {t}\n\
             # TYPE model_predictions_total untyped\n\
             model_predictions_total{{instance=\"10.0.0.5:8080\",job=\"serving\",model_name=\"bert\"}} 1000 {t}\n"
        )
    );
    let (status, body) =
        http(server.port, "GET", "/federate?match%5B%5D=%7Bjob%3D").expect("http request");
    assert_eq!(status, 400, "{body}");
}

#[test]
fn config_file_external_labels_reach_federate() {
    let (tmp, data, newest) = backfilled_recent();
    let config = tmp.path().join("prometheus.yml");
    std::fs::write(
        &config,
        "global:\n  external_labels:\n    cluster: us-east-training-01\n    instance: kiln-a\n",
    )
    .expect("write config");
    let server = start_with(&data, &["--config.file", config.to_str().expect("path")]);
    let (status, body) = http(
        server.port,
        "GET",
        "/federate?match%5B%5D=%7Bjob_name%3D%22llm%22%7D",
    )
    .expect("http request");
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        format!(
            "# TYPE job:gpu_utilization:avg untyped\n\
             job:gpu_utilization:avg{{job_name=\"llm\",cluster=\"us-east-training-01\",instance=\"kiln-a\"}} 0.5 {}\n",
            newest * 1000
        )
    );

    // An invalid config stops the server before it starts, naming file, line and column.
    std::fs::write(&config, "global:\n  scrape_interval: 15s\n  bogus: 1\n").expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["server", "--web.listen-address", "127.0.0.1:0"])
        .arg("--storage.tsdb.path")
        .arg(tmp.path().join("unused"))
        .arg("--config.file")
        .arg(&config)
        .output()
        .expect("run kiln server");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    let at = format!("{}:3:3: field bogus not found", config.display());
    assert!(stderr.contains(&at), "{stderr}");
}

#[test]
#[cfg_attr(
    not(kiln_interop),
    ignore = "interop: needs KILN_INTEROP=1 and Debian's prometheus (scripts/test installs it)"
)]
fn prometheus_federates_from_kiln() {
    require_peer("prometheus", "prometheus");
    let (tmp, data, _) = backfilled_recent();
    let kiln_server = start(&data);
    let prom_port = free_port();
    let config = tmp.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  external_labels: {{cluster: global}}\n\
             scrape_configs:\n  - job_name: federate-kiln\n    honor_labels: true\n    \
             metrics_path: /federate\n    params:\n      'match[]':\n        - '{{__name__=~\"job:.*\"}}'\n        \
             - '{{__name__=~\"model_.*\"}}'\n    static_configs:\n      - targets: ['127.0.0.1:{}']\n",
            kiln_server.port
        ),
    )
    .expect("write prometheus.yml");
    let prom = start_prometheus(&config, &tmp.path().join("prom"), prom_port, &[]);
    let query = "/api/v1/query?query=%7B__name__%3D~%22job%3A.%2A%7Cmodel_.%2A%22%7D";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let body = loop {
        if let Some((200, body)) = http(prom_port, "GET", query)
            && body.contains("model_predictions_total")
            && body.contains("job:gpu_utilization:avg")
        {
            break body;
        }
        if std::time::Instant::now() > deadline {
            panic!("Prometheus did not federate from Kiln within 60 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    };
    drop(prom);
    // honor_labels keeps the series' own labels; `instance=""` from Kiln keeps the
    // scraper from adding its target's instance; the scrape job fills in a missing job.
    // (The query's own evaluation time is in the answer, so only the value is compared.)
    let expected = [
        (
            r#"{"__name__":"job:gpu_utilization:avg","job":"federate-kiln","job_name":"llm"}"#,
            "0.5",
        ),
        (
            r#"{"__name__":"model_predictions_total","instance":"10.0.0.5:8080","job":"serving","model_name":"bert"}"#,
            "1000",
        ),
    ];
    for (metric, value) in expected {
        let at = body
            .find(&format!(r#"{{"metric":{metric},"value":["#))
            .unwrap_or_else(|| panic!("{metric} not in {body}"));
        let rest = &body[at..];
        let sample = &rest[..rest.find(']').expect("value end")];
        assert!(sample.ends_with(&format!(",\"{value}\"")), "{sample}");
    }
}

/// `/api/v1/format_query?query=...` on the server at 127.0.0.1:`port` (Kiln or Prometheus).
fn format_query(port: u16, q: &str) -> (u16, String) {
    http(
        port,
        "GET",
        &format!("/api/v1/format_query?query={}", url_encode(q)),
    )
    .expect("http request")
}

#[test]
fn format_query_formats_and_rejects() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let server = start(&tmp.path().join("data"));
    let (status, body) = format_query(server.port, "sum(rate(x[5m]))by(job)");
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        r#"{"status":"success","data":"sum by (job) (rate(x[5m]))"}"#
    );
    let (status, body) = format_query(server.port, "sum(");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains(r#""errorType":"bad_data""#), "{body}");
}

#[test]
#[cfg_attr(
    not(kiln_interop),
    ignore = "interop: needs KILN_INTEROP=1 and Debian's prometheus (scripts/test installs it)"
)]
fn format_query_formats_like_prometheus() {
    require_peer("prometheus", "prometheus");
    let tmp = tempfile::tempdir().expect("tempdir");
    let server = start(&tmp.path().join("data"));
    let config = tmp.path().join("prometheus.yml");
    std::fs::write(&config, "global: {}\n").expect("write config");
    let prom_port = free_port();
    let prom = start_prometheus(&config, &tmp.path().join("prom"), prom_port, &[]);
    let queries = [
        "histogram_quantile(0.99, sum(rate(model_inference_duration_seconds_bucket[5m])) by (model_name, le))",
        "100 * avg(nvidia_gpu_memory_used_bytes / nvidia_gpu_memory_total_bytes) by (job_name, namespace)",
        "rate(http_requests_total{job=\"api\",status=~\"5..\"}[5m]) / ignoring(status) rate(http_requests_total{job=\"api\"}[5m]) > 0.05",
        "a + on(b) group_left(c) d",
        "avg_over_time(x[1h] offset 1d)",
        "x[5m:1m] @ 100",
        "label_replace(up, \"a\", \"$1\", \"b\", \"(.*)\")",
        "a and b or c unless d",
        "-(1 + 2 * 3) ^ 2",
    ];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while http(prom_port, "GET", "/-/ready").is_none_or(|(s, _)| s != 200) {
        if std::time::Instant::now() > deadline {
            panic!("Prometheus did not start within 30 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let mismatches: Vec<String> = queries
        .iter()
        .filter_map(|q| {
            // Go escapes `<`, `>` and `&` in JSON strings; the JSON is the same.
            let (status, body) = format_query(prom_port, q);
            let want = (
                status,
                body.replace("\\u003c", "<")
                    .replace("\\u003e", ">")
                    .replace("\\u0026", "&"),
            );
            let got = format_query(server.port, q);
            (want != got).then(|| format!("{q}\n  prometheus: {want:?}\n  kiln: {got:?}"))
        })
        .collect();
    drop(prom);
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[test]
fn admin_api_snapshots_and_deletes_only_when_enabled() {
    let (_tmp, data) = backfilled();
    let off = start(&data);
    let (status, body) = http(off.port, "POST", "/api/v1/admin/tsdb/snapshot").expect("http");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("admin APIs disabled"), "{body}");
    drop(off);

    let on = start_with(&data, &["--web.enable-admin-api"]);
    let (status, body) = http(on.port, "POST", "/api/v1/admin/tsdb/snapshot").expect("http");
    assert_eq!(status, 200, "{body}");
    let name = body
        .split("\"name\":\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("snapshot name");
    let snap = data.join("snapshots").join(name);
    let blocks: Vec<_> = std::fs::read_dir(&snap)
        .expect("snapshot dir")
        .map(|e| e.expect("entry").path())
        .collect();
    let live_blocks = std::fs::read_dir(&data)
        .expect("data dir")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().join("meta.json").is_file())
        })
        .count();
    assert_eq!(blocks.len(), live_blocks, "{blocks:?}");
    assert!(blocks.iter().all(|b| b.join("index").is_file()));
    // The snapshot is a data directory of its own: promtool-compatible blocks Kiln opens.
    ok_stdout(
        "list snapshot",
        kiln(&["tsdb", "list", snap.to_str().expect("path")]),
    );

    let q = "/api/v1/query?query=count(nvidia_gpu_duty_cycle)&time=1767229200";
    let (_, before) = http(on.port, "GET", q).expect("query");
    assert!(before.contains(r#""value":[1767229200,"#), "{before}");
    let (status, body) = http(
        on.port,
        "POST",
        "/api/v1/admin/tsdb/delete_series?match[]=nvidia_gpu_duty_cycle",
    )
    .expect("http");
    assert_eq!(status, 204, "{body}");
    let (_, after) = http(on.port, "GET", q).expect("query");
    assert!(after.contains(r#""result":[]"#), "{after}");
    let (status, body) =
        http(on.port, "POST", "/api/v1/admin/tsdb/clean_tombstones").expect("http");
    assert_eq!(status, 204, "{body}");
    let (_, after) = http(on.port, "GET", q).expect("query");
    assert!(after.contains(r#""result":[]"#), "{after}");
    let (status, body) = http(on.port, "POST", "/api/v1/admin/tsdb/delete_series").expect("http");
    assert_eq!(status, 400, "{body}");
}

#[test]
fn root_page_says_what_is_served_and_errors_say_what_is_wrong() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let server = start(&tmp.path().join("data"));
    let get = |path: &str| http(server.port, "GET", path).expect("http request");

    // A browser at the listen address learns what the server answers.
    let (status, body) = get("/");
    assert_eq!(status, 200, "{body}");
    for want in [
        "Prometheus HTTP API",
        "Grafana",
        "<code>http://127.0.0.1</code>",
        "href=\"/api/v1/query?query=up\"",
        "/federate?match%5B%5D=",
        "href=\"/metrics\"",
    ] {
        assert!(body.contains(want), "{want} missing from {body}");
    }
    assert_eq!(
        get("/no/such/page"),
        (404, "404 page not found\n".to_owned())
    );

    // stats=all: Prometheus's timings and sample counts, and Kiln's byte and slice counts.
    let (status, body) = get("/api/v1/query_range?query=up&start=0&end=60&step=15&stats=all");
    assert_eq!(status, 200, "{body}");
    for want in [
        r#""stats":{"timings":{"evalTotalTime":"#,
        r#""samples":{"totalQueryableSamples":"#,
        r#""peakSamples":"#,
        r#""peakBytes":"#,
        r#""slices":1}"#,
    ] {
        assert!(body.contains(want), "{want} missing from {body}");
    }
    let (_, body) = get("/api/v1/query?query=up");
    assert!(!body.contains("stats"), "{body}");

    // A query that does not parse gets Prometheus's answer, position and reason.
    let (status, body) = get("/api/v1/query?query=avg_over_time(x%5B1h%5D)%20by%20(g)");
    assert_eq!(status, 400);
    assert_eq!(
        body,
        r#"{"status":"error","errorType":"bad_data","error":"invalid parameter \"query\": 1:22: parse error: unexpected <by>"}"#
    );
    let (status, body) = get("/api/v1/format_query?query=rate(x)");
    assert_eq!(status, 400);
    assert!(
        body.ends_with(r#""invalid parameter \"query\": 1:6: parse error: expected type range vector in call to function \"rate\", got instant vector"}"#),
        "{body}"
    );
}
