//! The remote-write receiver of `kiln server` (`/api/v1/write`): requests made here
//! (status codes, what is stored), and, as interop tests (`KILN_INTEROP=1`), a real Prometheus that
//! scrapes an exporter and remote-writes to Kiln: both answer the same queries.

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::{
    exporter, free_port, http, remote_write_body, require_peer, snappy_literals, start_kiln_server,
    start_prometheus,
};

/// A remote write 2.0 `Request` with one series `v2_pushed{job="rw"}`, by hand: the
/// symbol table (field 4) and a series (field 5) of packed label references and samples.
fn write_request_v2(samples: &[(i64, f64)]) -> Vec<u8> {
    fn field(out: &mut Vec<u8>, tag: u8, bytes: &[u8]) {
        out.push(tag << 3 | 2);
        out.push(bytes.len() as u8);
        out.extend_from_slice(bytes);
    }
    let mut req = Vec::new();
    for sym in ["", "__name__", "v2_pushed", "job", "rw"] {
        field(&mut req, 4, sym.as_bytes());
    }
    let mut ts = Vec::new();
    field(&mut ts, 1, &[1, 2, 3, 4]);
    for &(t, v) in samples {
        let mut s = vec![1 << 3 | 1];
        s.extend_from_slice(&v.to_le_bytes());
        s.push(2 << 3);
        let mut t = t as u64;
        while t >= 0x80 {
            s.push((t as u8) | 0x80);
            t >>= 7;
        }
        s.push(t as u8);
        field(&mut ts, 2, &s);
    }
    field(&mut req, 5, &ts);
    snappy_literals(&req)
}

/// A remote-write request with one series `name{job="rw"}`.
fn write_request(name: &str, samples: &[(i64, f64)]) -> Vec<u8> {
    remote_write_body(name, "rw", samples)
}

fn post(port: u16, content_type: &str, body: &[u8]) -> (u16, String) {
    let (status, raw) = post_raw(port, content_type, body);
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// POSTs to `/api/v1/write`; returns the status (0 when the connection failed) and the
/// whole response, headers included.
fn post_raw(port: u16, content_type: &str, body: &[u8]) -> (u16, String) {
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return (0, String::new());
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let head = format!(
        "POST /api/v1/write HTTP/1.0\r\nHost: x\r\nContent-Type: {content_type}\r\nContent-Encoding: snappy\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    if s.write_all(head.as_bytes()).is_err() || s.write_all(body).is_err() {
        return (0, String::new());
    }
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    let status = buf
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, buf)
}

#[test]
fn requests_are_stored_or_refused_with_the_right_status() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start_kiln_server(&[
        &format!("--storage.tsdb.path={}", dir.path().display()),
        "--web.listen-address=127.0.0.1:0",
        "--web.enable-remote-write-receiver",
    ]);
    let port = server.port;
    let v1 = "application/x-protobuf";
    // Data from the past goes into an empty server: "too old" is judged against the
    // head's newest sample, not the clock.
    let (status, body) = post(
        port,
        v1,
        &write_request("pushed", &[(1_000_000, 1.5), (1_015_000, 2.5)]),
    );
    assert_eq!(status, 204, "{body}");
    let (_, answer) = http(port, "GET", "/api/v1/query?query=pushed&time=1015").expect("query");
    assert!(
        answer.contains(r#""job":"rw""#) && answer.contains(r#""2.5""#),
        "{answer}"
    );
    // Out of order: 400, not retried by senders.
    let (status, body) = post(port, v1, &write_request("pushed", &[(1_010_000, 9.0)]));
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("out of order"), "{body}");
    // Remote write 2.0: stored, and the answer says how much was written.
    let (status, raw) = post_raw(
        port,
        "application/x-protobuf;proto=io.prometheus.write.v2.Request",
        &write_request_v2(&[(1_020_000, 4.0), (1_030_000, 5.0)]),
    );
    assert_eq!(status, 204, "{raw}");
    assert!(
        raw.to_ascii_lowercase()
            .contains("x-prometheus-remote-write-samples-written: 2"),
        "{raw}"
    );
    let (_, answer) = http(port, "GET", "/api/v1/query?query=v2_pushed&time=1030").expect("query");
    assert!(
        answer.contains(r#""job":"rw""#) && answer.contains(r#""5""#),
        "{answer}"
    );
    // An unknown protobuf message: 415.
    let (status, _) = post(
        port,
        "application/x-protobuf;proto=example.Other",
        &write_request("pushed", &[(1_020_000, 1.0)]),
    );
    assert_eq!(status, 415);
    // Garbage: 400.
    let (status, body) = post(port, v1, b"\x05garbage");
    assert_eq!(status, 400, "{body}");
}

