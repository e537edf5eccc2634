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
//! the series, with the decoding of one batch overlapping the insertion of the previous
//! one, and the postings index read back whole beside them; the WAL, however long, is
//! not read.
//!
//! Layout (integers little-endian and fixed width unless marked uvarint), closed by a
//! CRC32-C of all before it:
//! ```text
//! "KILNHEAD" u32 version=2
//! u64 wal_segment u64 wal_len u64 next_series_id i64 chunks_from (the head's oldest
//!     valid time: the chunk files' chunks ending at or after it are the snapshot's)
//! u32 n_files { u64 seq u64 readable_len u64 disk_len i64 maxt u32 crc32c }
//! u32 n_batches { u32 batch_len (bytes after this field), u32 n_series,
//!                 per series: u64 id, u32 len, the labels' packed buffer (len bytes),
//!                             u32 n_chunks { i64 mint i64 maxt u64 ref }
//!                             and, when n_chunks > 0, i64 t u64 value_bits }
//! u32 postings_len (bytes after this field) {
//!     u32 n_names { u32 len, name, u32 n_values { u32 len, value, u32 n_ids,
//!                   uvarint first id, n_ids - 1 uvarint gaps to the next id (>= 1) } } }
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
use crate::block::mmap::FileBytes;
use crate::fingerprint::SetFingerprint;
use crate::head::chunk_disk::{ChunkFingerprint, FileExtent};
use crate::head::series::{ChunkLocation, ClosedChunk, MemSeries};
use crate::head::{Head, MemPostings};
use crate::wal::segment::{segment_path, segment_range};

const FILE: &str = "head-snapshot";
/// The record of a clean shutdown older Kilns wrote; a full replay follows it.
const LEGACY_FILE: &str = "clean-shutdown";
const MAGIC: &[u8; 8] = b"KILNHEAD";
const VERSION: u32 = 2;
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
    /// The head's oldest valid time at the close: every chunk in the chunk files that
    /// ends at or after it is one of the snapshot's, and no other.
    pub(super) chunks_from: i64,
    pub(super) files: Vec<FileExtent>,
    /// The whole file; `batches` are ranges of it.
    bytes: FileBytes,
    batches: Vec<std::ops::Range<usize>>,
    /// The postings section, decoded while the series are restored.
    postings: std::ops::Range<usize>,
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
    let complete = std::thread::scope(|scope| {
        let postings = scope.spawn(|| encode_postings(head));
        let batches_written = write_batches(&mut out, series, open_chunks);
        // Joined whatever happened to the batches (a thread that panicked and was not
        // joined would panic the scope); a panic there abandons the snapshot.
        match (batches_written?, postings.join()) {
            (true, Ok(postings)) => {
                out.put_piece(&postings)?;
                Ok::<_, DbError>(true)
            }
            _ => Ok(false),
        }
    })?;
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
                    if tx.send((i, encode_batch(series, open))).is_err() {
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

fn encode_batch(batch: &[&MemSeries], open_chunks: &[Option<ClosedChunk>]) -> Option<Vec<u8>> {
    // Sized for six chunks a series, to grow rarely.
    let size: usize = batch
        .iter()
        .map(|s| 40 + s.labels.packed().len() + 6 * CHUNK_LEN)
        .sum();
    let mut buf = Vec::with_capacity(4 + size);
    put_len(&mut buf, batch.len());
    for (s, open) in batch.iter().zip(open_chunks) {
        buf.extend_from_slice(&s.id.to_le_bytes());
        let labels = s.labels.packed();
        put_len(&mut buf, labels.len());
        buf.extend_from_slice(labels);
        let data = s.data.lock();
        if (data.open.num_samples() > 0) != open.is_some() {
            return None;
        }
        let chunks = data.closed.len() + usize::from(open.is_some());
        put_len(&mut buf, chunks);
        for c in data.closed.iter().chain(open) {
            let ChunkLocation::Disk(r) = c.loc else {
                return None;
            };
            buf.extend_from_slice(&c.min_time.to_le_bytes());
            buf.extend_from_slice(&c.max_time.to_le_bytes());
            buf.extend_from_slice(&r.to_le_bytes());
        }
        if chunks > 0 {
            let (t, v) = data.last().unwrap_or((i64::MIN, f64::NAN));
            buf.extend_from_slice(&t.to_le_bytes());
            buf.extend_from_slice(&v.to_bits().to_le_bytes());
        }
    }
    Some(buf)
}

/// The head's postings as the snapshot stores them (see the layout above).
fn encode_postings(head: &Head) -> Vec<u8> {
    let postings = head.postings();
    let mut buf = Vec::with_capacity(1 << 20);
    let names: Vec<_> = postings.by_name().collect();
    put_len(&mut buf, names.len());
    for (name, values) in names {
        put_bytes(&mut buf, name.as_bytes());
        put_len(&mut buf, values.len());
        for (value, ids) in values {
            put_bytes(&mut buf, value.as_bytes());
            put_len(&mut buf, ids.len());
            let mut previous = 0;
            for (i, &id) in ids.iter().enumerate() {
                put_uvarint(&mut buf, if i == 0 { id } else { id - previous });
                previous = id;
            }
        }
    }
    buf
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
    let postings = start..start + len;
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
            postings,
            aliases,
            tombstones,
        },
    ))
}

