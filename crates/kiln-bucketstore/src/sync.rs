//! [`BlockSyncer`]: which blocks of the bucket the store serves, kept up to date.
//!
//! A sync is one recursive listing of the bucket (one paginated request however many
//! blocks there are): it shows which block directories hold a `meta.json` and which a
//! `deletion-mark.json`. Only blocks not seen before have their `meta.json` read, from
//! the local copy in `<data-dir>/<ULID>/meta.json` when a previous run left one, from
//! the bucket otherwise; a block's meta never changes, so a restart over a large bucket
//! reads almost nothing from it.
//!
//! Filters, as Thanos's store applies them:
//! - a directory without `meta.json` is an upload in progress (partial) and skipped;
//!   one whose `meta.json` does not read is counted as corrupt and skipped;
//! - `--min-time`/`--max-time`: blocks outside the range are not served;
//! - `--selector.relabel-config`: relabelling of a block's external labels, a block
//!   whose labels are dropped is not served;
//! - `--consistency-delay`: blocks younger than it (by ULID time) wait, so an upload by
//!   a producer whose files appear in stages is complete before it is read; blocks the
//!   compactor or a repair wrote are complete when visible and do not wait;
//! - `--ignore-deletion-marks-delay`: blocks marked for deletion longer ago than it are
//!   no longer served, so the compactor can delete them without queries failing.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use kiln_model::relabel::{RelabelConfig, relabel};
use kiln_objstore::Bucket;
use kiln_objstore::markers::Marker;
use kiln_objstore::thanos_meta::ThanosMeta;
use kiln_tsdb::block::BlockMeta;
use parking_lot::Mutex;
use ulid::Ulid;

use crate::block::StoreBlock;
use crate::cache::IndexCache;
use crate::error::StoreError;

/// `meta.json` and deletion marks read at once.
const FETCH_CONCURRENCY: usize = 32;
/// Sources of blocks that are complete when visible (no consistency delay).
const COMPLETE_SOURCES: &[&str] = &["compactor", "compactor.repair", "bucket.repair"];

/// Which blocks to serve (see the module docs).
#[derive(Debug, Clone)]
pub struct SyncOptions {
    /// Serve blocks overlapping `[min_time, max_time]` (ms) only.
    pub min_time: i64,
    pub max_time: i64,
    pub relabel: Vec<RelabelConfig>,
    pub consistency_delay: Duration,
    pub ignore_deletion_marks_delay: Duration,
}

impl Default for SyncOptions {
    fn default() -> Self {
        SyncOptions {
            min_time: i64::MIN,
            max_time: i64::MAX,
            relabel: Vec::new(),
            consistency_delay: Duration::ZERO,
            ignore_deletion_marks_delay: Duration::from_secs(24 * 3600),
        }
    }
}

/// What one sync found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SyncReport {
    /// Blocks served after the sync.
    pub loaded: usize,
    /// Blocks that became served, and that stopped being served.
    pub added: usize,
    pub dropped: usize,
    /// Block directories without `meta.json`.
    pub partial: usize,
    /// Blocks whose `meta.json` does not read, with the reason.
    pub corrupt: Vec<(Ulid, String)>,
    /// Blocks left out by the filters, by filter name.
    pub filtered: BTreeMap<&'static str, usize>,
}

/// Keeps the set of served blocks (see the module docs).
pub struct BlockSyncer {
    bucket: Bucket,
    data_dir: PathBuf,
    opts: SyncOptions,
    cache: Arc<IndexCache>,
    /// Every readable block seen, filtered or not, by ULID.
    known: Mutex<HashMap<Ulid, Known>>,
    /// Deletion times of marked blocks (Unix seconds), read once each.
    deletion_marks: Mutex<HashMap<Ulid, i64>>,
}

#[derive(Clone)]
enum Known {
    Block(Arc<StoreBlock>),
    Corrupt(String),
}

impl BlockSyncer {
    pub fn new(
        bucket: Bucket,
        data_dir: &Path,
        opts: SyncOptions,
        cache: Arc<IndexCache>,
    ) -> BlockSyncer {
        BlockSyncer {
            bucket,
            data_dir: data_dir.to_path_buf(),
            opts,
            cache,
            known: Mutex::new(HashMap::new()),
            deletion_marks: Mutex::new(HashMap::new()),
        }
    }

