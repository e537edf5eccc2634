//! The README's quick start, end to end, as a new user runs it: backfill
//! `examples/gpu-fleet.om`, start `kiln server` with the quick start's flags, and ask it
//! every valid PromQL query of the lecture; then backfill the rule pack's recorded series
//! with `kiln tsdb create-blocks-from rules` into the running server's data directory and
//! ask for every recorded series and every alert expression of the rule pack.
//!
//! The two `kiln` runs are read from the README's quick-start line itself, so the test
//! follows the README when it changes. Deviations, needed to run beside other tests:
//! `kiln` is this build's binary, the data directory is a temporary one, and the server
//! listens on port 0.

mod common;

use std::path::{Path, PathBuf};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use common::*;

/// 2026-01-01T02:30:00Z: inside the example data, where every incident of its story
/// (docs/first-hour.md) is under way.
const T: i64 = 1_767_234_600;
/// The example data's first and last sample.
const START: i64 = 1_767_225_600;
const END: i64 = 1_767_236_385;

/// The lecture's valid PromQL queries (shared/seed/advanced-prometheus-lecture.md), with
/// whitespace collapsed. Used as they are when the lecture is not at hand; when it is,
/// the test checks that this list is still what the lecture says.
const LECTURE_QUERIES: &[&str] = &[
    "avg(rate(nvidia_gpu_duty_cycle[5m])) by (job_name, gpu_id)",
    "100 * (nvidia_gpu_memory_used_bytes / nvidia_gpu_memory_total_bytes)",
    "count(rate(nvidia_gpu_duty_cycle[5m]) < 0.5) by (node, gpu_id)",
    "(sum(rate(model_inference_duration_seconds_bucket{le=\"0.1\"}[5m])) by (model_name) / sum(rate(model_inference_duration_seconds_count[5m])) by (model_name)) * 100",
    "avg(training_loss) by (job_id, epoch)",
    "(training_total_steps - training_current_step) / rate(training_current_step[10m])",
    "(rate(training_samples_processed_total[5m]) / on(job_id) group_left() training_gpu_count) / training_theoretical_max_throughput",
    "topk(5, rate(data_stage_duration_seconds_sum[5m]) / rate(data_stage_duration_seconds_count[5m])) by (pipeline_stage)",
    "avg(data_quality_score) by (dataset, validation_rule)",
    "abs((rate(data_records_processed_total[5m]) - avg_over_time(rate(data_records_processed_total[5m])[1h:5m])) / stddev_over_time(rate(data_records_processed_total[5m])[1h:5m])) > 3",
    "abs(model_accuracy - avg_over_time(model_accuracy[1h])) > 0.05",
    "deriv(rate(model_errors_total[5m])[10m:])",
    "predict_linear(node_filesystem_avail_bytes[1h], 24 * 3600) < 0",
    "(abs(metric_value - avg_over_time(metric_value[1h]))) > (2 * stddev_over_time(metric_value[1h]))",
];

/// Lecture snippets that are not PromQL (`by` after a function call; see the README's
/// "The lecture's queries"), whitespace collapsed.
const NOT_PROMQL: &[&str] = &[
    "avg_over_time(nvidia_gpu_duty_cycle[1h]) by (gpu_id)",
    "histogram_quantile(0.95, rate(model_inference_duration_seconds_bucket[5m])) by (model_name, version)",
    "histogram_quantile(0.99, rate(model_inference_duration_seconds_bucket[5m])) by (model_name, version)",
    "rate(training_samples_processed_total[5m]) by (job_id)",
    "rate(data_records_processed_total[5m]) by (pipeline_stage)",
];

