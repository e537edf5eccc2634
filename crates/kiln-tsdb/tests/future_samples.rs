//! Timestamps at the edges: samples far ahead of the clock are refused where they enter
//! (with `max_future`) and dropped from a WAL replay; compaction copes with a head that
//! spans years (it jumps over empty ranges) and stops between steps when asked.

use std::sync::atomic::{AtomicBool, Ordering};

use kiln_model::{Labels, MatchType, Matcher};
use kiln_storage::{Appender, Querier, SampleValue, StorageError, ValueKind};
use kiln_tsdb::db::{Db, DbOptions};

const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;

fn opts(max_future: Option<i64>) -> DbOptions {
    DbOptions {
        chunk_range: 2 * HOUR,
        max_block_duration: 2 * HOUR,
        retention_time: None,
        max_future,
        ..DbOptions::default()
    }
}

fn series(name: &str) -> Labels {
    Labels::from_pairs(&[("__name__", name), ("job", "edge")])
}

fn now() -> i64 {
    kiln_model::calendar::now_ms()
}

/// Every sample of every series, by series.
fn read(db: &Db) -> Vec<(String, Vec<(i64, f64)>)> {
    let all = [Matcher::new(MatchType::Regex, "__name__", ".+").expect("matcher")];
    let q = db.querier(i64::MIN, i64::MAX);
    let mut set = q.select(true, None, &all);
    let mut out = Vec::new();
    while let Some(s) = set.next() {
        let mut it = s.iterator();
        let mut samples = Vec::new();
        while it.next() == ValueKind::Float {
            samples.push(it.at());
        }
        out.push((s.labels().to_string(), samples));
    }
    out
}

/// Appends `samples` of `name` in one transaction; returns each append's outcome.
fn append(db: &Db, name: &str, samples: &[i64]) -> Vec<Result<(), StorageError>> {
    let mut app = db.appender();
    let out = samples
        .iter()
        .map(|&t| {
            app.append(0, &series(name), t, SampleValue::Float(1.0))
                .map(|_| ())
        })
        .collect();
    app.commit().expect("commit");
    out
}

/// Whether every append succeeded (the errors are printed when not).
fn all_ok(results: &[Result<(), StorageError>]) -> bool {
    results.iter().all(|r| {
        if let Err(e) = r {
            eprintln!("refused: {e}");
        }
        r.is_ok()
    })
}

#[test]
fn samples_too_far_in_the_future_are_refused_with_the_reason() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let db = Db::open(tmp.path(), opts(Some(10 * MIN))).expect("open");
    let t0 = now();
    // (timestamp, accepted)
    let cases = [
        (t0 - MIN, true),
        (t0 + 9 * MIN, true),
        (t0 + 11 * MIN, false),
        (t0 + 10 * 365 * 24 * HOUR, false),
        (i64::MAX, false),
    ];
    let got = append(&db, "edge", &cases.map(|c| c.0));
    for ((t, accepted), result) in cases.iter().zip(&got) {
        match result {
            Ok(()) => assert!(accepted, "{t} was accepted"),
            Err(e) => {
                assert!(!accepted, "{t}: {e}");
                assert!(
                    matches!(e, StorageError::TooFarInFuture { .. }) && e.is_out_of_bounds(),
                    "{e:?}"
                );
                let msg = e.to_string();
                assert!(
                    msg.starts_with("out of bounds: series {__name__=\"edge\", job=\"edge\"}")
                        && msg.contains("too far in the future: more than 10m ahead"),
                    "{msg}"
                );
                assert_eq!(e.kind(), kiln_storage::ErrorKind::BadData);
            }
        }
    }
    assert_eq!(
        read(&db),
        vec![(
            "{__name__=\"edge\", job=\"edge\"}".to_string(),
            vec![(t0 - MIN, 1.0), (t0 + 9 * MIN, 1.0)]
        )],
        "the refusals left the transaction usable"
    );
    assert_eq!(
        db.head()
            .stats
            .out_of_bounds_rejected
            .load(Ordering::Relaxed),
        3
    );
    // Current samples still go in: the head's newest time moved by 9 minutes only.
    assert!(all_ok(&append(&db, "other", &[t0])));

    // Without a bound (tools, tests) any timestamp is accepted.
    let tmp = tempfile::tempdir().expect("tempdir");
    let db = Db::open(tmp.path(), opts(None)).expect("open");
    assert!(all_ok(&append(&db, "edge", &[t0, i64::MAX])));
}

