//! The head snapshot written at a clean shutdown, so that the next open restores the
//! head without reading the WAL or the head chunk files.
//!
//! [`super::Db::close`] writes every open chunk to `chunks_head/`, closes the WAL and the
//! chunk files, and then writes `head-snapshot` in the data directory: every series (id,
//! labels, the references, time ranges and newest sample of its chunks), the WAL ids that
//! alias a series, the tombstones, the next series id, the extent of every chunk file,
//! and where the WAL ends. [`take`] reads it on open and removes it, so it counts for one
//! open only. It is used only if everything still matches: the WAL ends exactly where it
//! did (nothing was written after the clean close, nothing lost), the chunk files are
//! exactly those recorded, with their sizes and whole-file CRC32-Cs, and the snapshot's
//! own checksum holds. Anything
//! else means a full WAL replay, the path every crash takes anyway; the WAL and the
//! chunk files are never changed by the snapshot, so Prometheus (which ignores the file)
//! still opens the directory as if Kiln had not written it.
//!
//! Opening from a snapshot costs a read of one file, one checksum pass over the chunk
//! files (memory speed, no parsing) and the creation of the series, with the decoding of
//! one batch of series overlapping the insertion of the previous one; the WAL, however
//! long, is not read.
//!
//! Layout (integers little-endian, fixed width), closed by a CRC32-C of all before it:
//! ```text
//! "KILNHEAD" u32 version=1
//! u64 wal_segment u64 wal_len u64 next_series_id
//! u32 n_files { u64 seq u64 readable_len u64 disk_len i64 maxt u32 crc32c }
//! u32 n_batches { u32 batch_len (bytes after this field), u32 n_series,
//!                 per series: u64 id, u32 len, the labels' packed buffer (len bytes),
//!                             u32 n_chunks { i64 mint i64 maxt u64 ref }
//!                             and, when n_chunks > 0, i64 t u64 value_bits }
//! u32 n_aliases { u64 wal_id u64 head_id }
//! u32 n_tombstones { u64 series_id i64 mint i64 maxt }
//! u32 crc32c
//! ```

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tracing::warn;

use super::DbError;
use crate::head::Head;
use crate::head::chunk_disk::FileExtent;
use crate::head::series::{ChunkLocation, MemSeries};
use crate::wal::segment::{segment_path, segment_range};

const FILE: &str = "head-snapshot";
/// The record of a clean shutdown older Kilns wrote; a full replay follows it.
const LEGACY_FILE: &str = "clean-shutdown";
const MAGIC: &[u8; 8] = b"KILNHEAD";
const VERSION: u32 = 1;
/// Series per WAL series record in the snapshot.
const BATCH: usize = 4096;

/// Where the WAL ends: last segment index and its length in bytes.
fn wal_end(dir: &Path) -> Result<Option<(u64, u64)>, DbError> {
    let wal = dir.join("wal");
    if !wal.is_dir() {
        return Ok(None);
    }
    let Some((_, last)) = segment_range(&wal)? else {
        return Ok(None);
    };
    let path = segment_path(&wal, last);
    let len = std::fs::metadata(&path)
        .map_err(|e| DbError::io("reading segment size", &path, e))?
        .len();
    Ok(Some((last, len)))
}

/// A snapshot read back by [`take`]: its checksum verified, everything but the series
/// decoded; the series batches are decoded while they are restored.
pub(super) struct Snapshot {
    pub(super) next_series_id: u64,
    pub(super) files: Vec<FileExtent>,
    /// The whole file; `batches` are ranges of it.
    bytes: Vec<u8>,
    batches: Vec<std::ops::Range<usize>>,
    pub(super) aliases: Vec<(u64, u64)>,
    pub(super) tombstones: Vec<(u64, i64, i64)>,
}

