//! The database as a whole: compaction, retention, deletes, queriers, and bad data on
//! disk.

use std::path::Path;

use kiln_model::{Labels, MatchType, Matcher};
use kiln_storage::{Appender, ChunkQuerier, Querier, SampleValue, ValueKind};
use kiln_tsdb::db::{Db, DbOptions};

const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;

fn opts() -> DbOptions {
    DbOptions {
        chunk_range: 2 * HOUR,
        max_block_duration: 18 * HOUR,
        retention_time: None,
        ..DbOptions::default()
    }
}

fn labels(gpu: usize, job: &str) -> Labels {
    Labels::from_pairs(&[
        ("__name__", "gpu_utilization"),
        ("gpu", &gpu.to_string()),
        ("job", job),
    ])
}

/// Appends one sample per minute for `hours` hours, from `start`, to 4 series, in one
/// commit per minute.
fn fill(db: &Db, start: i64, hours: i64) {
    let series: Vec<Labels> = (0..4)
        .map(|g| labels(g, if g < 2 { "train" } else { "serve" }))
        .collect();
    for step in 0..hours * 60 {
        let t = start + step * MIN;
        let mut app = db.appender();
        for (g, l) in series.iter().enumerate() {
            app.append(0, l, t, SampleValue::Float(value(g, t)))
                .expect("append");
        }
        app.commit().expect("commit");
    }
}

fn value(gpu: usize, t: i64) -> f64 {
    (t / MIN) as f64 * 0.5 + gpu as f64
}

/// Every series and sample in `[mint, maxt]` matching `matchers`.
fn read(db: &Db, mint: i64, maxt: i64, matchers: &[Matcher]) -> Vec<(String, Vec<(i64, f64)>)> {
    let q = db.querier(mint, maxt);
    let mut set = q.select(true, None, matchers);
    let mut out = Vec::new();
    while let Some(s) = set.next() {
        let mut it = s.iterator();
        let mut samples = Vec::new();
        while it.next() == ValueKind::Float {
            samples.push(it.at());
        }
        assert!(it.err().is_none(), "{:?}", it.err());
        out.push((s.labels().to_string(), samples));
    }
    assert!(
        set.err().is_none(),
        "{:?}",
        set.err().map(ToString::to_string)
    );
    out
}

fn total_samples(rows: &[(String, Vec<(i64, f64)>)]) -> usize {
    rows.iter().map(|r| r.1.len()).sum()
}

#[test]
fn head_compaction_and_block_merging_keep_every_sample() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let db = Db::open(tmp.path(), opts()).expect("open");
    fill(&db, 0, 13);
    let before = read(&db, i64::MIN, i64::MAX, &[]);
    assert_eq!(total_samples(&before), 4 * 13 * 60);

    let stats = db.compact().expect("compact");
    // 13 h of data: ranges [0,2h) ... [8h,10h) are cut (the head keeps > 1.5 ranges
    // back from its newest sample), then [0,6h) is merged from three 2 h blocks.
    assert_eq!(stats.head_blocks, 5, "{stats:?}");
    assert!(stats.merged_blocks >= 1, "{stats:?}");
    let ranges: Vec<(i64, i64)> = db
        .blocks()
        .iter()
        .map(|b| (b.meta().min_time, b.meta().max_time))
        .collect();
    assert_eq!(
        ranges,
        vec![(0, 6 * HOUR), (6 * HOUR, 8 * HOUR), (8 * HOUR, 10 * HOUR)]
    );
    assert_eq!(db.blocks()[0].meta().compaction.level, 2);
    assert_eq!(db.blocks()[0].meta().compaction.sources.len(), 3);
    assert_eq!(
        read(&db, i64::MIN, i64::MAX, &[]),
        before,
        "compaction changed data"
    );
    assert!(db.head().min_time().is_some_and(|t| t >= 10 * HOUR));

    // Queries spanning blocks and head, with matchers.
    let train = Matcher::equal("job", "train");
    let rows = read(&db, 5 * HOUR, 11 * HOUR, std::slice::from_ref(&train));
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].1.first().map(|s| s.0), Some(5 * HOUR));
    assert_eq!(rows[0].1.last().map(|s| s.0), Some(11 * HOUR));
    assert_eq!(rows[0].1.len(), 6 * 60 + 1);
    let q = db.querier(i64::MIN, i64::MAX);
    assert_eq!(
        q.label_values("gpu", &[]).expect("values").0,
        vec!["0", "1", "2", "3"]
    );
    assert_eq!(
        q.label_values("gpu", &[train]).expect("values").0,
        vec!["0", "1"]
    );
    assert_eq!(
        q.label_names(&[]).expect("names").0,
        vec!["__name__", "gpu", "job"]
    );
    drop(q);

    // Reopening gives the same data (blocks + WAL checkpoint + segments).
    db.close().expect("close");
    let db = Db::open(tmp.path(), opts()).expect("reopen");
    assert_eq!(
        read(&db, i64::MIN, i64::MAX, &[]),
        before,
        "reopen changed data"
    );
    // The WAL was checkpointed: no segment holds data older than the head.
    let wal = tmp.path().join("wal");
    assert!(
        std::fs::read_dir(&wal)
            .expect("wal dir")
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("checkpoint."))
    );

    // Chunk querier: same series, chunks covering the same samples.
    let cq = db.chunk_querier(i64::MIN, i64::MAX);
    let mut set = cq.select_chunks(true, None, &[Matcher::equal("gpu", "0")]);
    let series = set.next().expect("one series");
    assert!(set.next().is_none());
    let n: usize = series
        .chunks
        .iter()
        .map(|c| kiln_chunkenc::num_samples(&c.data).expect("chunk header") as usize)
        .sum();
    assert_eq!(n, 13 * 60);
}

