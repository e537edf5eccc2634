//! What an operator watches of the TSDB, end to end: the block-duration flags honoured
//! by a running server and its `prometheus_tsdb_*` metrics, the start-up warning about
//! blocks the retention will delete, and a backfill over blocks that are already there.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use kiln_model::{Labels, Matcher};
use kiln_storage::{Appender, Querier, SampleValue, ValueKind};
use kiln_tsdb::block::BlockMeta;
use kiln_tsdb::db::{Db, DbOptions};

const MIN_MS: i64 = 60_000;
/// 2026-01-01T00:00:00Z, a multiple of every block range used here.
const T0_MS: i64 = 1_767_225_600_000;

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// The metas of the blocks in `dir`, oldest first.
fn block_metas(dir: &Path) -> Vec<BlockMeta> {
    let mut metas: Vec<BlockMeta> = std::fs::read_dir(dir)
        .expect("list data dir")
        .flatten()
        .filter_map(|e| kiln_tsdb::block::meta::read_meta(&e.path()).ok())
        .collect();
    metas.sort_by_key(|m| (m.min_time, m.max_time));
    metas
}

/// Bytes of the files under `dir`'s block directories, measured here.
fn block_bytes(dir: &Path) -> u64 {
    fn walk(p: &Path) -> u64 {
        std::fs::read_dir(p)
            .expect("list")
            .flatten()
            .map(|e| {
                let path = e.path();
                if path.is_dir() {
                    walk(&path)
                } else {
                    e.metadata().expect("metadata").len()
                }
            })
            .sum()
    }
    std::fs::read_dir(dir)
        .expect("list data dir")
        .flatten()
        .filter(|e| kiln_tsdb::block::meta::read_meta(&e.path()).is_ok())
        .map(|e| walk(&e.path()))
        .sum()
}

/// A data directory whose WAL holds two hours of samples every 15 s from `T0_MS` for
/// three series, and no blocks.
fn wal_only_data_dir(dir: &Path) {
    let db = Db::open(dir, DbOptions::default()).expect("open");
    let series: Vec<Labels> = (0..3)
        .map(|g| Labels::from_pairs(&[("__name__", "gpu_utilization"), ("gpu", &g.to_string())]))
        .collect();
    for step in 0..(2 * 60 * 4) {
        let mut app = db.appender();
        for l in &series {
            app.append(0, l, T0_MS + step * 15_000, SampleValue::Float(0.5))
                .expect("append");
        }
        app.commit().expect("commit");
    }
    db.close().expect("close");
}

/// A prometheus.yml that scrapes nothing, so the head holds only the prepared data.
fn quiet_config(dir: &Path) -> PathBuf {
    let path = dir.join("prometheus.yml");
    std::fs::write(
        &path,
        "global:\n  scrape_interval: 1m\nscrape_configs: []\n",
    )
    .expect("config");
    path
}

