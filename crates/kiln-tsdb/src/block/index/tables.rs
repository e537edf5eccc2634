//! [`IndexTables`]: the two parts of an index a reader keeps at hand, the symbol table
//! and the postings offset table, parsed once and looked up many times.
//!
//! The tables do not own their bytes: every method takes the buffer they were parsed
//! from. For [`IndexReader`](super::IndexReader) that buffer is the whole mapped index
//! file; for an [`IndexHeader`](super::IndexHeader) it is the index-header file, which
//! holds copies of just these two sections. Offsets kept here are relative to that
//! buffer; the postings offsets *in* the table always point into the original index.
//!
//! Lookups keep in memory one offset per symbol and, per label name, every 32nd entry of
//! the postings offset table (like Prometheus), so a lookup is a binary search plus a
//! scan of at most 32 entries.

use std::ops::Range;

use super::postings::Postings;
use crate::block::enc::{Decoder, be32_section, utf8_at};
use crate::block::error::{Corruption, DecodeError};

/// Every this many values of a label name, one postings offset entry is kept in memory.
const SAMPLE_EVERY: usize = 32;

/// Symbols and postings offset table of one index (see the module docs).
#[derive(Debug)]
pub struct IndexTables {
    /// Offset of the symbol table body (the count field) in the buffer.
    symbols_base: usize,
    /// Offset of every symbol relative to `symbols_base`.
    symbol_offsets: Vec<u32>,
    /// Offset and length of the postings offset table body in the buffer.
    pot_base: usize,
    pot_len: usize,
    /// Label names in order, with samples of their postings offset entries.
    names: Vec<NameEntry>,
    /// Index offset of the list of every series.
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

/// One postings list found in the table: its value and where it lies in the index.
/// `end` is where the next list starts (or the end of the postings section), so the
/// range may hold alignment padding after the list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostingsRange {
    pub value: String,
    pub range: Range<u64>,
}

impl IndexTables {
    /// Parses the symbol table at `symbols` and the postings offset table at `pot`, both
    /// offsets in `buf`. Checks checksums, order and UTF-8.
    pub(crate) fn parse(buf: &[u8], symbols: u64, pot: u64) -> Result<IndexTables, Located> {
        let in_symbols = |e| Located("symbol table", e);
        let mut d = be32_section(buf, symbols).map_err(in_symbols)?;
        let symbols_base = d.offset() as usize;
        let count = d.be32().map_err(in_symbols)?;
        let mut symbol_offsets = Vec::with_capacity((count as usize).min(d.remaining()));
        for _ in 0..count {
            symbol_offsets.push(d.pos() as u32);
            d.uvarint_str().map_err(in_symbols)?;
        }
        let (pot_base, pot_len, names, all_postings) = read_postings_offset_table(buf, pot)
            .map_err(|e| Located("postings offset table", e))?;
        Ok(IndexTables {
            symbols_base,
            symbol_offsets,
            pot_base,
            pot_len,
            names,
            all_postings,
        })
    }

    /// Bytes kept in memory for symbol lookups (one offset per symbol).
    pub fn symbol_table_size(&self) -> u64 {
        (self.symbol_offsets.len() * std::mem::size_of::<u32>()) as u64
    }

    /// Number of symbols.
    pub fn symbol_count(&self) -> u32 {
        self.symbol_offsets.len() as u32
    }