/// The exposition both remote-write senders scrape.
const EXPOSITION: &str = "# TYPE gpu_util gauge\ngpu_util{gpu=\"0\"} 0.25\ngpu_util{gpu=\"1\"} 0.75\n\
# TYPE samples_total counter\nsamples_total 12345\n";

/// Waits (up to a minute) until Kiln holds at least `n` scrapes of `job` from a sender.
fn wait_for_scrapes(port: u16, job: &str, n: f64) {
    let q = format!(
        "/api/v1/query?query={}",
        common::url_encode(&format!("count_over_time(up{{job=\"{job}\"}}[1m])"))
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, body) = http(port, "GET", &q).unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let got = v["data"]["result"][0]["value"][1]
            .as_str()
            .and_then(|s| s.parse::<f64>().ok())
            .unwrap_or(0.0);
        if got >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{job}: the sender's samples never arrived: {body}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
#[cfg_attr(
    not(kiln_interop),
    ignore = "interop: needs KILN_INTEROP=1 and Debian's prometheus (scripts/test installs it)"
)]
fn a_real_prometheus_remote_writes_to_kiln() {
    require_peer("prometheus", "prometheus");
    let target = exporter(EXPOSITION);
    let dir = tempfile::tempdir().expect("tempdir");
    let kiln = start_kiln_server(&[
        &format!("--storage.tsdb.path={}", dir.path().join("kiln").display()),
        "--web.listen-address=127.0.0.1:0",
        "--web.enable-remote-write-receiver",
    ]);
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n\
             scrape_configs:\n  - job_name: src\n    static_configs: [{{targets: ['127.0.0.1:{target}']}}]\n\
             remote_write:\n  - url: http://127.0.0.1:{}/api/v1/write\n    queue_config: {{batch_send_deadline: 1s}}\n",
            kiln.port
        ),
    )
    .expect("config");
    let prom_port = free_port();
    let _prom = start_prometheus(&config, &dir.path().join("prom"), prom_port, &[]);
    let query = |port: u16, q: &str, t: f64| {
        http(port, "GET", &format!("/api/v1/query?query={q}&time={t}"))
            .map(|(_, b)| b)
            .unwrap_or_default()
    };
    // Wait until Kiln has received a few seconds of scrapes.
    wait_for_scrapes(kiln.port, "src", 5.0);
    // Both answer the same at a time both have complete data.
    let t = now_s() - 3.0;
    for q in [
        "gpu_util",
        "samples_total",
        "up%7Bjob%3D%22src%22%7D",
        "count_over_time(up%7Bjob%3D%22src%22%7D%5B10s%5D)",
        "scrape_samples_scraped%7Bjob%3D%22src%22%7D",
    ] {
        let a = query(kiln.port, q, t);
        let b = query(prom_port, q, t);
        let norm = |s: &str| {
            let v: serde_json::Value = serde_json::from_str(s).unwrap_or_default();
            let mut r: Vec<String> = v["data"]["result"]
                .as_array()
                .map(|a| a.iter().map(|x| x.to_string()).collect())
                .unwrap_or_default();
            r.sort();
            r
        };
        assert!(!norm(&a).is_empty(), "{q}: Kiln has nothing: {a}");
        assert_eq!(norm(&a), norm(&b), "{q} at {t}\nkiln: {a}\nprometheus: {b}");
    }
}

