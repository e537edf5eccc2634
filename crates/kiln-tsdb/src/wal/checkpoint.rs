//! Checkpoints: a compacted copy of a WAL prefix, so old segments can be deleted.
//!
//! `checkpoint.NNNNNNNN` (eight digits, the last segment it covers) is itself a segment
//! directory (`00000000`, ...) holding series, samples and tombstones records. Replay
//! reads the last checkpoint, then the WAL segments after its index.
//!
//! [`checkpoint`] writes into `checkpoint.NNNNNNNN.tmp`, fsyncs it, renames it into place,
//! fsyncs the WAL directory, and deletes older checkpoints. The caller then calls
//! [`super::Wal::truncate`]`(to + 1)`. A crash at any point leaves either the old or the
//! new checkpoint complete; a leftover `.tmp` is removed by the next checkpoint.

use std::fs;
use std::path::{Path, PathBuf};

use super::error::{Compression, Result, WalError};
use super::reader::WalReader;
use super::record::{
    DecodedRecord, RecordDecoder, RecordType, encode_samples, encode_series, encode_tombstones,
};
use super::segment::{list_segments, sync_dir};
use super::writer::{Wal, WalOptions};

/// Prefix of checkpoint directory names.
pub const CHECKPOINT_PREFIX: &str = "checkpoint.";

/// Records are written to the checkpoint in batches of about this many bytes.
const BATCH_BYTES: usize = 1 << 20;

/// What a checkpoint kept and dropped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CheckpointStats {
    pub total_series: u64,
    pub dropped_series: u64,
    pub total_samples: u64,
    pub dropped_samples: u64,
    pub total_tombstones: u64,
    pub dropped_tombstones: u64,
    /// Records of types Kiln does not decode (exemplars, metadata, histograms, unknown),
    /// which are not carried into the checkpoint.
    pub skipped_records: u64,
}

/// The name of checkpoint `index`: `checkpoint.` and eight zero-padded digits.
pub fn checkpoint_name(index: u64) -> String {
    format!("{CHECKPOINT_PREFIX}{index:08}")
}

/// Parses a checkpoint directory name; `None` for others (including `*.tmp`).
fn parse_checkpoint_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix(CHECKPOINT_PREFIX)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The checkpoints in `dir`, by index.
pub fn list_checkpoints(dir: &Path) -> Result<Vec<(PathBuf, u64)>> {
    let entries = fs::read_dir(dir).map_err(|e| WalError::io("list directory", dir, e))?;
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| WalError::io("list directory", dir, e))?;
        let name = entry.file_name();
        let Some(index) = name.to_str().and_then(parse_checkpoint_name) else {
            continue;
        };
        let path = entry.path();
        let ft = entry
            .file_type()
            .map_err(|e| WalError::io("stat", &path, e))?;
        if !ft.is_dir() {
            return Err(WalError::CheckpointNotDir { path });
        }
        out.push((path, index));
    }
    out.sort_by_key(|c| c.1);
    Ok(out)
}

/// The newest checkpoint in `dir` and its index, if any.
pub fn last_checkpoint(dir: &Path) -> Result<Option<(PathBuf, u64)>> {
    Ok(list_checkpoints(dir)?.pop())
}

/// Deletes the checkpoints in `dir` whose index is below `below`.
pub fn delete_checkpoints(dir: &Path, below: u64) -> Result<()> {
    let mut removed = false;
    for (path, index) in list_checkpoints(dir)? {
        if index < below {
            fs::remove_dir_all(&path).map_err(|e| WalError::io("remove checkpoint", &path, e))?;
            removed = true;
        }
    }
    if removed {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Removes the temporary checkpoint directory unless disarmed.
struct TmpGuard(Option<PathBuf>);

impl Drop for TmpGuard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = fs::remove_dir_all(p);
        }
    }
}

