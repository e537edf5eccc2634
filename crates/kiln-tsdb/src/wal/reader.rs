//! [`WalReader`]: reads records back from a sequence of segments.
//!
//! Read path: segments are read one 32 KiB page at a time into one reused page buffer;
//! fragments are checked (type, page bounds, CRC32-C, first/middle/last order) and their
//! payloads appended to one reused record buffer, which is lent out when a record is
//! complete. Memory use is one page plus the largest record; nothing else is allocated
//! per record.
//!
//! Accepted without complaint, because Prometheus produces them:
//! - zero padding from a zero type byte to the end of its page;
//! - a segment whose last page is partial (the process died, or was killed, mid-page),
//!   provided it ends on a record boundary. This holds for any segment, not only the last:
//!   a restarted writer opens a new segment after the short one.
//!
//! Reported as corruption ([`CorruptionError`]) with the segment and byte offset: a bad
//! CRC, an invalid fragment type, a fragment crossing its page end, a fragment sequence
//! out of order, non-zero padding, and a torn tail (a segment ending inside a fragment or
//! between the fragments of one record). A record never spans segments, so a segment
//! ending inside a record is corrupt even if the next segment exists.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read, Seek};
use std::path::{Path, PathBuf};

use super::error::{
    Compression, CorruptionError, CorruptionReason, Result, SegmentLocation, WalError,
};
use super::record::RecordError;
use super::segment::{
    FragmentType, HEADER_SIZE, PAGE_SIZE, RESERVED_MASK, SNAPPY_FLAG, SegmentRef, TYPE_MASK,
    ZSTD_FLAG, compression_of, list_segments,
};

/// The largest record a compressed WAL record may decompress to. Prometheus never
/// writes records larger than a segment (128 MiB by default).
pub const MAX_DECOMPRESSED_RECORD: usize = 256 * 1024 * 1024;

/// A record as stored, with the compression its fragments are flagged with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawRecord<'a> {
    /// The record's bytes (still compressed if `compression` is not `None`).
    pub data: &'a [u8],
    pub compression: Compression,
}

/// Where the last record returned was stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordPosition {
    pub location: SegmentLocation,
    /// Byte offset of the record's first fragment header in the segment.
    pub start: u64,
    /// Byte offset just past its last fragment.
    pub end: u64,
}

enum Source {
    /// A file, read from the given byte offset (a record boundary).
    File(PathBuf, u64),
    Memory(Vec<u8>),
}

struct Pending {
    location: SegmentLocation,
    source: Source,
}

enum Input {
    File(File),
    Memory(io::Cursor<Vec<u8>>),
}

impl Input {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Input::File(f) => f.read(buf),
            Input::Memory(c) => c.read(buf),
        }
    }
}

/// The segment being read.
struct Current {
    location: SegmentLocation,
    path: Option<PathBuf>,
    input: Input,
    /// Segment offset of `page[0]`.
    page_start: u64,
    /// Valid bytes in the page buffer; less than a page only at the end of the segment.
    page_len: usize,
    /// Read position in the page buffer.
    pos: usize,
    /// True once a page has been loaded.
    started: bool,
}

/// Reads records from a sequence of segments. See the module docs.
///
/// After it returns an error the reader is finished: later calls return `Ok(None)`.
pub struct WalReader {
    pending: VecDeque<Pending>,
    cur: Option<Current>,
    page: Box<[u8]>,
    rec: Vec<u8>,
    /// Reused buffer for decompressed records.
    decoded: Vec<u8>,
    /// Reused zstd context, made at the first zstd record.
    zstd: Option<zstd::bulk::Decompressor<'static>>,
    last: Option<RecordPosition>,
}

impl WalReader {
    fn new(pending: VecDeque<Pending>) -> WalReader {
        WalReader {
            pending,
            cur: None,
            page: vec![0u8; PAGE_SIZE].into_boxed_slice(),
            rec: Vec::new(),
            decoded: Vec::new(),
            zstd: None,
            last: None,
        }
    }