/// Every series of a chunk selection decoded, in the order the stream gave them.
fn read_chunks(
    q: &dyn ChunkQuerier,
    matchers: &[Matcher],
    mint: i64,
    maxt: i64,
) -> Vec<(String, Vec<(i64, f64)>)> {
    let mut set = q.select_chunks(true, None, matchers);
    let mut out = Vec::new();
    while let Some(s) = set.next() {
        let mut samples = Vec::new();
        let mut prev_max = i64::MIN;
        for c in &s.chunks {
            assert!(c.min_time > prev_max, "chunks overlap in {}", s.labels);
            prev_max = c.max_time;
            let mut it = kiln_chunkenc::XorIterator::new(&c.data);
            while it.next() {
                let (t, v) = it.at();
                // Chunks come whole: clip to the range as a remote-read client does.
                if (mint..=maxt).contains(&t) {
                    samples.push((t, v));
                }
            }
            assert!(it.err().is_none());
        }
        out.push((s.labels.to_string(), samples));
    }
    assert!(set.err().is_none());
    out
}

#[test]
fn chunk_stream_over_blocks_and_head_matches_the_sample_querier() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let db = Db::open(tmp.path(), opts()).expect("open");
    fill(&db, 0, 13);
    db.compact().expect("compact");
    assert!(db.blocks().len() >= 2, "several blocks and the head");
    // A deletion inside a block and inside the head: those chunks are re-encoded.
    let gpu1 = [Matcher::equal("gpu", "1")];
    db.delete(HOUR, HOUR + 10 * MIN, &gpu1).expect("delete");
    db.delete(11 * HOUR, 11 * HOUR + 5 * MIN, &gpu1)
        .expect("delete");

    for (mint, maxt) in [
        (i64::MIN, i64::MAX),
        (5 * HOUR + 30 * MIN, 9 * HOUR),
        (9 * HOUR + MIN, 12 * HOUR),
    ] {
        for matchers in [vec![], vec![Matcher::equal("job", "train")]] {
            let want = read(&db, mint, maxt, &matchers);
            let cq = db.chunk_querier(mint, maxt);
            let got = read_chunks(&cq, &matchers, mint, maxt);
            assert_eq!(got, want, "[{mint}, {maxt}] {matchers:?}");
        }
    }
    let all = read(&db, i64::MIN, i64::MAX, &gpu1);
    assert_eq!(
        all[0].1.len(),
        13 * 60 - 11 - 6,
        "deleted samples stay gone"
    );

    let cq = db.chunk_querier(0, 13 * HOUR);
    assert_eq!(
        cq.label_values("job", &[]).expect("values").0,
        vec!["serve".to_string(), "train".to_string()]
    );
    assert_eq!(
        cq.label_names(&[Matcher::equal("gpu", "3")])
            .expect("names")
            .0,
        vec!["__name__".to_string(), "gpu".to_string(), "job".to_string()]
    );
}

