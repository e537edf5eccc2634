//! Opening the chunk files as a clean close recorded them (a head snapshot restore),
//! and the fingerprint that ties the snapshot's chunk references to the files.
//!
//! A restore trusts the snapshot's list of each series' chunks (reference, time range)
//! instead of reading every record. The files' recorded sizes and whole-file CRC32-Cs
//! prove the files are unchanged since the close; the fingerprint proves that the
//! snapshot names exactly the chunks the files hold from the head's oldest valid time
//! on, so a snapshot written wrongly (only a bug could: its own checksum held) is
//! caught at open instead of surfacing as unreadable chunks in queries.

use super::*;
use crate::fingerprint::SetFingerprint;

/// The fingerprint of a set of chunks, each taken as (chunk ref, series id, mint, maxt).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChunkFingerprint(SetFingerprint);

impl ChunkFingerprint {
    pub(crate) fn add(&mut self, chunk_ref: u64, series: u64, mint: i64, maxt: i64) {
        self.0.add(&[chunk_ref, series, mint as u64, maxt as u64]);
    }
}

/// Bytes read from a file at a time while checking it.
const READ_SIZE: usize = 1 << 20;

impl ChunkDiskMapper {
    /// Opens the store in `dir` from `extents`, recorded when it was closed cleanly: each
    /// file is checked against its recorded size and whole-file CRC32-C in one pass,
    /// which also walks the record headers (without their own CRCs) to fingerprint
    /// every chunk whose maxt is at or after `from`. `None` when the directory is not
    /// exactly as recorded (a file missing, added, resized, or changed); the caller then
    /// opens it with [`open`](Self::open), which checks every record and drops damaged
    /// ones. New chunks go to a new file, as after every open.
    pub(crate) fn open_trusted(
        dir: &Path,
        extents: &[FileExtent],
        from: i64,
    ) -> Result<Option<(Self, ChunkFingerprint)>> {
        if dir.join(WRITE_FAILED_MARKER).exists() {
            return Ok(None);
        }
        let listed = list_files(dir)?;
        if listed.len() != extents.len() {
            return Ok(None);
        }
        let mut files = BTreeMap::new();
        let mut fingerprint = ChunkFingerprint::default();
        for ((seq, path), ext) in listed.into_iter().zip(extents) {
            if seq != ext.seq || ext.readable_len > ext.disk_len {
                return Ok(None);
            }
            let file = File::open(&path).map_err(HeadChunksError::io("open", &path))?;
            let disk_len = file
                .metadata()
                .map_err(HeadChunksError::io("stat", &path))?
                .len();
            let (Ok(readable_len), Ok(seq32)) =
                (usize::try_from(ext.readable_len), u32::try_from(seq))
            else {
                return Ok(None);
            };
            if disk_len != ext.disk_len || readable_len < HEADER_SIZE {
                return Ok(None);
            }
            // Read, not mapped: the pages stay in the page cache without counting in
            // this process's resident memory until a query maps them.
            let check = FileCheck {
                seq: seq32,
                len: readable_len,
                crc: ext.crc,
                from,
            };
            if !check.run(&file, &mut fingerprint) {
                return Ok(None);
            }
            files.insert(
                seq,
                FileEntry {
                    path,
                    readable_len,
                    disk_len,
                    maxt: ext.maxt,
                    crc: ext.crc,
                    map: None,
                },
            );
        }
        let next_seq = files.keys().next_back().map_or(1, |s| s + 1);
        let mapper = ChunkDiskMapper {
            dir: dir.to_path_buf(),
            opts: ChunkDiskMapperOptions::default(),
            state: RwLock::new(State {
                files,
                active: None,
                next_seq,
            }),
            failed: AtomicBool::new(false),
            lost_chunks: false,
        };
        Ok(Some((mapper, fingerprint)))
    }
}

/// The check of one file against its recorded extent.
struct FileCheck {
    seq: u32,
    /// Bytes holding the header and whole records.
    len: usize,
    crc: u32,
    /// Chunks ending before this are left out of the fingerprint.
    from: i64,
}

impl FileCheck {
    /// Whether the first `len` bytes of `file` start with the chunk file header, have
    /// CRC32-C `crc` and are whole records (or zero padding after them); adds the
    /// records to `fingerprint`. Reads in 1 MiB pieces, keeping the part of a record
    /// that runs into the next piece; an I/O error counts as a mismatch (the caller then
    /// opens the directory the checked way, which reports it).
    fn run(&self, file: &File, fingerprint: &mut ChunkFingerprint) -> bool {
        let mut buf: Vec<u8> = Vec::with_capacity(READ_SIZE.min(self.len));
        let mut sum = 0u32;
        // File offsets: of `buf[0]`, of the bytes read so far, of the next record.
        let (mut buf_at, mut read, mut record) = (0usize, 0usize, HEADER_SIZE);
        let mut padding = false;
        while read < self.len {
            let n = READ_SIZE.min(self.len - read);
            let start = buf.len();
            buf.resize(start + n, 0);
            if file.read_exact_at(&mut buf[start..], read as u64).is_err() {
                return false;
            }
            if read == 0 && buf.get(..HEADER_SIZE) != Some(&file_header()[..]) {
                return false;
            }
            sum = crc32c::crc32c_append(sum, &buf[start..]);
            read += n;
            while !padding {
                let at = record - buf_at;
                let head = buf.get(at..at + 24).unwrap_or_default();
                if head.len() == 24 && head.iter().all(|&b| b == 0) {
                    // Zero padding (Prometheus pre-allocates): the end of the records;
                    // the CRC vouches for the rest.
                    padding = true;
                    break;
                }
                match read_header(&buf, at) {
                    Ok(rec) => {
                        if rec.maxt >= self.from {
                            let chunk_ref = chunk_ref(self.seq, record as u32);
                            fingerprint.add(chunk_ref, rec.series_ref, rec.mint, rec.maxt);
                        }
                        record = buf_at + rec.end;
                        if record > u32::MAX as usize {
                            return false;
                        }
                    }
                    Err(Corruption::Truncated { .. }) => break,
                    Err(_) => return false,
                }
            }
            // Keep only the unfinished record (nothing once the padding began).
            let done = if padding {
                buf.len()
            } else {
                (record - buf_at).min(buf.len())
            };
            buf.drain(..done);
            buf_at += done;
        }
        sum == self.crc && (padding || record == self.len)
    }
}
