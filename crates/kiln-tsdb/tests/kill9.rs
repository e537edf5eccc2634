//! Durability: every sample whose commit returned survives `kill -9` of the process.
//!
//! The test re-runs its own binary as a child process that appends to a real data
//! directory and prints `acked N` after each successful commit. The parent kills the
//! child with SIGKILL at an arbitrary point, reopens the directory and checks that every
//! acknowledged sample is there. The child runs with a short chunk range and small WAL
//! segments so that head compaction, WAL checkpoints and segment truncation all happen
//! while it is being killed.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kiln_model::Labels;
use kiln_storage::{Appender, Querier, SampleValue, ValueKind};
use kiln_tsdb::db::{Db, DbOptions};

const CHILD_DIR_ENV: &str = "KILN_KILL9_CHILD_DIR";
const SERIES: usize = 20;

fn opts() -> DbOptions {
    DbOptions {
        chunk_range: 60_000,
        max_block_duration: 540_000,
        retention_time: None,
        wal_segment_size: 64 * 1024,
        ..DbOptions::default()
    }
}

fn series_labels(i: usize) -> Labels {
    Labels::from_pairs(&[
        ("__name__", "gpu_utilization"),
        ("gpu", &i.to_string()),
        ("host", "node-1"),
    ])
}

/// The writer: one commit per step, 20 series, a sample every second of fake time.
fn run_child(dir: &str) {
    let db = Db::open(dir, opts()).expect("child opens db");
    let labels: Vec<Labels> = (0..SERIES).map(series_labels).collect();
    let mut refs = [0u64; SERIES];
    for step in 0..200_000i64 {
        let mut app = db.appender();
        for (i, l) in labels.iter().enumerate() {
            refs[i] = app
                .append(
                    refs[i],
                    l,
                    step * 1000,
                    SampleValue::Float(step as f64 + i as f64),
                )
                .expect("append");
        }
        app.commit().expect("commit");
        drop(app);
        println!("acked {step}");
        if step % 50 == 49 {
            db.compact().expect("compact");
        }
    }
}

#[test]
fn committed_samples_survive_kill_9() {
    if let Ok(dir) = std::env::var(CHILD_DIR_ENV) {
        run_child(&dir);
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    for round in 0..3 {
        let dir = tmp.path().join(format!("data-{round}"));
        let mut child = Command::new(std::env::current_exe().expect("own exe"))
            .args([
                "--exact",
                "committed_samples_survive_kill_9",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DIR_ENV, &dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().expect("child stdout");
        let mut acked: Option<i64> = None;
        let target = 150 + round * 137;
        let deadline = Instant::now() + Duration::from_secs(60);
        for line in BufReader::new(stdout).lines() {
            let line = line.expect("read child output");
            if let Some(n) = line.strip_prefix("acked ") {
                acked = Some(n.parse().expect("acked number"));
            }
            if acked.is_some_and(|a| a >= target) {
                break;
            }
            assert!(Instant::now() < deadline, "round {round}: child too slow");
        }
        assert!(
            acked.is_some_and(|a| a >= target),
            "round {round}: child stopped early (a failed commit or compaction) after {acked:?}"
        );
        // SIGKILL: no destructors, no flushes.
        child.kill().expect("kill -9 child");
        child.wait().expect("reap child");
        let acked = acked.expect("child acknowledged commits before the deadline");

        let db = Db::open(&dir, opts()).expect("reopen after kill");
        assert!(
            !db.blocks().is_empty(),
            "round {round}: compaction wrote blocks before the kill"
        );
        let q = db.querier(i64::MIN, i64::MAX);
        let mut set = q.select(true, None, &[]);
        let mut seen = 0;
        while let Some(s) = set.next() {
            let gpu: i64 = s
                .labels()
                .get("gpu")
                .expect("gpu label")
                .parse()
                .expect("gpu number");
            let mut it = s.iterator();
            let mut want = 0i64;
            while it.next() == ValueKind::Float {
                let (t, v) = it.at();
                if want <= acked {
                    assert_eq!(t, want * 1000, "round {round}: series gpu={gpu} has a gap");
                    assert_eq!(v, (want + gpu) as f64);
                }
                want += 1;
            }
            assert!(
                want > acked,
                "round {round}: series gpu={gpu} lost acknowledged samples: has {want}, acked up to {acked}"
            );
            seen += 1;
        }
        assert_eq!(seen, SERIES, "round {round}: every series survives");
    }
}
