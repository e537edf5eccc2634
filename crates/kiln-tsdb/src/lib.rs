//! Kiln's storage engine.
//!
//! Module map:
//! - [`block`]: the persistent block format (index v2, chunk segments, meta.json,
//!   tombstones): writers and readers.
//! - [`wal`]: the write-ahead log (segments, records, checkpoints, repair).
//! - [`head`]: the in-memory head: series, postings, appenders, head querier.
//! - [`db`]: a data directory: open and replay, compaction, retention, the merged querier.
//! - [`stats`]: the lock-free counters, histograms and summaries the engine keeps about
//!   itself (exported by the server as `prometheus_tsdb_*`).

pub mod block;
pub mod db;
mod fingerprint;
pub mod head;
mod querier;
pub mod stats;
pub mod wal;