#[test]
fn out_of_bounds_after_compaction_and_rejections() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let db = Db::open(tmp.path(), opts()).expect("open");
    fill(&db, 0, 5);
    db.compact().expect("compact");
    let l = labels(0, "train");
    let mut app = db.appender();
    let e = app
        .append(0, &l, HOUR, SampleValue::Float(1.0))
        .expect_err("persisted range");
    assert!(e.to_string().starts_with("out of bounds"), "{e}");
    let newest = 5 * 60 * MIN - MIN;
    let e = app
        .append(0, &l, newest - MIN, SampleValue::Float(1.0))
        .expect_err("older than newest");
    assert!(e.to_string().starts_with("out of order sample"), "{e}");
    let e = app
        .append(0, &l, newest, SampleValue::Float(-1.0))
        .expect_err("same time, other value");
    assert!(
        e.to_string().starts_with("duplicate sample for timestamp"),
        "{e}"
    );
    app.append(0, &l, newest, SampleValue::Float(value(0, newest)))
        .expect("exact duplicate is accepted");
    app.rollback().expect("rollback");
}

#[test]
fn retention_by_time_and_size() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut o = opts();
    o.max_block_duration = 2 * HOUR;
    o.retention_time = Some(4 * HOUR);
    let db = Db::open(tmp.path(), o).expect("open");
    fill(&db, 0, 13);
    let stats = db.compact().expect("compact");
    assert_eq!(stats.head_blocks, 5);
    // Blocks end at 2,4,6,8,10 h; the newest ends at 10 h, so those ending 4 h or more
    // before it (at 2, 4 and 6 h) are gone, as in Prometheus 3 (2.x kept the one exactly
    // 4 h behind).
    let ranges: Vec<i64> = db.blocks().iter().map(|b| b.meta().max_time).collect();
    assert_eq!(ranges, vec![8 * HOUR, 10 * HOUR]);
    assert_eq!(stats.deleted_blocks, 3);
    drop(db);

    let mut o = opts();
    o.max_block_duration = 2 * HOUR;
    o.retention_size = Some(1);
    let db = Db::open(tmp.path(), o).expect("reopen with a size limit");
    db.compact().expect("compact");
    assert!(db.blocks().is_empty(), "every block exceeds a 1-byte limit");
    let rows = read(&db, i64::MIN, i64::MAX, &[]);
    assert!(
        rows.iter().all(|r| r.1.iter().all(|s| s.0 >= 10 * HOUR)),
        "head data stays"
    );
}

#[test]
fn a_hold_keeps_blocks_from_time_retention_but_not_from_the_size_limit() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut o = opts();
    o.max_block_duration = 2 * HOUR;
    o.retention_time = Some(4 * HOUR);
    let db = Db::open(tmp.path(), o).expect("open");
    // The block ending at 4 h is "not shipped yet".
    db.hold_for_time_retention(std::sync::Arc::new(|m| m.max_time == 4 * HOUR));
    fill(&db, 0, 13);
    let stats = db.compact().expect("compact");
    let ranges: Vec<i64> = db.blocks().iter().map(|b| b.meta().max_time).collect();
    assert_eq!(ranges, vec![4 * HOUR, 8 * HOUR, 10 * HOUR]);
    assert_eq!(stats.deleted_blocks, 2);
    // Once released, the next pass deletes it.
    db.hold_for_time_retention(std::sync::Arc::new(|_| false));
    db.compact().expect("compact");
    let ranges: Vec<i64> = db.blocks().iter().map(|b| b.meta().max_time).collect();
    assert_eq!(ranges, vec![8 * HOUR, 10 * HOUR]);
    drop(db);

    let mut o = opts();
    o.max_block_duration = 2 * HOUR;
    o.retention_size = Some(1);
    let db = Db::open(tmp.path(), o).expect("reopen with a size limit");
    db.hold_for_time_retention(std::sync::Arc::new(|_| true));
    db.compact().expect("compact");
    assert!(
        db.blocks().is_empty(),
        "the size limit deletes held blocks too"
    );
}

