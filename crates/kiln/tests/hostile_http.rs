//! Hostile-input cases for the HTTP server (issue 20, items 7-10): connections that
//! hold on, remote write from where it should not come, work that piles up. Each case
//! attacks a server over the canary data and ends with `assert_unharmed`.

mod common;

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::hostile::{CANARY_TIME, Target, assert_unharmed, raw, target};
use common::http;

/// Opens a connection and sends `bytes` (possibly nothing, or half a request).
fn open(port: u16, bytes: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.write_all(bytes).expect("send");
    s
}

/// Whether the server closes `s` (after sending whatever it sends) within `limit`;
/// what it sent.
fn closed_by_server(mut s: TcpStream, limit: Duration) -> (bool, String) {
    s.set_read_timeout(Some(limit)).expect("read timeout");
    let mut got = Vec::new();
    let closed = s.read_to_end(&mut got).is_ok();
    (closed, String::from_utf8_lossy(&got).into_owned())
}

/// Item 7: with `--web.read-timeout=1s`, a connection that sends nothing, one that
/// stops in its headers, an idle keep-alive connection and one that stops in its body
/// are all closed (the last with a 408), and the server is unharmed.
#[test]
fn idle_and_half_sent_connections_are_closed_after_the_read_timeout() {
    let t = target(&["--web.read-timeout=1s"]);
    let port = t.port();
    let silent = open(port, b"");
    let half_headers = open(port, b"GET /-/ready HTTP/1.1\r\nHost: x\r\nX-Slow: ");
    let mut kept_alive = open(port, b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n");
    kept_alive
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    let mut first = Vec::new();
    let mut buf = [0u8; 512];
    while !String::from_utf8_lossy(&first).contains("Healthy") {
        let n = kept_alive.read(&mut buf).expect("first answer");
        assert!(n > 0, "closed before the first answer");
        first.extend_from_slice(&buf[..n]);
    }
    let half_body = open(
        port,
        b"POST /api/v1/query HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nquery=hostile",
    );
    let limit = Duration::from_secs(10);
    for (what, conn) in [
        ("a silent connection", silent),
        ("half-sent headers", half_headers),
        ("an idle keep-alive connection", kept_alive),
    ] {
        let (closed, sent) = closed_by_server(conn, limit);
        assert!(closed, "{what}: still open after {limit:?}");
        assert!(!sent.contains("HTTP/1.1 2"), "{what}: answered {sent}");
    }
    let (closed, sent) = closed_by_server(half_body, limit);
    assert!(closed, "a half-sent body: still open after {limit:?}");
    assert!(
        sent.starts_with("HTTP/1.1 408") && sent.contains("--web.read-timeout"),
        "a half-sent body: {sent}"
    );
    assert_unharmed(&t, "idle and half-sent connections");
}

/// Item 7: every connection slot held by a client that sends nothing: health checks
/// are still answered (the reserve), other requests get a clear 503, and once the
/// clients go the server serves everything again.
#[test]
fn health_checks_are_answered_when_every_connection_slot_is_held() {
    let t = target(&["--web.max-connections=4", "--web.read-timeout=30s"]);
    let port = t.port();
    let holders: Vec<TcpStream> = (0..4).map(|_| open(port, b"")).collect();
    // The holders are accepted at once (free slots); a health check then finds none.
    let started = Instant::now();
    let ready = http(port, "GET", "/-/ready");
    assert_eq!(ready.as_ref().map(|r| r.0), Some(200), "{ready:?}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "/-/ready took {:?} with every slot held",
        started.elapsed()
    );
    let healthy = http(port, "GET", "/-/healthy");
    assert_eq!(healthy.as_ref().map(|r| r.0), Some(200), "{healthy:?}");
    let query = http(port, "GET", "/api/v1/query?query=hostile_canary");
    let (status, body) = query.expect("an answer");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("--web.max-connections"), "{body}");
    drop(holders);
    wait_until_served(&t);
    assert_unharmed(&t, "every connection slot held");
}

