//! Chunk segment files: `<block>/chunks/000001`, `000002`, … (spec: `docs/format/chunks.md`).
//!
//! A segment is an 8-byte header (magic `0x85BD40DD`, version 1, 3 zero bytes) followed by
//! chunks, each `uvarint(len(data)) | encoding <1b> | data | CRC32C(encoding, data)`. A chunk
//! reference is `segment_index << 32 | offset`, where `segment_index` counts the segment
//! files of the directory from 0 in name order (file `000001` is index 0).

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use super::enc::{Decoder, crc, put_uvarint};
use super::error::{BlockError, Corruption, DecodeError, Result};
use super::mmap::FileBytes;
use super::sync_dir;

/// First four bytes of every segment.
pub const CHUNKS_MAGIC: u32 = 0x85BD_40DD;
/// Segment format version.
pub const CHUNKS_VERSION: u8 = 1;
/// Magic, version and three padding bytes.
pub const SEGMENT_HEADER_LEN: u64 = 8;
/// Prometheus cuts a new segment before one would grow past this.
pub const DEFAULT_SEGMENT_SIZE: u64 = 512 * 1024 * 1024;
/// The size estimate of a chunk counts its length field as this many bytes (as Prometheus).
const MAX_LEN_FIELD: u64 = 5;

/// The file name of segment number `seq` (1-based).
pub fn segment_name(seq: u32) -> String {
    format!("{seq:06}")
}

/// Packs a chunk reference.
pub fn chunk_ref(segment_index: u32, offset: u32) -> u64 {
    (u64::from(segment_index) << 32) | u64::from(offset)
}

/// Unpacks a chunk reference into (segment index, offset).
pub fn split_chunk_ref(r: u64) -> (u32, u32) {
    ((r >> 32) as u32, r as u32)
}

/// Writes chunks into new segment files of one directory.
#[derive(Debug)]
pub struct ChunkWriter {
    dir: PathBuf,
    segment_size: u64,
    current: Option<(PathBuf, BufWriter<File>)>,
    /// Number of segments started.
    segments: u32,
    /// Bytes in the current segment.
    written: u64,
}

impl ChunkWriter {
    /// Creates `dir` if needed. Segments are created on the first write, so a block
    /// without chunks has an empty `chunks/` directory (as in Prometheus).
    pub fn new(dir: impl AsRef<Path>) -> Result<ChunkWriter> {
        ChunkWriter::with_segment_size(dir, DEFAULT_SEGMENT_SIZE)
    }