#[test]
fn time_retention_measures_from_the_newest_block_not_the_clock() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut o = opts();
    o.max_block_duration = 2 * HOUR;
    o.retention_time = Some(6 * HOUR);
    let db = Db::open(tmp.path(), o).expect("open");
    fill(&db, 0, 9);
    let stats = db.compact().expect("compact");
    assert_eq!((stats.head_blocks, stats.deleted_blocks), (3, 0));
    // Long after the data was written, nothing is deleted while no newer block exists,
    // but every block is past the retention measured from the clock.
    let aged = db.aged_blocks(100 * HOUR).expect("aged blocks");
    assert_eq!(
        (aged.blocks, aged.min_time, aged.max_time, aged.retention),
        (3, 0, 6 * HOUR, 6 * HOUR)
    );
    let aged = db.aged_blocks(9 * HOUR).expect("aged blocks");
    assert_eq!((aged.blocks, aged.max_time), (1, 2 * HOUR));
    assert_eq!(db.aged_blocks(7 * HOUR), None);
    // Newer data cut into blocks ending at 10 h: the blocks ending 6 h or more before
    // that go.
    fill(&db, 9 * HOUR, 4);
    let stats = db.compact().expect("compact");
    assert_eq!((stats.head_blocks, stats.deleted_blocks), (2, 2));
    let ranges: Vec<(i64, i64)> = db
        .blocks()
        .iter()
        .map(|b| (b.meta().min_time, b.meta().max_time))
        .collect();
    assert_eq!(
        ranges,
        vec![
            (4 * HOUR, 6 * HOUR),
            (6 * HOUR, 8 * HOUR),
            (8 * HOUR, 10 * HOUR)
        ]
    );
}

#[test]
fn deletes_hide_data_survive_restart_and_are_cleaned() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let db = Db::open(tmp.path(), opts()).expect("open");
    fill(&db, 0, 9);
    db.compact().expect("compact");
    assert!(!db.blocks().is_empty());
    let gpu1 = [Matcher::equal("gpu", "1")];
    // Delete one hour in the blocks and one in the head.
    db.delete(HOUR, 2 * HOUR - 1, &gpu1)
        .expect("delete in block");
    db.delete(8 * HOUR, 9 * HOUR, &gpu1)
        .expect("delete in head");
    let check = |db: &Db| {
        let rows = read(db, i64::MIN, i64::MAX, &gpu1);
        assert_eq!(rows.len(), 1);
        assert!(
            rows[0]
                .1
                .iter()
                .all(|s| !(HOUR..2 * HOUR).contains(&s.0) && s.0 < 8 * HOUR),
            "deleted samples are hidden"
        );
        assert_eq!(rows[0].1.len(), 9 * 60 - 60 - 60);
        let others = read(db, i64::MIN, i64::MAX, &[Matcher::equal("gpu", "0")]);
        assert_eq!(others[0].1.len(), 9 * 60, "other series untouched");
    };
    check(&db);
    let tombstoned = db
        .blocks()
        .iter()
        .filter(|b| !b.tombstones().is_empty())
        .count();
    assert_eq!(tombstoned, 1);
    db.close().expect("close");

    let db = Db::open(tmp.path(), opts()).expect("reopen");
    check(&db);
    assert_eq!(db.clean_tombstones().expect("clean"), 1);
    assert!(db.blocks().iter().all(|b| b.tombstones().is_empty()));
    check(&db);
}

fn first_block_dir(dir: &Path) -> std::path::PathBuf {
    let db = Db::open(
        dir,
        DbOptions {
            read_only: true,
            ..opts()
        },
    )
    .expect("open read-only");
    db.blocks()[0].dir().to_owned()
}

#[test]
fn corrupt_blocks_are_skipped_and_reported() {
    let tmp = tempfile::tempdir().expect("tempdir");
    {
        let db = Db::open(tmp.path(), opts()).expect("open");
        fill(&db, 0, 11);
        db.compact().expect("compact");
        assert_eq!(db.blocks().len(), 2, "a 6 h block and a 2 h block");
        db.close().expect("close");
    }
    let block = first_block_dir(tmp.path());
    let index = block.join("index");
    let mut bytes = std::fs::read(&index).expect("read index");
    let n = bytes.len();
    bytes[n - 10] ^= 0xff; // inside the TOC
    std::fs::write(&index, &bytes).expect("write");

    let db = Db::open(tmp.path(), opts()).expect("open with a corrupt block");
    let skipped = db.skipped_blocks();
    assert_eq!(skipped.len(), 1);
    assert_eq!(skipped[0].dir, block);
    assert!(
        skipped[0].reason.contains("index"),
        "names the file: {}",
        skipped[0].reason
    );
    assert_eq!(db.blocks().len(), 1, "the other block stays readable");
    let rows = read(&db, i64::MIN, i64::MAX, &[]);
    assert!(total_samples(&rows) >= 4 * 3 * 60);
    drop(db);

    // A corrupt meta.json is skipped the same way.
    std::fs::write(block.join("meta.json"), b"{\"ulid\": 42").expect("write");
    let db = Db::open(tmp.path(), opts()).expect("open");
    assert!(
        db.skipped_blocks()[0].reason.contains("meta.json"),
        "{}",
        db.skipped_blocks()[0].reason
    );
}

