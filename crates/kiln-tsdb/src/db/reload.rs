//! Reloading the block list while the database is open, so that blocks written into the
//! data directory by someone else (`kiln tsdb create-blocks-from`, promtool's backfill,
//! a block moved in by hand) are queried without a restart, and blocks removed by hand
//! stop being queried.
//!
//! Prometheus re-reads its data directory at every compaction cycle (`reloadBlocks`,
//! about once a minute); [`Db::compact`] does the same, and [`Db::reload_blocks`] can be
//! called more often because a scan that finds nothing new costs one directory listing.
//!
//! Rules of a scan:
//! - a directory named by a ULID that is not open yet is opened when its `meta.json`
//!   exists; one without `meta.json` is still being written or copied and is left for a
//!   later scan, as are directories with a suffix (`.tmp-for-creation`: a block writer
//!   at work, ours or promtool's);
//! - a new block that does not open (a truncated index, say) is reported once, listed
//!   among the skipped blocks and tried again at every scan, so a block whose copy was
//!   still running opens once it is complete;
//! - an open block whose directory is gone is dropped from the list (its files stay
//!   readable to queries already running, which hold it);
//! - a new block that overlaps open ones is merged with them by the next compaction
//!   (vertical compaction), as at start-up; until then queries merge them.
//!
//! The scan runs under the maintenance lock, so it never sees a directory that this
//! database's own compaction, retention or deletion is creating or removing.

use std::path::PathBuf;
use std::sync::Arc;

use tracing::{debug, info, warn};

use super::compact::go_time;
use super::{Db, DbError, DbMetrics, SkippedBlock};
use crate::block::BlockReader;
use crate::block::meta::META_FILENAME;

/// What one reload of the block list changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReloadStats {
    /// Blocks opened by this reload, oldest first.
    pub added: Vec<ulid::Ulid>,
    /// Blocks dropped because their directory is gone.
    pub removed: Vec<ulid::Ulid>,
}

impl ReloadStats {
    /// Whether the block list changed.
    pub fn changed(&self) -> bool {
        !self.added.is_empty() || !self.removed.is_empty()
    }
}

impl Db {
    /// Scans the data directory: opens new complete blocks and drops blocks whose
    /// directory was removed (see the module docs). Logs what changed.
    pub fn reload_blocks(&self) -> Result<ReloadStats, DbError> {
        let _m = self.maintenance.lock();
        self.reload_blocks_locked()
    }

    /// [`reload_blocks`](Self::reload_blocks) with the maintenance lock held.
    pub(super) fn reload_blocks_locked(&self) -> Result<ReloadStats, DbError> {
        let open: Vec<Arc<BlockReader>> = self.blocks();
        let candidates = self.new_block_dirs(&open)?;
        let mut added: Vec<Arc<BlockReader>> = Vec::new();
        for dir in candidates {
            if !dir.join(META_FILENAME).is_file() {
                debug!(block = %dir.display(), "block directory without meta.json; still being written?");
                continue;
            }
            match BlockReader::open(&dir) {
                Ok(b) => {
                    self.skipped.lock().retain(|s| s.dir != dir);
                    added.push(Arc::new(b));
                }
                Err(e) => self.note_unopenable(dir, e.to_string()),
            }
        }
        let gone: Vec<Arc<BlockReader>> = open
            .iter()
            .filter(|b| !b.dir().join(META_FILENAME).is_file())
            .cloned()
            .collect();
        let stats = ReloadStats {
            added: added.iter().map(|b| b.meta().ulid).collect(),
            removed: gone.iter().map(|b| b.meta().ulid).collect(),
        };
        if !stats.changed() {
            return Ok(stats);
        }
        DbMetrics::inc(&self.metrics.reloads);
        added.sort_by_key(|b| (b.meta().min_time, b.meta().max_time));
        let overlapping = added
            .iter()
            .filter(|n| {
                open.iter().chain(added.iter()).any(|o| {
                    !Arc::ptr_eq(o, n)
                        && o.meta().min_time < n.meta().max_time
                        && n.meta().min_time < o.meta().max_time
                })
            })
            .count();
        {
            let mut blocks = self.blocks.write();
            blocks.retain(|b| !gone.iter().any(|g| Arc::ptr_eq(b, g)));
            blocks.extend(added.iter().cloned());
            blocks.sort_by_key(|b| (b.meta().min_time, b.meta().max_time));
        }
        if let (Some(lo), Some(hi)) = (
            added.iter().map(|b| b.meta().min_time).min(),
            added.iter().map(|b| b.meta().max_time).max(),
        ) {
            info!(
                blocks = added.len(),
                ulids = %ulid_list(&stats.added),
                min_time = %go_time(lo),
                max_time = %go_time(hi),
                series = added.iter().map(|b| b.meta().stats.num_series).sum::<u64>(),
                samples = added.iter().map(|b| b.meta().stats.num_samples).sum::<u64>(),
                "New blocks found in the data directory are now queried"
            );
        }
        if overlapping > 0 {
            let next = if self.opts.allow_overlapping_compaction {
                "the next compaction merges them (vertical compaction)"
            } else {
                "queries merge them; overlapping compaction is off"
            };
            info!(
                blocks = overlapping,
                "New blocks overlap blocks already loaded; {next}"
            );
        }
        if !gone.is_empty() {
            warn!(
                blocks = gone.len(),
                ulids = %ulid_list(&stats.removed),
                "Block directories were removed from the data directory; their data is no longer queried"
            );
        }
        Ok(stats)
    }

    /// Directories under the data directory named by a ULID (no suffix) that are not
    /// open blocks, oldest ULID first.
    fn new_block_dirs(&self, open: &[Arc<BlockReader>]) -> Result<Vec<PathBuf>, DbError> {
        let entries =
            std::fs::read_dir(&self.dir).map_err(|e| DbError::io("listing", &self.dir, e))?;
        let mut found = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| DbError::io("listing", &self.dir, e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if ulid::Ulid::from_string(name).is_err() {
                continue;
            }
            let path = entry.path();
            if path.is_dir() && !open.iter().any(|b| b.dir() == path) {
                found.push(path);
            }
        }
        found.sort();
        Ok(found)
    }

    /// Records a new block directory that did not open; says so once per reason.
    fn note_unopenable(&self, dir: PathBuf, reason: String) {
        let mut skipped = self.skipped.lock();
        if skipped.iter().any(|s| s.dir == dir && s.reason == reason) {
            return;
        }
        warn!(
            block = %dir.display(),
            err = %reason,
            "New block directory does not open; trying again at the next scan"
        );
        skipped.retain(|s| s.dir != dir);
        skipped.push(SkippedBlock { dir, reason });
    }
}

/// ULIDs as a log field: `[01J... 01J...]`, like Prometheus.
fn ulid_list(ulids: &[ulid::Ulid]) -> String {
    let ids: Vec<String> = ulids.iter().map(ToString::to_string).collect();
    format!("[{}]", ids.join(" "))
}