/// The 13 lecture queries of the shared bench harness (shared/bench/run.py), the
/// invalid ones in their corrected form.
const BENCH_QUERIES: &[&str] = &[
    "avg(rate(nvidia_gpu_duty_cycle[5m])) by (job_name, gpu_id)",
    "avg by (gpu_id) (avg_over_time(nvidia_gpu_duty_cycle[1h]))",
    "100 * (nvidia_gpu_memory_used_bytes / nvidia_gpu_memory_total_bytes)",
    "count by (node) (avg_over_time(nvidia_gpu_duty_cycle[5m]) < 0.5)",
    "histogram_quantile(0.95, sum(rate(model_inference_duration_seconds_bucket[5m])) by (model_name, version, le))",
    "100 * sum(rate(model_inference_duration_seconds_bucket{le=\"0.1\"}[5m])) by (model_name) / sum(rate(model_inference_duration_seconds_count[5m])) by (model_name)",
    "sum(rate(model_errors_total[5m])) by (model_name) / sum(rate(model_predictions_total[5m])) by (model_name)",
    "topk(5, rate(data_stage_duration_seconds_sum[5m]) / rate(data_stage_duration_seconds_count[5m]))",
    "(training_total_steps - training_current_step) / rate(training_current_step[10m])",
    "abs((rate(data_records_processed_total[5m]) - avg_over_time(rate(data_records_processed_total[5m])[1h:5m])) / stddev_over_time(rate(data_records_processed_total[5m])[1h:5m])) > 3",
    "predict_linear(nvidia_gpu_memory_used_bytes[1h], 4 * 3600) > nvidia_gpu_memory_total_bytes",
    "rate(training_samples_processed_total[5m]) / on(job_id) group_left() training_gpu_count",
    "deriv(rate(model_errors_total[5m])[10m:])",
];

/// The rule pack as examples/prometheus.yml loads it.
const RULE_FILES: &[&str] = &[
    "rules/ml-recording-rules.yml",
    "rules/ml-recording-rules-corrected.yml",
    "rules/ml-alerts.yml",
];

/// Recording rules that legitimately record nothing on any data: the lecture's
/// validation-failure rule divides a (pipeline_name, validation_rule) vector by a
/// (pipeline_name) one without `on()`/`group_left`, so no series match (its unit test
/// pins that; the corrected file records it properly).
const RECORDS_NOTHING: &[&str] = &["pipeline:validation_failure_rate:rate5m"];

/// The arguments of the two `kiln` runs on the README's quick-start line
/// (`cargo run --release -p kiln -- ARGS && cargo run --release -p kiln -- ARGS`).
fn readme_quick_start() -> (Vec<String>, Vec<String>) {
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("read README.md");
    let line = readme
        .lines()
        .find(|l| l.contains("create-blocks-from openmetrics") && l.contains("&&"))
        .expect("the README's quick-start line");
    let runs: Vec<Vec<String>> = line
        .split("&&")
        .map(|run| {
            run.trim()
                .strip_prefix("cargo run --release -p kiln -- ")
                .unwrap_or_else(|| panic!("not a kiln run: {run:?}"))
                .split_whitespace()
                .map(str::to_owned)
                .collect()
        })
        .collect();
    let [backfill, server] = <[Vec<String>; 2]>::try_from(runs).expect("two runs");
    (backfill, server)
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Whitespace collapsed, and none just inside parentheses.
fn normalize(q: &str) -> String {
    q.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace("( ", "(")
        .replace(" )", ")")
}

/// The lecture's ```promql snippets, split at comment and blank lines (as
/// crates/kiln-promql/tests/lecture.rs reads them), normalized.
fn lecture_snippets(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_block = false;
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        let ends_snippet = trimmed.starts_with("```")
            || (in_block && (trimmed.starts_with('#') || trimmed.is_empty()));
        if ends_snippet {
            if !current.trim().is_empty() {
                out.push(normalize(&current));
            }
            current.clear();
            if trimmed.starts_with("```") {
                in_block = !in_block && trimmed == "```promql";
            }
            continue;
        }
        if in_block {
            current.push_str(line);
            current.push('\n');
        }
    }
    out
}

/// The lecture's valid queries: from the lecture when it is at hand (checking the
/// committed list against it), else the committed list.
fn lecture_queries() -> Vec<String> {
    let committed: Vec<String> = LECTURE_QUERIES.iter().map(|q| normalize(q)).collect();
    let path = repo().join("../shared/seed/advanced-prometheus-lecture.md");
    let Ok(text) = std::fs::read_to_string(&path) else {
        eprintln!(
            "note: {} not found; using the lecture's queries committed in this test",
            path.display()
        );
        return committed;
    };
    let from_lecture: Vec<String> = lecture_snippets(&text)
        .into_iter()
        .filter(|q| !NOT_PROMQL.contains(&q.as_str()))
        .collect();
    assert_eq!(
        from_lecture, committed,
        "the lecture's queries changed: update LECTURE_QUERIES"
    );
    from_lecture
}

