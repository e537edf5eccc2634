//! The clean-shutdown record: proof that every sample of the WAL is also in the head
//! chunk files, so the next open may skip replaying samples.
//!
//! [`super::Db::close`] writes `clean-shutdown` in the data directory after it wrote
//! every open chunk to `chunks_head/` and closed the WAL; the file holds the index and
//! length of the WAL's last segment at that moment. [`take`] reads and removes it on
//! open: it counts only if the WAL still ends exactly there (nothing was written after
//! the clean close, and nothing was lost). Anything else — no record, a damaged one, a
//! WAL that moved on, chunk files an earlier failure made the mapper discard — means a
//! full replay, the path every crash takes anyway.

use std::path::Path;

use super::DbError;
use crate::wal::segment::{segment_path, segment_range};

const FILE: &str = "clean-shutdown";

/// Where the WAL ends: last segment index and its length in bytes.
fn wal_end(dir: &Path) -> Result<Option<(u64, u64)>, DbError> {
    let wal = dir.join("wal");
    if !wal.is_dir() {
        return Ok(None);
    }
    let Some((_, last)) = segment_range(&wal)? else {
        return Ok(None);
    };
    let path = segment_path(&wal, last);
    let len = std::fs::metadata(&path)
        .map_err(|e| DbError::io("reading segment size", &path, e))?
        .len();
    Ok(Some((last, len)))
}

/// Records a clean shutdown of the database in `dir` (after the WAL was closed).
pub(super) fn record(dir: &Path) -> Result<(), DbError> {
    let Some((segment, len)) = wal_end(dir)? else {
        return Ok(());
    };
    let path = dir.join(FILE);
    let tmp = dir.join(format!("{FILE}.tmp"));
    std::fs::write(&tmp, format!("{segment} {len}\n"))
        .map_err(|e| DbError::io("writing clean-shutdown record", &tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| DbError::io("renaming", &tmp, e))
}

/// Whether the last close was clean and the WAL is as it left it. Removes the record
/// (unless `read_only`), so it counts for one open only.
pub(super) fn take(dir: &Path, read_only: bool) -> Result<bool, DbError> {
    let path = dir.join(FILE);
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(false);
    };
    if !read_only {
        std::fs::remove_file(&path).map_err(|e| DbError::io("removing", &path, e))?;
    }
    let mut nums = text.split_whitespace().map(str::parse::<u64>);
    let recorded = match (nums.next(), nums.next()) {
        (Some(Ok(segment)), Some(Ok(len))) => (segment, len),
        _ => return Ok(false),
    };
    Ok(wal_end(dir)? == Some(recorded))
}
