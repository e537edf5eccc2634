//! [`IndexReader`]: reads an index file (format v2; v3 is read as v2, v1 is refused).
//!
//! `open` maps the file and checks the header, the TOC, the symbol table and the postings
//! offset table (checksums, order, UTF-8), which it keeps parsed as [`IndexTables`].
//! Series entries and postings lists are checksummed each time they are read.

use std::path::{Path, PathBuf};

use kiln_model::{Labels, LabelsBuilder};

use super::postings::{Postings, merge};
use super::tables::{IndexTables, Located, decode_postings};
use super::{
    ChunkMeta, INDEX_HEADER_LEN, INDEX_MAGIC, INDEX_TOC_LEN, INDEX_VERSION_2, INDEX_VERSION_3,
    SERIES_ALIGN, Toc,
};
use crate::block::enc::{Decoder, uvarint_section};
use crate::block::error::{BlockError, Corruption, DecodeError, Result};
use crate::block::mmap::FileBytes;

/// A read-only view of one index file. Cheap lookups, safe to share between threads.
#[derive(Debug)]
pub struct IndexReader {
    path: PathBuf,
    data: FileBytes,
    version: u8,
    toc: Toc,
    /// End of the series section (exclusive).
    series_end: u64,
    tables: IndexTables,
}

impl IndexReader {
    /// Maps and checks the index file at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<IndexReader> {
        let path = path.as_ref().to_path_buf();
        let data = FileBytes::map(&path)?;
        IndexReader::new(path, data)
    }

    /// Reads an index from bytes in memory (tests, fuzzing). Errors name the file `<memory>`.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<IndexReader> {
        IndexReader::new(PathBuf::from("<memory>"), FileBytes::Owned(bytes))
    }

    fn new(path: PathBuf, data: FileBytes) -> Result<IndexReader> {
        let p = path.as_path();
        let at = |section| move |e: DecodeError| e.at(p, section);
        let mut d = Decoder::new(&data, 0);
        let magic = d.be32().map_err(at("header"))?;
        if magic != INDEX_MAGIC {
            return Err(BlockError::Corrupt {
                path: path.clone(),
                section: "header",
                offset: 0,
                problem: Corruption::BadMagic {
                    found: magic,
                    want: INDEX_MAGIC,
                },
            });
        }
        let version = d.u8().map_err(at("header"))?;
        if version != INDEX_VERSION_2 && version != INDEX_VERSION_3 {
            return Err(BlockError::UnsupportedVersion {
                path: path.clone(),
                what: "index",
                version: version.into(),
            });
        }
        let toc = Toc::decode(&data).map_err(at("TOC"))?;
        let toc_start = (data.len() - INDEX_TOC_LEN) as u64;
        for (name, off) in [
            ("symbols", toc.symbols),
            ("series", toc.series),
            ("label indices", toc.label_indices),
            ("label offset table", toc.label_offset_table),
            ("postings", toc.postings),
            ("postings offset table", toc.postings_offset_table),
        ] {
            if off > toc_start || (off != 0 && off < INDEX_HEADER_LEN as u64) {
                let problem = Corruption::OutOfRange {
                    what: name,
                    value: off,
                    limit: toc_start,
                };
                return Err(BlockError::Corrupt {
                    path: path.clone(),
                    section: "TOC",
                    offset: toc_start,
                    problem,
                });
            }
        }

        let series_end = [
            toc.label_indices,
            toc.label_offset_table,
            toc.postings,
            toc.postings_offset_table,
        ]
        .into_iter()
        .filter(|&o| o >= toc.series && o != 0)
        .min()
        .unwrap_or(toc_start);
        let tables = IndexTables::parse(&data, toc.symbols, toc.postings_offset_table)
            .map_err(|Located(section, e)| e.at(p, section))?;
        Ok(IndexReader {
            path,
            data,
            version,
            toc,
            series_end,
            tables,
        })
    }

    /// The file this reader reads.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The format version byte (2 or 3).
    pub fn version(&self) -> u8 {
        self.version
    }

    pub fn toc(&self) -> &Toc {
        &self.toc
    }

    /// Size of the file in bytes.
    pub fn size(&self) -> u64 {
        self.data.len() as u64
    }

    /// Bytes this reader keeps in memory to look symbols up (one offset per symbol):
    /// what Prometheus reports as a block's symbol table size.
    pub fn symbol_table_size(&self) -> u64 {
        self.tables.symbol_table_size()
    }

    /// Number of symbols in the symbol table.
    pub fn symbol_count(&self) -> u32 {
        self.tables.symbol_count()
    }

    fn corrupt(&self, section: &'static str) -> impl Fn(DecodeError) -> BlockError + '_ {
        move |e| e.at(&self.path, section)
    }

    /// The symbol with index `id`.
    pub fn symbol(&self, id: u32) -> Result<&str> {
        self.tables
            .symbol(&self.data, id, self.toc.symbols)
            .map_err(self.corrupt("symbol table"))
    }

    /// The labels and chunk metas of the series with id `id`.
    pub fn series(&self, id: u32) -> Result<(Labels, Vec<ChunkMeta>)> {
        let mut builder = LabelsBuilder::new();
        let mut chunks = Vec::new();
        self.series_into(id, &mut builder, &mut chunks)?;
        Ok((builder.build(), chunks))
    }

    /// Like [`IndexReader::series`] but fills reusable buffers: `builder` is reset and
    /// holds the labels (call `build`), `chunks` is cleared and filled.
    pub fn series_into(
        &self,
        id: u32,
        builder: &mut LabelsBuilder,
        chunks: &mut Vec<ChunkMeta>,
    ) -> Result<()> {
        let section = self.series_section(id)?;
        decode_series_entry(
            section,
            u64::from(id) * SERIES_ALIGN,
            &self.tables,
            &self.data,
            builder,
            Some(chunks),
        )
        .map_err(self.corrupt("series"))
    }

    /// The symbol ids of a series' label pairs (name, value), without resolving them, and
    /// optionally its chunk metas. Both buffers are cleared first.
    pub fn series_symbols(
        &self,
        id: u32,
        pairs: &mut Vec<(u32, u32)>,
        chunks: Option<&mut Vec<ChunkMeta>>,
    ) -> Result<()> {
        pairs.clear();
        let section = self.series_section(id)?;
        let run = || -> Result<(), DecodeError> {
            let mut d = uvarint_section(section, u64::from(id) * SERIES_ALIGN)?;
            let n = d.uvarint()?;
            for _ in 0..n {
                let name = d.uvarint32("label name symbol")?;
                let value = d.uvarint32("label value symbol")?;
                pairs.push((name, value));
            }
            if let Some(chunks) = chunks {
                decode_chunk_metas(&mut d, chunks)?;
            }
            Ok(())
        };
        run().map_err(self.corrupt("series"))
    }

    /// The series section up to its end, after checking that `id` lies in it.
    fn series_section(&self, id: u32) -> Result<&[u8]> {
        let off = u64::from(id) * SERIES_ALIGN;
        if off < self.toc.series || off >= self.series_end {
            return Err(BlockError::Corrupt {
                path: self.path.clone(),
                section: "series",
                offset: off,
                problem: Corruption::OutOfRange {
                    what: "series id",
                    value: id.into(),
                    limit: self.series_end / SERIES_ALIGN,
                },
            });
        }
        Ok(self
            .data
            .get(..self.series_end as usize)
            .unwrap_or_default())
    }

    /// The series ids that have `name="value"`, sorted. Empty if there are none.
    pub fn postings(&self, name: &str, value: &str) -> Result<Postings<'_>> {
        let found = self
            .tables
            .find_postings(&self.data, name, value)
            .map_err(self.corrupt("postings offset table"))?;
        match found {
            Some(off) => self.read_postings(off),
            None => Ok(Postings::empty()),
        }
    }

    /// The ids of every series in the index, sorted.
    pub fn all_postings(&self) -> Result<Postings<'_>> {
        match self.tables.all_postings() {
            Some(off) => self.read_postings(off),
            None => Ok(Postings::empty()),
        }
    }

    /// The union of the postings of every value of `name` for which `filter` is true.
    pub fn postings_for_values<F>(&self, name: &str, filter: F) -> Result<Postings<'static>>
    where
        F: FnMut(&str) -> bool,
    {
        let lists = self
            .tables
            .postings_for_values(&self.data, name, filter)
            .map_err(self.corrupt("postings offset table"))?
            .into_iter()
            .map(|off| self.read_postings(off))
            .collect::<Result<Vec<_>>>()?;
        Ok(merge(lists))
    }

    /// All label names, sorted (without the all-postings key).
    pub fn label_names(&self) -> Vec<String> {
        self.tables.label_names()
    }

    /// All values of label `name`, sorted. Empty if the name is unknown.
    pub fn label_values(&self, name: &str) -> Result<Vec<String>> {
        self.tables
            .label_values(&self.data, name)
            .map_err(self.corrupt("postings offset table"))
    }

    /// Reads every series and postings list once, to find corruption (and for fuzzing).
    /// Returns the number of series.
    pub fn check(&self) -> Result<u64> {
        let mut builder = LabelsBuilder::new();
        let mut chunks = Vec::new();
        let mut n = 0;
        for id in self.all_postings()? {
            self.series_into(id, &mut builder, &mut chunks)?;
            n += 1;
        }
        let lists = self
            .tables
            .every_postings(&self.data)
            .map_err(self.corrupt("postings offset table"))?;
        for off in lists {
            self.read_postings(off)?;
        }
        Ok(n)
    }

    fn read_postings(&self, off: u64) -> Result<Postings<'_>> {
        decode_postings(&self.data, off).map_err(self.corrupt("postings"))
    }
}