/// Writes the snapshot of `head` in `dir`, after the WAL and the chunk files (whose
/// extents are `files`) were closed, and returns its size. Returns `None`, writing
/// nothing, when a series holds a chunk that is not in the chunk files.
pub(super) fn write(
    dir: &Path,
    head: &Head,
    files: &[FileExtent],
) -> Result<Option<usize>, DbError> {
    let Some((segment, wal_len)) = wal_end(dir)? else {
        return Ok(None);
    };
    let mut buf = Vec::with_capacity(1 << 20);
    buf.extend_from_slice(MAGIC);
    buf.extend_from_slice(&VERSION.to_le_bytes());
    for v in [segment, wal_len, head.next_series_id()] {
        buf.extend_from_slice(&v.to_le_bytes());
    }
    put_len(&mut buf, files.len());
    for f in files {
        buf.extend_from_slice(&f.seq.to_le_bytes());
        buf.extend_from_slice(&f.readable_len.to_le_bytes());
        buf.extend_from_slice(&f.disk_len.to_le_bytes());
        buf.extend_from_slice(&f.maxt.to_le_bytes());
        buf.extend_from_slice(&f.crc.to_le_bytes());
    }
    let mut series = head.all_series();
    series.sort_unstable_by_key(|s| s.id);
    let Some(batches) = encode_batches(&series) else {
        return Ok(None);
    };
    put_len(&mut buf, batches.len());
    for b in &batches {
        put_len(&mut buf, b.len());
        buf.extend_from_slice(b);
    }
    let aliases = head.wal_aliases();
    put_len(&mut buf, aliases.len());
    for (w, h) in aliases {
        buf.extend_from_slice(&w.to_le_bytes());
        buf.extend_from_slice(&h.to_le_bytes());
    }
    let stones = head.all_tombstones();
    put_len(&mut buf, stones.len());
    for (id, iv) in stones {
        buf.extend_from_slice(&id.to_le_bytes());
        buf.extend_from_slice(&iv.mint.to_le_bytes());
        buf.extend_from_slice(&iv.maxt.to_le_bytes());
    }
    let crc = crc32c::crc32c(&buf);
    buf.extend_from_slice(&crc.to_le_bytes());

    // Not fsynced: the snapshot is a cache that its checksum vouches for. If a power
    // loss leaves it partly written, the next open finds the checksum wrong and replays
    // the WAL, which was fsynced on close. Shutdown does not wait for the disk.
    let path = dir.join(FILE);
    let tmp = dir.join(format!("{FILE}.tmp"));
    let mut f =
        std::fs::File::create(&tmp).map_err(|e| DbError::io("creating head snapshot", &tmp, e))?;
    f.write_all(&buf)
        .map_err(|e| DbError::io("writing head snapshot", &tmp, e))?;
    drop(f);
    std::fs::rename(&tmp, &path).map_err(|e| DbError::io("renaming", &tmp, e))?;
    Ok(Some(buf.len()))
}

/// Reads the snapshot in `dir` if it still matches the WAL; `None` otherwise (and for
/// a missing or damaged file, with a warning for the latter). Removes it (unless
/// `read_only`), and any record of a clean shutdown an older Kiln left.
pub(super) fn take(dir: &Path, read_only: bool) -> Result<Option<Snapshot>, DbError> {
    let path = dir.join(FILE);
    if !read_only {
        let legacy = dir.join(LEGACY_FILE);
        if legacy.exists() {
            std::fs::remove_file(&legacy).map_err(|e| DbError::io("removing", &legacy, e))?;
        }
    }
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(DbError::io("reading head snapshot", &path, e)),
    };
    if !read_only {
        std::fs::remove_file(&path).map_err(|e| DbError::io("removing", &path, e))?;
    }
    let parsed = match parse(bytes) {
        Ok(p) => p,
        Err(what) => {
            warn!(path = %path.display(), problem = what, "ignoring a damaged head snapshot; replaying the WAL");
            return Ok(None);
        }
    };
    let (wal_at_close, snapshot) = parsed;
    Ok((wal_end(dir)? == Some(wal_at_close)).then_some(snapshot))
}

/// Encodes `series` in batches of [`BATCH`], on up to 4 threads: the encoding is mostly
/// waiting for memory (each series, its labels and its chunk list live apart), and a
/// shutdown waits for it. `None` when a series holds a chunk outside the chunk files.
fn encode_batches(series: &[Arc<MemSeries>]) -> Option<Vec<Vec<u8>>> {
    let batches: Vec<&[Arc<MemSeries>]> = series.chunks(BATCH).collect();
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 4)
        .min(batches.len().max(1));
    let mut out: Vec<Option<Vec<u8>>> = vec![None; batches.len()];
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|w| {
                let batches = &batches;
                scope.spawn(move || {
                    (w..batches.len())
                        .step_by(threads)
                        .map(|i| (i, encode_batch(batches[i])))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for worker in workers {
            // A panicking worker leaves its batches out, which fails the snapshot.
            for (i, b) in worker.join().unwrap_or_default() {
                out[i] = b;
            }
        }
    });
    out.into_iter().collect()
}

