//! [`IndexHeader`]: the symbol table and postings offset table of a (remote) index,
//! copied into a small local file.
//!
//! A store gateway serves blocks whose index lives in object storage. To resolve
//! matchers it needs the symbols and the postings offset table at hand, but not the
//! series or the postings themselves, which it fetches by range when a query asks. The
//! header holds exactly those two sections (a few percent of the index), byte for byte
//! as in the index, so their checksums still hold, plus the index's TOC and size. It is
//! built once per block from three ranged reads and memory-mapped afterwards; the
//! postings offsets inside it keep pointing into the original index.
//!
//! File layout (all integers big-endian), `crates/kiln-tsdb/docs/format/index-header.md`:
//! ```text
//! magic 0x4B494831 <4b> | version 1 <1b> | index version <1b> | index size <8b>
//! | index TOC: six section offsets <6 x 8b>
//! | symbol table, as in the index (len | body | CRC32)
//! | postings offset table, as in the index (len | body | CRC32)
//! | CRC32 of everything before <4b>
//! ```

use std::fs::{self, File};
use std::io::Write;
use std::ops::Range;
use std::path::{Path, PathBuf};

use kiln_model::LabelsBuilder;

use super::postings::Postings;
use super::reader::decode_series_entry;
use super::tables::{IndexTables, Located, PostingsRange, decode_postings};
use super::{
    ChunkMeta, INDEX_HEADER_LEN, INDEX_MAGIC, INDEX_TOC_LEN, INDEX_VERSION_2, INDEX_VERSION_3,
    SERIES_ALIGN, Toc,
};
use crate::block::enc::{Decoder, crc, put_be32, put_be64};
use crate::block::error::{BlockError, Corruption, DecodeError, Result};
use crate::block::mmap::FileBytes;

/// First four bytes of an index-header file ("KIH1").
pub const INDEX_HEADER_MAGIC: u32 = 0x4B49_4831;
/// The header format version written and read here.
pub const INDEX_HEADER_VERSION: u8 = 1;
/// Magic, version, index version, index size and TOC.
const FIXED_LEN: usize = 4 + 1 + 1 + 8 + 6 * 8;

/// The byte ranges of an index a header is built from (see [`IndexHeader::write`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderSources {
    /// The symbol table (possibly with padding after it).
    pub symbols: Range<u64>,
    /// The postings offset table, up to the TOC.
    pub postings_offset_table: Range<u64>,
}

/// The parsed, memory-mapped index-header of one block. Safe to share between threads.
#[derive(Debug)]
pub struct IndexHeader {
    path: PathBuf,
    data: FileBytes,
    index_version: u8,
    index_size: u64,
    toc: Toc,
    /// End of the series section in the index (exclusive).
    series_end: u64,
    /// End of the last postings list in the index (exclusive).
    postings_end: u64,
    tables: IndexTables,
}

impl IndexHeader {
    /// Checks an index's first bytes (magic and version) and returns the version.
    pub fn index_version(head: &[u8], index: &Path) -> Result<u8> {
        let mut d = Decoder::new(head, 0);
        let magic = d.be32().map_err(|e| e.at(index, "header"))?;
        if magic != INDEX_MAGIC {
            return Err(BlockError::Corrupt {
                path: index.to_path_buf(),
                section: "header",
                offset: 0,
                problem: Corruption::BadMagic {
                    found: magic,
                    want: INDEX_MAGIC,
                },
            });
        }
        let version = d.u8().map_err(|e| e.at(index, "header"))?;
        if version != INDEX_VERSION_2 && version != INDEX_VERSION_3 {
            return Err(BlockError::UnsupportedVersion {
                path: index.to_path_buf(),
                what: "index",
                version: version.into(),
            });
        }
        Ok(version)
    }

    /// Bytes at the start of an index that [`IndexHeader::index_version`] reads.
    pub const INDEX_HEAD_LEN: u64 = INDEX_HEADER_LEN as u64;
    /// Bytes at the end of an index that [`IndexHeader::index_toc`] reads.
    pub const INDEX_TOC_LEN: u64 = INDEX_TOC_LEN as u64;

    /// Decodes an index's TOC from its last [`INDEX_TOC_LEN`] bytes, and says which
    /// ranges of the index (of `index_size` bytes) a header needs.
    pub fn index_toc(tail: &[u8], index_size: u64, index: &Path) -> Result<(Toc, HeaderSources)> {
        // Toc::decode wants the TOC at the end of a buffer holding at least a header.
        let mut buf = vec![0u8; INDEX_HEADER_LEN];
        buf.extend_from_slice(tail);
        let toc = Toc::decode(&buf).map_err(|e| e.at(index, "TOC"))?;
        let toc_start = index_size.saturating_sub(INDEX_TOC_LEN as u64);
        let bad = |what, value| BlockError::Corrupt {
            path: index.to_path_buf(),
            section: "TOC",
            offset: toc_start,
            problem: Corruption::OutOfRange {
                what,
                value,
                limit: toc_start,
            },
        };
        if toc.symbols < INDEX_HEADER_LEN as u64 || toc.symbols >= toc_start {
            return Err(bad("symbols", toc.symbols));
        }
        if toc.postings_offset_table < toc.symbols || toc.postings_offset_table >= toc_start {
            return Err(bad("postings offset table", toc.postings_offset_table));
        }
        let symbols_end = if toc.series > toc.symbols && toc.series <= toc_start {
            toc.series
        } else {
            toc.postings_offset_table
        };
        Ok((
            toc,
            HeaderSources {
                symbols: toc.symbols..symbols_end,
                postings_offset_table: toc.postings_offset_table..toc_start,
            },
        ))
    }