/// A writer that knows a series' reference may append by it alone, with no labels (the
/// remote-write receiver does for the series it has seen): the samples go to that
/// series, refusals still name it, and a reference the head does not know is refused
/// as such, so the writer can retry with the labels.
#[test]
fn appends_by_reference_alone_name_the_series_when_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let db = Db::open(tmp.path(), opts(Some(10 * MIN))).expect("open");
    let t0 = now();
    let mut app = db.appender();
    let r = app
        .append(0, &series("byref"), t0, SampleValue::Float(1.0))
        .expect("first");
    app.commit().expect("commit");
    let none = Labels::empty();
    let mut app = db.appender();
    assert_eq!(
        app.append(r, &none, t0 + 1, SampleValue::Float(2.0))
            .expect("by ref"),
        r
    );
    let named = "series {__name__=\"byref\", job=\"edge\"}";
    for (t, what) in [
        (t0 - 1, "out of order"),
        (t0 - 3 * HOUR, "out of bounds"),
        (t0 + HOUR, "too far in the future"),
    ] {
        let e = app
            .append(r, &none, t, SampleValue::Float(3.0))
            .expect_err(what);
        assert!(
            e.to_string().contains(what) && e.to_string().contains(named),
            "{e}"
        );
    }
    let e = app
        .append(r + 1000, &none, t0 + 2, SampleValue::Float(4.0))
        .expect_err("unknown ref");
    assert!(matches!(e, StorageError::UnknownSeriesRef { .. }), "{e:?}");
    app.commit().expect("commit");
    assert_eq!(
        read(&db),
        vec![(
            "{__name__=\"byref\", job=\"edge\"}".to_string(),
            vec![(t0, 1.0), (t0 + 1, 2.0)]
        )]
    );
}

#[test]
fn compaction_jumps_over_empty_ranges_and_far_future_samples() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let db = Db::open(tmp.path(), opts(None)).expect("open");
    // Three hours of data, a gap of about 10 years (43,800 empty ranges), three more
    // hours, and one sample at the end of time.
    let later = 10 * 365 * 24 * HOUR;
    let mut early: Vec<i64> = (0..180).map(|m| m * MIN).collect();
    early.extend((0..180).map(|m| later + m * MIN));
    assert!(all_ok(&append(&db, "gap", &early)));
    assert!(all_ok(&append(&db, "end", &[i64::MAX])));
    let before = read(&db);

    let stats = db.compact().expect("compact");
    // The ranges holding data became blocks: two early, two later; the range of the
    // sample at i64::MAX stays in the head (it is the newest).
    assert_eq!(stats.head_blocks, 4, "{stats:?}");
    let checkpoints = db.metrics().checkpoint_creations.load(Ordering::Relaxed);
    assert!(
        checkpoints <= 4,
        "one WAL checkpoint per block, not per empty range: {checkpoints}"
    );
    assert_eq!(read(&db), before, "nothing lost");
    assert_eq!(
        db.head().min_time(),
        Some(i64::MAX - HOUR),
        "the head starts where samples are appendable"
    );
    // A second round finds nothing to do.
    assert_eq!(db.compact().expect("compact").head_blocks, 0);
    db.close().expect("close");
    let db = Db::open(tmp.path(), opts(None)).expect("reopen");
    assert_eq!(read(&db), before, "nothing lost after a restart");
}

