//! `kiln server` scraping: static targets from `--config.file`, its own `/metrics`, and
//! the embedded default that scrapes itself.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{KilnServer, exporter, free_port, http, start_kiln_server, wait_for};

fn start(args: &[&str]) -> KilnServer {
    start_kiln_server(args)
}

#[test]
fn scrapes_static_targets_and_itself() {
    let exporter_port = exporter("# TYPE gpu_temp_celsius gauge\ngpu_temp_celsius{gpu=\"0\"} 61\n");
    let port = free_port();
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = tmp.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: kiln\n    static_configs: [{{targets: ['127.0.0.1:{port}']}}]\n  - job_name: gpu\n    static_configs: [{{targets: ['127.0.0.1:{exporter_port}'], labels: {{cluster: a}}}}]\n    metric_relabel_configs:\n      - {{source_labels: [gpu], target_label: device}}\n  - job_name: down\n    static_configs: [{{targets: ['127.0.0.1:{}']}}]\n  - job_name: dropped\n    keep_dropped_targets: 1\n    static_configs: [{{targets: ['127.0.0.1:1', '127.0.0.1:2']}}]\n    relabel_configs: [{{source_labels: [__address__], regex: nothing, action: keep}}]\n",
            free_port()
        ),
    )
    .expect("write config");
    let server = start(&[
        "--web.listen-address",
        &format!("127.0.0.1:{port}"),
        "--storage.tsdb.path",
        tmp.path().join("data").to_str().expect("path"),
        "--config.file",
        config.to_str().expect("path"),
    ]);
    assert_eq!(server.port, port);
    let limit = Duration::from_secs(20);
    wait_for(
        port,
        "gpu_temp_celsius",
        &[
            r#""metric":{"__name__":"gpu_temp_celsius","cluster":"a","device":"0","gpu":"0","instance":"127.0.0.1:"#,
            r#""job":"gpu"},"value":["#,
            r#","61"]"#,
        ],
        limit,
    );
    wait_for(port, "up%7Bjob%3D%22kiln%22%7D", &[r#","1"]"#], limit);
    wait_for(port, "up%7Bjob%3D%22down%22%7D", &[r#","0"]"#], limit);
    wait_for(
        port,
        "scrape_samples_scraped%7Bjob%3D%22gpu%22%7D",
        &[r#","1"]"#],
        limit,
    );
    // The targets API.
    let (status, body) = http(port, "GET", "/api/v1/targets").expect("GET targets");
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains(&format!(
            r#""labels":{{"cluster":"a","instance":"127.0.0.1:{exporter_port}","job":"gpu"}},"scrapePool":"gpu","scrapeUrl":"http://127.0.0.1:{exporter_port}/metrics""#
        )),
        "{body}"
    );
    assert!(body.contains(r#""health":"up""#), "{body}");
    assert!(body.contains(r#""health":"down""#), "{body}");
    assert!(
        body.contains(r#""scrapeInterval":"1s","scrapeTimeout":"1s""#),
        "{body}"
    );
    assert!(
        body.contains(r#"],"droppedTargetCounts":{"dropped":2}}"#),
        "{body}"
    );
    let (_, body) = http(port, "GET", "/api/v1/targets?state=dropped").expect("GET targets");
    assert!(body.contains(r#"{"activeTargets":[],"droppedTargets":[{"discoveredLabels":{"__address__":"127.0.0.1:1""#), "{body}");
    // keep_dropped_targets: 1 of the 2 dropped targets is listed, both are counted.
    assert!(!body.contains(r#""__address__":"127.0.0.1:2""#), "{body}");

    // Kiln's own metrics, scraped from /metrics.
    wait_for(
        port,
        "prometheus_tsdb_head_series%7Bjob%3D%22kiln%22%7D",
        &[r#""value":["#],
        limit,
    );
    let (status, body) = http(port, "GET", "/metrics").expect("GET /metrics");
    assert_eq!(status, 200);
    assert!(
        body.contains("# TYPE prometheus_tsdb_head_series gauge"),
        "{body}"
    );
    assert!(
        body.contains("prometheus_tsdb_head_samples_appended_total{type=\"float\"} "),
        "{body}"
    );
    // Request, query, target and config metrics, as Prometheus names them.
    for want in [
        "prometheus_http_requests_total{code=\"200\",handler=\"/api/v1/query\"} ",
        "prometheus_http_request_duration_seconds_bucket{handler=\"/api/v1/targets\",le=\"0.1\"} ",
        "prometheus_engine_query_duration_seconds_count{slice=\"inner_eval\"} ",
        "prometheus_target_scrape_pool_targets{scrape_job=\"gpu\"} 1\n",
        "prometheus_sd_discovered_targets{config=\"dropped\",name=\"scrape\"} 2\n",
        "prometheus_config_last_reload_successful 1\n",
    ] {
        assert!(body.contains(want), "no {want:?} in\n{body}");
    }
    // Cardinality of the head.
    let (status, body) = http(port, "GET", "/api/v1/status/tsdb?limit=3").expect("GET tsdb");
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains(r#"{"status":"success","data":{"headStats":{"numSeries":"#),
        "{body}"
    );
    assert!(
        body.contains(r#""seriesCountByMetricName":[{"name":"#),
        "{body}"
    );
    assert!(body.contains(r#"{"name":"job","value":"#), "{body}");
    let (status, _) = http(port, "GET", "/api/v1/status/tsdb?limit=0").expect("GET tsdb");
    assert_eq!(status, 400);
}

#[test]
fn embedded_default_scrapes_itself() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let server = start(&[
        "--web.listen-address",
        "127.0.0.1:0",
        "--storage.tsdb.path",
        tmp.path().join("data").to_str().expect("path"),
    ]);
    // The default interval is 15 s; the first scrape comes within one interval.
    wait_for(
        server.port,
        "up",
        &[r#""job":"kiln"}"#, r#","1"]"#],
        Duration::from_secs(25),
    );
}

#[test]
fn reload_applies_new_targets_and_keeps_running_on_bad_config() {
    let first = exporter("first_metric 1\n");
    let second = exporter("second_metric 2\n");
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = tmp.path().join("prometheus.yml");
    let job = |name: &str, port: u16| {
        format!(
            "  - job_name: {name}\n    basic_auth: {{username: u, password: hunter2}}\n    \
             static_configs: [{{targets: ['127.0.0.1:{port}']}}]\n"
        )
    };
    let global = "global:\n  scrape_interval: 1s\nscrape_configs:\n";
    std::fs::write(&config, format!("{global}{}", job("first", first))).expect("write");
    let server = start(&[
        "--web.listen-address",
        "127.0.0.1:0",
        "--web.enable-lifecycle",
        "--storage.tsdb.path",
        tmp.path().join("data").to_str().expect("path"),
        "--config.file",
        config.to_str().expect("path"),
    ]);
    let limit = Duration::from_secs(20);
    wait_for(server.port, "first_metric", &[r#","1"]"#], limit);

    // A bad file is refused over HTTP; scraping goes on with the running config.
    std::fs::write(&config, format!("{global}  - job_name: [\n")).expect("write");
    let (status, body) = http(server.port, "POST", "/-/reload").expect("reload");
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("failed to reload config"), "{body}");
    // Once, with its file, line and column.
    let at = format!("{}:", config.display());
    assert_eq!(body.matches(&at).count(), 1, "{body}");
    assert!(
        body.split(&at)
            .nth(1)
            .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit())),
        "{body}"
    );
    let (_, info) = http(server.port, "GET", "/api/v1/status/runtimeinfo").expect("runtimeinfo");
    assert!(info.contains(r#""reloadConfigSuccess":false"#), "{info}");

    // /-/reload with a new job.
    std::fs::write(
        &config,
        format!("{global}{}{}", job("first", first), job("second", second)),
    )
    .expect("write");
    let (status, body) = http(server.port, "POST", "/-/reload").expect("reload");
    assert_eq!(status, 200, "{body}");
    wait_for(server.port, "second_metric", &[r#","2"]"#], limit);
    // /api/v1/status/config shows the reloaded config, secrets masked.
    let (status, body) = http(server.port, "GET", "/api/v1/status/config").expect("config");
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    let yaml = v["data"]["yaml"].as_str().expect("yaml string");
    assert!(yaml.contains("- job_name: second\n"), "{yaml}");
    assert!(yaml.contains("scrape_interval: 1s\n"), "{yaml}");
    assert!(yaml.contains("password: <secret>"), "{yaml}");
    assert!(!yaml.contains("hunter2"), "{yaml}");
    let (_, info) = http(server.port, "GET", "/api/v1/status/runtimeinfo").expect("runtimeinfo");
    assert!(info.contains(r#""reloadConfigSuccess":true"#), "{info}");
    assert!(info.contains(r#""storageRetention":"15d""#), "{info}");

    // SIGHUP with the first job removed: its series go stale (no longer in queries).
    std::fs::write(&config, format!("{global}{}", job("second", second))).expect("write");
    let hup = Command::new("kill")
        .args(["-HUP", &server.child.id().to_string()])
        .status()
        .expect("send SIGHUP");
    assert!(hup.success());
    wait_for(
        server.port,
        "count(first_metric)%20or%20vector(0)",
        &[r#""value":["#, r#","0"]"#],
        limit,
    );
    wait_for(
        server.port,
        "up%7Bjob%3D%22second%22%7D",
        &[r#","1"]"#],
        limit,
    );
}

#[test]
fn reload_needs_the_lifecycle_flag() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let server = start(&[
        "--web.listen-address",
        "127.0.0.1:0",
        "--storage.tsdb.path",
        tmp.path().join("data").to_str().expect("path"),
    ]);
    let (status, body) = http(server.port, "POST", "/-/reload").expect("reload");
    assert_eq!(status, 403, "{body}");
    // The flags, with their defaults, as Prometheus lists them.
    let (status, body) = http(server.port, "GET", "/api/v1/status/flags").expect("flags");
    assert_eq!(status, 200, "{body}");
    for want in [
        r#""web.enable-lifecycle":"false""#,
        r#""query.lookback-delta":"5m""#,
        r#""storage.tsdb.retention.time":"15d""#,
        r#""config.file":"""#,
    ] {
        assert!(body.contains(want), "{want} not in {body}");
    }
}
