//! [`BucketChunkQuerier`]: the chunk querier over the blocks a store serves.
//!
//! A selection runs as an async task on the store's runtime, feeding a bounded channel
//! that the synchronous caller (the StoreAPI's or the query engine's blocking thread)
//! reads, so reads of the bucket overlap with the caller's work and a slow caller holds
//! the reading back:
//! 1. every block in range is listed at once (a few at a time): its external labels
//!    are checked against the matchers (and those matchers dropped), the postings of
//!    the others fetched and combined, the series entries fetched; each matching series
//!    with chunks in range is kept with its chunk references, labelled with the block's
//!    external labels (they win over a stored label of the same name);
//! 2. the lists are merged in label order: the same series in several blocks becomes
//!    one, its chunks in time order (overlaps merged);
//! 3. chunks are fetched a batch of series at a time and the series handed over.
//!
//! Memory: the lists of step 1 (labels and chunk references of the matching series,
//! not their data) plus at most [`BATCH_CHUNKS`] chunks being fetched and
//! [`CHANNEL_SERIES`] series waiting in the channel. The series and sample limits end a
//! selection that asks for more with a clear error.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use kiln_model::{Labels, LabelsBuilder, Matcher, Timestamp};
use kiln_storage::{
    ChunkQuerier, ChunkSeries, ChunkSeriesSet, EncodedChunk, SelectHints, StorageError,
};
use kiln_tsdb::block::index::header::IndexHeader;
use kiln_tsdb::block::index::{ChunkMeta, Postings, intersect, merge, without};
use kiln_tsdb::db::merge_overlapping_chunks;
use tokio::sync::mpsc;

use crate::block::StoreBlock;
use crate::error::StoreError;
use crate::store::{BucketStore, Limits};

/// Blocks listed at once.
const BLOCK_CONCURRENCY: usize = 4;
/// Series entries fetched per round trip of one block.
const SERIES_BATCH: usize = 4096;
/// Chunks fetched per batch.
const BATCH_CHUNKS: usize = 4096;
/// Series waiting in the channel for the caller.
const CHANNEL_SERIES: usize = 256;

/// A matching series of one block: its labels as served and its chunks in range.
struct Listed {
    labels: Labels,
    metas: Vec<ChunkMeta>,
}

/// One series of the merged answer: its parts, one per block holding it.
struct MergedSeries {
    labels: Labels,
    parts: Vec<Part>,
}

/// A series' chunk references in one block (an index into the selection's blocks).
struct Part {
    block: usize,
    metas: Vec<ChunkMeta>,
}

/// A chunk as fetched: encoding and data.
type FetchedChunk = (u8, Bytes);
/// Where a fetched chunk goes: series, part and chunk index within a batch.
type Place = (usize, usize, usize);

/// A chunk querier over `blocks` for `[mint, maxt]`.
pub struct BucketChunkQuerier<'a> {
    pub(crate) store: &'a BucketStore,
    pub(crate) blocks: Vec<Arc<StoreBlock>>,
    pub(crate) mint: Timestamp,
    pub(crate) maxt: Timestamp,
    /// Said with every answer (coarser data filling in for expired finer data).
    pub(crate) warnings: Vec<String>,
}

impl BucketChunkQuerier<'_> {
    fn context(&self) -> String {
        format!("reading {} bucket blocks", self.blocks.len())
    }

    /// Runs `fut` on the store's runtime and waits for it (from a blocking thread).
    fn wait<T: Send + 'static>(
        &self,
        fut: impl Future<Output = Result<T, StoreError>> + Send + 'static,
    ) -> Result<T, StorageError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.store.runtime().spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx.blocking_recv()
            .unwrap_or(Err(StoreError::ShuttingDown))
            .map_err(|e| e.into_storage(&self.context()))
    }
}