    /// Reads every segment of `dir` (a WAL directory or a checkpoint directory).
    pub fn open(dir: impl AsRef<Path>) -> Result<WalReader> {
        Self::open_range(dir, None, None)
    }

    /// Reads the segments of `dir` from `first` to `last` inclusive (`None`: from the
    /// first / to the last one on disk). A bound given must exist.
    pub fn open_range(
        dir: impl AsRef<Path>,
        first: Option<u64>,
        last: Option<u64>,
    ) -> Result<WalReader> {
        let dir = dir.as_ref();
        let segs = list_segments(dir)?;
        for bound in [first, last].into_iter().flatten() {
            if !segs.iter().any(|s| s.index == bound) {
                return Err(WalError::MissingSegment {
                    dir: dir.to_path_buf(),
                    segment: bound,
                });
            }
        }
        let segs = segs
            .into_iter()
            .filter(|s| first.is_none_or(|f| s.index >= f) && last.is_none_or(|l| s.index <= l))
            .collect();
        Ok(Self::from_files(segs))
    }

    /// Reads the given segment files in the given order (for example a checkpoint's
    /// segments followed by WAL segments). Errors name each file's parent directory.
    pub fn from_files(segments: Vec<SegmentRef>) -> WalReader {
        let pending = segments
            .into_iter()
            .map(|s| Pending {
                location: SegmentLocation {
                    dir: s.path.parent().map(Path::to_path_buf),
                    segment: s.index,
                },
                source: Source::File(s.path, 0),
            })
            .collect();
        Self::new(pending)
    }

    /// Reads one segment file from byte `offset`, which must be where a record starts
    /// (0, or the `end` of a [`RecordPosition`] this reader type returned). For following
    /// a segment that is still being written: call again from the last record's end to
    /// read what was appended since. A record still being written at the end of the file
    /// reads as a torn-record or truncated-fragment corruption; a follower retries later
    /// instead of repairing.
    pub fn segment_from(segment: SegmentRef, offset: u64) -> WalReader {
        let pending = VecDeque::from([Pending {
            location: SegmentLocation {
                dir: segment.path.parent().map(Path::to_path_buf),
                segment: segment.index,
            },
            source: Source::File(segment.path, offset),
        }]);
        Self::new(pending)
    }

    /// Reads one in-memory segment (index 0). The entry point for fuzzing: any bytes give
    /// records or an error, never a panic.
    pub fn from_bytes(segment: Vec<u8>) -> WalReader {
        Self::from_memory_segments(vec![segment])
    }

    /// Reads in-memory segments numbered 0, 1, ... in order.
    pub fn from_memory_segments(segments: Vec<Vec<u8>>) -> WalReader {
        let pending = segments
            .into_iter()
            .enumerate()
            .map(|(i, b)| Pending {
                location: SegmentLocation {
                    dir: None,
                    segment: i as u64,
                },
                source: Source::Memory(b),
            })
            .collect();
        Self::new(pending)
    }

    /// Where the record last returned was stored.
    pub fn last_position(&self) -> Option<&RecordPosition> {
        self.last.as_ref()
    }

    /// Segment and offset of the record last returned (segment 0, offset 0 before the
    /// first), for errors about it.
    fn last_location(&self) -> (SegmentLocation, u64) {
        match &self.last {
            Some(p) => (p.location.clone(), p.start),
            None => (
                SegmentLocation {
                    dir: None,
                    segment: 0,
                },
                0,
            ),
        }
    }

    /// A corruption error for the record last returned, for a caller whose record decoder
    /// rejected it. [`super::repair::repair`] then drops that record and all after it.
    pub fn record_corruption(&self, err: RecordError) -> WalError {
        let (location, offset) = self.last_location();
        CorruptionError {
            location,
            offset,
            reason: CorruptionReason::Record(err),
        }
        .into()
    }

