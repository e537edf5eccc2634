//! `kiln tsdb create-blocks-from openmetrics`: backfilling blocks from an OpenMetrics
//! text file, as `promtool tsdb create-blocks-from openmetrics` does.
//!
//! The input is read twice or more: once to validate it and find its time bounds, then
//! once per block window, appending only that window's samples to a fresh in-memory head
//! and writing it out as one block. Memory is bounded by one window's data, not the file.
//! Like promtool, a block's time range is its first sample to its last sample + 1 ms, and
//! the windows are aligned to the block duration.
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
}

impl Default for BackfillOptions {
    fn default() -> Self {
        BackfillOptions {
            max_block_duration: DEFAULT_CHUNK_RANGE,
            commit_every: 5000,
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

/// Imports `input` (OpenMetrics text, ending in `# EOF`) into new blocks under `out_dir`
/// (created if missing). Returns the directories of the blocks written, oldest first.
/// `progress` is called with the fraction of the work done, from 0 to 1.
pub(crate) fn create_blocks_from_openmetrics(
    input: &[u8],
    out_dir: &Path,
    opts: &BackfillOptions,
    progress: &mut dyn FnMut(f64),
) -> Result<Vec<PathBuf>, ToolError> {
    // Pass 1: validate everything and find the time bounds.
    let (mut mint, mut maxt, mut total) = (i64::MAX, i64::MIN, 0usize);
    let mut parser = Parser::new(input, Format::OpenMetrics);
    while let Some(entry) = parser.next() {
        let entry = entry?;
        if let Entry::Sample(s) = entry {
            let t = s.timestamp_ms.ok_or_else(|| {
                input_error(
                    parser.line(),
                    format!("expected timestamp for series {}, got none", s.labels),
                )
            })?;
            mint = mint.min(t);
            maxt = maxt.max(t);
            total += 1;
        }
    }
    if total == 0 {
        return Ok(Vec::new());
    }
    std::fs::create_dir_all(out_dir).map_err(|e| ToolError::io("creating", out_dir, e))?;

    let duration = block_duration(opts.max_block_duration);
    let mut blocks = Vec::new();
    let mut done = 0usize;
    let mut window = mint.div_euclid(duration).saturating_mul(duration);
    loop {
        // `end` saturates for timestamps near i64::MAX: that last window is then closed.
        let end = window.saturating_add(duration);
        let last_window = end == i64::MAX || end > maxt;
        let window_block = WindowBlock::new(duration);
        let mut app = window_block.appender();
        // The oldest sample after this window: the next pass starts at its window, so
        // empty windows cost nothing.
        let mut next_t = i64::MAX;
        let mut parser = Parser::new(input, Format::OpenMetrics);
        while let Some(entry) = parser.next() {
            let Ok(Entry::Sample(s)) = entry else {
                continue;
            };
            let line = parser.line();
            let Some(t) = s.timestamp_ms else { continue };
            if t >= end && !last_window {
                next_t = next_t.min(t);
                continue;
            }
            if t < window {
                continue;
            }
            app.append(0, &s.labels, t, SampleValue::Float(s.value))
                .map_err(|e| input_error(line, format!("add sample: {e}")))?;
            if app.pending() >= opts.commit_every {
                app.commit()
                    .map_err(|e| input_error(line, format!("commit: {e}")))?;
            }
            done += 1;
            if done.is_multiple_of(10_000) {
                progress(done as f64 / total as f64);
            }
        }
        app.commit()
            .map_err(|e| input_error(0, format!("commit: {e}")))?;
        drop(app);
        if let Some(block) = window_block.write(out_dir)? {
            blocks.push(block);
        }
        if last_window || next_t == i64::MAX {
            break;
        }
        window = next_t.div_euclid(duration).saturating_mul(duration);
    }
    progress(1.0);
    Ok(blocks)
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