/// Waits (bounded) until the server has noticed that clients went away and serves a
/// query on a normal slot again.
fn wait_until_served(t: &Target) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let path = format!("/api/v1/query?query=hostile_canary&time={CANARY_TIME}");
        if matches!(http(t.port(), "GET", &path), Some((200, _))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("slots not freed 10 s after their clients closed");
}

/// Item 7: the soft open-files limit is raised to the hard limit at start.
#[test]
fn the_open_files_limit_is_raised_to_the_hard_limit() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    // The server inherits a soft limit below the hard one from this process.
    let ours = getrlimit(Resource::Nofile);
    let Some(hard) = ours.maximum else {
        // An unlimited hard limit: the soft one must become unlimited too.
        return check_raised(None);
    };
    if hard <= 1024 {
        // Nothing to raise on this machine; still check soft == hard.
        return check_raised(Some(hard));
    }
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(1024),
            maximum: Some(hard),
        },
    )
    .expect("lower the soft limit");
    check_raised(Some(hard));
    let _ = setrlimit(Resource::Nofile, ours);
}

fn check_raised(hard: Option<u64>) {
    let t = target(&[]);
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", t.server.child.id()))
        .expect("read /proc/PID/limits");
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("an open files line");
    let fields: Vec<&str> = line.split_whitespace().collect();
    let (soft, hard_seen) = (fields[3], fields[4]);
    assert_eq!(soft, hard_seen, "{line}");
    if let Some(hard) = hard {
        assert_eq!(hard_seen, hard.to_string(), "{line}");
    }
    assert_unharmed(&t, "start with a low open-files limit");
}