/// Writes `checkpoint.<to>` from the last checkpoint (if any) and WAL segments
/// `from..=to` of `wal_dir`, keeping:
/// - series records of series for which `keep(id)` is true;
/// - samples with `t >= mint` of kept series;
/// - tombstones of kept series whose `maxt >= mint`.
///
/// Differences from Prometheus: it also drops samples and tombstones of series not kept
/// (Prometheus filters those only by time; the head ignores them on replay anyway), and
/// it does not carry exemplars, metadata or histogram records (counted in
/// `skipped_records`).
///
/// If a checkpoint `checkpoint.K` exists, reading starts at segment `K + 1` whatever
/// `from` is, and `from > K + 1` is an error (segments would be lost). `to == K` does
/// nothing (that checkpoint exists: all-zero stats); `to < K` is an error. Corruption while
/// reading fails the checkpoint: it must not be repaired at this point, because the
/// head has already replayed the records.
///
/// The checkpoint's records are compressed with `compression`, as the WAL's are.
pub fn checkpoint(
    wal_dir: &Path,
    from: u64,
    to: u64,
    keep: impl Fn(u64) -> bool,
    mint: i64,
    compression: Compression,
) -> Result<CheckpointStats> {
    let mut sources = Vec::new();
    let mut from = from;
    if let Some((cp_dir, idx)) = last_checkpoint(wal_dir)? {
        if to == idx {
            // Already written (a crash came between the rename and the truncation).
            return Ok(CheckpointStats::default());
        }
        if to < idx {
            return Err(WalError::CheckpointStale {
                dir: wal_dir.to_path_buf(),
                to,
                last: idx,
            });
        }
        let next = idx + 1;
        if from > next {
            return Err(WalError::CheckpointGap {
                dir: wal_dir.to_path_buf(),
                from,
                last: idx,
            });
        }
        from = next;
        sources.extend(list_segments(&cp_dir)?);
    }
    let segs = list_segments(wal_dir)?;
    if from <= to {
        for bound in [from, to] {
            if !segs.iter().any(|s| s.index == bound) {
                return Err(WalError::MissingSegment {
                    dir: wal_dir.to_path_buf(),
                    segment: bound,
                });
            }
        }
    }
    sources.extend(
        segs.into_iter()
            .filter(|s| s.index >= from && s.index <= to),
    );

    let final_dir = wal_dir.join(checkpoint_name(to));
    let tmp_dir = wal_dir.join(format!("{}.tmp", checkpoint_name(to)));
    match fs::remove_dir_all(&tmp_dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(WalError::io("remove stale checkpoint", &tmp_dir, e)),
    }
    fs::create_dir_all(&tmp_dir).map_err(|e| WalError::io("create checkpoint", &tmp_dir, e))?;
    let mut guard = TmpGuard(Some(tmp_dir.clone()));

    let stats = write_checkpoint(
        WalReader::from_files(sources),
        &tmp_dir,
        &keep,
        mint,
        compression,
    )?;
    sync_dir(&tmp_dir)?;

    if final_dir.exists() {
        fs::remove_dir_all(&final_dir)
            .map_err(|e| WalError::io("remove checkpoint", &final_dir, e))?;
    }
    fs::rename(&tmp_dir, &final_dir).map_err(|e| WalError::io("rename checkpoint", &tmp_dir, e))?;
    guard.0 = None;
    sync_dir(wal_dir)?;
    delete_checkpoints(wal_dir, to)?;
    Ok(stats)
}

fn write_checkpoint(
    mut reader: WalReader,
    tmp_dir: &Path,
    keep: &impl Fn(u64) -> bool,
    mint: i64,
    compression: Compression,
) -> Result<CheckpointStats> {
    let mut stats = CheckpointStats::default();
    let opts = WalOptions {
        compression,
        ..WalOptions::default()
    };
    let mut cp = Wal::open(tmp_dir, opts)?;
    let mut dec = RecordDecoder::new();
    let mut d = DecodedRecord::default();
    // Encoded records of the current batch, back to back, and where each ends.
    let mut buf: Vec<u8> = Vec::new();
    let mut ends: Vec<usize> = Vec::new();

    while let Some(rec) = reader.next_record()? {
        let typ = match dec.decode(rec, &mut d) {
            Ok(t) => t,
            Err(e) => return Err(reader.record_corruption(e)),
        };
        let start = buf.len();
        match typ {
            RecordType::Series => {
                let total = d.series.len() as u64;
                d.series.retain(|s| keep(s.id));
                stats.total_series += total;
                stats.dropped_series += total - d.series.len() as u64;
                if !d.series.is_empty() {
                    encode_series(&d.series, &mut buf);
                }
            }
            RecordType::Samples => {
                let total = d.samples.len() as u64;
                d.samples.retain(|s| s.t >= mint && keep(s.id));
                stats.total_samples += total;
                stats.dropped_samples += total - d.samples.len() as u64;
                if !d.samples.is_empty() {
                    encode_samples(&d.samples, &mut buf);
                }
            }
            RecordType::Tombstones => {
                let total = d.tombstones.len() as u64;
                d.tombstones.retain(|s| s.maxt >= mint && keep(s.id));
                stats.total_tombstones += total;
                stats.dropped_tombstones += total - d.tombstones.len() as u64;
                if !d.tombstones.is_empty() {
                    encode_tombstones(&d.tombstones, &mut buf);
                }
            }
            _ => stats.skipped_records += 1,
        }
        if buf.len() > start {
            ends.push(buf.len());
        }
        if buf.len() >= BATCH_BYTES {
            flush_batch(&mut cp, &mut buf, &mut ends)?;
        }
    }
    flush_batch(&mut cp, &mut buf, &mut ends)?;
    cp.close()?;
    Ok(stats)
}

fn flush_batch(cp: &mut Wal, buf: &mut Vec<u8>, ends: &mut Vec<usize>) -> Result<()> {
    let mut start = 0;
    let mut recs: Vec<&[u8]> = Vec::with_capacity(ends.len());
    for &end in ends.iter() {
        recs.push(&buf[start..end]);
        start = end;
    }
    cp.log(&recs)?;
    buf.clear();
    ends.clear();
    Ok(())
}
