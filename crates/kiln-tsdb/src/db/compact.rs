//! Cutting blocks from the head and merging blocks into larger ranges.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use kiln_chunkenc::{Encoding, SAMPLES_PER_CHUNK, XorEncoder};
use kiln_model::Timestamp;
use kiln_storage::merge::MergeSeriesSet;
use kiln_storage::{Querier, SeriesSet, ValueKind};
use tracing::{error, info};

use super::querier::BlockQuerier;
use super::{Db, DbError, DbMetrics};
use crate::block::{BlockMeta, BlockReader, BlockWriter, ChunkData, FinishOptions, Interval};
use crate::head::Head;
use crate::wal::checkpoint;

/// What one maintenance round did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CompactStats {
    /// Blocks written from the head.
    pub head_blocks: usize,
    /// Blocks written by merging other blocks.
    pub merged_blocks: usize,
    /// Blocks deleted by retention.
    pub deleted_blocks: usize,
}

impl Db {
    /// One maintenance round: pick up blocks written into the directory by others,
    /// persist full head ranges, merge blocks, apply retention.
    ///
    /// A merge that fails (an unreadable block, say) is logged and its blocks are left
    /// out of later planning; retention runs regardless, so one bad block never stops
    /// old data from being deleted.
    pub fn compact(&self) -> Result<CompactStats, DbError> {
        self.compact_until(&AtomicBool::new(false))
    }

    /// [`compact`](Self::compact), returning early (with what was done so far) once
    /// `stop` is set: it is looked at before each block cut from the head, each merge
    /// and retention, so a shutdown waits for at most one of those steps.
    pub fn compact_until(&self, stop: &AtomicBool) -> Result<CompactStats, DbError> {
        if self.opts.read_only {
            return Err(DbError::ReadOnly);
        }
        let _m = self.maintenance.lock();
        DbMetrics::inc(&self.metrics.compactions_triggered);
        let round = self.compact_locked(stop);
        if round.is_err() {
            DbMetrics::inc(&self.metrics.compactions_failed);
        }
        round
    }

    /// [`compact_until`](Self::compact_until) with the maintenance lock held.
    fn compact_locked(&self, stop: &AtomicBool) -> Result<CompactStats, DbError> {
        let mut stats = CompactStats::default();
        let stopped = |stats: &CompactStats| {
            let yes = stop.load(Ordering::Acquire);
            if yes {
                info!(
                    head_blocks = stats.head_blocks,
                    merged_blocks = stats.merged_blocks,
                    "compaction stopped for shutdown"
                );
            }
            yes
        };
        // Like Prometheus, every round starts from the blocks the directory holds now.
        self.reload_blocks_locked()?;
        let range = self.opts.chunk_range;
        // Prometheus cuts a block once the head spans 1.5 ranges, so that samples up to
        // half a range late still land in the head. Empty ranges are jumped over, so
        // the rounds of this loop are bounded by the ranges that hold samples.
        while let (Some(min), Some(max)) = (self.head.min_time(), self.head.max_time()) {
            if max.saturating_sub(min) <= range / 2 * 3 {
                break;
            }
            if stopped(&stats) {
                return Ok(stats);
            }
            if self.head.skip_empty_ranges() {
                continue;
            }
            let lo = min.div_euclid(range).saturating_mul(range);
            if self.persist_head_range(lo, lo.saturating_add(range))? {
                stats.head_blocks += 1;
            }
        }
        while let Some(group) = self.plan_merge() {
            if stopped(&stats) {
                return Ok(stats);
            }
            match self.merge_blocks(&group) {
                Ok(()) => stats.merged_blocks += 1,
                Err(e) => {
                    DbMetrics::inc(&self.metrics.compactions_failed);
                    error!(
                        err = %e,
                        blocks = %ulids(&group),
                        "Compaction of blocks failed; leaving them as they are until restart"
                    );
                    self.failed_merges
                        .lock()
                        .extend(group.iter().map(|b| b.meta().ulid));
                }
            }
        }
        if stopped(&stats) {
            return Ok(stats);
        }
        stats.deleted_blocks = self.apply_retention()?;
        Ok(stats)
    }

