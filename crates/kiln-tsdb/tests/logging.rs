//! What the database logs: one structured line per block load, WAL replay, head block
//! written, compaction, tombstone cleanup and retention deletion, captured through a
//! `tracing` subscriber.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use kiln_model::{Labels, Matcher};
use kiln_storage::{Appender, SampleValue};
use kiln_tsdb::db::{Db, DbOptions};
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};

const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;

/// One captured event: level, message and the other fields as text.
#[derive(Debug, Clone)]
struct Captured {
    level: tracing::Level,
    message: String,
    fields: BTreeMap<String, String>,
}

#[derive(Default)]
struct FieldText(BTreeMap<String, String>);

impl Visit for FieldText {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

/// Keeps every event of the `kiln_tsdb` crate.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<Captured>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Capture {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        if !event.metadata().target().starts_with("kiln_tsdb") {
            return;
        }
        let mut fields = FieldText::default();
        event.record(&mut fields);
        let message = fields.0.remove("message").unwrap_or_default();
        self.0.lock().expect("capture lock").push(Captured {
            level: *event.metadata().level(),
            message,
            fields: fields.0,
        });
    }
}

impl Capture {
    /// Runs `f` with this capture as the thread's subscriber; returns what it logged.
    fn run(&self, f: impl FnOnce()) -> Vec<Captured> {
        self.0.lock().expect("capture lock").clear();
        let subscriber = tracing_subscriber::registry().with(self.clone());
        tracing::subscriber::with_default(subscriber, f);
        self.0.lock().expect("capture lock").clone()
    }
}

/// Asserts that `events` hold an INFO event `message` with every `(field, value)` of
/// `want` (`*`: the field is present, any value), and returns how many such events
/// there are.
fn check(events: &[Captured], message: &str, want: &[(&str, &str)]) -> usize {
    let n = events
        .iter()
        .filter(|e| e.message == message && e.level == tracing::Level::INFO)
        .filter(|e| {
            want.iter()
                .all(|(k, v)| e.fields.get(*k).is_some_and(|got| *v == "*" || got == v))
        })
        .count();
    assert!(
        n > 0,
        "no INFO {message:?} with {want:?} in:\n{}",
        events
            .iter()
            .map(|e| format!("{} {:?} {:?}", e.level, e.message, e.fields))
            .collect::<Vec<_>>()
            .join("\n")
    );
    n
}

fn opts() -> DbOptions {
    DbOptions {
        chunk_range: 2 * HOUR,
        max_block_duration: 18 * HOUR,
        retention_time: None,
        ..DbOptions::default()
    }
}

/// One sample per minute for `hours` hours from 0 to 4 series.
fn fill(db: &Db, hours: i64) {
    let series: Vec<Labels> = (0..4)
        .map(|g| Labels::from_pairs(&[("__name__", "gpu_temp"), ("gpu", &g.to_string())]))
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

#[test]
fn compaction_tombstones_retention_and_open_each_log_their_line() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let capture = Capture::default();
    let db = Db::open(tmp.path(), opts()).expect("open");
    fill(&db, 13);

    // Head blocks [0,2h) .. [8h,10h), then [0,6h) merged from three of them.
    let events = capture.run(|| {
        db.compact().expect("compact");
    });
    let written = check(
        &events,
        "write block",
        &[
            ("mint", "0"),
            ("maxt", "7200000"),
            ("series", "4"),
            ("ulid", "*"),
            ("duration", "*"),
        ],
    );
    assert_eq!(written, 1);
    assert_eq!(
        events.iter().filter(|e| e.message == "write block").count(),
        5
    );
    check(
        &events,
        "compact blocks",
        &[
            ("count", "3"),
            ("mint", "0"),
            ("maxt", "21600000"),
            ("sources", "*"),
            ("ulid", "*"),
        ],
    );
    check(
        &events,
        "WAL checkpoint complete",
        &[("first", "*"), ("last", "*")],
    );

    // A delete writes tombstones; cleaning them rewrites the block.
    let events = capture.run(|| {
        db.delete(HOUR, 2 * HOUR - 1, &[Matcher::equal("gpu", "1")])
            .expect("delete");
        assert_eq!(db.clean_tombstones().expect("clean"), 1);
    });
    check(
        &events,
        "Series deleted: tombstones written",
        &[
            ("matchers", "{gpu=\"1\"}"),
            ("blocks", "1"),
            ("head_series", "0"),
        ],
    );
    check(
        &events,
        "Block rewritten without its deleted samples",
        &[("block", "*"), ("tombstones", "1")],
    );
    db.close().expect("close");

    // Reopening after a clean close: blocks loaded, the head restored from its snapshot.
    let mut o = opts();
    o.retention_time = Some(HOUR);
    let (db, events) = {
        let mut opened = None;
        let events = capture.run(|| opened = Some(Db::open(tmp.path(), o).expect("reopen")));
        (opened.expect("opened"), events)
    };
    check(
        &events,
        "Blocks loaded",
        &[
            ("blocks", "3"),
            ("mint", "0"),
            ("maxt", "36000000"),
            ("duration", "*"),
        ],
    );
    check(
        &events,
        "Head restored from the snapshot of the last clean shutdown; no WAL replay",
        &[("series", "*"), ("chunks", "*"), ("duration", "*")],
    );

    // Retention by time: blocks ending more than 1 h before the newest one go.
    let events = capture.run(|| {
        db.compact().expect("compact");
    });
    let deleted = check(
        &events,
        "Deleting obsolete block",
        &[
            ("reason", "time_retention"),
            ("block", "*"),
            ("mint", "*"),
            ("maxt", "*"),
        ],
    );
    assert_eq!(deleted, 2);
    drop(db);

    // Retention by size: every block is over a 1-byte limit.
    let mut o = opts();
    o.retention_size = Some(1);
    let db = Db::open(tmp.path(), o).expect("reopen with a size limit");
    let events = capture.run(|| {
        db.compact().expect("compact");
    });
    check(
        &events,
        "Deleting obsolete block",
        &[("reason", "size_retention")],
    );
    assert!(db.blocks().is_empty());
}