/// Decodes the series entry at offset `off` of `section` (`len | labels | chunks | CRC`),
/// resolving symbols through `tables` (parsed from `tables_buf`). `builder` is reset
/// and holds the labels; `chunks`, when given, is cleared and filled.
pub(crate) fn decode_series_entry(
    section: &[u8],
    off: u64,
    tables: &IndexTables,
    tables_buf: &[u8],
    builder: &mut LabelsBuilder,
    chunks: Option<&mut Vec<ChunkMeta>>,
) -> Result<(), DecodeError> {
    builder.reset();
    let mut d = uvarint_section(section, off)?;
    let n = d.uvarint()?;
    for _ in 0..n {
        let at = d.offset();
        let name = d.uvarint32("label name symbol")?;
        let value = d.uvarint32("label value symbol")?;
        builder.set(
            tables.symbol(tables_buf, name, at)?,
            tables.symbol(tables_buf, value, at)?,
        );
    }
    if let Some(chunks) = chunks {
        decode_chunk_metas(&mut d, chunks)?;
    }
    Ok(())
}

/// Decodes `#chunks` and the delta-encoded chunk metas of a series into `out`.
pub(crate) fn decode_chunk_metas(
    d: &mut Decoder<'_>,
    out: &mut Vec<ChunkMeta>,
) -> Result<(), DecodeError> {
    out.clear();
    let at = d.offset();
    let k = d.uvarint()?;
    if k == 0 {
        return Ok(());
    }
    // Each chunk meta takes at least three bytes: refuse counts the entry cannot hold.
    if k > d.remaining() as u64 / 3 {
        return Err(DecodeError::new(
            at,
            Corruption::Malformed("chunk count larger than the series entry"),
        ));
    }
    out.reserve(k as usize);
    let min_time = d.varint()?;
    let max_time = min_time.wrapping_add(d.uvarint()? as i64);
    let mut chunk_ref = d.uvarint()?;
    out.push(ChunkMeta {
        min_time,
        max_time,
        chunk_ref,
    });
    let mut t0 = max_time;
    for _ in 1..k {
        let min_time = t0.wrapping_add(d.uvarint()? as i64);
        let max_time = min_time.wrapping_add(d.uvarint()? as i64);
        chunk_ref = chunk_ref.wrapping_add(d.varint()? as u64);
        out.push(ChunkMeta {
            min_time,
            max_time,
            chunk_ref,
        });
        t0 = max_time;
    }
    Ok(())
}
