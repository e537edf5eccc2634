//! Hostile queries (issue 20, items 1-3 and 10): each gets its documented answer and
//! leaves the server unharmed (`/-/ready` within a second, the canary intact).

mod common;

use std::time::{Duration, Instant};

use common::hostile::{assert_unharmed, get_query, raw, target};
use common::http;

/// `n` levels of parentheses around `x`.
fn parens(n: usize) -> String {
    format!("{}hostile_canary{}", "(".repeat(n), ")".repeat(n))
}

/// Deeply nested and long queries are answered, as Prometheus answers them, on every
/// endpoint that parses a query: the parser and the evaluator grow their stack on the
/// heap instead of overflowing the runtime's small thread stacks.
#[test]
fn deep_and_long_queries_are_answered() {
    let t = target(&[]);
    let chain = vec!["hostile_canary"; 1717].join(" + ");
    let or_chain = vec!["hostile_canary"; 2000].join(" or ");
    let abs = format!("{}hostile_canary{}", "abs(".repeat(1388), ")".repeat(1388));
    for (what, q) in [
        ("1,700 parentheses", parens(1700)),
        ("a 1,717-term sum", chain),
        ("a 2,000-term or", or_chain),
        ("1,388 nested abs(", abs),
    ] {
        let time = common::hostile::CANARY_TIME;
        let (status, body) =
            get_query(t.port(), "/api/v1/query", &q).unwrap_or_else(|| panic!("{what}: no answer"));
        assert_eq!(status, 200, "{what}: {body}");
        let path = format!(
            "/api/v1/query_range?query={}&start={}&end={}&step=60",
            common::url_encode(&q),
            time - 600,
            time
        );
        let (status, body) = http(t.port(), "POST", &path).expect("query_range");
        assert_eq!(status, 200, "{what} (range): {body}");
        // Prometheus's layout indents every level, so deep parentheses make a large
        // answer (5 MB for 1,700 levels): give it time in a debug build.
        let request = format!(
            "GET /api/v1/format_query?query={} HTTP/1.0\r\nHost: x\r\n\r\n",
            common::url_encode(&q)
        );
        let (status, body) =
            raw(t.port(), request.as_bytes(), Duration::from_secs(120)).expect("format_query");
        assert_eq!(status, 200, "{what} (format_query): {body}");
        assert_unharmed(&t, what);
    }
    // Past the nesting limit: a clear 400, not a crash.
    let (status, body) = get_query(t.port(), "/api/v1/query", &parens(10_001)).expect("answer");
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("parse error: expression nests too deeply (more than 10000 levels)"),
        "{body}"
    );
    assert_unharmed(&t, "10,001 parentheses");
}

/// A subquery over a dense inner expression with more inner steps than the sample
/// budget is refused with Prometheus's "too many samples" (422) instead of allocating
/// its whole result up front.
#[test]
fn a_huge_dense_subquery_hits_the_sample_budget() {
    let t = target(&["--query.max-samples=100000"]);
    let started = Instant::now();
    let (status, body) = get_query(
        t.port(),
        "/api/v1/query",
        "max_over_time(vector(1)[365d:1ms])",
    )
    .expect("answer");
    assert_eq!(status, 422, "{body}");
    assert!(
        body.contains("query processing would load too many samples into memory"),
        "{body}"
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_unharmed(&t, "a 365d:1ms subquery of vector(1)");
    // As a range query, whose subqueries are otherwise computed for all steps at once.
    let path = format!(
        "/api/v1/query_range?query={}&start=1767225600&end=1767229200&step=60",
        common::url_encode("max_over_time(vector(1)[365d:1ms])")
    );
    let (status, body) = http(t.port(), "GET", &path).expect("answer");
    assert_eq!(status, 422, "{body}");
    assert_unharmed(&t, "a 365d:1ms subquery of vector(1) as a range query");
}

/// A subquery whose inner steps return nothing keeps no per-step state: its memory stays
/// flat and the query ends at the timeout.
#[test]
fn a_huge_empty_subquery_times_out_in_flat_memory() {
    let t = target(&["--query.timeout=2s"]);
    let (status, body) = get_query(
        t.port(),
        "/api/v1/query",
        "max_over_time(nonexistent_metric[365d:1ms])",
    )
    .expect("answer");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains(r#""errorType":"timeout""#), "{body}");
    let peak = peak_rss_kib(t.server.child.id());
    assert!(peak < 400 * 1024, "peak RSS {peak} KiB");
    assert_unharmed(&t, "a 365d:1ms subquery of nothing");
}

/// Times at the end of the representable range neither loop nor overflow.
#[test]
fn extreme_at_times_answer() {
    let t = target(&["--query.timeout=5s"]);
    for q in [
        "max_over_time(hostile_canary[5m:1m] @ 9223372036854775.807)",
        "max_over_time(hostile_canary[5m:1m] @ -9223372036854775.808)",
        "hostile_canary @ 9223372036854775.807 offset -5m",
        "rate(hostile_canary[5m] @ -9223372036854775.808)",
    ] {
        let started = Instant::now();
        let (status, body) = get_query(t.port(), "/api/v1/query", q).expect("answer");
        assert_eq!(status, 200, "{q}: {body}");
        assert!(body.contains(r#""result":[]"#), "{q}: {body}");
        assert!(started.elapsed() < Duration::from_secs(5), "{q}");
        assert_unharmed(&t, q);
    }
}

/// A number literal too large for a float is a parse error (400), as in Prometheus.
#[test]
fn an_overlong_number_literal_is_refused() {
    let t = target(&[]);
    let q = format!("1{}", "0".repeat(5000));
    let (status, body) = get_query(t.port(), "/api/v1/query", &q).expect("answer");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("error parsing number"), "{body}");
    assert!(body.contains("value out of range"), "{body}");
    assert_unharmed(&t, "a 5,000-digit number");
}

/// A rule file with a deeply nested expression passes `kiln check rules`, and the server
/// evaluates it at every interval without crashing.
#[test]
fn a_deep_rule_is_evaluated() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = dir.path().join("deep.yml");
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &rules,
        format!(
            "groups:\n  - name: deep\n    interval: 1s\n    rules:\n      - record: deep:canary\n        expr: '{}'\n",
            parens(1700)
        ),
    )
    .expect("write rules");
    std::fs::write(&config, format!("rule_files: ['{}']\n", rules.display()))
        .expect("write config");
    let out = common::kiln(&["check", "rules", rules.to_str().expect("path")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let flag = format!("--config.file={}", config.display());
    let t = target(&[&flag]);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, body) = http(t.port(), "GET", "/api/v1/rules").expect("rules");
        if body.contains(r#""health":"ok""#) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the deep rule never evaluated: {body}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_unharmed(&t, "evaluating a 1,700-level rule");
}

/// The process's peak resident memory (VmHWM), in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}
