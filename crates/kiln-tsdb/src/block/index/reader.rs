//! [`IndexReader`]: reads an index file (format v2; v3 is read as v2, v1 is refused).
//!
//! `open` maps the file and checks the header, the TOC, the symbol table and the postings
//! offset table (checksums, order, UTF-8). It keeps in memory one offset per symbol and,
//! per label name, every 32nd entry of the postings offset table (like Prometheus), so a
//! lookup is a binary search plus a scan of at most 32 entries. Series entries and postings
//! lists are checksummed each time they are read.

use std::path::{Path, PathBuf};

use kiln_model::{Labels, LabelsBuilder};

use super::postings::{Postings, merge};
use super::{
    ChunkMeta, INDEX_HEADER_LEN, INDEX_MAGIC, INDEX_TOC_LEN, INDEX_VERSION_2, INDEX_VERSION_3,
    SERIES_ALIGN, Toc,
};
use crate::block::enc::{Decoder, be32_section, utf8_at, uvarint_section};
use crate::block::error::{BlockError, Corruption, DecodeError, Result};
use crate::block::mmap::FileBytes;

/// Every this many values of a label name, one postings offset entry is kept in memory.
const SAMPLE_EVERY: usize = 32;

/// A read-only view of one index file. Cheap lookups, safe to share between threads.
#[derive(Debug)]
pub struct IndexReader {
    path: PathBuf,
    data: FileBytes,
    version: u8,
    toc: Toc,
    /// Absolute offset of the symbol table body (the count field).
    symbols_base: usize,
    /// Offset of every symbol relative to `symbols_base`.
    symbol_offsets: Vec<u32>,
    /// End of the series section (exclusive).
    series_end: u64,
    /// Absolute offset and length of the postings offset table body.
    pot_base: usize,
    pot_len: usize,
    /// Label names in order, with samples of their postings offset entries.
    names: Vec<NameEntry>,
    all_postings: Option<u64>,
}

#[derive(Debug)]
struct NameEntry {
    name: Box<str>,
    /// Offsets of the first entry and past the last entry, relative to `pot_base`.
    start: u32,
    end: u32,
    /// Every 32nd entry and the last one.
    samples: Vec<Sample>,
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    /// Entry offset, and the value's bytes, relative to `pot_base`.
    entry: u32,
    value_start: u32,
    value_len: u32,
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