impl ChunkQuerier for BucketChunkQuerier<'_> {
    fn select_chunks<'a>(
        &'a self,
        _sorted: bool,
        hints: Option<&SelectHints>,
        matchers: &[Matcher],
    ) -> Box<dyn ChunkSeriesSet + 'a> {
        let labels_only = hints.and_then(|h| h.func.as_deref()) == Some("series");
        let (tx, rx) = mpsc::channel(CHANNEL_SERIES);
        let job = Selection {
            blocks: self.blocks.clone(),
            matchers: matchers.to_vec(),
            mint: self.mint,
            maxt: self.maxt,
            labels_only,
            limits: self.store.limits(),
        };
        let metrics = self.store.metrics_handle();
        self.store.runtime().spawn(async move {
            metrics
                .series_requests
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let end = match job.run(&tx).await {
                Ok(()) => Ok(None),
                Err(e) => {
                    if e.is_limit() {
                        metrics
                            .limited
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    Err(e)
                }
            };
            let _ = tx.send(end).await;
        });
        Box::new(ChannelSeriesSet {
            rx,
            err: None,
            done: false,
            context: self.context(),
            warnings: self.warnings.clone(),
        })
    }

    fn label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
    ) -> Result<(Vec<String>, Vec<String>), StorageError> {
        let (name, matchers) = (name.to_owned(), matchers.to_vec());
        let (mint, maxt) = (self.mint, self.maxt);
        self.union_over_blocks(move |b| {
            let (name, matchers) = (name.clone(), matchers.clone());
            async move { block_label_values(&b, &name, &matchers, mint, maxt).await }
        })
    }

    fn label_names(
        &self,
        matchers: &[Matcher],
    ) -> Result<(Vec<String>, Vec<String>), StorageError> {
        let matchers = matchers.to_vec();
        let (mint, maxt) = (self.mint, self.maxt);
        self.union_over_blocks(move |b| {
            let matchers = matchers.clone();
            async move { block_label_names(&b, &matchers, mint, maxt).await }
        })
    }
}

impl BucketChunkQuerier<'_> {
    /// The sorted, unique union of `per_block`'s answers over every block (a few blocks
    /// at once), with the querier's warnings.
    fn union_over_blocks<F, Fut>(
        &self,
        per_block: F,
    ) -> Result<(Vec<String>, Vec<String>), StorageError>
    where
        F: Fn(Arc<StoreBlock>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Vec<String>, StoreError>> + Send + 'static,
    {
        let blocks = self.blocks.clone();
        let all = self.wait(async move {
            let reads: Vec<Fut> = blocks.into_iter().map(per_block).collect();
            let per_block = futures_util::stream::iter(reads)
                .buffer_unordered(BLOCK_CONCURRENCY)
                .try_collect::<Vec<Vec<String>>>()
                .await?;
            let mut all: Vec<String> = per_block.into_iter().flatten().collect();
            all.sort_unstable();
            all.dedup();
            Ok(all)
        })?;
        Ok((all, self.warnings.clone()))
    }
}

async fn block_label_names(
    block: &StoreBlock,
    matchers: &[Matcher],
    mint: Timestamp,
    maxt: Timestamp,
) -> Result<Vec<String>, StoreError> {
    let mut names = if matchers.is_empty() {
        let mut n = block.header().await?.label_names();
        n.extend(block.labels.iter().map(|l| l.name.to_owned()));
        n
    } else {
        let listed = list_block(block, matchers, mint, maxt).await?;
        let mut n: Vec<String> = listed
            .iter()
            .flat_map(|s| s.labels.iter().map(|l| l.name.to_owned()))
            .collect();
        n.sort_unstable();
        n.dedup();
        n
    };
    names.sort_unstable();
    names.dedup();
    Ok(names)
}

