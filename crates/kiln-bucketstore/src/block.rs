//! [`StoreBlock`]: one block of the bucket as the store gateway reads it.
//!
//! Nothing of a block is read at sync time but its `meta.json`. The first query that
//! needs the block builds its index-header (the symbol and postings offset tables,
//! copied with three ranged reads into `<data-dir>/<ULID>/index-header`, see
//! [`IndexHeader`]); later starts map the file again instead of reading the bucket.
//! Postings lists, series entries and chunks are read with ranged GETs, nearby ranges
//! merged (see [`crate::ranges`]), sized from the block's `index_stats` (Thanos's
//! estimates, 64 KiB a series and 16 000 bytes a chunk, when the block has none). When
//! an estimate was short, the entry is read again whole. Postings and series entries go
//! through the shared [`IndexCache`].

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use kiln_model::Labels;
use kiln_objstore::Bucket;
use kiln_objstore::thanos_meta::ThanosMeta;
use kiln_tsdb::block::chunks::{
    chunk_entry_len, decode_fetched_chunk, segment_name, split_chunk_ref,
};
use kiln_tsdb::block::index::SERIES_ALIGN;
use kiln_tsdb::block::index::header::{IndexHeader, series_entry_len};
use kiln_tsdb::block::{BlockMeta, CHUNKS_DIRNAME, INDEX_FILENAME};
use tokio::sync::OnceCell;
use ulid::Ulid;

use crate::cache::{IndexCache, ItemType};
use crate::error::StoreError;
use crate::ranges::coalesce;

/// Series entry size assumed when a block's `index_stats` does not say (Thanos's).
const DEFAULT_SERIES_SIZE: u64 = 64 << 10;
/// Chunk size assumed when a block's `index_stats` does not say (Thanos's).
const DEFAULT_CHUNK_SIZE: u64 = 16_000;
/// Ranged reads of one request in flight at once.
const READ_CONCURRENCY: usize = 8;
/// The local index-header file name.
pub const INDEX_HEADER_FILENAME: &str = "index-header";

/// One block of the bucket (see the module docs). Shared by the queries that read it.
pub struct StoreBlock {
    pub(crate) meta: BlockMeta,
    pub(crate) thanos: ThanosMeta,
    /// The block's external labels (`thanos.labels`).
    pub(crate) labels: Labels,
    /// `<data-dir>/<ULID>`.
    dir: PathBuf,
    bucket: Bucket,
    cache: Arc<IndexCache>,
    header: OnceCell<Arc<IndexHeader>>,
    /// Size of each chunk segment file, from `thanos.files` or one listing.
    segment_sizes: OnceCell<Vec<u64>>,
}

impl StoreBlock {
    pub(crate) fn new(
        meta: BlockMeta,
        thanos: ThanosMeta,
        data_dir: &Path,
        bucket: Bucket,
        cache: Arc<IndexCache>,
    ) -> StoreBlock {
        let pairs: Vec<(&str, &str)> = thanos
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        StoreBlock {
            labels: Labels::from_pairs(&pairs),
            dir: data_dir.join(meta.ulid.to_string()),
            meta,
            thanos,
            bucket,
            cache,
            header: OnceCell::new(),
            segment_sizes: OnceCell::new(),
        }
    }

    pub fn id(&self) -> Ulid {
        self.meta.ulid
    }

    pub fn meta(&self) -> &BlockMeta {
        &self.meta
    }

    /// Milliseconds per sample: 0 for raw data, 300000 or 3600000 when downsampled.
    pub fn resolution(&self) -> i64 {
        self.thanos.downsample.resolution
    }

    /// The block's external labels.
    pub fn labels(&self) -> &Labels {
        &self.labels
    }

    /// Whether the index-header is loaded (it is built on the first query).
    pub fn header_loaded(&self) -> bool {
        self.header.initialized()
    }

    fn key(&self, file: &str) -> String {
        format!("{}/{file}", self.meta.ulid)
    }

    fn file_size(&self, rel_path: &str) -> Option<u64> {
        self.thanos
            .files
            .iter()
            .find(|f| f.rel_path == rel_path)
            .and_then(|f| u64::try_from(f.size_bytes).ok())
            .filter(|&s| s > 0)
    }

    /// The index-header, built on first use (see the module docs).
    pub async fn header(&self) -> Result<Arc<IndexHeader>, StoreError> {
        self.header
            .get_or_try_init(|| async { self.load_header().await.map(Arc::new) })
            .await
            .cloned()
    }

