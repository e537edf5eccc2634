//! One in-memory series: its closed chunks and the open chunk being appended to.
//!
//! Chunks are cut at 120 samples or when a sample crosses the next multiple of the head's
//! chunk range (2 h), so no chunk ever straddles a block boundary and truncating the head
//! after a block is cut drops whole chunks.
//!
//! A cut chunk is written to the head's [`ChunkDiskMapper`] (`chunks_head/`) when the
//! head has one, and the series keeps only its reference: resident memory holds the open
//! chunks, and full chunks are paged in from the memory-mapped files when read. If the
//! write fails the chunk simply stays in memory.

use std::sync::Arc;

use kiln_chunkenc::{Encoding, SAMPLES_PER_CHUNK, XorEncoder};
use kiln_model::{Labels, Timestamp};
use tracing::warn;

use super::chunk_disk::{ChunkBytes, ChunkDiskMapper, EncodedChunks, HeadChunksError};

/// Where a full chunk's bytes are. 16 bytes: every closed chunk of every head series
/// holds one, and almost all are `Disk`, so the rare in-memory bytes sit behind a thin
/// pointer instead of widening every entry.
#[derive(Debug, Clone)]
pub(crate) enum ChunkLocation {
    Memory(Box<Arc<[u8]>>),
    /// A reference into the head's chunk files.
    Disk(u64),
}

/// A full, immutable chunk of a head series (32 bytes; see [`ChunkLocation`]).
#[derive(Debug, Clone)]
pub(crate) struct ClosedChunk {
    pub(crate) min_time: Timestamp,
    pub(crate) max_time: Timestamp,
    pub(crate) loc: ChunkLocation,
}

/// The bytes of a head chunk handed to a reader: shared memory or a slice of a mapped
/// chunk file. Holding one keeps the bytes valid without any lock.
#[derive(Debug, Clone)]
pub(crate) enum HeadChunkData {
    Memory(Arc<[u8]>),
    Disk(ChunkBytes),
}

impl AsRef<[u8]> for HeadChunkData {
    fn as_ref(&self) -> &[u8] {
        match self {
            HeadChunkData::Memory(b) => b,
            HeadChunkData::Disk(b) => b.as_ref(),
        }
    }
}

/// A chunk of a head series as a reader sees it.
#[derive(Debug, Clone)]
pub(crate) struct ChunkSnapshot {
    pub(crate) min_time: Timestamp,
    pub(crate) max_time: Timestamp,
    pub(crate) data: HeadChunkData,
}

/// What [`SeriesData::append`] did with a sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Appended {
    /// Ignored: an exact duplicate of the newest sample, or out of order by now.
    No,
    /// Added to the open chunk.
    ToOpenChunk,
    /// Started a new open chunk: the series holds one chunk more than before.
    NewChunk,
}

impl Appended {
    /// Whether the sample was stored.
    pub(crate) fn stored(self) -> bool {
        self != Appended::No
    }
}

/// Why a sample cannot be appended to a series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rejection {
    OutOfOrder,
    Duplicate,
}

/// The mutable part of a series, guarded by the series' mutex.
///
/// Its size is paid once per series, so the newest and the pending sample are stored
/// as plain fields with their presence flags next to the commit count (two
/// `Option<(Timestamp, f64)>` would take 16 bytes more), and the next cut time is
/// derived from `open_min_time` rather than stored.
#[derive(Debug)]
pub(crate) struct SeriesData {
    pub(crate) closed: Vec<ClosedChunk>,
    /// The open chunk; empty when the series has no samples since the last cut.
    pub(crate) open: XorEncoder,
    pub(crate) open_min_time: Timestamp,
    /// Timestamp and value of the newest sample, valid when `has_last`.
    last_sample: (Timestamp, f64),
    /// Newest sample accepted by an appender but not committed yet, valid when
    /// `has_pending`. Later appends are checked against it too, so a transaction cannot
    /// go back in time unnoticed.
    pending_sample: (Timestamp, f64),
    /// Samples of this series held by appenders and not yet committed or rolled back.
    /// Garbage collection never removes a series while this is non-zero.
    pub(crate) pending_commits: u32,
    has_last: bool,
    has_pending: bool,
}

