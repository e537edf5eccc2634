//! Helpers shared by the `kiln` binary's integration tests.

#![allow(dead_code)]

pub(crate) mod hostile;

use std::fmt::Write as _;
use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// Fails the calling interop test, with what to install, unless `program` is an
/// executable on PATH. Interop tests run only when built with `KILN_INTEROP=1` (the
/// `kiln_interop` cfg, see build.rs); from then on a missing peer is a failure, never a
/// skip. `package` names the Debian package that provides `program`.
#[track_caller]
pub(crate) fn require_peer(program: &str, package: &str) {
    let on_path = std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::metadata(dir.join(program))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    });
    assert!(
        on_path,
        "interop test needs `{program}` (Debian package `{package}`) on PATH, and it is not \
         there: run scripts/test, which installs every peer, or build without KILN_INTEROP=1 \
         to have this test reported as ignored"
    );
}

/// Fails the calling interop test unless `python3` can import `module` (a PyPI package
/// that scripts/test installs with pip).
#[track_caller]
pub(crate) fn require_python_module(module: &str) {
    require_peer("python3", "python3");
    let out = Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "interop test needs Python's `{module}` (pip install {module}), and python3 cannot \
         import it: run scripts/test, which installs it\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs the `kiln` binary built for this test run.
pub(crate) fn kiln(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .output()
        .expect("run kiln")
}

/// Runs `promtool`.
pub(crate) fn promtool(args: &[&str]) -> Output {
    Command::new("promtool")
        .args(args)
        .output()
        .expect("run promtool (Debian package `prometheus`; scripts/test installs it)")
}

/// `promtool tsdb dump [args] DIR`. promtool 2.42 fails on a directory without a `wal/`
/// subdirectory (blocks only, as backfill and snapshots leave them), so one is created.
pub(crate) fn promtool_dump(dir: &Path, args: &[&str]) -> String {
    std::fs::create_dir_all(dir.join("wal")).expect("create wal dir for promtool");
    let d = dir.to_str().expect("utf-8 path");
    let mut all = vec!["tsdb", "dump"];
    all.extend_from_slice(args);
    all.push(d);
    ok_stdout("promtool tsdb dump", promtool(&all))
}

/// Stdout of a command that must succeed.
pub(crate) fn ok_stdout(what: &str, out: Output) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// Asserts two dumps are identical, showing the first differing line.
pub(crate) fn assert_same_dump(what: &str, want: &str, got: &str) {
    if want == got {
        return;
    }
    let (w, g): (Vec<&str>, Vec<&str>) = (want.lines().collect(), got.lines().collect());
    for (i, (a, b)) in w.iter().zip(&g).enumerate() {
        assert_eq!(a, b, "{what}: first difference at line {}", i + 1);
    }
    panic!(
        "{what}: line counts differ: want {} got {}",
        w.len(),
        g.len()
    );
}

/// Writes an OpenMetrics file spanning `hours` hours from `start_s` (Unix seconds) with
/// the shapes the lecture's ML fleets produce: GPU gauges, training counters with resets,
/// classic histogram buckets, gaps, NaN/±Inf, escaped and non-ASCII label values.
pub(crate) fn write_openmetrics(path: &Path, start_s: i64, hours: i64, step_s: i64) {
    let steps = hours * 3600 / step_s;
    let mut s = String::new();
    s.push_str(
        "# HELP gpu_temperature_celsius GPU temperature.\n# TYPE gpu_temperature_celsius gauge\n",
    );
    for gpu in 0..4 {
        for i in 0..steps {
            // A 20-minute gap for gpu 3.
            if gpu == 3 && (100..180).contains(&i) {
                continue;
            }
            let v = 40.0 + gpu as f64 * 1.5 + (i as f64 * 0.37).sin() * 7.25;
            let _ = writeln!(
                s,
                "gpu_temperature_celsius{{gpu=\"{gpu}\",host=\"nœud-α\",model=\"H100 \\\"SXM\\\"\"}} {v} {}",
                start_s + i * step_s
            );
        }
    }
    s.push_str("# TYPE gpu_power_watts gauge\n");
    for i in 0..steps {
        let v = match i % 50 {
            7 => "NaN".to_string(),
            13 => "+Inf".to_string(),
            29 => "-Inf".to_string(),
            _ => format!("{}", 300.0 + (i % 17) as f64 * 12.125 - 0.001),
        };
        let _ = writeln!(
            s,
            "gpu_power_watts{{gpu=\"0\",path=\"C:\\\\data\\nline\"}} {v} {}",
            start_s + i * step_s
        );
    }
    s.push_str("# TYPE training_steps counter\n");
    for rank in 0..2 {
        let mut c = 0u64;
        for i in 0..steps {
            // A restart (counter reset) every 200 steps.
            if i % 200 == 0 {
                c = 0;
            }
            c += 3 + rank;
            let _ = writeln!(
                s,
                "training_steps_total{{job=\"trainer\",rank=\"{rank}\"}} {c} {}",
                start_s + i * step_s
            );
        }
    }
    s.push_str("# TYPE inference_latency_seconds histogram\n");
    let bounds = ["0.005", "0.01", "0.05", "0.1", "0.5", "1", "+Inf"];
    for (b, le) in bounds.iter().enumerate() {
        for i in 0..steps {
            let v = (i * (b as i64 + 1) * 7) / 3;
            let _ = writeln!(
                s,
                "inference_latency_seconds_bucket{{le=\"{le}\",model=\"llama\"}} {v} {}",
                start_s + i * step_s
            );
        }
    }
    for i in 0..steps {
        let _ = writeln!(
            s,
            "inference_latency_seconds_sum{{model=\"llama\"}} {} {}",
            i as f64 * 0.123,
            start_s + i * step_s
        );
    }
    for i in 0..steps {
        let _ = writeln!(
            s,
            "inference_latency_seconds_count{{model=\"llama\"}} {} {}",
            (i * 49) / 3,
            start_s + i * step_s
        );
    }
    s.push_str("# TYPE small_values gauge\n");
    for i in 0..steps {
        let v = [1e-9, 2.5e-7, 123456789.125, -0.0001, 1e21, 0.1 + 0.2][(i % 6) as usize];
        let _ = writeln!(
            s,
            "small_values{{kind=\"mixed\"}} {v:e} {}",
            start_s + i * step_s
        );
    }
    s.push_str("# EOF\n");
    std::fs::write(path, s).expect("write openmetrics file");
}

/// A minimal HTTP/1.0 request to 127.0.0.1:`port`; returns (status, body).
pub(crate) fn http(port: u16, method: &str, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n"
    )
    .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let status = buf.split_whitespace().nth(1)?.parse().ok()?;
    let body = buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Some((status, body))
}

