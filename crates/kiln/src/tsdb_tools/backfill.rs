//! `kiln tsdb create-blocks-from openmetrics`: backfilling blocks from an OpenMetrics
//! text file, as `promtool tsdb create-blocks-from openmetrics` does.
//!
//! The input is read once (promtool reads it again for every block window). Each sample
//! goes to the in-memory head of its window (windows are aligned to the block duration);
//! at the end every window is written out as one block spanning its first sample to its
//! last sample + 1 ms, like promtool's. What the heads hold is bounded
//! ([`BackfillOptions::max_memory_bytes`]): past it every window is written out as it is
//! and starts again empty, so a window can end up as several blocks over the same time,
//! which the server merges at its next compaction (keeping each sample once).
//!
//! Blocks are written into a staging directory inside the output directory (a name that
//! is not a ULID, which servers and tools skip) and moved into place only when the whole
//! input has been read: a bad line anywhere leaves the output directory as it was.
//!
//! Backfilling next to blocks that cover the same time (the same file imported twice,
//! say) is allowed, as with promtool: [`overlapping_blocks`] names the existing blocks
//! the new ones overlap so that the caller can say so. The server merges overlapping
//! blocks at its next compaction and keeps a sample present in several of them once.

use std::path::{Path, PathBuf};

use kiln_exposition::{Entry, Format, Parser};
use kiln_model::Labels;
use kiln_storage::{Appender, SampleValue};

use super::ToolError;
use kiln_tsdb::block::meta::read_meta;
use kiln_tsdb::db::write_head_block;
use kiln_tsdb::head::{DEFAULT_CHUNK_RANGE, Head, HeadAppender, HeadOptions};

/// The samples of one block window of a backfill, gathered in an in-memory head and
/// written out as one block. Memory is bounded by the window's data.
pub(crate) struct WindowBlock {
    head: Head,
}

impl WindowBlock {
    /// A window of `duration` ms (as [`block_duration`] gives).
    pub(crate) fn new(duration: i64) -> WindowBlock {
        // A chunk range of twice the block duration keeps every sample of the window
        // appendable: the head rejects samples more than half a range behind its newest.
        WindowBlock {
            head: Head::new(HeadOptions {
                chunk_range: 2 * duration,
                ..HeadOptions::default()
            }),
        }
    }

    /// A transaction adding samples to the window.
    pub(crate) fn appender(&self) -> HeadAppender<'_> {
        self.head.appender()
    }

    /// Series in the window so far.
    pub(crate) fn num_series(&self) -> usize {
        self.head.num_series()
    }

    /// Adds one series' samples (in time order) in one transaction. A second value at a
    /// timestamp the series already has is an error naming the series.
    pub(crate) fn add_series(
        &self,
        labels: &Labels,
        samples: &[(i64, f64)],
    ) -> Result<(), ToolError> {
        let append_error = |source| ToolError::Append {
            series: labels.to_string(),
            source,
        };
        let mut app = self.head.appender();
        for &(t, v) in samples {
            app.append(0, labels, t, SampleValue::Float(v))
                .map_err(append_error)?;
        }
        app.commit().map_err(append_error)
    }

    /// Writes the window as a block under `out_dir`, spanning its first sample to its
    /// last sample + 1 ms, like promtool's; `None` when it holds no sample.
    pub(crate) fn write(self, out_dir: &Path) -> Result<Option<PathBuf>, ToolError> {
        let (Some(lo), Some(hi)) = (self.head.min_time(), self.head.max_time()) else {
            return Ok(None);
        };
        std::fs::create_dir_all(out_dir).map_err(|e| ToolError::io("creating", out_dir, e))?;
        Ok(write_head_block(
            &self.head,
            out_dir,
            lo,
            hi.saturating_add(1),
            None,
        )?)
    }
}

