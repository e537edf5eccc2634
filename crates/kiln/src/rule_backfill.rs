//! `kiln tsdb create-blocks-from rules`: the series recording rules would have recorded
//! over a past time range, written as TSDB blocks, as `promtool tsdb create-blocks-from
//! rules` does. It is a client of the Prometheus HTTP API: each recording rule is
//! evaluated with range queries against `--url` (Kiln, Prometheus or any compatible
//! server holding the raw data), so it needs no access to that server's disk.
//!
//! What matches promtool (2.x; the interop test compares the two on the same server):
//! - the evaluation times: a group's rules are evaluated at its interval (its
//!   `interval`, else `--eval-interval`), on the slots a Prometheus 2 rule manager would
//!   use (`Group.EvalTimestamp`: the interval plus an offset hashed from the group's
//!   file name, as given on the command line, and name);
//! - the windows: one range query per rule per aligned block window (2h, or
//!   `--max-block-duration`), its start and end computed as promtool does, so the
//!   samples at window edges are the same;
//! - the series: the query's labels, then the rule's labels (an empty value removes a
//!   label), then `__name__` set to the rule's name;
//! - alerting rules are skipped; a rule that fails does not stop the others, and any
//!   failure makes the exit code 1; `--end` defaults to 3 hours ago.
//!
//! Where Kiln differs: it writes one block per window for all rules together (promtool
//! writes one per rule and window, which the server then merges), prints the blocks it
//! wrote like `create-blocks-from openmetrics`, and stops at the first rule when the
//! server cannot be reached at all. promtool (2.42 and 3.x) also runs the expressions of
//! alerting rules and records their results under the alert's name, although its help
//! says alerting rules are not evaluated; Kiln does what the help says. Rules are evaluated independently: a rule that reads the series of
//! another rule sees only what the server already holds (backfill in two runs).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::tsdb_tools::backfill::{WindowBlock, block_duration};
use anyhow::{Context, anyhow, bail};
use kiln_model::Labels;
use kiln_rules::file::{GroupSpec, RuleKind};
use tracing::info;

const NANOS_PER_SEC: i64 = 1_000_000_000;
const NANOS_PER_MS: i64 = 1_000_000;

/// Flags of `kiln tsdb create-blocks-from rules`: promtool's.
#[derive(clap::Args)]
pub(crate) struct RuleBackfillArgs {
    /// The URL of the Prometheus API holding the data the rules read (Kiln, Prometheus
    /// or any compatible server).
    #[arg(long, default_value = "http://localhost:9090")]
    url: String,
    /// The time to start backfilling the rules from: RFC 3339
    /// (2026-01-01T00:00:00Z) or a Unix timestamp.
    #[arg(long)]
    start: String,
    /// The time to backfill the rules up to: RFC 3339 or a Unix timestamp. Default:
    /// 3 hours ago.
    #[arg(long)]
    end: Option<String>,
    /// Output directory for the blocks. A running `kiln server` picks up blocks
    /// written into its data directory within seconds.
    #[arg(long = "output-dir", default_value = "data/")]
    output_dir: PathBuf,
    /// How often to evaluate the rules of groups that set no `interval`.
    #[arg(long = "eval-interval", value_parser = crate::parse_duration_ms, default_value = "60s")]
    eval_interval: i64,
    /// A file of HTTP client settings for --url (`basic_auth`, `authorization`,
    /// `tls_config`, ... as in a scrape config).
    #[arg(long = "http.config.file", value_name = "FILENAME")]
    http_config_file: Option<PathBuf>,
    /// Maximum duration a created block may span (e.g. 2h, 24h); below 2h is raised
    /// to 2h.
    #[arg(long = "max-block-duration", value_parser = crate::parse_duration_ms)]
    max_block_duration: Option<i64>,
    /// Print times and sizes for humans.
    #[arg(short = 'r', long = "human-readable")]
    human_readable: bool,
    /// Do not print the created blocks.
    #[arg(short = 'q', long = "quiet")]
    quiet: bool,
    /// Rule files. Every recording rule in them is backfilled; alerting rules are not
    /// evaluated.
    #[arg(required = true, value_name = "RULE_FILES")]
    rule_files: Vec<PathBuf>,
}

/// One recording rule to backfill, with what its group decides.
struct RecordingRule {
    /// The recorded metric name.
    name: String,
    expr: String,
    /// Group labels, then rule labels on top; an empty value removes the label.
    labels: BTreeMap<String, String>,
    /// Where it is written, for messages: `file:line`, and the group's name.
    place: String,
    group: String,
    /// Index into the list of group schedules.
    schedule: usize,
}