        // Symbols: remember where each one starts.
        let mut d = be32_section(&data, toc.symbols).map_err(at("symbol table"))?;
        let symbols_base = d.offset() as usize;
        let count = d.be32().map_err(at("symbol table"))?;
        let mut symbol_offsets = Vec::with_capacity((count as usize).min(d.remaining()));
        for _ in 0..count {
            symbol_offsets.push(d.pos() as u32);
            d.uvarint_str().map_err(at("symbol table"))?;
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

        let (pot_base, pot_len, names, all_postings) =
            read_postings_offset_table(&data, toc.postings_offset_table)
                .map_err(at("postings offset table"))?;

        Ok(IndexReader {
            path,
            data,
            version,
            toc,
            symbols_base,
            symbol_offsets,
            series_end,
            pot_base,
            pot_len,
            names,
            all_postings,
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
        (self.symbol_offsets.len() * std::mem::size_of::<u32>()) as u64
    }

    /// Number of symbols in the symbol table.
    pub fn symbol_count(&self) -> u32 {
        self.symbol_offsets.len() as u32
    }

    fn corrupt(&self, section: &'static str) -> impl Fn(DecodeError) -> BlockError + '_ {
        move |e| e.at(&self.path, section)
    }

    /// The symbol with index `id`.
    pub fn symbol(&self, id: u32) -> Result<&str> {
        self.lookup_symbol(id, self.toc.symbols)
            .map_err(self.corrupt("symbol table"))
    }

    /// `at` is the offset reported if `id` is out of range.
    fn lookup_symbol(&self, id: u32, at: u64) -> Result<&str, DecodeError> {
        let Some(&rel) = self.symbol_offsets.get(id as usize) else {
            let limit = self.symbol_offsets.len() as u64;
            return Err(DecodeError::new(
                at,
                Corruption::OutOfRange {
                    what: "symbol reference",
                    value: id.into(),
                    limit,
                },
            ));
        };
        let abs = self.symbols_base + rel as usize;
        let tail = self.data.get(abs..).unwrap_or_default();
        Decoder::new(tail, abs as u64).uvarint_str()
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
        builder.reset();
        self.decode_series(
            id,
            |name, value, at| {
                let name = self.lookup_symbol(name, at)?;
                let value = self.lookup_symbol(value, at)?;
                builder.set(name, value);
                Ok(())
            },
            Some(chunks),
        )
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
        self.decode_series(
            id,
            |n, v, _| {
                pairs.push((n, v));
                Ok(())
            },
            chunks,
        )
    }

    fn decode_series<F>(
        &self,
        id: u32,
        mut on_pair: F,
        chunks: Option<&mut Vec<ChunkMeta>>,
    ) -> Result<()>
    where
        F: FnMut(u32, u32, u64) -> Result<(), DecodeError>,
    {
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
        let section = self
            .data
            .get(..self.series_end as usize)
            .unwrap_or_default();
        let run = || -> Result<(), DecodeError> {
            let mut d = uvarint_section(section, off)?;
            let n = d.uvarint()?;
            for _ in 0..n {
                let at = d.offset();
                let name = d.uvarint32("label name symbol")?;
                let value = d.uvarint32("label value symbol")?;
                on_pair(name, value, at)?;
            }
            if let Some(chunks) = chunks {
                decode_chunk_metas(&mut d, chunks)?;
            }
            Ok(())
        };
        run().map_err(self.corrupt("series"))
    }

    /// The series ids that have `name="value"`, sorted. Empty if there are none.
    pub fn postings(&self, name: &str, value: &str) -> Result<Postings<'_>> {
        match self.find_postings(name, value)? {
            Some(off) => self.read_postings(off),
            None => Ok(Postings::empty()),
        }
    }

    /// The ids of every series in the index, sorted.
    pub fn all_postings(&self) -> Result<Postings<'_>> {
        match self.all_postings {
            Some(off) => self.read_postings(off),
            None => Ok(Postings::empty()),
        }
    }

    /// The union of the postings of every value of `name` for which `filter` is true.
    pub fn postings_for_values<F>(&self, name: &str, mut filter: F) -> Result<Postings<'static>>
    where
        F: FnMut(&str) -> bool,
    {
        let Some(entry) = self.name_entry(name) else {
            return Ok(Postings::empty());
        };
        let mut lists = Vec::new();
        self.scan(entry, entry.start, |value, off| {
            if filter(value) {
                lists.push(off);
            }
            Ok(true)
        })?;
        let lists = lists
            .into_iter()
            .map(|off| self.read_postings(off))
            .collect::<Result<Vec<_>>>()?;
        Ok(merge(lists))
    }

    /// All label names, sorted (without the all-postings key).
    pub fn label_names(&self) -> Vec<String> {
        self.names
            .iter()
            .filter(|n| !n.name.is_empty())
            .map(|n| n.name.to_string())
            .collect()
    }

    /// All values of label `name`, sorted. Empty if the name is unknown.
    pub fn label_values(&self, name: &str) -> Result<Vec<String>> {
        let Some(entry) = self.name_entry(name) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::with_capacity(entry.samples.len() * SAMPLE_EVERY);
        self.scan(entry, entry.start, |value, _| {
            out.push(value.to_owned());
            Ok(true)
        })?;
        Ok(out)
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
        for name in &self.names {
            self.scan(name, name.start, |_, off| {
                self.read_postings(off).map(|_| true)
            })?;
        }
        Ok(n)
    }

    fn name_entry(&self, name: &str) -> Option<&NameEntry> {
        let i = self.names.binary_search_by(|n| (*n.name).cmp(name)).ok()?;
        self.names.get(i)
    }

    fn pot_body(&self) -> &[u8] {
        self.data
            .get(self.pot_base..self.pot_base + self.pot_len)
            .unwrap_or_default()
    }

    fn sample_value(&self, s: &Sample) -> &[u8] {
        let start = s.value_start as usize;
        self.pot_body()
            .get(start..start + s.value_len as usize)
            .unwrap_or_default()
    }

    fn find_postings(&self, name: &str, value: &str) -> Result<Option<u64>> {
        let Some(entry) = self.name_entry(name) else {
            return Ok(None);
        };
        let i = entry
            .samples
            .partition_point(|s| self.sample_value(s) <= value.as_bytes());
        let Some(sample) = i.checked_sub(1).and_then(|i| entry.samples.get(i)) else {
            return Ok(None);
        };
        let mut found = None;
        self.scan(entry, sample.entry, |v, off| {
            if v == value {
                found = Some(off);
            }
            Ok(v < value)
        })?;
        Ok(found)
    }

    /// Calls `f(value, postings offset)` for the entries of `entry` from `from` on, while
    /// it returns `Ok(true)`.
    fn scan<F>(&self, entry: &NameEntry, from: u32, mut f: F) -> Result<()>
    where
        F: FnMut(&str, u64) -> Result<bool>,
    {
        let body = self.pot_body();
        let slice = body
            .get(from as usize..entry.end as usize)
            .unwrap_or_default();
        let mut d = Decoder::new(slice, (self.pot_base + from as usize) as u64);
        let corrupt = self.corrupt("postings offset table");
        while !d.is_empty() {
            let (_, value, _, off) = decode_entry(&mut d).map_err(&corrupt)?;
            if !f(value, off)? {
                break;
            }
        }
        Ok(())
    }

    fn read_postings(&self, off: u64) -> Result<Postings<'_>> {
        let run = || -> Result<Postings<'_>, DecodeError> {
            let mut d = be32_section(&self.data, off)?;
            let at = d.offset();
            let n = d.be32()?;
            let rest = d.remaining();
            if u64::from(n) * 4 != rest as u64 {
                return Err(DecodeError::new(
                    at,
                    Corruption::Malformed("postings list length does not match its count"),
                ));
            }
            let (ids, _) = d.bytes(rest)?.as_chunks::<4>();
            if ids
                .windows(2)
                .any(|w| u32::from_be_bytes(w[0]) >= u32::from_be_bytes(w[1]))
            {
                return Err(DecodeError::new(
                    at,
                    Corruption::Malformed("postings list is not strictly increasing"),
                ));
            }
            Ok(Postings::from_raw(ids))
        };
        run().map_err(self.corrupt("postings"))
    }
}

