//! What a [`Db`](super::Db) measures about its maintenance: compaction, retention,
//! WAL truncation and checkpoints. Each field counts what the Prometheus metric of the
//! same meaning counts (`tsdb/db.go`, `tsdb/compact.go`, `tsdb/head.go`,
//! `tsdb/wlog/wlog.go`), so the server exports them under Prometheus's names and a
//! Prometheus dashboard reads Kiln's maintenance the way it reads Prometheus's.
//!
//! Gauges that describe the data as it is now (bytes of the blocks, the WAL and the head
//! chunk files, the lowest timestamp, the current WAL segment) are not stored here: they
//! are measured when read, through methods of [`Db`](super::Db).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::stats::{Histogram, Summary};

/// Prometheus's buckets for `prometheus_tsdb_compaction_duration_seconds`:
/// `ExponentialBuckets(1, 2, 14)`.
pub const COMPACTION_DURATION_BUCKETS: [f64; 14] = [
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0, 8192.0,
];
/// `prometheus_tsdb_compaction_chunk_size_bytes`: `ExponentialBuckets(32, 1.5, 12)`.
pub const CHUNK_SIZE_BUCKETS: [f64; 12] = [
    32.0,
    48.0,
    72.0,
    108.0,
    162.0,
    243.0,
    364.5,
    546.75,
    820.125,
    1230.1875,
    1845.28125,
    2767.921875,
];
/// `prometheus_tsdb_compaction_chunk_samples`: `ExponentialBuckets(4, 1.5, 12)`.
pub const CHUNK_SAMPLES_BUCKETS: [f64; 12] = [
    4.0,
    6.0,
    9.0,
    13.5,
    20.25,
    30.375,
    45.5625,
    68.34375,
    102.515625,
    153.7734375,
    230.66015625,
    345.990234375,
];
/// `prometheus_tsdb_compaction_chunk_range_seconds`: `ExponentialBuckets(100, 4, 10)`.
/// Prometheus observes the chunk's range in milliseconds despite the name; Kiln does the
/// same so the two can be compared.
pub const CHUNK_RANGE_BUCKETS: [f64; 10] = [
    100.0, 400.0, 1600.0, 6400.0, 25600.0, 102400.0, 409600.0, 1638400.0, 6553600.0, 26214400.0,
];
/// The Go client's default buckets, which `prometheus_tsdb_tombstone_cleanup_seconds`
/// uses.
pub const DEFAULT_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Counters and timings of a database's maintenance. See the module docs.
#[derive(Debug)]
pub struct DbMetrics {
    /// Times the set of loaded blocks was rebuilt: at open, after a block was written
    /// or merged, and at every retention pass (`prometheus_tsdb_reloads_total`).
    pub reloads: AtomicU64,
    /// Rebuilds that failed: a written block that would not open, a block directory
    /// retention could not delete (`prometheus_tsdb_reloads_failures_total`).
    pub reloads_failed: AtomicU64,
    /// Maintenance rounds started ([`Db::compact`](super::Db::compact) calls;
    /// `prometheus_tsdb_compactions_triggered_total`).
    pub compactions_triggered: AtomicU64,
    /// Rounds that returned an error plus merges that failed
    /// (`prometheus_tsdb_compactions_failed_total`).
    pub compactions_failed: AtomicU64,
    /// Block writes attempted by compaction: head ranges persisted, blocks merged,
    /// blocks rewritten without deleted data (`prometheus_tsdb_compactions_total`).
    pub compactions: AtomicU64,
    /// Merges of blocks whose time ranges overlap
    /// (`prometheus_tsdb_vertical_compactions_total`).
    pub vertical_compactions: AtomicU64,
    /// Set while a block is being written (`prometheus_tsdb_compaction_populating_block`).
    pub populating_block: AtomicBool,
    /// Seconds per block write (`prometheus_tsdb_compaction_duration_seconds`).
    pub compaction_duration: Histogram,
    /// Bytes, samples and time range (ms) of each chunk written into a block cut from
    /// the head (`prometheus_tsdb_compaction_chunk_size_bytes`, `_chunk_samples`,
    /// `_chunk_range_seconds`).
    pub chunk_size: Histogram,
    pub chunk_samples: Histogram,
    pub chunk_range: Histogram,
    /// Retention passes that deleted blocks by time
    /// (`prometheus_tsdb_time_retentions_total`).
    pub time_retentions: AtomicU64,
    /// Retention passes that deleted blocks by size
    /// (`prometheus_tsdb_size_retentions_total`).
    pub size_retentions: AtomicU64,
    /// Seconds per [`Db::clean_tombstones`](super::Db::clean_tombstones) call
    /// (`prometheus_tsdb_tombstone_cleanup_seconds`).
    pub tombstone_cleanup: Histogram,
    /// WAL checkpoints attempted and failed (`prometheus_tsdb_checkpoint_creations_total`,
    /// `_failed_total`).
    pub checkpoint_creations: AtomicU64,
    pub checkpoint_creations_failed: AtomicU64,
    /// Removals of old WAL segments attempted and failed
    /// (`prometheus_tsdb_wal_truncations_total`, `_failed_total`).
    pub wal_truncations: AtomicU64,
    pub wal_truncations_failed: AtomicU64,
    /// Seconds per WAL truncation: checkpoint plus segment removal
    /// (`prometheus_tsdb_wal_truncate_duration_seconds`).
    pub wal_truncate_duration: Summary,
}

