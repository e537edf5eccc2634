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
//! files (memory speed, no parsing, while the series are restored) and the creation of
//! the series, with the building of one batch overlapping the insertion of the previous
//! one and the indexing of the one before; the WAL, however long, is not read.
//!
//! Layout (integers little-endian and fixed width unless marked uvarint, or varint:
//! zigzag-encoded uvarint), closed by a CRC32-C of all before it:
//! ```text
//! "KILNHEAD" u32 version=3
//! u64 wal_segment u64 wal_len u64 next_series_id i64 chunks_from (the head's oldest
//!     valid time: the chunk files' chunks ending at or after it are the snapshot's)
//! u32 n_files { u64 seq u64 readable_len u64 disk_len i64 maxt u32 crc32c }
//! u32 n_batches { u32 batch_len (bytes after this field), u32 n_series,
//!     per series: uvarint id (the gap from the batch's previous series),
//!                 u64 hash of its labels,
//!                 uvarint n_pairs { uvarint pair number - previous pair number },
//!                 uvarint n_chunks { varint mint - previous maxt,
//!                                    uvarint maxt - mint, varint ref - previous ref }
//!                 and, when n_chunks > 0, varint t - last maxt, u64 value_bits }
//! u32 pairs_len (bytes after this field) {
//!     u32 n_names (in byte order) { u32 len, name, u32 n_values { u32 len, value } } }
//! u32 n_aliases { u64 wal_id u64 head_id }
//! u32 n_tombstones { u64 series_id i64 mint i64 maxt }
//! u32 crc32c
//! ```
//! ("previous" starts at 0 for each series.) A series' labels are numbers in the pair
//! table, which holds each label pair once (numbered in its order, so the numbers of
//! a label set increase with its names), and the postings index is rebuilt from them.
//! At 400,000 series that is a quarter of the bytes the packed labels, the postings
//! lists and fixed-width chunk entries took, and writing those bytes was a large part
//! of a clean shutdown on a machine whose page cache hands out cold pages slowly.

use std::io::Write;
use std::path::Path;

use tracing::warn;

use super::DbError;
use crate::block::mmap::FileBytes;
use crate::head::chunk_disk::FileExtent;
use crate::head::series::{ChunkLocation, ClosedChunk, MemSeries};
use crate::head::{Head, MemPostings};
use crate::wal::segment::{segment_path, segment_range};

mod restore;
pub(super) use restore::restore;

const FILE: &str = "head-snapshot";
/// The record of a clean shutdown older Kilns wrote; a full replay follows it.
const LEGACY_FILE: &str = "clean-shutdown";
const MAGIC: &[u8; 8] = b"KILNHEAD";
const VERSION: u32 = 3;
/// Series per batch of the snapshot.
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
/// and the pair table decoded; those are decoded by the restore.
pub(super) struct Snapshot {
    pub(super) next_series_id: u64,
    /// The head's oldest valid time at the close: every chunk in the chunk files that
    /// ends at or after it is one of the snapshot's, and no other.
    pub(super) chunks_from: i64,
    pub(super) files: Vec<FileExtent>,
    /// The whole file; `batches` are ranges of it.
    bytes: FileBytes,
    batches: Vec<std::ops::Range<usize>>,
    /// The pair table, decoded before the series are restored.
    pairs: std::ops::Range<usize>,
    pub(super) aliases: Vec<(u64, u64)>,
    pub(super) tombstones: Vec<(u64, i64, i64)>,
}