/// An in-memory series. The labels and id never change; the data is behind a mutex so
/// that appends to different series never contend.
#[derive(Debug)]
pub(crate) struct MemSeries {
    pub(crate) id: u64,
    /// The labels' hash ([`Labels::hash`]), which the head's series table is keyed by.
    pub(crate) hash: u64,
    pub(crate) labels: Labels,
    /// Whether the WAL holds this series' record (samples may then refer to it).
    pub(crate) logged: std::sync::atomic::AtomicBool,
    /// Set (under the data lock) when garbage collection removes the series from the
    /// head; an appender that finds it set looks the series up again.
    pub(crate) removed: std::sync::atomic::AtomicBool,
    pub(crate) data: parking_lot::Mutex<SeriesData>,
}

impl MemSeries {
    /// A series without samples; `hash` is `labels.hash()`.
    pub(crate) fn new(id: u64, hash: u64, labels: Labels) -> Self {
        debug_assert_eq!(hash, labels.hash());
        MemSeries {
            id,
            hash,
            labels,
            logged: std::sync::atomic::AtomicBool::new(false),
            removed: std::sync::atomic::AtomicBool::new(false),
            data: parking_lot::Mutex::new(SeriesData {
                closed: Vec::new(),
                open: XorEncoder::with_capacity(0),
                open_min_time: 0,
                last_sample: (0, 0.0),
                pending_sample: (0, 0.0),
                pending_commits: 0,
                has_last: false,
                has_pending: false,
            }),
        }
    }
}

impl SeriesData {
    /// Timestamp and value of the newest sample; `None` for a series with no samples.
    pub(crate) fn last(&self) -> Option<(Timestamp, f64)> {
        self.has_last.then_some(self.last_sample)
    }

    fn set_last(&mut self, sample: (Timestamp, f64)) {
        self.last_sample = sample;
        self.has_last = true;
    }

    /// The newest sample an appender holds for this series and has not committed.
    pub(crate) fn pending(&self) -> Option<(Timestamp, f64)> {
        self.has_pending.then_some(self.pending_sample)
    }

    pub(crate) fn set_pending(&mut self, sample: Option<(Timestamp, f64)>) {
        self.has_pending = sample.is_some();
        self.pending_sample = sample.unwrap_or((0, 0.0));
    }

    /// Checks whether `(t, v)` may be appended. Re-appending the newest sample with an
    /// identical value is accepted (and later ignored), as Prometheus does.
    pub(crate) fn check(&self, t: Timestamp, v: f64) -> Result<(), Rejection> {
        let newest = match (self.last(), self.pending()) {
            (Some(l), Some(p)) => Some(if p.0 >= l.0 { p } else { l }),
            (l, p) => l.or(p),
        };
        match newest {
            Some((lt, _)) if t < lt => Err(Rejection::OutOfOrder),
            Some((lt, lv)) if t == lt && lv.to_bits() != v.to_bits() => Err(Rejection::Duplicate),
            _ => Ok(()),
        }
    }

    /// Appends a sample that passed [`check`](Self::check) to series `id`, and says
    /// whether it was stored and whether that started a new chunk (the head counts its
    /// chunks from these answers).
    pub(crate) fn append(
        &mut self,
        id: u64,
        t: Timestamp,
        v: f64,
        chunk_range: i64,
        disk: Option<&ChunkDiskMapper>,
    ) -> Appended {
        if self.last().is_some_and(|(lt, _)| t <= lt) {
            return Appended::No;
        }
        let n = self.open.num_samples() as usize;
        if n > 0 && (n >= SAMPLES_PER_CHUNK || t >= next_boundary(self.open_min_time, chunk_range))
        {
            self.cut_open(id, disk);
        }
        let started = self.open.num_samples() == 0;
        if started {
            self.open_min_time = t;
        }
        self.open.reserve_tight();
        self.open.append(t, v);
        self.set_last((t, v));
        if started {
            Appended::NewChunk
        } else {
            Appended::ToOpenChunk
        }
    }

