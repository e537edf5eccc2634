//! Damaged head chunk files (`chunks_head/`): the database opens, drops the damaged
//! chunks and rebuilds them from the WAL, after a clean shutdown (whose fast path must
//! then not be taken) as after a crash. Every acknowledged sample is still there.

use std::path::Path;

use kiln_model::{Labels, MatchType, Matcher};
use kiln_storage::{Appender, Querier, SampleValue, ValueKind};
use kiln_tsdb::db::{Db, DbOptions};

const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;

fn opts() -> DbOptions {
    DbOptions {
        chunk_range: 2 * HOUR,
        retention_time: None,
        ..DbOptions::default()
    }
}

/// One sample a minute for `hours` hours from `start` to 3 series.
fn fill(db: &Db, start: i64, hours: i64) {
    for step in 0..hours * 60 {
        let t = start + step * MIN;
        let mut app = db.appender();
        for g in 0..3 {
            let l = Labels::from_pairs(&[("__name__", "torn"), ("gpu", &g.to_string())]);
            app.append(0, &l, t, SampleValue::Float((t / MIN + g) as f64))
                .expect("append");
        }
        app.commit().expect("commit");
    }
}

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
        assert!(it.err().is_none(), "{:?}", it.err());
        out.push((s.labels().to_string(), samples));
    }
    out
}

/// Asserts `got == want`, saying on failure how many samples each series has (the
/// samples themselves would be thousands of lines).
fn assert_same(got: &[(String, Vec<(i64, f64)>)], want: &[(String, Vec<(i64, f64)>)], what: &str) {
    let counts = |rows: &[(String, Vec<(i64, f64)>)]| -> Vec<(String, usize)> {
        rows.iter().map(|(l, s)| (l.clone(), s.len())).collect()
    };
    assert!(
        got == want,
        "{what}: samples per series {:?}, want {:?}",
        counts(got),
        counts(want)
    );
}

/// How the chunk files are damaged before the reopen.
#[derive(Debug, Clone, Copy)]
enum Damage {
    /// The newest file one byte short.
    LastShort,
    /// The older file one byte short.
    MiddleShort,
    /// A byte flipped in the middle of the older file.
    MiddleFlipped,
    /// The older file's header overwritten.
    MiddleHeader,
}

fn damage(dir: &Path, how: Damage) {
    let file = |n: &str| dir.join("chunks_head").join(n);
    let (path, mut bytes) = match how {
        Damage::LastShort => (file("000002"), Vec::new()),
        _ => (file("000001"), Vec::new()),
    };
    bytes.extend(std::fs::read(&path).expect("read chunk file"));
    match how {
        Damage::LastShort | Damage::MiddleShort => {
            bytes.pop();
        }
        Damage::MiddleFlipped => {
            let at = bytes.len() / 2;
            bytes[at] ^= 0x10;
        }
        Damage::MiddleHeader => bytes[..4].fill(0xEE),
    }
    std::fs::write(&path, bytes).expect("write chunk file");
}

/// Two runs write chunks into `000001` and `000002`; the second ends with a clean close
/// or a crash; then the files are damaged and the database reopened.
fn check(how: Damage, clean: bool) {
    let what = format!("{how:?}, clean={clean}");
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let db = Db::open(dir, opts()).expect("open");
    fill(&db, 0, 5);
    db.close().expect("close");
    let db = Db::open(dir, opts()).expect("second run");
    fill(&db, 5 * HOUR, 3);
    let want = read(&db);
    assert_eq!(
        want.iter().map(|s| s.1.len()).sum::<usize>(),
        3 * 8 * 60,
        "{what}"
    );
    if clean {
        db.close().expect("close");
        assert!(dir.join("head-snapshot").is_file(), "{what}");
    } else {
        drop(db);
    }
    assert!(dir.join("chunks_head/000002").is_file(), "{what}");
    damage(dir, how);

    let db = Db::open(dir, opts()).unwrap_or_else(|e| panic!("{what}: open refused: {e}"));
    assert_same(
        &read(&db),
        &want,
        &format!("{what}: every acknowledged sample"),
    );
    // Appends go on after the newest sample, and the next start is whole too.
    fill(&db, 8 * HOUR, 1);
    let more = read(&db);
    db.close().expect("close");
    let db = Db::open(dir, opts()).expect("reopen");
    assert_same(&read(&db), &more, &format!("{what}: after another restart"));
}

#[test]
fn damaged_head_chunk_files_are_rebuilt_from_the_wal() {
    for how in [
        Damage::LastShort,
        Damage::MiddleShort,
        Damage::MiddleFlipped,
        Damage::MiddleHeader,
    ] {
        for clean in [true, false] {
            check(how, clean);
        }
    }
}