/// A running `kiln server`; killed by PID when dropped (a test that wants a clean
/// shutdown signals `child` itself first).
pub(crate) struct KilnServer {
    pub(crate) child: std::process::Child,
    pub(crate) port: u16,
}

impl Drop for KilnServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `kiln server ARGS` and returns once it listens; the port is read from the
/// `Listening on` log line (useful with port 0), so the log level must be info or
/// lower. Its stderr keeps being drained so the server never blocks on a full pipe.
pub(crate) fn start_kiln_server(args: &[&str]) -> KilnServer {
    start_kiln_server_logged(args).0
}

/// The port of a `Listening on` log line, in logfmt (`address=127.0.0.1:9090`) or JSON
/// (`"address":"127.0.0.1:9090"`); `None` for other lines.
pub(crate) fn listening_port(line: &str) -> Option<u16> {
    if !line.contains("Listening on") {
        return None;
    }
    let rest = line
        .split_once("\"address\":\"")
        .or_else(|| line.split_once("address="))?
        .1;
    let address: String = rest
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != '"')
        .collect();
    address.rsplit(':').next()?.parse().ok()
}

/// [`start_kiln_server`], also handing every stderr line (those read before it
/// listened included) to the receiver; the lines end when the server exits.
pub(crate) fn start_kiln_server_logged(
    args: &[&str],
) -> (KilnServer, std::sync::mpsc::Receiver<String>) {
    start_kiln_mode("server", args, &[])
}

/// Starts `kiln MODE ARGS` (a long-running mode: `server`, `store`) with extra
/// environment variables, as [`start_kiln_server_logged`].
pub(crate) fn start_kiln_mode(
    mode: &str,
    args: &[&str],
    env: &[(&str, &Path)],
) -> (KilnServer, std::sync::mpsc::Receiver<String>) {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .arg(mode)
        .args(args)
        .envs(env.iter().copied())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start kiln");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    let mut lines = BufReader::new(stderr).lines();
    let port = loop {
        let line = lines
            .next()
            .expect("server output")
            .expect("read server output");
        let port = listening_port(&line);
        let _ = tx.send(line);
        if let Some(port) = port {
            break port;
        }
    };
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            // The receiver may be gone; draining goes on.
            let _ = tx.send(line);
        }
    });
    (KilnServer { child, port }, rx)
}

/// A loopback port free at the time of asking.
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind")
        .port()
}

