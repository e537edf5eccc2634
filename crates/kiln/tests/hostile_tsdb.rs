//! Hostile input to storage (issue 20, items 4 and 6): a sample far in the future,
//! a data directory that already holds one, and torn head chunk files. After each, the
//! server answers `/-/ready` within a second, the canary is intact, and the attack got
//! its documented answer (docs/tsdb-operations.md, "Timestamps from the future" and
//! "Damaged head chunk files").

mod common;

use std::process::Command;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use common::hostile::{Target, assert_unharmed, raw, target};
use common::{KilnServer, exporter, http, start_kiln_server_logged, url_encode};

const MIN: i64 = 60_000;
const YEAR: i64 = 365 * 24 * 60 * MIN;
/// Remote write may become opt-in; these tests write through it.
const RECEIVER: &str = "--web.enable-remote-write-receiver";
/// A SIGTERM must end the server well within this, on 2 busy cores in a debug build.
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(20);

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// POSTs a remote-write request; returns the status and body.
fn remote_write(port: u16, name: &str, samples: &[(i64, f64)]) -> (u16, String) {
    let body = common::remote_write_body(name, "hostile", samples);
    let mut request = format!(
        "POST /api/v1/write HTTP/1.0\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n\
         Content-Encoding: snappy\r\nX-Prometheus-Remote-Write-Version: 0.1.0\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(&body);
    raw(port, &request, Duration::from_secs(10)).expect("remote write answered")
}

/// The result of an instant query at the clock's time, as returned.
fn query_now(port: u16, query: &str) -> String {
    let path = format!(
        "/api/v1/query?query={}&time={}",
        url_encode(query),
        now_ms() as f64 / 1000.0
    );
    let (status, body) = http(port, "GET", &path).expect("query answered");
    assert_eq!(status, 200, "{query}: {body}");
    body
}

/// The value of the first sample of `name` on `/metrics` (labels ignored).
fn metric(port: u16, name: &str) -> f64 {
    let (status, body) = http(port, "GET", "/metrics").expect("/metrics answered");
    assert_eq!(status, 200);
    body.lines()
        .find(|l| l.starts_with(&format!("{name} ")) || l.starts_with(&format!("{name}{{")))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} not on /metrics"))
}