/// One series of a batch as stored: chunks still encoded, `CHUNK_LEN` bytes each.
struct StoredSeries<'a> {
    id: u64,
    labels: kiln_model::Labels,
    chunks: &'a [u8],
    last: (i64, f64),
}

/// Bytes of one chunk entry: mint, maxt, ref.
const CHUNK_LEN: usize = 24;

/// Walks one batch: calls `f` with each series, in order.
fn for_each_series<'a>(
    batch: &'a [u8],
    mut f: impl FnMut(StoredSeries<'a>),
) -> Result<(), &'static str> {
    let mut c = Cursor { rest: batch };
    let n = c.count(16)?;
    for _ in 0..n {
        let id = c.u64()?;
        let len = c.count(1)?;
        let packed = c.take(len)?;
        let labels = kiln_model::Labels::from_packed(packed).ok_or("malformed labels")?;
        let k = c.count(CHUNK_LEN)?;
        let chunks = c.take(k * CHUNK_LEN)?;
        let last = if k > 0 {
            (c.i64()?, f64::from_bits(c.u64()?))
        } else {
            (i64::MIN, f64::NAN)
        };
        f(StoredSeries {
            id,
            labels,
            chunks,
            last,
        });
    }
    if !c.rest.is_empty() {
        return Err("trailing bytes in a batch");
    }
    Ok(())
}

/// `(mint, maxt, ref)` of each chunk entry in `chunks`.
fn chunk_entries(chunks: &[u8]) -> impl Iterator<Item = (i64, i64, u64)> + '_ {
    chunks.chunks_exact(CHUNK_LEN).map(|e| {
        let word = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&e[i..i + 8]);
            w
        };
        (
            i64::from_le_bytes(word(0)),
            i64::from_le_bytes(word(8)),
            u64::from_le_bytes(word(16)),
        )
    })
}

impl Snapshot {
    /// Whether every chunk ends at or before `max_valid` (the future bound), judged by
    /// the chunk files' newest chunks (every chunk of the snapshot is in them). A
    /// snapshot with a chunk past it is not used: a replay decides what of it to keep.
    pub(super) fn within(&self, max_valid: i64) -> bool {
        self.files.iter().all(|f| f.maxt <= max_valid)
    }
}

/// What the decoding of a snapshot's series found, for the head's counters.
#[derive(Default)]
struct Decoded {
    series: u64,
    chunks: u64,
    /// Oldest and newest sample time of the kept chunks (`None`: no chunk kept).
    range: Option<(i64, i64)>,
    /// Of every (series, label pair), to hold against the postings read back.
    pairs: PairsFingerprint,
    /// Of every chunk the snapshot names (kept or not), to hold against the files.
    files: ChunkFingerprint,
}

