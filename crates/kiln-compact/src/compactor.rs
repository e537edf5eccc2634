//! [`Compactor`]: one pass of Thanos's compactor over a bucket.
//!
//! A pass ([`Compactor::run_once`]):
//! 1. **State**: the bucket's blocks (one listing and every `meta.json`) and markers
//!    (deletion, no-compact, no-downsample).
//! 2. **Garbage**: a block whose sources another block holds all of (the leftover of a
//!    compaction interrupted after its upload) is marked for deletion.
//! 3. **Compaction**: blocks are grouped by external labels (the replica labels given
//!    taken out, so replicas share a group) and resolution; in each group the planner
//!    (`kiln_tsdb::db::plan`, with Thanos's ranges 2h, 8h, 2d, 14d) picks overlapping
//!    blocks first, then full windows, until nothing is left to do. A step downloads
//!    the blocks, merges them ([`crate::merge`]), uploads the result (`meta.json` last)
//!    and only then marks the sources for deletion: a crash at any point leaves either
//!    the sources or the result as the group's data (step 2 cleans the rest up). A
//!    block that cannot be read or merged gets a `no-compact-mark.json` with the
//!    reason; the rest of the bucket goes on.
//! 4. **Downsampling**: raw blocks spanning at least 40h get a 5m version, 5m blocks
//!    spanning at least 10 days a 1h version, unless done already or marked
//!    `no-downsample-mark.json`.
//! 5. **Retention**: blocks whose end is older than their resolution's retention are
//!    marked for deletion.
//! 6. **Cleanup**: blocks marked for deletion longer ago than the delete delay are
//!    deleted (`meta.json` first, so a half-deleted block is a partial one, the mark
//!    last); partial uploads older than two days are marked for deletion.
//!
//! Local disk holds the blocks of one step at a time (under `<data-dir>/compact`),
//! removed after the step.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bytes::Bytes;
use futures_util::StreamExt;
use kiln_exposition::{MetricType, encode_text_header, encode_text_sample};
use kiln_model::Labels;
use kiln_objstore::markers::{MarkError, Marker, MarkerKind, mark_because};
use kiln_objstore::thanos_meta::source;
use kiln_objstore::upload::{DownloadError, download_block};
use kiln_objstore::{Bucket, BucketBlock, BucketError, UploadError, UploadOptions, list_blocks};
use kiln_tsdb::block::{BlockError, BlockReader};
use kiln_tsdb::db::plan::{PlannedBlock, THANOS_RANGES, plan};
use ulid::Ulid;

use crate::downsample::{DownsampleError, downsample_block, next_resolution};
use crate::merge::{CompactError, compact_blocks};

/// Raw blocks are downsampled to 5m once they span this long (Thanos's 40h).
pub const DOWNSAMPLE_RAW_AFTER: i64 = 40 * 3_600_000;
/// 5m blocks are downsampled to 1h once they span this long (Thanos's 10 days).
pub const DOWNSAMPLE_5M_AFTER: i64 = 10 * 86_400_000;
/// How long a block of `resolution` must span before it is downsampled; `None` for
/// the coarsest resolution.
pub fn downsample_span(resolution: i64) -> Option<i64> {
    match resolution {
        0 => Some(DOWNSAMPLE_RAW_AFTER),
        300_000 => Some(DOWNSAMPLE_5M_AFTER),
        _ => None,
    }
}

/// Partial uploads older than this (by ULID time) are aborted ones (Thanos's 2 days).
pub const PARTIAL_UPLOAD_AGE: i64 = 2 * 86_400_000;

/// How the compactor works.
#[derive(Debug, Clone)]
pub struct CompactorOptions {
    /// Local scratch space; cleaned at the start of each step.
    pub data_dir: PathBuf,
    /// External labels that tell replicas apart (`--deduplication.replica-label`):
    /// blocks differing only in them are one group, merged into one.
    pub replica_labels: Vec<String>,
    /// Retention by resolution, ms (0: keep forever): raw, 5m, 1h.
    pub retention_raw: i64,
    pub retention_5m: i64,
    pub retention_1h: i64,
    /// How long a block marked for deletion stays before it is deleted, ms.
    pub delete_delay: i64,
    pub downsampling: bool,
    /// Compaction ranges, ms.
    pub ranges: Vec<i64>,
    /// Groups compacted at once (at least 1).
    pub concurrency: usize,
    /// Blocks younger than this (by ULID) that a compactor did not write are left
    /// alone, so an upload in stages is complete before it is read, ms.
    pub consistency_delay: i64,
}

