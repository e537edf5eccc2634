//! Persistent blocks in the Prometheus TSDB format: Prometheus and promtool read the
//! blocks written here, and the readers here read blocks Prometheus wrote.
//!
//! A block is a directory named by its ULID:
//! ```text
//! <ULID>/
//!   chunks/000001 …   chunk segment files            (chunks)
//!   index             symbols, series, postings       (index, format v2)
//!   tombstones        deleted intervals               (tombstones)
//!   meta.json         ULID, time range, stats, compaction history (meta)
//! ```
//! Byte layouts, in our own words: `crates/kiln-tsdb/docs/format/`.
//!
//! Module map:
//! - [`index`]: [`IndexWriter`], [`IndexReader`], [`ChunkMeta`], postings set operations.
//! - [`chunks`]: [`ChunkWriter`], [`ChunkReader`] for the segment files.
//! - [`meta`]: [`BlockMeta`] (`meta.json`), written atomically.
//! - [`tombstones`]: the `tombstones` file and [`Tombstones`].
//! - [`error`]: [`BlockError`], with the file, section and offset of corrupt data.
//!
//! Write path ([`BlockWriter`]): series arrive in label order; their chunks are appended
//! to segments at once and the index streams series entries, keeping postings in memory;
//! `finish` writes postings, `meta.json` and an empty `tombstones`, fsyncs and renames
//! `<ULID>.tmp-for-creation` to `<ULID>`. A block directory without the suffix is complete.
//!
//! Read path ([`BlockReader`]): the index and segments are memory-mapped; every read
//! checks bounds and checksums, and corrupt data gives [`BlockError::Corrupt`], never a
//! panic. Readers hold no locks; they are immutable and can be shared between threads.

pub mod chunks;
mod enc;
pub mod error;
pub mod index;
pub mod meta;
pub(crate) mod mmap;
pub mod tombstones;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use kiln_model::Labels;
use ulid::Ulid;

pub use chunks::{ChunkReader, ChunkWriter};
pub use error::{BlockError, Corruption, Result};
pub use index::{ChunkMeta, IndexReader, IndexWriter, IndexWriterOptions, Postings};
pub use meta::{BlockDesc, BlockMeta, BlockMetaCompaction, BlockStats};
pub use tombstones::{Interval, Tombstones};

/// The index file name.
pub const INDEX_FILENAME: &str = "index";
/// The chunk segment directory name.
pub const CHUNKS_DIRNAME: &str = "chunks";
/// Suffix of a block directory being written.
pub const TMP_FOR_CREATION_SUFFIX: &str = ".tmp-for-creation";

/// Chunk encodings, numbered as Prometheus's `chunkenc`.
pub const ENCODING_XOR: u8 = 1;
pub const ENCODING_HISTOGRAM: u8 = 2;
pub const ENCODING_FLOAT_HISTOGRAM: u8 = 3;

impl FinishOptions {
    /// The options of a block that merges `blocks`: one level above the highest, their
    /// level-1 sources (each block itself when it lists none), and them as parents.
    pub fn merged_from(blocks: &[&BlockMeta]) -> FinishOptions {
        let mut sources: Vec<Ulid> = blocks
            .iter()
            .flat_map(|m| {
                if m.compaction.sources.is_empty() {
                    vec![m.ulid]
                } else {
                    m.compaction.sources.clone()
                }
            })
            .collect();
        sources.sort();
        sources.dedup();
        FinishOptions {
            level: blocks.iter().map(|m| m.compaction.level).max().unwrap_or(1) + 1,
            sources,
            parents: blocks
                .iter()
                .map(|m| BlockDesc {
                    ulid: m.ulid,
                    min_time: m.min_time,
                    max_time: m.max_time,
                })
                .collect(),
            ..FinishOptions::default()
        }
    }
}

/// Fsyncs a directory, so entries created or renamed in it survive a crash.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    let f = File::open(dir).map_err(BlockError::io("open directory", dir))?;
    match f.sync_all() {
        Ok(()) => Ok(()),
        // Some platforms and filesystems cannot fsync a directory.
        Err(e)
            if e.kind() == io::ErrorKind::InvalidInput
                || e.kind() == io::ErrorKind::PermissionDenied =>
        {
            Ok(())
        }
        Err(e) => Err(BlockError::Io {
            op: "fsync directory",
            path: dir.to_path_buf(),
            source: e,
        }),
    }
}

/// One chunk handed to [`BlockWriter::add_series`]: `(min_time, max_time, encoding, data)`.
pub type ChunkData<'a> = (i64, i64, u8, &'a [u8]);

/// What [`BlockWriter::finish`] records in `meta.json` besides what it counted.
#[derive(Debug, Clone, PartialEq)]
pub struct FinishOptions {
    /// Compaction level: 1 for a block cut from the head.
    pub level: u32,
    /// The level-1 blocks this block's data comes from; empty means this block itself.
    pub sources: Vec<Ulid>,
    /// The blocks compacted into this one.
    pub parents: Vec<BlockDesc>,
    /// For example `"from-out-of-order"`.
    pub hints: Vec<String>,
    /// A Thanos section to store as is.
    pub thanos: Option<serde_json::Value>,
}

