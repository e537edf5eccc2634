//! The write-ahead log in the Prometheus WAL format.
//!
//! Byte-compatible with Prometheus's `tsdb/wlog` and `tsdb/record`: Kiln replays a `wal/`
//! directory (and its `checkpoint.NNNNNNNN/`) written by Prometheus, and Prometheus
//! replays ours. The format in our own words, with byte diagrams, is in
//! `crates/kiln-tsdb/docs/format/wal.md`.
//!
//! Module map:
//! - [`segment`]: page and header sizes, fragment types, segment names (`%08d`) and
//!   directory listing.
//! - [`writer`]: [`Wal`], appending records to 32 KiB pages of 128 MiB segments.
//! - [`reader`]: [`WalReader`], reading records back across segments.
//! - [`follow`]: [`WalFollower`], reading records while they are written (remote write).
//! - [`record`]: series / samples / tombstones payloads, encode and decode.
//! - [`repair`](mod@repair): dropping everything from a corruption on.
//! - [`checkpoint`](mod@checkpoint): compacting a WAL prefix into `checkpoint.NNNNNNNN`.
//! - [`error`]: [`WalError`], with [`WalErrorKind`] saying I/O, corruption (repairable),
//!   unsupported or invalid.
//! - tests: `tests.rs` (writer, reader, repair, checkpoint), `record_tests.rs`, and
//!   `interop_tests.rs` with WAL fixtures written by Prometheus 2.42 in `testdata/`
//!   (Kiln re-encodes them byte for byte); `promtool` reading a WAL and checkpoint
//!   written by Kiln is an interop test of the binary crate (`crates/kiln/tests/wal_interop.rs`).
//!
//! # Locking
//! None inside: [`Wal`] methods take `&mut self`; share it behind one mutex. Readers,
//! checkpoint and repair work on files and need no lock, but repair must not run while a
//! writer is open on the directory (use [`Wal::repair`], which closes and reopens it).
//!
//! # Durability (fsync policy)
//! - Every [`Wal::log`] call writes all of its bytes to the segment file (`write(2)`)
//!   before it returns; nothing is buffered in user space across calls. A sample whose
//!   `log` returned survives `kill -9` of the process.
//! - Power-loss durability needs [`Wal::sync`] (`fdatasync` of the active segment),
//!   which the caller chooses when to pay for (per commit, or on a timer).
//! - A segment is always fsynced when it is cut ([`Wal::next_segment`], also on a full
//!   segment) and on [`Wal::close`]; new segment files, removals, checkpoint renames and
//!   repairs also fsync their directory.
//!
//! # Write path
//! `record::encode_*` into a reused `Vec<u8>` -> [`Wal::log`] splits it into fragments
//! (full / first / middle / last, 7-byte header with CRC32-C) filling 32 KiB pages; a full
//! page is zero-padded and written; the partial page's new bytes are written at the end of
//! the call. Records never span segments.
//!
//! # Read path (replay)
//! [`checkpoint::last_checkpoint`] -> read its segments, then the WAL segments after its
//! index, with one [`WalReader`] ([`WalReader::from_files`]); each record goes through
//! [`RecordDecoder::decode`] into reused buffers; unknown record types are skipped. On a
//! corruption error (or [`WalReader::record_corruption`] for an undecodable record) in the
//! WAL directory, [`repair::repair`] truncates there and the WAL is usable again; then
//! [`Wal::open`] starts a new segment after the last one.
//!
//! # Compression
//! Records are compressed one at a time before they are split into fragments, flagged
//! in every fragment's type byte, as Prometheus writes them: snappy by default
//! ([`WalOptions::compression`]), zstd on request, and plain when compressing does not
//! make a record smaller. Readers take any mix of the three, decompressing into a
//! reused buffer bounded by [`reader::MAX_DECOMPRESSED_RECORD`].

pub mod checkpoint;
pub mod error;
pub mod follow;
pub mod reader;
pub mod record;
pub mod repair;
pub mod segment;
pub mod writer;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod interop_tests;
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;

pub use checkpoint::{CheckpointStats, checkpoint, last_checkpoint};
pub use error::{
    Compression, CorruptionError, CorruptionReason, SegmentLocation, WalError, WalErrorKind,
};
pub use follow::{WalEvent, WalFollower, WalPosition};
pub use reader::{RawRecord, RecordPosition, WalReader};
pub use record::{
    DecodedRecord, RecordDecoder, RecordError, RecordType, RefSample, RefSeries, Stone,
};
pub use repair::{RepairStats, repair};
pub use segment::{DEFAULT_SEGMENT_SIZE, HEADER_SIZE, PAGE_SIZE};
pub use writer::{Wal, WalOptions};
