//! [`IndexWriter`]: writes an index file in format v2, byte for byte as Prometheus does.
//!
//! Order of calls: optionally [`IndexWriter::add_symbols`] (all symbols, sorted, unique),
//! then [`IndexWriter::add_series`] for every series in label order, then
//! [`IndexWriter::finish`]. Without `add_symbols` the writer buffers the series in memory
//! and derives the symbol table from them at `finish` (convenient for small indexes;
//! callers writing large blocks should pass the symbols first, as Prometheus's compactor
//! does).
//!
//! Memory: with symbols given up front, the writer streams series to disk and keeps the
//! symbol strings, a hash → symbol id map and one `Vec<u32>` of series ids per label pair
//! (about 4 bytes per label of every series, plus per-pair overhead).

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::hash::{Hash, Hasher};
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use kiln_model::Labels;

use super::{ChunkMeta, INDEX_MAGIC, INDEX_VERSION_2, SERIES_ALIGN, Toc};
use crate::block::enc::{crc, put_be32, put_uvarint, put_uvarint_str, put_varint};
use crate::block::error::{BlockError, Result};
use crate::block::sync_dir;

/// The largest index Prometheus writes: series ids are 4 bytes and count 16-byte units.
const MAX_INDEX_SIZE: u64 = 16 * u32::MAX as u64;

/// Options for [`IndexWriter`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IndexWriterOptions {
    /// Also write the label index sections and the label offset table, as Prometheus did
    /// up to 3.5. Prometheus 3.6+ writes neither (their TOC entries then point at the
    /// next section); no v2 reader uses them. Default: `false`, like current Prometheus.
    pub legacy_label_indices: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Only the header is written.
    Start,
    /// Inside the symbol table.
    Symbols,
    /// No symbols were given: series are kept in memory until `finish`.
    Buffering,
    /// Symbol table done; series are streamed.
    Series,
}

/// Writes one index file. See the module docs for the call order.
#[derive(Debug)]
pub struct IndexWriter {
    path: PathBuf,
    out: BufWriter<File>,
    pos: u64,
    opts: IndexWriterOptions,
    stage: Stage,
    toc: Toc,
    symbols: SymbolTable,
    /// CRC and length of the symbol entries written so far.
    symbols_crc: u32,
    symbols_len: u64,
    last: Option<Labels>,
    last_chunk_ref: u64,
    buffered: Vec<(Labels, Vec<ChunkMeta>)>,
    /// (name symbol, value symbol) → series ids.
    postings: HashMap<(u32, u32), Vec<u32>>,
    all: Vec<u32>,
    scratch: Vec<u8>,
    pairs: Vec<(u32, u32)>,
}

impl IndexWriter {
    /// Creates (or truncates) the index file at `path` and writes its header.
    pub fn new(path: impl AsRef<Path>) -> Result<IndexWriter> {
        IndexWriter::with_options(path, IndexWriterOptions::default())
    }

    pub fn with_options(path: impl AsRef<Path>, opts: IndexWriterOptions) -> Result<IndexWriter> {
        let path = path.as_ref().to_path_buf();
        let file = File::create(&path).map_err(BlockError::io("create", &path))?;
        let mut w = IndexWriter {
            out: BufWriter::with_capacity(1 << 20, file),
            path,
            pos: 0,
            opts,
            stage: Stage::Start,
            toc: Toc::default(),
            symbols: SymbolTable::default(),
            symbols_crc: 0,
            symbols_len: 0,
            last: None,
            last_chunk_ref: 0,
            buffered: Vec::new(),
            postings: HashMap::new(),
            all: Vec::new(),
            scratch: Vec::with_capacity(4096),
            pairs: Vec::new(),
        };
        let mut header = Vec::with_capacity(5);
        put_be32(&mut header, INDEX_MAGIC);
        header.push(INDEX_VERSION_2);
        w.write(&header)?;
        Ok(w)
    }