impl Default for FinishOptions {
    fn default() -> Self {
        FinishOptions {
            level: 1,
            sources: Vec::new(),
            parents: Vec::new(),
            hints: Vec::new(),
            thanos: None,
        }
    }
}

/// Writes a complete block directory from series given in label order.
///
/// Dropping a writer without calling [`BlockWriter::finish`] removes its temporary
/// directory.
#[derive(Debug)]
pub struct BlockWriter {
    parent: PathBuf,
    tmp: PathBuf,
    ulid: Ulid,
    min_time: i64,
    max_time: i64,
    index: Option<IndexWriter>,
    chunks: Option<ChunkWriter>,
    metas: Vec<ChunkMeta>,
    stats: BlockStats,
    finished: bool,
}

impl BlockWriter {
    /// Starts a block for `[min_time, max_time)` (`max_time` exclusive) in
    /// `<parent>/<new ULID>.tmp-for-creation`.
    pub fn create(parent: impl AsRef<Path>, min_time: i64, max_time: i64) -> Result<BlockWriter> {
        BlockWriter::create_with_ulid(parent, Ulid::new(), min_time, max_time)
    }

    /// Like [`BlockWriter::create`] with a chosen ULID.
    pub fn create_with_ulid(
        parent: impl AsRef<Path>,
        ulid: Ulid,
        min_time: i64,
        max_time: i64,
    ) -> Result<BlockWriter> {
        if min_time >= max_time {
            return Err(BlockError::InvalidTimeRange { min_time, max_time });
        }
        let parent = parent.as_ref().to_path_buf();
        let tmp = parent.join(format!("{ulid}{TMP_FOR_CREATION_SUFFIX}"));
        fs::create_dir(&tmp).map_err(BlockError::io("create directory", &tmp))?;
        let mut w = BlockWriter {
            parent,
            tmp,
            ulid,
            min_time,
            max_time,
            index: None,
            chunks: None,
            metas: Vec::new(),
            stats: BlockStats::default(),
            finished: false,
        };
        // On error the half-made directory is removed by `Drop`.
        w.chunks = Some(ChunkWriter::new(w.tmp.join(CHUNKS_DIRNAME))?);
        w.index = Some(IndexWriter::new(w.tmp.join(INDEX_FILENAME))?);
        Ok(w)
    }

    /// The ULID the block will have.
    pub fn ulid(&self) -> Ulid {
        self.ulid
    }

    /// Optional: every label name and value of the series to come, sorted and unique,
    /// before the first series. Without it the index writer buffers series in memory.
    pub fn add_symbols<I, S>(&mut self, symbols: I) -> Result<()>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.index_mut()?.add_symbols(symbols)
    }

    /// Adds the next series (label order) with its chunks (time order, not overlapping,
    /// inside the block's range). Chunks go to disk at once.
    pub fn add_series(&mut self, labels: &Labels, chunks: &[ChunkData<'_>]) -> Result<()> {
        self.index_mut()?.check_next(labels)?;
        self.metas.clear();
        for (i, &(min_time, max_time, _, _)) in chunks.iter().enumerate() {
            if min_time < self.min_time || max_time >= self.max_time {
                return Err(BlockError::InvalidChunks {
                    labels: labels.clone(),
                    index: i,
                    reason: "chunk lies outside the block's time range",
                });
            }
            self.metas.push(ChunkMeta {
                min_time,
                max_time,
                chunk_ref: 0,
            });
        }
        index::writer::check_chunks(labels, &self.metas, 0)?;

        let writer = self.chunks.as_mut().ok_or(BlockError::WrongStage {
            call: "add_series",
            when: "after finish",
        })?;
        for (meta, &(_, _, encoding, data)) in self.metas.iter_mut().zip(chunks) {
            meta.chunk_ref = writer.write(encoding, data)?;
            let samples = chunk_sample_count(encoding, data);
            match encoding {
                ENCODING_XOR | kiln_chunkenc::aggr::AGGR_ENCODING => {
                    self.stats.num_float_samples += samples;
                }
                _ => self.stats.num_histogram_samples += samples,
            }
        }
        let metas = std::mem::take(&mut self.metas);
        let res = self
            .index_mut()
            .and_then(|ix| ix.add_series(labels, &metas));
        self.metas = metas;
        res?;
        self.stats.num_series += 1;
        self.stats.num_chunks += chunks.len() as u64;
        Ok(())
    }

    fn index_mut(&mut self) -> Result<&mut IndexWriter> {
        self.index.as_mut().ok_or(BlockError::WrongStage {
            call: "BlockWriter",
            when: "after finish",
        })
    }

    /// Writes the index, `meta.json` and an empty `tombstones`, syncs everything and
    /// renames the directory to `<parent>/<ULID>`. Returns the ULID.
    pub fn finish(mut self, opts: FinishOptions) -> Result<Ulid> {
        let closed = || BlockError::WrongStage {
            call: "finish",
            when: "twice",
        };
        self.chunks.take().ok_or_else(closed)?.finish()?;
        self.index.take().ok_or_else(closed)?.finish()?;

        let mut stats = self.stats;
        stats.num_samples = stats.num_float_samples + stats.num_histogram_samples;
        let sources = if opts.sources.is_empty() {
            vec![self.ulid]
        } else {
            opts.sources
        };
        let meta = BlockMeta {
            ulid: self.ulid,
            min_time: self.min_time,
            max_time: self.max_time,
            stats,
            compaction: BlockMetaCompaction {
                level: opts.level,
                sources,
                parents: opts.parents,
                hints: opts.hints,
                ..BlockMetaCompaction::default()
            },
            version: meta::META_VERSION,
            thanos: opts.thanos,
        };
        meta::write_meta(&self.tmp, &meta)?;
        tombstones::write_tombstones(&self.tmp, &Tombstones::new())?;
        sync_dir(&self.tmp)?;

        let dest = self.parent.join(self.ulid.to_string());
        if dest.exists() {
            return Err(BlockError::Io {
                op: "rename block into place",
                path: dest,
                source: io::Error::from(io::ErrorKind::AlreadyExists),
            });
        }
        fs::rename(&self.tmp, &dest).map_err(BlockError::io("rename", &self.tmp))?;
        self.finished = true;
        sync_dir(&self.parent)?;
        Ok(self.ulid)
    }
}