/// Writes the snapshot of `head` in `dir`, after the WAL and the chunk files (whose
/// extents are `files`) were closed, and returns its size. Returns `None`, writing
/// nothing, when a series holds a chunk that is not in the chunk files.
pub(super) fn write(
    dir: &Path,
    head: &Head,
    series: &[&MemSeries],
    open_chunks: &[Option<ClosedChunk>],
    files: &[FileExtent],
) -> Result<Option<usize>, DbError> {
    let Some((segment, wal_len)) = wal_end(dir)? else {
        return Ok(None);
    };
    let mut start = Vec::with_capacity(64 + files.len() * 36);
    start.extend_from_slice(MAGIC);
    start.extend_from_slice(&VERSION.to_le_bytes());
    for v in [segment, wal_len, head.next_series_id()] {
        start.extend_from_slice(&v.to_le_bytes());
    }
    start.extend_from_slice(&head.min_valid_time().to_le_bytes());
    put_len(&mut start, files.len());
    for f in files {
        start.extend_from_slice(&f.seq.to_le_bytes());
        start.extend_from_slice(&f.readable_len.to_le_bytes());
        start.extend_from_slice(&f.disk_len.to_le_bytes());
        start.extend_from_slice(&f.maxt.to_le_bytes());
        start.extend_from_slice(&f.crc.to_le_bytes());
    }
    let n_batches = series.len().div_ceil(BATCH);
    put_len(&mut start, n_batches);
    let mut end = Vec::new();
    let aliases = head.wal_aliases();
    put_len(&mut end, aliases.len());
    for (w, h) in aliases {
        end.extend_from_slice(&w.to_le_bytes());
        end.extend_from_slice(&h.to_le_bytes());
    }
    let stones = head.all_tombstones();
    put_len(&mut end, stones.len());
    for (id, iv) in stones {
        end.extend_from_slice(&id.to_le_bytes());
        end.extend_from_slice(&iv.mint.to_le_bytes());
        end.extend_from_slice(&iv.maxt.to_le_bytes());
    }

    // Not fsynced: the snapshot is a cache that its checksum vouches for. If a power
    // loss leaves it partly written, the next open finds the checksum wrong and replays
    // the WAL, which was fsynced on close. Shutdown does not wait for the disk.
    let path = dir.join(FILE);
    let tmp = dir.join(format!("{FILE}.tmp"));
    let file =
        std::fs::File::create(&tmp).map_err(|e| DbError::io("creating head snapshot", &tmp, e))?;
    let mut out = SnapshotFile {
        file,
        crc: 0,
        bytes: 0,
        path: &tmp,
    };
    out.put(&start)?;
    let postings = head.postings();
    let pairs = PairTable::of(&postings);
    let complete = write_batches(&mut out, series, open_chunks, &pairs)?;
    if complete {
        out.put_piece(&pairs.section)?;
    }
    drop(postings);
    if !complete {
        drop(out);
        let _ = std::fs::remove_file(&tmp);
        return Ok(None);
    }
    let crc = crc32c::crc32c_append(out.crc, &end);
    end.extend_from_slice(&crc.to_le_bytes());
    out.put(&end)?;
    let bytes = out.bytes;
    drop(out);
    std::fs::rename(&tmp, &path).map_err(|e| DbError::io("renaming", &tmp, e))?;
    Ok(Some(bytes))
}

/// The snapshot file being written, with the checksum and length of what it holds.
struct SnapshotFile<'a> {
    file: std::fs::File,
    crc: u32,
    bytes: usize,
    path: &'a Path,
}

impl SnapshotFile<'_> {
    fn put(&mut self, bytes: &[u8]) -> Result<(), DbError> {
        self.file
            .write_all(bytes)
            .map_err(|e| DbError::io("writing head snapshot", self.path, e))?;
        self.crc = crc32c::crc32c_append(self.crc, bytes);
        self.bytes += bytes.len();
        Ok(())
    }

    /// Writes `bytes` after their length.
    fn put_piece(&mut self, bytes: &[u8]) -> Result<(), DbError> {
        self.put(&u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_le_bytes())?;
        self.put(bytes)
    }
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
    // Mapped, not read: reading copied a hundred megabytes at 400k series into a fresh
    // buffer, faulting in each of its pages, before the restore could start.
    let file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(DbError::io("opening head snapshot", &path, e)),
    };
    let bytes =
        FileBytes::map_whole(&file).map_err(|e| DbError::io("mapping head snapshot", &path, e))?;
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

