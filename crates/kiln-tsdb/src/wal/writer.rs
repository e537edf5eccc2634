//! [`Wal`]: appends records to the segments of a WAL directory.
//!
//! Write path: [`Wal::log`] splits each record into fragments that fill the current
//! 32 KiB page; a full page (one with fewer than [`HEADER_SIZE`] bytes left, padded with
//! zeros) is written out at once, and at the end of every `log` call the partly filled
//! page's new bytes are written too. So when `log` returns, every byte of the batch is in
//! the kernel's page cache: it survives `kill -9` of the process, not a power loss.
//! [`Wal::sync`] fsyncs the active segment for callers that need the latter; a segment is
//! always fsynced when it is cut and on [`Wal::close`].
//!
//! Records are compressed one by one before they are split, as Prometheus does
//! ([`WalOptions::compression`]: snappy by default, zstd, or none); a record whose
//! compressed form is not smaller is written as it is, so any record may be plain.
//!
//! A record never spans segments: if it does not fit in what is left of the active
//! segment, the segment is cut first. A record larger than a whole segment goes alone into
//! a fresh segment that grows past the segment size, as in Prometheus.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::error::{Compression, Result, WalError};
use super::segment::{
    DEFAULT_SEGMENT_SIZE, FragmentType, HEADER_SIZE, MAX_FRAGMENT_LEN, PAGE_SIZE, list_segments,
    put_header, segment_path, sync_dir,
};

/// The largest segment size accepted (1 TiB); keeps the space arithmetic in range.
const MAX_SEGMENT_SIZE: u64 = 1 << 40;

/// Options of a [`Wal`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalOptions {
    /// Size at which a segment is cut, in bytes. A multiple of the 32 KiB page size.
    /// Default 128 MiB, as Prometheus.
    pub segment_size: u64,
    /// How records are compressed. Default snappy, as Prometheus 3 writes them
    /// (`--storage.tsdb.wal-compression`); every Prometheus since 2.11 reads snappy,
    /// zstd needs Prometheus 2.52 or newer.
    pub compression: Compression,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            segment_size: DEFAULT_SEGMENT_SIZE,
            compression: Compression::Snappy,
        }
    }
}

/// The zstd level records are compressed at: zstd's own default, a balance of speed and
/// size close to what Prometheus's Go encoder does by default.
const ZSTD_LEVEL: i32 = 3;

/// Compresses records into a reused buffer.
enum RecordCompressor {
    None,
    Snappy(Box<snap::raw::Encoder>),
    Zstd(Box<zstd::bulk::Compressor<'static>>),
}

impl RecordCompressor {
    fn new(compression: Compression) -> Result<RecordCompressor> {
        Ok(match compression {
            Compression::None => RecordCompressor::None,
            Compression::Snappy => RecordCompressor::Snappy(Box::new(snap::raw::Encoder::new())),
            Compression::Zstd => RecordCompressor::Zstd(Box::new(
                zstd::bulk::Compressor::new(ZSTD_LEVEL)
                    .map_err(|_| WalError::InvalidOptions("zstd compressor could not start"))?,
            )),
        })
    }