/// When a group's rules are evaluated.
struct Schedule {
    interval_ns: i64,
    /// Prometheus 2's offset of the group's slots within its interval.
    offset_ns: i64,
}

/// Runs the command; the exit code is 1 when any rule failed.
pub(crate) fn run(args: RuleBackfillArgs, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    let start_s = parse_time_s(&args.start).ok_or_else(|| {
        anyhow!(
            "--start: cannot parse {:?} as a time: give RFC 3339 (2026-01-01T00:00:00Z) or Unix seconds",
            args.start
        )
    })?;
    let end_s = match &args.end {
        Some(end) => parse_time_s(end).ok_or_else(|| {
            anyhow!(
                "--end: cannot parse {end:?} as a time: give RFC 3339 (2026-01-01T03:00:00Z) or Unix seconds"
            )
        })?,
        None => kiln_model::calendar::now_ms().div_euclid(1000) - 3 * 3600,
    };
    if start_s >= end_s {
        bail!(
            "--start ({}) is not before --end ({}{})",
            rfc3339(start_s),
            rfc3339(end_s),
            if args.end.is_none() {
                ", 3 hours ago by default"
            } else {
                ""
            }
        );
    }
    if args.eval_interval <= 0 {
        bail!("--eval-interval must be positive");
    }
    let (rules, schedules) = load_rules(&args.rule_files, args.eval_interval)?;
    if rules.is_empty() {
        eprintln!(
            "warning: no recording rules in {}: nothing to backfill (alerting rules are not backfilled)",
            args.rule_files
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        return Ok(ExitCode::SUCCESS);
    }
    let http_config = match &args.http_config_file {
        Some(path) => kiln_config::HttpClientConfig::load_file(path)?,
        None => kiln_config::HttpClientConfig::default(),
    };
    let api = Api::new(&args.url, &http_config)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;

    let duration = block_duration(
        args.max_block_duration
            .unwrap_or(kiln_tsdb::head::DEFAULT_CHUNK_RANGE),
    );
    let mut failures: Vec<String> = Vec::new();
    let mut failed = vec![false; rules.len()];
    let mut finished = vec![false; schedules.len()];
    let mut blocks: Vec<PathBuf> = Vec::new();
    let mut window = duration * (start_s * 1000 / duration);
    while window <= end_s * 1000 {
        let range = window_query_ranges(window, duration, start_s, end_s, &schedules);
        let block = WindowBlock::new(duration);
        for (i, rule) in rules.iter().enumerate() {
            if failed[i] || finished[rule.schedule] {
                continue;
            }
            let Some(q) = &range[rule.schedule] else {
                // promtool stops a rule's windows once its end precedes its first slot.
                finished[rule.schedule] = true;
                continue;
            };
            info!(rule = %rule.name, group = %rule.group, start = %q.start, end = %q.end, "evaluating");
            let answer = match runtime.block_on(api.query_range(&rule.expr, q)) {
                Ok(a) => a,
                Err(QueryError::Unreachable(e)) => return Err(e),
                Err(QueryError::Answer(e)) => {
                    failed[i] = true;
                    failures.push(format!("rule {} ({}): {e:#}", rule.name, rule.place));
                    continue;
                }
            };
            for w in &answer.warnings {
                eprintln!(
                    "warning: rule {} ({}): the server warns: {w}",
                    rule.name, rule.place
                );
            }
            if let Err(e) = record(&block, rule, answer.series) {
                failed[i] = true;
                failures.push(format!("rule {} ({}): {e:#}", rule.name, rule.place));
            }
        }
        if let Some(dir) = block
            .write(&args.output_dir)
            .with_context(|| format!("writing a block to {}", args.output_dir.display()))?
        {
            blocks.push(dir);
        }
        window += duration;
    }

    if blocks.is_empty() && failures.is_empty() {
        eprintln!(
            "warning: the rules recorded nothing between {} and {}: no block written (does {} hold data for that time?)",
            rfc3339(start_s),
            rfc3339(end_s),
            args.url
        );
    }
    // Recorded series usually cover the time of the raw data next to them: blocks that
    // overlap in time are the normal case here, and the server merges them, so unlike
    // `create-blocks-from openmetrics` this says nothing about overlaps.
    if !blocks.is_empty() && !args.quiet {
        crate::tsdb_tools::list::print_blocks(&blocks, args.human_readable, out)?;
    }
    out.flush()?;
    if failures.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    let mut err = std::io::stderr().lock();
    for f in &failures {
        writeln!(err, "error: {f}")?;
    }
    writeln!(
        err,
        "error: {} of {} recording rules failed; the blocks above hold the others",
        failures.len(),
        rules.len()
    )?;
    Ok(ExitCode::FAILURE)
}

/// Loads every group of `files`, keeping the recording rules.
fn load_rules(
    files: &[PathBuf],
    default_interval_ms: i64,
) -> anyhow::Result<(Vec<RecordingRule>, Vec<Schedule>)> {
    let mut rules = Vec::new();
    let mut schedules = Vec::new();
    for file in files {
        let groups: Vec<GroupSpec> = kiln_rules::file::load_rule_file(file)?;
        for g in groups {
            let interval_ns = g.interval_ms.unwrap_or(default_interval_ms) * NANOS_PER_MS;
            schedules.push(Schedule {
                interval_ns,
                offset_ns: group_offset_ns(&g.file, &g.name, interval_ns),
            });
            for r in &g.rules {
                let RuleKind::Recording { record } = &r.kind else {
                    continue;
                };
                let mut labels = g.labels.clone();
                labels.extend(r.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
                rules.push(RecordingRule {
                    name: record.clone(),
                    expr: r.expr.trim().to_owned(),
                    labels,
                    place: format!("group {:?} in {}:{}", g.name, g.file, r.line),
                    group: g.name.clone(),
                    schedule: schedules.len() - 1,
                });
            }
        }
    }
    Ok((rules, schedules))
}

/// Adds a rule's answer to the window's block: the query's labels, the rule's labels on
/// top, `__name__` the rule's name.
fn record(block: &WindowBlock, rule: &RecordingRule, series: Vec<Series>) -> anyhow::Result<()> {
    for s in series {
        let mut labels = s.labels;
        for (k, v) in &rule.labels {
            labels.insert(k.clone(), v.clone());
        }
        labels.insert("__name__".to_owned(), rule.name.clone());
        let pairs: Vec<(&String, &String)> = labels.iter().collect();
        block.add_series(&Labels::from_pairs(&pairs), &s.samples)?;
    }
    Ok(())
}

/// The range query of one group for one block window: promtool's arithmetic, so that the
/// server sees the same parameters.
struct QueryRange {
    start: String,
    end: String,
    step: String,
}

/// For each schedule, the range query covering the window starting at `window_ms`, or
/// `None` when the window's end precedes the group's first slot in it.
fn window_query_ranges(
    window_ms: i64,
    duration_ms: i64,
    start_s: i64,
    end_s: i64,
    schedules: &[Schedule],
) -> Vec<Option<QueryRange>> {
    let window_end_ms = window_ms + duration_ms - 1;
    let first_s = (window_ms / 1000).max(start_s);
    let last_s = (window_end_ms / 1000).min(end_s);
    schedules
        .iter()
        .map(|s| {
            let mut first_ns =
                eval_timestamp_ns(first_s * NANOS_PER_SEC, s.interval_ns, s.offset_ns);
            while first_ns.div_euclid(NANOS_PER_SEC) < first_s {
                first_ns += s.interval_ns;
            }
            if last_s * NANOS_PER_SEC < first_ns {
                return None;
            }
            Some(QueryRange {
                start: go_seconds(first_ns),
                end: go_seconds(last_s * NANOS_PER_SEC),
                step: go_seconds(s.interval_ns),
            })
        })
        .collect()
}

/// Prometheus's `Group.EvalTimestamp`: the group's slot at or before `t_ns`.
fn eval_timestamp_ns(t_ns: i64, interval_ns: i64, offset_ns: i64) -> i64 {
    let adjusted = t_ns - offset_ns;
    adjusted - adjusted % interval_ns + offset_ns
}

/// The offset of a group's evaluation slots within its interval, as Prometheus 2 hashes
/// it: xxHash64 of the label set `{file=<file>, name=<name>}` in its byte layout
/// (`name 0xff value 0xff`, sorted by name), modulo the interval in ns.
fn group_offset_ns(file: &str, name: &str, interval_ns: i64) -> i64 {
    let mut bytes = Vec::with_capacity(file.len() + name.len() + 12);
    for (k, v) in [("file", file), ("name", name)] {
        bytes.extend_from_slice(k.as_bytes());
        bytes.push(0xff);
        bytes.extend_from_slice(v.as_bytes());
        bytes.push(0xff);
    }
    let hash = xxhash_rust::xxh64::xxh64(&bytes, 0);
    (hash % interval_ns.max(1) as u64) as i64
}

/// Seconds as Go's API client sends a time or duration: the shortest decimal that
/// reads back as the same float64 (`strconv.FormatFloat(f, 'f', -1, 64)`).
fn go_seconds(ns: i64) -> String {
    let secs = ns.div_euclid(NANOS_PER_SEC) as f64 + ns.rem_euclid(NANOS_PER_SEC) as f64 / 1e9;
    format!("{secs}")
}

/// A `--start`/`--end` value as whole Unix seconds, as promtool reads it: Unix seconds
/// (a fraction is allowed) or RFC 3339.
fn parse_time_s(s: &str) -> Option<i64> {
    if let Ok(secs) = s.parse::<f64>() {
        return (secs.is_finite() && secs.abs() < 1e15).then(|| secs.floor() as i64);
    }
    kiln_model::calendar::parse_rfc3339_ms(s).map(|ms| ms.div_euclid(1000))
}

/// Unix seconds as RFC 3339 (UTC), for messages.
fn rfc3339(s: i64) -> String {
    let (year, month, day) = kiln_model::calendar::civil_from_days(s.div_euclid(86_400));
    let secs = s.rem_euclid(86_400);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// One series of a range query's answer.
struct Series {
    labels: BTreeMap<String, String>,
    /// `(ms, value)` in time order.
    samples: Vec<(i64, f64)>,
}

/// A range query's answer.
struct RangeAnswer {
    series: Vec<Series>,
    warnings: Vec<String>,
}

/// Why a range query gave no answer.
enum QueryError {
    /// The server could not be reached at all: no rule can succeed.
    Unreachable(anyhow::Error),
    /// The server answered with an error, or with something that is not a matrix.
    Answer(anyhow::Error),
}

/// The Prometheus HTTP API at `--url`.
struct Api {
    client: kiln_http_client::HttpClient,
    endpoint: String,
}

impl Api {
    fn new(url: &str, config: &kiln_config::HttpClientConfig) -> anyhow::Result<Api> {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            bail!(
                "--url {url:?}: expected an http:// or https:// URL, such as http://localhost:9090"
            );
        }
        let client =
            kiln_http_client::HttpClient::new(config, concat!("kiln/", env!("CARGO_PKG_VERSION")))
                .context("setting up the HTTP client for --url")?;
        Ok(Api {
            client,
            endpoint: format!("{}/api/v1/query_range", url.trim_end_matches('/')),
        })
    }

    /// `POST /api/v1/query_range` with a form body, falling back to GET when the server
    /// refuses POST, as Prometheus's Go client does.
    async fn query_range(&self, expr: &str, q: &QueryRange) -> Result<RangeAnswer, QueryError> {
        let form = form_encode(&[
            ("query", expr),
            ("start", &q.start),
            ("end", &q.end),
            ("step", &q.step),
        ]);
        let unreachable = |e: &dyn std::error::Error| {
            QueryError::Unreachable(anyhow!(
                "cannot reach the Prometheus API at {}: {}",
                self.endpoint,
                kiln_http_client::error_chain(e)
            ))
        };
        let post = self
            .client
            .request(reqwest::Method::POST, &self.endpoint)
            .map_err(|e| unreachable(&e))?
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(form.clone());
        let mut response = post.send().await.map_err(|e| unreachable(&e))?;
        if matches!(response.status().as_u16(), 405 | 501) {
            let get = self
                .client
                .get(&format!("{}?{form}", self.endpoint))
                .map_err(|e| unreachable(&e))?;
            response = get.send().await.map_err(|e| unreachable(&e))?;
        }
        let status = response.status();
        let body = response.text().await.map_err(|e| unreachable(&e))?;
        parse_answer(status.as_u16(), &body).map_err(QueryError::Answer)
    }
}

/// Reads a query_range answer (Prometheus's JSON envelope).
fn parse_answer(status: u16, body: &str) -> anyhow::Result<RangeAnswer> {
    let Ok(json) = serde_json::from_str::<serde_json::Value>(body) else {
        let snippet: String = body.chars().take(200).collect();
        bail!("the server answered HTTP {status} without Prometheus's JSON: {snippet:?}");
    };
    if json["status"] != "success" {
        bail!(
            "the server answered HTTP {status}, {}: {}",
            json["errorType"].as_str().unwrap_or("error"),
            json["error"].as_str().unwrap_or("(no message)")
        );
    }
    let data = &json["data"];
    if data["resultType"] != "matrix" {
        bail!(
            "the server answered a {} where a range query gives a matrix",
            data["resultType"]
        );
    }
    let mut series = Vec::new();
    for s in data["result"].as_array().into_iter().flatten() {
        let labels = s["metric"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
            .collect();
        let mut samples = Vec::new();
        for pair in s["values"].as_array().into_iter().flatten() {
            let (Some(t), Some(v)) = (pair[0].as_f64(), pair[1].as_str()) else {
                bail!("a sample is not [time, \"value\"]: {pair}");
            };
            let v: f64 = v
                .parse()
                .with_context(|| format!("sample value {v:?} is not a number"))?;
            samples.push(((t * 1000.0).round() as i64, v));
        }
        series.push(Series { labels, samples });
    }
    let warnings = json["warnings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|w| w.as_str().map(str::to_owned))
        .collect();
    Ok(RangeAnswer { series, warnings })
}

/// `application/x-www-form-urlencoded`.
fn form_encode(pairs: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        for (j, part) in [k, v].iter().enumerate() {
            if j == 1 {
                out.push('=');
            }
            for b in part.bytes() {
                match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => {
                        out.push(b as char)
                    }
                    b' ' => out.push('+'),
                    _ => out.push_str(&format!("%{b:02X}")),
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_like_promtool() {
        fn check(input: &str, want: Option<i64>) {
            assert_eq!(parse_time_s(input), want, "{input}");
        }
        check("1767225600", Some(1_767_225_600));
        check("1767225600.9", Some(1_767_225_600));
        check("2026-01-01T00:00:00Z", Some(1_767_225_600));
        check("2026-01-01T02:00:00+02:00", Some(1_767_225_600));
        check("2026-01-01T00:00:00.750Z", Some(1_767_225_600));
        check("yesterday", None);
        check("NaN", None);
    }

    #[test]
    fn seconds_are_written_like_gos_api_client() {
        fn check(ns: i64, want: &str) {
            assert_eq!(go_seconds(ns), want, "{ns}");
        }
        check(1_767_225_600 * NANOS_PER_SEC, "1767225600");
        check(30 * NANOS_PER_SEC, "30");
        check(1_767_225_612_345_678_901, "1767225612.3456788");
        check(500_000_000, "0.5");
    }

    #[test]
    fn group_slots_like_prometheus() {
        // Slots are the interval grid shifted by the group's offset, and the slot of a
        // time is at or before it.
        let interval = 30 * NANOS_PER_SEC;
        let offset = group_offset_ns("rules/a.yml", "g", interval);
        assert!((0..interval).contains(&offset));
        let t = 1_767_225_600 * NANOS_PER_SEC;
        let slot = eval_timestamp_ns(t, interval, offset);
        assert!(slot <= t && t - slot < interval);
        assert_eq!((slot - offset) % interval, 0);
        assert_ne!(
            group_offset_ns("rules/a.yml", "g", interval),
            group_offset_ns("rules/b.yml", "g", interval),
            "the file is part of the hash"
        );
    }

    #[test]
    fn answers_are_read_or_explained() {
        fn check(status: u16, body: &str, want: Result<usize, &str>) {
            match (parse_answer(status, body), want) {
                (Ok(a), Ok(n)) => assert_eq!(a.series.len(), n, "{body}"),
                (Err(e), Err(msg)) => assert!(e.to_string().contains(msg), "{e}"),
                (got, _) => panic!("{body}: {:?}", got.map(|a| a.series.len())),
            }
        }
        check(
            200,
            r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"a":"b"},"values":[[1767225600.5,"1"],[1767225630.5,"NaN"]]}]}}"#,
            Ok(1),
        );
        check(
            400,
            r#"{"status":"error","errorType":"bad_data","error":"1:5: parse error"}"#,
            Err("HTTP 400, bad_data: 1:5: parse error"),
        );
        check(
            200,
            r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#,
            Err("answered a \"vector\""),
        );
        check(
            502,
            "<html>bad gateway</html>",
            Err("without Prometheus's JSON"),
        );
    }

    #[test]
    fn forms_are_encoded() {
        assert_eq!(
            form_encode(&[("query", "sum(x{a=\"b c\"}) / 2"), ("step", "30")]),
            "query=sum%28x%7Ba%3D%22b+c%22%7D%29+%2F+2&step=30"
        );
    }
}