    /// Writes the header of an index to `path` (through a temporary file and a rename,
    /// so a crash leaves no half-written header) and opens it. `symbols` and
    /// `postings_offset_table` are the bytes of the [`HeaderSources`] ranges.
    pub fn write(
        path: &Path,
        index_version: u8,
        index_size: u64,
        toc: &Toc,
        symbols: &[u8],
        postings_offset_table: &[u8],
    ) -> Result<IndexHeader> {
        let section = |bytes: &[u8], off: u64, what: &'static str| -> Result<Vec<u8>> {
            let mut d = Decoder::new(bytes, off);
            let len = d.be32().map_err(|e| e.at(path, what))? as usize;
            let whole = 4 + len + 4;
            bytes
                .get(..whole)
                .map(<[u8]>::to_vec)
                .ok_or(BlockError::Corrupt {
                    path: path.to_path_buf(),
                    section: what,
                    offset: off,
                    problem: Corruption::Truncated {
                        need: whole as u64,
                        available: bytes.len() as u64,
                    },
                })
        };
        let symbols = section(symbols, toc.symbols, "symbol table")?;
        let pot = section(
            postings_offset_table,
            toc.postings_offset_table,
            "postings offset table",
        )?;
        let mut buf = Vec::with_capacity(FIXED_LEN + symbols.len() + pot.len() + 4);
        put_be32(&mut buf, INDEX_HEADER_MAGIC);
        buf.push(INDEX_HEADER_VERSION);
        buf.push(index_version);
        put_be64(&mut buf, index_size);
        for v in toc_fields(toc) {
            put_be64(&mut buf, v);
        }
        buf.extend_from_slice(&symbols);
        buf.extend_from_slice(&pot);
        let sum = crc(&buf);
        put_be32(&mut buf, sum);

