//! The database: a data directory with persisted blocks, a WAL and the head.
//!
//! ```text
//! <dir>/
//!   01J.../          a block: meta.json, index, chunks/000001, tombstones
//!   wal/00000000     WAL segments; wal/checkpoint.NNNNNNNN after a truncation
//! ```
//!
//! Write path: appenders write to the head and, at commit, to the WAL.
//! Maintenance ([`Db::compact`]): when the head spans more than 1.5 chunk ranges, its
//! oldest full range is written out as a block, the head is truncated and the WAL is
//! checkpointed; then overlapping blocks are merged (vertical compaction) and adjacent
//! blocks are merged into larger ranges (the chunk range times 3, 9, 27, ... up to the
//! maximum block duration, like Prometheus's `ExponentialBlockRanges`); then retention
//! deletes the oldest blocks by time (relative to the newest block) and size.
//! Every step is counted in [`DbMetrics`] ([`Db::metrics`]). Each round starts by
//! re-reading the block list from the directory ([`Db::reload_blocks`]), so blocks that
//! others write there (backfills) are picked up without a restart.
//! Read path: a querier merges the head and every block overlapping the range.
//!
//! Lock order: `maintenance` (one compaction at a time) before `blocks`; the head has its
//! own (see [`crate::head`]).

mod chunk_querier;
mod compact;
mod delete;
mod head_snapshot;
mod metrics;
mod open;
pub mod plan;
mod querier;
mod reload;
mod retention;
mod snapshot;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

pub use chunk_querier::{DbChunkQuerier, merge_overlapping_chunks};
pub use compact::CompactStats;
pub use compact::write_head_block;
pub use metrics::{
    CHUNK_RANGE_BUCKETS, CHUNK_SAMPLES_BUCKETS, CHUNK_SIZE_BUCKETS, COMPACTION_DURATION_BUCKETS,
    DEFAULT_BUCKETS, DbMetrics,
};
pub use querier::BlockQuerier;
pub use reload::ReloadStats;
pub use retention::AgedBlocks;
pub use retention::{RetentionHold, dir_size};
pub use snapshot::SnapshotStats;

use crate::block::BlockReader;
use crate::head::{DEFAULT_CHUNK_RANGE, Head, HeadAppender};

/// Options of a [`Db`]; `Default` gives Prometheus's defaults.
#[derive(Debug, Clone)]
pub struct DbOptions {
    /// Width of blocks cut from the head, ms (`2h`; Prometheus's
    /// `--storage.tsdb.min-block-duration`). Head chunks never cross a multiple of it.
    pub chunk_range: i64,
    /// Largest block compaction may produce, ms (Prometheus's
    /// `--storage.tsdb.max-block-duration`, by default 10% of the retention time, at
    /// most 31 days). Compaction ranges are `chunk_range` times 3, 9, 27, ... up to this;
    /// equal to `chunk_range`, blocks are never merged into larger ranges.
    pub max_block_duration: i64,
    /// Merge blocks whose time ranges overlap (vertical compaction), as Prometheus's
    /// `--storage.tsdb.allow-overlapping-compaction` (default true). When false,
    /// overlapping blocks stay as they are and queries merge them.
    pub allow_overlapping_compaction: bool,
    /// Delete blocks whose data is entirely older than this (relative to the newest
    /// block), ms; `None` keeps everything.
    pub retention_time: Option<i64>,
    /// Delete the oldest blocks while the blocks, WAL and head chunks together take more
    /// than this many bytes; `None` means no limit.
    pub retention_size: Option<u64>,
    /// WAL segment size in bytes.
    pub wal_segment_size: u64,
    /// How WAL and checkpoint records are written (`--storage.tsdb.wal-compression`,
    /// `--storage.tsdb.wal-compression-type`); snappy by default, as Prometheus. Replay
    /// reads every kind whatever this says.
    pub wal_compression: crate::wal::Compression,
    /// Open without writing anything: no WAL writer, no repair, no cleanup. Used by the
    /// `kiln tsdb` tools on a directory another process may own.
    pub read_only: bool,
    /// Refuse samples more than this many ms ahead of the clock (see
    /// [`HeadOptions::max_future`](crate::head::HeadOptions::max_future)); `None`, the
    /// default, accepts any timestamp. With a bound, a WAL replay also drops the samples
    /// beyond it (see [`open`](Db::open)).
    pub max_future: Option<i64>,
}

impl Default for DbOptions {
    fn default() -> Self {
        let retention = 15 * 24 * 3_600_000;
        DbOptions {
            chunk_range: DEFAULT_CHUNK_RANGE,
            max_block_duration: (retention / 10).min(31 * 24 * 3_600_000),
            allow_overlapping_compaction: true,
            retention_time: Some(retention),
            retention_size: None,
            wal_segment_size: crate::wal::DEFAULT_SEGMENT_SIZE,
            wal_compression: crate::wal::Compression::Snappy,
            read_only: false,
            max_future: None,
        }
    }
}

/// A block that could not be opened; the database goes on without it.
#[derive(Debug, Clone)]
pub struct SkippedBlock {
    pub dir: PathBuf,
    pub reason: String,
}