#[test]
fn corrupt_chunk_is_an_error_naming_file_and_offset() {
    let tmp = tempfile::tempdir().expect("tempdir");
    {
        let db = Db::open(tmp.path(), opts()).expect("open");
        fill(&db, 0, 5);
        db.compact().expect("compact");
        db.close().expect("close");
    }
    let seg = first_block_dir(tmp.path()).join("chunks").join("000001");
    let mut bytes = std::fs::read(&seg).expect("read");
    bytes[40] ^= 0x55;
    std::fs::write(&seg, &bytes).expect("write");
    let db = Db::open(tmp.path(), opts()).expect("open");
    let q = db.querier(i64::MIN, i64::MAX);
    let mut set = q.select(true, None, &[]);
    while set.next().is_some() {}
    let err = set.err().expect("corruption is reported").to_string();
    assert!(err.contains("000001") && err.contains("offset"), "{err}");
}

#[test]
fn torn_wal_tail_is_repaired() {
    let tmp = tempfile::tempdir().expect("tempdir");
    {
        let db = Db::open(tmp.path(), opts()).expect("open");
        fill(&db, 0, 1);
        // No close: the process "dies" here.
    }
    let wal = tmp.path().join("wal");
    let mut segs: Vec<_> = std::fs::read_dir(&wal)
        .expect("wal")
        .flatten()
        .map(|e| e.path())
        .collect();
    segs.sort();
    let last = segs
        .iter()
        .rev()
        .find(|p| std::fs::metadata(p).is_ok_and(|m| m.len() > 0))
        .expect("segment");
    let len = std::fs::metadata(last).expect("meta").len();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(last)
        .expect("open segment");
    f.set_len(len - 5).expect("tear the tail");
    drop(f);

    let db = Db::open(tmp.path(), opts()).expect("open repairs the tail");
    let rows = read(&db, i64::MIN, i64::MAX, &[]);
    let n = total_samples(&rows);
    // Only the last commit (4 samples) can be lost.
    assert!((4 * 60 - 4..=4 * 60).contains(&n), "{n}");
    let mut app = db.appender();
    app.append(0, &labels(0, "train"), HOUR, SampleValue::Float(1.0))
        .expect("appendable after repair");
    app.commit().expect("commit");
    drop(app);
    db.close().expect("close");
    let db = Db::open(tmp.path(), opts()).expect("reopen");
    assert_eq!(total_samples(&read(&db, i64::MIN, i64::MAX, &[])), n + 1);
}

#[test]
fn regex_and_negative_matchers_across_head_and_blocks() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let db = Db::open(tmp.path(), opts()).expect("open");
    fill(&db, 0, 5);
    db.compact().expect("compact");
    let m = |k, n: &str, v: &str| Matcher::new(k, n, v).expect("matcher");
    let cases: Vec<(Vec<Matcher>, usize)> = vec![
        (vec![m(MatchType::Regex, "gpu", "0|3")], 2),
        (vec![m(MatchType::NotEqual, "job", "train")], 2),
        (vec![m(MatchType::NotRegex, "gpu", "[01]")], 2),
        (
            vec![
                m(MatchType::Regex, "job", "tr.*"),
                m(MatchType::NotEqual, "gpu", "0"),
            ],
            1,
        ),
        (vec![m(MatchType::Equal, "missing", "")], 4),
        (vec![m(MatchType::Regex, "__name__", "gpu_.+")], 4),
        (vec![m(MatchType::Equal, "job", "none")], 0),
    ];
    for (matchers, want) in cases {
        let rows = read(&db, i64::MIN, i64::MAX, &matchers);
        assert_eq!(rows.len(), want, "{matchers:?}");
        for r in &rows {
            assert_eq!(
                r.1.len(),
                5 * 60,
                "{matchers:?}: every sample from blocks and head"
            );
        }
    }
}