/// What [`restore`] restored.
pub(super) struct Restored {
    pub(super) series: u64,
    pub(super) chunks: u64,
    /// Of every chunk the snapshot names: the caller holds it against the one
    /// [`ChunkDiskMapper::open_trusted`](crate::head::chunk_disk::ChunkDiskMapper::open_trusted)
    /// took of the files, and throws the restore away if they differ.
    pub(super) files: ChunkFingerprint,
}

/// The fingerprint of a set of (series id, label pair) entries: the series' labels and
/// the postings each give one, and a restore uses the postings it read back only if the
/// two agree. The checksum vouches for the bytes; this vouches that the postings index
/// exactly the series beside them, which only a bug could break, at the cost of one
/// hash per label pair (the labels were read for checking anyway).
#[derive(Default, Clone, Copy, PartialEq, Eq)]
struct PairsFingerprint(SetFingerprint);

impl PairsFingerprint {
    fn pair_hash(name: &[u8], value: &[u8]) -> u64 {
        use std::hash::BuildHasher;
        foldhash::fast::FixedState::with_seed(0x6b69_6c6e).hash_one((name, value))
    }

    /// Adds series `id` under the pair whose [`pair_hash`](Self::pair_hash) is `pair`.
    fn add(&mut self, pair: u64, id: u64) {
        self.0.add(&[pair, id]);
    }
}

/// Restores `snapshot` into `head` (whose chunk files were opened from its extents):
/// creates every series with its chunks, the aliases and the tombstones. Chunks ending
/// before `min_valid` (covered by blocks since) are left out, as a replay would. Returns
/// the number of series and chunks restored and the fingerprint of the chunks named.
///
/// Three threads at once: one decodes the series batch by batch and builds each one
/// whole (labels, hash, chunk list, newest sample), this one adds them to the head's
/// series tables, and a third reads the postings section back into an index, which
/// is installed at the end. A batch or postings that do not decode, or a series whose
/// id or labels the head already has (the checksum held, so only a bug writes any of
/// these), is an error: the head is then partly restored and the caller must not use
/// it.
pub(super) fn restore(
    head: &Head,
    snapshot: &Snapshot,
    min_valid: i64,
) -> Result<Restored, &'static str> {
    head.raise_next_series_id(snapshot.next_series_id);
    // Every batch but the last holds BATCH series.
    let at_most = snapshot.batches.len() * BATCH;
    head.reserve_series(at_most);
    let (to_insert, inserts) = std::sync::mpsc::sync_channel::<Vec<Arc<MemSeries>>>(4);
    let bytes = &snapshot.bytes;
    let batches = &snapshot.batches;
    let decoded = std::thread::scope(|scope| -> Result<Decoded, &'static str> {
        let decoder = scope.spawn(move || decode_series(bytes, batches, min_valid, to_insert));
        let postings = &bytes[snapshot.postings.clone()];
        let indexer = scope.spawn(move || decode_postings(postings));
        let mut inserted_all = true;
        let mut ids_increase = true;
        let mut all: Vec<u64> = Vec::with_capacity(at_most);
        for batch in inserts {
            // Ids strictly increasing: none is restored twice (the head starts empty).
            for s in &batch {
                ids_increase &= all.last().is_none_or(|&last| last < s.id);
                if !ids_increase {
                    break;
                }
                all.push(s.id);
            }
            inserted_all = ids_increase && batch.iter().all(|s| head.insert_restored(s));
            if !inserted_all {
                break;
            }
        }
        let (mut postings, pairs) = indexer
            .join()
            .unwrap_or(Err("the indexing thread panicked"))?;
        let decoded = decoder
            .join()
            .unwrap_or(Err("the decoding thread panicked"))?;
        if !ids_increase {
            return Err("series not in increasing id order");
        }
        if !inserted_all {
            return Err("a label set is in the snapshot twice");
        }
        if pairs != decoded.pairs {
            return Err("the postings do not index exactly the series");
        }
        postings.set_all(all);
        head.install_postings(postings);
        Ok(decoded)
    })?;
    if let Some((mint, maxt)) = decoded.range {
        head.note_sample_time(mint);
        head.note_sample_time(maxt);
    }
    head.stats
        .chunks_created
        .fetch_add(decoded.chunks, Ordering::Relaxed);
    for &(wal_id, head_id) in &snapshot.aliases {
        head.add_wal_alias(wal_id, head_id);
    }
    for &(id, mint, maxt) in &snapshot.tombstones {
        head.add_tombstone(id, mint, maxt);
    }
    Ok(Restored {
        series: decoded.series,
        chunks: decoded.chunks,
        files: decoded.files,
    })
}