/// Options of a backfill.
#[derive(Debug, Clone)]
pub(crate) struct BackfillOptions {
    /// Largest span of one block, ms. Rounded down to the largest compaction range
    /// (2 h times a power of 3) that fits, and never below 2 h.
    pub(crate) max_block_duration: i64,
    /// Samples appended per transaction.
    pub(crate) commit_every: usize,
    /// About how many bytes the windows' heads may hold before they are written out (see
    /// the module docs).
    pub(crate) max_memory_bytes: usize,
}

impl Default for BackfillOptions {
    fn default() -> Self {
        BackfillOptions {
            max_block_duration: DEFAULT_CHUNK_RANGE,
            commit_every: 5000,
            max_memory_bytes: 512 << 20,
        }
    }
}

/// The block duration promtool would use for `max`: the largest of 2h, 6h, 18h, ...
/// that is at most `max`, and at least 2h.
pub(crate) fn block_duration(max: i64) -> i64 {
    let mut d = DEFAULT_CHUNK_RANGE;
    while d.saturating_mul(3) <= max {
        d *= 3;
    }
    d
}

/// A block that was already in the output directory and overlaps a block a backfill
/// wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OverlappingBlock {
    pub(crate) ulid: ulid::Ulid,
    /// Its time range, ms: `[min_time, max_time)`.
    pub(crate) min_time: i64,
    pub(crate) max_time: i64,
}

/// The blocks under `dir`, other than `new_blocks`, whose time range overlaps the range
/// of one of `new_blocks`, oldest first. Reads only `meta.json` files; a block whose
/// `meta.json` cannot be read is left out (the server reports it when it opens `dir`).
pub(crate) fn overlapping_blocks(
    dir: &Path,
    new_blocks: &[PathBuf],
) -> Result<Vec<OverlappingBlock>, ToolError> {
    let mut new_ranges = Vec::with_capacity(new_blocks.len());
    for b in new_blocks {
        let m = read_meta(b)?;
        new_ranges.push((m.ulid, m.min_time, m.max_time));
    }
    let entries = std::fs::read_dir(dir).map_err(|e| ToolError::io("listing", dir, e))?;
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| ToolError::io("listing", dir, e))?;
        let name = entry.file_name();
        let Some(ulid) = name.to_str().and_then(|n| ulid::Ulid::from_string(n).ok()) else {
            continue;
        };
        if new_ranges.iter().any(|r| r.0 == ulid) {
            continue;
        }
        let Ok(m) = read_meta(&entry.path()) else {
            continue;
        };
        if new_ranges
            .iter()
            .any(|&(_, lo, hi)| m.min_time < hi && lo < m.max_time)
        {
            found.push(OverlappingBlock {
                ulid,
                min_time: m.min_time,
                max_time: m.max_time,
            });
        }
    }
    found.sort_by_key(|b| (b.min_time, b.max_time, b.ulid));
    Ok(found)
}

fn input_error(line: usize, message: impl Into<String>) -> ToolError {
    ToolError::Input {
        line,
        message: message.into(),
    }
}

/// What one sample costs in a window's head, about: its share of an XOR chunk.
const BYTES_PER_SAMPLE: usize = 2;
/// What one series costs in a window's head, about: labels, series, postings, chunk list.
const BYTES_PER_SERIES: usize = 1024;

/// One block window being filled: its head and the samples waiting for the next
/// transaction (with their input line, for errors).
struct Window {
    block: WindowBlock,
    pending: Vec<(Labels, i64, f64, usize)>,
}

impl Window {
    /// Appends the waiting samples in one transaction.
    fn commit(&mut self) -> Result<(), ToolError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let mut app = self.block.appender();
        for (labels, t, v, line) in self.pending.drain(..) {
            app.append(0, &labels, t, SampleValue::Float(v))
                .map_err(|e| input_error(line, format!("add sample: {e}")))?;
        }
        app.commit()
            .map_err(|e| input_error(0, format!("commit: {e}")))
    }
}