/// Percent-encodes a URL query parameter value.
pub(crate) fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A child process killed (by PID) when the guard is dropped, however the test ends.
pub(crate) struct ChildGuard(pub(crate) std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts a real Prometheus on 127.0.0.1:`port` with `extra` flags, output discarded.
pub(crate) fn start_prometheus(
    config: &Path,
    data: &Path,
    port: u16,
    extra: &[&str],
) -> ChildGuard {
    ChildGuard(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", data.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .args(extra)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start prometheus (Debian package `prometheus`; scripts/test installs it)"),
    )
}

/// Serves `body` as a text exposition to every request, on a thread, until the test
/// process ends. Returns the port.
pub(crate) fn exporter(body: &'static str) -> u16 {
    serve_fixed("text/plain; version=0.0.4", body)
}

/// Serves `body` with `content_type` to every request, on a thread, until the test
/// process ends. Returns the port.
pub(crate) fn serve_fixed(content_type: &'static str, body: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

/// Polls an instant query until its answer contains every `want`, for up to `limit`.
pub(crate) fn wait_for(port: u16, query: &str, want: &[&str], limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    loop {
        let path = format!("/api/v1/query?query={query}");
        if let Some((200, body)) = http(port, "GET", &path)
            && want.iter().all(|w| body.contains(w))
        {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "{query}: no {want:?} within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// `<tmp>/data` with five hours of backfilled blocks ([`write_openmetrics`] from
/// 2023-11-14 22:13:20 UTC, one sample a minute).
pub(crate) fn data_with_blocks(tmp: &Path) -> std::path::PathBuf {
    let om = tmp.join("in.om");
    write_openmetrics(&om, 1_700_000_000, 5, 60);
    let data = tmp.join("data");
    backfill(&om, &data);
    data
}

/// `<tmp>/prometheus.yml` with the external labels `cluster="eu-1"`, `replica="0"` and
/// nothing to scrape.
pub(crate) fn external_labels_config(tmp: &Path) -> std::path::PathBuf {
    let cfg = tmp.join("prometheus.yml");
    std::fs::write(
        &cfg,
        "global:\n  external_labels:\n    cluster: eu-1\n    replica: \"0\"\nscrape_configs: []\n",
    )
    .expect("write prometheus.yml");
    cfg
}

/// Backfills `examples/gpu-fleet.om` into a new Kiln data directory `data` (blocks).
pub(crate) fn backfill_example(data: &Path) {
    let om = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/gpu-fleet.om");
    backfill(Path::new(om), data);
}

/// Backfills an OpenMetrics file into a new Kiln data directory `data` (blocks), as
/// `kiln tsdb create-blocks-from openmetrics` does.
pub(crate) fn backfill(om: &Path, data: &Path) {
    backfill_with(om, data, &[]);
}

/// [`backfill`] with more flags of `create-blocks-from openmetrics`.
pub(crate) fn backfill_with(om: &Path, data: &Path, flags: &[&str]) {
    let mut args = vec!["tsdb", "create-blocks-from", "openmetrics", "-q"];
    args.extend_from_slice(flags);
    args.push(om.to_str().expect("path"));
    args.push(data.to_str().expect("path"));
    ok_stdout("backfill", kiln(&args));
}

/// A remote write 1.0 request body built by hand from prompb's field numbers (so tests
/// check the wire format, not Kiln's own encoder): one series `name{job="<job>"}` with
/// `samples`, snappy-compressed as literals.
pub(crate) fn remote_write_body(name: &str, job: &str, samples: &[(i64, f64)]) -> Vec<u8> {
    fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    fn field(out: &mut Vec<u8>, tag: u8, bytes: &[u8]) {
        out.push(tag << 3 | 2);
        varint(out, bytes.len() as u64);
        out.extend_from_slice(bytes);
    }
    let label = |n: &str, v: &str| {
        let mut l = Vec::new();
        field(&mut l, 1, n.as_bytes());
        field(&mut l, 2, v.as_bytes());
        l
    };
    let mut series = Vec::new();
    field(&mut series, 1, &label("__name__", name));
    field(&mut series, 1, &label("job", job));
    for &(t, v) in samples {
        let mut s = vec![1 << 3 | 1];
        s.extend_from_slice(&v.to_le_bytes());
        s.push(2 << 3);
        varint(&mut s, t as u64);
        field(&mut series, 2, &s);
    }
    let mut req = Vec::new();
    field(&mut req, 1, &series);
    snappy_literals(&req)
}

/// `data` as a snappy block of literals (the length, then runs of at most 60 bytes).
pub(crate) fn snappy_literals(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut n = data.len() as u64;
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
    for chunk in data.chunks(60) {
        out.push(((chunk.len() - 1) as u8) << 2);
        out.extend_from_slice(chunk);
    }
    out
}

/// A directory bucket `<root>/bucket` and the `<root>/objstore.yml` naming it; returns
/// the configuration's path.
pub(crate) fn directory_bucket(root: &Path) -> std::path::PathBuf {
    let bucket = root.join("bucket");
    std::fs::create_dir_all(&bucket).expect("bucket dir");
    let config = root.join("objstore.yml");
    std::fs::write(
        &config,
        format!(
            "type: FILESYSTEM\nconfig:\n  directory: {}\n",
            bucket.display()
        ),
    )
    .expect("write objstore.yml");
    config
}

/// `kiln tools bucket upload-blocks` of every block of `data` (compacted ones too) with
/// the external labels `labels` (`name=value` each).
pub(crate) fn upload_blocks(config: &Path, data: &Path, labels: &[&str]) {
    let mut args = vec![
        "tools",
        "bucket",
        "upload-blocks",
        "--objstore.config-file",
        config.to_str().expect("path"),
        "--shipper.upload-compacted",
        "--path",
        data.to_str().expect("path"),
    ];
    for l in labels {
        args.extend(["--label", l]);
    }
    ok_stdout("upload-blocks", kiln(&args));
}

/// One `kiln compact` pass over `config`'s bucket (scratch in `work`), no delays, with
/// `extra` flags; returns its log.
pub(crate) fn compact_once(config: &Path, work: &Path, extra: &[&str]) -> String {
    let mut args = vec![
        "compact",
        "--objstore.config-file",
        config.to_str().expect("path"),
        "--data-dir",
        work.to_str().expect("path"),
        "--consistency-delay",
        "0s",
        "--delete-delay",
        "0s",
    ];
    args.extend_from_slice(extra);
    let out = kiln(&args);
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "kiln compact: {log}");
    log
}

/// Starts `kiln store` over `config`'s bucket with its local files in `dir`, the query
/// API on a free port and the StoreAPI on `grpc` (`127.0.0.1:0` when it does not
/// matter).
pub(crate) fn start_store(config: &Path, dir: &Path, grpc: &str) -> KilnServer {
    start_kiln_mode(
        "store",
        &[
            "--objstore.config-file",
            config.to_str().expect("path"),
            "--data-dir",
            dir.to_str().expect("path"),
            "--http-address",
            "127.0.0.1:0",
            "--grpc-address",
            grpc,
        ],
        &[],
    )
    .0
}

/// Runs `script` (Python) as a StoreAPI client generated outside Rust: Python's
/// `grpcio-tools` compiles `crates/kiln-storeapi/proto` into `<tmp>/py`, and the script
/// gets that directory, the endpoint `127.0.0.1:<grpc_port>` and `args`; it prints JSON,
/// returned parsed.
pub(crate) fn python_storeapi_client(
    tmp: &Path,
    script: &str,
    grpc_port: u16,
    args: &[&str],
) -> serde_json::Value {
    require_python_module("grpc_tools");
    let generated = tmp.join("py");
    std::fs::create_dir_all(&generated).expect("mkdir");
    let protos = Path::new(env!("CARGO_MANIFEST_DIR")).join("../kiln-storeapi/proto");
    ok_stdout(
        "grpc_tools.protoc",
        Command::new("python3")
            .args(["-m", "grpc_tools.protoc"])
            .arg(format!("-I{}", protos.display()))
            .arg(format!("--python_out={}", generated.display()))
            .arg(format!("--grpc_python_out={}", generated.display()))
            .args(["store.proto", "info.proto"])
            .output()
            .expect("run python3 -m grpc_tools.protoc"),
    );
    let path = tmp.join("client.py");
    std::fs::write(&path, script).expect("write client");
    let out = ok_stdout(
        "python StoreAPI client",
        Command::new("python3")
            .arg(&path)
            .arg(&generated)
            .arg(format!("127.0.0.1:{grpc_port}"))
            .args(args)
            .output()
            .expect("run python3"),
    );
    serde_json::from_str(&out).expect("json")
}

/// Copies directory `from` into `to`, recursively.
pub(crate) fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy");
        }
    }
}

/// Waits until `/-/ready` on 127.0.0.1:`port` answers 200, for up to `limit`.
pub(crate) fn wait_ready(port: u16, limit: Duration) {
    let deadline = Instant::now() + limit;
    while !matches!(http(port, "GET", "/-/ready"), Some((200, _))) {
        assert!(
            Instant::now() < deadline,
            "port {port} not ready within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