fn encode_batch(batch: &[Arc<MemSeries>]) -> Option<Vec<u8>> {
    let mut buf = Vec::with_capacity(batch.len() * 256);
    put_len(&mut buf, batch.len());
    for s in batch {
        buf.extend_from_slice(&s.id.to_le_bytes());
        let labels = s.labels.packed();
        put_len(&mut buf, labels.len());
        buf.extend_from_slice(labels);
        let data = s.data.lock();
        if data.open.num_samples() > 0 {
            return None;
        }
        put_len(&mut buf, data.closed.len());
        for c in &data.closed {
            let ChunkLocation::Disk(r) = c.loc else {
                return None;
            };
            buf.extend_from_slice(&c.min_time.to_le_bytes());
            buf.extend_from_slice(&c.max_time.to_le_bytes());
            buf.extend_from_slice(&r.to_le_bytes());
        }
        if !data.closed.is_empty() {
            let (t, v) = data.last().unwrap_or((i64::MIN, f64::NAN));
            buf.extend_from_slice(&t.to_le_bytes());
            buf.extend_from_slice(&v.to_bits().to_le_bytes());
        }
    }
    Some(buf)
}

fn put_len(buf: &mut Vec<u8>, n: usize) {
    // Counts are bounded by memory long before 4 Gi; saturate rather than wrap.
    buf.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes());
}

/// A cursor over the snapshot's bytes; every read fails cleanly past the end.
struct Cursor<'a> {
    rest: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], &'static str> {
        if self.rest.len() < n {
            return Err("truncated");
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn u32(&mut self) -> Result<u32, &'static str> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, &'static str> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    fn i64(&mut self) -> Result<i64, &'static str> {
        self.u64().map(|v| v as i64)
    }

    /// A count of items of at least `item` bytes each, checked against what is left so
    /// that a damaged count cannot make us allocate.
    fn count(&mut self, item: usize) -> Result<usize, &'static str> {
        let n = self.u32()? as usize;
        if n.saturating_mul(item) > self.rest.len() {
            return Err("count past the end");
        }
        Ok(n)
    }
}

fn parse(bytes: Vec<u8>) -> Result<((u64, u64), Snapshot), &'static str> {
    let Some((body, crc)) = bytes.split_last_chunk::<4>() else {
        return Err("truncated");
    };
    if crc32c::crc32c(body) != u32::from_le_bytes(*crc) {
        return Err("checksum mismatch");
    }
    let mut c = Cursor { rest: body };
    if c.take(8)? != MAGIC {
        return Err("not a head snapshot");
    }
    if c.u32()? != VERSION {
        return Err("unknown version");
    }
    let wal = (c.u64()?, c.u64()?);
    let next_series_id = c.u64()?;
    let n_files = c.count(36)?;
    let mut files = Vec::with_capacity(n_files);
    for _ in 0..n_files {
        files.push(FileExtent {
            seq: c.u64()?,
            readable_len: c.u64()?,
            disk_len: c.u64()?,
            maxt: c.i64()?,
            crc: c.u32()?,
        });
    }
    let n_batches = c.count(4)?;
    let mut batches = Vec::with_capacity(n_batches);
    for _ in 0..n_batches {
        // Decoded while restored; only found here.
        let len = c.count(1)?;
        let start = body.len() - c.rest.len();
        c.take(len)?;
        batches.push(start..start + len);
    }
    let n = c.count(16)?;
    let mut aliases = Vec::with_capacity(n);
    for _ in 0..n {
        aliases.push((c.u64()?, c.u64()?));
    }
    let n = c.count(24)?;
    let mut tombstones = Vec::with_capacity(n);
    for _ in 0..n {
        tombstones.push((c.u64()?, c.i64()?, c.i64()?));
    }
    if !c.rest.is_empty() {
        return Err("trailing bytes");
    }
    Ok((
        wal,
        Snapshot {
            next_series_id,
            files,
            bytes,
            batches,
            aliases,
            tombstones,
        },
    ))
}

