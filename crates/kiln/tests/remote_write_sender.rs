//! Kiln as a remote-write sender: `remote_write` in the config, samples read from the
//! WAL, delivered exactly once through a receiver outage and a restart of Kiln; and
//! (interop tests, built with `KILN_INTEROP=1`) into a real Prometheus and a real VictoriaMetrics.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

/// What the test receiver got: for each series (labels as text), every timestamp, in
/// arrival order; and how many requests it refused while down.
#[derive(Default)]
struct Received {
    samples: HashMap<String, Vec<i64>>,
    metadata: usize,
    refused: usize,
    headers_ok: bool,
}

/// A remote-write receiver that records every sample it accepts; while `answer` holds
/// an error status it answers that instead (503: down, 400: refusing).
struct Receiver {
    port: u16,
    answer: Arc<AtomicU16>,
    got: Arc<Mutex<Received>>,
}

impl Receiver {
    fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let answer = Arc::new(AtomicU16::new(204));
        let got = Arc::new(Mutex::new(Received::default()));
        let (d, g) = (answer.clone(), got.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (d, g) = (d.clone(), g.clone());
                std::thread::spawn(move || serve_connection(stream, &d, &g));
            }
        });
        Receiver { port, answer, got }
    }

    fn total(&self) -> usize {
        let got = self.got.lock().expect("lock");
        got.samples.values().map(Vec::len).sum()
    }
}

/// Serves HTTP/1.1 requests on one keep-alive connection until it closes.
fn serve_connection(stream: std::net::TcpStream, answer: &AtomicU16, got: &Mutex<Received>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut writer = stream.try_clone().expect("clone stream");
    let mut reader = BufReader::new(stream);
    loop {
        let mut len = 0usize;
        let mut version_ok = false;
        let mut line = String::new();
        // Request line, then headers.
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let lower = l.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                len = v.trim().parse().unwrap_or(0);
            }
            if lower == "x-prometheus-remote-write-version: 0.1.0" {
                version_ok = true;
            }
        }
        let mut body = vec![0u8; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let status = answer.load(Ordering::SeqCst);
        if status != 204 {
            got.lock().expect("lock").refused += 1;
            let _ = write!(
                writer,
                "HTTP/1.1 {status} Refused\r\nContent-Length: 4\r\n\r\nnope"
            );
            continue;
        }
        let req =
            kiln_remote::receive::decode(&body, &kiln_remote::receive::ReceiveLimits::default())
                .expect("a valid remote-write request");
        {
            let mut g = got.lock().expect("lock");
            g.headers_ok = version_ok;
            g.metadata += req.metadata.len();
            for ts in &req.timeseries {
                let key: Vec<String> = ts
                    .labels
                    .iter()
                    .map(|l| format!("{}={}", l.name, l.value))
                    .collect();
                let times = g.samples.entry(key.join(",")).or_default();
                times.extend(ts.samples.iter().map(|s| s.timestamp));
            }
        }
        let _ = writer.write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n");
    }
}

const EXPOSITION: &str = "# HELP gpu_util GPU utilisation.\n# TYPE gpu_util gauge\n\
gpu_util{gpu=\"0\"} 0.25\ngpu_util{gpu=\"1\"} 0.75\n# TYPE dropme gauge\ndropme 1\n";

fn sender_config(dir: &std::path::Path, target: u16, url: &str) -> std::path::PathBuf {
    let path = dir.join("kiln.yml");
    std::fs::write(
        &path,
        format!(
            "global:\n  scrape_interval: 1s\n  external_labels: {{cluster: a}}\n\
             scrape_configs:\n  - job_name: src\n    static_configs: [{{targets: ['127.0.0.1:{target}']}}]\n\
             remote_write:\n  - url: {url}\n    name: test\n\
             \x20   write_relabel_configs: [{{source_labels: [__name__], regex: dropme, action: drop}}]\n\
             \x20   metadata_config: {{send_interval: 1s}}\n\
             \x20   queue_config: {{batch_send_deadline: 200ms, min_backoff: 50ms, max_backoff: 500ms}}\n"
        ),
    )
    .expect("write config");
    path
}

fn start_sender(config: &std::path::Path, data: &std::path::Path) -> KilnServer {
    start_kiln_server(&[
        &format!("--config.file={}", config.display()),
        &format!("--storage.tsdb.path={}", data.display()),
        "--web.listen-address=127.0.0.1:0",
    ])
}

/// Stops a server with SIGTERM and waits for it to exit.
fn terminate(mut server: KilnServer) {
    let pid = server.child.id().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("send SIGTERM");
    let _ = server.child.wait();
}