    async fn load_header(&self) -> Result<IndexHeader, StoreError> {
        let path = self.dir.join(INDEX_HEADER_FILENAME);
        if path.exists() {
            match IndexHeader::open(&path) {
                Ok(h) => return Ok(h),
                Err(e) => {
                    tracing::warn!(block = %self.meta.ulid, error = %e, "rebuilding an unreadable index-header")
                }
            }
        }
        let key = self.key(INDEX_FILENAME);
        let size = match self.file_size(INDEX_FILENAME) {
            Some(s) => s,
            None => self.bucket.attributes(&key).await?.size,
        };
        let index_path = Path::new(&key);
        let block = StoreError::block(self.meta.ulid);
        let head_len = IndexHeader::INDEX_HEAD_LEN;
        let toc_len = IndexHeader::INDEX_TOC_LEN;
        let (head, tail) = futures_util::try_join!(
            self.bucket.get_range(&key, 0..head_len.min(size)),
            self.bucket
                .get_range(&key, size.saturating_sub(toc_len)..size),
        )?;
        let version = IndexHeader::index_version(&head, index_path).map_err(block)?;
        let (toc, sources) = IndexHeader::index_toc(&tail, size, index_path)
            .map_err(StoreError::block(self.meta.ulid))?;
        let (symbols, pot) = futures_util::try_join!(
            self.bucket.get_range(&key, sources.symbols.clone()),
            self.bucket
                .get_range(&key, sources.postings_offset_table.clone()),
        )?;
        std::fs::create_dir_all(&self.dir).map_err(|source| StoreError::Local {
            op: "create",
            path: self.dir.clone(),
            source,
        })?;
        IndexHeader::write(&path, version, size, &toc, &symbols, &pot)
            .map_err(StoreError::block(self.meta.ulid))
    }

    /// Reads `ranges` of object `key`, merging nearby ones; the answers in input order.
    async fn read(&self, key: &str, ranges: &[Range<u64>]) -> Result<Vec<Bytes>, StoreError> {
        let reads = coalesce(ranges);
        let gets: Vec<_> = reads
            .into_iter()
            .map(|read| async move {
                let bytes = self.bucket.get_range(key, read.range.clone()).await?;
                Ok::<_, StoreError>((read, bytes))
            })
            .collect();
        let fetched: Vec<(crate::ranges::Read, Bytes)> = futures_util::stream::iter(gets)
            .buffer_unordered(READ_CONCURRENCY)
            .try_collect()
            .await?;
        let mut out = vec![Bytes::new(); ranges.len()];
        for (read, bytes) in fetched {
            for i in read.parts {
                let r = &ranges[i];
                let start = (r.start - read.range.start) as usize;
                let end = ((r.end - read.range.start) as usize).min(bytes.len());
                out[i] = bytes.slice(start.min(end)..end);
            }
        }
        Ok(out)
    }

    /// The postings lists at `ranges` of the index (from the index-header), decoded.
    pub(crate) async fn postings(
        &self,
        ranges: &[Range<u64>],
    ) -> Result<Vec<Vec<u32>>, StoreError> {
        let id = self.meta.ulid;
        let mut raw: Vec<Option<Bytes>> = ranges
            .iter()
            .map(|r| self.cache.get(&(id, ItemType::Postings, r.start)))
            .collect();
        let missing: Vec<usize> = (0..ranges.len()).filter(|&i| raw[i].is_none()).collect();
        if !missing.is_empty() {
            let want: Vec<Range<u64>> = missing.iter().map(|&i| ranges[i].clone()).collect();
            let fetched = self.read(&self.key(INDEX_FILENAME), &want).await?;
            for (&i, bytes) in missing.iter().zip(fetched) {
                // Copied, so the cache does not keep a whole merged read alive.
                let bytes = Bytes::copy_from_slice(&bytes);
                self.cache
                    .put((id, ItemType::Postings, ranges[i].start), bytes.clone());
                raw[i] = Some(bytes);
            }
        }
        let index = Path::new(INDEX_FILENAME);
        raw.into_iter()
            .zip(ranges)
            .map(|(bytes, r)| {
                let bytes = bytes.unwrap_or_default();
                IndexHeader::decode_postings(&bytes, r.start, index)
                    .map(|p| p.into_vec())
                    .map_err(StoreError::block(id))
            })
            .collect()
    }