    /// The symbol with index `id`; `at` is the offset reported if `id` is out of range.
    pub(crate) fn symbol<'b>(
        &self,
        buf: &'b [u8],
        id: u32,
        at: u64,
    ) -> Result<&'b str, DecodeError> {
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
        let tail = buf.get(abs..).unwrap_or_default();
        Decoder::new(tail, abs as u64).uvarint_str()
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
    pub(crate) fn label_values(&self, buf: &[u8], name: &str) -> Result<Vec<String>, DecodeError> {
        let Some(entry) = self.name_entry(name) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::with_capacity(entry.samples.len() * SAMPLE_EVERY);
        self.scan(buf, entry, entry.start, |value, _| {
            out.push(value.to_owned());
            Ok(true)
        })?;
        Ok(out)
    }

    /// Index offset of the list of every series.
    pub fn all_postings(&self) -> Option<u64> {
        self.all_postings
    }

    /// Index offset of the postings list of `name="value"`.
    pub(crate) fn find_postings(
        &self,
        buf: &[u8],
        name: &str,
        value: &str,
    ) -> Result<Option<u64>, DecodeError> {
        let Some(entry) = self.name_entry(name) else {
            return Ok(None);
        };
        let i = entry
            .samples
            .partition_point(|s| self.sample_value(buf, s) <= value.as_bytes());
        let Some(sample) = i.checked_sub(1).and_then(|i| entry.samples.get(i)) else {
            return Ok(None);
        };
        let mut found = None;
        self.scan(buf, entry, sample.entry, |v, off| {
            if v == value {
                found = Some(off);
            }
            Ok(v < value)
        })?;
        Ok(found)
    }

    /// Index offsets of the postings lists of the values of `name` that `filter` accepts.
    pub(crate) fn postings_for_values<F>(
        &self,
        buf: &[u8],
        name: &str,
        mut filter: F,
    ) -> Result<Vec<u64>, DecodeError>
    where
        F: FnMut(&str) -> bool,
    {
        let Some(entry) = self.name_entry(name) else {
            return Ok(Vec::new());
        };
        let mut lists = Vec::new();
        self.scan(buf, entry, entry.start, |value, off| {
            if filter(value) {
                lists.push(off);
            }
            Ok(true)
        })?;
        Ok(lists)
    }

    /// The postings lists of the values of `name` that `filter` accepts, with the index
    /// range each lies in; `postings_end` ends the last list of the table.
    pub(crate) fn postings_ranges<F>(
        &self,
        buf: &[u8],
        name: &str,
        postings_end: u64,
        filter: F,
    ) -> Result<Vec<PostingsRange>, DecodeError>
    where
        F: FnMut(&str) -> bool,
    {
        let Some(entry) = self.name_entry(name) else {
            return Ok(Vec::new());
        };
        self.ranges_from(buf, entry, entry.start, postings_end, filter, |_| false)
    }

    /// The index range of the postings list of `name="value"`: a sampled binary search,
    /// then a scan of at most 32 entries.
    pub(crate) fn postings_range_of(
        &self,
        buf: &[u8],
        name: &str,
        value: &str,
        postings_end: u64,
    ) -> Result<Option<Range<u64>>, DecodeError> {
        let Some(entry) = self.name_entry(name) else {
            return Ok(None);
        };
        let i = entry
            .samples
            .partition_point(|s| self.sample_value(buf, s) <= value.as_bytes());
        let Some(sample) = i.checked_sub(1).and_then(|i| entry.samples.get(i)) else {
            return Ok(None);
        };
        let found = self.ranges_from(
            buf,
            entry,
            sample.entry,
            postings_end,
            |v| v == value,
            |v| v > value,
        )?;
        Ok(found.into_iter().next().map(|p| p.range))
    }

    /// Scans `entry`'s values from entry offset `from` until `stop` says so, collecting
    /// the ranges of those `filter` accepts. Entries are decoded past the name's end,
    /// so that its last value learns where the next name's first list starts.
    fn ranges_from<F, S>(
        &self,
        buf: &[u8],
        entry: &NameEntry,
        from: u32,
        postings_end: u64,
        mut filter: F,
        mut stop: S,
    ) -> Result<Vec<PostingsRange>, DecodeError>
    where
        F: FnMut(&str) -> bool,
        S: FnMut(&str) -> bool,
    {
        let body = self.pot_body(buf);
        let slice = body.get(from as usize..).unwrap_or_default();
        let mut d = Decoder::new(slice, (self.pot_base + from as usize) as u64);
        let name_len = entry.end.saturating_sub(from) as usize;
        let mut out: Vec<PostingsRange> = Vec::new();
        let mut pending: Option<(String, u64)> = None;
        while !d.is_empty() {
            let in_name = d.pos() < name_len;
            let (_, value, _, off) = decode_entry(&mut d)?;
            if let Some((v, start)) = pending.take() {
                out.push(PostingsRange {
                    value: v,
                    range: start..off,
                });
            }
            if !in_name || stop(value) {
                break;
            }
            if filter(value) {
                pending = Some((value.to_owned(), off));
            }
        }
        if let Some((v, start)) = pending {
            out.push(PostingsRange {
                value: v,
                range: start..postings_end,
            });
        }
        Ok(out)
    }

    /// Index range of the list of every series (see [`IndexTables::postings_ranges`]).
    pub(crate) fn all_postings_range(
        &self,
        buf: &[u8],
        postings_end: u64,
    ) -> Result<Option<Range<u64>>, DecodeError> {
        Ok(self
            .postings_ranges(buf, "", postings_end, |v| v.is_empty())?
            .pop()
            .map(|p| p.range))
    }

    /// Every postings list offset in the table, for whole-index checks.
    pub(crate) fn every_postings(&self, buf: &[u8]) -> Result<Vec<u64>, DecodeError> {
        let mut out = Vec::new();
        for name in &self.names {
            self.scan(buf, name, name.start, |_, off| {
                out.push(off);
                Ok(true)
            })?;
        }
        Ok(out)
    }

    fn name_entry(&self, name: &str) -> Option<&NameEntry> {
        let i = self.names.binary_search_by(|n| (*n.name).cmp(name)).ok()?;
        self.names.get(i)
    }

    fn pot_body<'b>(&self, buf: &'b [u8]) -> &'b [u8] {
        buf.get(self.pot_base..self.pot_base + self.pot_len)
            .unwrap_or_default()
    }

    fn sample_value<'b>(&self, buf: &'b [u8], s: &Sample) -> &'b [u8] {
        let start = s.value_start as usize;
        self.pot_body(buf)
            .get(start..start + s.value_len as usize)
            .unwrap_or_default()
    }

    /// Calls `f(value, postings offset)` for the entries of `entry` from `from` on, while
    /// it returns `Ok(true)`.
    fn scan<F>(&self, buf: &[u8], entry: &NameEntry, from: u32, mut f: F) -> Result<(), DecodeError>
    where
        F: FnMut(&str, u64) -> Result<bool, DecodeError>,
    {
        let body = self.pot_body(buf);
        let slice = body
            .get(from as usize..entry.end as usize)
            .unwrap_or_default();
        let mut d = Decoder::new(slice, (self.pot_base + from as usize) as u64);
        while !d.is_empty() {
            let (_, value, _, off) = decode_entry(&mut d)?;
            if !f(value, off)? {
                break;
            }
        }
        Ok(())
    }
}

/// A decoding error with the section it happened in.
#[derive(Debug)]
pub(crate) struct Located(pub(crate) &'static str, pub(crate) DecodeError);

/// Decodes one postings list (`len <4b> | n <4b> | ids | CRC32`) at offset `off` of `buf`,
/// checking its checksum, count and order.
pub(crate) fn decode_postings(buf: &[u8], off: u64) -> Result<Postings<'_>, DecodeError> {
    let mut d = be32_section(buf, off)?;
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
