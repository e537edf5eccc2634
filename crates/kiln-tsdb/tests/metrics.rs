//! The database's own metrics (what `/metrics` exports as `prometheus_tsdb_*`): each one
//! moves when the maintenance it measures happens, by the amount Prometheus's would.

use std::path::Path;
use std::sync::atomic::Ordering;

use kiln_model::{Labels, Matcher};
use kiln_storage::{Appender, SampleValue};
use kiln_tsdb::db::{Db, DbOptions};

const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;

/// Appends one sample per minute for `hours` hours from 0 to 4 series.
fn fill(db: &Db, hours: i64) {
    let series: Vec<Labels> = (0..4)
        .map(|g| {
            Labels::from_pairs(&[
                ("__name__", "gpu_utilization"),
                ("gpu", &g.to_string()),
                ("job", if g < 2 { "train" } else { "serve" }),
            ])
        })
        .collect();
    for step in 0..hours * 60 {
        let mut app = db.appender();
        for l in &series {
            app.append(0, l, step * MIN, SampleValue::Float(step as f64))
                .expect("append");
        }
        app.commit().expect("commit");
    }
}

/// Bytes of the files in every block directory under `dir`, measured independently of
/// the database.
fn block_bytes_on_disk(dir: &Path) -> u64 {
    fn walk(p: &Path) -> u64 {
        std::fs::read_dir(p)
            .expect("read dir")
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
        .expect("read data dir")
        .flatten()
        .filter(|e| ulid::Ulid::from_string(&e.file_name().to_string_lossy()).is_ok())
        .map(|e| walk(&e.path()))
        .sum()
}

fn counter(c: &std::sync::atomic::AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

#[test]
fn compaction_and_time_retention_move_the_metrics() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let opts = DbOptions {
        chunk_range: 2 * HOUR,
        max_block_duration: 6 * HOUR,
        retention_time: Some(4 * HOUR),
        ..DbOptions::default()
    };
    let db = Db::open(tmp.path(), opts).expect("open");
    let m = db.metrics();
    assert_eq!(counter(&m.reloads), 1, "opening loads the block set once");
    assert_eq!(counter(&m.compactions), 0);
    assert_eq!(db.head().stats.chunks(), 0);

    fill(&db, 13);
    // 780 samples per series, one 120-sample chunk per 2 h range: 7 chunks each.
    assert_eq!(db.head().stats.chunks(), 4 * 7);
    assert_eq!(db.lowest_timestamp(), Some(0), "the head's oldest sample");

    let stats = db.compact().expect("compact");
    // The head spans 13 h: five 2 h ranges are cut (the rest stays within 1.5 ranges),
    // [0, 6 h) is merged into one block, and that block, 4 h behind the newest one
    // (ending at 10 h), is deleted by time.
    assert_eq!(
        (stats.head_blocks, stats.merged_blocks, stats.deleted_blocks),
        (5, 1, 1)
    );
    assert_eq!(counter(&m.compactions_triggered), 1);
    assert_eq!(counter(&m.compactions), 6, "five head blocks and one merge");
    assert_eq!(m.compaction_duration.snapshot().count, 6);
    assert_eq!(counter(&m.compactions_failed), 0);
    assert_eq!(counter(&m.vertical_compactions), 0);
    assert!(!m.populating_block.load(Ordering::Relaxed));
    assert_eq!(
        counter(&m.reloads),
        1 + 6 + 1,
        "open, each block written, the retention pass"
    );
    assert_eq!(counter(&m.reloads_failed), 0);
    assert_eq!(counter(&m.time_retentions), 1);
    assert_eq!(counter(&m.size_retentions), 0);

    // Level-1 chunks: 4 series x 5 ranges, 120 samples and 119 minutes each.
    let samples = m.chunk_samples.snapshot();
    assert_eq!(samples.count, 20);
    assert_eq!(samples.sum, 20.0 * 120.0);
    let le = |s: &kiln_tsdb::stats::HistogramSnapshot, bound: f64| {
        s.buckets
            .iter()
            .find(|b| b.0 == bound)
            .map(|b| b.1)
            .expect("bucket")
    };
    assert_eq!(le(&samples, 102.515625), 0);
    assert_eq!(le(&samples, 153.7734375), 20);
    let range = m.chunk_range.snapshot();
    assert_eq!(range.sum, 20.0 * (119 * MIN) as f64);
    assert_eq!(le(&range, 6553600.0), 0);
    assert_eq!(le(&range, 26214400.0), 20);
    let size = m.chunk_size.snapshot();
    assert_eq!(size.count, 20);
    assert!(size.sum > 20.0 * 32.0, "{size:?}");

    // Head truncation and WAL checkpoints, once per block cut.
    let head = &db.head().stats;
    assert_eq!(counter(&head.truncations), 5);
    assert_eq!(head.gc_duration.snapshot().0, 5);
    assert_eq!(db.head().stats.chunks(), 4 * 7 - 4 * 5);
    assert_eq!(counter(&head.chunks_removed), 20);
    assert_eq!(counter(&m.checkpoint_creations), 5);
    assert_eq!(counter(&m.checkpoint_creations_failed), 0);
    assert_eq!(counter(&m.wal_truncations), 5);
    assert_eq!(m.wal_truncate_duration.snapshot().0, 5);
    assert_eq!(
        db.wal_segment_current(),
        Some(5),
        "each truncation starts a segment"
    );

    // Gauges measured from the data as it is now.
    assert_eq!(db.blocks().len(), 2);
    assert_eq!(db.blocks_size(), block_bytes_on_disk(tmp.path()));
    assert_eq!(db.lowest_timestamp(), Some(6 * HOUR));
    // Ten symbols per block (gpu_utilization, __name__, gpu, 0-3, job, serve, train),
    // one 4-byte offset each.
    assert_eq!(db.symbol_table_size(), 2 * 10 * 4);
    assert!(db.wal_size() > 0);

    // Rewriting a block without deleted data is a timed compaction too.
    db.delete(6 * HOUR, 7 * HOUR, &[Matcher::equal("gpu", "1")])
        .expect("delete");
    assert_eq!(db.clean_tombstones().expect("clean"), 1);
    assert_eq!(m.tombstone_cleanup.snapshot().count, 1);
    assert_eq!(counter(&m.compactions), 7);
}

#[test]
fn size_retention_is_counted_once_per_pass() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let opts = DbOptions {
        chunk_range: 2 * HOUR,
        max_block_duration: 2 * HOUR,
        retention_time: None,
        ..DbOptions::default()
    };
    let db = Db::open(tmp.path(), opts.clone()).expect("open");
    fill(&db, 9);
    assert_eq!(db.compact().expect("compact").head_blocks, 3);
    assert_eq!(counter(&db.metrics().compactions), 3);
    assert_eq!(counter(&db.metrics().size_retentions), 0);
    drop(db);

    let db = Db::open(
        tmp.path(),
        DbOptions {
            retention_size: Some(1),
            ..opts
        },
    )
    .expect("reopen with a 1-byte limit");
    let stats = db.compact().expect("compact");
    assert_eq!(stats.deleted_blocks, 3);
    assert_eq!(counter(&db.metrics().size_retentions), 1);
    assert_eq!(counter(&db.metrics().time_retentions), 0);
    assert_eq!(db.blocks_size(), 0);
    assert_eq!(
        counter(&db.metrics().compactions),
        0,
        "a new process counts afresh"
    );
}