async fn block_label_values(
    block: &StoreBlock,
    name: &str,
    matchers: &[Matcher],
    mint: Timestamp,
    maxt: Timestamp,
) -> Result<Vec<String>, StoreError> {
    if matchers.is_empty() {
        if let Some(v) = block.labels.get(name) {
            return Ok(vec![v.to_owned()]);
        }
        return block
            .header()
            .await?
            .label_values(name)
            .map_err(StoreError::block(block.id()));
    }
    let listed = list_block(block, matchers, mint, maxt).await?;
    let mut values: Vec<String> = listed
        .iter()
        .filter_map(|s| s.labels.get(name).map(str::to_owned))
        .collect();
    values.sort_unstable();
    values.dedup();
    Ok(values)
}

/// One selection's work (see the module docs).
struct Selection {
    blocks: Vec<Arc<StoreBlock>>,
    matchers: Vec<Matcher>,
    mint: Timestamp,
    maxt: Timestamp,
    labels_only: bool,
    limits: Limits,
}

/// Series as they are ready; `Ok(None)` ends a selection that completed, so that a
/// task that died is told apart from one that finished.
type SeriesTx = mpsc::Sender<Result<Option<ChunkSeries>, StoreError>>;

impl Selection {
    async fn run(self, tx: &SeriesTx) -> Result<(), StoreError> {
        let (mint, maxt) = (self.mint, self.maxt);
        let matchers = &self.matchers;
        let listings: Vec<_> = self
            .blocks
            .iter()
            .enumerate()
            .map(|(i, b)| async move { list_block(b, matchers, mint, maxt).await.map(|l| (i, l)) })
            .collect();
        let lists: Vec<(usize, Vec<Listed>)> = futures_util::stream::iter(listings)
            .buffer_unordered(BLOCK_CONCURRENCY)
            .try_collect()
            .await?;

        // Merge: every listed series with its block, in label order (blocks in time
        // order within one series).
        let mut all: Vec<(Labels, usize, Vec<ChunkMeta>)> = lists
            .into_iter()
            .flat_map(|(i, l)| l.into_iter().map(move |s| (s.labels, i, s.metas)))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
        let mut merged: Vec<MergedSeries> = Vec::new();
        for (labels, block, metas) in all {
            match merged.last_mut() {
                Some(s) if s.labels == labels => s.parts.push(Part { block, metas }),
                _ => merged.push(MergedSeries {
                    labels,
                    parts: vec![Part { block, metas }],
                }),
            }
        }
        if self.limits.series > 0 && merged.len() as u64 > self.limits.series {
            return Err(StoreError::Limit {
                what: "series",
                limit: self.limits.series,
            });
        }
        if self.labels_only {
            for MergedSeries { labels, .. } in merged {
                let s = ChunkSeries {
                    labels,
                    chunks: Vec::new(),
                };
                if tx.send(Ok(Some(s))).await.is_err() {
                    return Ok(());
                }
            }
            return Ok(());
        }

        let mut samples = 0u64;
        let mut batch_start = 0;
        while batch_start < merged.len() {
            let mut end = batch_start;
            let mut chunks = 0;
            while end < merged.len() && (end == batch_start || chunks < BATCH_CHUNKS) {
                chunks += merged[end]
                    .parts
                    .iter()
                    .map(|p| p.metas.len())
                    .sum::<usize>();
                end += 1;
            }
            let fetched = self.fetch_batch(&merged[batch_start..end]).await?;
            for (series, mut per_part) in merged[batch_start..end].iter().zip(fetched) {
                let mut out: Vec<EncodedChunk> = Vec::new();
                for (part, data) in series.parts.iter().zip(per_part.drain(..)) {
                    for (m, (encoding, bytes)) in part.metas.iter().zip(data) {
                        samples += chunk_samples(encoding, &bytes);
                        out.push(EncodedChunk {
                            min_time: m.min_time,
                            max_time: m.max_time,
                            encoding,
                            data: bytes.to_vec(),
                        });
                    }
                }
                if self.limits.samples > 0 && samples > self.limits.samples {
                    return Err(StoreError::Limit {
                        what: "samples",
                        limit: self.limits.samples,
                    });
                }
                let chunks = if series.parts.len() > 1 {
                    merge_overlapping_chunks(out)
                } else {
                    out
                };
                let s = ChunkSeries {
                    labels: series.labels.clone(),
                    chunks,
                };
                if tx.send(Ok(Some(s))).await.is_err() {
                    return Ok(());
                }
            }
            batch_start = end;
        }
        Ok(())
    }

