//! [`BucketStore`]: the blocks of a bucket as a [`ChunkQueryable`], kept in sync.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use kiln_exposition::{MetricType, encode_text_header, encode_text_sample};
use kiln_model::{Labels, Timestamp};
use kiln_objstore::Bucket;
use kiln_storage::{ChunkQuerier, ChunkQueryable, StorageError};
use parking_lot::RwLock;

use crate::block::StoreBlock;
use crate::cache::IndexCache;
use crate::error::StoreError;
use crate::querier::BucketChunkQuerier;
use crate::sync::{BlockSyncer, SyncOptions, SyncReport};

/// What one selection may ask for (0: no limit), as Thanos's
/// `--store.limits.request-series` and `--store.limits.request-samples`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    pub series: u64,
    pub samples: u64,
}

/// How a store is set up.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub sync: SyncOptions,
    /// Bytes of postings and series entries kept in memory.
    pub index_cache_bytes: u64,
    pub limits: Limits,
}

/// Counters the store keeps (shared with running selections).
#[derive(Default)]
pub(crate) struct StoreMetrics {
    pub(crate) series_requests: AtomicU64,
    pub(crate) limited: AtomicU64,
    syncs: AtomicU64,
    sync_failures: AtomicU64,
    loads: AtomicU64,
    drops: AtomicU64,
    last_report: parking_lot::Mutex<SyncReport>,
}

/// A bucket's blocks, served (see the crate docs).
pub struct BucketStore {
    runtime: tokio::runtime::Handle,
    syncer: BlockSyncer,
    blocks: RwLock<Arc<Vec<Arc<StoreBlock>>>>,
    cache: Arc<IndexCache>,
    limits: Limits,
    metrics: Arc<StoreMetrics>,
}

impl BucketStore {
    /// A store over `bucket` keeping its local files in `data_dir`; reads run on
    /// `runtime`. Serves nothing until the first [`BucketStore::sync`].
    pub fn new(
        bucket: Bucket,
        data_dir: &Path,
        config: StoreConfig,
        runtime: tokio::runtime::Handle,
    ) -> BucketStore {
        let cache = Arc::new(IndexCache::new(config.index_cache_bytes));
        BucketStore {
            runtime,
            syncer: BlockSyncer::new(bucket, data_dir, config.sync, cache.clone()),
            blocks: RwLock::new(Arc::new(Vec::new())),
            cache,
            limits: config.limits,
            metrics: Arc::new(StoreMetrics::default()),
        }
    }

    pub(crate) fn runtime(&self) -> &tokio::runtime::Handle {
        &self.runtime
    }

    pub(crate) fn limits(&self) -> Limits {
        self.limits
    }

    pub(crate) fn metrics_handle(&self) -> Arc<StoreMetrics> {
        self.metrics.clone()
    }

    /// Lists the bucket and updates the served blocks. On failure the blocks served so
    /// far stay served. `now_ms`: the wall clock, Unix ms.
    pub async fn sync(&self, now_ms: i64) -> Result<SyncReport, StoreError> {
        self.metrics.syncs.fetch_add(1, Ordering::Relaxed);
        let (blocks, mut report) = match self.syncer.sync(now_ms).await {
            Ok(r) => r,
            Err(e) => {
                self.metrics.sync_failures.fetch_add(1, Ordering::Relaxed);
                return Err(e);
            }
        };
        let old = self.blocks();
        report.added = blocks
            .iter()
            .filter(|b| !old.iter().any(|o| o.id() == b.id()))
            .count();
        report.dropped = old
            .iter()
            .filter(|o| !blocks.iter().any(|b| b.id() == o.id()))
            .count();
        self.metrics
            .loads
            .fetch_add(report.added as u64, Ordering::Relaxed);
        self.metrics
            .drops
            .fetch_add(report.dropped as u64, Ordering::Relaxed);
        if old.is_empty() {
            // First sync: local files of blocks no longer in the bucket go.
            self.syncer.remove_stale_local(&blocks);
        }
        *self.blocks.write() = Arc::new(blocks);
        *self.metrics.last_report.lock() = report.clone();
        Ok(report)
    }

    /// The blocks served now, by (min time, ULID).
    pub fn blocks(&self) -> Arc<Vec<Arc<StoreBlock>>> {
        self.blocks.read().clone()
    }

    /// The time range served, `(min, max)` in ms (max inclusive); `None` when empty.
    pub fn time_range(&self) -> Option<(Timestamp, Timestamp)> {
        let blocks = self.blocks();
        let min = blocks.iter().map(|b| b.meta.min_time).min()?;
        let max = blocks.iter().map(|b| b.meta.max_time - 1).max()?;
        Some((min, max))
    }