        let tmp = path.with_extension("tmp");
        let write = || -> std::io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.write_all(&buf)?;
            f.sync_all()?;
            fs::rename(&tmp, path)
        };
        write().map_err(BlockError::io("write index-header", path))?;
        IndexHeader::open(path)
    }

    /// Maps and checks the header file at `path`.
    pub fn open(path: &Path) -> Result<IndexHeader> {
        let data = FileBytes::map(path)?;
        IndexHeader::parse(path.to_path_buf(), data)
    }

    fn parse(path: PathBuf, data: FileBytes) -> Result<IndexHeader> {
        let p = path.as_path();
        let at = |section| move |e: DecodeError| e.at(p, section);
        if data.len() < FIXED_LEN + 4 {
            return Err(DecodeError::new(
                0,
                Corruption::Truncated {
                    need: (FIXED_LEN + 4) as u64,
                    available: data.len() as u64,
                },
            )
            .at(p, "index-header"));
        }
        let body_len = data.len() - 4;
        let stored = u32::from_be_bytes([
            data[body_len],
            data[body_len + 1],
            data[body_len + 2],
            data[body_len + 3],
        ]);
        let computed = crc(&data[..body_len]);
        if stored != computed {
            return Err(DecodeError::new(
                body_len as u64,
                Corruption::Checksum { stored, computed },
            )
            .at(p, "index-header"));
        }
        let mut d = Decoder::new(&data[..body_len], 0);
        let magic = d.be32().map_err(at("index-header"))?;
        if magic != INDEX_HEADER_MAGIC {
            return Err(BlockError::Corrupt {
                path: path.clone(),
                section: "index-header",
                offset: 0,
                problem: Corruption::BadMagic {
                    found: magic,
                    want: INDEX_HEADER_MAGIC,
                },
            });
        }
        let version = d.u8().map_err(at("index-header"))?;
        if version != INDEX_HEADER_VERSION {
            return Err(BlockError::UnsupportedVersion {
                path: path.clone(),
                what: "index-header",
                version: version.into(),
            });
        }
        let index_version = d.u8().map_err(at("index-header"))?;
        let index_size = d.be64().map_err(at("index-header"))?;
        let mut f = [0u64; 6];
        for v in &mut f {
            *v = d.be64().map_err(at("index-header"))?;
        }
        let toc = Toc {
            symbols: f[0],
            series: f[1],
            label_indices: f[2],
            label_offset_table: f[3],
            postings: f[4],
            postings_offset_table: f[5],
        };
        let symbols_at = FIXED_LEN as u64;
        let symbols_len = Decoder::new(&data[FIXED_LEN..body_len], symbols_at)
            .be32()
            .map_err(at("symbol table"))?;
        let pot_at = symbols_at + 8 + u64::from(symbols_len);
        let tables = IndexTables::parse(&data[..body_len], symbols_at, pot_at)
            .map_err(|Located(section, e)| e.at(p, section))?;
        let toc_start = index_size.saturating_sub(INDEX_TOC_LEN as u64);
        let after = |start: u64| {
            toc_fields(&toc)
                .into_iter()
                .filter(|&o| o > start)
                .min()
                .unwrap_or(toc_start)
                .min(toc_start)
        };
        Ok(IndexHeader {
            series_end: after(toc.series),
            postings_end: after(toc.postings),
            path,
            data,
            index_version,
            index_size,
            toc,
            tables,
        })
    }

    /// The header file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Size of the header file in bytes.
    pub fn size(&self) -> u64 {
        self.data.len() as u64
    }

    /// The index's format version.
    pub fn version(&self) -> u8 {
        self.index_version
    }

    /// The index's size in bytes.
    pub fn index_size(&self) -> u64 {
        self.index_size
    }

    /// The index's TOC.
    pub fn toc(&self) -> &Toc {
        &self.toc
    }

    /// Number of symbols.
    pub fn symbol_count(&self) -> u32 {
        self.tables.symbol_count()
    }

    fn corrupt(&self, section: &'static str) -> impl Fn(DecodeError) -> BlockError + '_ {
        move |e| e.at(&self.path, section)
    }

    /// All label names, sorted.
    pub fn label_names(&self) -> Vec<String> {
        self.tables.label_names()
    }

    /// All values of label `name`, sorted.
    pub fn label_values(&self, name: &str) -> Result<Vec<String>> {
        self.tables
            .label_values(&self.data, name)
            .map_err(self.corrupt("postings offset table"))
    }

    /// Where the postings lists of the values of `name` that `filter` accepts lie in
    /// the index.
    pub fn postings_ranges<F>(&self, name: &str, filter: F) -> Result<Vec<PostingsRange>>
    where
        F: FnMut(&str) -> bool,
    {
        self.tables
            .postings_ranges(&self.data, name, self.postings_end, filter)
            .map_err(self.corrupt("postings offset table"))
    }

    /// Where the postings list of `name="value"` lies in the index.
    pub fn postings_range(&self, name: &str, value: &str) -> Result<Option<Range<u64>>> {
        self.tables
            .postings_range_of(&self.data, name, value, self.postings_end)
            .map_err(self.corrupt("postings offset table"))
    }

    /// Where the list of every series lies in the index.
    pub fn all_postings_range(&self) -> Result<Option<Range<u64>>> {
        self.tables
            .all_postings_range(&self.data, self.postings_end)
            .map_err(self.corrupt("postings offset table"))
    }

    /// The index range series entries lie in.
    pub fn series_range(&self) -> Range<u64> {
        self.toc.series..self.series_end
    }

    /// Decodes the postings list that `bytes` start with (fetched from index offset
    /// `at`). `index` names the file in errors.
    pub fn decode_postings<'b>(bytes: &'b [u8], at: u64, index: &Path) -> Result<Postings<'b>> {
        // The decoder reads sections at absolute offsets: give it one starting at 0.
        decode_postings(bytes, 0).map_err(|e| shift(e, at).at(index, "postings"))
    }

    /// Decodes the entry of series `id` from `entry`, bytes of the index starting at the
    /// series' offset (at least [`series_entry_len`] of them; more is fine). `builder` is
    /// reset and holds the labels; `chunks`, when given, is cleared and filled.
    pub fn decode_series(
        &self,
        entry: &[u8],
        id: u32,
        index: &Path,
        builder: &mut LabelsBuilder,
        chunks: Option<&mut Vec<ChunkMeta>>,
    ) -> Result<()> {
        let at = u64::from(id) * SERIES_ALIGN;
        decode_series_entry(entry, 0, &self.tables, &self.data, builder, chunks)
            .map_err(|e| shift(e, at).at(index, "series"))
    }
}

/// How many bytes the series entry that `prefix` starts with takes (length field,
/// body and checksum); `None` while `prefix` is too short to say.
pub fn series_entry_len(prefix: &[u8]) -> Option<u64> {
    let mut d = Decoder::new(prefix, 0);
    let len = d.uvarint().ok()?;
    Some(d.pos() as u64 + len + 4)
}

fn toc_fields(toc: &Toc) -> [u64; 6] {
    [
        toc.symbols,
        toc.series,
        toc.label_indices,
        toc.label_offset_table,
        toc.postings,
        toc.postings_offset_table,
    ]
}

/// A decoding error at an offset within fetched bytes, as an offset in the index.
fn shift(mut e: DecodeError, by: u64) -> DecodeError {
    e.offset = e.offset.saturating_add(by);
    e
}