    /// The chunks of a batch of series: per series, per part, the chunks in order.
    async fn fetch_batch(
        &self,
        batch: &[MergedSeries],
    ) -> Result<Vec<Vec<Vec<FetchedChunk>>>, StoreError> {
        // Per block: the refs wanted, and where each answer goes.
        let mut per_block: std::collections::BTreeMap<usize, (Vec<u64>, Vec<Place>)> =
            Default::default();
        let mut out: Vec<Vec<Vec<FetchedChunk>>> = batch
            .iter()
            .map(|s| {
                s.parts
                    .iter()
                    .map(|p| vec![(0, Bytes::new()); p.metas.len()])
                    .collect()
            })
            .collect();
        for (si, series) in batch.iter().enumerate() {
            for (pi, part) in series.parts.iter().enumerate() {
                let entry = per_block.entry(part.block).or_default();
                for (ci, m) in part.metas.iter().enumerate() {
                    entry.0.push(m.chunk_ref);
                    entry.1.push((si, pi, ci));
                }
            }
        }
        let blocks = &self.blocks;
        let reads: Vec<_> =
            per_block
                .into_iter()
                .map(|(b, (refs, places))| async move {
                    blocks[b].chunks(&refs).await.map(|c| (places, c))
                })
                .collect();
        let fetched: Vec<(Vec<Place>, Vec<FetchedChunk>)> = futures_util::stream::iter(reads)
            .buffer_unordered(BLOCK_CONCURRENCY)
            .try_collect()
            .await?;
        for (places, chunks) in fetched {
            for ((si, pi, ci), c) in places.into_iter().zip(chunks) {
                out[si][pi][ci] = c;
            }
        }
        Ok(out)
    }
}

/// Samples in a chunk: XOR chunks start with their count; other encodings count one
/// per chunk byte pair at most, so limits stay conservative.
fn chunk_samples(encoding: u8, data: &[u8]) -> u64 {
    match (encoding, data) {
        (1, [hi, lo, ..]) => u64::from(u16::from_be_bytes([*hi, *lo])),
        _ => (data.len() as u64 / 2).max(1),
    }
}

/// The matching series of one block with their chunks in `[mint, maxt]` (see the
/// module docs, step 1), in the order of their labels as served.
async fn list_block(
    block: &StoreBlock,
    matchers: &[Matcher],
    mint: Timestamp,
    maxt: Timestamp,
) -> Result<Vec<Listed>, StoreError> {
    let mut rest: Vec<&Matcher> = Vec::with_capacity(matchers.len());
    for m in matchers {
        match block.labels.get(&m.name) {
            Some(v) if !m.matches(v) => return Ok(Vec::new()),
            Some(_) => {}
            None => rest.push(m),
        }
    }
    let header = block.header().await?;
    let ids = postings_for(block, &header, &rest).await?;
    let id = block.id();
    let index = std::path::Path::new(kiln_tsdb::block::INDEX_FILENAME);
    let mut out = Vec::new();
    let mut builder = LabelsBuilder::new();
    let mut metas = Vec::new();
    for batch in ids.chunks(SERIES_BATCH) {
        let entries = block.series(&header, batch).await?;
        for (&sid, entry) in batch.iter().zip(entries) {
            header
                .decode_series(&entry, sid, index, &mut builder, Some(&mut metas))
                .map_err(StoreError::block(id))?;
            metas.retain(|m| m.max_time >= mint && m.min_time <= maxt);
            if metas.is_empty() {
                continue;
            }
            for l in block.labels.iter() {
                builder.set(l.name, l.value);
            }
            out.push(Listed {
                labels: builder.build(),
                metas: std::mem::take(&mut metas),
            });
        }
    }
    if !block.labels.is_empty() {
        // External labels can change the order (see kiln-storeapi's server docs).
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
    }
    Ok(out)
}