    fn cut_open(&mut self, id: u64, disk: Option<&ChunkDiskMapper>) {
        let min_time = self.open_min_time;
        let max_time = self.last().map_or(min_time, |(t, _)| t);
        let bytes = self.open.bytes();
        let bytes_len = bytes.len();
        let loc = match disk
            .map(|d| d.write_chunk(id, min_time, max_time, Encoding::Xor.as_u8(), bytes))
        {
            Some(Ok(chunk_ref)) => ChunkLocation::Disk(chunk_ref),
            Some(Err(e)) => {
                warn!(series = id, err = %e, "writing a head chunk to disk failed; keeping it in memory");
                ChunkLocation::Memory(Box::new(Arc::from(bytes)))
            }
            None => ChunkLocation::Memory(Box::new(Arc::from(bytes))),
        };
        self.push_closed(ClosedChunk {
            min_time,
            max_time,
            loc,
        });
        self.reuse_open(bytes_len);
    }

    /// Adds a closed chunk, growing the list by one rather than doubling it: a series
    /// cuts a chunk every 120 samples, so the reallocation is rare, and doubled lists
    /// left up to half their room (32 bytes a chunk) empty in every series.
    fn push_closed(&mut self, chunk: ClosedChunk) {
        if self.closed.len() == self.closed.capacity() {
            self.closed.reserve_exact(1);
        }
        self.closed.push(chunk);
    }

    /// Empties the open chunk after a cut of `closed_len` bytes, keeping its buffer for
    /// the next chunk unless it is more than twice that size.
    ///
    /// The series of a head cut their chunks together (every 120 samples, and all at each
    /// chunk-range boundary), so buffers given back at every cut and grown again sample
    /// by sample ([`XorEncoder::reserve_tight`]) all pass through the same sizes at the
    /// same time: each step frees a buffer of a size no series asks for again until the
    /// next cycle, and the heap fills with such holes (about 90 bytes a series at 94,400
    /// series). The next chunk of a series usually needs what the last one did, so the
    /// buffer is kept; when it is much larger (the values became more compressible, a
    /// short chunk at a range boundary) it is given back and the next chunk grows its own.
    fn reuse_open(&mut self, closed_len: usize) {
        if self.open.allocated_bytes() > 2 * closed_len {
            self.clear_open();
        } else {
            self.open.reset();
        }
    }

    /// Empties the open chunk and gives its buffer back: the next chunk grows its own
    /// from nothing (see [`XorEncoder::reserve_tight`]).
    fn clear_open(&mut self) {
        self.open = XorEncoder::with_capacity(0);
    }

    /// Encodes the open chunk, when it holds samples, as a chunk record into `out` and
    /// returns its time range (a clean shutdown writes every open chunk to the chunk
    /// files; see `Head::persist_open_chunks`). The series itself is left as it is.
    pub(crate) fn encode_open(
        &self,
        id: u64,
        disk: &ChunkDiskMapper,
        out: &mut EncodedChunks,
    ) -> Result<Option<(Timestamp, Timestamp)>, HeadChunksError> {
        if self.open.num_samples() == 0 {
            return Ok(None);
        }
        let min_time = self.open_min_time;
        let max_time = self.last().map_or(min_time, |(t, _)| t);
        disk.encode_chunk(
            out,
            id,
            min_time,
            max_time,
            Encoding::Xor.as_u8(),
            self.open.bytes(),
        )?;
        Ok(Some((min_time, max_time)))
    }

