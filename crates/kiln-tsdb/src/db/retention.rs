//! Retention: deleting the oldest blocks by time and by size.

use std::path::Path;

use tracing::info;

use super::compact::delete_block_dir;
use super::{Db, DbError};

impl Db {
    /// Deletes blocks past the retention time or beyond the size limit, oldest first.
    /// The newest block is never deleted by time. Returns how many were deleted.
    pub(crate) fn apply_retention(&self) -> Result<usize, DbError> {
        let blocks = self.blocks();
        let mut newest_first = blocks.clone();
        newest_first.reverse();
        let mut doomed: Vec<Option<Reason>> = vec![None; newest_first.len()];
        if let (Some(retention), Some(newest)) = (self.opts.retention_time, newest_first.first()) {
            let newest_max = newest.meta().max_time;
            for (i, b) in newest_first.iter().enumerate().skip(1) {
                // Prometheus: strictly more than the retention behind the newest block.
                if newest_max.saturating_sub(b.meta().max_time) > retention {
                    doomed[i] = Some(Reason::Time);
                }
            }
        }
        if let Some(limit) = self.opts.retention_size {
            let mut total =
                dir_size(&self.dir.join("wal")) + dir_size(&self.dir.join("chunks_head"));
            for (i, b) in newest_first.iter().enumerate() {
                total += dir_size(b.dir());
                if total > limit && doomed[i].is_none() {
                    doomed[i] = Some(Reason::Size);
                }
            }
        }
        let mut deleted = 0;
        for (b, reason) in newest_first
            .iter()
            .zip(&doomed)
            .filter_map(|(b, d)| d.map(|r| (b, r)))
        {
            self.blocks
                .write()
                .retain(|x| !std::sync::Arc::ptr_eq(x, b));
            let meta = b.meta();
            info!(
                block = %meta.ulid,
                mint = meta.min_time,
                maxt = meta.max_time,
                reason = reason.as_str(),
                "Deleting obsolete block"
            );
            delete_block_dir(b.dir())?;
            deleted += 1;
        }
        Ok(deleted)
    }

    /// Bytes used by the data directory's blocks, WAL and head chunks.
    pub fn disk_size(&self) -> u64 {
        dir_size(&self.dir)
    }
}

/// Why retention deletes a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reason {
    /// Its data is older than the retention time.
    Time,
    /// The data directory is over the retention size.
    Size,
}

impl Reason {
    fn as_str(self) -> &'static str {
        match self {
            Reason::Time => "time_retention",
            Reason::Size => "size_retention",
        }
    }
}

/// Total size of the files under `path` (0 when it does not exist).
pub(crate) fn dir_size(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            _ => e.metadata().map(|m| m.len()).unwrap_or(0),
        })
        .sum()
}