    /// The distinct external label sets of the served blocks, sorted.
    pub fn label_sets(&self) -> Vec<Labels> {
        let mut sets: Vec<Labels> = self.blocks().iter().map(|b| b.labels.clone()).collect();
        sets.sort();
        sets.dedup();
        sets
    }

    /// A chunk querier over `[mint, maxt]` reading blocks of at most `max_resolution`
    /// ms per sample (0: raw data only), choosing per time range the coarsest such
    /// resolution and filling its gaps with finer ones, as Thanos's store does; where no
    /// such block covers a part of the range (finer data has expired), a coarser block
    /// fills it and the answer carries a warning saying so.
    pub fn querier_at_resolution(
        &self,
        mint: Timestamp,
        maxt: Timestamp,
        max_resolution: i64,
    ) -> BucketChunkQuerier<'_> {
        let blocks = self.blocks();
        let (blocks, coarser) = blocks_for(&blocks, mint, maxt, max_resolution);
        let warnings = coarser
            .into_iter()
            .map(|(res, lo, hi)| {
                format!(
                    "{} to {} is answered from {} downsampled data: data of {} resolution has expired or was never there",
                    kiln_model::calendar::go_time_string_utc(i128::from(lo) * 1_000_000),
                    kiln_model::calendar::go_time_string_utc(i128::from(hi) * 1_000_000),
                    resolution_name(res),
                    resolution_name(max_resolution),
                )
            })
            .collect();
        BucketChunkQuerier {
            store: self,
            blocks,
            mint,
            maxt,
            warnings,
        }
    }

    /// Writes the store's metrics (sync, blocks, index cache) in the text format.
    pub fn write_metrics(&self, out: &mut Vec<u8>) {
        let m = &self.metrics;
        let blocks = self.blocks();
        let report = m.last_report.lock().clone();
        let gauge = |out: &mut Vec<u8>, name: &str, help: &str, v: f64| {
            encode_text_header(out, name, help, MetricType::Gauge);
            encode_text_sample(out, &Labels::from_pairs(&[("__name__", name)]), v, None);
        };
        let counter = |out: &mut Vec<u8>, name: &str, help: &str, v: &AtomicU64| {
            encode_text_header(out, name, help, MetricType::Counter);
            let v = v.load(Ordering::Relaxed) as f64;
            encode_text_sample(out, &Labels::from_pairs(&[("__name__", name)]), v, None);
        };
        gauge(
            out,
            "thanos_bucket_store_blocks_loaded",
            "Blocks served.",
            blocks.len() as f64,
        );
        gauge(
            out,
            "kiln_bucket_store_index_headers_loaded",
            "Blocks whose index-header is loaded.",
            blocks.iter().filter(|b| b.header_loaded()).count() as f64,
        );
        counter(
            out,
            "thanos_bucket_store_block_loads_total",
            "Blocks that became served.",
            &m.loads,
        );
        counter(
            out,
            "thanos_bucket_store_block_drops_total",
            "Blocks that stopped being served.",
            &m.drops,
        );
        counter(
            out,
            "thanos_blocks_meta_syncs_total",
            "Syncs of the bucket's blocks.",
            &m.syncs,
        );
        counter(
            out,
            "thanos_blocks_meta_sync_failures_total",
            "Syncs that failed.",
            &m.sync_failures,
        );
        counter(
            out,
            "thanos_bucket_store_series_requests_total",
            "Series selections answered.",
            &m.series_requests,
        );
        counter(
            out,
            "thanos_bucket_store_queries_dropped_total",
            "Selections ended by a series or sample limit.",
            &m.limited,
        );
        let name = "thanos_blocks_meta_synced";
        encode_text_header(
            out,
            name,
            "Blocks found by the last sync, by state.",
            MetricType::Gauge,
        );
        let mut states: Vec<(&str, usize)> = vec![
            ("loaded", report.loaded),
            ("partial", report.partial),
            ("corrupted-meta-json", report.corrupt.len()),
        ];
        for (filter, n) in &report.filtered {
            states.push((filter, *n));
        }
        for (state, n) in states {
            let labels = Labels::from_pairs(&[("__name__", name), ("state", state)]);
            encode_text_sample(out, &labels, n as f64, None);
        }
        self.cache.write_metrics(out);
    }
}

/// Where coarser data fills in: its resolution and the time range, ms.
type CoarserFill = (i64, Timestamp, Timestamp);

fn resolution_name(res: i64) -> String {
    match res {
        0 => "raw".to_owned(),
        r => kiln_model::format_duration_ms(r),
    }
}