/// Decodes `#chunks` and the delta-encoded chunk metas of a series into `out`.
fn decode_chunk_metas(d: &mut Decoder<'_>, out: &mut Vec<ChunkMeta>) -> Result<(), DecodeError> {
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

/// Decodes one postings offset table entry: `2 | name | value | offset`. Also returns
/// where the value's bytes start (decoder position).
fn decode_entry<'a>(d: &mut Decoder<'a>) -> Result<(&'a str, &'a str, usize, u64), DecodeError> {
    let at = d.offset();
    if d.uvarint()? != 2 {
        return Err(DecodeError::new(
            at,
            Corruption::Malformed("postings offset entry does not have 2 keys"),
        ));
    }
    let name = d.uvarint_str()?;
    let len = d.uvarint_len()?;
    let value_pos = d.pos();
    let value_at = d.offset();
    let value = utf8_at(d.bytes(len)?, value_at)?;
    let off = d.uvarint()?;
    Ok((name, value, value_pos, off))
}

type PostingsTable = (usize, usize, Vec<NameEntry>, Option<u64>);

fn read_postings_offset_table(data: &[u8], off: u64) -> Result<PostingsTable, DecodeError> {
    let mut d = be32_section(data, off)?;
    let base = d.offset() as usize;
    let len = d.remaining();
    let count = d.be32()?;
    let mut names: Vec<NameEntry> = Vec::new();
    let mut all = None;
    let mut prev: Option<(&str, &str)> = None;
    let mut in_name = 0usize;
    let mut last = None;
    for _ in 0..count {
        let entry = d.pos() as u32;
        let at = d.offset();
        let (name, value, value_pos, postings_off) = decode_entry(&mut d)?;
        if let Some(p) = prev
            && (name, value) <= p
        {
            return Err(DecodeError::new(
                at,
                Corruption::Malformed("postings offset table is not sorted"),
            ));
        }
        prev = Some((name, value));
        let sample = Sample {
            entry,
            value_start: value_pos as u32,
            value_len: value.len() as u32,
        };
        if names.last().is_none_or(|n| *n.name != *name) {
            close_name(names.last_mut(), last, entry);
            names.push(NameEntry {
                name: name.into(),
                start: entry,
                end: entry,
                samples: Vec::new(),
            });
            in_name = 0;
        }
        if let Some(n) = names.last_mut()
            && in_name.is_multiple_of(SAMPLE_EVERY)
        {
            n.samples.push(sample);
        }
        in_name += 1;
        last = Some(sample);
        if name.is_empty() && value.is_empty() {
            all = Some(postings_off);
        }
    }
    close_name(names.last_mut(), last, d.pos() as u32);
    Ok((base, len, names, all))
}

/// Ends a name's entry range at `end` and makes sure its last entry is sampled.
fn close_name(name: Option<&mut NameEntry>, last: Option<Sample>, end: u32) {
    if let (Some(n), Some(last)) = (name, last) {
        n.end = end;
        if n.samples.last().is_none_or(|s| s.entry != last.entry) {
            n.samples.push(last);
        }
    }
}