#[test]
fn full_head_chunks_live_in_chunks_head_and_survive_restart() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let db = Db::open(tmp.path(), opts()).expect("open");
    // 5 hours at one sample a minute: two full 120-sample chunks per series and more.
    fill(&db, 0, 5);
    let before = read(&db, i64::MIN, i64::MAX, &[]);
    drop(db); // no close, as in a crash, but the chunk store's write buffer is flushed
    let files: Vec<_> = std::fs::read_dir(tmp.path().join("chunks_head"))
        .expect("chunks_head")
        .flatten()
        .collect();
    let size: u64 = files
        .iter()
        .map(|f| f.metadata().map(|m| m.len()).unwrap_or(0))
        .sum();
    assert!(
        size > 8 * 100,
        "full chunks were written to chunks_head/ ({size} bytes)"
    );

    let db = Db::open(tmp.path(), opts()).expect("reopen");
    assert_eq!(
        read(&db, i64::MIN, i64::MAX, &[]),
        before,
        "restart with adopted chunk files"
    );
    fill(&db, 5 * HOUR, 1);
    assert_eq!(
        total_samples(&read(&db, i64::MIN, i64::MAX, &[])),
        4 * 6 * 60,
        "appends continue after restart"
    );
    db.compact().expect("compact");
    db.close().expect("close");
    let db = Db::open(tmp.path(), opts()).expect("reopen after compaction");
    assert_eq!(
        total_samples(&read(&db, i64::MIN, i64::MAX, &[])),
        4 * 6 * 60
    );
}

#[test]
fn concurrent_appenders_and_rollback() {
    // Workers run at different speeds; keeping all samples within half a chunk range
    // (1 h) of each other keeps the slowest one inside the head's appendable window.
    const STEP: i64 = 10_000;
    let tmp = tempfile::tempdir().expect("tempdir");
    let db = Db::open(tmp.path(), opts()).expect("open");
    let shared = Labels::from_pairs(&[("__name__", "shared_counter")]);
    std::thread::scope(|scope| {
        for w in 0..4usize {
            let db = &db;
            let shared = &shared;
            scope.spawn(move || {
                let own: Vec<Labels> = (0..100).map(|i| labels(w * 1000 + i, "worker")).collect();
                let mut refs = vec![0u64; own.len()];
                for step in 0..300i64 {
                    let mut app = db.appender();
                    for (i, l) in own.iter().enumerate() {
                        refs[i] = app
                            .append(refs[i], l, step * STEP, SampleValue::Float(step as f64))
                            .expect("own series");
                    }
                    // Every worker races on one series: each sample is accepted once,
                    // or rejected as out of order / duplicate, never corrupting it.
                    let _ = app.append(0, shared, step * STEP, SampleValue::Float(step as f64));
                    app.commit().expect("commit");
                    // A rolled-back transaction leaves nothing behind.
                    let mut app = db.appender();
                    app.append(refs[0], &own[0], step * STEP + 1, SampleValue::Float(-1.0))
                        .expect("append");
                    app.rollback().expect("rollback");
                }
            });
        }
    });
    let check = |db: &Db| {
        let rows = read(db, i64::MIN, i64::MAX, &[Matcher::equal("job", "worker")]);
        assert_eq!(rows.len(), 400);
        for (l, samples) in &rows {
            assert_eq!(samples.len(), 300, "{l}");
            assert!(
                samples
                    .iter()
                    .enumerate()
                    .all(|(i, s)| *s == (i as i64 * STEP, i as f64)),
                "{l}"
            );
        }
        let shared = read(
            db,
            i64::MIN,
            i64::MAX,
            &[Matcher::equal("__name__", "shared_counter")],
        );
        let ts: Vec<i64> = shared[0].1.iter().map(|s| s.0).collect();
        assert!(
            ts.windows(2).all(|w| w[0] < w[1]),
            "shared series stays ordered"
        );
        assert_eq!(ts.last(), Some(&(299 * STEP)));
    };
    check(&db);
    db.close().expect("close");
    let db = Db::open(tmp.path(), opts()).expect("reopen");
    check(&db);
}

