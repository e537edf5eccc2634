//! The head's store of full chunks on disk: `<data>/chunks_head/`, in Prometheus's
//! `chunks_head` format (see `docs/format/head_chunks.md`), so Prometheus and Kiln can
//! each open the other's directory.
//!
//! Once a head series cuts a chunk, the chunk never changes again; [`ChunkDiskMapper`]
//! appends it to the current file and hands back a [`u64`] chunk ref, and the series keeps
//! only that ref. Reads come back as [`ChunkBytes`], a cheap handle on a memory-mapped
//! file, so resident memory holds the open chunks, the write buffer and whatever pages
//! readers touch (file-backed and reclaimable by the kernel).
//!
//! Write path: [`ChunkDiskMapper::write_chunk`] encodes the record into the write buffer of
//! the active file (starting a new file first when the record would pass the size limit)
//! and writes the buffer out with one positioned write when it reaches
//! [`ChunkDiskMapperOptions::write_buffer_size`]. A ref is readable as soon as
//! `write_chunk` returns: refs into the buffered tail are served by copying from the
//! buffer.
//!
//! Read path: [`ChunkDiskMapper::chunk`] finds the file, bounds-checks the record and
//! returns a slice of that file's mapping. Checksums are verified when files are opened
//! and by [`ChunkDiskMapper::iterate`], not on every read.
//!
//! Invariants that make the memory maps sound (see `map_file`):
//! - a mapping never extends past the bytes already written to its file (`flushed`), so
//!   it never covers a hole past end-of-file, which would fault (SIGBUS) when read;
//! - files are only appended to while open; the only truncations are the repair in
//!   `open` (before the file is mapped) and trimming a failed write's leftovers when a
//!   file is finished (past every mapping's end);
//! - deleting a file only unlinks it: mappings that readers still hold stay valid.
//!
//! Locking: one `RwLock` around all state. Readers take it shared for a lookup and an
//! `Arc` clone; writers take it exclusively, which includes the buffered write (every
//! `write_buffer_size` bytes) and the fsync when a file is finished. No callback runs
//! with the lock held.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::ops::{Deref, Range};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use kiln_storage::ErrorKind;
use memmap2::{Mmap, MmapOptions};
use parking_lot::{RwLock, RwLockWriteGuard};

/// Magic number at the start of every head chunk file (big-endian on disk).
pub(crate) const MAGIC: u32 = 0x0130_BC91;
/// The one format version.
pub(crate) const FORMAT_V1: u8 = 1;
/// Magic (4), version (1), padding (3).
pub(crate) const HEADER_SIZE: usize = 8;
/// Default largest file size: 128 MiB, as Prometheus.
pub(crate) const DEFAULT_MAX_FILE_SIZE: usize = 128 << 20;
/// Default write buffer: 4 MiB, as Prometheus.
pub(crate) const DEFAULT_WRITE_BUFFER_SIZE: usize = 4 << 20;
/// Smallest chunk data `write_chunk` accepts. Prometheus treats fewer than
/// [`MAX_META_SIZE`] bytes at the end of a file as padding (or corruption), so a record
/// must be at least that long; real chunks (XOR: 2-byte count, a timestamp and a value)
/// are always longer.
pub(crate) const MIN_CHUNK_DATA_LEN: usize = 4;
/// Mask of the out-of-order flag in the encoding byte (Prometheus's `OutOfOrderMask`).
/// This module stores the byte as given.
#[cfg(test)]
pub(crate) const OUT_OF_ORDER_MASK: u8 = 0x80;

/// Series ref, mint and maxt, 8 bytes each, then the encoding byte.
const FIXED_META_SIZE: usize = 8 + 8 + 8 + 1;
/// Longest length field: a uvarint of at most 32 bits.
const MAX_LEN_FIELD_SIZE: usize = 5;
const CRC_SIZE: usize = 4;
/// Largest record minus its data (with the longest length field).
const MAX_META_SIZE: usize = FIXED_META_SIZE + MAX_LEN_FIELD_SIZE + CRC_SIZE;
/// A file must hold at least the header and one smallest record.
const MIN_FILE_SIZE: usize = HEADER_SIZE + MAX_META_SIZE + MIN_CHUNK_DATA_LEN;