impl Default for DbMetrics {
    fn default() -> Self {
        DbMetrics {
            reloads: AtomicU64::new(0),
            reloads_failed: AtomicU64::new(0),
            compactions_triggered: AtomicU64::new(0),
            compactions_failed: AtomicU64::new(0),
            compactions: AtomicU64::new(0),
            vertical_compactions: AtomicU64::new(0),
            populating_block: AtomicBool::new(false),
            compaction_duration: Histogram::new(&COMPACTION_DURATION_BUCKETS),
            chunk_size: Histogram::new(&CHUNK_SIZE_BUCKETS),
            chunk_samples: Histogram::new(&CHUNK_SAMPLES_BUCKETS),
            chunk_range: Histogram::new(&CHUNK_RANGE_BUCKETS),
            time_retentions: AtomicU64::new(0),
            size_retentions: AtomicU64::new(0),
            tombstone_cleanup: Histogram::new(&DEFAULT_BUCKETS),
            checkpoint_creations: AtomicU64::new(0),
            checkpoint_creations_failed: AtomicU64::new(0),
            wal_truncations: AtomicU64::new(0),
            wal_truncations_failed: AtomicU64::new(0),
            wal_truncate_duration: Summary::default(),
        }
    }
}

impl DbMetrics {
    /// Adds one to `counter`.
    pub(crate) fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Records the chunks of a block cut from the head, as Prometheus does for level-1
    /// compactions: `(min_time, max_time, encoded bytes)` each.
    pub(crate) fn observe_head_chunk(&self, min_time: i64, max_time: i64, data: &[u8]) {
        self.chunk_size.observe(data.len() as f64);
        self.chunk_samples
            .observe(crate::block::chunk_sample_count(crate::block::ENCODING_XOR, data) as f64);
        self.chunk_range
            .observe(max_time.saturating_sub(min_time) as f64);
    }

    /// Counts one block write and times it until the returned guard is dropped, with
    /// `populating_block` set meanwhile.
    pub(crate) fn block_write(&self) -> BlockWriteTimer<'_> {
        Self::inc(&self.compactions);
        self.populating_block.store(true, Ordering::Relaxed);
        BlockWriteTimer {
            metrics: self,
            started: std::time::Instant::now(),
        }
    }
}

/// Times one block write (see [`DbMetrics::block_write`]).
pub(crate) struct BlockWriteTimer<'m> {
    metrics: &'m DbMetrics,
    started: std::time::Instant,
}

impl Drop for BlockWriteTimer<'_> {
    fn drop(&mut self) {
        self.metrics
            .compaction_duration
            .observe(self.started.elapsed().as_secs_f64());
        self.metrics
            .populating_block
            .store(false, Ordering::Relaxed);
    }
}