#[test]
fn compaction_stops_between_steps_when_asked() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let db = Db::open(tmp.path(), opts(None)).expect("open");
    let samples: Vec<i64> = (0..10 * 60).map(|m| m * MIN).collect();
    assert!(all_ok(&append(&db, "work", &samples)));
    let stop = AtomicBool::new(true);
    let stats = db.compact_until(&stop).expect("stopped round");
    assert_eq!(stats.head_blocks, 0, "stopped before the first step");
    assert!(db.blocks().is_empty());
    stop.store(false, Ordering::Release);
    let stats = db.compact_until(&stop).expect("full round");
    assert_eq!(stats.head_blocks, 4, "{stats:?}");
}

/// Writes, without a bound, a current series, a series with one far-future sample among
/// current ones, and a series with only a far-future sample; returns the time used.
fn write_far_future(db: &Db) -> i64 {
    let t0 = now() - 5 * MIN;
    assert!(all_ok(&append(db, "current", &[t0, t0 + MIN])));
    assert!(all_ok(&append(db, "mixed", &[t0, t0 + MIN, i64::MAX])));
    assert!(all_ok(&append(db, "future", &[i64::MAX - 1])));
    t0
}

#[test]
fn a_replay_drops_samples_too_far_in_the_future() {
    // After a clean close (every sample in chunk files) and after a crash (the WAL).
    for clean in [true, false] {
        let tmp = tempfile::tempdir().expect("tempdir");
        let db = Db::open(tmp.path(), opts(None)).expect("open");
        let t0 = write_far_future(&db);
        if clean {
            db.close().expect("close");
        } else {
            drop(db);
        }
        let db = Db::open(tmp.path(), opts(Some(10 * MIN))).expect("reopen with a bound");
        let want = vec![
            (
                "{__name__=\"current\", job=\"edge\"}".to_string(),
                vec![(t0, 1.0), (t0 + MIN, 1.0)],
            ),
            (
                "{__name__=\"mixed\", job=\"edge\"}".to_string(),
                vec![(t0, 1.0), (t0 + MIN, 1.0)],
            ),
        ];
        let got: Vec<_> = read(&db).into_iter().filter(|s| !s.1.is_empty()).collect();
        assert_eq!(got, want, "clean={clean}");
        assert!(
            db.head().max_time() < Some(now() + HOUR),
            "clean={clean}: the head's newest time is current"
        );
        // Ingestion goes on.
        let t1 = now();
        assert!(all_ok(&append(&db, "mixed", &[t1])), "clean={clean}");
        db.compact().expect("compact");
        db.close().expect("close");
        let db = Db::open(tmp.path(), opts(Some(10 * MIN))).expect("reopen again");
        let mixed = read(&db)
            .into_iter()
            .find(|s| s.0.contains("mixed"))
            .expect("mixed");
        assert_eq!(mixed.1, vec![(t0, 1.0), (t0 + MIN, 1.0), (t1, 1.0)]);
    }
}

#[test]
fn a_replay_judges_by_the_files_time_when_the_clock_was_set_back() {
    // Samples 2 hours ahead of the clock now, written (as the files' times say) when the
    // clock read that late: a clock set back since must not drop them.
    let tmp = tempfile::tempdir().expect("tempdir");
    let db = Db::open(tmp.path(), opts(None)).expect("open");
    let ahead = now() + 2 * HOUR;
    assert!(all_ok(&append(&db, "ahead", &[ahead])));
    drop(db);
    let then = std::time::SystemTime::now() + std::time::Duration::from_secs(2 * 3600);
    for entry in std::fs::read_dir(tmp.path().join("wal")).expect("wal") {
        let path = entry.expect("entry").path();
        if path.is_file() {
            std::fs::File::options()
                .write(true)
                .open(&path)
                .and_then(|f| f.set_modified(then))
                .expect("set mtime");
        }
    }
    let db = Db::open(tmp.path(), opts(Some(10 * MIN))).expect("reopen");
    assert_eq!(
        read(&db),
        vec![(
            "{__name__=\"ahead\", job=\"edge\"}".to_string(),
            vec![(ahead, 1.0)]
        )]
    );
}
