//! `kiln compact` end to end on a directory bucket: 50 hours of 2h blocks from two
//! replicas become one 48h block, a 2h block and a 5m block, which `kiln store` serves
//! with the same answers as `kiln server` over the data; a second compactor is refused
//! while the first holds the bucket's lock; a compactor killed with SIGKILL mid-pass
//! leaves a bucket the next pass finishes.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{directory_bucket, http, ok_stdout, start_kiln_mode, start_kiln_server, url_encode};

/// 2023-11-13 00:00 UTC: on a 2-day (and 8h) boundary, so windows fill with data.
const START: i64 = 1_699_833_600;

struct Setup {
    _tmp: tempfile::TempDir,
    tmp: PathBuf,
    data: PathBuf,
    config: PathBuf,
    bucket: PathBuf,
}

/// 50 hours backfilled into 2h blocks, uploaded twice (replicas 0 and 1).
fn setup() -> Setup {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().to_path_buf();
    let om = root.join("in.om");
    common::write_openmetrics(&om, START, 50, 60);
    let data = root.join("data");
    common::backfill(&om, &data);
    let config = directory_bucket(&root);
    let bucket = root.join("bucket");
    for replica in ["0", "1"] {
        // A copy per replica, so the blocks get their own ULIDs.
        let copy = root.join(format!("data-{replica}"));
        common::backfill(&om, &copy);
        common::upload_blocks(
            &config,
            &copy,
            &["cluster=eu-1", &format!("replica={replica}")],
        );
    }
    Setup {
        _tmp: tmp,
        tmp: root,
        data,
        config,
        bucket,
    }
}

fn kiln(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .output()
        .expect("run kiln")
}

fn compact_args<'a>(s: &'a Setup, work: &'a str) -> Vec<&'a str> {
    vec![
        "--objstore.config-file",
        s.config.to_str().expect("path"),
        "--data-dir",
        work,
        "--deduplication.replica-label",
        "replica",
        "--consistency-delay",
        "0s",
        "--delete-delay",
        "0s",
    ]
}

fn blocks_in(bucket: &Path) -> usize {
    std::fs::read_dir(bucket)
        .expect("list")
        .flatten()
        .filter(|e| e.path().join("meta.json").exists())
        .count()
}

/// The store's answers equal the server's over the original data, replica label aside.
fn assert_store_matches_server(s: &Setup) {
    let server = start_kiln_server(&[
        "--storage.tsdb.path",
        s.data.to_str().expect("path"),
        "--web.listen-address",
        "127.0.0.1:0",
    ]);
    let store_dir = s.tmp.join(format!("store-{}", ulid::Ulid::new()));
    let store = common::start_store(&s.config, &store_dir, "127.0.0.1:0");
    for q in [
        "gpu_temperature_celsius",
        "rate(training_steps_total[5m])",
        "sum by (le) (inference_latency_seconds_bucket)",
    ] {
        let path = format!(
            "/api/v1/query_range?query={}&start={}&end={}&step=613",
            url_encode(q),
            START + 11,
            START + 50 * 3600 - 7
        );
        let get = |port| {
            let (status, body) = http(port, "GET", &path).expect("answer");
            assert_eq!(status, 200, "{body}");
            let mut v: serde_json::Value = serde_json::from_str(&body).expect("json");
            for r in v["data"]["result"].as_array_mut().expect("result") {
                if let Some(m) = r["metric"].as_object_mut() {
                    m.remove("cluster");
                    m.remove("replica");
                }
            }
            v["data"].take()
        };
        assert_eq!(get(store.port), get(server.port), "{q}");
    }
}

#[test]
fn compacts_deduplicates_and_downsamples_for_the_store() {
    let s = setup();
    assert_eq!(blocks_in(&s.bucket), 50);
    let work = s.tmp.join("work");
    let work = work.to_str().expect("path");
    let out = kiln(
        &["compact"]
            .into_iter()
            .chain(compact_args(&s, work))
            .collect::<Vec<_>>(),
    );
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("Compaction pass done"), "{log}");
    assert!(
        log.contains("phase=compaction"),
        "progress as log lines off a terminal: {log}"
    );
    // A 48h block, the last 2h block, and the 48h block at 5m.
    assert_eq!(blocks_in(&s.bucket), 3, "{log}");
    let wide = ok_stdout(
        "ls",
        kiln(&[
            "tools",
            "bucket",
            "--objstore.config-file",
            s.config.to_str().expect("path"),
            "ls",
            "-o",
            "wide",
        ]),
    );
    assert!(wide.contains("Downsample: 300000"), "{wide}");
    assert!(!wide.contains("replica"), "replicas merged: {wide}");
    assert_store_matches_server(&s);

    // A second pass finds nothing to do.
    let out = kiln(
        &["compact"]
            .into_iter()
            .chain(compact_args(&s, work))
            .collect::<Vec<_>>(),
    );
    assert!(out.status.success());
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("compactions=0"), "{log}");
}