/// The chunk part of one series in a batch.
struct SeriesMeta {
    chunks: Vec<(i64, i64, u64)>,
    last: (i64, f64),
}

/// One series of a batch: its id and labels.
struct BatchSeries {
    id: u64,
    labels: kiln_model::Labels,
}

/// Walks one batch: calls `f` with each series and its chunks, in order.
fn for_each_series(
    batch: &[u8],
    mut f: impl FnMut(BatchSeries, SeriesMeta),
) -> Result<(), &'static str> {
    let mut c = Cursor { rest: batch };
    let n = c.count(16)?;
    for _ in 0..n {
        let id = c.u64()?;
        let len = c.count(1)?;
        let packed = c.take(len)?;
        let labels = kiln_model::Labels::from_packed(packed).ok_or("malformed labels")?;
        let k = c.count(24)?;
        let mut chunks = Vec::with_capacity(k);
        for _ in 0..k {
            chunks.push((c.i64()?, c.i64()?, c.u64()?));
        }
        let last = if k > 0 {
            (c.i64()?, f64::from_bits(c.u64()?))
        } else {
            (i64::MIN, f64::NAN)
        };
        f(BatchSeries { id, labels }, SeriesMeta { chunks, last });
    }
    if !c.rest.is_empty() {
        return Err("trailing bytes in a batch");
    }
    Ok(())
}

impl Snapshot {
    /// Whether every chunk ends at or before `max_valid` (the future bound), judged by
    /// the chunk files' newest chunks (every chunk of the snapshot is in them). A
    /// snapshot with a chunk past it is not used: a replay decides what of it to keep.
    pub(super) fn within(&self, max_valid: i64) -> bool {
        self.files.iter().all(|f| f.maxt <= max_valid)
    }
}

/// Restores `snapshot` into `head` (whose chunk files were opened from its extents):
/// creates every series with its chunks, the aliases and the tombstones. Chunks ending
/// before `min_valid` (covered by blocks since) are left out, as a replay would. Returns
/// the number of series and chunks restored.
///
/// A second thread decodes the batches (labels are the costly part) while this one
/// inserts the previous batch; the head's insertion is serial anyway (one postings
/// lock). A batch that does not decode (the checksum held, so only a bug writes one) is
/// an error: the head is then partly restored and the caller must not use it.
pub(super) fn restore(
    head: &Head,
    snapshot: Snapshot,
    min_valid: i64,
) -> Result<(u64, u64), &'static str> {
    head.raise_next_series_id(snapshot.next_series_id);
    let (mut n_series, mut chunks_restored) = (0u64, 0u64);
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<(BatchSeries, SeriesMeta)>>(2);
    let bytes = &snapshot.bytes;
    let batches = &snapshot.batches;
    std::thread::scope(|scope| -> Result<(), &'static str> {
        let decoder = scope.spawn(move || -> Result<(), &'static str> {
            for range in batches {
                let mut out = Vec::with_capacity(BATCH);
                for_each_series(&bytes[range.clone()], |s, m| out.push((s, m)))?;
                if tx.send(out).is_err() {
                    break;
                }
            }
            Ok(())
        });
        for batch in rx {
            for (s, meta) in batch {
                n_series += 1;
                let series = head.create_with_id(s.id, s.labels);
                let keep_from = meta.chunks.partition_point(|c| c.1 < min_valid);
                let chunks = &meta.chunks[keep_from..];
                if let (Some(first), Some(newest)) = (chunks.first(), chunks.last()) {
                    head.note_sample_time(first.0);
                    head.note_sample_time(newest.1);
                    let adopted = series.data.lock().adopt_disk_chunks(chunks, meta.last);
                    chunks_restored += adopted as u64;
                }
            }
        }
        decoder
            .join()
            .unwrap_or(Err("the decoding thread panicked"))
    })?;
    head.stats
        .chunks_created
        .fetch_add(chunks_restored, Ordering::Relaxed);
    for &(wal_id, head_id) in &snapshot.aliases {
        head.add_wal_alias(wal_id, head_id);
    }
    for &(id, mint, maxt) in &snapshot.tombstones {
        head.add_tombstone(id, mint, maxt);
    }
    Ok((n_series, chunks_restored))
}