    /// Like [`ChunkWriter::new`] with another segment size (tests use small ones).
    pub fn with_segment_size(dir: impl AsRef<Path>, segment_size: u64) -> Result<ChunkWriter> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir).map_err(BlockError::io("create directory", &dir))?;
        let segment_size = segment_size.min(u64::from(u32::MAX));
        Ok(ChunkWriter {
            dir,
            segment_size,
            current: None,
            segments: 0,
            written: 0,
        })
    }

    /// Appends one chunk and returns its reference. A new segment is started when this
    /// chunk would not fit in the current one (a chunk larger than a segment gets a
    /// segment of its own).
    pub fn write(&mut self, encoding: u8, data: &[u8]) -> Result<u64> {
        let len = u32::try_from(data.len()).map_err(|_| BlockError::LimitExceeded {
            what: "chunk size",
            value: data.len() as u64,
            limit: u64::from(u32::MAX),
        })?;
        let size = MAX_LEN_FIELD + 1 + u64::from(len) + 4;
        if self.current.is_none()
            || (self.written > SEGMENT_HEADER_LEN && self.written + size > self.segment_size)
        {
            self.cut()?;
        }
        let offset = u32::try_from(self.written).map_err(|_| BlockError::LimitExceeded {
            what: "chunk offset in segment",
            value: self.written,
            limit: u64::from(u32::MAX),
        })?;
        let r = chunk_ref(self.segments - 1, offset);

        let mut head = Vec::with_capacity(6);
        put_uvarint(&mut head, u64::from(len));
        head.push(encoding);
        let sum = crc32c::crc32c_append(crc(&[encoding]), data);
        let Some((path, out)) = self.current.as_mut() else {
            return Err(BlockError::WrongStage {
                call: "ChunkWriter::write",
                when: "without a segment",
            });
        };
        out.write_all(&head)
            .and_then(|()| out.write_all(data))
            .and_then(|()| out.write_all(&sum.to_be_bytes()))
            .map_err(BlockError::io("write", path))?;
        self.written += head.len() as u64 + u64::from(len) + 4;
        Ok(r)
    }

    /// Number of segment files written so far.
    pub fn segments(&self) -> u32 {
        self.segments
    }

    /// Flushes and fsyncs the last segment and the directory.
    pub fn finish(mut self) -> Result<()> {
        self.finish_segment()?;
        sync_dir(&self.dir)
    }

    fn finish_segment(&mut self) -> Result<()> {
        if let Some((path, mut out)) = self.current.take() {
            out.flush().map_err(BlockError::io("write", &path))?;
            out.get_ref()
                .sync_all()
                .map_err(BlockError::io("fsync", &path))?;
        }
        Ok(())
    }

    fn cut(&mut self) -> Result<()> {
        self.finish_segment()?;
        let seq = self.segments + 1;
        let path = self.dir.join(segment_name(seq));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(BlockError::io("create", &path))?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        let mut header = [0u8; SEGMENT_HEADER_LEN as usize];
        header[..4].copy_from_slice(&CHUNKS_MAGIC.to_be_bytes());
        header[4] = CHUNKS_VERSION;
        out.write_all(&header)
            .map_err(BlockError::io("write", &path))?;
        self.current = Some((path, out));
        self.segments = seq;
        self.written = SEGMENT_HEADER_LEN;
        Ok(())
    }
}

/// Reads chunks from the segment files of one directory.
#[derive(Debug)]
pub struct ChunkReader {
    dir: PathBuf,
    segments: Vec<(PathBuf, FileBytes)>,
}

impl ChunkReader {
    /// Maps every segment file of `dir` (files named by digits only, in numeric order) and
    /// checks their headers.
    pub fn open(dir: impl AsRef<Path>) -> Result<ChunkReader> {
        let dir = dir.as_ref().to_path_buf();
        let mut files = Vec::new();
        for entry in fs::read_dir(&dir).map_err(BlockError::io("read directory", &dir))? {
            let entry = entry.map_err(BlockError::io("read directory", &dir))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            if let Ok(n) = name.parse::<u64>() {
                files.push((n, entry.path()));
            }
        }
        files.sort();
        let segments = files
            .into_iter()
            .map(|(_, path)| FileBytes::map(&path).map(|b| (path, b)))
            .collect::<Result<Vec<_>>>()?;
        ChunkReader::new(dir, segments)
    }

    /// Reads segments held in memory (tests, fuzzing). Segment `i` is named
    /// `<memory>/00000{i+1}` in errors.
    pub fn from_segments(segments: Vec<Vec<u8>>) -> Result<ChunkReader> {
        let dir = PathBuf::from("<memory>");
        let segments = segments
            .into_iter()
            .enumerate()
            .map(|(i, b)| (dir.join(segment_name(i as u32 + 1)), FileBytes::Owned(b)))
            .collect();
        ChunkReader::new(dir, segments)
    }