fn wait_until(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ok() {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The timestamps of `series` Kiln stores over the last hour.
fn stored_timestamps(port: u16, selector: &str) -> Vec<i64> {
    let q = url_encode(&format!("{selector}[1h]"));
    let (_, body) = http(port, "GET", &format!("/api/v1/query?query={q}")).expect("query");
    matrix_samples(&body).into_iter().map(|(t, _)| t).collect()
}

#[test]
fn every_scraped_sample_arrives_exactly_once_through_an_outage_and_a_restart() {
    let target = exporter(EXPOSITION);
    let receiver = Receiver::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let url = format!("http://127.0.0.1:{}/api/v1/write", receiver.port);
    let config = sender_config(dir.path(), target, &url);
    let sender = start_sender(&config, &data);
    wait_until("first samples", Duration::from_secs(30), || {
        receiver.total() >= 6
    });

    // The receiver is down for a while: Kiln keeps scraping, and retries.
    receiver.answer.store(503, Ordering::SeqCst);
    std::thread::sleep(Duration::from_secs(4));
    let (_, metrics) = http(sender.port, "GET", "/metrics").expect("metrics");
    let retried = metrics
        .lines()
        .find(|l| l.starts_with("prometheus_remote_storage_samples_retried_total{"))
        .expect("retried metric");
    assert!(!retried.ends_with(" 0"), "{retried}");
    assert!(
        metrics.contains(r#"prometheus_remote_storage_shards{remote_name="test",url=""#),
        "{metrics}"
    );
    // Kiln is killed while the receiver is still down: what it scraped meanwhile is
    // only in its WAL, and must still arrive once both are back.
    drop(sender);
    receiver.answer.store(204, Ordering::SeqCst);
    let sender = start_sender(&config, &data);
    std::thread::sleep(Duration::from_secs(3));
    // A clean restart resumes where it stopped: nothing is sent twice.
    terminate(sender);
    let sender = start_sender(&config, &data);
    std::thread::sleep(Duration::from_secs(2));
    let selector = r#"gpu_util{gpu="0"}"#;
    let stored = stored_timestamps(sender.port, selector);
    terminate(sender);

    let got = receiver.got.lock().expect("lock");
    assert!(got.refused > 0, "the outage was noticed");
    assert!(got.headers_ok, "remote write 1.0 version header sent");
    assert!(got.metadata > 0, "metadata sent");
    assert!(
        got.samples.keys().all(|k| !k.contains("dropme")),
        "write_relabel_configs drop: {:?}",
        got.samples.keys()
    );
    let key = "__name__=gpu_util,cluster=a,gpu=0,instance=127.0.0.1:".to_owned()
        + &target.to_string()
        + ",job=src";
    let sent = got
        .samples
        .get(&key)
        .unwrap_or_else(|| panic!("series {key} not received; got {:?}", got.samples.keys()));
    let mut unique = sent.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), sent.len(), "a sample arrived twice: {sent:?}");
    assert!(stored.len() >= 10, "stored {stored:?}");
    // Everything stored (up to a moment before the last stop) arrived.
    let missing: Vec<_> = stored.iter().filter(|t| !unique.contains(t)).collect();
    assert!(missing.is_empty(), "never sent: {missing:?} of {stored:?}");
}

/// The value of the first sample of `name` in a text exposition.
fn metric_value(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {metrics}"))
}

#[test]
fn refused_batches_are_dropped_and_counted_not_retried() {
    let target = exporter(EXPOSITION);
    let receiver = Receiver::start();
    receiver.answer.store(400, Ordering::SeqCst);
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("http://127.0.0.1:{}/api/v1/write", receiver.port);
    let config = sender_config(dir.path(), target, &url);
    let sender = start_sender(&config, &dir.path().join("data"));
    let mut metrics = String::new();
    wait_until("failed samples counted", Duration::from_secs(30), || {
        metrics = http(sender.port, "GET", "/metrics").expect("metrics").1;
        metric_value(&metrics, "prometheus_remote_storage_samples_failed_total{") > 0.0
    });
    assert_eq!(
        metric_value(&metrics, "prometheus_remote_storage_samples_retried_total{"),
        0.0
    );
    assert_eq!(
        metric_value(&metrics, "prometheus_remote_storage_samples_total{"),
        0.0
    );
    assert!(receiver.total() == 0);
}

/// Kiln scrapes the exporter and remote-writes to `url` (protocol `message`); after a
/// few seconds it is stopped cleanly, and every sample of `gpu_util{gpu="0"}` it stored
/// must be what `fetch` reads back from the receiver (timestamp and value).
fn kiln_delivers_every_sample(url: &str, message: &str, fetch: impl Fn() -> Vec<(i64, f64)>) {
    let target = exporter(EXPOSITION);
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("kiln.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n\
             scrape_configs:\n  - job_name: src\n    static_configs: [{{targets: ['127.0.0.1:{target}']}}]\n\
             remote_write:\n  - url: {url}\n    protobuf_message: {message}\n\
             \x20   queue_config: {{batch_send_deadline: 200ms, max_backoff: 500ms}}\n"
        ),
    )
    .expect("write config");
    let sender = start_sender(&config, &dir.path().join("data"));
    std::thread::sleep(Duration::from_secs(6));
    let (_, body) = http(
        sender.port,
        "GET",
        &format!(
            "/api/v1/query?query={}",
            url_encode(r#"gpu_util{gpu="0"}[1h]"#)
        ),
    )
    .expect("query");
    terminate(sender);
    let stored = matrix_samples(&body);
    assert!(stored.len() >= 4, "{stored:?}");
    let mut received = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        received = fetch();
        if stored.iter().all(|s| received.contains(s)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    panic!("kiln stored {stored:?}\nreceiver has {received:?}");
}

/// Samples of a Prometheus-API range selector answer: (ms, value).
fn matrix_samples(body: &str) -> Vec<(i64, f64)> {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    v["data"]["result"][0]["values"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|p| {
                    let t = (p[0].as_f64().unwrap_or(0.0) * 1000.0).round() as i64;
                    (
                        t,
                        p[1].as_str()
                            .and_then(|x| x.parse().ok())
                            .unwrap_or(f64::NAN),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
#[cfg_attr(
    not(kiln_interop),
    ignore = "interop: needs KILN_INTEROP=1 and Debian's prometheus (scripts/test installs it)"
)]
fn kiln_remote_writes_to_a_real_prometheus() {
    require_peer("prometheus", "prometheus");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("prometheus.yml");
    std::fs::write(&config, "global:\n  scrape_interval: 15s\n").expect("config");
    let port = free_port();
    let _prom = start_prometheus(
        &config,
        &dir.path().join("prom"),
        port,
        &["--web.enable-remote-write-receiver"],
    );
    wait_until("prometheus ready", Duration::from_secs(30), || {
        http(port, "GET", "/-/ready").is_some_and(|(s, _)| s == 200)
    });
    let url = format!("http://127.0.0.1:{port}/api/v1/write");
    kiln_delivers_every_sample(&url, "prometheus.WriteRequest", || {
        let q = url_encode(r#"gpu_util{gpu="0"}[1h]"#);
        http(port, "GET", &format!("/api/v1/query?query={q}"))
            .map(|(_, b)| matrix_samples(&b))
            .unwrap_or_default()
    });
}

#[test]
#[cfg_attr(
    not(kiln_interop),
    ignore = "interop: needs KILN_INTEROP=1 and Debian's victoria-metrics (scripts/test installs it)"
)]
fn kiln_remote_writes_to_victoriametrics() {
    require_peer("victoria-metrics", "victoria-metrics");
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let _vm = ChildGuard(
        std::process::Command::new("victoria-metrics")
            .arg(format!(
                "-storageDataPath={}",
                dir.path().join("vm").display()
            ))
            .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
            .arg("-search.latencyOffset=0s")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start victoria-metrics (Debian package victoria-metrics)"),
    );
    wait_until("victoria-metrics ready", Duration::from_secs(30), || {
        http(port, "GET", "/health").is_some_and(|(s, _)| s == 200)
    });
    let url = format!("http://127.0.0.1:{port}/api/v1/write");
    kiln_delivers_every_sample(&url, "prometheus.WriteRequest", || {
        let _ = http(port, "GET", "/internal/force_flush");
        // VictoriaMetrics' raw export: one JSON line per series.
        let q = url_encode(r#"gpu_util{gpu="0"}"#);
        let Some((_, body)) = http(port, "GET", &format!("/api/v1/export?match[]={q}")) else {
            return Vec::new();
        };
        let Some(line) = body.lines().next() else {
            return Vec::new();
        };
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
        let values = v["values"].as_array().cloned().unwrap_or_default();
        let times = v["timestamps"].as_array().cloned().unwrap_or_default();
        times
            .iter()
            .zip(values.iter())
            .map(|(t, x)| (t.as_i64().unwrap_or(0), x.as_f64().unwrap_or(f64::NAN)))
            .collect()
    });
}

/// Remote write 2.0 from Kiln into Kiln: symbols, metadata, the 2.0 headers.
#[test]
fn kiln_remote_writes_2_0_to_kiln() {
    let dir = tempfile::tempdir().expect("tempdir");
    let receiver = start_kiln_server(&[
        &format!("--storage.tsdb.path={}", dir.path().join("recv").display()),
        "--web.listen-address=127.0.0.1:0",
        "--web.enable-remote-write-receiver",
    ]);
    let port = receiver.port;
    let url = format!("http://127.0.0.1:{port}/api/v1/write");
    kiln_delivers_every_sample(&url, "io.prometheus.write.v2.Request", || {
        let q = url_encode(r#"gpu_util{gpu="0",job="src"}[1h]"#);
        http(port, "GET", &format!("/api/v1/query?query={q}"))
            .map(|(_, b)| matrix_samples(&b))
            .unwrap_or_default()
    });
}