    /// Lists the bucket and returns the blocks to serve now, sorted by (min time, ULID),
    /// with what the sync found. `now_ms` is the wall clock (Unix ms).
    pub async fn sync(
        &self,
        now_ms: i64,
    ) -> Result<(Vec<Arc<StoreBlock>>, SyncReport), StoreError> {
        let mut with_meta = Vec::new();
        let mut marked = Vec::new();
        let mut dirs: BTreeMap<Ulid, bool> = BTreeMap::new();
        for name in self.bucket.iter("", true).await? {
            let Some((dir, rest)) = name.split_once('/') else {
                continue;
            };
            let Ok(id) = Ulid::from_string(dir) else {
                continue;
            };
            let has_meta = dirs.entry(id).or_insert(false);
            match rest {
                "meta.json" => {
                    *has_meta = true;
                    with_meta.push(id);
                }
                "deletion-mark.json" => marked.push(id),
                _ => {}
            }
        }
        let mut report = SyncReport {
            partial: dirs.values().filter(|has| !**has).count(),
            ..SyncReport::default()
        };

        // Metas of blocks not seen before.
        let new: Vec<Ulid> = {
            let known = self.known.lock();
            with_meta
                .iter()
                .copied()
                .filter(|id| !known.contains_key(id))
                .collect()
        };
        let reads: Vec<_> = new
            .into_iter()
            .map(|id| async move { (id, self.read_meta(id).await) })
            .collect();
        let mut fetched = futures_util::stream::iter(reads).buffer_unordered(FETCH_CONCURRENCY);
        let mut loaded = Vec::new();
        while let Some((id, result)) = fetched.next().await {
            match result {
                Ok(Some(entry)) => loaded.push((id, entry)),
                // Deleted between the listing and the read.
                Ok(None) => {}
                Err(e) => return Err(e),
            }
        }
        drop(fetched);
        {
            let mut known = self.known.lock();
            known.extend(loaded);
            known.retain(|id, entry| {
                let present = dirs.get(id).copied().unwrap_or(false);
                if !present && let Known::Block(b) = entry {
                    b.remove_local();
                }
                present
            });
        }

        // Deletion times of newly marked blocks.
        let unread: Vec<Ulid> = {
            let marks = self.deletion_marks.lock();
            marked
                .iter()
                .copied()
                .filter(|id| !marks.contains_key(id))
                .collect()
        };
        let mark_reads: Vec<_> = unread
            .into_iter()
            .map(|id| async move { (id, self.read_deletion_time(id).await) })
            .collect();
        let mut reads = futures_util::stream::iter(mark_reads).buffer_unordered(FETCH_CONCURRENCY);
        let mut times = Vec::new();
        while let Some((id, result)) = reads.next().await {
            if let Some(t) = result? {
                times.push((id, t));
            }
        }
        drop(reads);
        let marks: HashMap<Ulid, i64> = {
            let mut m = self.deletion_marks.lock();
            m.extend(times);
            m.retain(|id, _| marked.contains(id));
            m.clone()
        };

        let known: Vec<(Ulid, Known)> = self
            .known
            .lock()
            .iter()
            .map(|(k, v)| (*k, v.clone()))
            .collect();
        let mut served = Vec::new();
        for (id, entry) in known {
            let block = match entry {
                Known::Block(b) => b,
                Known::Corrupt(reason) => {
                    report.corrupt.push((id, reason));
                    continue;
                }
            };
            if let Some(filter) = self.filtered_by(&block, &marks, now_ms) {
                *report.filtered.entry(filter).or_default() += 1;
                continue;
            }
            served.push(block);
        }
        served.sort_by_key(|b| (b.meta.min_time, b.meta.ulid));
        report.corrupt.sort();
        report.loaded = served.len();
        Ok((served, report))
    }

