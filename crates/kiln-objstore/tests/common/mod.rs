//! moto's S3 server for the interop tests (a real S3 API on loopback).

#![allow(dead_code, clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// moto's S3 server on a free loopback port, stopped (by its PID) on drop.
pub(crate) struct Moto {
    child: Child,
    pub(crate) port: u16,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One plain HTTP/1.1 request to moto; returns the status line.
pub(crate) fn http(port: u16, method: &str, path: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut answer = String::new();
    s.read_to_string(&mut answer)?;
    Ok(answer.lines().next().unwrap_or_default().to_owned())
}

pub(crate) fn start_moto() -> Moto {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("python3")
        .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("interop test needs python3 with moto (pip install 'moto[server]'): run scripts/test, which installs it");
    let moto = Moto { child, port };
    let deadline = Instant::now() + Duration::from_secs(30);
    while http(port, "GET", "/").is_err() {
        assert!(
            Instant::now() < deadline,
            "moto's server did not answer on port {port} within 30 s (is `moto[server]` installed?)"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    moto
}

/// A single-threaded runtime for a test's bucket calls.
pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A moto server with the bucket `name` created, and the `objstore.yml` of it (path-style,
/// plain HTTP, fixed credentials) with `extra` config lines.
pub(crate) fn moto_bucket(name: &str, extra: &str) -> (Moto, kiln_objstore::Bucket) {
    let moto = start_moto();
    let status = http(moto.port, "PUT", &format!("/{name}")).unwrap();
    assert!(status.contains(" 200"), "creating the bucket: {status}");
    let text = format!(
        "type: S3\nconfig:\n  bucket: {name}\n  endpoint: 127.0.0.1:{}\n  insecure: true\n  \
         access_key: testing\n  secret_key: testing\n{extra}",
        moto.port
    );
    let config = kiln_objstore::parse(&text).unwrap();
    (moto, kiln_objstore::Bucket::from_config(&config).unwrap())
}
