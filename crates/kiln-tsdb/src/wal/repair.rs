//! Repair after corruption: drop the damaged record and everything after it.
//!
//! Given a [`CorruptionError`] in segment N at offset O, [`repair`]:
//! 1. deletes every segment after N (records may depend on earlier ones, so nothing past
//!    the damage is trusted, as in Prometheus);
//! 2. re-reads segment N from its start and finds the end E of the last intact record
//!    that ends at or before O;
//! 3. truncates segment N to E and zero-fills it to the next page boundary, so it ends
//!    on a clean page, then fsyncs it and the directory.
//!
//! Prometheus instead rewrites the intact records into a fresh segment; both give a valid
//! segment holding the same records. Corruption in a checkpoint cannot be repaired (its
//! records stand for segments that are gone).

use std::fs::OpenOptions;
use std::path::Path;

use super::error::{CorruptionError, Result, WalError};
use super::reader::WalReader;
use super::segment::{PAGE_SIZE, SegmentRef, list_segments, sync_dir};
use super::writer::Wal;

/// What [`repair`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepairStats {
    /// The segment that was cut short.
    pub segment: u64,
    /// Intact records kept in it.
    pub kept_records: u64,
    /// Its new length of valid data (before zero padding to the page end).
    pub truncated_at: u64,
    /// Segments deleted because they followed the damaged one.
    pub deleted_segments: Vec<u64>,
}

/// Repairs the WAL in `dir` after `err` was read from it. No [`Wal`] writer may be open
/// on `dir` (use [`Wal::repair`] for an open one).
pub fn repair(dir: &Path, err: &CorruptionError) -> Result<RepairStats> {
    let not_repairable = |reason| WalError::NotRepairable {
        dir: dir.to_path_buf(),
        reason,
        corruption: Box::new(err.clone()),
    };
    match &err.location.dir {
        None => return Err(not_repairable("the corruption is not in a segment file")),
        Some(d) if !same_dir(d, dir) => {
            return Err(not_repairable(
                "the corruption is in another directory (a checkpoint?)",
            ));
        }
        Some(_) => {}
    }
    let n = err.location.segment;
    let segs = list_segments(dir)?;
    let Some(damaged) = segs.iter().find(|s| s.index == n).cloned() else {
        return Err(WalError::MissingSegment {
            dir: dir.to_path_buf(),
            segment: n,
        });
    };

    let mut deleted = Vec::new();
    for s in segs.iter().rev().filter(|s| s.index > n) {
        std::fs::remove_file(&s.path).map_err(|e| WalError::io("remove segment", &s.path, e))?;
        deleted.push(s.index);
    }
    deleted.reverse();

    let (kept_records, end) = intact_prefix(&damaged, err.offset)?;
    tracing::warn!(
        dir = %dir.display(), segment = n, offset = err.offset, truncated_at = end,
        kept_records, deleted_segments = deleted.len(), "repairing WAL corruption: {}", err.reason
    );

    let file = OpenOptions::new()
        .write(true)
        .open(&damaged.path)
        .map_err(|e| WalError::io("open segment for repair", &damaged.path, e))?;
    let padded = end.next_multiple_of(PAGE_SIZE as u64);
    // Shrinking drops the damage; growing again fills the page's rest with zeros.
    file.set_len(end)
        .map_err(|e| WalError::io("truncate segment", &damaged.path, e))?;
    file.set_len(padded)
        .map_err(|e| WalError::io("pad segment", &damaged.path, e))?;
    file.sync_all()
        .map_err(|e| WalError::io("fsync segment", &damaged.path, e))?;
    sync_dir(dir)?;

    Ok(RepairStats {
        segment: n,
        kept_records,
        truncated_at: end,
        deleted_segments: deleted,
    })
}

/// Counts the intact records of a segment that end at or before `limit` and returns
/// that count and the end offset of the last of them.
fn intact_prefix(seg: &SegmentRef, limit: u64) -> Result<(u64, u64)> {
    let mut r = WalReader::from_files(vec![seg.clone()]);
    let mut count = 0;
    let mut end = 0;
    loop {
        match r.next_raw() {
            Ok(Some(_)) => {}
            Ok(None) => break,
            // Unreadable from here on: keep what came before.
            Err(e) if e.is_corruption() => break,
            Err(e) => return Err(e),
        }
        let Some(pos) = r.last_position() else { break };
        if pos.end > limit {
            break;
        }
        count += 1;
        end = pos.end;
    }
    Ok((count, end))
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

impl Wal {
    /// Repairs the WAL this writer is open on (see [`repair`]) and reopens it: the active
    /// segment is closed (deleted if it follows the damage) and writing continues in a new
    /// segment after the repaired one, as Prometheus does.
    pub fn repair(self, err: &CorruptionError) -> Result<(Wal, RepairStats)> {
        let dir = self.dir.clone();
        let opts = self.opts;
        drop(self);
        let stats = repair(&dir, err)?;
        let wal = Wal::open(&dir, opts)?;
        Ok((wal, stats))
    }
}