#[test]
fn a_new_series_with_uncommitted_samples_survives_head_truncation() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let db = Db::open(tmp.path(), opts()).expect("open");
    fill(&db, 0, 5);
    let late = Labels::from_pairs(&[("__name__", "late_series")]);
    let mut app = db.appender();
    app.append(0, &late, 5 * HOUR, SampleValue::Float(1.0))
        .expect("append");
    // Truncation runs while the new, still empty series has an uncommitted sample.
    let stats = db.compact().expect("compact");
    assert_eq!(stats.head_blocks, 1);
    app.commit().expect("commit");
    drop(app);
    let rows = read(
        &db,
        i64::MIN,
        i64::MAX,
        &[Matcher::equal("__name__", "late_series")],
    );
    assert_eq!(
        rows.len(),
        1,
        "the series was not garbage-collected under its appender"
    );
    assert_eq!(rows[0].1, vec![(5 * HOUR, 1.0)]);
    db.close().expect("close");
    let db = Db::open(tmp.path(), opts()).expect("reopen");
    let rows = read(
        &db,
        i64::MIN,
        i64::MAX,
        &[Matcher::equal("__name__", "late_series")],
    );
    assert_eq!(
        rows[0].1,
        vec![(5 * HOUR, 1.0)],
        "and its sample is in the WAL checkpoint"
    );
}

/// Overwrites every WAL segment with zeros of the same length: a replay would find no
/// record, while the clean-shutdown snapshot still matches the WAL's end.
fn blank_wal(dir: &Path) {
    for e in std::fs::read_dir(dir.join("wal")).expect("wal dir") {
        let p = e.expect("entry").path();
        if p.is_file() {
            let len = std::fs::metadata(&p).expect("stat").len();
            std::fs::write(&p, vec![0u8; len as usize]).expect("blank");
        }
    }
}

/// A database in `dir` holding two hours of the 4 series of [`fill`], every series with a
/// partly filled open chunk at the end.
fn open_with_two_hours(dir: &Path) -> Db {
    let db = Db::open(dir, opts()).expect("open");
    fill(&db, 0, 1);
    fill(&db, HOUR, 1);
    db
}

#[test]
fn a_clean_shutdown_restores_the_head_from_its_snapshot_and_loses_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("data");
    let all = [Matcher::new(MatchType::Regex, "__name__", ".+").expect("matcher")];
    let db = open_with_two_hours(&dir);
    // A tombstone, which the snapshot carries too.
    db.delete(10 * MIN, 19 * MIN, &[Matcher::equal("gpu", "3")])
        .expect("delete");
    let want = read(&db, 0, 4 * HOUR, &all);
    assert_eq!(total_samples(&want), 4 * 120 - 10);
    db.close().expect("close");
    assert!(
        dir.join("head-snapshot").is_file(),
        "a clean close writes the snapshot"
    );

    // The snapshot alone restores the head: the WAL, blanked to the same length, is not
    // read (a replay would find nothing in it).
    let saved = tmp.path().join("saved");
    copy_dir(&dir, &saved);
    blank_wal(&dir);
    let db = Db::open(&dir, opts()).expect("reopen after a clean close");
    assert!(
        !dir.join("head-snapshot").exists(),
        "the snapshot is used up"
    );
    assert_eq!(
        read(&db, 0, 4 * HOUR, &all),
        want,
        "every sample, without the WAL"
    );
    drop(db);
    std::fs::remove_dir_all(&dir).expect("remove");
    std::fs::rename(&saved, &dir).expect("restore the saved directory");

    let db = Db::open(&dir, opts()).expect("reopen after a clean close");
    assert_eq!(read(&db, 0, 4 * HOUR, &all), want);
    // New samples go on after the old ones (duplicates and out-of-order still refused),
    // and a new series gets an id no other series had.
    {
        let mut app = db.appender();
        let l = labels(0, "train");
        assert!(
            app.append(0, &l, 2 * HOUR - MIN, SampleValue::Float(1.0))
                .is_err()
        );
        app.append(0, &l, 2 * HOUR, SampleValue::Float(7.0))
            .expect("append after the newest sample");
        app.append(0, &labels(9, "new"), 2 * HOUR, SampleValue::Float(3.0))
            .expect("append to a new series");
        app.commit().expect("commit");
    }
    // A crash: no close, no snapshot; the next open replays the WAL in full, which
    // holds the samples from before the snapshot restore and after it.
    drop(db);
    assert!(!dir.join("head-snapshot").exists());
    let db = Db::open(&dir, opts()).expect("reopen after a crash");
    let after = read(&db, 0, 4 * HOUR, &all);
    assert_eq!(total_samples(&after), 4 * 120 - 10 + 2);
    assert_eq!(after.len(), 5, "{after:?}");
    db.close().expect("close");

    // A snapshot that no longer matches the WAL (written to after the close) is ignored.
    {
        let mut wal = kiln_tsdb::wal::Wal::open(dir.join("wal"), Default::default()).expect("wal");
        let mut buf = Vec::new();
        kiln_tsdb::wal::record::encode_samples(
            &[kiln_tsdb::wal::RefSample {
                id: 1,
                t: 3 * HOUR,
                v: 9.0,
            }],
            &mut buf,
        );
        wal.log_record(&buf).expect("log");
        wal.close().expect("close wal");
    }
    let db = Db::open(&dir, opts()).expect("reopen with a moved WAL");
    let moved = read(&db, 0, 4 * HOUR, &all);
    assert_eq!(
        total_samples(&moved),
        4 * 120 - 10 + 3,
        "the sample written after the snapshot is replayed"
    );
    db.close().expect("close");

    // Chunk files that changed since the close, or a damaged snapshot, mean a replay.
    let want = read(&Db::open(&dir, opts()).expect("open"), 0, 4 * HOUR, &all);
    for damage in ["chunk file grew", "snapshot byte flipped"] {
        let db = Db::open(&dir, opts()).expect("open");
        db.close().expect("close");
        match damage {
            "chunk file grew" => {
                let f = std::fs::read_dir(dir.join("chunks_head"))
                    .expect("chunks_head")
                    .map(|e| e.expect("entry").path())
                    .max()
                    .expect("a chunk file");
                let mut bytes = std::fs::read(&f).expect("read");
                bytes.extend_from_slice(&[0u8; 16]);
                std::fs::write(&f, bytes).expect("write");
            }
            _ => {
                let f = dir.join("head-snapshot");
                let mut bytes = std::fs::read(&f).expect("read");
                let mid = bytes.len() / 2;
                bytes[mid] ^= 0x40;
                std::fs::write(&f, bytes).expect("write");
            }
        }
        let db = Db::open(&dir, opts()).expect("open after damage");
        assert_eq!(read(&db, 0, 4 * HOUR, &all), want, "{damage}");
        drop(db);
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read dir") {
        let e = e.expect("entry");
        let target = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).expect("copy");
        }
    }
}