    /// Drops every chunk whose samples are all before `mint`. Returns how many chunks
    /// were dropped and whether the series is now empty.
    pub(crate) fn truncate_before(&mut self, mint: Timestamp) -> (usize, bool) {
        let before = self.closed.len();
        self.closed.retain(|c| c.max_time >= mint);
        let mut dropped = before - self.closed.len();
        if self.open.num_samples() > 0 && self.last().is_some_and(|(t, _)| t < mint) {
            self.clear_open();
            dropped += 1;
        }
        (
            dropped,
            self.closed.is_empty() && self.open.num_samples() == 0,
        )
    }

    /// Adopts full chunks found in `chunks_head/` on start, oldest first, before any
    /// sample is replayed from the WAL. `last` is the newest sample they hold: WAL samples
    /// up to it are then skipped by [`append`](Self::append) as already present.
    /// Returns how many chunks were adopted (none when the series already has data).
    pub(crate) fn adopt_disk_chunks(
        &mut self,
        chunks: &[(Timestamp, Timestamp, u64)],
        last: (Timestamp, f64),
    ) -> usize {
        if !self.closed.is_empty() || self.open.num_samples() > 0 {
            return 0;
        }
        self.closed
            .extend(chunks.iter().map(|&(min_time, max_time, r)| ClosedChunk {
                min_time,
                max_time,
                loc: ChunkLocation::Disk(r),
            }));
        self.set_last(last);
        chunks.len()
    }

    /// Time of the series' oldest sample; `None` when it holds none.
    pub(crate) fn oldest_time(&self) -> Option<Timestamp> {
        match self.closed.first() {
            Some(c) => Some(c.min_time),
            None => (self.open.num_samples() > 0).then_some(self.open_min_time),
        }
    }

    /// Whether the series has samples in `[mint, maxt]`.
    pub(crate) fn has_samples_in(&self, mint: Timestamp, maxt: Timestamp) -> bool {
        let open = self.open.num_samples() > 0
            && self.open_min_time <= maxt
            && self.last().is_some_and(|(t, _)| t >= mint);
        open || self
            .closed
            .iter()
            .any(|c| c.max_time >= mint && c.min_time <= maxt)
    }

    /// Snapshot of the chunks overlapping `[mint, maxt]`, oldest first, for a reader.
    /// Disk chunks are mapped, not copied; the open chunk's bytes are copied.
    pub(crate) fn chunks_in(
        &self,
        mint: Timestamp,
        maxt: Timestamp,
        disk: Option<&ChunkDiskMapper>,
    ) -> Result<Vec<ChunkSnapshot>, HeadChunksError> {
        let mut out = Vec::new();
        for c in self
            .closed
            .iter()
            .filter(|c| c.max_time >= mint && c.min_time <= maxt)
        {
            let data = match (&c.loc, disk) {
                (ChunkLocation::Memory(b), _) => HeadChunkData::Memory(Arc::clone(b)),
                (ChunkLocation::Disk(r), Some(d)) => HeadChunkData::Disk(d.chunk(*r)?),
                (ChunkLocation::Disk(r), None) => {
                    return Err(HeadChunksError::RefNotFound {
                        chunk_ref: *r,
                        path: Default::default(),
                    });
                }
            };
            out.push(ChunkSnapshot {
                min_time: c.min_time,
                max_time: c.max_time,
                data,
            });
        }
        if self.open.num_samples() > 0 {
            let max_time = self.last().map_or(self.open_min_time, |(t, _)| t);
            if max_time >= mint && self.open_min_time <= maxt {
                out.push(ChunkSnapshot {
                    min_time: self.open_min_time,
                    max_time,
                    data: HeadChunkData::Memory(Arc::from(self.open.bytes())),
                });
            }
        }
        Ok(out)
    }
}

