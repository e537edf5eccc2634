//! Kiln reads a data directory written by a real Prometheus server: its WAL (and
//! head chunks) and a block from its snapshot API, and moves that block into a bucket
//! (`kiln tools bucket upload-blocks`). An interop test: it runs when built
//! with `KILN_INTEROP=1` and is reported as ignored otherwise.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

#[test]
#[cfg_attr(
    not(kiln_interop),
    ignore = "interop: needs KILN_INTEROP=1 and Debian's prometheus (prometheus and promtool) (scripts/test installs it)"
)]
fn kiln_reads_a_real_prometheus_data_dir() {
    require_peer("prometheus", "prometheus");
    require_peer("promtool", "prometheus");
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("prom-data");
    let port = free_port();
    let config = tmp.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: prometheus\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
        ),
    )
    .expect("write config");
    let mut server = start_prometheus(&config, &data, port, &["--web.enable-admin-api"]);

    // Wait until it has scraped itself a few times.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(
            Instant::now() < deadline,
            "prometheus did not scrape itself in time"
        );
        // Non-empty once `up` has more than 5 samples.
        if let Some((200, body)) = http(
            port,
            "GET",
            "/api/v1/query?query=count_over_time(up%5B1m%5D)%3E5",
        ) && body.contains("\"result\":[{")
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    // The snapshot API writes the head as a real block.
    let (status, body) =
        http(port, "POST", "/api/v1/admin/tsdb/snapshot").expect("snapshot request");
    assert_eq!(status, 200, "snapshot: {body}");
    // Stop the server cleanly: its WAL stays behind for us to replay.
    let pid = server.0.id().to_string();
    Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("send SIGTERM");
    let _ = server.0.wait();

    let snapshots = data.join("snapshots");
    let snap = std::fs::read_dir(&snapshots)
        .expect("snapshots dir")
        .flatten()
        .next()
        .expect("one snapshot")
        .path();
    check_same_dump(&snap, "snapshot block");
    // Migration: the Prometheus-written block goes into a bucket and reads the same there.
    let bucket = tmp.path().join("bucket");
    let objstore = format!(
        "type: FILESYSTEM\nconfig:\n  directory: {}\n",
        bucket.display()
    );
    let uploaded = ok_stdout(
        "kiln tools bucket upload-blocks",
        kiln(&[
            "tools",
            "bucket",
            "--objstore.config",
            &objstore,
            "upload-blocks",
            "--path",
            snap.to_str().expect("utf-8 path"),
            "--label",
            "cluster=migrated",
            "--shipper.upload-compacted",
        ]),
    );
    assert!(uploaded.starts_with("uploaded 1 block(s)"), "{uploaded}");
    assert_same_dump(
        "the Prometheus block in a bucket",
        &promtool_dump(&snap, &[]),
        &promtool_dump(&bucket, &[]),
    );
    // The data directory itself: WAL (and head chunks) only, no blocks yet.
    check_same_dump(&data, "WAL of a stopped Prometheus");
}

fn check_same_dump(dir: &Path, what: &str) {
    let d = dir.to_str().expect("utf-8 path");
    let want = promtool_dump(dir, &[]);
    assert!(
        want.lines().count() > 500,
        "{what}: promtool dumped a real amount of data"
    );
    let got = ok_stdout("kiln dump", kiln(&["tsdb", "dump", d]));
    assert_same_dump(what, &want, &got);
}