/// The value of the unlabelled sample `name` in a text exposition.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// Polls `/metrics` until `name` has the value `want`; returns the exposition then.
fn wait_for_metric(port: u16, name: &str, want: f64) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = http(port, "GET", "/metrics")
            .map(|r| r.1)
            .unwrap_or_default();
        if metric(&text, name) == Some(want) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{name} never reached {want}:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn block_duration_flags_cut_and_compact_blocks_and_the_metrics_follow() {
    const M10: i64 = 10 * MIN_MS;
    // Two hours of data and 10m blocks: the head is cut into [0, 10m) ... [100m, 110m)
    // (the rest stays, within 1.5 blocks of the newest sample).
    let head_blocks: Vec<(i64, i64)> = (0..11)
        .map(|i| (T0_MS + i * M10, T0_MS + (i + 1) * M10))
        .collect();

    // min == max (the Thanos sidecar setting): eleven 10m blocks, never merged.
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    wal_only_data_dir(&data);
    let config = quiet_config(tmp.path());
    let server = start_kiln_server(&[
        "--web.listen-address=127.0.0.1:0",
        &format!("--config.file={}", s(&config)),
        &format!("--storage.tsdb.path={}", s(&data)),
        "--storage.tsdb.min-block-duration=10m",
        "--storage.tsdb.max-block-duration=10m",
    ]);
    // The first maintenance round ends with a retention pass, the last reload it
    // counts: opening (1), one per block written (11), retention (1).
    let text = wait_for_metric(server.port, "prometheus_tsdb_reloads_total", 13.0);
    let metas = block_metas(&data);
    let ranges: Vec<(i64, i64)> = metas.iter().map(|m| (m.min_time, m.max_time)).collect();
    assert_eq!(ranges, head_blocks);
    assert!(
        metas.iter().all(|m| m.compaction.level == 1),
        "no block was merged"
    );
    assert_eq!(
        metric(&text, "prometheus_tsdb_compactions_total"),
        Some(11.0)
    );
    assert_eq!(metric(&text, "prometheus_tsdb_blocks_loaded"), Some(11.0));
    drop(server);

    // min 10m, max 30m: the same head blocks, then the three finished 30m windows merged.
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    wal_only_data_dir(&data);
    let config = quiet_config(tmp.path());
    let server = start_kiln_server(&[
        "--web.listen-address=127.0.0.1:0",
        &format!("--config.file={}", s(&config)),
        &format!("--storage.tsdb.path={}", s(&data)),
        "--storage.tsdb.min-block-duration=10m",
        "--storage.tsdb.max-block-duration=30m",
    ]);
    let text = wait_for_metric(server.port, "prometheus_tsdb_reloads_total", 16.0);
    let metas = block_metas(&data);
    let got: Vec<(i64, i64, i32)> = metas
        .iter()
        .map(|m| {
            (
                m.min_time - T0_MS,
                m.max_time - T0_MS,
                m.compaction.level as i32,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (0, 3 * M10, 2),
            (3 * M10, 6 * M10, 2),
            (6 * M10, 9 * M10, 2),
            (9 * M10, 10 * M10, 1),
            (10 * M10, 11 * M10, 1),
        ]
    );
    // The metrics a Prometheus storage dashboard reads, with the values that happened.
    for (name, want) in [
        ("prometheus_tsdb_blocks_loaded", 5.0),
        ("prometheus_tsdb_compactions_total", 14.0),
        ("prometheus_tsdb_compactions_triggered_total", 1.0),
        ("prometheus_tsdb_compactions_failed_total", 0.0),
        ("prometheus_tsdb_vertical_compactions_total", 0.0),
        ("prometheus_tsdb_compaction_duration_seconds_count", 14.0),
        // Level-1 chunks: 3 series x 11 blocks, 40 samples each.
        ("prometheus_tsdb_compaction_chunk_samples_count", 33.0),
        ("prometheus_tsdb_compaction_chunk_samples_sum", 33.0 * 40.0),
        ("prometheus_tsdb_head_truncations_total", 11.0),
        ("prometheus_tsdb_checkpoint_creations_total", 11.0),
        ("prometheus_tsdb_wal_truncations_total", 11.0),
        ("prometheus_tsdb_time_retentions_total", 0.0),
        ("prometheus_tsdb_retention_limit_seconds", 15.0 * 86_400.0),
        ("prometheus_tsdb_retention_limit_bytes", 0.0),
        (
            "prometheus_tsdb_lowest_timestamp_seconds",
            (T0_MS / 1000) as f64,
        ),
        // What is left in the head: 10 minutes of each series, one chunk each.
        ("prometheus_tsdb_head_chunks", 3.0),
        (
            "prometheus_tsdb_storage_blocks_bytes",
            block_bytes(&data) as f64,
        ),
    ] {
        assert_eq!(metric(&text, name), Some(want), "{name}");
    }
    assert!(metric(&text, "prometheus_tsdb_wal_storage_size_bytes").is_some_and(|v| v > 0.0));
    assert!(metric(&text, "prometheus_tsdb_symbol_table_size_bytes").is_some_and(|v| v > 0.0));
    assert!(text.contains("# TYPE prometheus_tsdb_compaction_duration_seconds histogram\n"));
    assert!(text.contains("# TYPE prometheus_tsdb_head_gc_duration_seconds summary\n"));
    // The flags are listed with the values in effect.
    let (_, flags) = http(server.port, "GET", "/api/v1/status/flags").expect("flags");
    assert!(
        flags.contains(r#""storage.tsdb.min-block-duration":"10m""#),
        "{flags}"
    );
    assert!(
        flags.contains(r#""storage.tsdb.max-block-duration":"30m""#),
        "{flags}"
    );
}

/// Starts `kiln server ARGS` and returns it with every stderr line it printed before it
/// listened (start-up warnings come before that line).
fn start_capturing(args: &[&str]) -> (KilnServer, u16, Vec<String>) {
    let (server, lines) = start_kiln_server_logged(args);
    let mut before = Vec::new();
    for line in lines.iter() {
        if listening_port(&line).is_some() {
            break;
        }
        before.push(line);
    }
    let port = server.port;
    (server, port, before)
}

#[test]
fn old_blocks_are_warned_about_at_start_and_kept_by_a_size_only_retention() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let om = tmp.path().join("old.om");
    // Three hours of data that ended 40 days ago: two blocks.
    let now_s = kiln_model::calendar::now_ms() / 1000;
    let start_s = (now_s - 40 * 86_400) / 7200 * 7200;
    write_openmetrics(&om, start_s, 3, 60);
    backfill(&om, &data);
    assert_eq!(block_metas(&data).len(), 2);
    let path = format!("--storage.tsdb.path={}", s(&data));

    let warned = |lines: &[String]| -> Vec<String> {
        lines
            .iter()
            .filter(|l| l.contains("blocks hold data older than the retention time"))
            .cloned()
            .collect()
    };
    // Default retention (15d): one loud warning naming the blocks and what to do.
    let (server, port, log) = start_capturing(&["--web.listen-address=127.0.0.1:0", &path]);
    let lines = warned(&log);
    assert_eq!(lines.len(), 1, "{log:#?}");
    for want in [
        "WARN",
        "blocks=2",
        "retention=15d",
        "--storage.tsdb.retention.time",
        "--storage.tsdb.retention.size",
    ] {
        assert!(lines[0].contains(want), "{want} not in {}", lines[0]);
    }
    // Retention measures from the newest block, not the clock: the blocks are still
    // there after the first maintenance round (the retention pass is its last reload).
    let text = wait_for_metric(port, "prometheus_tsdb_reloads_total", 2.0);
    assert_eq!(metric(&text, "prometheus_tsdb_blocks_loaded"), Some(2.0));
    assert_eq!(
        metric(&text, "prometheus_tsdb_time_retentions_total"),
        Some(0.0)
    );
    drop(server);

    // A size limit alone turns the time limit off, as in Prometheus: no warning.
    let (_server, port, log) = start_capturing(&[
        "--web.listen-address=127.0.0.1:0",
        &path,
        "--storage.tsdb.retention.size=1GB",
    ]);
    assert!(warned(&log).is_empty(), "{log:#?}");
    let text = wait_for_metric(port, "prometheus_tsdb_reloads_total", 2.0);
    assert_eq!(
        metric(&text, "prometheus_tsdb_retention_limit_seconds"),
        Some(0.0)
    );
    assert_eq!(
        metric(&text, "prometheus_tsdb_retention_limit_bytes"),
        Some((1u64 << 30) as f64)
    );
    let (_, info) = http(port, "GET", "/api/v1/status/runtimeinfo").expect("runtimeinfo");
    assert!(info.contains(r#""storageRetention":"1GiB""#), "{info}");
}

#[test]
fn ignored_prometheus_storage_flags_start_the_server_with_a_warning_each() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = format!("--storage.tsdb.path={}", s(&tmp.path().join("data")));
    let (_server, _port, log) = start_capturing(&[
        "--web.listen-address=127.0.0.1:0",
        &path,
        "--storage.tsdb.no-lockfile",
        "--storage.tsdb.samples-per-chunk=240",
        "--storage.tsdb.wal-segment-size=64MB",
    ]);
    let ignored: Vec<&String> = log
        .iter()
        .filter(|l| l.contains("flag accepted for compatibility with Prometheus and ignored"))
        .collect();
    assert_eq!(ignored.len(), 2, "{log:#?}");
    assert!(
        ignored[0].contains("--storage.tsdb.no-lockfile"),
        "{}",
        ignored[0]
    );
    assert!(
        ignored[1].contains("--storage.tsdb.samples-per-chunk"),
        "{}",
        ignored[1]
    );
    // A value Prometheus refuses is refused.
    let out = kiln(&["server", &path, "--storage.tsdb.wal-segment-size=1MB"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("between 10MB and 256MB"), "{stderr}");
}

/// Every sample of every series in `dir`, counted through a database opened on it.
fn count_samples(db: &Db, matchers: &[Matcher]) -> (usize, usize) {
    let q = db.querier(i64::MIN, i64::MAX);
    let mut set = q.select(true, None, matchers);
    let (mut series, mut samples) = (0, 0);
    while let Some(s) = set.next() {
        series += 1;
        let mut it = s.iterator();
        while it.next() == ValueKind::Float {
            samples += 1;
        }
    }
    assert!(set.err().is_none());
    (series, samples)
}

#[test]
fn backfilling_the_same_file_twice_warns_and_keeps_each_sample_once() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let om = tmp.path().join("in.om");
    write_openmetrics(&om, T0_MS / 1000, 3, 60);
    let once = tmp.path().join("once");
    let twice = tmp.path().join("twice");
    let import = |dir: &Path| {
        kiln(&[
            "tsdb",
            "create-blocks-from",
            "openmetrics",
            "-q",
            s(&om),
            s(dir),
        ])
    };
    let first = import(&once);
    assert!(first.status.success());
    assert_eq!(
        String::from_utf8_lossy(&first.stderr),
        "",
        "nothing overlaps yet"
    );

    assert!(import(&twice).status.success());
    let existing = block_metas(&twice);
    assert_eq!(existing.len(), 2);
    let second = import(&twice);
    assert!(second.status.success());
    let warning = String::from_utf8_lossy(&second.stderr);
    assert!(
        warning.starts_with("warning: the new blocks overlap 2 block(s) already in "),
        "{warning}"
    );
    assert!(
        warning.contains("from 2026-01-01 00:00:00 +0000 UTC to 2026-01-01 02:59:00.001 +0000 UTC"),
        "{warning}"
    );
    for m in &existing {
        assert!(
            warning.contains(&m.ulid.to_string()),
            "{} not named in {warning}",
            m.ulid
        );
    }
    assert!(warning.contains("kept once"), "{warning}");
    assert_eq!(block_metas(&twice).len(), 4);

    // Queries see every sample once, before and after the server's merge.
    let open = |dir: &Path| {
        Db::open(
            dir,
            DbOptions {
                retention_time: None,
                ..DbOptions::default()
            },
        )
        .expect("open")
    };
    let reference = open(&once);
    let all = [Matcher::new(kiln_model::MatchType::Regex, "__name__", ".+").expect("matcher")];
    let want = count_samples(&reference, &all);
    let rank0 = [
        Matcher::equal("__name__", "training_steps_total"),
        Matcher::equal("rank", "0"),
    ];
    assert_eq!(count_samples(&reference, &rank0), (1, 180));

    let db = open(&twice);
    assert_eq!(count_samples(&db, &rank0), (1, 180));
    assert_eq!(count_samples(&db, &all), want);
    db.compact().expect("compact");
    assert_eq!(
        db.metrics()
            .vertical_compactions
            .load(std::sync::atomic::Ordering::Relaxed),
        2,
        "each pair of overlapping blocks merged once"
    );
    assert_eq!(db.blocks().len(), 2);
    assert_eq!(count_samples(&db, &rank0), (1, 180));
    assert_eq!(count_samples(&db, &all), want);
}