    /// The path being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Adds symbols: every label name and value of the series to come, sorted and unique
    /// (byte order), across all calls. Must come before the first series.
    pub fn add_symbols<I, S>(&mut self, symbols: I) -> Result<()>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        match self.stage {
            Stage::Start => self.start_symbols()?,
            Stage::Symbols => {}
            Stage::Buffering | Stage::Series => {
                return Err(BlockError::WrongStage {
                    call: "add_symbols",
                    when: "after add_series",
                });
            }
        }
        for s in symbols {
            self.add_symbol(s.as_ref())?;
        }
        Ok(())
    }

    /// Checks that a series with `labels` may come next, without adding it.
    pub fn check_next(&self, labels: &Labels) -> Result<()> {
        if labels.is_empty() {
            return Err(BlockError::EmptyLabels);
        }
        if let Some(prev) = &self.last
            && labels <= prev
        {
            return Err(BlockError::SeriesOutOfOrder {
                labels: labels.clone(),
                previous: prev.clone(),
            });
        }
        Ok(())
    }

    /// Adds the next series. Series must come in label order; chunks in time order,
    /// not overlapping, with non-decreasing references (also across series).
    pub fn add_series(&mut self, labels: &Labels, chunks: &[ChunkMeta]) -> Result<()> {
        self.check_next(labels)?;
        check_chunks(labels, chunks, self.last_chunk_ref)?;
        match self.stage {
            Stage::Start => self.stage = Stage::Buffering,
            Stage::Symbols => self.finish_symbols()?,
            Stage::Buffering | Stage::Series => {}
        }
        if self.stage == Stage::Buffering {
            self.buffered.push((labels.clone(), chunks.to_vec()));
        } else {
            self.write_series(labels, chunks)?;
        }
        if let Some(c) = chunks.last() {
            self.last_chunk_ref = c.chunk_ref;
        }
        self.last = Some(labels.clone());
        Ok(())
    }

    /// Writes postings, the postings offset table and the TOC, then syncs the file and
    /// its directory.
    pub fn finish(mut self) -> Result<()> {
        match self.stage {
            Stage::Start => {
                self.start_symbols()?;
                self.finish_symbols()?;
            }
            Stage::Symbols => self.finish_symbols()?,
            Stage::Buffering => {
                let buffered = std::mem::take(&mut self.buffered);
                let mut set: BTreeSet<&str> = BTreeSet::new();
                for (labels, _) in &buffered {
                    for l in labels.iter() {
                        set.insert(l.name);
                        set.insert(l.value);
                    }
                }
                self.start_symbols()?;
                for s in set {
                    self.add_symbol(s)?;
                }
                self.finish_symbols()?;
                for (labels, chunks) in &buffered {
                    self.write_series(labels, chunks)?;
                }
            }
            Stage::Series => {}
        }

        self.toc.label_indices = self.pos;
        let mut keys: Vec<(u32, u32)> = self.postings.keys().copied().collect();
        keys.sort_unstable();
        let label_indices = if self.opts.legacy_label_indices {
            self.write_label_indices(&keys)?
        } else {
            Vec::new()
        };

        self.toc.postings = self.pos;
        self.pad(4)?;
        let all = std::mem::take(&mut self.all);
        let all_offset = self.pos;
        self.write_postings_list(&all)?;
        drop(all);
        let mut offsets = Vec::with_capacity(keys.len());
        for key in &keys {
            let list = self.postings.remove(key).unwrap_or_default();
            offsets.push(self.pos);
            self.write_postings_list(&list)?;
        }

        self.toc.label_offset_table = self.pos;
        if self.opts.legacy_label_indices {
            self.write_label_offset_table(&label_indices)?;
        }
        self.toc.postings_offset_table = self.pos;
        self.write_postings_offset_table(all_offset, &keys, &offsets)?;

        let mut toc = Vec::with_capacity(super::INDEX_TOC_LEN);
        self.toc.encode(&mut toc);
        self.write(&toc)?;

        self.out
            .flush()
            .map_err(BlockError::io("write", &self.path))?;
        self.out
            .get_ref()
            .sync_all()
            .map_err(BlockError::io("fsync", &self.path))?;
        if let Some(dir) = self.path.parent() {
            sync_dir(dir)?;
        }
        Ok(())
    }

    fn write(&mut self, b: &[u8]) -> Result<()> {
        self.pos += b.len() as u64;
        if self.pos > MAX_INDEX_SIZE {
            return Err(BlockError::LimitExceeded {
                what: "index size",
                value: self.pos,
                limit: MAX_INDEX_SIZE,
            });
        }
        self.out
            .write_all(b)
            .map_err(BlockError::io("write", &self.path))
    }

    fn pad(&mut self, align: u64) -> Result<()> {
        let rem = self.pos % align;
        if rem == 0 {
            return Ok(());
        }
        let zeros = [0u8; 16];
        self.write(&zeros[..(align - rem) as usize])
    }

    /// Overwrites bytes already written at `at` (a length or count placeholder).
    fn patch(&mut self, at: u64, b: &[u8]) -> Result<()> {
        let path = &self.path;
        self.out.flush().map_err(BlockError::io("write", path))?;
        let f = self.out.get_mut();
        f.seek(SeekFrom::Start(at))
            .map_err(BlockError::io("seek", path))?;
        f.write_all(b).map_err(BlockError::io("write", path))?;
        f.seek(SeekFrom::End(0))
            .map_err(BlockError::io("seek", path))?;
        Ok(())
    }

    fn start_symbols(&mut self) -> Result<()> {
        self.toc.symbols = self.pos;
        self.stage = Stage::Symbols;
        // Length and count, filled in by `finish_symbols`.
        self.write(&[0; 8])
    }

    fn add_symbol(&mut self, s: &str) -> Result<()> {
        if let Some(last) = self.symbols.strings.last()
            && s <= &**last
        {
            return Err(BlockError::SymbolsOutOfOrder {
                symbol: s.to_owned(),
            });
        }
        let mut buf = std::mem::take(&mut self.scratch);
        buf.clear();
        put_uvarint_str(&mut buf, s);
        self.symbols_crc = crc32c::crc32c_append(self.symbols_crc, &buf);
        self.symbols_len += buf.len() as u64;
        let res = self.write(&buf);
        self.scratch = buf;
        res?;
        self.symbols.insert(s);
        Ok(())
    }

    fn finish_symbols(&mut self) -> Result<()> {
        let len = 4 + self.symbols_len;
        let len = u32::try_from(len).map_err(|_| BlockError::LimitExceeded {
            what: "symbol table size",
            value: len,
            limit: u64::from(u32::MAX),
        })?;
        let count = self.symbols.strings.len();
        let count = u32::try_from(count).map_err(|_| BlockError::LimitExceeded {
            what: "symbol count",
            value: count as u64,
            limit: u64::from(u32::MAX),
        })?;
        let mut head = Vec::with_capacity(8);
        put_be32(&mut head, len);
        put_be32(&mut head, count);
        self.patch(self.toc.symbols, &head)?;
        // The checksum covers the count and the entries; the count is known only now.
        let sum =
            crc32c::crc32c_combine(crc(&head[4..]), self.symbols_crc, self.symbols_len as usize);
        self.write(&sum.to_be_bytes())?;
        self.toc.series = self.pos;
        self.stage = Stage::Series;
        Ok(())
    }

    fn write_series(&mut self, labels: &Labels, chunks: &[ChunkMeta]) -> Result<()> {
        let mut pairs = std::mem::take(&mut self.pairs);
        pairs.clear();
        for l in labels.iter() {
            let lookup = |s: &str| {
                self.symbols
                    .get(s)
                    .ok_or_else(|| BlockError::MissingSymbol {
                        labels: labels.clone(),
                        symbol: s.to_owned(),
                    })
            };
            pairs.push((lookup(l.name)?, lookup(l.value)?));
        }
        self.pad(SERIES_ALIGN)?;
        let id = self.pos / SERIES_ALIGN;
        let id = u32::try_from(id).map_err(|_| BlockError::LimitExceeded {
            what: "series id (offset / 16)",
            value: id,
            limit: u64::from(u32::MAX),
        })?;

        let mut body = std::mem::take(&mut self.scratch);
        body.clear();
        put_uvarint(&mut body, pairs.len() as u64);
        for &(n, v) in &pairs {
            put_uvarint(&mut body, u64::from(n));
            put_uvarint(&mut body, u64::from(v));
        }
        encode_chunk_metas(&mut body, chunks);
        let mut head = Vec::with_capacity(10);
        put_uvarint(&mut head, body.len() as u64);
        let sum = crc(&body);
        let res = self
            .write(&head)
            .and_then(|()| self.write(&body))
            .and_then(|()| self.write(&sum.to_be_bytes()));
        self.scratch = body;
        res?;

        self.all.push(id);
        for &pair in &pairs {
            self.postings.entry(pair).or_default().push(id);
        }
        self.pairs = pairs;
        Ok(())
    }

    /// One `len | #names=1 | #entries | value refs | CRC` section per label name.
    fn write_label_indices(&mut self, keys: &[(u32, u32)]) -> Result<Vec<(u32, u64)>> {
        let mut offsets = Vec::new();
        let mut i = 0;
        while i < keys.len() {
            let name = keys[i].0;
            let end = i + keys[i..].iter().take_while(|k| k.0 == name).count();
            self.pad(4)?;
            offsets.push((name, self.pos));
            let mut body = Vec::with_capacity(8 + 4 * (end - i));
            put_be32(&mut body, 1);
            put_be32(&mut body, (end - i) as u32);
            for k in &keys[i..end] {
                put_be32(&mut body, k.1);
            }
            self.write_be32_section(&body, "label index size")?;
            i = end;
        }
        Ok(offsets)
    }

    fn write_label_offset_table(&mut self, label_indices: &[(u32, u64)]) -> Result<()> {
        let mut body = Vec::new();
        put_be32(&mut body, label_indices.len() as u32);
        for &(name, off) in label_indices {
            put_uvarint(&mut body, 1);
            put_uvarint_str(&mut body, self.symbols.str(name));
            put_uvarint(&mut body, off);
        }
        self.write_be32_section(&body, "label offset table size")
    }

    fn write_postings_list(&mut self, ids: &[u32]) -> Result<()> {
        self.pad(4)?;
        let mut body = std::mem::take(&mut self.scratch);
        body.clear();
        body.reserve(4 + 4 * ids.len());
        put_be32(&mut body, ids.len() as u32);
        for &id in ids {
            put_be32(&mut body, id);
        }
        let res = self.write_be32_section(&body, "postings list size");
        self.scratch = body;
        res
    }

    fn write_be32_section(&mut self, body: &[u8], what: &'static str) -> Result<()> {
        let len = u32::try_from(body.len()).map_err(|_| BlockError::LimitExceeded {
            what,
            value: body.len() as u64,
            limit: u64::from(u32::MAX),
        })?;
        self.write(&len.to_be_bytes())?;
        self.write(body)?;
        self.write(&crc(body).to_be_bytes())
    }

    fn write_postings_offset_table(
        &mut self,
        all_offset: u64,
        keys: &[(u32, u32)],
        offsets: &[u64],
    ) -> Result<()> {
        let start = self.pos;
        self.write(&[0; 4])?;
        let mut buf = std::mem::take(&mut self.scratch);
        buf.clear();
        put_be32(&mut buf, (keys.len() + 1) as u32);
        put_postings_offset_entry(&mut buf, "", "", all_offset);
        let mut sum = 0;
        let mut res = Ok(());
        for (&(n, v), &off) in keys.iter().zip(offsets) {
            put_postings_offset_entry(&mut buf, self.symbols.str(n), self.symbols.str(v), off);
            if buf.len() >= 1 << 16 {
                sum = crc32c::crc32c_append(sum, &buf);
                res = self.write(&buf);
                buf.clear();
                if res.is_err() {
                    break;
                }
            }
        }
        if res.is_ok() {
            sum = crc32c::crc32c_append(sum, &buf);
            res = self.write(&buf);
        }
        self.scratch = buf;
        res?;
        let len = self.pos - start - 4;
        let len = u32::try_from(len).map_err(|_| BlockError::LimitExceeded {
            what: "postings offset table size",
            value: len,
            limit: u64::from(u32::MAX),
        })?;
        self.patch(start, &len.to_be_bytes())?;
        self.write(&sum.to_be_bytes())
    }
}

