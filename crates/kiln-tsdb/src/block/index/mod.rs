//! The block index file, Prometheus index format v2 (spec: `docs/format/index.md`).
//!
//! - [`writer`]: [`IndexWriter`] streams symbols and series to disk, then writes postings,
//!   the postings offset table and the TOC.
//! - [`reader`]: [`IndexReader`] maps the file, checks magic, version and checksums, and
//!   answers symbol, series, postings and label lookups.
//! - [`postings`]: sorted series-id lists and their set operations.
//! - [`tables`]: [`IndexTables`], the parsed symbol table and postings offset table.
//! - [`header`]: [`IndexHeader`], those two sections copied into a small local file, so
//!   that a store gateway can look labels up without the (remote) index.

pub mod header;
pub mod postings;
pub mod reader;
pub mod tables;
pub mod writer;

pub use header::IndexHeader;
pub use postings::{Postings, intersect, merge, without};
pub use reader::IndexReader;
pub use tables::{IndexTables, PostingsRange};
pub use writer::{IndexWriter, IndexWriterOptions};

use super::enc::{Decoder, crc, put_be64};
use super::error::{Corruption, DecodeError};

/// `0xBAAAD700`, the first four bytes of every index file.
pub const INDEX_MAGIC: u32 = 0xBAAA_D700;
/// Index format version 1 (Prometheus before 2.2): not supported.
pub const INDEX_VERSION_1: u8 = 1;
/// Index format version 2, the one Prometheus writes.
pub const INDEX_VERSION_2: u8 = 2;
/// Version 3 is accepted by Prometheus 2.55+ and has the same layout as version 2.
pub const INDEX_VERSION_3: u8 = 3;
/// Magic and version.
pub const INDEX_HEADER_LEN: usize = 5;
/// Six 8-byte section offsets and a CRC32.
pub const INDEX_TOC_LEN: usize = 6 * 8 + 4;
/// Series entries start at multiples of this; a series id is its offset divided by it.
pub const SERIES_ALIGN: u64 = 16;
/// The postings offset table key of the list of every series.
pub const ALL_POSTINGS_KEY: (&str, &str) = ("", "");

/// Where one chunk of a series lives and which time range it covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ChunkMeta {
    /// Timestamp of the first sample, milliseconds.
    pub min_time: i64,
    /// Timestamp of the last sample (inclusive), milliseconds.
    pub max_time: i64,
    /// `segment_index << 32 | offset` in the block's chunk segments.
    pub chunk_ref: u64,
}

/// The table of contents at the end of an index: where each section starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Toc {
    pub symbols: u64,
    pub series: u64,
    pub label_indices: u64,
    pub label_offset_table: u64,
    pub postings: u64,
    pub postings_offset_table: u64,
}

impl Toc {
    /// Appends the encoded TOC with its checksum.
    pub(crate) fn encode(&self, buf: &mut Vec<u8>) {
        let start = buf.len();
        for v in [
            self.symbols,
            self.series,
            self.label_indices,
            self.label_offset_table,
            self.postings,
            self.postings_offset_table,
        ] {
            put_be64(buf, v);
        }
        let sum = crc(&buf[start..]);
        buf.extend_from_slice(&sum.to_be_bytes());
    }

    /// Decodes the TOC from the last [`INDEX_TOC_LEN`] bytes of `file`.
    pub(crate) fn decode(file: &[u8]) -> Result<Toc, DecodeError> {
        if file.len() < INDEX_HEADER_LEN + INDEX_TOC_LEN {
            return Err(DecodeError::new(
                0,
                Corruption::Truncated {
                    need: (INDEX_HEADER_LEN + INDEX_TOC_LEN) as u64,
                    available: file.len() as u64,
                },
            ));
        }
        let start = file.len() - INDEX_TOC_LEN;
        let mut d = Decoder::new(&file[start..], start as u64);
        let body = d.bytes(INDEX_TOC_LEN - 4)?;
        let stored = d.be32()?;
        let computed = crc(body);
        if stored != computed {
            return Err(DecodeError::new(
                start as u64,
                Corruption::Checksum { stored, computed },
            ));
        }
        let mut d = Decoder::new(body, start as u64);
        Ok(Toc {
            symbols: d.be64()?,
            series: d.be64()?,
            label_indices: d.be64()?,
            label_offset_table: d.be64()?,
            postings: d.be64()?,
            postings_offset_table: d.be64()?,
        })
    }
}