/// Result alias for this module.
pub(crate) type Result<T, E = HeadChunksError> = std::result::Result<T, E>;

/// An error of the head chunk store.
mod error;
mod files;
mod record;
#[cfg(test)]
mod tests;

pub(crate) use error::{Corruption, HeadChunksError};
use files::*;
pub(crate) use record::EncodedChunks;
use record::*;

mod trusted;
pub(crate) use trusted::ChunkFingerprint;

/// Options of a [`ChunkDiskMapper`].
#[derive(Debug, Clone)]
pub(crate) struct ChunkDiskMapperOptions {
    /// Largest size of one file in bytes: a new file is started when the next record
    /// would pass it. At least 50 bytes, at most 2^32-1 (offsets are 32 bits).
    /// Default 128 MiB.
    pub(crate) max_file_size: usize,
    /// Bytes of records buffered in memory before they are written to the file.
    /// 0 writes every chunk at once. Default 4 MiB.
    pub(crate) write_buffer_size: usize,
}

impl Default for ChunkDiskMapperOptions {
    fn default() -> Self {
        ChunkDiskMapperOptions {
            max_file_size: DEFAULT_MAX_FILE_SIZE,
            write_buffer_size: DEFAULT_WRITE_BUFFER_SIZE,
        }
    }
}

/// Builds a chunk ref: file sequence in the upper 32 bits, offset of the record in the
/// lower 32.
pub(crate) fn chunk_ref(seq: u32, offset: u32) -> u64 {
    (u64::from(seq) << 32) | u64::from(offset)
}

/// Splits a chunk ref into (file sequence, record offset).
pub(crate) fn unpack_ref(chunk_ref: u64) -> (u64, u64) {
    (chunk_ref >> 32, chunk_ref & 0xFFFF_FFFF)
}

/// Name of the file with sequence `seq`: six or more decimal digits, as Prometheus.
fn file_name(seq: u64) -> String {
    format!("{seq:06}")
}

/// The data bytes of one chunk: a range of a memory-mapped file, or (for a chunk still
/// in the write buffer) an owned copy. Cloning is an `Arc` clone; holding one keeps the
/// mapping alive even after its file is deleted.
#[derive(Clone)]
pub(crate) struct ChunkBytes(Repr);

#[derive(Clone)]
enum Repr {
    Mapped { map: Arc<Mmap>, range: Range<usize> },
    Owned(Arc<[u8]>),
}

impl ChunkBytes {
    fn bytes(&self) -> &[u8] {
        match &self.0 {
            // The range was checked against the mapping when the handle was made.
            Repr::Mapped { map, range } => map.get(range.clone()).unwrap_or_default(),
            Repr::Owned(b) => b,
        }
    }
}

impl AsRef<[u8]> for ChunkBytes {
    fn as_ref(&self) -> &[u8] {
        self.bytes()
    }
}

impl Deref for ChunkBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.bytes()
    }
}

impl std::fmt::Debug for ChunkBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.0 {
            Repr::Mapped { .. } => "mapped",
            Repr::Owned(_) => "owned",
        };
        f.debug_struct("ChunkBytes")
            .field("kind", &kind)
            .field("len", &self.len())
            .finish()
    }
}

/// One chunk file as a clean close left it (see [`ChunkDiskMapper::close`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileExtent {
    pub(crate) seq: u64,
    /// Bytes holding the header and whole records.
    pub(crate) readable_len: u64,
    /// Size on disk.
    pub(crate) disk_len: u64,
    /// Largest maxt of its chunks (`i64::MIN` for none).
    pub(crate) maxt: i64,
    /// CRC32-C of its first `readable_len` bytes.
    pub(crate) crc: u32,
}

