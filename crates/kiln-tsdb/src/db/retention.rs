//! Retention: deleting the oldest blocks by time and by size, by Prometheus's rules
//! (`BeyondTimeRetention` and `BeyondSizeRetention` in `tsdb/db.go`).
//!
//! Blocks are ordered newest first by their max time.
//! - Time: the first block after the newest whose max time is at least the retention
//!   time before the NEWEST block's max time is deleted, with every block after it. The
//!   wall clock plays no part: a directory that holds only old blocks (backfilled example
//!   data, say) keeps them until a block of newer data is cut, and then they go at once.
//!   [`Db::aged_blocks`] predicts that, so the server can warn at start-up.
//! - Size: the WAL and head chunk files count first, then the blocks newest first; the
//!   block at which the total passes the limit is deleted with every block after it
//!   (the newest block too, if it alone passes the limit).
//!
//! Each pass counts as a reload of the block set; a pass that deletes by time or by size
//! adds one to `time_retentions` or `size_retentions` and logs one line per reason.

use std::path::Path;
use std::sync::Arc;

use kiln_model::Timestamp;
use tracing::info;

use super::compact::{delete_block_dir, go_time};
use super::{Db, DbError, DbMetrics};
use crate::block::BlockReader;

/// Says whether time retention must keep a block for now (see
/// [`Db::hold_for_time_retention`]).
pub type RetentionHold = Arc<dyn Fn(&crate::block::BlockMeta) -> bool + Send + Sync>;

/// Blocks that time retention will delete once the database holds a block of current
/// data; see [`Db::aged_blocks`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgedBlocks {
    /// How many blocks.
    pub blocks: usize,
    /// The oldest min time and the newest max time among them, ms.
    pub min_time: Timestamp,
    pub max_time: Timestamp,
    /// The retention time, ms.
    pub retention: i64,
}

impl Db {
    /// Blocks whose data ends at least the retention time before `now`. Retention
    /// compares blocks with the newest block, not with the clock, so such blocks may
    /// stay while nothing newer is stored; but once a block of data written around `now`
    /// is cut from the head (about 1.5 chunk ranges after samples start arriving), they
    /// are deleted. `None` when time retention is off or no block is that old.
    pub fn aged_blocks(&self, now: Timestamp) -> Option<AgedBlocks> {
        let retention = self.opts.retention_time?;
        let aged: Vec<Arc<BlockReader>> = self
            .blocks()
            .into_iter()
            .filter(|b| now.saturating_sub(b.meta().max_time) >= retention)
            .collect();
        Some(AgedBlocks {
            blocks: aged.len(),
            min_time: aged.iter().map(|b| b.meta().min_time).min()?,
            max_time: aged.iter().map(|b| b.meta().max_time).max()?,
            retention,
        })
    }

    /// Keeps blocks past the retention time for as long as `hold` says so, e.g. blocks a
    /// shipper has not uploaded yet: a bucket outage longer than the local retention then
    /// costs disk, not data. The size limit still deletes them (it protects the disk).
    pub fn hold_for_time_retention(&self, hold: RetentionHold) {
        *self.retention_hold.write() = Some(hold);
    }

    /// Deletes blocks past the retention time or beyond the size limit, oldest first
    /// (see the module docs). Returns how many were deleted.
    pub(crate) fn apply_retention(&self) -> Result<usize, DbError> {
        DbMetrics::inc(&self.metrics.reloads);
        let mut newest_first = self.blocks();
        newest_first.sort_by_key(|b| std::cmp::Reverse(b.meta().max_time));
        let by_time = self.beyond_time_retention(&newest_first);
        let by_size = self.beyond_size_retention(&newest_first);
        if by_time.is_some() {
            DbMetrics::inc(&self.metrics.time_retentions);
        }
        if by_size.is_some() {
            DbMetrics::inc(&self.metrics.size_retentions);
        }
        let Some(first_doomed) = by_time.into_iter().chain(by_size).min() else {
            return Ok(0);
        };
        // A block beyond both limits is reported under time.
        if let Some(t) = by_time {
            let retention = self.opts.retention_time.unwrap_or_default();
            let (lo, hi) = time_span(&newest_first[t..]);
            info!(
                reason = "time",
                blocks = newest_first.len() - t,
                min_time = %go_time(lo),
                max_time = %go_time(hi),
                retention = %kiln_model::format_duration_ms(retention),
                newest_block_max_time = %go_time(newest_first[0].meta().max_time),
                "deleting blocks beyond the retention time (measured from the newest block)"
            );
        }
        if let Some(s) = by_size
            && by_time.is_none_or(|t| s < t)
        {
            let end = by_time.unwrap_or(newest_first.len());
            let (lo, hi) = time_span(&newest_first[s..end]);
            info!(
                reason = "size",
                blocks = end - s,
                min_time = %go_time(lo),
                max_time = %go_time(hi),
                limit_bytes = self.opts.retention_size.unwrap_or_default(),
                "deleting blocks beyond the retention size (blocks, WAL and head chunks)"
            );
        }
        // Blocks past the retention time only (not the size limit) stay while the hold
        // says so (a shipper's blocks not uploaded yet).
        let hold = self.retention_hold.read().clone();
        let doomed: Vec<(usize, Arc<BlockReader>)> = newest_first
            .iter()
            .enumerate()
            .skip(first_doomed)
            .filter(|(i, b)| {
                by_size.is_some_and(|s| *i >= s) || !hold.as_ref().is_some_and(|h| h(b.meta()))
            })
            .map(|(i, b)| (i, b.clone()))
            .collect();
        let held = newest_first.len() - first_doomed - doomed.len();
        if held > 0 {
            info!(
                blocks = held,
                "keeping blocks past the retention time until they are shipped"
            );
        }
        self.blocks
            .write()
            .retain(|x| !doomed.iter().any(|(_, d)| Arc::ptr_eq(x, d)));
        for (i, b) in &doomed {
            let meta = b.meta();
            let by = if by_time.is_some_and(|t| *i >= t) {
                Reason::Time
            } else {
                Reason::Size
            };
            info!(
                block = %meta.ulid,
                mint = meta.min_time,
                maxt = meta.max_time,
                reason = by.as_str(),
                "Deleting obsolete block"
            );
            delete_block_dir(b.dir())
                .inspect_err(|_| DbMetrics::inc(&self.metrics.reloads_failed))?;
        }
        Ok(doomed.len())
    }