    /// Writes everything in the head to blocks (one per chunk range) and empties it.
    /// Used on demand (snapshots, tests, a clean shutdown that wants no WAL replay).
    /// Afterwards samples older than the end of the last range are out of bounds.
    pub fn flush_head(&self) -> Result<usize, DbError> {
        if self.opts.read_only {
            return Err(DbError::ReadOnly);
        }
        let _m = self.maintenance.lock();
        let range = self.opts.chunk_range;
        let mut written = 0;
        while let (Some(min), Some(max)) = (self.head.min_time(), self.head.max_time()) {
            if min > max {
                break;
            }
            if self.head.skip_empty_ranges() {
                continue;
            }
            let lo = min.div_euclid(range).saturating_mul(range);
            if self.persist_head_range(lo, lo.saturating_add(range))? {
                written += 1;
            }
        }
        Ok(written)
    }

    /// Persists the head's samples in `[lo, hi)` as a level-1 block (none when the range
    /// is empty) and drops them from the head. Returns whether a block was written.
    ///
    /// New samples before `hi` are refused first, and appenders still holding such
    /// samples are waited for, so nothing committed in the range can be missed.
    fn persist_head_range(&self, lo: Timestamp, hi: Timestamp) -> Result<bool, DbError> {
        self.head.set_min_valid_time(hi);
        self.head.wait_for_appenders_below(hi);
        let started = Instant::now();
        let new_dir = {
            let _timer = self.metrics.block_write();
            write_head_block(&self.head, &self.dir, lo, hi, Some(&self.metrics))?
        };
        let written = match new_dir {
            Some(dir) => {
                let block = Arc::new(self.open_new_block(&dir)?);
                let meta = block.meta();
                info!(
                    ulid = %meta.ulid,
                    mint = lo,
                    maxt = hi,
                    series = meta.stats.num_series,
                    samples = meta.stats.num_samples,
                    duration = ?started.elapsed(),
                    "write block"
                );
                let mut blocks = self.blocks.write();
                blocks.push(block);
                blocks.sort_by_key(|b| (b.meta().min_time, b.meta().max_time));
                true
            }
            None => false,
        };
        self.truncate_head(hi)?;
        Ok(written)
    }

    /// Opens a block compaction just wrote, counting it as a reload of the block set
    /// (failed when the block does not open).
    fn open_new_block(&self, dir: &Path) -> Result<BlockReader, DbError> {
        DbMetrics::inc(&self.metrics.reloads);
        BlockReader::open(dir).map_err(|e| {
            DbMetrics::inc(&self.metrics.reloads_failed);
            e.into()
        })
    }

    /// Drops head data before `mint` and checkpoints the WAL segments that only held it.
    fn truncate_head(&self, mint: Timestamp) -> Result<(), DbError> {
        self.head.truncate_before(mint);
        let Some(wal) = self.head.wal.as_ref() else {
            return Ok(());
        };
        let started = Instant::now();
        let (first, last) = {
            let mut w = wal.lock();
            let (first, _) = w.segments()?;
            // Start a new segment so that every older one is complete and immutable.
            let current = w.next_segment()?;
            (first, current.saturating_sub(1))
        };
        if last < first {
            return Ok(());
        }
        let head = &self.head;
        let m = &self.metrics;
        DbMetrics::inc(&m.checkpoint_creations);
        checkpoint::checkpoint(
            &self.dir.join("wal"),
            first,
            last,
            |id| head.wal_id_live(id),
            mint,
            self.opts.wal_compression,
        )
        .inspect_err(|_| DbMetrics::inc(&m.checkpoint_creations_failed))?;
        DbMetrics::inc(&m.wal_truncations);
        wal.lock()
            .truncate(last + 1)
            .inspect_err(|_| DbMetrics::inc(&m.wal_truncations_failed))?;
        m.wal_truncate_duration
            .observe(started.elapsed().as_secs_f64());
        info!(first, last, duration = ?started.elapsed(), "WAL checkpoint complete");
        Ok(())
    }