/// `POST /api/v1/write` with `headers` (lines ending in CRLF) and `body`.
fn post_write(port: u16, headers: &str, body: &[u8]) -> Option<(u16, String)> {
    let mut req = format!(
        "POST /api/v1/write HTTP/1.0\r\nHost: x\r\n{headers}Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    raw(port, &req, Duration::from_secs(10))
}

/// `POST /api/v1/write` of a protobuf `body`; the whole answer, headers included.
fn post_write_answer(port: u16, body: &[u8]) -> String {
    let mut s = open(
        port,
        format!(
            "POST /api/v1/write HTTP/1.0\r\nHost: x\r\n{PROTOBUF}Content-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    s.write_all(body).expect("send body");
    closed_by_server(s, Duration::from_secs(10)).1
}

const PROTOBUF: &str = "Content-Type: application/x-protobuf\r\nContent-Encoding: snappy\r\n";

/// Whether `name` has any sample stored.
fn stored(port: u16, name: &str) -> bool {
    let (status, body) =
        http(port, "GET", &format!("/api/v1/query?query=count({name})")).expect("query answered");
    assert_eq!(status, 200, "{body}");
    body.contains("\"value\"")
}

/// Item 8: without `--web.enable-remote-write-receiver` the endpoint answers 404 with
/// Prometheus's message and stores nothing.
#[test]
fn remote_write_is_off_unless_enabled() {
    let t = target(&[]);
    let answer = post_write(
        t.port(),
        PROTOBUF,
        &common::remote_write_body("rw_off", "hostile", &[(now_ms(), 7.0)]),
    );
    let (status, body) = answer.expect("an answer");
    assert_eq!(status, 404, "{body}");
    assert_eq!(
        body.trim(),
        "remote write receiver needs to be enabled with --web.enable-remote-write-receiver"
    );
    assert!(!stored(t.port(), "rw_off"));
    assert_unharmed(&t, "remote write while disabled");
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Items 8 and 10: requests a web page could send (no or a "simple" content type),
/// a snappy header announcing 4 GiB or more, and a body of the other protocol version
/// are each refused with their status and reason, and store nothing.
#[test]
fn remote_write_refuses_what_is_not_protobuf_of_the_announced_version() {
    let t = target(&["--web.enable-remote-write-receiver"]);
    let port = t.port();
    let check = |what: &str, headers: &str, body: &[u8], want: (u16, &str)| {
        let (status, text) = post_write(port, headers, body).expect("an answer");
        assert_eq!(status, want.0, "{what}: {text}");
        assert!(text.contains(want.1), "{what}: {text}");
        assert!(!stored(port, "rw_hostile"), "{what}: stored");
        assert_unharmed(&t, what);
    };
    let valid = common::remote_write_body("rw_hostile", "hostile", &[(now_ms(), 7.0)]);
    check(
        "no Content-Type",
        "",
        &valid,
        (
            415,
            "no Content-Type: remote write requests must say application/x-protobuf",
        ),
    );
    check(
        "a form post",
        "Content-Type: application/x-www-form-urlencoded\r\n",
        &valid,
        (415, "unsupported content type"),
    );
    check(
        "text/plain",
        "Content-Type: text/plain\r\n",
        &valid,
        (415, "unsupported content type"),
    );
    check(
        "a snappy header announcing 4 GiB",
        PROTOBUF,
        &[0x80, 0x80, 0x80, 0x80, 0x10, 0x00],
        (
            413,
            "decompressed body of 4294967296 bytes would be over the limit",
        ),
    );
    check(
        "a snappy header announcing 16 GiB",
        PROTOBUF,
        &[0x80, 0x80, 0x80, 0x80, 0x40, 0x00],
        (413, "would be over the limit"),
    );
    check(
        "a 2.0 content type with a 1.0 body",
        "Content-Type: application/x-protobuf;proto=io.prometheus.write.v2.Request\r\nContent-Encoding: snappy\r\n",
        &valid,
        (
            400,
            "not a remote write 2.0 io.prometheus.write.v2.Request message",
        ),
    );
    // The same body with the right type is stored.
    let (status, text) = post_write(port, PROTOBUF, &valid).expect("an answer");
    assert_eq!(status, 204, "{text}");
    assert!(stored(port, "rw_hostile"));
    assert_unharmed(&t, "a valid remote write");
}

/// Item 9: remote-write decoding is bounded. With one slot, held by a request whose
/// body never comes, another request waits `--storage.remote.write-queue-wait` and
/// gets 503 with Retry-After; the holder gets 408 at the read timeout, and then
/// requests are stored again.
#[test]
fn remote_write_beyond_its_concurrency_waits_then_gets_503() {
    let t = target(&[
        "--web.enable-remote-write-receiver",
        "--storage.remote.write-concurrent-limit=1",
        "--storage.remote.write-queue-wait=100ms",
        "--web.read-timeout=3s",
    ]);
    let port = t.port();
    let holder = open(
        port,
        format!("POST /api/v1/write HTTP/1.0\r\nHost: x\r\n{PROTOBUF}Content-Length: 1000\r\n\r\n")
            .as_bytes(),
    );
    let body = common::remote_write_body("rw_queued", "hostile", &[(now_ms(), 7.0)]);
    // The holder takes the slot once the server has read its headers.
    let deadline = Instant::now() + Duration::from_secs(3);
    let busy = loop {
        let answer = post_write_answer(port, &body);
        if answer.contains(" 503 ") || Instant::now() > deadline {
            break answer;
        }
    };
    assert!(busy.contains(" 503 "), "{busy}");
    assert!(
        busy.contains(
            "too many remote-write requests in progress (--storage.remote.write-concurrent-limit=1)"
        ) && busy.to_ascii_lowercase().contains("retry-after: 1\r\n"),
        "{busy}"
    );
    let (closed, sent) = closed_by_server(holder, Duration::from_secs(10));
    assert!(closed && sent.contains(" 408 "), "{sent}");
    let (status, text) = post_write(port, PROTOBUF, &body).expect("an answer");
    assert_eq!(status, 204, "{text}");
    assert_unharmed(&t, "remote write beyond its concurrency");
}

/// Item 9: `/api/v1/rules`, `/api/v1/alerts` and `/metrics` answer while a rule
/// group's evaluation is stuck (its query waits on a remote-read endpoint that never
/// answers), from the state of the last completed evaluation.
#[test]
fn status_endpoints_do_not_wait_for_a_rule_evaluation() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let silent_port = silent.local_addr().expect("addr").port();
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = dir.path().join("rules.yml");
    std::fs::write(
        &rules,
        "groups:\n  - name: stuck\n    interval: 1s\n    rules:\n      - record: stuck:count\n        expr: count(hostile_canary)\n      - alert: Stuck\n        expr: hostile_canary > 0\n",
    )
    .expect("rules");
    let config_flag = silent_remote_read_config(
        dir.path(),
        silent_port,
        &format!("rule_files: ['{}']\n", rules.display()),
    );
    let t = target(&[&config_flag]);
    // The first evaluation's query reaches the silent endpoint and waits there.
    let (held, _) = silent.accept().expect("the evaluation's remote read");
    for path in ["/api/v1/rules", "/api/v1/alerts", "/metrics"] {
        let (status, body) = http(t.port(), "GET", path)
            .unwrap_or_else(|| panic!("{path}: no answer while an evaluation is in progress"));
        assert_eq!(status, 200, "{path}: {body}");
    }
    let (_, rules_answer) = http(t.port(), "GET", "/api/v1/rules").expect("rules");
    assert!(
        rules_answer.contains(r#""name":"stuck""#) && rules_answer.contains("stuck:count"),
        "{rules_answer}"
    );
    let (_, metrics) = http(t.port(), "GET", "/metrics").expect("metrics");
    assert!(
        metrics.contains("prometheus_rule_group_rules{rule_group=")
            && metrics.contains(";stuck\"} 2"),
        "{metrics}"
    );
    // Queries (the canary's too) stop waiting on the endpoint once it is gone.
    drop(held);
    drop(silent);
    assert_unharmed(&t, "a stuck rule evaluation");
}

/// A config whose `remote_read` endpoint is `silent` (accepts, never answers), asked
/// for recent data too: queries that reach it wait there until it goes away.
fn silent_remote_read_config(dir: &std::path::Path, silent_port: u16, extra: &str) -> String {
    let config = dir.join("kiln.yml");
    std::fs::write(
        &config,
        format!(
            "{extra}remote_read:\n  - url: http://127.0.0.1:{silent_port}/read\n    read_recent: true\n    remote_timeout: 5m\n"
        ),
    )
    .expect("config");
    format!("--config.file={}", config.display())
}

/// Item 9: queries beyond `--query.max-concurrency` wait for a slot without holding a
/// thread, time out in the queue with Prometheus's error, and `/-/ready` is answered
/// meanwhile.
#[test]
fn queries_beyond_the_concurrency_limit_wait_in_the_queue_and_time_out_there() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let silent_port = silent.local_addr().expect("addr").port();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = silent_remote_read_config(dir.path(), silent_port, "");
    let t = target(&[&config, "--query.max-concurrency=1"]);
    let port = t.port();
    // This query takes the only slot and waits on the silent endpoint.
    let holder =
        std::thread::spawn(move || http(port, "GET", "/api/v1/query?query=hostile_canary"));
    let (held, _) = silent.accept().expect("the first query's remote read");
    let (status, body) =
        http(port, "GET", "/api/v1/query?query=vector(1)&timeout=300ms").expect("an answer");
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains(r#""errorType":"timeout""#)
            && body.contains("query timed out in query queue"),
        "{body}"
    );
    let started = Instant::now();
    let ready = http(port, "GET", "/-/ready");
    assert_eq!(ready.map(|r| r.0), Some(200));
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    drop(held);
    drop(silent);
    let first = holder.join().expect("holder thread");
    assert!(first.is_some(), "the first query got no answer");
    assert_unharmed(&t, "queries beyond the concurrency limit");
}