/// Sends SIGTERM and waits for the exit; the shutdown must be clean and end within
/// [`SHUTDOWN_LIMIT`].
fn terminate(server: &mut KilnServer, what: &str) {
    let pid = server.child.id().to_string();
    Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("send SIGTERM");
    let started = Instant::now();
    loop {
        if let Some(status) = server.child.try_wait().expect("wait") {
            assert!(status.success(), "{what}: shutdown exit status {status}");
            return;
        }
        assert!(
            started.elapsed() < SHUTDOWN_LIMIT,
            "{what}: SIGTERM did not end the server within {SHUTDOWN_LIMIT:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// How a server is stopped before a restart.
#[derive(Debug, Clone, Copy)]
enum Stop {
    /// SIGTERM: a clean shutdown (open head chunks go to the chunk files).
    Term,
    /// `kill -9`: a crash (the next start replays the whole WAL).
    Kill,
}

/// Stops `t`'s server and starts another over the same data directory with `args`;
/// returns the log lines written up to `Listening on`.
fn restart(t: &mut Target, stop: Stop, args: &[&str], what: &str) -> Vec<String> {
    match stop {
        Stop::Term => terminate(&mut t.server, what),
        Stop::Kill => {
            t.server.child.kill().expect("kill -9");
            t.server.child.wait().expect("wait");
        }
    }
    let path = format!("--storage.tsdb.path={}", t.data.display());
    let mut all = vec![path.as_str(), "--web.listen-address=127.0.0.1:0"];
    all.extend_from_slice(args);
    let (server, lines) = start_kiln_server_logged(&all);
    t.server = server;
    drain(&lines)
}

fn drain(lines: &Receiver<String>) -> Vec<String> {
    lines.try_iter().collect()
}

#[test]
fn a_far_future_remote_written_sample_is_refused_with_its_reason() {
    let t = target(&[RECEIVER]);
    let now = now_ms();
    for (what, ts) in [
        ("i64::MAX", i64::MAX),
        ("ten years ahead", now + 10 * YEAR),
        ("11 minutes ahead", now + 11 * MIN),
    ] {
        let (status, body) = remote_write(t.port(), "hostile_future", &[(now, 1.0), (ts, 2.0)]);
        assert_eq!(status, 400, "{what}: {body}");
        assert!(
            body.contains("out of bounds")
                && body
                    .contains("too far in the future: more than 10m ahead of the server's clock"),
            "{what}: {body}"
        );
        assert_unharmed(&t, what);
    }
    // Nothing of the refused requests was stored; current samples go in as before.
    assert!(query_now(t.port(), "hostile_future").contains(r#""result":[]"#));
    let (status, body) = remote_write(t.port(), "hostile_future", &[(now, 1.0), (now + MIN, 2.0)]);
    assert_eq!(status, 204, "{body}");
    let body = query_now(t.port(), "count_over_time(hostile_future[10m])");
    assert!(
        body.contains(r#""1"]"#),
        "only the sample up to now: {body}"
    );
    assert_eq!(
        metric(t.port(), "prometheus_tsdb_out_of_bound_samples_total"),
        3.0,
        "the three refusals are counted"
    );
    assert_unharmed(&t, "current samples after refusals");
}

#[test]
fn a_scraped_far_future_sample_is_counted_as_out_of_bounds() {
    // With honor_timestamps (the default) a target's own timestamp is used: year 2286.
    let port = exporter("hostile_scraped_future 1 9999999999999\nhostile_scraped_now 1\n");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("kiln.yml");
    std::fs::write(
        &config,
        format!(
            "scrape_configs:\n  - job_name: hostile\n    scrape_interval: 1s\n    \
             static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
        ),
    )
    .expect("write config");
    let config = format!("--config.file={}", config.display());
    let t = target(&[&config]);
    let started = Instant::now();
    while metric(
        t.port(),
        "prometheus_target_scrapes_sample_out_of_bounds_total",
    ) < 1.0
    {
        assert!(
            started.elapsed() < SHUTDOWN_LIMIT,
            "no scrape counted the far-future sample"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(query_now(t.port(), "hostile_scraped_future").contains(r#""result":[]"#));
    assert!(
        query_now(t.port(), "hostile_scraped_now").contains(r#""result":[{"#),
        "the rest of the scrape is stored"
    );
    assert!(query_now(t.port(), "up{job=\"hostile\"}").contains(r#""1"]"#));
    assert_unharmed(&t, "a scraped far-future sample");
}

#[test]
fn a_data_directory_holding_a_far_future_sample_opens_and_ingests() {
    // An older Kiln (no bound: max-future 0) stored a sample at the end of time.
    let mut t = target(&[RECEIVER, "--storage.tsdb.max-future=0"]);
    let t0 = now_ms() - 5 * MIN;
    let (status, body) = remote_write(t.port(), "hostile_old", &[(t0, 1.0)]);
    assert_eq!(status, 204, "{body}");
    let (status, body) = remote_write(t.port(), "hostile_old", &[(i64::MAX, 2.0)]);
    assert_eq!(status, 204, "without a bound the sample is taken: {body}");
    let (status, body) = remote_write(t.port(), "hostile_old", &[(t0 + MIN, 3.0)]);
    assert_eq!(status, 400, "and it wedges ingestion: {body}");

    // Kiln now: the replay drops the sample with one warning, and ingestion goes on.
    // Both places a directory can hold it: the chunk files (after a clean shutdown)
    // and the WAL (after a crash).
    for (round, stop) in [(0, Stop::Term), (1, Stop::Kill)] {
        let what = format!("restart after {stop:?}");
        // Round 1: the clean shutdown after round 0 left chunk files without the
        // sample, but the WAL still holds it, and a crash makes the next start read it.
        let log = restart(&mut t, stop, &[RECEIVER], &what);
        let warned: Vec<&String> = log
            .iter()
            .filter(|l| l.contains("WAL samples too far in the future were dropped"))
            .collect();
        assert_eq!(warned.len(), 1, "{what}: {log:#?}");
        assert!(
            warned[0].contains("level=WARN") && warned[0].contains("samples=1"),
            "{}",
            warned[0]
        );
        assert!(
            log.iter().any(|l| l.contains("WAL replay completed")),
            "{what}: every WAL sample is replayed, the far-future one dropped: {log:#?}"
        );
        let head_max = metric(t.port(), "prometheus_tsdb_head_max_time");
        assert!(
            head_max < (now_ms() + 10 * MIN) as f64,
            "{what}: the head's newest time is current: {head_max}"
        );
        let t1 = now_ms() - 3 * MIN + round * MIN;
        let (status, body) = remote_write(t.port(), "hostile_old", &[(t1, 4.0)]);
        assert_eq!(
            status, 204,
            "{what}: current samples are taken again: {body}"
        );
        assert_unharmed(&t, &what);
    }
    let body = query_now(t.port(), "count_over_time(hostile_old[1h])");
    assert!(
        body.contains(r#""3"]"#),
        "t0 and the two current samples: {body}"
    );
    terminate(&mut t.server, "final shutdown");
}

#[test]
fn sigterm_ends_the_server_while_compaction_faces_a_far_future_sample() {
    // Without a bound, a sample at the end of time makes the head span all of time:
    // compaction must jump over the empty ranges (not cut them one by one, each with a
    // WAL checkpoint) and SIGTERM must end the server promptly.
    let long = [
        "--storage.tsdb.retention.time=100y",
        "--storage.tsdb.max-future=0",
        RECEIVER,
    ];
    let mut t = target(&long);
    let now = now_ms();
    let (status, body) = remote_write(t.port(), "hostile_span", &[(now - MIN, 1.0)]);
    assert_eq!(status, 204, "{body}");
    let (status, body) = remote_write(t.port(), "hostile_span", &[(i64::MAX, 2.0)]);
    assert_eq!(status, 204, "{body}");
    // The next start compacts at once, with the sample in the head: the current range
    // becomes a block, then the head's lower bound jumps to the end of time.
    restart(&mut t, Stop::Term, &long, "first shutdown");
    let started = Instant::now();
    while metric(t.port(), "prometheus_tsdb_head_min_time") < 9e18 {
        assert!(
            started.elapsed() < SHUTDOWN_LIMIT,
            "the start-up compaction did not reach the far-future sample"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let checkpoints = metric(t.port(), "prometheus_tsdb_checkpoint_creations_total");
    assert!(
        checkpoints <= 1.0,
        "one checkpoint for the one block, not one per empty range: {checkpoints}"
    );
    assert_unharmed(&t, "compaction over all of time");
    terminate(&mut t.server, "shutdown after compaction");
}

/// Writes `hostile_torn` samples every 15 s in `[from, to)` (ms), in one request.
fn write_torn(port: u16, from: i64, to: i64) -> usize {
    let samples: Vec<(i64, f64)> = (from..to).step_by(15_000).map(|t| (t, 1.0)).collect();
    let (status, body) = remote_write(port, "hostile_torn", &samples);
    assert_eq!(status, 204, "{body}");
    samples.len()
}

#[test]
fn torn_head_chunk_files_do_not_block_start_up() {
    // The newest file and an older one, each one byte short.
    for torn in ["000002", "000001"] {
        let mut t = target(&[RECEIVER]);
        let now = now_ms() / 15_000 * 15_000;
        // Two runs: each clean shutdown writes the open chunks to a new chunk file.
        let mut written = write_torn(t.port(), now - 50 * MIN, now - 25 * MIN);
        restart(&mut t, Stop::Term, &[RECEIVER], "first shutdown");
        written += write_torn(t.port(), now - 25 * MIN, now);
        terminate(&mut t.server, "second shutdown");
        let file = t.data.join("chunks_head").join(torn);
        let bytes = std::fs::read(&file).expect("chunk file");
        std::fs::write(&file, &bytes[..bytes.len() - 1]).expect("tear the file");

        let path = format!("--storage.tsdb.path={}", t.data.display());
        let (server, lines) =
            start_kiln_server_logged(&[&path, "--web.listen-address=127.0.0.1:0", RECEIVER]);
        t.server = server;
        let log = drain(&lines);
        let warned: Vec<&String> = log
            .iter()
            .filter(|l| l.contains("damaged head chunk file"))
            .collect();
        assert_eq!(warned.len(), 1, "{torn}: {log:#?}");
        assert!(
            warned[0].contains("level=WARN") && warned[0].contains(&format!("chunks_head/{torn}")),
            "{}",
            warned[0]
        );
        assert!(
            log.iter().any(|l| l.contains("WAL replay completed")),
            "{torn}: after a clean shutdown the whole WAL is replayed: {log:#?}"
        );
        let body = query_now(t.port(), "count_over_time(hostile_torn[1h])");
        assert!(
            body.contains(&format!(r#""{written}"]"#)),
            "{torn}: every acknowledged sample ({written}): {body}"
        );
        assert_unharmed(&t, &format!("torn {torn}"));
    }
}