    /// The block ranges compaction builds: the chunk range times 3, 9, 27, ... up to
    /// the maximum block duration.
    pub(crate) fn block_ranges(&self) -> Vec<i64> {
        super::plan::prometheus_ranges(self.opts.chunk_range, self.opts.max_block_duration)
    }

    /// The next group of blocks to merge ([`super::plan::plan`]), leaving out blocks
    /// whose merge failed before.
    fn plan_merge(&self) -> Option<Vec<Arc<BlockReader>>> {
        let failed = self.failed_merges.lock().clone();
        let blocks: Vec<Arc<BlockReader>> = self
            .blocks
            .read()
            .iter()
            .filter(|b| !failed.contains(&b.meta().ulid))
            .cloned()
            .collect();
        let planned: Vec<super::plan::PlannedBlock> = blocks
            .iter()
            .map(|b| super::plan::PlannedBlock {
                min_time: b.meta().min_time,
                max_time: b.meta().max_time,
            })
            .collect();
        let group = super::plan::plan(
            &planned,
            &self.block_ranges(),
            self.opts.allow_overlapping_compaction,
        )?;
        Some(group.into_iter().map(|i| blocks[i].clone()).collect())
    }

    /// Merges `group` into one block and deletes the originals. Samples the blocks hold
    /// at equal timestamps are written once (the first block's, in time order, wins).
    pub(super) fn merge_blocks(&self, group: &[Arc<BlockReader>]) -> Result<(), DbError> {
        let started = Instant::now();
        let mint = group.iter().map(|b| b.meta().min_time).min().unwrap_or(0);
        let maxt = group.iter().map(|b| b.meta().max_time).max().unwrap_or(0);
        let _timer = self.metrics.block_write();
        if overlapping(group) {
            DbMetrics::inc(&self.metrics.vertical_compactions);
            info!(
                blocks = %ulids(group),
                min_time = %go_time(mint),
                max_time = %go_time(maxt),
                "merging overlapping blocks (vertical compaction); samples at equal timestamps are kept once"
            );
        }
        let queriers: Vec<BlockQuerier> = group
            .iter()
            .map(|b| BlockQuerier::new(b.clone(), mint, maxt.saturating_sub(1)))
            .collect();
        let sets: Vec<Box<dyn SeriesSet<'_> + '_>> =
            queriers.iter().map(|q| q.select(true, None, &[])).collect();
        let mut merged = MergeSeriesSet::new(sets);
        let mut writer = BlockWriter::create(&self.dir, mint, maxt)?;
        let mut chunks = Vec::new();
        let mut ts = Vec::new();
        let mut vals = Vec::new();
        let mut written = 0usize;
        while let Some(series) = merged.next() {
            ts.clear();
            vals.clear();
            let mut it = series.iterator();
            while it.next() == ValueKind::Float {
                let (t, v) = it.at();
                ts.push(t);
                vals.push(v);
            }
            if let Some(e) = it.err() {
                return Err(DbError::Read {
                    context: format!("merging blocks: reading series {}", series.labels()),
                    source: e.clone(),
                });
            }
            chunks.clear();
            encode_samples(&ts, &vals, &mut chunks);
            if !chunks.is_empty() {
                writer.add_series(series.labels(), &as_chunk_data(&chunks))?;
                written += 1;
            }
        }
        if let Some(e) = merged.err() {
            return Err(DbError::Read {
                context: "merging blocks".into(),
                source: e.clone(),
            });
        }
        let warnings = merged.warnings();
        if !warnings.is_empty() {
            // Rewriting would drop what Kiln cannot decode (native histograms): keep the
            // blocks as they are.
            return Err(DbError::UnsupportedChunks {
                detail: warnings.join("; "),
            });
        }
        if written == 0 {
            // Everything was deleted: drop the unfinished writer (it removes its
            // temporary directory) and the originals.
            drop(writer);
            drop(merged);
            drop(queriers);
            info!(
                count = group.len(),
                mint,
                maxt,
                sources = %ulids(group),
                duration = ?started.elapsed(),
                "compact blocks resulted in empty block; deleting the sources"
            );
            self.blocks
                .write()
                .retain(|b| !group.iter().any(|g| Arc::ptr_eq(b, g)));
            for b in group {
                delete_block_dir(b.dir())?;
            }
            return Ok(());
        }
        let metas: Vec<&BlockMeta> = group.iter().map(|b| b.meta()).collect();
        let opts = FinishOptions::merged_from(&metas);
        let dir = self.dir.join(writer.finish(opts)?.to_string());
        drop(merged);
        drop(queriers);
        // Open the new block before touching the list, then swap it in for its parents
        // under one lock: a query sees either the parents or the merged block.
        let block = Arc::new(self.open_new_block(&dir)?);
        info!(
            count = group.len(),
            mint,
            maxt,
            ulid = %block.meta().ulid,
            sources = %ulids(group),
            series = block.meta().stats.num_series,
            duration = ?started.elapsed(),
            "compact blocks"
        );
        {
            let mut blocks = self.blocks.write();
            blocks.retain(|b| !group.iter().any(|g| Arc::ptr_eq(b, g)));
            blocks.push(block);
            blocks.sort_by_key(|b| (b.meta().min_time, b.meta().max_time));
        }
        for b in group {
            delete_block_dir(b.dir())?;
        }
        Ok(())
    }
}