    /// The series entries of `ids` (each exactly one entry), in input order.
    pub(crate) async fn series(
        &self,
        header: &IndexHeader,
        ids: &[u32],
    ) -> Result<Vec<Bytes>, StoreError> {
        let id = self.meta.ulid;
        let key = self.key(INDEX_FILENAME);
        let series_range = header.series_range();
        let estimate = u64::try_from(self.thanos.index_stats.series_max_size)
            .ok()
            .filter(|&s| s > 0)
            .unwrap_or(DEFAULT_SERIES_SIZE);
        let mut out: Vec<Option<Bytes>> = ids
            .iter()
            .map(|&s| self.cache.get(&(id, ItemType::Series, u64::from(s))))
            .collect();
        let missing: Vec<usize> = (0..ids.len()).filter(|&i| out[i].is_none()).collect();
        if missing.is_empty() {
            return Ok(out.into_iter().map(Option::unwrap_or_default).collect());
        }
        let mut want = Vec::with_capacity(missing.len());
        for &i in &missing {
            let start = u64::from(ids[i]) * SERIES_ALIGN;
            if !series_range.contains(&start) {
                return Err(StoreError::Block {
                    block: id,
                    source: kiln_tsdb::block::BlockError::Corrupt {
                        path: PathBuf::from(INDEX_FILENAME),
                        section: "postings",
                        offset: start,
                        problem: kiln_tsdb::block::Corruption::OutOfRange {
                            what: "series reference",
                            value: u64::from(ids[i]),
                            limit: series_range.end / SERIES_ALIGN,
                        },
                    },
                });
            }
            want.push(start..(start + estimate).min(series_range.end));
        }
        let fetched = self.read(&key, &want).await?;
        for ((&i, bytes), range) in missing.iter().zip(fetched).zip(&want) {
            let need = series_entry_len(&bytes).unwrap_or(u64::MAX);
            let entry = if need <= bytes.len() as u64 {
                Bytes::copy_from_slice(&bytes[..need as usize])
            } else {
                // The estimate was short: read the entry whole (a corrupt length is
                // bounded by the series section).
                let end = range.start.saturating_add(need).min(series_range.end);
                self.bucket.get_range(&key, range.start..end).await?
            };
            self.cache
                .put((id, ItemType::Series, u64::from(ids[i])), entry.clone());
            out[i] = Some(entry);
        }
        Ok(out.into_iter().map(Option::unwrap_or_default).collect())
    }

    async fn segment_sizes(&self) -> Result<&Vec<u64>, StoreError> {
        self.segment_sizes
            .get_or_try_init(|| async {
                let listed: Vec<u64> = (1..)
                    .map_while(|seq| {
                        self.file_size(&format!("{CHUNKS_DIRNAME}/{}", segment_name(seq)))
                    })
                    .collect();
                if !listed.is_empty() {
                    return Ok(listed);
                }
                let dir = self.key(CHUNKS_DIRNAME);
                let objects = self.bucket.list_sizes(&dir).await?;
                Ok((1..)
                    .map_while(|seq| {
                        let name = format!("{dir}/{}", segment_name(seq));
                        objects.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
                    })
                    .collect())
            })
            .await
    }

    /// The chunks at `refs`: encoding and data of each, in input order.
    pub(crate) async fn chunks(&self, refs: &[u64]) -> Result<Vec<(u8, Bytes)>, StoreError> {
        let id = self.meta.ulid;
        let sizes = self.segment_sizes().await?;
        let estimate = u64::try_from(self.thanos.index_stats.chunk_max_size)
            .ok()
            .filter(|&s| s > 0)
            .unwrap_or(DEFAULT_CHUNK_SIZE);
        // Per segment file: the indexes of `refs` in it.
        let mut by_segment: std::collections::BTreeMap<u32, Vec<usize>> = Default::default();
        for (i, &r) in refs.iter().enumerate() {
            by_segment.entry(split_chunk_ref(r).0).or_default().push(i);
        }
        let mut out: Vec<(u8, Bytes)> = vec![(0, Bytes::new()); refs.len()];
        for (seg, idx) in by_segment {
            let seq = seg.saturating_add(1);
            let file = format!("{CHUNKS_DIRNAME}/{}", segment_name(seq));
            let key = self.key(&file);
            let Some(&size) = sizes.get(seg as usize) else {
                return Err(StoreError::Block {
                    block: id,
                    source: kiln_tsdb::block::BlockError::Corrupt {
                        path: PathBuf::from(&file),
                        section: "chunk reference",
                        offset: 0,
                        problem: kiln_tsdb::block::Corruption::OutOfRange {
                            what: "segment index",
                            value: seg.into(),
                            limit: sizes.len() as u64,
                        },
                    },
                });
            };
            let want: Vec<Range<u64>> = idx
                .iter()
                .map(|&i| {
                    let off = u64::from(split_chunk_ref(refs[i]).1);
                    off.min(size)..off.saturating_add(estimate).min(size)
                })
                .collect();
            let fetched = self.read(&key, &want).await?;
            for ((&i, bytes), range) in idx.iter().zip(fetched).zip(&want) {
                let need = chunk_entry_len(&bytes).unwrap_or(u64::MAX);
                let bytes = if need <= bytes.len() as u64 {
                    bytes
                } else {
                    let end = range.start.saturating_add(need).min(size);
                    self.bucket.get_range(&key, range.start..end).await?
                };
                let (encoding, data) = decode_fetched_chunk(&bytes, range.start, Path::new(&file))
                    .map_err(StoreError::block(id))?;
                let data = bytes.slice_ref(data);
                out[i] = (encoding, data);
            }
        }
        Ok(out)
    }

    /// Removes the block's local files (index-header, cached meta).
    pub(crate) fn remove_local(&self) {
        if let Err(e) = std::fs::remove_dir_all(&self.dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(block = %self.meta.ulid, error = %e, "removing the local files of a dropped block");
        }
    }
}