/// Encodes `series` in batches of [`BATCH`] on up to 4 threads (the encoding is mostly
/// waiting for memory: each series, its labels and its chunk list live apart) and
/// writes them to `out` in order as they come, so the writing overlaps the encoding and
/// only the batches that arrive early are held. `open_chunks[i]` is where `series[i]`'s
/// open chunk was written. `Ok(false)` when a series holds a chunk outside the chunk
/// files (or a worker failed): the snapshot is then abandoned.
fn write_batches(
    out: &mut SnapshotFile<'_>,
    series: &[&MemSeries],
    open_chunks: &[Option<ClosedChunk>],
    pairs: &PairTable<'_>,
) -> Result<bool, DbError> {
    if series.len() != open_chunks.len() {
        return Ok(false);
    }
    let batches: Vec<_> = series
        .chunks(BATCH)
        .zip(open_chunks.chunks(BATCH))
        .collect();
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 4)
        .min(batches.len().max(1));
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel(2 * threads);
        let mut workers = Vec::with_capacity(threads);
        for w in 0..threads {
            let (tx, batches) = (tx.clone(), &batches);
            workers.push(scope.spawn(move || {
                for i in (w..batches.len()).step_by(threads) {
                    let (series, open) = batches[i];
                    // The writer hung up: it gave up on the snapshot.
                    if tx.send((i, encode_batch(series, open, pairs))).is_err() {
                        return;
                    }
                }
            }));
        }
        drop(tx);
        let written = write_in_order(out, rx);
        // Every worker is joined (one not joined that panicked would panic the scope);
        // one that panicked left its batches out, which `written` shows.
        for w in workers {
            let _ = w.join();
        }
        Ok(written? == batches.len())
    })
}

/// Writes the batches coming from `rx` (numbered from 0) in order; returns how many,
/// stopping at a batch that could not be encoded (which drops `rx`, so the encoders stop).
fn write_in_order(
    out: &mut SnapshotFile<'_>,
    rx: std::sync::mpsc::Receiver<(usize, Option<Vec<u8>>)>,
) -> Result<usize, DbError> {
    let mut early = std::collections::BTreeMap::new();
    let mut next = 0;
    for (i, batch) in rx {
        let Some(batch) = batch else {
            return Ok(next);
        };
        early.insert(i, batch);
        while let Some(batch) = early.remove(&next) {
            out.put_piece(&batch)?;
            next += 1;
        }
    }
    Ok(next)
}

/// The snapshot's table of label pairs, made from the postings index: each pair once,
/// numbered in the order the section lists them (names in byte order, so the numbers
/// of a label set's pairs increase with its names).
struct PairTable<'a> {
    section: Vec<u8>,
    /// Keyed by bytes: a label set's pairs are read without checking them as UTF-8.
    numbers: std::collections::HashMap<(&'a [u8], &'a [u8]), u32, foldhash::fast::RandomState>,
}