/// The ULIDs of `blocks` as a log field: `[01J... 01J...]`, like Prometheus.
fn ulids(blocks: &[Arc<BlockReader>]) -> String {
    let ids: Vec<String> = blocks.iter().map(|b| b.meta().ulid.to_string()).collect();
    format!("[{}]", ids.join(" "))
}

/// Whether any two of `blocks` have overlapping time ranges.
fn overlapping(blocks: &[Arc<BlockReader>]) -> bool {
    let planned: Vec<super::plan::PlannedBlock> = blocks
        .iter()
        .map(|b| super::plan::PlannedBlock {
            min_time: b.meta().min_time,
            max_time: b.meta().max_time,
        })
        .collect();
    super::plan::overlapping(&planned)
}

/// A ms timestamp the way Go prints a UTC time, for log lines.
pub(super) fn go_time(ms: Timestamp) -> String {
    kiln_model::calendar::go_time_string_utc(i128::from(ms) * 1_000_000)
}

/// Writes the samples of `head` in `[lo, hi)` as a new level-1 block under `parent`
/// (its meta.json time range is exactly `[lo, hi)`) and returns its directory, or
/// `None` when no series has samples there. With `metrics`, every chunk written is
/// recorded in the chunk histograms (Prometheus records level-1 compactions only).
pub fn write_head_block(
    head: &Head,
    parent: &Path,
    lo: Timestamp,
    hi: Timestamp,
    metrics: Option<&DbMetrics>,
) -> Result<Option<PathBuf>, DbError> {
    let mut series = head.all_series();
    series.sort_by(|a, b| a.labels.cmp(&b.labels));
    let mut writer = BlockWriter::create(parent, lo, hi)?;
    let mut written = 0usize;
    let mut encoded: Vec<OwnedChunk> = Vec::new();
    for s in &series {
        let deleted = head.tombstones_for(s.id);
        let held = s
            .data
            .lock()
            .chunks_in(lo, hi.saturating_sub(1), head.chunk_disk.as_ref())
            .map_err(|e| DbError::HeadChunks {
                series: s.labels.to_string(),
                source: Box::new(e),
            })?;
        if deleted.is_empty() && held.iter().all(|c| c.min_time >= lo && c.max_time < hi) {
            // Head chunks never cross a range boundary: write them as they are.
            let chunks: Vec<ChunkData<'_>> = held
                .iter()
                .map(|c| {
                    (
                        c.min_time,
                        c.max_time,
                        Encoding::Xor.as_u8(),
                        c.data.as_ref(),
                    )
                })
                .collect();
            if !chunks.is_empty() {
                if let Some(m) = metrics {
                    for (min, max, _, data) in &chunks {
                        m.observe_head_chunk(*min, *max, data);
                    }
                }
                writer.add_series(&s.labels, &chunks)?;
                written += 1;
            }
            continue;
        }
        let views: Vec<(Timestamp, Timestamp, &[u8])> = held
            .iter()
            .map(|c| (c.min_time, c.max_time, c.data.as_ref()))
            .collect();
        encoded.clear();
        reencode(&views, lo, hi.saturating_sub(1), &deleted, &mut encoded);
        if let Some(m) = metrics {
            for (min, max, data) in &encoded {
                m.observe_head_chunk(*min, *max, data);
            }
        }
        if !encoded.is_empty() {
            writer.add_series(&s.labels, &as_chunk_data(&encoded))?;
            written += 1;
        }
    }
    if written == 0 {
        // Dropping the unfinished writer removes its temporary directory.
        return Ok(None);
    }
    let ulid = writer.finish(FinishOptions::default())?;
    Ok(Some(parent.join(ulid.to_string())))
}