    fn new(dir: PathBuf, segments: Vec<(PathBuf, FileBytes)>) -> Result<ChunkReader> {
        for (path, bytes) in &segments {
            let mut d = Decoder::new(bytes, 0);
            let mut header = || -> Result<(), DecodeError> {
                let magic = d.be32()?;
                if magic != CHUNKS_MAGIC {
                    return Err(DecodeError::new(
                        0,
                        Corruption::BadMagic {
                            found: magic,
                            want: CHUNKS_MAGIC,
                        },
                    ));
                }
                let version = d.u8()?;
                if version != CHUNKS_VERSION {
                    return Err(DecodeError::new(
                        4,
                        Corruption::OutOfRange {
                            what: "segment version",
                            value: version.into(),
                            limit: CHUNKS_VERSION.into(),
                        },
                    ));
                }
                d.skip(3)
            };
            header().map_err(|e| match e.problem {
                Corruption::OutOfRange { value, .. } => BlockError::UnsupportedVersion {
                    path: path.clone(),
                    what: "chunk segment",
                    version: value,
                },
                _ => e.at(path, "chunk segment header"),
            })?;
        }
        Ok(ChunkReader { dir, segments })
    }

    /// The directory read.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Number of segment files.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// Total size of the segment files in bytes.
    pub fn size(&self) -> u64 {
        self.segments.iter().map(|(_, b)| b.len() as u64).sum()
    }

    /// The encoding and data of the chunk at `chunk_ref`, after checking its bounds and
    /// checksum. Borrows from the mapped file; does not allocate.
    pub fn chunk(&self, chunk_ref: u64) -> Result<(u8, &[u8])> {
        let (seg, off) = split_chunk_ref(chunk_ref);
        let Some((path, bytes)) = self.segments.get(seg as usize) else {
            return Err(BlockError::Corrupt {
                path: self.dir.join(segment_name(seg.saturating_add(1))),
                section: "chunk reference",
                offset: u64::from(off),
                problem: Corruption::OutOfRange {
                    what: "segment index",
                    value: seg.into(),
                    limit: self.segments.len() as u64,
                },
            });
        };
        let run = || -> Result<(u8, &[u8]), DecodeError> {
            let off64 = u64::from(off);
            if off64 < SEGMENT_HEADER_LEN || off64 >= bytes.len() as u64 {
                return Err(DecodeError::new(
                    off64,
                    Corruption::OutOfRange {
                        what: "chunk offset",
                        value: off64,
                        limit: bytes.len() as u64,
                    },
                ));
            }
            decode_chunk_entry(&bytes[off as usize..], off64)
        };
        run().map_err(|e| e.at(path, "chunk"))
    }
}

/// Decodes the chunk entry `bytes` start with (`len | encoding | data | CRC32`, fetched
/// from offset `at` of a segment), checking its checksum: the encoding and the data.
pub(crate) fn decode_chunk_entry(bytes: &[u8], at: u64) -> Result<(u8, &[u8]), DecodeError> {
    let mut d = Decoder::new(bytes, at);
    let len = d.uvarint_len()?;
    let enc_at = d.offset();
    let body = d.bytes(
        len.checked_add(1)
            .ok_or_else(|| d.err(Corruption::VarintOverflow))?,
    )?;
    let stored = d.be32()?;
    let computed = crc(body);
    if stored != computed {
        return Err(DecodeError::new(
            enc_at,
            Corruption::Checksum { stored, computed },
        ));
    }
    Ok((body[0], &body[1..]))
}

/// Decodes a chunk fetched from offset `at` of segment file `segment` (see
/// [`chunk_entry_len`] for how many bytes it needs): the encoding and the data.
pub fn decode_fetched_chunk<'b>(
    bytes: &'b [u8],
    at: u64,
    segment: &Path,
) -> Result<(u8, &'b [u8])> {
    decode_chunk_entry(bytes, at).map_err(|e| e.at(segment, "chunk"))
}

/// How many bytes the chunk entry that `prefix` starts with takes (length field,
/// encoding, data and checksum); `None` while `prefix` is too short to say.
pub fn chunk_entry_len(prefix: &[u8]) -> Option<u64> {
    let mut d = Decoder::new(prefix, 0);
    let len = d.uvarint().ok()?;
    Some((d.pos() as u64).saturating_add(len).saturating_add(1 + 4))
}