impl<'a> PairTable<'a> {
    fn of(postings: &'a MemPostings) -> PairTable<'a> {
        let mut section = Vec::with_capacity(1 << 16);
        let mut numbers = std::collections::HashMap::default();
        let mut names: Vec<_> = postings.by_name().collect();
        names.sort_unstable_by(|a, b| a.0.cmp(b.0));
        put_len(&mut section, names.len());
        for (name, values) in names {
            put_bytes(&mut section, name.as_bytes());
            put_len(&mut section, values.len());
            for (value, _) in values {
                put_bytes(&mut section, value.as_bytes());
                let n = u32::try_from(numbers.len()).unwrap_or(u32::MAX);
                numbers.insert((name.as_bytes(), value.as_bytes()), n);
            }
        }
        PairTable { section, numbers }
    }
}

fn encode_batch(
    batch: &[&MemSeries],
    open_chunks: &[Option<ClosedChunk>],
    pairs: &PairTable<'_>,
) -> Option<Vec<u8>> {
    // Sized for eight labels and six chunks a series, to grow rarely.
    let mut buf = Vec::with_capacity(4 + batch.len() * (24 + 8 * 2 + 6 * 12));
    put_len(&mut buf, batch.len());
    let mut previous_id = 0;
    // The previous series' pairs and their numbers: series next to each other by id
    // were mostly created together and share most pairs, and comparing a pair with the
    // one at the same place costs less than hashing it.
    let (mut previous, mut current) = (Vec::new(), Vec::new());
    for (s, open) in batch.iter().zip(open_chunks) {
        put_uvarint(&mut buf, s.id.wrapping_sub(previous_id));
        previous_id = s.id;
        buf.extend_from_slice(&s.hash.to_le_bytes());
        current.clear();
        for (i, l) in s.labels.iter_bytes().enumerate() {
            let n = match previous.get(i) {
                Some(&(p, n)) if p == l => n,
                // A pair the postings do not have: a bug; no snapshot.
                _ => *pairs.numbers.get(&l)?,
            };
            current.push((l, n));
        }
        put_uvarint(&mut buf, current.len() as u64);
        let mut previous_pair = 0;
        for (i, &(_, n)) in current.iter().enumerate() {
            if i > 0 && n <= previous_pair {
                return None;
            }
            put_uvarint(&mut buf, u64::from(n - previous_pair));
            previous_pair = n;
        }
        std::mem::swap(&mut previous, &mut current);
        let data = s.data.lock();
        if (data.open.num_samples() > 0) != open.is_some() {
            return None;
        }
        let chunks = data.closed.len() + usize::from(open.is_some());
        put_uvarint(&mut buf, chunks as u64);
        let (mut previous_maxt, mut previous_ref) = (0i64, 0u64);
        for c in data.closed.iter().chain(open) {
            let ChunkLocation::Disk(r) = c.loc else {
                return None;
            };
            put_varint(&mut buf, c.min_time.wrapping_sub(previous_maxt));
            put_uvarint(&mut buf, c.max_time.wrapping_sub(c.min_time) as u64);
            put_varint(&mut buf, r.wrapping_sub(previous_ref) as i64);
            (previous_maxt, previous_ref) = (c.max_time, r);
        }
        if chunks > 0 {
            let (t, v) = data.last().unwrap_or((i64::MIN, f64::NAN));
            put_varint(&mut buf, t.wrapping_sub(previous_maxt));
            buf.extend_from_slice(&v.to_bits().to_le_bytes());
        }
    }
    Some(buf)
}

fn put_bytes(buf: &mut Vec<u8>, bytes: &[u8]) {
    put_len(buf, bytes.len());
    buf.extend_from_slice(bytes);
}

fn put_uvarint(buf: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        buf.push((n as u8) | 0x80);
        n >>= 7;
    }
    buf.push(n as u8);
}

/// A signed number zigzag-encoded as a uvarint, so small magnitudes take few bytes.
fn put_varint(buf: &mut Vec<u8>, n: i64) {
    put_uvarint(buf, ((n << 1) ^ (n >> 63)) as u64);
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

    fn uvarint(&mut self) -> Result<u64, &'static str> {
        let mut n = 0u64;
        for i in 0..10 {
            let b = *self.take(1)?.first().ok_or("truncated")?;
            n |= u64::from(b & 0x7f)
                .checked_shl(7 * i)
                .ok_or("varint too long")?;
            if b < 0x80 {
                return Ok(n);
            }
        }
        Err("varint too long")
    }

    fn str(&mut self) -> Result<&'a str, &'static str> {
        let len = self.count(1)?;
        std::str::from_utf8(self.take(len)?).map_err(|_| "a label string is not UTF-8")
    }

    fn varint(&mut self) -> Result<i64, &'static str> {
        let n = self.uvarint()?;
        Ok((n >> 1) as i64 ^ -((n & 1) as i64))
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

fn parse(bytes: FileBytes) -> Result<((u64, u64), Snapshot), &'static str> {
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
    let chunks_from = c.i64()?;
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
    let len = c.count(1)?;
    let start = body.len() - c.rest.len();
    c.take(len)?;
    let pairs = start..start + len;
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
            chunks_from,
            files,
            bytes,
            batches,
            pairs,
            aliases,
            tombstones,
        },
    ))
}

impl Snapshot {
    /// Whether every chunk ends at or before `max_valid` (the future bound), judged by
    /// the chunk files' newest chunks (every chunk of the snapshot is in them). A
    /// snapshot with a chunk past it is not used: a replay decides what of it to keep.
    pub(super) fn within(&self, max_valid: i64) -> bool {
        self.files.iter().all(|f| f.maxt <= max_valid)
    }
}