/// A chunk encoded during compaction: `(min_time, max_time, data)`, XOR.
pub(super) type OwnedChunk = (Timestamp, Timestamp, Vec<u8>);

fn as_chunk_data(chunks: &[OwnedChunk]) -> Vec<ChunkData<'_>> {
    chunks
        .iter()
        .map(|(lo, hi, d)| (*lo, *hi, Encoding::Xor.as_u8(), d.as_slice()))
        .collect()
}

/// Renames a block directory out of the way, then removes it, so a crash in between
/// leaves a `.tmp-for-deletion` directory that the next open cleans up.
pub(crate) fn delete_block_dir(dir: &Path) -> Result<(), DbError> {
    let mut tmp = dir.as_os_str().to_owned();
    tmp.push(".tmp-for-deletion");
    std::fs::rename(dir, &tmp).map_err(|e| DbError::io("renaming block for deletion", dir, e))?;
    std::fs::remove_dir_all(&tmp).map_err(|e| DbError::io("removing block", Path::new(&tmp), e))
}

/// Re-encodes the samples of `chunks` within `[mint, maxt]` that are not deleted.
pub(super) fn reencode(
    chunks: &[(Timestamp, Timestamp, &[u8])],
    mint: Timestamp,
    maxt: Timestamp,
    deleted: &[Interval],
    out: &mut Vec<OwnedChunk>,
) {
    let mut ts = Vec::new();
    let mut vals = Vec::new();
    for (_, _, data) in chunks {
        let mut it = kiln_chunkenc::XorIterator::new(data);
        while it.next() {
            let (t, v) = it.at();
            if t >= mint && t <= maxt && !deleted.iter().any(|d| t >= d.mint && t <= d.maxt) {
                ts.push(t);
                vals.push(v);
            }
        }
    }
    encode_samples(&ts, &vals, out);
}

/// Merges XOR chunks that may overlap into non-overlapping ones: every sample in time
/// order, a timestamp held by several chunks written once (the earliest chunk's, in the
/// order given, wins).
pub(super) fn merge_xor(chunks: &[(Timestamp, Timestamp, &[u8])], out: &mut Vec<OwnedChunk>) {
    let mut samples: Vec<(Timestamp, f64)> = Vec::new();
    for (_, _, data) in chunks {
        let mut it = kiln_chunkenc::XorIterator::new(data);
        while it.next() {
            samples.push(it.at());
        }
    }
    // Stable: among equal timestamps the earlier chunk's sample stays first.
    samples.sort_by_key(|s| s.0);
    samples.dedup_by_key(|s| s.0);
    let (ts, vals): (Vec<Timestamp>, Vec<f64>) = samples.into_iter().unzip();
    encode_samples(&ts, &vals, out);
}

/// Encodes samples into XOR chunks of at most 120 samples.
fn encode_samples(ts: &[Timestamp], vals: &[f64], out: &mut Vec<OwnedChunk>) {
    for (tc, vc) in ts
        .chunks(SAMPLES_PER_CHUNK)
        .zip(vals.chunks(SAMPLES_PER_CHUNK))
    {
        let mut enc = XorEncoder::new();
        for (&t, &v) in tc.iter().zip(vc) {
            enc.append(t, v);
        }
        out.push((tc[0], tc[tc.len() - 1], enc.into_bytes()));
    }
}