    /// Compresses `rec` into `out`; `None` when the compressed form is not smaller (or
    /// compression is off or failed), in which case the record is written plain.
    fn compress(&mut self, rec: &[u8], out: &mut Vec<u8>) -> Option<Compression> {
        if rec.is_empty() {
            return None;
        }
        let n = match self {
            RecordCompressor::None => return None,
            RecordCompressor::Snappy(enc) => {
                out.resize(snap::raw::max_compress_len(rec.len()), 0);
                enc.compress(rec, out).ok()?
            }
            RecordCompressor::Zstd(enc) => {
                out.clear();
                out.reserve(zstd::zstd_safe::compress_bound(rec.len()));
                enc.compress_to_buffer(rec, out).ok()?
            }
        };
        out.truncate(n);
        (n < rec.len()).then_some(match self {
            RecordCompressor::Snappy(_) => Compression::Snappy,
            _ => Compression::Zstd,
        })
    }
}

impl WalOptions {
    fn validate(&self) -> Result<()> {
        if self.segment_size == 0 || !self.segment_size.is_multiple_of(PAGE_SIZE as u64) {
            return Err(WalError::InvalidOptions(
                "segment_size must be a positive multiple of 32 KiB",
            ));
        }
        if self.segment_size > MAX_SEGMENT_SIZE {
            return Err(WalError::InvalidOptions(
                "segment_size must be at most 1 TiB",
            ));
        }
        Ok(())
    }
}

/// The segment being written.
struct Active {
    index: u64,
    path: PathBuf,
    file: File,
}

/// A WAL writer over one directory.
///
/// Not internally synchronised: methods take `&mut self`; share it behind a
/// `parking_lot::Mutex` (one lock, held for one `log` call). Dropping a `Wal` without
/// [`Wal::close`] leaves the active segment's last page partly written, exactly as a crash
/// would; readers accept that.
pub struct Wal {
    pub(super) dir: PathBuf,
    pub(super) opts: WalOptions,
    active: Active,
    /// The page being filled. Bytes from `alloc` on are always zero.
    page: Box<[u8]>,
    /// Bytes of `page` filled with fragments.
    alloc: usize,
    /// Bytes of `page` already written to the file.
    flushed: usize,
    /// Whole pages written to the active segment.
    done_pages: u64,
    /// Set when a write failed part-way through a record: the segment may end in a torn
    /// record, so nothing more may follow it. Reopening the WAL (which replays and
    /// repairs) is the way back.
    poisoned: bool,
    compressor: RecordCompressor,
    /// The compressed form of the record being written (reused).
    compressed: Vec<u8>,
    /// Record bytes compression spared since the WAL was opened.
    bytes_saved: u64,
}

impl Wal {
    /// Opens the WAL in `dir` (created if missing) for writing. Like Prometheus, it never
    /// appends to an existing segment: writing continues in a new segment numbered one
    /// past the last one (or `00000000` in an empty directory).
    pub fn open(dir: impl AsRef<Path>, opts: WalOptions) -> Result<Wal> {
        opts.validate()?;
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir).map_err(|e| WalError::io("create directory", &dir, e))?;
        let next = match list_segments(&dir)?.last() {
            Some(s) => s
                .index
                .checked_add(1)
                .ok_or(WalError::InvalidOptions("segment index space exhausted"))?,
            None => 0,
        };
        let active = create_segment(&dir, next)?;
        Ok(Wal {
            dir,
            opts,
            active,
            page: vec![0u8; PAGE_SIZE].into_boxed_slice(),
            alloc: 0,
            flushed: 0,
            done_pages: 0,
            poisoned: false,
            compressor: RecordCompressor::new(opts.compression)?,
            compressed: Vec::new(),
            bytes_saved: 0,
        })
    }

    /// Record bytes that compression spared (uncompressed minus written payload) since
    /// the WAL was opened: `prometheus_tsdb_wal_record_bytes_saved_total`.
    pub fn bytes_saved(&self) -> u64 {
        self.bytes_saved
    }

    /// The WAL directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The options it was opened with.
    pub fn options(&self) -> WalOptions {
        self.opts
    }

    /// Index of the segment being written.
    pub fn current_segment(&self) -> u64 {
        self.active.index
    }

    /// Appends one record. See [`Wal::log`].
    pub fn log_record(&mut self, rec: &[u8]) -> Result<()> {
        self.log(&[rec])
    }

    /// Appends a batch of records, in order. When it returns `Ok`, all their bytes have
    /// been written to the segment file (not fsynced). Allocates nothing once the
    /// compression buffer has grown to the largest record.
    ///
    /// On an I/O error the records may be partly written, and a record written after
    /// them would be read as corruption; so after an error every later call fails with
    /// [`WalError::Poisoned`] until the WAL is reopened, which repairs the torn tail.
    pub fn log(&mut self, recs: &[&[u8]]) -> Result<()> {
        if self.poisoned {
            return Err(WalError::Poisoned {
                dir: self.dir.clone(),
            });
        }
        for (i, rec) in recs.iter().enumerate() {
            if let Err(e) = self.log_one(rec, i + 1 == recs.len()) {
                self.poisoned = true;
                return Err(e);
            }
        }
        Ok(())
    }

    fn page_full(&self) -> bool {
        PAGE_SIZE - self.alloc < HEADER_SIZE
    }

    fn log_one(&mut self, rec: &[u8], last_of_batch: bool) -> Result<()> {
        let mut compressed = std::mem::take(&mut self.compressed);
        let res = match self.compressor.compress(rec, &mut compressed) {
            Some(compression) => {
                self.bytes_saved += (rec.len() - compressed.len()) as u64;
                self.write_record(&compressed, compression, last_of_batch)
            }
            None => self.write_record(rec, Compression::None, last_of_batch),
        };
        self.compressed = compressed;
        res
    }