    /// The next record, or `None` at the end of the last segment. The slice is valid until
    /// the next call. Compressed records (snappy, Prometheus's default, or zstd) are
    /// decompressed into a reused buffer, never past [`MAX_DECOMPRESSED_RECORD`] bytes:
    /// a snappy record's claimed size is checked before anything is allocated, a zstd
    /// record is decoded as a stream that stops at the limit.
    pub fn next_record(&mut self) -> Result<Option<&[u8]>> {
        let compression = match self.read_next()? {
            None => return Ok(None),
            Some(Compression::None) => return Ok(Some(&self.rec)),
            Some(c) => c,
        };
        let decoded = match compression {
            Compression::Snappy => decompress_snappy(&self.rec, &mut self.decoded),
            _ => decompress_zstd(&self.rec, &mut self.decoded, &mut self.zstd),
        };
        if let Err(reason) = decoded {
            let (location, offset) = self.last_location();
            self.finish();
            return Err(CorruptionError {
                location,
                offset,
                reason,
            }
            .into());
        }
        Ok(Some(&self.decoded))
    }

    /// The next record as stored, compressed or not. Framing and CRCs are checked as
    /// for [`WalReader::next_record`].
    pub fn next_raw(&mut self) -> Result<Option<RawRecord<'_>>> {
        Ok(self.read_next()?.map(|compression| RawRecord {
            data: &self.rec,
            compression,
        }))
    }

    fn finish(&mut self) {
        self.cur = None;
        self.pending.clear();
    }

    fn read_next(&mut self) -> Result<Option<Compression>> {
        match self.read_fragments() {
            Ok(r) => Ok(r),
            Err(e) => {
                self.finish();
                Err(e)
            }
        }
    }

    /// Opens the next pending segment; false when there is none.
    fn open_next(&mut self) -> Result<bool> {
        let Some(p) = self.pending.pop_front() else {
            return Ok(false);
        };
        let (input, path, offset) = match p.source {
            Source::File(path, offset) => {
                let f = File::open(&path).map_err(|e| WalError::io("open segment", &path, e))?;
                (Input::File(f), Some(path), offset)
            }
            Source::Memory(b) => (Input::Memory(io::Cursor::new(b)), None, 0),
        };
        let mut cur = Current {
            location: p.location,
            path,
            input,
            page_start: 0,
            page_len: 0,
            pos: 0,
            started: false,
        };
        if offset > 0 {
            // Start at the page holding `offset`, positioned at it.
            let page = PAGE_SIZE as u64;
            let aligned = offset / page * page;
            if let Input::File(f) = &mut cur.input {
                f.seek(io::SeekFrom::Start(aligned)).map_err(|e| {
                    WalError::io(
                        "seek segment",
                        cur.path.as_deref().unwrap_or(Path::new("")),
                        e,
                    )
                })?;
            }
            cur.page_start = aligned;
            load_page(&mut cur, &mut self.page)?;
            cur.pos = usize::try_from(offset - aligned)
                .unwrap_or(PAGE_SIZE)
                .min(cur.page_len);
        }
        self.cur = Some(cur);
        Ok(true)
    }

    /// Reads fragments until a record is complete; returns its compression.
    fn read_fragments(&mut self) -> Result<Option<Compression>> {
        self.rec.clear();
        // Offset of the record's first fragment, once seen.
        let mut record_start: Option<u64> = None;
        let mut compression = Compression::None;
        loop {
            let Some(cur) = self.cur.as_mut() else {
                if self.open_next()? {
                    continue;
                }
                return Ok(None);
            };
            if cur.pos >= cur.page_len {
                // The page is used up: load the next one, unless the last one was short.
                if cur.started && cur.page_len < PAGE_SIZE {
                    if let Some(start) = record_start {
                        return Err(corrupt(
                            cur,
                            cur.page_start + cur.page_len as u64,
                            CorruptionReason::TornRecord {
                                record_start: start,
                            },
                        ));
                    }
                    self.cur = None;
                    continue;
                }
                load_page(cur, &mut self.page)?;
                continue;
            }

            let page = &self.page[..cur.page_len];
            let pos = cur.pos;
            let offset = cur.page_start + pos as u64;
            let byte = page[pos];

            if byte == 0 {
                // Page terminator: the rest of the page must be zero padding.
                if let Some(i) = page[pos..].iter().position(|&b| b != 0) {
                    return Err(corrupt(
                        cur,
                        offset + i as u64,
                        CorruptionReason::NonZeroPadding,
                    ));
                }
                cur.pos = cur.page_len;
                continue;
            }
            if PAGE_SIZE - pos < HEADER_SIZE {
                return Err(corrupt(
                    cur,
                    offset,
                    CorruptionReason::HeaderCrossesPage(PAGE_SIZE - pos),
                ));
            }
            if byte & RESERVED_MASK != 0 {
                return Err(WalError::ReservedBits {
                    location: cur.location.clone(),
                    offset,
                    byte,
                });
            }
            let Some(typ) = FragmentType::from_bits(byte) else {
                return Err(corrupt(
                    cur,
                    offset,
                    CorruptionReason::FragmentType(byte & TYPE_MASK),
                ));
            };
            if typ == FragmentType::PageTerm {
                // A zero type with a compression flag set.
                return Err(corrupt(cur, offset, CorruptionReason::FragmentType(byte)));
            }
            if cur.page_len - pos < HEADER_SIZE {
                return Err(corrupt(cur, offset, CorruptionReason::TruncatedFragment));
            }
            let len = u16::from_be_bytes([page[pos + 1], page[pos + 2]]) as usize;
            let crc =
                u32::from_be_bytes([page[pos + 3], page[pos + 4], page[pos + 5], page[pos + 6]]);
            let data_start = pos + HEADER_SIZE;
            if data_start + len > PAGE_SIZE {
                return Err(corrupt(
                    cur,
                    offset,
                    CorruptionReason::FragmentCrossesPage {
                        len,
                        page_offset: pos,
                    },
                ));
            }
            if data_start + len > cur.page_len {
                return Err(corrupt(cur, offset, CorruptionReason::TruncatedFragment));
            }
            let data = &page[data_start..data_start + len];
            let actual = crc32c::crc32c(data);
            if actual != crc {
                return Err(corrupt(
                    cur,
                    offset,
                    CorruptionReason::Checksum {
                        expected: crc,
                        actual,
                    },
                ));
            }
            let frag_compression = compression_of(byte);
            if byte & SNAPPY_FLAG != 0 && byte & ZSTD_FLAG != 0 {
                return Err(corrupt(cur, offset, CorruptionReason::FragmentType(byte)));
            }
            match (typ, record_start) {
                (FragmentType::Full | FragmentType::First, None) => {
                    record_start = Some(offset);
                    compression = frag_compression;
                }
                (FragmentType::Middle | FragmentType::Last, Some(_)) => {
                    if frag_compression != compression {
                        return Err(corrupt(cur, offset, CorruptionReason::MixedCompression));
                    }
                }
                (_, None) => {
                    return Err(corrupt(
                        cur,
                        offset,
                        CorruptionReason::FragmentSequence {
                            got: typ.name(),
                            context: "without a first fragment",
                        },
                    ));
                }
                (_, Some(_)) => {
                    return Err(corrupt(
                        cur,
                        offset,
                        CorruptionReason::FragmentSequence {
                            got: typ.name(),
                            context: "before the last fragment of the previous record",
                        },
                    ));
                }
            }
            self.rec.extend_from_slice(data);
            cur.pos = data_start + len;
            if matches!(typ, FragmentType::Full | FragmentType::Last) {
                self.last = Some(RecordPosition {
                    location: cur.location.clone(),
                    start: record_start.unwrap_or(offset),
                    end: cur.page_start + cur.pos as u64,
                });
                return Ok(Some(compression));
            }
        }
    }
}