fn now_s() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// `kill -9` while a writer pushes: every sample whose request got a 2xx is there
/// after a restart.
#[test]
fn acknowledged_samples_survive_kill_9() {
    let dir = tempfile::tempdir().expect("tempdir");
    let args = [
        format!("--storage.tsdb.path={}", dir.path().display()),
        "--web.listen-address=127.0.0.1:0".to_owned(),
        "--web.enable-remote-write-receiver".to_owned(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut server = start_kiln_server(&args);
    let port = server.port;
    let base = 1_000_000_000i64;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            // Per step k, two requests: a sample of `durable` and one of
            // `durable_twin` (k at base + k s). Returns the last k whose both requests
            // were acknowledged.
            let mut acked = 0;
            for k in 1.. {
                if stop.load(std::sync::atomic::Ordering::Acquire) {
                    break;
                }
                let t = base + k * 1000;
                let body = write_request("durable", &[(t, k as f64)]);
                let twin = write_request("durable_twin", &[(t, k as f64)]);
                let (s1, _) = post_or_gone(port, &body);
                if s1 != 204 {
                    break;
                }
                let (s2, _) = post_or_gone(port, &twin);
                if s2 != 204 {
                    break;
                }
                acked = k;
            }
            acked
        })
    };
    std::thread::sleep(Duration::from_millis(1500));
    server.child.kill().expect("kill -9");
    let _ = server.child.wait();
    stop.store(true, std::sync::atomic::Ordering::Release);
    let acked = writer.join().expect("writer");
    assert!(acked > 10, "the writer got only {acked} requests through");
    drop(server);

    let restarted = start_kiln_server(&args);
    let at = (base + acked * 1000) / 1000;
    for name in ["durable", "durable_twin"] {
        let q = format!("/api/v1/query?query=count_over_time({name}%5B10d%5D)&time={at}");
        let (_, body) = http(restarted.port, "GET", &q).expect("query");
        assert!(
            body.contains(&format!(r#""{acked}"]"#)),
            "{name}: all {acked} acknowledged samples expected: {body}"
        );
    }
}

/// A 1.0 request; a connection refused or reset (the server was killed) is status 0.
fn post_or_gone(port: u16, body: &[u8]) -> (u16, String) {
    post_raw(port, "application/x-protobuf", body)
}

/// Interop (`KILN_INTEROP=1`): Debian's vmagent scrapes an exporter and remote-writes to
/// Kiln; Kiln stores the exporter's series with their values, scrape after scrape.
#[test]
#[cfg_attr(
    not(kiln_interop),
    ignore = "interop: needs KILN_INTEROP=1 and vmagent from Debian's victoria-metrics (scripts/test installs it)"
)]
fn vmagent_remote_writes_to_kiln() {
    require_peer("vmagent", "victoria-metrics");
    let target = exporter(EXPOSITION);
    let dir = tempfile::tempdir().expect("tempdir");
    let kiln = start_kiln_server(&[
        &format!("--storage.tsdb.path={}", dir.path().join("kiln").display()),
        "--web.listen-address=127.0.0.1:0",
        "--web.enable-remote-write-receiver",
    ]);
    let scrape = dir.path().join("scrape.yml");
    std::fs::write(
        &scrape,
        format!(
            "global:\n  scrape_interval: 1s\n\
             scrape_configs:\n  - job_name: vm\n    static_configs: [{{targets: ['127.0.0.1:{target}']}}]\n"
        ),
    )
    .expect("config");
    let _vmagent = common::ChildGuard(
        std::process::Command::new("vmagent")
            .arg(format!("-promscrape.config={}", scrape.display()))
            .arg(format!(
                "-remoteWrite.url=http://127.0.0.1:{}/api/v1/write",
                kiln.port
            ))
            .arg(format!(
                "-remoteWrite.tmpDataPath={}",
                dir.path().join("vm").display()
            ))
            .arg("-remoteWrite.flushInterval=1s")
            .arg(format!("-httpListenAddr=127.0.0.1:{}", free_port()))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start vmagent (Debian package victoria-metrics)"),
    );
    wait_for_scrapes(kiln.port, "vm", 3.0);
    let instance = format!("127.0.0.1:{target}");
    for (q, want) in [
        (r#"gpu_util{gpu="0"}"#, "0.25"),
        (r#"gpu_util{gpu="1"}"#, "0.75"),
        ("samples_total", "12345"),
        (r#"up{job="vm"}"#, "1"),
    ] {
        let path = format!("/api/v1/query?query={}", common::url_encode(q));
        let (_, body) = http(kiln.port, "GET", &path).expect("query");
        assert!(
            body.contains(&format!(r#""{want}"]"#))
                && body.contains(r#""job":"vm""#)
                && body.contains(&instance),
            "{q}: {body}"
        );
    }
}