/// Per external label set, Thanos's block choice (blocks of the coarsest resolution at
/// most `max_resolution` in time order, the gaps between and around them filled
/// recursively from the next finer resolution), then what is still uncovered in
/// `[mint, maxt]` filled from coarser resolutions, finest first. Returns the blocks and,
/// for each coarser fill, `(resolution, from, to)`.
fn blocks_for(
    blocks: &[Arc<StoreBlock>],
    mint: Timestamp,
    maxt: Timestamp,
    max_resolution: i64,
) -> (Vec<Arc<StoreBlock>>, Vec<CoarserFill>) {
    let mut groups: std::collections::BTreeMap<&Labels, Vec<Arc<StoreBlock>>> =
        std::collections::BTreeMap::new();
    for b in blocks {
        groups.entry(&b.labels).or_default().push(b.clone());
    }
    let mut out = Vec::new();
    let mut coarser = Vec::new();
    for group in groups.values() {
        let mut resolutions: Vec<i64> = group
            .iter()
            .map(|b| b.resolution())
            .filter(|&r| r <= max_resolution)
            .collect();
        resolutions.sort_unstable_by(|a, b| b.cmp(a));
        resolutions.dedup();
        let mut chosen = Vec::new();
        fill(group, &resolutions, mint, maxt, &mut chosen);
        // Coarser data for what nothing allowed covers.
        let mut finer_first: Vec<i64> = group
            .iter()
            .map(|b| b.resolution())
            .filter(|&r| r > max_resolution)
            .collect();
        finer_first.sort_unstable();
        finer_first.dedup();
        for res in finer_first {
            for (lo, hi) in gaps(&chosen, mint, maxt) {
                let fill_in: Vec<Arc<StoreBlock>> = group
                    .iter()
                    .filter(|b| {
                        b.resolution() == res && b.meta.max_time > lo && b.meta.min_time <= hi
                    })
                    .cloned()
                    .collect();
                if let (Some(first), Some(last)) = (
                    fill_in.iter().map(|b| b.meta.min_time.max(lo)).min(),
                    fill_in.iter().map(|b| (b.meta.max_time - 1).min(hi)).max(),
                ) {
                    coarser.push((res, first, last));
                    chosen.extend(fill_in);
                }
            }
        }
        out.extend(chosen);
    }
    out.sort_by_key(|b| (b.meta.min_time, b.meta.ulid));
    out.dedup_by_key(|b| b.meta.ulid);
    coarser.sort_unstable();
    (out, coarser)
}

/// The parts of `[mint, maxt]` no block of `chosen` covers.
fn gaps(
    chosen: &[Arc<StoreBlock>],
    mint: Timestamp,
    maxt: Timestamp,
) -> Vec<(Timestamp, Timestamp)> {
    let mut ranges: Vec<(Timestamp, Timestamp)> = chosen
        .iter()
        .map(|b| (b.meta.min_time, b.meta.max_time - 1))
        .collect();
    ranges.sort_unstable();
    let mut out = Vec::new();
    let mut at = mint;
    for (lo, hi) in ranges {
        if lo > at {
            out.push((at, (lo - 1).min(maxt)));
        }
        at = at.max(hi.saturating_add(1));
        if at > maxt {
            return out;
        }
    }
    if at <= maxt {
        out.push((at, maxt));
    }
    out.retain(|(lo, hi)| lo <= hi);
    out
}

fn fill(
    blocks: &[Arc<StoreBlock>],
    resolutions: &[i64],
    mint: Timestamp,
    maxt: Timestamp,
    out: &mut Vec<Arc<StoreBlock>>,
) {
    let Some((&res, finer)) = resolutions.split_first() else {
        return;
    };
    if mint > maxt {
        return;
    }
    let mut start = mint;
    for b in blocks.iter().filter(|b| b.resolution() == res) {
        if b.meta.max_time <= mint {
            continue;
        }
        if b.meta.min_time > maxt {
            break;
        }
        fill(blocks, finer, start, b.meta.min_time - 1, out);
        out.push(b.clone());
        start = start.max(b.meta.max_time);
    }
    fill(blocks, finer, start, maxt, out);
}

/// The store seen at one maximum resolution (see
/// [`BucketStore::querier_at_resolution`]): what a query with `max_source_resolution`
/// reads.
#[derive(Clone)]
pub struct AtResolution {
    pub store: Arc<BucketStore>,
    /// Milliseconds per sample at most; 0 for raw data.
    pub max_resolution: i64,
}

impl ChunkQueryable for AtResolution {
    fn chunk_querier(
        &self,
        mint: Timestamp,
        maxt: Timestamp,
    ) -> Result<Box<dyn ChunkQuerier + '_>, StorageError> {
        Ok(Box::new(self.store.querier_at_resolution(
            mint,
            maxt,
            self.max_resolution,
        )))
    }
}

impl ChunkQueryable for BucketStore {
    /// Raw data, coarser data where raw has expired ([`AtResolution`] for others).
    fn chunk_querier(
        &self,
        mint: Timestamp,
        maxt: Timestamp,
    ) -> Result<Box<dyn ChunkQuerier + '_>, StorageError> {
        Ok(Box::new(self.querier_at_resolution(mint, maxt, 0)))
    }
}