impl Default for CompactorOptions {
    fn default() -> Self {
        CompactorOptions {
            data_dir: PathBuf::from("./data"),
            replica_labels: Vec::new(),
            retention_raw: 0,
            retention_5m: 0,
            retention_1h: 0,
            delete_delay: 48 * 3_600_000,
            downsampling: true,
            ranges: THANOS_RANGES.to_vec(),
            concurrency: 1,
            consistency_delay: 30 * 60_000,
        }
    }
}

/// A failure that stops a pass (a block's own problems only mark that block).
#[derive(Debug, thiserror::Error)]
pub enum CompactorError {
    #[error(transparent)]
    Bucket(#[from] BucketError),
    #[error("marking block {block}")]
    Mark {
        block: Ulid,
        #[source]
        source: MarkError,
    },
    #[error("uploading a block")]
    Upload(#[from] UploadError),
    #[error("{op} {path}")]
    Local {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("stopped")]
    Stopped,
}

/// What a pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PassReport {
    pub groups: usize,
    /// Compaction steps, and those that merged overlapping blocks.
    pub compactions: usize,
    pub vertical_compactions: usize,
    /// Blocks downsampled: the block, the new block and its resolution.
    pub downsampled: Vec<(Ulid, Ulid, i64)>,
    pub marked_for_deletion: usize,
    pub marked_no_compact: Vec<(Ulid, String)>,
    pub deleted: usize,
}

/// Where a pass is, for a progress bar or log lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    pub phase: &'static str,
    pub done: usize,
    pub total: usize,
    pub detail: String,
}

/// Counters under Thanos's compactor metric names.
#[derive(Default)]
pub struct CompactorMetrics {
    iterations: AtomicU64,
    compactions: AtomicU64,
    vertical: AtomicU64,
    downsamples: AtomicU64,
    marked_deletion: AtomicU64,
    marked_no_compact: AtomicU64,
    cleaned: AtomicU64,
    /// 1 while the last pass failed.
    halted: AtomicU64,
}

impl CompactorMetrics {
    /// Writes the metrics in the text format.
    pub fn write_metrics(&self, out: &mut Vec<u8>) {
        let one = |out: &mut Vec<u8>, name: &str, help: &str, kind, v: &AtomicU64| {
            encode_text_header(out, name, help, kind);
            let labels = Labels::from_pairs(&[("__name__", name)]);
            encode_text_sample(out, &labels, v.load(Ordering::Relaxed) as f64, None);
        };
        use MetricType::{Counter, Gauge};
        one(
            out,
            "thanos_compact_iterations_total",
            "Passes over the bucket that completed.",
            Counter,
            &self.iterations,
        );
        one(
            out,
            "thanos_compact_group_compactions_total",
            "Compaction steps (blocks merged into one).",
            Counter,
            &self.compactions,
        );
        one(
            out,
            "thanos_compact_group_vertical_compactions_total",
            "Compaction steps that merged overlapping blocks.",
            Counter,
            &self.vertical,
        );
        one(
            out,
            "thanos_compact_downsample_total",
            "Blocks downsampled.",
            Counter,
            &self.downsamples,
        );
        one(
            out,
            "thanos_compact_blocks_cleaned_total",
            "Blocks deleted after their deletion delay.",
            Counter,
            &self.cleaned,
        );
        one(
            out,
            "thanos_compact_halted",
            "1 while the last pass failed (see the log).",
            Gauge,
            &self.halted,
        );
        let name = "thanos_compact_blocks_marked_total";
        encode_text_header(out, name, "Markers the compactor set, by marker.", Counter);
        for (marker, v) in [
            ("deletion-mark.json", &self.marked_deletion),
            ("no-compact-mark.json", &self.marked_no_compact),
        ] {
            let labels = Labels::from_pairs(&[("__name__", name), ("marker", marker)]);
            encode_text_sample(out, &labels, v.load(Ordering::Relaxed) as f64, None);
        }
    }
}

/// See the module docs.
pub struct Compactor {
    bucket: Bucket,
    opts: CompactorOptions,
    metrics: Arc<CompactorMetrics>,
}