/// The windows of a backfill and the staging directory their blocks go to.
struct Windows<'a> {
    duration: i64,
    opts: &'a BackfillOptions,
    open: std::collections::BTreeMap<i64, Window>,
    /// Samples appended to the open windows.
    samples: usize,
    staging: PathBuf,
    written: Vec<PathBuf>,
}

impl Windows<'_> {
    fn add(&mut self, labels: Labels, t: i64, v: f64, line: usize) -> Result<(), ToolError> {
        let start = t.div_euclid(self.duration).saturating_mul(self.duration);
        let duration = self.duration;
        let w = self.open.entry(start).or_insert_with(|| Window {
            block: WindowBlock::new(duration),
            pending: Vec::new(),
        });
        w.pending.push((labels, t, v, line));
        if w.pending.len() >= self.opts.commit_every {
            w.commit()?;
        }
        self.samples += 1;
        if self.samples.is_multiple_of(10_000) && self.held_bytes() > self.opts.max_memory_bytes {
            self.write_all()?;
        }
        Ok(())
    }

    fn held_bytes(&self) -> usize {
        let series: usize = self.open.values().map(|w| w.block.num_series()).sum();
        self.samples * BYTES_PER_SAMPLE + series * BYTES_PER_SERIES
    }

    /// Writes every open window as a block into the staging directory.
    fn write_all(&mut self) -> Result<(), ToolError> {
        for (_, mut w) in std::mem::take(&mut self.open) {
            w.commit()?;
            if let Some(block) = w.block.write(&self.staging)? {
                self.written.push(block);
            }
        }
        self.samples = 0;
        Ok(())
    }
}

/// Imports `input` (OpenMetrics text, ending in `# EOF`) into new blocks under `out_dir`
/// (created if missing). Returns the directories of the blocks written, oldest first.
/// `progress` is called with the fraction of the input read, from 0 to 1.
pub(crate) fn create_blocks_from_openmetrics(
    input: &[u8],
    out_dir: &Path,
    opts: &BackfillOptions,
    progress: &mut dyn FnMut(f64),
) -> Result<Vec<PathBuf>, ToolError> {
    std::fs::create_dir_all(out_dir).map_err(|e| ToolError::io("creating", out_dir, e))?;
    let staging = out_dir.join(format!(".backfill-{}", ulid::Ulid::new()));
    let mut windows = Windows {
        duration: block_duration(opts.max_block_duration),
        opts,
        open: std::collections::BTreeMap::new(),
        samples: 0,
        staging: staging.clone(),
        written: Vec::new(),
    };
    let read = read_into(input, &mut windows, progress).and_then(|()| windows.write_all());
    let result = read.and_then(|()| move_into_place(&windows.written, out_dir));
    // The staging directory goes in every case (on success it is empty by now).
    if staging.exists() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    let mut blocks = result?;
    blocks.sort_by_key(|b| read_meta(b).map(|m| (m.min_time, m.ulid)).ok());
    progress(1.0);
    Ok(blocks)
}

/// Parses the whole input into the windows.
fn read_into(
    input: &[u8],
    windows: &mut Windows<'_>,
    progress: &mut dyn FnMut(f64),
) -> Result<(), ToolError> {
    let lines = input.iter().filter(|&&b| b == b'\n').count().max(1);
    let mut parser = Parser::new(input, Format::OpenMetrics);
    let mut seen = 0usize;
    while let Some(entry) = parser.next() {
        let Entry::Sample(s) = entry? else {
            continue;
        };
        let line = parser.line();
        let t = s.timestamp_ms.ok_or_else(|| {
            input_error(
                line,
                format!("expected timestamp for series {}, got none", s.labels),
            )
        })?;
        windows.add(s.labels, t, s.value, line)?;
        seen += 1;
        if seen.is_multiple_of(10_000) {
            progress(line as f64 / lines as f64);
        }
    }
    Ok(())
}