    fn write_record(
        &mut self,
        rec: &[u8],
        compression: Compression,
        last_of_batch: bool,
    ) -> Result<()> {
        // A page left full by a failed flush is written out before anything else.
        if self.page_full() {
            self.flush_page(true)?;
        }
        // Space for fragment data left in this segment: the rest of this page and every
        // page still to come (signed, as the active segment may already be oversized).
        let pages_per_segment = (self.opts.segment_size / PAGE_SIZE as u64) as i64;
        let left = (PAGE_SIZE - self.alloc - HEADER_SIZE) as i64
            + MAX_FRAGMENT_LEN as i64 * (pages_per_segment - self.done_pages as i64 - 1);
        if rec.len() as i64 > left {
            self.next_segment()?;
        }

        let mut rest = rec;
        let mut first = true;
        loop {
            // The page is never full here: a fragment that fills it flushes it below.
            let room = PAGE_SIZE - self.alloc - HEADER_SIZE;
            let n = rest.len().min(room);
            let (part, tail) = rest.split_at(n);
            let typ = match (first, tail.is_empty()) {
                (true, true) => FragmentType::Full,
                (true, false) => FragmentType::First,
                (false, false) => FragmentType::Middle,
                (false, true) => FragmentType::Last,
            };
            let start = self.alloc;
            put_header(
                &mut self.page[start..start + HEADER_SIZE],
                typ,
                compression,
                part,
            );
            self.page[start + HEADER_SIZE..start + HEADER_SIZE + n].copy_from_slice(part);
            self.alloc += HEADER_SIZE + n;
            if self.page_full() {
                self.flush_page(true)?;
            }
            rest = tail;
            first = false;
            if rest.is_empty() {
                break;
            }
        }
        if last_of_batch && self.alloc > self.flushed {
            self.flush_page(false)?;
        }
        Ok(())
    }

    /// Writes the page's unwritten bytes. With `clear` (or when the page is full) the page
    /// is completed: padded with zeros to 32 KiB, written, and reset.
    fn flush_page(&mut self, clear: bool) -> Result<()> {
        let clear = clear || self.page_full();
        if clear {
            // Bytes past `alloc` are zero: this is the padding.
            self.alloc = PAGE_SIZE;
        }
        while self.flushed < self.alloc {
            match self.active.file.write(&self.page[self.flushed..self.alloc]) {
                Ok(0) => {
                    return Err(WalError::io(
                        "write segment",
                        &self.active.path,
                        io::Error::from(io::ErrorKind::WriteZero),
                    ));
                }
                Ok(n) => self.flushed += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(WalError::io("write segment", &self.active.path, e)),
            }
        }
        if clear {
            self.page.fill(0);
            self.alloc = 0;
            self.flushed = 0;
            self.done_pages += 1;
        }
        Ok(())
    }

    /// Writes any bytes still buffered (only after a failed write; `log` writes through).
    pub fn flush(&mut self) -> Result<()> {
        if self.alloc > self.flushed {
            self.flush_page(false)?;
        }
        Ok(())
    }

    /// Writes buffered bytes and fsyncs the active segment (`fdatasync`), so every record
    /// logged so far survives a power loss.
    pub fn sync(&mut self) -> Result<()> {
        self.flush()?;
        self.active
            .file
            .sync_data()
            .map_err(|e| WalError::io("fsync segment", &self.active.path, e))
    }

    /// Cuts the active segment: pads its last page, fsyncs it, and starts the next
    /// segment. Returns the new segment's index.
    pub fn next_segment(&mut self) -> Result<u64> {
        if self.alloc > 0 {
            self.flush_page(true)?;
        }
        self.active
            .file
            .sync_all()
            .map_err(|e| WalError::io("fsync segment", &self.active.path, e))?;
        let next = self
            .active
            .index
            .checked_add(1)
            .ok_or(WalError::InvalidOptions("segment index space exhausted"))?;
        self.active = create_segment(&self.dir, next)?;
        self.done_pages = 0;
        Ok(next)
    }

    /// The first and last segment index on disk (the last is the active one).
    pub fn segments(&self) -> Result<(u64, u64)> {
        let segs = list_segments(&self.dir)?;
        Ok(match (segs.first(), segs.last()) {
            (Some(f), Some(l)) => (f.index, l.index),
            _ => (self.active.index, self.active.index),
        })
    }

    /// Deletes every segment whose index is below `before` (after a checkpoint covered
    /// them). The active segment cannot be deleted.
    pub fn truncate(&mut self, before: u64) -> Result<()> {
        if before > self.active.index {
            return Err(WalError::TruncateActive {
                dir: self.dir.clone(),
                before,
                active: self.active.index,
            });
        }
        let mut removed = false;
        for seg in list_segments(&self.dir)? {
            if seg.index >= before {
                break;
            }
            fs::remove_file(&seg.path).map_err(|e| WalError::io("remove segment", &seg.path, e))?;
            removed = true;
        }
        if removed {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }

    /// Pads the last page with zeros, writes it and fsyncs the segment.
    pub fn close(mut self) -> Result<()> {
        if self.alloc > 0 {
            self.flush_page(true)?;
        }
        self.active
            .file
            .sync_all()
            .map_err(|e| WalError::io("fsync segment", &self.active.path, e))
    }
}

/// Creates segment `index` in `dir` (appending if it exists) and makes its name durable.
fn create_segment(dir: &Path, index: u64) -> Result<Active> {
    let path = segment_path(dir, index);
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| WalError::io("create segment", &path, e))?;
    sync_dir(dir)?;
    Ok(Active { index, path, file })
}