    /// The index in `newest_first` from which blocks are beyond the retention time.
    fn beyond_time_retention(&self, newest_first: &[Arc<BlockReader>]) -> Option<usize> {
        let retention = self.opts.retention_time?;
        let newest = newest_first.first()?.meta().max_time;
        // Prometheus 3 deletes a block exactly the retention behind the newest one.
        (1..newest_first.len())
            .find(|&i| newest.saturating_sub(newest_first[i].meta().max_time) >= retention)
    }

    /// The index in `newest_first` from which blocks are beyond the size limit.
    fn beyond_size_retention(&self, newest_first: &[Arc<BlockReader>]) -> Option<usize> {
        let limit = self.opts.retention_size?;
        let mut total = self.wal_size() + self.head_chunks_size();
        newest_first.iter().position(|b| {
            total += b.size();
            total > limit
        })
    }

    /// Bytes used by the data directory's blocks, WAL and head chunks.
    pub fn disk_size(&self) -> u64 {
        dir_size(&self.dir)
    }

    /// Bytes of the WAL directory (segments and checkpoints).
    pub fn wal_size(&self) -> u64 {
        dir_size(&self.dir.join("wal"))
    }

    /// Bytes of the head's chunk files (`chunks_head/`).
    pub fn head_chunks_size(&self) -> u64 {
        dir_size(&self.dir.join("chunks_head"))
    }

    /// Bytes of the loaded blocks, as Prometheus counts them (chunks, index, tombstones,
    /// `meta.json`).
    pub fn blocks_size(&self) -> u64 {
        self.blocks.read().iter().map(|b| b.size()).sum()
    }

    /// Bytes the loaded blocks' index readers keep to look symbols up.
    pub fn symbol_table_size(&self) -> u64 {
        self.blocks
            .read()
            .iter()
            .map(|b| b.index().symbol_table_size())
            .sum()
    }

    /// The oldest timestamp stored: the oldest block's min time, else the head's.
    pub fn lowest_timestamp(&self) -> Option<Timestamp> {
        let oldest_block = self.blocks.read().first().map(|b| b.meta().min_time);
        oldest_block.or_else(|| self.head.min_time())
    }

    /// The WAL segment being written, `None` without a WAL (read-only).
    pub fn wal_segment_current(&self) -> Option<u64> {
        self.head.wal.as_ref().map(|w| w.lock().current_segment())
    }

    /// The WAL's record compression and the bytes it spared since the WAL was opened;
    /// `None` without a WAL (read-only).
    pub fn wal_bytes_saved(&self) -> Option<(crate::wal::Compression, u64)> {
        self.head.wal.as_ref().map(|w| {
            let w = w.lock();
            (w.options().compression, w.bytes_saved())
        })
    }
}

/// The oldest min time and newest max time of `blocks` (non-empty).
fn time_span(blocks: &[Arc<BlockReader>]) -> (Timestamp, Timestamp) {
    let lo = blocks.iter().map(|b| b.meta().min_time).min();
    let hi = blocks.iter().map(|b| b.meta().max_time).max();
    (lo.unwrap_or_default(), hi.unwrap_or_default())
}

/// Why retention deletes a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reason {
    /// Its data is older than the retention time.
    Time,
    /// The data directory is over the retention size.
    Size,
}

impl Reason {
    fn as_str(self) -> &'static str {
        match self {
            Reason::Time => "time_retention",
            Reason::Size => "size_retention",
        }
    }
}

/// Total size of the files under `path` (0 when it does not exist).
pub fn dir_size(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            _ => e.metadata().map(|m| m.len()).unwrap_or(0),
        })
        .sum()
}
