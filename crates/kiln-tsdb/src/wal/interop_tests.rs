//! Interoperability with Prometheus: fixtures written by Prometheus 2.42. The other
//! direction, `promtool` reading a WAL written by Kiln, needs the real promtool and is
//! an interop test of the binary crate (`crates/kiln/tests/wal_interop.rs`).
//!
//! Fixtures in `testdata/`, each the WAL of a Prometheus 2.42.0 (Debian) scraping itself
//! every second:
//! - `prometheus-2.42-plain/00000000`: `--no-storage.tsdb.wal-compression`, a
//!   `delete_series` call through the admin API (a tombstones record), then `kill -9`,
//!   so the last page is partial.
//! - `prometheus-2.42-snappy/00000000`: default flags (snappy compression), then SIGTERM.

use std::path::{Path, PathBuf};

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
    rewrites_segment(&dir, &recs, Compression::None, drop);
}

/// Logs `recs` through Kiln's writer with `compression`, ends the writer with `end`
/// (close, or drop as a crash would), and asserts the segment equals `dir`'s first.
fn rewrites_segment(dir: &Path, recs: &[Vec<u8>], compression: Compression, end: fn(Wal)) {
    let out = tempfile::tempdir().unwrap();
    let opts = WalOptions {
        compression,
        ..WalOptions::default()
    };
    let mut w = Wal::open(out.path(), opts).unwrap();
    for r in recs {
        w.log_record(r).unwrap();
    }
    end(w);
    let ours = std::fs::read(segment_path(out.path(), 0)).unwrap();
    let theirs = std::fs::read(segment_path(dir, 0)).unwrap();
    assert!(
        ours == theirs,
        "{compression}: segment bytes differ ({} vs {} bytes)",
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

    // Kiln's writer, compressing the same records with snappy (its default), writes the
    // segment Prometheus wrote: same compressed bytes, same fragments and flags.
    rewrites_segment(&dir, &records(&dir), Compression::Snappy, |w| {
        w.close().unwrap()
    });
}