/// What [`ChunkDiskMapper::iterate`] reports for each stored chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChunkMetaOnDisk {
    pub(crate) series_ref: u64,
    pub(crate) chunk_ref: u64,
    pub(crate) mint: i64,
    pub(crate) maxt: i64,
    /// The encoding byte as stored, out-of-order flag (the high bit) included.
    pub(crate) encoding: u8,
    /// The first two data bytes, big-endian: the sample count of XOR and histogram
    /// chunks.
    pub(crate) num_samples: u16,
}

/// The head's store of full chunks. Internally synchronized; see the module docs.
pub(crate) struct ChunkDiskMapper {
    dir: PathBuf,
    opts: ChunkDiskMapperOptions,
    state: RwLock<State>,
    /// Set by the first failed write; see [`ChunkDiskMapper::write_chunk`].
    failed: AtomicBool,
    /// Whether open dropped chunks, or may have: the files of a run whose writes failed,
    /// damaged files, bytes after the newest file's last record (see
    /// [`open_with_options`](Self::open_with_options)).
    lost_chunks: bool,
}

/// Name of the file that records a failed chunk write (not a chunk file name: those are
/// all digits).
const WRITE_FAILED_MARKER: &str = "write-failed";

impl std::fmt::Debug for ChunkDiskMapper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkDiskMapper")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl ChunkDiskMapper {
    /// Opens (creating if needed) the store in `dir` with default options.
    pub(crate) fn open(dir: &Path) -> Result<Self> {
        Self::open_with_options(dir, ChunkDiskMapperOptions::default())
    }

    /// Opens the store in `dir`: creates the directory, checks that the files are
    /// consecutive, verifies every file's header and every record's CRC, and drops what
    /// is damaged, as Prometheus does: the first damaged file is cut before its bad
    /// record (removed if its header is bad), and every later file is removed, as is
    /// every file after a gap in the sequence. Chunks of a series are written in time
    /// order, so each series keeps an unbroken run of its oldest chunks and the WAL
    /// replay, which holds every sample of the head, supplies the rest. One warning
    /// names the file, the offset and what was dropped; [`lost_chunks`](Self::lost_chunks)
    /// then tells the caller the files no longer hold every chunk written. A torn tail
    /// of the newest file (a crash mid-write) is the common case of this; any bytes
    /// after the newest file's last whole record are cut off and count the same (see
    /// `Checked::trimmed`). Only I/O failures are errors. Touches every page of every
    /// file once.
    pub(crate) fn open_with_options(dir: &Path, opts: ChunkDiskMapperOptions) -> Result<Self> {
        if opts.max_file_size < MIN_FILE_SIZE || opts.max_file_size > u32::MAX as usize {
            return Err(HeadChunksError::InvalidOption {
                what: "max_file_size",
                value: opts.max_file_size as u64,
                min: MIN_FILE_SIZE as u64,
                max: u64::from(u32::MAX),
            });
        }
        fs::create_dir_all(dir).map_err(HeadChunksError::io("create directory", dir))?;
        let marker = dir.join(WRITE_FAILED_MARKER);
        let discarded = marker.exists();
        if discarded {
            // A chunk write failed in an earlier run: the files may miss a chunk in the
            // middle of a series, so they cannot be adopted. The WAL has every sample.
            tracing::warn!(dir = %dir.display(), "an earlier head chunk write failed; discarding chunk files");
            for (_, path) in list_files(dir)? {
                fs::remove_file(&path).map_err(HeadChunksError::io("remove", &path))?;
            }
            fs::remove_file(&marker).map_err(HeadChunksError::io("remove", &marker))?;
        }
        let mut listed = list_files(dir)?.into_iter().peekable();
        let mut files = BTreeMap::new();
        let mut damage: Option<Damage> = None;
        let mut trimmed = false;
        let mut previous: Option<u64> = None;
        while let Some((seq, path)) = listed.next() {
            if seq > u64::from(u32::MAX) {
                return Err(HeadChunksError::SequenceOverflow { path, seq });
            }
            if let Some(prev) = previous
                && seq != prev + 1
            {
                // A file is missing: what follows cannot be adopted.
                damage = Some(Damage {
                    offset: 0,
                    problem: Corruption::MissingFile {
                        previous: dir.join(file_name(prev)),
                    },
                    dropped_bytes: fs::metadata(&path).map_or(0, |m| m.len()),
                    path,
                });
                break;
            }
            previous = Some(seq);
            let checked = open_existing(&path, listed.peek().is_none())?;
            trimmed |= checked.trimmed;
            if let Some(entry) = checked.entry {
                files.insert(seq, entry);
            }
            if checked.damage.is_some() {
                damage = checked.damage;
                break;
            }
        }
        if let Some(d) = &damage {
            let mut later = 0u64;
            let mut later_bytes = 0u64;
            for (_, path) in listed {
                later_bytes += fs::metadata(&path).map_or(0, |m| m.len());
                fs::remove_file(&path).map_err(HeadChunksError::io("remove", &path))?;
                later += 1;
            }
            if d.problem.is_missing_file() {
                // The file after the gap was not opened: it goes whole.
                fs::remove_file(&d.path).map_err(HeadChunksError::io("remove", &d.path))?;
            }
            sync_dir(dir)?;
            tracing::warn!(
                path = %d.path.display(),
                offset = d.offset,
                problem = %d.problem,
                dropped_bytes = d.dropped_bytes,
                later_files_removed = later,
                later_bytes_removed = later_bytes,
                "damaged head chunk file: dropped its chunks from the damage on and every later file; the WAL replay restores their samples"
            );
        }
        let next_seq = files.keys().next_back().map_or(1, |s| s + 1);
        Ok(ChunkDiskMapper {
            dir: dir.to_path_buf(),
            opts,
            state: RwLock::new(State {
                files,
                active: None,
                next_seq,
            }),
            failed: AtomicBool::new(false),
            lost_chunks: discarded || damage.is_some() || trimmed,
        })
    }

    /// Appends a chunk and returns its ref, readable at once through [`chunk`](Self::chunk).
    /// The record goes to the write buffer, which is written out when full (or on
    /// [`flush`](Self::flush)); a new file is started when the record would pass the size
    /// limit. `series_ref` must not be 0 (a zero series ref, mint and maxt read as the end
    /// of data), and `data` must be 4 bytes or longer and fit in one file.
    ///
    /// On error nothing was stored. Allocates only when the write buffer grows.
    ///
    /// After one failed write every later write fails at once and the next open discards
    /// the files (a marker file records the failure): files with a hole in a series
    /// must never be adopted on restart, as that would skip the hole's samples in the WAL.
    pub(crate) fn write_chunk(
        &self,
        series_ref: u64,
        mint: i64,
        maxt: i64,
        encoding: u8,
        data: &[u8],
    ) -> Result<u64> {
        if self.failed.load(Ordering::Acquire) {
            return Err(HeadChunksError::WritesDisabled {
                dir: self.dir.clone(),
            });
        }
        let result = self.append_record(series_ref, mint, maxt, encoding, data);
        if let Err(e) = &result
            && !matches!(e, HeadChunksError::InvalidChunk { .. })
        {
            self.mark_failed();
        }
        result
    }

    fn append_record(
        &self,
        series_ref: u64,
        mint: i64,
        maxt: i64,
        encoding: u8,
        data: &[u8],
    ) -> Result<u64> {
        let record_len = self.checked_record_len(series_ref, data)?;
        let mut state = self.state.write();
        self.place_record(&mut state, record_len, maxt, |buf| {
            encode_record(buf, series_ref, mint, maxt, encoding, data)
        })
        .map_err(|e| e.unwrap_or_else(|| self.offset_overflow(series_ref, data.len())))
    }

    /// The length of `data`'s record, after checking that it can be stored.
    fn checked_record_len(&self, series_ref: u64, data: &[u8]) -> Result<usize> {
        let invalid = |reason| HeadChunksError::InvalidChunk {
            series_ref,
            len: data.len(),
            reason,
        };
        if series_ref == 0 {
            return Err(invalid("series ref 0 is reserved"));
        }
        if data.len() < MIN_CHUNK_DATA_LEN {
            return Err(invalid("chunk data must be at least 4 bytes"));
        }
        let record_len = FIXED_META_SIZE + uvarint_len(data.len() as u64) + data.len() + CRC_SIZE;
        if HEADER_SIZE + record_len > self.opts.max_file_size {
            return Err(invalid("chunk does not fit in one head chunk file"));
        }
        Ok(record_len)
    }

    fn offset_overflow(&self, series_ref: u64, len: usize) -> HeadChunksError {
        HeadChunksError::InvalidChunk {
            series_ref,
            len,
            reason: "chunk offset does not fit in 32 bits",
        }
    }

    /// Places a record of `record_len` bytes, written by `write`, in the active file
    /// (starting a new file when it would pass the size limit) and returns its ref.
    /// `Err(None)`: the offset does not fit a ref. On error nothing was stored.
    fn place_record(
        &self,
        state: &mut State,
        record_len: usize,
        maxt: i64,
        write: impl FnOnce(&mut Vec<u8>),
    ) -> std::result::Result<u64, Option<HeadChunksError>> {
        let buffer_size = self.opts.write_buffer_size;
        let active = match state.active.take() {
            Some(a) if !a.has_chunks() || a.size() + record_len <= self.opts.max_file_size => {
                state.active.insert(a)
            }
            other => {
                state.active = other;
                state.cut(&self.dir, buffer_size)?
            }
        };
        if !active.buf.is_empty() && active.buf.len() + record_len > buffer_size {
            active.flush(buffer_size)?;
        }
        let offset = active.size();
        let (Ok(seq32), Ok(off32)) = (u32::try_from(active.seq), u32::try_from(offset)) else {
            return Err(None);
        };
        let prev_len = active.buf.len();
        let prev_maxt = active.maxt;
        write(&mut active.buf);
        active.maxt = active.maxt.max(maxt);
        if active.buf.len() >= buffer_size
            && let Err(e) = active.flush(buffer_size)
        {
            active.buf.truncate(prev_len);
            active.maxt = prev_maxt;
            return Err(Some(e));
        }
        Ok(chunk_ref(seq32, off32))
    }

    /// Adds a chunk's record, CRC included, to `out`, without taking the mapper's lock;
    /// [`write_encoded`](Self::write_encoded) stores them. The checks are
    /// [`write_chunk`](Self::write_chunk)'s.
    pub(crate) fn encode_chunk(
        &self,
        out: &mut EncodedChunks,
        series_ref: u64,
        mint: i64,
        maxt: i64,
        encoding: u8,
        data: &[u8],
    ) -> Result<()> {
        self.checked_record_len(series_ref, data)?;
        encode_record(&mut out.bytes, series_ref, mint, maxt, encoding, data);
        out.records.push((out.bytes.len(), maxt));
        Ok(())
    }

    /// Stores records made by [`encode_chunk`](Self::encode_chunk), in order, and returns
    /// their refs. Under the lock this only copies bytes, so threads that encode their
    /// chunks apart store them at memory speed (a shutdown persists every open chunk
    /// this way). A failure is [`write_chunk`](Self::write_chunk)'s (a failed write
    /// disables later ones and makes the next open discard the files); the records
    /// before the failing one are stored.
    pub(crate) fn write_encoded(&self, chunks: &EncodedChunks) -> Result<Vec<u64>> {
        if self.failed.load(Ordering::Acquire) {
            return Err(HeadChunksError::WritesDisabled {
                dir: self.dir.clone(),
            });
        }
        let mut refs = Vec::with_capacity(chunks.records.len());
        let mut state = self.state.write();
        let mut start = 0;
        for &(end, maxt) in &chunks.records {
            let record = &chunks.bytes[start..end];
            match self.place_record(&mut state, record.len(), maxt, |buf| {
                buf.extend_from_slice(record)
            }) {
                Ok(r) => refs.push(r),
                Err(Some(e)) => {
                    drop(state);
                    self.mark_failed();
                    return Err(e);
                }
                Err(None) => {
                    let series_ref = record
                        .first_chunk::<8>()
                        .map_or(0, |b| u64::from_be_bytes(*b));
                    return Err(self.offset_overflow(series_ref, record.len()));
                }
            }
            start = end;
        }
        Ok(refs)
    }

    /// Disables writes after a failed one and records it for the next open.
    fn mark_failed(&self) {
        self.failed.store(true, Ordering::Release);
        let marker = self.dir.join(WRITE_FAILED_MARKER);
        if let Err(me) = fs::write(&marker, b"") {
            tracing::error!(path = %marker.display(), err = %me, "cannot record a failed head chunk write");
        }
    }

    /// The data bytes of the chunk at `chunk_ref`. The record's bounds are checked, its CRC
    /// is not (it was checked when the file was opened, or we wrote it). A ref into a
    /// deleted file is [`HeadChunksError::RefNotFound`]; one that does not point at a
    /// whole record is [`HeadChunksError::BadRef`] (a ref pointing into the middle of a
    /// record can slip through and return wrong bytes: refs must come from this store).
    ///
    /// No allocation for flushed chunks; a chunk still in the write buffer is copied.
    pub(crate) fn chunk(&self, chunk_ref: u64) -> Result<ChunkBytes> {
        if let Located::Ready(bytes) = self.state.read().locate(&self.dir, chunk_ref)? {
            return Ok(bytes);
        }
        let mut state = self.state.write();
        let (seq, _) = unpack_ref(chunk_ref);
        state.ensure_mapped(seq)?;
        match RwLockWriteGuard::downgrade(state).locate(&self.dir, chunk_ref)? {
            Located::Ready(bytes) => Ok(bytes),
            // ensure_mapped just mapped every readable byte.
            Located::NeedsMap => Err(HeadChunksError::BadRef {
                chunk_ref,
                path: self.dir.join(file_name(seq)),
                offset: unpack_ref(chunk_ref).1,
                problem: Corruption::Truncated {
                    need: 0,
                    available: 0,
                },
            }),
        }
    }

    /// Calls `f` for every chunk of every file, oldest file first, in file order — for
    /// replaying the head on start. Writes out the write buffer first. CRCs are checked
    /// again; a bad record is [`HeadChunksError::Corrupt`] with its file and offset. The
    /// lock is not held while `f` runs. An error from `f` stops the walk and is returned.
    pub(crate) fn iterate<E>(
        &self,
        mut f: impl FnMut(ChunkMetaOnDisk) -> Result<(), E>,
    ) -> Result<(), E>
    where
        E: From<HeadChunksError>,
    {
        let snapshot = {
            let mut state = self.state.write();
            if let Some(a) = state.active.as_mut() {
                a.flush(self.opts.write_buffer_size)?;
            }
            let seqs: Vec<u64> = state.files.keys().copied().collect();
            let mut snapshot = Vec::with_capacity(seqs.len());
            for seq in seqs {
                if let Some(mapped) = state.ensure_mapped(seq)? {
                    snapshot.push((seq, mapped));
                }
            }
            snapshot
        };
        for (seq, (map, readable, path)) in snapshot {
            let buf = map.get(..readable).unwrap_or_default();
            let mut off = HEADER_SIZE;
            loop {
                let rec = match next_record(buf, off) {
                    Ok(Some(rec)) => rec,
                    Ok(None) => break,
                    Err(problem) => {
                        return Err(HeadChunksError::Corrupt {
                            path,
                            offset: off as u64,
                            problem,
                        }
                        .into());
                    }
                };
                let data = buf.get(rec.data.clone()).unwrap_or_default();
                let num_samples = match data {
                    [a, b, ..] => u16::from_be_bytes([*a, *b]),
                    _ => 0,
                };
                f(ChunkMetaOnDisk {
                    series_ref: rec.series_ref,
                    // Both fit in 32 bits (checked when the files were opened or created).
                    chunk_ref: (seq << 32) | off as u64,
                    mint: rec.mint,
                    maxt: rec.maxt,
                    encoding: rec.encoding,
                    num_samples,
                })?;
                off = rec.end;
            }
        }
        Ok(())
    }

    /// Deletes the oldest files whose chunks all end before `mint` (maxt < mint), stopping
    /// at the first file that must stay so the remaining files stay consecutive. The
    /// active file is finished first if it has chunks (the next write starts a new file),
    /// so an idle store's last file can go too. Returns the number of files deleted.
    ///
    /// The caller must have dropped every ref into the deleted range; `ChunkBytes`
    /// already handed out stay readable (unlinking keeps the mappings valid), later
    /// lookups of those refs are [`HeadChunksError::RefNotFound`].
    pub(crate) fn truncate(&self, mint: i64) -> Result<usize> {
        let doomed: Vec<PathBuf> = {
            let mut state = self.state.write();
            if state.active.as_ref().is_some_and(Active::has_chunks) {
                state.finish_active(self.opts.write_buffer_size)?;
            }
            let active_seq = state.active.as_ref().map(|a| a.seq);
            let seqs: Vec<u64> = state
                .files
                .iter()
                .take_while(|(seq, e)| Some(**seq) != active_seq && e.maxt < mint)
                .map(|(seq, _)| *seq)
                .collect();
            seqs.iter()
                .filter_map(|seq| state.files.remove(seq))
                .map(|e| e.path)
                .collect()
        };
        for (i, path) in doomed.iter().enumerate() {
            if let Err(e) = fs::remove_file(path)
                && e.kind() != io::ErrorKind::NotFound
            {
                // Later files stay on disk (and reappear on the next open), keeping the
                // sequence without gaps.
                tracing::warn!(deleted = i, "head chunk truncation stopped");
                return Err(HeadChunksError::io("remove", path)(e));
            }
        }
        Ok(doomed.len())
    }

    #[cfg(test)]
    /// Writes the write buffer to the active file (no fsync: files are fsynced when they
    /// are finished and on close; the WAL, not this store, is what makes samples
    /// durable).
    pub(crate) fn flush(&self) -> Result<()> {
        let mut state = self.state.write();
        match state.active.as_mut() {
            Some(a) => a.flush(self.opts.write_buffer_size),
            None => Ok(()),
        }
    }

    /// Whether this open dropped chunks (damaged files, or the files of a run whose
    /// writes failed): the files then no longer hold every chunk written, and only a
    /// full WAL replay restores the head.
    pub(crate) fn lost_chunks(&self) -> bool {
        self.lost_chunks
    }

    /// Whether a write failed in this run (the next open discards the files).
    pub(crate) fn has_failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    /// Writes everything out, fsyncs the active file and the directory, and closes.
    /// Returns every file's extent as it is now on disk, for a head snapshot to reopen
    /// the files by ([`open_trusted`](Self::open_trusted)).
    pub(crate) fn close(self) -> Result<Vec<FileExtent>> {
        let mut state = self.state.write();
        state.finish_active(self.opts.write_buffer_size)?;
        sync_dir(&self.dir)?;
        Ok(state
            .files
            .iter()
            .map(|(&seq, e)| FileExtent {
                seq,
                readable_len: e.readable_len as u64,
                disk_len: e.disk_len,
                maxt: e.maxt,
                crc: e.crc,
            })
            .collect())
    }

    #[cfg(test)]
    /// Bytes of all files, including the unwritten buffer and (for files written by
    /// Prometheus) zero padding past the data: what retention by size should count.
    pub(crate) fn size_bytes(&self) -> u64 {
        let state = self.state.read();
        state
            .files
            .iter()
            .map(|(seq, e)| match &state.active {
                Some(a) if a.seq == *seq => a.size() as u64,
                _ => e.disk_len,
            })
            .sum()
    }
}

impl Drop for ChunkDiskMapper {
    /// Best effort for a store dropped without [`close`](ChunkDiskMapper::close): write
    /// the buffer out. Nothing is lost if this fails: the WAL has every sample.
    fn drop(&mut self) {
        if let Err(e) = self
            .state
            .get_mut()
            .finish_active(self.opts.write_buffer_size)
        {
            tracing::warn!(err = %e, "head chunks: finishing the active file on drop failed");
        }
    }
}