fn put_postings_offset_entry(buf: &mut Vec<u8>, name: &str, value: &str, offset: u64) {
    put_uvarint(buf, 2);
    put_uvarint_str(buf, name);
    put_uvarint_str(buf, value);
    put_uvarint(buf, offset);
}

/// Appends `#chunks` and the delta-encoded chunk metas of one series.
fn encode_chunk_metas(buf: &mut Vec<u8>, chunks: &[ChunkMeta]) {
    put_uvarint(buf, chunks.len() as u64);
    let Some(first) = chunks.first() else {
        return;
    };
    put_varint(buf, first.min_time);
    put_uvarint(buf, first.max_time.wrapping_sub(first.min_time) as u64);
    put_uvarint(buf, first.chunk_ref);
    let mut t0 = first.max_time;
    let mut ref0 = first.chunk_ref as i64;
    for c in &chunks[1..] {
        put_uvarint(buf, c.min_time.wrapping_sub(t0) as u64);
        put_uvarint(buf, c.max_time.wrapping_sub(c.min_time) as u64);
        put_varint(buf, (c.chunk_ref as i64).wrapping_sub(ref0));
        t0 = c.max_time;
        ref0 = c.chunk_ref as i64;
    }
}

/// Checks the chunk rules of the format for one series.
pub(crate) fn check_chunks(labels: &Labels, chunks: &[ChunkMeta], mut last_ref: u64) -> Result<()> {
    let bad = |index, reason| BlockError::InvalidChunks {
        labels: labels.clone(),
        index,
        reason,
    };
    for (i, c) in chunks.iter().enumerate() {
        if c.chunk_ref < last_ref {
            return Err(bad(i, "chunk reference is lower than the one before it"));
        }
        if c.max_time < c.min_time {
            return Err(bad(i, "max time is before min time"));
        }
        if i > 0 && c.min_time <= chunks[i - 1].max_time {
            return Err(bad(
                i,
                "min time is not after the previous chunk's max time",
            ));
        }
        last_ref = c.chunk_ref;
    }
    Ok(())
}

