//! Interoperability with Prometheus: fixtures written by Prometheus 2.42, and (with
//! `KILN_INTEROP=1`) `promtool` reading a WAL written by Kiln.
//!
//! Fixtures in `testdata/`, each the WAL of a Prometheus 2.42.0 (Debian) scraping itself
//! every second:
//! - `prometheus-2.42-plain/00000000`: `--no-storage.tsdb.wal-compression`, a
//!   `delete_series` call through the admin API (a tombstones record), then `kill -9`,
//!   so the last page is partial.
//! - `prometheus-2.42-snappy/00000000`: default flags (snappy compression), then SIGTERM.

use std::path::{Path, PathBuf};
use std::process::Command;

use kiln_model::Labels;

use super::record::{decode_series, encode_samples, encode_series, encode_tombstones, record_type};
use super::segment::segment_path;
use super::*;

fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/wal/testdata")
        .join(name)
}

fn records(dir: &Path) -> Vec<Vec<u8>> {
    let mut r = WalReader::open(dir).unwrap();
    let mut out = Vec::new();
    while let Some(rec) = r.next_record().unwrap() {
        out.push(rec.to_vec());
    }
    out
}

#[test]
fn reads_prometheus_wal_and_reencodes_it_byte_for_byte() {
    let dir = testdata("prometheus-2.42-plain");
    let recs = records(&dir);
    let mut dec = RecordDecoder::new();
    let mut d = DecodedRecord::default();
    let (mut series, mut samples, mut stones) = (Vec::new(), 0, 0);
    let mut buf = Vec::new();
    for rec in &recs {
        let typ = dec.decode(rec, &mut d).unwrap();
        buf.clear();
        match typ {
            RecordType::Series => encode_series(&d.series, &mut buf),
            RecordType::Samples => encode_samples(&d.samples, &mut buf),
            RecordType::Tombstones => encode_tombstones(&d.tombstones, &mut buf),
            other => panic!("unexpected record type {other:?}"),
        }
        // Our encoder produces exactly Prometheus's bytes.
        assert_eq!(&buf, rec, "{typ:?}");
        for s in &d.samples {
            assert!(
                series.iter().any(|x: &RefSeries| x.id == s.id),
                "sample of unknown series"
            );
            assert!(s.t > 1_600_000_000_000, "{}", s.t);
        }
        samples += d.samples.len();
        stones += d.tombstones.len();
        series.append(&mut d.series);
    }
    assert!(series.len() > 100, "{}", series.len());
    assert!(samples >= series.len(), "{samples}");
    assert!(stones >= 1);
    let up = Labels::from_pairs(&[
        ("__name__", "up"),
        ("instance", "127.0.0.1:19090"),
        ("job", "self"),
    ]);
    assert!(series.iter().any(|s| s.labels == up));

    // Logging the same records through our writer gives the same segment bytes (the
    // fixture's last page is partial because Prometheus was killed; ours is too, as the
    // writer is dropped without close).
    let out = tempfile::tempdir().unwrap();
    let mut w = Wal::open(out.path(), WalOptions::default()).unwrap();
    for r in &recs {
        w.log_record(r).unwrap();
    }
    drop(w);
    let ours = std::fs::read(segment_path(out.path(), 0)).unwrap();
    let theirs = std::fs::read(segment_path(&dir, 0)).unwrap();
    assert!(
        ours == theirs,
        "segment bytes differ ({} vs {} bytes)",
        ours.len(),
        theirs.len()
    );
}

#[test]
fn snappy_prometheus_wal_decodes_like_the_plain_one() {
    // Prometheus compresses WAL records with snappy by default.
    let dir = testdata("prometheus-2.42-snappy");
    let mut r = WalReader::open(&dir).unwrap();
    let mut n = 0;
    while let Some(raw) = r.next_raw().unwrap() {
        assert_eq!(raw.compression, Compression::Snappy);
        n += 1;
    }
    assert_eq!(n, 2);
    let mut r = WalReader::open(&dir).unwrap();
    let mut series = Vec::new();
    let mut kinds = Vec::new();
    while let Some(rec) = r.next_record().unwrap() {
        kinds.push(record_type(rec));
        if record_type(rec) == RecordType::Series {
            decode_series(rec, &mut series).unwrap();
        }
    }
    assert_eq!(kinds.len(), 2);
    let up = Labels::from_pairs(&[
        ("__name__", "up"),
        ("instance", "127.0.0.1:19090"),
        ("job", "self"),
    ]);
    assert!(
        series.iter().any(|s| s.labels == up),
        "decoded {} series",
        series.len()
    );
}

/// With `KILN_INTEROP=1`: Kiln writes a WAL and a checkpoint, `promtool tsdb dump`
/// replays them.
#[test]
fn promtool_reads_kiln_wal_and_checkpoint() {
    if std::env::var("KILN_INTEROP").as_deref() != Ok("1") {
        eprintln!("skipped: set KILN_INTEROP=1 (needs promtool) to run");
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let wal_dir = data.path().join("wal");
    let mut w = Wal::open(&wal_dir, WalOptions::default()).unwrap();
    let t0 = 1_700_000_000_000i64;
    let mut buf = Vec::new();
    let series: Vec<RefSeries> = (1..=50u64)
        .map(|id| RefSeries {
            id,
            labels: Labels::from_pairs(&[("__name__", "kiln_test"), ("i", &id.to_string())]),
        })
        .collect();
    encode_series(&series, &mut buf);
    w.log_record(&buf).unwrap();
    for k in 0..200i64 {
        if k == 100 {
            w.next_segment().unwrap();
        }
        buf.clear();
        // Ids in descending order: negative id deltas.
        let samples: Vec<RefSample> = (1..=50u64)
            .rev()
            .map(|id| RefSample {
                id,
                t: t0 + k * 1000,
                v: (id as i64 * k) as f64,
            })
            .collect();
        encode_samples(&samples, &mut buf);
        w.log_record(&buf).unwrap();
    }
    // Checkpoint segment 0 keeping samples from k = 50 on, then drop segment 0.
    let stats = checkpoint(&wal_dir, 0, 0, |_| true, t0 + 50_000).unwrap();
    assert_eq!(stats.dropped_samples, 50 * 50);
    w.truncate(1).unwrap();
    w.close().unwrap();

    let out = Command::new("promtool")
        .args([
            "tsdb",
            "dump",
            "--match",
            "{__name__=\"kiln_test\", i=\"7\"}",
        ])
        .arg(data.path())
        .output()
        .expect("run promtool");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "promtool failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 150, "{stdout}");
    assert_eq!(
        lines[0],
        format!("{{__name__=\"kiln_test\", i=\"7\"}} 350 {}", t0 + 50_000)
    );
    assert_eq!(
        lines[149],
        format!("{{__name__=\"kiln_test\", i=\"7\"}} 1393 {}", t0 + 199_000)
    );
}
