//! An open database picks up blocks that appear in its directory (a backfill, a block
//! moved in by hand) and forgets blocks removed from it, without a restart; directories
//! still being written are left alone until they are complete.

use std::path::{Path, PathBuf};

use kiln_model::{Labels, MatchType, Matcher};
use kiln_storage::{Appender, Querier, SampleValue, ValueKind};
use kiln_tsdb::db::{Db, DbOptions};

const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;

fn opts() -> DbOptions {
    DbOptions {
        retention_time: None,
        ..DbOptions::default()
    }
}

/// Writes `job`'s series, one sample a minute over `[from, to)`, as blocks under a new
/// directory of `parent` (a stand-in for a backfill run elsewhere); returns their
/// directories.
fn blocks_elsewhere(parent: &Path, name: &str, job: &str, from: i64, to: i64) -> Vec<PathBuf> {
    let dir = parent.join(name);
    let db = Db::open(&dir, opts()).expect("open");
    let labels = Labels::from_pairs(&[("__name__", "gpu_utilization"), ("job", job)]);
    let mut app = db.appender();
    let mut t = from;
    while t < to {
        app.append(0, &labels, t, SampleValue::Float((t / MIN) as f64))
            .expect("append");
        t += MIN;
    }
    app.commit().expect("commit");
    drop(app);
    db.flush_head().expect("flush");
    let dirs = db.blocks().iter().map(|b| b.dir().to_owned()).collect();
    db.close().expect("close");
    dirs
}

/// Moves block directories into `data`, as a user finishing a backfill would.
fn move_into(data: &Path, blocks: &[PathBuf]) -> Vec<PathBuf> {
    blocks
        .iter()
        .map(|b| {
            let to = data.join(b.file_name().expect("block name"));
            std::fs::rename(b, &to).expect("move block");
            to
        })
        .collect()
}

/// Samples of `job`'s series the database returns.
fn samples(db: &Db, job: &str) -> Vec<(i64, f64)> {
    let q = db.querier(i64::MIN, i64::MAX);
    let m = Matcher::new(MatchType::Equal, "job", job).expect("matcher");
    let mut set = q.select(true, None, &[m]);
    let mut out = Vec::new();
    while let Some(s) = set.next() {
        let mut it = s.iterator();
        while it.next() == ValueKind::Float {
            out.push(it.at());
        }
    }
    assert!(set.err().is_none());
    out
}

#[test]
fn new_blocks_are_picked_up_and_removed_ones_dropped() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let db = Db::open(&data, opts()).expect("open");
    assert_eq!(db.reload_blocks().expect("reload"), Default::default());

    // Half-written directories: a block writer at work, and a copy that has not
    // reached meta.json yet. Neither is touched.
    let writing = data.join("01JZZZZZZZZZZZZZZZZZZZZZZZ.tmp-for-creation");
    let copying = data.join("01JZZZZZZZZZZZZZZZZZZZZZZY");
    for d in [&writing, &copying] {
        std::fs::create_dir_all(d.join("chunks")).expect("mkdir");
    }
    let stats = db.reload_blocks().expect("reload");
    assert!(!stats.changed(), "{stats:?}");
    assert!(db.skipped_blocks().is_empty());

    // A backfill of two hours, moved in: both blocks are queried at once.
    let moved = move_into(
        &data,
        &blocks_elsewhere(tmp.path(), "backfill", "train", 0, 3 * HOUR),
    );
    assert_eq!(moved.len(), 2);
    let stats = db.reload_blocks().expect("reload");
    assert_eq!(stats.added.len(), 2, "{stats:?}");
    assert!(stats.removed.is_empty());
    assert_eq!(db.blocks().len(), 2);
    assert_eq!(samples(&db, "train").len(), 180);
    assert!(
        !db.reload_blocks().expect("reload").changed(),
        "nothing new the second time"
    );

    // Removed by hand: dropped from the list, no longer queried.
    std::fs::rename(&moved[1], tmp.path().join("put-aside")).expect("move out");
    let stats = db.reload_blocks().expect("reload");
    assert_eq!(stats.removed.len(), 1, "{stats:?}");
    assert_eq!(db.blocks().len(), 1);
    assert_eq!(samples(&db, "train").len(), 120);
    drop(db);
    std::fs::remove_dir_all(&copying).expect("cleanup");
}

#[test]
fn a_block_that_does_not_open_is_retried_until_it_does() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let db = Db::open(&data, opts()).expect("open");
    let block = blocks_elsewhere(tmp.path(), "backfill", "serve", 0, HOUR).remove(0);
    let name = block.file_name().expect("name").to_owned();
    // A copy that has written meta.json but only half of its index.
    let partial = data.join(&name);
    std::fs::create_dir_all(partial.join("chunks")).expect("mkdir");
    for file in ["meta.json", "chunks/000001"] {
        std::fs::copy(block.join(file), partial.join(file)).expect("copy");
    }
    let index = std::fs::read(block.join("index")).expect("read index");
    std::fs::write(partial.join("index"), &index[..index.len() / 2]).expect("write");

    for _ in 0..2 {
        let stats = db.reload_blocks().expect("reload");
        assert!(!stats.changed(), "{stats:?}");
        let skipped = db.skipped_blocks();
        assert_eq!(skipped.len(), 1, "reported once: {skipped:?}");
        assert_eq!(skipped[0].dir, partial);
    }
    assert!(samples(&db, "serve").is_empty());

    // The copy completes: the block opens and is no longer listed as skipped.
    std::fs::write(partial.join("index"), &index).expect("write");
    let stats = db.reload_blocks().expect("reload");
    assert_eq!(stats.added.len(), 1, "{stats:?}");
    assert!(db.skipped_blocks().is_empty());
    assert_eq!(samples(&db, "serve").len(), 60);
}

#[test]
fn compaction_picks_up_blocks_and_merges_overlaps() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let db = Db::open(&data, opts()).expect("open");
    move_into(
        &data,
        &blocks_elsewhere(tmp.path(), "first", "train", 0, HOUR),
    );
    // The same hour again, and a recorded series over it: blocks overlapping the first.
    move_into(
        &data,
        &blocks_elsewhere(tmp.path(), "again", "train", 0, HOUR),
    );
    move_into(
        &data,
        &blocks_elsewhere(tmp.path(), "recorded", "job:recorded", 30 * MIN, HOUR),
    );
    // No explicit reload: a compaction round starts with one, like Prometheus's.
    db.compact().expect("compact");
    assert_eq!(db.blocks().len(), 1, "merged into one block");
    assert_eq!(samples(&db, "train").len(), 60, "each sample once");
    assert_eq!(samples(&db, "job:recorded").len(), 30);
    assert!(
        db.metrics()
            .vertical_compactions
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
}