/// Decompresses a snappy record into `out`, refusing a claimed size past the limit
/// before allocating it.
fn decompress_snappy(rec: &[u8], out: &mut Vec<u8>) -> std::result::Result<(), CorruptionReason> {
    let len =
        snap::raw::decompress_len(rec).map_err(|e| CorruptionReason::Snappy(e.to_string()))?;
    // Snappy expands at most ~21x (a 3-byte copy of 64 bytes): a larger claim is corrupt,
    // and must not make us allocate it.
    let limit = MAX_DECOMPRESSED_RECORD.min(rec.len().saturating_mul(24).saturating_add(64));
    if len > limit {
        return Err(CorruptionReason::DecompressedTooLarge {
            claimed: len,
            limit,
        });
    }
    out.resize(len, 0);
    let n = snap::raw::Decoder::new()
        .decompress(rec, out)
        .map_err(|e| CorruptionReason::Snappy(e.to_string()))?;
    out.truncate(n);
    Ok(())
}

/// Decompresses a zstd record (one frame, as Prometheus writes them) into `out`. A frame
/// that states its size (Kiln's and Prometheus's do) is decoded in one call with the
/// reused context `ctx`, after checking the size against the limit; any other is read
/// as a stream that stops one byte past the limit. Either way a frame that claims or
/// expands to more costs at most the limit.
fn decompress_zstd(
    rec: &[u8],
    out: &mut Vec<u8>,
    ctx: &mut Option<zstd::bulk::Decompressor<'static>>,
) -> std::result::Result<(), CorruptionReason> {
    let bad = |e: io::Error| CorruptionReason::Zstd(e.to_string());
    let limit = MAX_DECOMPRESSED_RECORD;
    out.clear();
    if let Ok(Some(size)) = zstd::zstd_safe::get_frame_content_size(rec) {
        if size > limit as u64 {
            return Err(CorruptionReason::DecompressedTooLarge {
                claimed: usize::try_from(size).unwrap_or(usize::MAX),
                limit,
            });
        }
        let size = size as usize;
        out.reserve(size);
        let dec = match ctx {
            Some(d) => d,
            None => ctx.insert(zstd::bulk::Decompressor::new().map_err(bad)?),
        };
        let n = dec.decompress_to_buffer(rec, out).map_err(bad)?;
        if n != size {
            return Err(CorruptionReason::Zstd(format!(
                "frame states {size} bytes but holds {n}"
            )));
        }
        return Ok(());
    }
    let decoder = zstd::stream::read::Decoder::with_buffer(rec).map_err(bad)?;
    decoder
        .take(limit as u64 + 1)
        .read_to_end(out)
        .map_err(bad)?;
    if out.len() > limit {
        return Err(CorruptionReason::DecompressedTooLarge {
            claimed: out.len(),
            limit,
        });
    }
    Ok(())
}

fn corrupt(cur: &Current, offset: u64, reason: CorruptionReason) -> WalError {
    CorruptionError {
        location: cur.location.clone(),
        offset,
        reason,
    }
    .into()
}

/// Reads the next page of the current segment (short only at its end).
fn load_page(cur: &mut Current, page: &mut [u8]) -> Result<()> {
    cur.page_start += cur.page_len as u64;
    cur.page_len = 0;
    cur.pos = 0;
    cur.started = true;
    while cur.page_len < PAGE_SIZE {
        match cur.input.read(&mut page[cur.page_len..]) {
            Ok(0) => break,
            Ok(n) => cur.page_len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                let path = cur.path.clone().unwrap_or_default();
                return Err(WalError::Io {
                    op: "read segment",
                    path,
                    source: e,
                });
            }
        }
    }
    Ok(())
}