#[test]
fn one_compactor_per_bucket_and_kill_9_is_survivable() {
    let s = setup();
    let work = s.tmp.join("work");
    let work = work.to_str().expect("path");
    // A compactor that keeps running holds the lock; a second one is refused.
    let mut args = compact_args(&s, work);
    args.extend([
        "--wait",
        "--wait-interval",
        "1h",
        "--http-address",
        "127.0.0.1:0",
    ]);
    let (holder, lines) = start_kiln_mode("compact", &args, &[]);
    let other_work = s.tmp.join("work2");
    let refused = kiln(
        &["compact"]
            .into_iter()
            .chain(compact_args(&s, other_work.to_str().expect("path")))
            .collect::<Vec<_>>(),
    );
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("lock"), "{err}");
    // Its metrics, once its first pass is done.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, metrics) = http(holder.port, "GET", "/metrics").expect("metrics");
        if metrics.contains("thanos_compact_iterations_total 1") {
            assert!(metrics.contains("thanos_compact_halted 0"), "{metrics}");
            break;
        }
        assert!(Instant::now() < deadline, "no pass within 60 s");
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(holder);
    drop(lines);

    // Fresh replicas, and a compactor killed mid-pass.
    let s = setup();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .arg("compact")
        .args(compact_args(&s, work))
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start kiln compact");
    std::thread::sleep(Duration::from_millis(700));
    let _ = child.kill();
    let _ = child.wait();
    let out = kiln(
        &["compact"]
            .into_iter()
            .chain(compact_args(&s, work))
            .collect::<Vec<_>>(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(blocks_in(&s.bucket), 3);
    assert_store_matches_server(&s);
}

/// The raw blocks `kiln compact` writes read with the real promtool exactly as the data
/// they came from (the replicas' samples once).
#[test]
#[cfg_attr(
    not(kiln_interop),
    ignore = "interop: needs KILN_INTEROP=1 and promtool from Debian's prometheus (scripts/test installs it)"
)]
fn compacted_blocks_read_the_same_with_promtool() {
    common::require_peer("promtool", "prometheus");
    let s = setup();
    let work = s.tmp.join("work");
    common::compact_once(
        &s.config,
        &work,
        &["--deduplication.replica-label", "replica"],
    );
    // The raw blocks only: promtool does not decode downsampled (aggregate) chunks.
    let raw = s.tmp.join("raw");
    std::fs::create_dir_all(&raw).expect("mkdir");
    let mut copied = 0;
    for e in std::fs::read_dir(&s.bucket).expect("list").flatten() {
        let meta = e.path().join("meta.json");
        let Ok(text) = std::fs::read_to_string(&meta) else {
            continue;
        };
        let v: serde_json::Value = serde_json::from_str(&text).expect("meta.json");
        if v["thanos"]["downsample"]["resolution"] != 0 {
            continue;
        }
        let to = raw.join(e.file_name());
        std::fs::create_dir_all(to.join("chunks")).expect("mkdir");
        for f in ["index", "meta.json", "tombstones"] {
            if e.path().join(f).exists() {
                std::fs::copy(e.path().join(f), to.join(f)).expect("copy");
            }
        }
        for c in std::fs::read_dir(e.path().join("chunks"))
            .expect("chunks")
            .flatten()
        {
            std::fs::copy(c.path(), to.join("chunks").join(c.file_name())).expect("copy");
        }
        copied += 1;
    }
    assert_eq!(copied, 2, "the 48h block and the last 2h block");
    let want = common::promtool_dump(&s.data, &[]);
    let got = common::promtool_dump(&raw, &[]);
    common::assert_same_dump("promtool dump of the compacted blocks", &want, &got);
}