/// Reads the postings section back into an index (without its list of all ids), with
/// the fingerprint of its entries.
fn decode_postings(section: &[u8]) -> Result<(MemPostings, PairsFingerprint), &'static str> {
    let mut c = Cursor { rest: section };
    let mut postings = MemPostings::default();
    let mut pairs = PairsFingerprint::default();
    for _ in 0..c.count(8)? {
        let name = c.str()?;
        let n = c.count(8)?;
        let mut values = Vec::with_capacity(n);
        for _ in 0..n {
            let value = c.str()?;
            let pair = PairsFingerprint::pair_hash(name.as_bytes(), value.as_bytes());
            let n_ids = c.count(1)?;
            let mut ids = Vec::with_capacity(n_ids);
            let mut id = 0u64;
            for i in 0..n_ids {
                let gap = c.uvarint()?;
                if i > 0 && gap == 0 {
                    return Err("postings not in increasing order");
                }
                id = id.checked_add(gap).ok_or("series id out of range")?;
                pairs.add(pair, id);
                ids.push(id);
            }
            values.push((Box::from(value), ids));
        }
        if !postings.insert_name(name, values) {
            return Err("a label name or value twice in the postings");
        }
    }
    if !c.rest.is_empty() {
        return Err("trailing bytes after the postings");
    }
    Ok((postings, pairs))
}

/// Decodes every batch into whole series and sends each batch to `out`; stops early,
/// without an error, when the receiver has gone.
fn decode_series(
    bytes: &[u8],
    batches: &[std::ops::Range<usize>],
    min_valid: i64,
    out: std::sync::mpsc::SyncSender<Vec<Arc<MemSeries>>>,
) -> Result<Decoded, &'static str> {
    let mut d = Decoded::default();
    let mut kept: Vec<(i64, i64, u64)> = Vec::new();
    for range in batches {
        let mut batch = Vec::with_capacity(BATCH);
        for_each_series(&bytes[range.clone()], |s| {
            for (name, value) in s.labels.iter_bytes() {
                d.pairs.add(PairsFingerprint::pair_hash(name, value), s.id);
            }
            let hash = s.labels.hash();
            let mut series = MemSeries::new(s.id, hash, s.labels);
            kept.clear();
            for (mint, maxt, chunk_ref) in chunk_entries(s.chunks) {
                d.files.add(chunk_ref, s.id, mint, maxt);
                if maxt >= min_valid {
                    kept.push((mint, maxt, chunk_ref));
                }
            }
            if let (Some(first), Some(newest)) = (kept.first(), kept.last()) {
                let (lo, hi) = d.range.unwrap_or((first.0, newest.1));
                d.range = Some((lo.min(first.0), hi.max(newest.1)));
                d.chunks += series.data.get_mut().adopt_disk_chunks(&kept, s.last) as u64;
            }
            d.series += 1;
            batch.push(Arc::new(series));
        })?;
        if out.send(batch).is_err() {
            break;
        }
    }
    Ok(d)
}