/// Sorted ids of the block's series matching every matcher (absent labels match `""`),
/// reading each postings list needed once.
async fn postings_for(
    block: &StoreBlock,
    header: &IndexHeader,
    matchers: &[&Matcher],
) -> Result<Vec<u32>, StoreError> {
    let err = StoreError::block(block.id());
    let mut ranges = Vec::new();
    // Per narrowing matcher, the ranges (indexes into `ranges`) whose union it means.
    let mut narrowing: Vec<Vec<usize>> = Vec::new();
    let mut widening: Vec<Vec<usize>> = Vec::new();
    for m in matchers {
        let found: Vec<std::ops::Range<u64>> = if m.matches_empty() {
            header
                .postings_ranges(&m.name, |v| !m.matches(v))
                .map_err(StoreError::block(block.id()))?
                .into_iter()
                .map(|p| p.range)
                .collect()
        } else if let Some(values) = m.set_matches() {
            let mut found = Vec::new();
            for v in values {
                if let Some(r) = header
                    .postings_range(&m.name, v)
                    .map_err(StoreError::block(block.id()))?
                {
                    found.push(r);
                }
            }
            found
        } else {
            header
                .postings_ranges(&m.name, |v| m.matches(v))
                .map_err(StoreError::block(block.id()))?
                .into_iter()
                .map(|p| p.range)
                .collect()
        };
        if !m.matches_empty() && found.is_empty() {
            return Ok(Vec::new());
        }
        let idx: Vec<usize> = (ranges.len()..ranges.len() + found.len()).collect();
        ranges.extend(found);
        if m.matches_empty() {
            widening.push(idx);
        } else {
            narrowing.push(idx);
        }
    }
    let all_at = if narrowing.is_empty() {
        match header.all_postings_range().map_err(err)? {
            Some(r) => {
                ranges.push(r);
                Some(ranges.len() - 1)
            }
            None => return Ok(Vec::new()),
        }
    } else {
        None
    };
    let lists = block.postings(&ranges).await?;
    let union = |idx: &[usize]| {
        merge(
            idx.iter()
                .map(|&i| Postings::from_vec(lists[i].clone()))
                .collect(),
        )
    };
    let mut ids = match all_at {
        Some(i) => Postings::from_vec(lists[i].clone()),
        None => intersect(narrowing.iter().map(|idx| union(idx)).collect()),
    };
    for idx in &widening {
        ids = without(ids, union(idx));
    }
    Ok(ids.into_vec())
}

/// The caller's end of a selection.
struct ChannelSeriesSet {
    rx: mpsc::Receiver<Result<Option<ChunkSeries>, StoreError>>,
    err: Option<StorageError>,
    done: bool,
    context: String,
    warnings: Vec<String>,
}

impl ChunkSeriesSet for ChannelSeriesSet {
    fn next(&mut self) -> Option<ChunkSeries> {
        if self.err.is_some() || self.done {
            return None;
        }
        match self.rx.blocking_recv() {
            Some(Ok(Some(s))) => Some(s),
            Some(Ok(None)) => {
                self.done = true;
                None
            }
            Some(Err(e)) => {
                self.err = Some(e.into_storage(&self.context));
                None
            }
            None => {
                self.err = Some(StoreError::ShuttingDown.into_storage(&self.context));
                None
            }
        }
    }

    fn err(&self) -> Option<&StorageError> {
        self.err.as_ref()
    }

    fn warnings(&self) -> Vec<String> {
        self.warnings.clone()
    }
}