/// An open data directory. See the module docs.
pub struct Db {
    dir: PathBuf,
    opts: DbOptions,
    head: Head,
    /// Open blocks sorted by min time.
    blocks: RwLock<Vec<Arc<BlockReader>>>,
    skipped: Mutex<Vec<SkippedBlock>>,
    /// Blocks whose merge failed; compaction leaves them alone until restart.
    failed_merges: Mutex<std::collections::HashSet<ulid::Ulid>>,
    maintenance: Mutex<()>,
    metrics: DbMetrics,
    /// What time retention must keep for now (see [`Db::hold_for_time_retention`]).
    retention_hold: RwLock<Option<retention::RetentionHold>>,
}

/// Errors of the database layer.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Block(#[from] crate::block::BlockError),
    #[error(transparent)]
    Wal(#[from] crate::wal::WalError),
    #[error("head chunk files: {0}")]
    HeadChunkFiles(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("reading the head chunks of series {series}: {source}")]
    HeadChunks {
        series: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{context}")]
    Read {
        context: String,
        #[source]
        source: kiln_storage::StorageError,
    },
    #[error("blocks hold chunks Kiln cannot rewrite yet: {detail}")]
    UnsupportedChunks { detail: String },
    #[error("the database was opened read-only")]
    ReadOnly,
}

impl DbError {
    pub(crate) fn io(op: &'static str, path: &Path, source: std::io::Error) -> DbError {
        DbError::Io {
            op,
            path: path.to_owned(),
            source,
        }
    }
}

impl Db {
    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn options(&self) -> &DbOptions {
        &self.opts
    }

    pub fn head(&self) -> &Head {
        &self.head
    }

    /// What the database has measured about its maintenance (see [`DbMetrics`]).
    pub fn metrics(&self) -> &DbMetrics {
        &self.metrics
    }

    /// A write transaction.
    pub fn appender(&self) -> HeadAppender<'_> {
        self.head.appender()
    }

    /// The open blocks, oldest first.
    pub fn blocks(&self) -> Vec<Arc<BlockReader>> {
        self.blocks.read().clone()
    }

    /// Syncs and closes the WAL. Dropping a `Db` without closing loses nothing that was
    /// committed (every commit reached the kernel); closing also makes the WAL's tail
    /// survive a power loss.
    ///
    /// Closing also writes every open head chunk to `chunks_head/` and, when all of them
    /// made it, a snapshot of the head's series and chunk references (see
    /// [`head_snapshot`]): the next open restores the head from it without reading the
    /// WAL or the chunk files (Prometheus's snapshot-on-shutdown, made from the chunk
    /// files a head already has).
    pub fn close(self) -> Result<(), DbError> {
        self.close_keeping_head().map(drop)
    }

    /// [`close`](Self::close) for a process about to exit: the head's memory is not
    /// given back series by series (millions of frees, a third of a second at 400k
    /// series) but left to the exit, which returns it at once.
    pub fn close_before_exit(self) -> Result<(), DbError> {
        self.close_keeping_head().map(std::mem::forget)
    }

    /// Everything [`close`](Self::close) does; returns the head, whose files are closed.
    fn close_keeping_head(self) -> Result<Head, DbError> {
        let mut head = self.head;
        let started = std::time::Instant::now();
        let wal = head.wal.take();
        let disk = head.chunk_disk.take();
        // The WAL first, then the chunk files: their extents are what a snapshot records.
        let close_files =
            |wal: Option<Mutex<crate::wal::Wal>>,
             disk: Option<crate::head::chunk_disk::ChunkDiskMapper>| {
                if let Some(wal) = wal {
                    wal.into_inner().close()?;
                }
                disk.map(|d| d.close().map_err(|e| DbError::HeadChunkFiles(Box::new(e))))
                    .transpose()
            };
        // A snapshot needs the WAL it vouches for and chunk files to hold the open chunks.
        if self.opts.read_only || wal.is_none() || disk.is_none() {
            close_files(wal, disk)?;
            return Ok(head);
        }
        let dir = &self.dir;
        let snapshot = head.with_series_by_id(|series| {
            let open_chunks = disk
                .as_ref()
                .and_then(|d| crate::head::persist_open_chunks(series, d));
            let persisted = started.elapsed();
            let files = close_files(wal, disk)?;
            let (Some(open_chunks), Some(files)) = (open_chunks, files) else {
                return Ok(None);
            };
            let closed = started.elapsed();
            let bytes = head_snapshot::write(dir, &head, series, &open_chunks, &files)?;
            Ok::<_, DbError>(bytes.map(|b| (b, persisted, closed)))
        })?;
        if let Some((bytes, persisted, closed)) = snapshot {
            tracing::info!(
                series = head.num_series(),
                bytes,
                open_chunks_written = ?persisted,
                files_closed = ?closed - persisted,
                snapshot_written = ?started.elapsed() - closed,
                "Head snapshot written for a fast restart"
            );
        }
        Ok(head)
    }

    /// Blocks that were skipped because they could not be read.
    pub fn skipped_blocks(&self) -> Vec<SkippedBlock> {
        self.skipped.lock().clone()
    }
}