/// The number of series an API answer holds; panics on an error answer.
fn series_count(port: u16, path: &str) -> usize {
    let (status, body) = http(port, "GET", path).expect("query");
    assert_eq!(status, 200, "{path}: {body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["status"], "success", "{path}: {body}");
    v["data"]["result"].as_array().map_or(0, Vec::len)
}

fn instant(port: u16, query: &str) -> usize {
    series_count(
        port,
        &format!("/api/v1/query?query={}&time={T}", url_encode(query)),
    )
}

fn range(port: u16, query: &str) -> usize {
    series_count(
        port,
        &format!(
            "/api/v1/query_range?query={}&start={START}&end={END}&step=60",
            url_encode(query)
        ),
    )
}

/// Waits until the server has logged picking up `want` blocks from its data directory
/// (in one line or several: a scan may run between two blocks of a backfill).
fn wait_for_picked_up_blocks(lines: &Receiver<String>, want: usize, limit: Duration) {
    const WHAT: &str = "New blocks found in the data directory are now queried";
    let deadline = Instant::now() + limit;
    let mut found = 0;
    while found < want {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) if line.contains(WHAT) => {
                let count = line
                    .split_once(" blocks=")
                    .and_then(|(_, rest)| rest.split(' ').next())
                    .and_then(|n| n.parse::<usize>().ok());
                found += count.unwrap_or_else(|| panic!("no block count in {line}"));
            }
            Ok(_) => {}
            Err(e) => panic!("{found} of {want} blocks picked up within {limit:?}: {e}"),
        }
    }
    assert_eq!(found, want, "more blocks than the backfill wrote");
}

#[test]
fn the_quick_start_answers_the_lecture_and_the_rule_pack() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let data_arg = format!("{}/", data.display());

    let (backfill_args, server_args) = readme_quick_start();
    assert_eq!(
        backfill_args[..4],
        [
            "tsdb",
            "create-blocks-from",
            "openmetrics",
            "examples/gpu-fleet.om"
        ]
    );
    let backfill_args: Vec<String> = backfill_args
        .into_iter()
        .map(|a| if a == "data/" { data_arg.clone() } else { a })
        .collect();
    let backfill = std::process::Command::new(env!("CARGO_BIN_EXE_kiln"))
        .current_dir(repo())
        .args(&backfill_args)
        .output()
        .expect("run kiln");
    ok_stdout("backfilling examples/gpu-fleet.om", backfill);

    assert_eq!(server_args[0], "server", "{server_args:?}");
    let path_flag = format!("--storage.tsdb.path={data_arg}");
    let mut flags: Vec<&str> = server_args[1..].iter().map(String::as_str).collect();
    flags.extend([path_flag.as_str(), "--web.listen-address=127.0.0.1:0"]);
    let (server, log) = start_kiln_server_logged(&flags);
    let port = server.port;

    let queries = lecture_queries();
    assert_eq!(queries.len(), 14);
    let empty: Vec<&String> = queries.iter().filter(|q| instant(port, q) == 0).collect();
    assert!(
        empty.is_empty(),
        "lecture queries with no series at {T}: {empty:#?}"
    );
    let empty: Vec<&&str> = BENCH_QUERIES
        .iter()
        .filter(|q| range(port, q) == 0)
        .collect();
    assert!(
        empty.is_empty(),
        "bench queries with no series over the example data: {empty:#?}"
    );

    // The rule pack's recorded series, backfilled into the running server's directory.
    let url = format!("http://127.0.0.1:{port}");
    let mut args = vec![
        "tsdb",
        "create-blocks-from",
        "rules",
        "--url",
        &url,
        "--start",
        "2026-01-01T00:00:00Z",
        "--end",
        "2026-01-01T03:00:00Z",
        "--output-dir",
        &data_arg,
    ];
    args.extend_from_slice(RULE_FILES);
    let rules = std::process::Command::new(env!("CARGO_BIN_EXE_kiln"))
        .current_dir(repo())
        .args(&args)
        .output()
        .expect("run kiln");
    let listing = ok_stdout("kiln tsdb create-blocks-from rules", rules);
    // The header and one line per block: one per 2-hour window of the 3 hours.
    assert_eq!(listing.lines().count(), 3, "{listing}");
    wait_for_picked_up_blocks(&log, 2, Duration::from_secs(120));

    let mut recorded = Vec::new();
    let mut alerts = Vec::new();
    for file in RULE_FILES {
        for group in kiln_rules::file::load_rule_file(&repo().join(file)).expect("rule file") {
            for rule in group.rules {
                match &rule.kind {
                    kiln_rules::file::RuleKind::Recording { record } => {
                        recorded.push(record.clone())
                    }
                    kiln_rules::file::RuleKind::Alerting { alert, .. } => {
                        alerts.push((alert.clone(), rule.expr.clone()))
                    }
                }
            }
        }
    }
    assert_eq!((recorded.len(), alerts.len()), (18, 5));
    let wrong: Vec<String> = recorded
        .iter()
        .filter_map(|name| {
            let n = instant(port, name);
            let want_empty = RECORDS_NOTHING.contains(&name.as_str());
            (want_empty != (n == 0)).then(|| format!("{name}: {n} series"))
        })
        .collect();
    assert!(wrong.is_empty(), "recorded series at {T}: {wrong:#?}");
    let silent: Vec<&String> = alerts
        .iter()
        .filter(|(_, expr)| instant(port, expr) == 0)
        .map(|(name, _)| name)
        .collect();
    assert!(
        silent.is_empty(),
        "alert expressions with nothing at {T}: {silent:?}"
    );
}