    /// Which filter leaves `block` out, if one does.
    fn filtered_by(
        &self,
        block: &StoreBlock,
        marks: &HashMap<Ulid, i64>,
        now_ms: i64,
    ) -> Option<&'static str> {
        let m = &block.meta;
        if m.max_time <= self.opts.min_time || m.min_time > self.opts.max_time {
            return Some("time");
        }
        if !self.opts.relabel.is_empty() && relabel(&block.labels, &self.opts.relabel).is_none() {
            return Some("relabel");
        }
        let delay = self.opts.consistency_delay.as_millis() as i64;
        let created = i64::try_from(m.ulid.timestamp_ms()).unwrap_or(i64::MAX);
        if delay > 0
            && created > now_ms.saturating_sub(delay)
            && !COMPLETE_SOURCES.contains(&block.thanos.source.as_str())
        {
            return Some("consistency-delay");
        }
        if let Some(&deleted_s) = marks.get(&m.ulid) {
            let ignore = self.opts.ignore_deletion_marks_delay.as_millis() as i64;
            if now_ms.saturating_sub(deleted_s.saturating_mul(1000)) >= ignore {
                return Some("deletion-mark");
            }
        }
        None
    }

    /// Reads a block's meta (local copy first). `Ok(None)`: the block is gone.
    async fn read_meta(&self, id: Ulid) -> Result<Option<Known>, StoreError> {
        let local = self.data_dir.join(id.to_string()).join("meta.json");
        let bytes = match std::fs::read(&local) {
            Ok(b) => bytes::Bytes::from(b),
            Err(_) => match self.bucket.get(&format!("{id}/meta.json")).await {
                Ok(b) => b,
                Err(e) if e.is_not_found() => return Ok(None),
                Err(e) => return Err(e.into()),
            },
        };
        let parsed = BlockMeta::from_json(&bytes, &local)
            .map_err(|e| e.to_string())
            .and_then(|meta| {
                if meta.ulid != id {
                    return Err(format!("meta.json names block {}", meta.ulid));
                }
                let thanos = ThanosMeta::of(&meta).map_err(|e| format!("thanos section: {e}"))?;
                Ok((meta, thanos))
            });
        let (meta, thanos) = match parsed {
            Ok(p) => p,
            Err(reason) => {
                tracing::warn!(block = %id, %reason, "skipping a block whose meta.json does not read");
                // A bad local copy is dropped so the next sync reads the bucket's.
                let _ = std::fs::remove_file(&local);
                return Ok(Some(Known::Corrupt(reason)));
            }
        };
        if !local.exists() {
            // Best effort: without a local copy the next start reads the bucket again.
            let write = || -> std::io::Result<()> {
                std::fs::create_dir_all(local.parent().unwrap_or(&self.data_dir))?;
                let tmp = local.with_extension("tmp");
                std::fs::write(&tmp, &bytes)?;
                std::fs::rename(&tmp, &local)
            };
            if let Err(e) = write() {
                tracing::warn!(block = %id, error = %e, "could not keep a local copy of meta.json");
            }
        }
        Ok(Some(Known::Block(Arc::new(StoreBlock::new(
            meta,
            thanos,
            &self.data_dir,
            self.bucket.clone(),
            self.cache.clone(),
        )))))
    }

    /// A deletion mark's time (Unix seconds); `None` when the mark vanished or does
    /// not read (then the block stays served: a bad mark never hides data).
    async fn read_deletion_time(&self, id: Ulid) -> Result<Option<i64>, StoreError> {
        match self.bucket.get(&format!("{id}/deletion-mark.json")).await {
            Ok(bytes) => Ok(serde_json::from_slice::<Marker>(&bytes)
                .ok()
                .and_then(|m| m.deletion_time)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes local directories of blocks that are not in `keep` (blocks deleted from
    /// the bucket, or left from another bucket).
    pub fn remove_stale_local(&self, keep: &[Arc<StoreBlock>]) {
        let Ok(entries) = std::fs::read_dir(&self.data_dir) else {
            return;
        };
        let known = self.known.lock();
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(id) = name.to_str().and_then(|n| Ulid::from_string(n).ok()) else {
                continue;
            };
            if !known.contains_key(&id) && !keep.iter().any(|b| b.id() == id) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}