/// The bucket as a pass sees it.
struct BucketState {
    blocks: Vec<BucketBlock>,
    /// Deletion times (Unix seconds) of marked blocks, partial ones included.
    deletion: BTreeMap<Ulid, i64>,
    no_compact: BTreeSet<Ulid>,
    no_downsample: BTreeSet<Ulid>,
    partial: Vec<Ulid>,
}

impl BucketState {
    fn live(&self) -> impl Iterator<Item = &BucketBlock> {
        self.blocks
            .iter()
            .filter(|b| !self.deletion.contains_key(&b.meta.ulid))
    }
}

fn sources_of(b: &BucketBlock) -> BTreeSet<Ulid> {
    if b.meta.compaction.sources.is_empty() {
        BTreeSet::from([b.meta.ulid])
    } else {
        b.meta.compaction.sources.iter().copied().collect()
    }
}

impl Compactor {
    pub fn new(bucket: Bucket, opts: CompactorOptions) -> Compactor {
        Compactor {
            bucket,
            opts,
            metrics: Arc::new(CompactorMetrics::default()),
        }
    }

    pub fn metrics(&self) -> Arc<CompactorMetrics> {
        self.metrics.clone()
    }

    /// One pass (see the module docs). `now_ms` is the wall clock; `stop` is checked
    /// between steps; `progress` hears where the pass is.
    pub async fn run_once(
        &self,
        now_ms: i64,
        stop: &AtomicBool,
        progress: &(dyn Fn(&Progress) + Send + Sync),
    ) -> Result<PassReport, CompactorError> {
        let result = self.pass(now_ms, stop, progress).await;
        self.metrics
            .halted
            .store(u64::from(result.is_err()), Ordering::Relaxed);
        if result.is_ok() {
            self.metrics.iterations.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    async fn pass(
        &self,
        now_ms: i64,
        stop: &AtomicBool,
        progress: &(dyn Fn(&Progress) + Send + Sync),
    ) -> Result<PassReport, CompactorError> {
        let mut report = PassReport::default();
        let check = || {
            if stop.load(Ordering::Relaxed) {
                Err(CompactorError::Stopped)
            } else {
                Ok(())
            }
        };
        let mut state = self.state(now_ms).await?;
        self.collect_garbage(&mut state, &mut report).await?;

        // Compaction: groups at once up to the concurrency, each with its own copy of
        // its blocks and scratch directory; results merge back into the state.
        let groups = self.groups(&state);
        report.groups = groups.len();
        let total = groups.len();
        let jobs: Vec<_> = groups
            .into_iter()
            .enumerate()
            .map(|(i, (key, ids))| {
                let group = GroupState {
                    blocks: state
                        .blocks
                        .iter()
                        .filter(|b| ids.contains(&b.meta.ulid))
                        .cloned()
                        .collect(),
                    no_compact: ids
                        .iter()
                        .copied()
                        .filter(|id| state.no_compact.contains(id))
                        .collect(),
                    deleted: Vec::new(),
                    report: PassReport::default(),
                };
                let scratch = self.opts.data_dir.join("compact").join(i.to_string());
                async move {
                    let mut group = group;
                    let r = self.compact_group(&key, &mut group, &scratch, stop).await;
                    let _ = std::fs::remove_dir_all(&scratch);
                    r.map(|()| (key, group))
                }
            })
            .collect();
        progress(&Progress {
            phase: "compaction",
            done: 0,
            total,
            detail: String::new(),
        });
        let mut running =
            futures_util::stream::iter(jobs).buffer_unordered(self.opts.concurrency.max(1));
        let mut done = 0;
        while let Some(result) = running.next().await {
            let (key, group) = result?;
            done += 1;
            progress(&Progress {
                phase: "compaction",
                done,
                total,
                detail: key,
            });
            for (id, at) in group.deleted {
                state.deletion.entry(id).or_insert(at);
            }
            state.no_compact.extend(group.no_compact);
            for b in group.blocks {
                if !state.blocks.iter().any(|o| o.meta.ulid == b.meta.ulid) {
                    state.blocks.push(b);
                }
            }
            report.absorb(group.report);
        }
        drop(running);

        if self.opts.downsampling {
            self.downsample_all(&mut state, &mut report, stop, progress)
                .await?;
        }

        // Retention by resolution.
        let expired: Vec<Ulid> = state
            .live()
            .filter(|b| {
                let keep = match b.thanos.downsample.resolution {
                    0 => self.opts.retention_raw,
                    300_000 => self.opts.retention_5m,
                    _ => self.opts.retention_1h,
                };
                keep > 0 && b.meta.max_time < now_ms.saturating_sub(keep)
            })
            .map(|b| b.meta.ulid)
            .collect();
        for id in expired {
            check()?;
            self.mark_deleted(&mut state, id, "retention", &mut report, now_ms)
                .await?;
        }

        // Cleanup: deletions due, aborted partial uploads.
        for &id in &state.partial {
            let age = now_ms.saturating_sub(i64::try_from(id.timestamp_ms()).unwrap_or(i64::MAX));
            if age > PARTIAL_UPLOAD_AGE && !state.deletion.contains_key(&id) {
                // No meta.json, so the marker is written directly.
                let marker = Marker::new(MarkerKind::Deletion, id, "", now_ms / 1000);
                let body = serde_json::to_vec(&marker).unwrap_or_default();
                self.bucket
                    .upload(&format!("{id}/deletion-mark.json"), Bytes::from(body))
                    .await?;
                state.deletion.insert(id, now_ms / 1000);
                report.marked_for_deletion += 1;
                self.metrics.marked_deletion.fetch_add(1, Ordering::Relaxed);
                tracing::info!(block = %id, "marked an aborted partial upload for deletion");
            }
        }
        // Marks set during this pass carry the wall clock, which may be past `now_ms`.
        let now_ms = now_ms.max(kiln_model::calendar::now_ms());
        let due: Vec<Ulid> = state
            .deletion
            .iter()
            .filter(|&(_, &at_s)| {
                now_ms.saturating_sub(at_s.saturating_mul(1000)) >= self.opts.delete_delay
            })
            .map(|(&id, _)| id)
            .collect();
        let total = due.len();
        for (i, id) in due.into_iter().enumerate() {
            check()?;
            progress(&Progress {
                phase: "cleanup",
                done: i,
                total,
                detail: id.to_string(),
            });
            self.delete_block(id).await?;
            report.deleted += 1;
            self.metrics.cleaned.fetch_add(1, Ordering::Relaxed);
        }
        Ok(report)
    }

    /// Downsamples every block that is due (see the module docs, step 4).
    async fn downsample_all(
        &self,
        state: &mut BucketState,
        report: &mut PassReport,
        stop: &AtomicBool,
        progress: &(dyn Fn(&Progress) + Send + Sync),
    ) -> Result<(), CompactorError> {
        let due: Vec<BucketBlock> = state
            .live()
            .filter(|b| self.downsample_due(state, b))
            .cloned()
            .collect();
        let total = due.len();
        for (i, b) in due.iter().enumerate() {
            if stop.load(Ordering::Relaxed) {
                return Err(CompactorError::Stopped);
            }
            progress(&Progress {
                phase: "downsampling",
                done: i,
                total,
                detail: b.meta.ulid.to_string(),
            });
            match downsample_in_bucket(&self.bucket, b, &self.scratch()?).await {
                Ok(Some(new)) => {
                    report.downsampled.push((
                        b.meta.ulid,
                        new.meta.ulid,
                        new.thanos.downsample.resolution,
                    ));
                    self.metrics.downsamples.fetch_add(1, Ordering::Relaxed);
                    state.blocks.push(new);
                }
                Ok(None) => {}
                Err(DownsampleFailure::Bucket(e)) => return Err(e),
                Err(DownsampleFailure::Block(reason)) => {
                    // Marked so that the next pass does not retry it for ever.
                    self.mark(
                        b.meta.ulid,
                        MarkerKind::NoDownsample,
                        &reason,
                        "downsample-failed",
                    )
                    .await?;
                    tracing::error!(block = %b.meta.ulid, %reason, "downsampling failed; the block is marked no-downsample");
                }
            }
        }
        Ok(())
    }

    /// Only step 4 of a pass, once (`kiln tools bucket downsample`).
    pub async fn downsample_once(
        &self,
        stop: &AtomicBool,
        progress: &(dyn Fn(&Progress) + Send + Sync),
    ) -> Result<PassReport, CompactorError> {
        let mut state = self.state(kiln_model::calendar::now_ms()).await?;
        let mut report = PassReport::default();
        self.downsample_all(&mut state, &mut report, stop, progress)
            .await?;
        Ok(report)
    }

    /// The bucket's blocks and markers: the catalog, then one recursive listing for
    /// the markers (deletion marks are read for their time).
    async fn state(&self, now_ms: i64) -> Result<BucketState, CompactorError> {
        let catalog = list_blocks(&self.bucket).await?;
        let mut deletion = BTreeMap::new();
        let mut no_compact = BTreeSet::new();
        let mut no_downsample = BTreeSet::new();
        for name in self.bucket.iter("", true).await? {
            let Some((dir, file)) = name.split_once('/') else {
                continue;
            };
            let Ok(id) = Ulid::from_string(dir) else {
                continue;
            };
            match MarkerKind::from_file_name(file) {
                Some(MarkerKind::Deletion) => {
                    let at = match self.bucket.get(&name).await {
                        Ok(b) => serde_json::from_slice::<Marker>(&b)
                            .ok()
                            .and_then(|m| m.deletion_time),
                        Err(e) if e.is_not_found() => continue,
                        Err(e) => return Err(e.into()),
                    };
                    // A mark that does not read counts from now: the block still goes,
                    // after the full delay.
                    deletion.insert(id, at.unwrap_or(kiln_model::calendar::now_ms() / 1000));
                }
                Some(MarkerKind::NoCompact) => {
                    no_compact.insert(id);
                }
                Some(MarkerKind::NoDownsample) => {
                    no_downsample.insert(id);
                }
                None => {}
            }
        }
        for (id, reason) in &catalog.corrupt {
            tracing::warn!(block = %id, %reason, "skipping a block whose meta.json does not read");
        }
        let mut blocks = catalog.blocks;
        blocks.retain(|b| {
            let created = i64::try_from(b.meta.ulid.timestamp_ms()).unwrap_or(i64::MAX);
            b.thanos.source == source::COMPACTOR
                || created <= now_ms.saturating_sub(self.opts.consistency_delay)
        });
        Ok(BucketState {
            blocks,
            deletion,
            no_compact,
            no_downsample,
            partial: catalog.partial,
        })
    }

    /// Marks blocks whose sources another live block of the same resolution holds
    /// entirely (left by an interrupted compaction).
    async fn collect_garbage(
        &self,
        state: &mut BucketState,
        report: &mut PassReport,
    ) -> Result<(), CompactorError> {
        let live: Vec<(Ulid, i64, BTreeSet<Ulid>, u32)> = state
            .live()
            .map(|b| {
                (
                    b.meta.ulid,
                    b.thanos.downsample.resolution,
                    sources_of(b),
                    b.meta.compaction.level,
                )
            })
            .collect();
        let mut garbage = Vec::new();
        for (id, res, sources, level) in &live {
            let covered = live.iter().any(|(other, ores, osources, olevel)| {
                other != id
                    && ores == res
                    && sources.is_subset(osources)
                    && (osources.len() > sources.len() || (olevel, other) > (level, id))
            });
            if covered {
                garbage.push(*id);
            }
        }
        let now = kiln_model::calendar::now_ms();
        for id in garbage {
            tracing::info!(block = %id, "marking a block whose data a compacted block holds for deletion");
            self.mark_deleted(state, id, "superseded", report, now)
                .await?;
        }
        Ok(())
    }

    /// Groups of live blocks: key (labels without replica labels, and resolution) to
    /// their ULIDs.
    fn groups(&self, state: &BucketState) -> BTreeMap<String, Vec<Ulid>> {
        let mut groups: BTreeMap<String, Vec<Ulid>> = BTreeMap::new();
        for b in state.live() {
            groups
                .entry(self.group_key(b))
                .or_default()
                .push(b.meta.ulid);
        }
        groups
    }

    fn group_labels(&self, b: &BucketBlock) -> BTreeMap<String, String> {
        b.thanos
            .labels
            .iter()
            .filter(|(k, _)| !self.opts.replica_labels.contains(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    fn group_key(&self, b: &BucketBlock) -> String {
        let labels: Vec<String> = self
            .group_labels(b)
            .iter()
            .map(|(k, v)| format!("{k}={v:?}"))
            .collect();
        format!(
            "{}@{{{}}}",
            b.thanos.downsample.resolution,
            labels.join(",")
        )
    }

    fn scratch(&self) -> Result<PathBuf, CompactorError> {
        clean_dir(&self.opts.data_dir.join("compact"))
    }

    /// Plans and runs compaction steps in one group until nothing is left to do.
    async fn compact_group(
        &self,
        key: &str,
        group: &mut GroupState,
        scratch: &Path,
        stop: &AtomicBool,
    ) -> Result<(), CompactorError> {
        loop {
            if stop.load(Ordering::Relaxed) {
                return Err(CompactorError::Stopped);
            }
            let mut blocks: Vec<&BucketBlock> = group
                .blocks
                .iter()
                .filter(|b| {
                    let id = b.meta.ulid;
                    !group.no_compact.contains(&id) && !group.deleted.iter().any(|(d, _)| *d == id)
                })
                .collect();
            blocks.sort_by_key(|b| (b.meta.min_time, b.meta.max_time, b.meta.ulid));
            let planned: Vec<PlannedBlock> = blocks
                .iter()
                .map(|b| PlannedBlock {
                    min_time: b.meta.min_time,
                    max_time: b.meta.max_time,
                })
                .collect();
            let Some(picked) = plan(&planned, &self.opts.ranges, true) else {
                return Ok(());
            };
            let step: Vec<BucketBlock> = picked.iter().map(|&i| blocks[i].clone()).collect();
            let vertical = kiln_tsdb::db::plan::overlapping(
                &picked.iter().map(|&i| planned[i]).collect::<Vec<_>>(),
            );
            match self.compact_step(&step, key, scratch).await? {
                Step::Done(new) => {
                    group.report.compactions += 1;
                    self.metrics.compactions.fetch_add(1, Ordering::Relaxed);
                    if vertical {
                        group.report.vertical_compactions += 1;
                        self.metrics.vertical.fetch_add(1, Ordering::Relaxed);
                    }
                    let now = kiln_model::calendar::now_ms();
                    let detail = match &new {
                        Some(b) => format!("compacted into {}", b.meta.ulid),
                        None => "compacted into nothing (all deleted)".to_owned(),
                    };
                    // Only after the new block is complete in the bucket.
                    for b in &step {
                        self.mark(b.meta.ulid, MarkerKind::Deletion, &detail, "")
                            .await?;
                        group.deleted.push((b.meta.ulid, now / 1000));
                        group.report.marked_for_deletion += 1;
                        self.metrics.marked_deletion.fetch_add(1, Ordering::Relaxed);
                    }
                    if let Some(new) = new {
                        group.blocks.push(*new);
                    }
                }
                Step::Failed { blocks, reason } => {
                    for id in blocks {
                        self.mark(id, MarkerKind::NoCompact, &reason, "compaction-failed")
                            .await?;
                        group.no_compact.insert(id);
                        group.report.marked_no_compact.push((id, reason.clone()));
                        tracing::error!(block = %id, group = key, %reason, "compaction failed; the block is marked no-compact and the rest of the bucket goes on");
                    }
                }
            }
        }
    }

    /// One compaction step: download, merge, upload.
    async fn compact_step(
        &self,
        step: &[BucketBlock],
        key: &str,
        scratch: &Path,
    ) -> Result<Step, CompactorError> {
        let work = clean_dir(scratch)?;
        let started = std::time::Instant::now();
        let mut readers = Vec::with_capacity(step.len());
        for b in step {
            let id = b.meta.ulid;
            let dir = match download_block(&self.bucket, id, &work).await {
                Ok(d) => d,
                Err(DownloadError::Bucket(e)) => return Err(e.into()),
                Err(DownloadError::Local { path, source }) => {
                    return Err(CompactorError::Local {
                        op: "download into",
                        path,
                        source,
                    });
                }
            };
            match open_checked(&dir) {
                Ok(r) => readers.push(Arc::new(r)),
                Err(e) => {
                    return Ok(Step::Failed {
                        blocks: vec![id],
                        reason: format!("block does not read: {e}"),
                    });
                }
            }
        }
        let first = &step[0];
        let labels = self.group_labels(first);
        let mut thanos = first.thanos.clone();
        thanos.labels = labels.clone();
        thanos.source = source::COMPACTOR.to_owned();
        thanos.files.clear();
        thanos.segment_files.clear();
        let out = work.join("out");
        std::fs::create_dir_all(&out).map_err(|source| CompactorError::Local {
            op: "create",
            path: out.clone(),
            source,
        })?;
        let merged = {
            let (readers, out, value) = (readers.clone(), out.clone(), thanos.to_value());
            tokio::task::spawn_blocking(move || compact_blocks(&readers, &out, value))
                .await
                .map_err(|e| CompactorError::Local {
                    op: "merge blocks in",
                    path: work.clone(),
                    source: std::io::Error::other(e.to_string()),
                })?
        };
        drop(readers);
        let new = match merged {
            Ok(new) => new,
            Err(e @ (CompactError::Overlap { .. } | CompactError::Read(_))) => {
                return Ok(Step::Failed {
                    blocks: step.iter().map(|b| b.meta.ulid).collect(),
                    reason: error_chain(&e),
                });
            }
            Err(e @ CompactError::Write(_)) => {
                return Err(CompactorError::Local {
                    op: "write the compacted block in",
                    path: out,
                    source: std::io::Error::other(error_chain(&e)),
                });
            }
        };
        let Some(new) = new else {
            let _ = std::fs::remove_dir_all(&work);
            return Ok(Step::Done(None));
        };
        let opts = UploadOptions {
            labels,
            source: source::COMPACTOR.to_owned(),
            require_labels: false,
        };
        let meta =
            kiln_objstore::upload_block(&self.bucket, &out.join(new.to_string()), &opts).await?;
        let _ = std::fs::remove_dir_all(&work);
        tracing::info!(
            group = key,
            blocks = step.len(),
            new = %new,
            duration = ?started.elapsed(),
            "compacted blocks"
        );
        let thanos = kiln_objstore::ThanosMeta::of(&meta).unwrap_or_default();
        Ok(Step::Done(Some(Box::new(BucketBlock { meta, thanos }))))
    }

    fn downsample_due(&self, state: &BucketState, b: &BucketBlock) -> bool {
        let span = b.meta.max_time - b.meta.min_time;
        let Some(needed) = downsample_span(b.thanos.downsample.resolution) else {
            return false;
        };
        if span < needed || state.no_downsample.contains(&b.meta.ulid) {
            return false;
        }
        let Some(to) = next_resolution(b.thanos.downsample.resolution) else {
            return false;
        };
        let sources = sources_of(b);
        !state.blocks.iter().any(|o| {
            o.thanos.downsample.resolution == to
                && o.thanos.labels == b.thanos.labels
                && sources.is_subset(&sources_of(o))
        })
    }

    async fn mark(
        &self,
        id: Ulid,
        kind: MarkerKind,
        details: &str,
        reason: &str,
    ) -> Result<(), CompactorError> {
        mark_because(&self.bucket, id, kind, details, reason)
            .await
            .map_err(|source| CompactorError::Mark { block: id, source })?;
        if kind == MarkerKind::NoCompact {
            self.metrics
                .marked_no_compact
                .fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    async fn mark_deleted(
        &self,
        state: &mut BucketState,
        id: Ulid,
        details: &str,
        report: &mut PassReport,
        now_ms: i64,
    ) -> Result<(), CompactorError> {
        self.mark(id, MarkerKind::Deletion, details, "").await?;
        state.deletion.entry(id).or_insert(now_ms / 1000);
        report.marked_for_deletion += 1;
        self.metrics.marked_deletion.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Deletes a block: `meta.json` first (from then on readers see a partial block),
    /// then its other files, its deletion mark last.
    async fn delete_block(&self, id: Ulid) -> Result<(), CompactorError> {
        let meta = format!("{id}/meta.json");
        match self.bucket.delete(&meta).await {
            Ok(()) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
        let mark = format!("{id}/deletion-mark.json");
        for name in self.bucket.iter(&id.to_string(), true).await? {
            if name != mark {
                self.bucket.delete(&name).await?;
            }
        }
        self.bucket.delete(&mark).await?;
        tracing::info!(block = %id, "deleted a block marked for deletion");
        Ok(())
    }
}

/// One group's blocks and what compacting it did, merged into the pass's state after.
struct GroupState {
    blocks: Vec<BucketBlock>,
    no_compact: BTreeSet<Ulid>,
    /// Blocks marked for deletion, with the mark's time (Unix seconds).
    deleted: Vec<(Ulid, i64)>,
    report: PassReport,
}

impl PassReport {
    fn absorb(&mut self, other: PassReport) {
        self.compactions += other.compactions;
        self.vertical_compactions += other.vertical_compactions;
        self.marked_for_deletion += other.marked_for_deletion;
        self.marked_no_compact.extend(other.marked_no_compact);
    }
}

/// Empties (or creates) `dir`.
fn clean_dir(dir: &Path) -> Result<PathBuf, CompactorError> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|source| CompactorError::Local {
            op: "clean",
            path: dir.to_path_buf(),
            source,
        })?;
    }
    std::fs::create_dir_all(dir).map_err(|source| CompactorError::Local {
        op: "create",
        path: dir.to_path_buf(),
        source,
    })?;
    Ok(dir.to_path_buf())
}

enum Step {
    Done(Option<Box<BucketBlock>>),
    Failed { blocks: Vec<Ulid>, reason: String },
}

/// Opens a downloaded block and reads its whole index once, so a broken one is caught
/// before it is merged.
fn open_checked(dir: &Path) -> Result<BlockReader, BlockError> {
    let r = BlockReader::open(dir)?;
    r.index().check()?;
    Ok(r)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cur = c.source();
    }
    out
}

/// Why a block could not be downsampled in the bucket.
pub enum DownsampleFailure {
    /// The bucket failed: the pass stops.
    Bucket(CompactorError),
    /// The block's own problem (it does not read, a chunk does not decode).
    Block(String),
}

/// Downsamples `b` into a new block of the next resolution uploaded beside it (its
/// data downloaded into `scratch`); returns the new block, or `None` when nothing was
/// left to write.
pub async fn downsample_in_bucket(
    bucket: &Bucket,
    b: &BucketBlock,
    scratch: &Path,
) -> Result<Option<BucketBlock>, DownsampleFailure> {
    let id = b.meta.ulid;
    let from = b.thanos.downsample.resolution;
    let local = |op: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| DownsampleFailure::Bucket(CompactorError::Local { op, path, source })
    };
    let dir = match download_block(bucket, id, scratch).await {
        Ok(d) => d,
        Err(DownloadError::Bucket(e)) => return Err(DownsampleFailure::Bucket(e.into())),
        Err(DownloadError::Local { path, source }) => {
            return Err(DownsampleFailure::Bucket(CompactorError::Local {
                op: "download into",
                path,
                source,
            }));
        }
    };
    let reader = BlockReader::open(&dir).map_err(|e| DownsampleFailure::Block(error_chain(&e)))?;
    let Some(to) = next_resolution(from) else {
        return Ok(None);
    };
    let mut thanos = b.thanos.clone();
    thanos.downsample.resolution = to;
    thanos.source = source::COMPACTOR.to_owned();
    thanos.files.clear();
    thanos.segment_files.clear();
    let out = scratch.join("out");
    std::fs::create_dir_all(&out).map_err(local("create", &out))?;
    let made = {
        let (out, value) = (out.clone(), thanos.to_value());
        tokio::task::spawn_blocking(move || downsample_block(&reader, from, &out, value))
            .await
            .map_err(|e| DownsampleFailure::Block(format!("the downsampling task failed: {e}")))?
    };
    let made = match made {
        Ok(m) => m,
        Err(e @ (DownsampleError::Chunk { .. } | DownsampleError::Resolution { .. })) => {
            return Err(DownsampleFailure::Block(error_chain(&e)));
        }
        Err(e @ DownsampleError::Block { .. }) => {
            return Err(DownsampleFailure::Block(error_chain(&e)));
        }
    };
    let Some(new) = made.block else {
        return Ok(None);
    };
    let opts = UploadOptions {
        labels: b.thanos.labels.clone(),
        source: source::COMPACTOR.to_owned(),
        require_labels: false,
    };
    let meta = kiln_objstore::upload_block(bucket, &out.join(new.to_string()), &opts)
        .await
        .map_err(|e| DownsampleFailure::Bucket(e.into()))?;
    let _ = std::fs::remove_dir_all(scratch.join(id.to_string()));
    let _ = std::fs::remove_dir_all(&out);
    tracing::info!(block = %id, new = %new, resolution = to, "downsampled a block");
    let thanos = kiln_objstore::ThanosMeta::of(&meta).unwrap_or_default();
    Ok(Some(BucketBlock { meta, thanos }))
}