/// Moves the staged blocks into `out_dir`; returns their new directories.
fn move_into_place(staged: &[PathBuf], out_dir: &Path) -> Result<Vec<PathBuf>, ToolError> {
    let mut moved = Vec::with_capacity(staged.len());
    for b in staged {
        let Some(name) = b.file_name() else {
            continue;
        };
        let to = out_dir.join(name);
        std::fs::rename(b, &to).map_err(|e| ToolError::io("moving a block into", out_dir, e))?;
        moved.push(to);
    }
    Ok(moved)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extreme_timestamps_neither_panic_nor_loop() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let inputs: [&[u8]; 3] = [
            b"# TYPE a gauge\na 1 9223372036854775\n# EOF\n",
            b"# TYPE a gauge\na 1 -9223372036854775\n# EOF\n",
            b"# TYPE a gauge\na 1 -9223372036854775\na 2 9223372036854775\n# EOF\n",
        ];
        for (i, input) in inputs.iter().enumerate() {
            let dir = tmp.path().join(i.to_string());
            // A huge span is refused or written; either way it ends, quickly.
            let started = std::time::Instant::now();
            let _ = create_blocks_from_openmetrics(
                input,
                &dir,
                &BackfillOptions::default(),
                &mut |_| {},
            );
            assert!(started.elapsed().as_secs() < 10, "input {i} took too long");
        }
    }

    #[test]
    fn overlapping_blocks_are_found_by_time_range() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path();
        // A sample a minute for 3 hours: blocks [0, 1h59m + 1ms) and [2h, 2h59m + 1ms),
        // each from its first to its last sample, as promtool cuts them.
        let mut om = String::from("# TYPE a gauge\n");
        for i in 0..180 {
            om.push_str(&format!("a 1 {}\n", i * 60));
        }
        om.push_str("# EOF\n");
        let opts = BackfillOptions::default();
        let first = create_blocks_from_openmetrics(om.as_bytes(), dir, &opts, &mut |_| {})
            .expect("first import");
        assert_eq!(first.len(), 2);
        assert_eq!(
            overlapping_blocks(dir, &first).expect("scan"),
            vec![],
            "nothing was there before"
        );
        // Only the first hour again: it overlaps the first block only.
        let again = create_blocks_from_openmetrics(
            b"# TYPE a gauge\na 2 0\na 2 3599\n# EOF\n",
            dir,
            &opts,
            &mut |_| {},
        )
        .expect("second import");
        let found = overlapping_blocks(dir, &again).expect("scan");
        let ranges: Vec<(i64, i64)> = found.iter().map(|b| (b.min_time, b.max_time)).collect();
        assert_eq!(ranges, vec![(0, 7_140_001)]);
        let first_meta = read_meta(&first[0]).expect("meta");
        assert_eq!(found[0].ulid, first_meta.ulid);
    }

    /// Every sample of the blocks under `dir`, per series, in time order.
    fn samples_in(dir: &Path) -> std::collections::BTreeMap<String, Vec<(i64, f64)>> {
        use kiln_storage::{Querier, ValueKind};
        let db = kiln_tsdb::db::Db::open(
            dir,
            kiln_tsdb::db::DbOptions {
                read_only: true,
                ..Default::default()
            },
        )
        .expect("open");
        let q = db.querier(i64::MIN, i64::MAX);
        let mut set = q.select(true, None, &[]);
        let mut out = std::collections::BTreeMap::new();
        while let Some(series) = set.next() {
            let mut it = series.iterator();
            let mut v = Vec::new();
            while it.next() == ValueKind::Float {
                v.push(it.at());
            }
            out.insert(series.labels().to_string(), v);
        }
        out
    }

    /// Three series over 9 hours, one sample a minute, written series after series as
    /// promtool's exports are.
    fn nine_hours() -> String {
        let mut om = String::from("# TYPE g gauge\n");
        for s in 0..3 {
            for i in 0..9 * 60 {
                om.push_str(&format!("g{{s=\"{s}\"}} {} {}\n", i + s, i * 60));
            }
        }
        om.push_str("# EOF\n");
        om
    }

    #[test]
    fn one_read_gives_one_block_per_window() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut fractions = Vec::new();
        let blocks = create_blocks_from_openmetrics(
            nine_hours().as_bytes(),
            tmp.path(),
            &BackfillOptions::default(),
            &mut |f| fractions.push(f),
        )
        .expect("import");
        let ranges: Vec<(i64, i64)> = blocks
            .iter()
            .map(|b| {
                let m = read_meta(b).expect("meta");
                (m.min_time, m.max_time)
            })
            .collect();
        let h = 3_600_000;
        assert_eq!(
            ranges,
            [
                (0, 2 * h - 60_000 + 1),
                (2 * h, 4 * h - 60_000 + 1),
                (4 * h, 6 * h - 60_000 + 1),
                (6 * h, 8 * h - 60_000 + 1),
                (8 * h, 9 * h - 60_000 + 1)
            ]
        );
        assert_eq!(fractions.last(), Some(&1.0));
        let got = samples_in(tmp.path());
        assert_eq!(got.len(), 3);
        assert_eq!(got["{__name__=\"g\", s=\"2\"}"][539], (539 * 60_000, 541.0));
        // Nothing else is left in the directory.
        let names: Vec<String> = std::fs::read_dir(tmp.path())
            .expect("list")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 5, "{names:?}");
    }

    #[test]
    fn a_small_memory_bound_writes_windows_more_than_once() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let want = {
            let whole = tmp.path().join("whole");
            create_blocks_from_openmetrics(
                nine_hours().as_bytes(),
                &whole,
                &BackfillOptions::default(),
                &mut |_| {},
            )
            .expect("import");
            samples_in(&whole)
        };
        let small = tmp.path().join("small");
        let opts = BackfillOptions {
            max_memory_bytes: 1,
            commit_every: 100,
            ..BackfillOptions::default()
        };
        // 21,620 samples: past the bound (checked every 10,000 samples) the windows are
        // written out before the end, so a window gets more than one block; the data is
        // the same.
        let mut many = nine_hours();
        many.truncate(many.len() - "# EOF\n".len());
        for i in 0..20_000 {
            many.push_str(&format!("h {i} {}\n", i * 10));
        }
        many.push_str("# EOF\n");
        let blocks = create_blocks_from_openmetrics(many.as_bytes(), &small, &opts, &mut |_| {})
            .expect("import");
        let mut windows: Vec<i64> = blocks
            .iter()
            .map(|b| read_meta(b).expect("meta").min_time.div_euclid(7_200_000))
            .collect();
        let n = windows.len();
        windows.dedup();
        assert!(windows.len() < n, "some window written twice: {windows:?}");
        let got = samples_in(&small);
        for (series, samples) in &want {
            assert_eq!(&got[series], samples, "{series}");
        }
        assert_eq!(got["{__name__=\"h\"}"].len(), 20_000);
    }

    #[test]
    fn a_bad_line_leaves_the_output_directory_as_it_was() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut om = nine_hours();
        om.insert_str(om.len() - 6, "g{s=\"9\"} 1\n");
        let err = create_blocks_from_openmetrics(
            om.as_bytes(),
            tmp.path(),
            &BackfillOptions::default(),
            &mut |_| {},
        )
        .expect_err("no timestamp");
        assert!(err.to_string().contains("expected timestamp"), "{err}");
        assert_eq!(std::fs::read_dir(tmp.path()).expect("list").count(), 0);
    }

    #[test]
    fn block_duration_like_promtool() {
        let h = 3_600_000;
        assert_eq!(block_duration(0), 2 * h);
        assert_eq!(block_duration(2 * h), 2 * h);
        assert_eq!(block_duration(5 * h), 2 * h);
        assert_eq!(block_duration(6 * h), 6 * h);
        assert_eq!(block_duration(24 * h), 18 * h);
    }
}