impl Drop for BlockWriter {
    fn drop(&mut self) {
        if !self.finished {
            self.index = None;
            self.chunks = None;
            if let Err(e) = fs::remove_dir_all(&self.tmp) {
                tracing::warn!(path = %self.tmp.display(), err = %e, "removing unfinished block directory");
            }
        }
    }
}

/// The number of samples in a chunk, from its header: the first two bytes (big-endian)
/// for XOR, histogram and float histogram chunks, the windows of an aggregate chunk
/// (downsampled blocks); 0 for other encodings.
pub fn chunk_sample_count(encoding: u8, data: &[u8]) -> u64 {
    match (encoding, data) {
        (ENCODING_XOR | ENCODING_HISTOGRAM | ENCODING_FLOAT_HISTOGRAM, [a, b, ..]) => {
            u64::from(u16::from_be_bytes([*a, *b]))
        }
        // A downsampled chunk counts its windows, as Thanos does (the count aggregate's
        // samples).
        (kiln_chunkenc::aggr::AGGR_ENCODING, _) => kiln_chunkenc::aggr::decode_aggr_chunk(data)
            .ok()
            .and_then(|subs| subs[kiln_chunkenc::aggr::AggrType::Count as usize])
            .and_then(|s| kiln_chunkenc::num_samples(s.data).ok())
            .map_or(0, u64::from),
        _ => 0,
    }
}

/// An opened block: its meta, index, chunks and tombstones.
#[derive(Debug)]
pub struct BlockReader {
    dir: PathBuf,
    meta: BlockMeta,
    index: IndexReader,
    chunks: ChunkReader,
    tombstones: Tombstones,
    /// Bytes of `meta.json` and `tombstones` when opened (the index and chunks are
    /// measured by their readers).
    small_files_bytes: u64,
}

impl BlockReader {
    /// Opens the block directory `dir`, checking every file's header and checksums.
    pub fn open(dir: impl AsRef<Path>) -> Result<BlockReader> {
        let dir = dir.as_ref().to_path_buf();
        let meta = meta::read_meta(&dir)?;
        let chunks = ChunkReader::open(dir.join(CHUNKS_DIRNAME))?;
        let index = IndexReader::open(dir.join(INDEX_FILENAME))?;
        let tombstones = tombstones::read_tombstones(&dir)?;
        let file_len = |name: &str| fs::metadata(dir.join(name)).map_or(0, |m| m.len());
        let small_files_bytes =
            file_len(meta::META_FILENAME) + file_len(tombstones::TOMBSTONES_FILENAME);
        Ok(BlockReader {
            dir,
            meta,
            index,
            chunks,
            tombstones,
            small_files_bytes,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn meta(&self) -> &BlockMeta {
        &self.meta
    }

    pub fn ulid(&self) -> Ulid {
        self.meta.ulid
    }

    /// First timestamp covered (inclusive).
    pub fn min_time(&self) -> i64 {
        self.meta.min_time
    }

    /// End of the covered range (exclusive).
    pub fn max_time(&self) -> i64 {
        self.meta.max_time
    }

    pub fn index(&self) -> &IndexReader {
        &self.index
    }

    pub fn chunks(&self) -> &ChunkReader {
        &self.chunks
    }

    pub fn tombstones(&self) -> &Tombstones {
        &self.tombstones
    }

    /// Bytes of the block on disk: chunk segments, index, tombstones and `meta.json`,
    /// as Prometheus's `Block.Size` counts them (for `prometheus_tsdb_storage_blocks_bytes`
    /// and size retention).
    pub fn size(&self) -> u64 {
        self.index.size() + self.chunks.size() + self.small_files_bytes
    }
}