#[test]
fn a_head_snapshot_damaged_under_a_valid_checksum_never_breaks_the_open() {
    // A snapshot whose bytes are wrong but whose checksum was recomputed (what a bug,
    // not a disk, would write) must still open: the parser refuses it or the restore
    // falls back to the WAL; every sample stays.
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("data");
    let all = [Matcher::new(MatchType::Regex, "__name__", ".+").expect("matcher")];
    let db = open_with_two_hours(&dir);
    // Selected through every label pair, so a wrong postings index would show.
    let selections: Vec<Vec<Matcher>> = std::iter::once(all.to_vec())
        .chain((0..4).map(|g| vec![Matcher::equal("gpu", &g.to_string())]))
        .chain(["train", "serve"].map(|j| vec![Matcher::equal("job", j)]))
        .collect();
    let read_all = |db: &Db| -> Vec<_> {
        selections
            .iter()
            .map(|m| read(db, 0, 4 * HOUR, m))
            .collect()
    };
    let want = read_all(&db);
    db.close().expect("close");
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for round in 0..200 {
        // The snapshot the last close wrote: an older one no longer matches the WAL
        // (every open starts a new segment) and would not even be restored.
        let good = std::fs::read(dir.join("head-snapshot")).expect("snapshot");
        let mut bytes = good[..good.len() - 4].to_vec();
        match round % 4 {
            // Flip a byte near the end, where the postings index is (before the alias
            // and tombstone counts): it must still index exactly the series restored.
            3 => {
                let end = bytes.len() - 8;
                let at = end - 1 - (next() % (end as u64 / 5)) as usize;
                bytes[at] ^= 1 << (next() % 8);
            }
            // Flip a few bytes.
            0 => {
                for _ in 0..1 + next() % 4 {
                    let at = (next() % bytes.len() as u64) as usize;
                    bytes[at] ^= 1 << (next() % 8);
                }
            }
            // Cut it short.
            1 => bytes.truncate((next() % bytes.len() as u64) as usize),
            // Huge counts and lengths.
            _ => {
                let at = (next() % (bytes.len() as u64 - 4)) as usize;
                bytes[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
            }
        }
        let crc = crc32c::crc32c(&bytes);
        bytes.extend_from_slice(&crc.to_le_bytes());
        std::fs::write(dir.join("head-snapshot"), &bytes).expect("write");
        let db = Db::open(&dir, opts()).unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert_eq!(read_all(&db), want, "round {round}");
        // Closing writes a good snapshot again; put it back for the next round.
        db.close().expect("close");
    }
}