/// Symbol strings in id order and a hash index to find their ids.
#[derive(Debug, Default)]
struct SymbolTable {
    strings: Vec<Box<str>>,
    /// Hash of a string → its id, or [`AMBIGUOUS`] when two strings share the hash.
    by_hash: HashMap<u64, u32>,
}

const AMBIGUOUS: u32 = u32::MAX;

impl SymbolTable {
    fn hash(s: &str) -> u64 {
        let mut h = DefaultHasher::new();
        s.hash(&mut h);
        h.finish()
    }

    fn insert(&mut self, s: &str) {
        let id = self.strings.len() as u32;
        if self.by_hash.insert(Self::hash(s), id).is_some() {
            self.by_hash.insert(Self::hash(s), AMBIGUOUS);
        }
        self.strings.push(s.into());
    }

    fn get(&self, s: &str) -> Option<u32> {
        match *self.by_hash.get(&Self::hash(s))? {
            AMBIGUOUS => self
                .strings
                .binary_search_by(|x| (**x).cmp(s))
                .ok()
                .map(|i| i as u32),
            id => (self.strings.get(id as usize).map(|x| &**x) == Some(s)).then_some(id),
        }
    }

    fn str(&self, id: u32) -> &str {
        self.strings.get(id as usize).map_or("", |s| s)
    }
}