/// examples/prometheus.yml passes both checkers, and a server started with it scrapes
/// itself and evaluates the whole rule pack.
#[test]
fn the_example_config_loads_the_rule_pack() {
    let config = "examples/prometheus.yml";
    let run = |program: &str| {
        std::process::Command::new(program)
            .current_dir(repo())
            .args(["check", "config", config])
            .output()
            .expect("run checker")
    };
    let out = ok_stdout("kiln check config", run(env!("CARGO_BIN_EXE_kiln")));
    assert!(out.contains("SUCCESS: 3 rule files found"), "{out}");
    assert_eq!(out.matches("rules found").count(), 3, "{out}");

    let tmp = tempfile::tempdir().expect("tempdir");
    let config_flag = format!("--config.file={}", repo().join(config).display());
    let path_flag = format!("--storage.tsdb.path={}", tmp.path().display());
    let server = start_kiln_server(&[&config_flag, &path_flag, "--web.listen-address=127.0.0.1:0"]);
    let (status, body) = http(server.port, "GET", "/api/v1/rules").expect("rules");
    assert_eq!(status, 200, "{body}");
    let rules: serde_json::Value = serde_json::from_str(&body).expect("json");
    let groups = rules["data"]["groups"].as_array().expect("groups");
    let count = groups
        .iter()
        .map(|g| g["rules"].as_array().map_or(0, Vec::len))
        .sum::<usize>();
    assert_eq!((groups.len(), count), (7, 23), "{body}");
    let (_, body) = http(server.port, "GET", "/api/v1/targets").expect("targets");
    assert!(
        body.contains(r#""labels":{"instance":"127.0.0.1:9090","job":"kiln"}"#),
        "{body}"
    );
}

/// promtool 2.42 accepts examples/prometheus.yml and its rule files too.
#[test]
#[cfg_attr(
    not(kiln_interop),
    ignore = "interop: needs KILN_INTEROP=1 and promtool from Debian's prometheus (scripts/test installs it)"
)]
fn promtool_accepts_the_example_config() {
    require_peer("promtool", "prometheus");
    let out = std::process::Command::new("promtool")
        .current_dir(repo())
        .args(["check", "config", "examples/prometheus.yml"])
        .output()
        .expect("run promtool");
    ok_stdout("promtool check config", out);
}