/// The first multiple of `range` strictly after `t` (the end of `t`'s block range).
pub(crate) fn next_boundary(t: Timestamp, range: i64) -> Timestamp {
    t.div_euclid(range).saturating_add(1).saturating_mul(range)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_at_120_samples_and_at_range_boundaries() {
        let s = series(1);
        let mut d = s.data.lock();
        for i in 0..250 {
            let want = if i % 120 == 0 {
                Appended::NewChunk
            } else {
                Appended::ToOpenChunk
            };
            assert_eq!(d.append(1, i * 10, i as f64, 1_000_000, None), want);
        }
        assert_eq!(d.closed.len(), 2);
        assert_eq!(d.closed[0].min_time, 0);
        assert_eq!(d.closed[0].max_time, 1190);
        assert_eq!(d.open.num_samples(), 10);
        // Crossing the range boundary cuts even a short chunk.
        assert_eq!(
            d.append(1, 1_000_000, 1.0, 1_000_000, None),
            Appended::NewChunk
        );
        assert_eq!(d.closed.len(), 3);
        assert_eq!(d.truncate_before(1_000_000), (3, false));
        assert_eq!(d.closed.len(), 0);
        assert!(d.has_samples_in(1_000_000, 1_000_000) && !d.has_samples_in(0, 999_999));
    }

    fn series(id: u64) -> MemSeries {
        let labels = Labels::from_pairs(&[("__name__", "x")]);
        MemSeries::new(id, labels.hash(), labels)
    }

    /// Every byte here is paid once per series. With the `Arc` header a series is one
    /// allocation of at most 200 bytes: glibc serves up to 200 in a 208-byte chunk, the
    /// next size is 224.
    #[test]
    fn a_series_stays_within_its_allocation_class() {
        assert!(
            std::mem::size_of::<MemSeries>() + 16 <= 200,
            "MemSeries grew to {} bytes",
            std::mem::size_of::<MemSeries>()
        );
        assert_eq!(std::mem::size_of::<ClosedChunk>(), 32);
    }

    /// The open chunk's buffer grows by a quarter; a cut keeps it for the next chunk
    /// (the series of a head cut together, and buffers given back and grown again would
    /// leave the heap full of holes), unless the chunk just cut was less than half its
    /// size: then the buffer is given back, so a series never holds much more room than
    /// its chunks need.
    #[test]
    fn open_chunk_room_follows_its_chunks() {
        let s = series(1);
        let mut d = s.data.lock();
        assert!(
            d.open.allocated_bytes() <= 8,
            "an empty series allocates no chunk room"
        );
        // Noisy values: about 8 bytes a sample.
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut room_at_cut = 0;
        for i in 0..150 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if i == 120 {
                room_at_cut = d.open.allocated_bytes();
            }
            d.append(1, i * 15_000, (x >> 11) as f64, 7_200_000, None);
            let (used, room) = (d.open.bytes().len(), d.open.allocated_bytes());
            if i < 120 {
                assert!(
                    room <= used + used / 4 + 40,
                    "{room} bytes of room for {used}"
                );
            } else {
                assert_eq!(room, room_at_cut, "the cut kept the buffer");
            }
        }
        assert_eq!(d.open.num_samples(), 30, "cut at 120 samples");
        assert_eq!(d.closed.capacity(), 1, "closed chunks grow one at a time");
        // Constant values from here: the next chunk is a fraction of the buffer, which the
        // cut after it gives back.
        for i in 150..250 {
            d.append(1, i * 15_000, 1.0, 7_200_000, None);
        }
        assert_eq!(d.closed.len(), 2);
        let (used, room) = (d.open.bytes().len(), d.open.allocated_bytes());
        assert!(
            room <= used + used / 4 + 40,
            "{room} bytes of room for {used}"
        );
    }

    #[test]
    fn rejects_like_prometheus() {
        let s = series(1);
        let mut d = s.data.lock();
        d.append(1, 100, 1.0, 7_200_000, None);
        assert_eq!(d.check(99, 1.0), Err(Rejection::OutOfOrder));
        assert_eq!(d.check(100, 2.0), Err(Rejection::Duplicate));
        assert_eq!(d.check(100, 1.0), Ok(()));
        assert_eq!(
            d.append(1, 100, 1.0, 7_200_000, None),
            Appended::No,
            "exact duplicate is ignored"
        );
    }
}
