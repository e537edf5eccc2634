//! Compacting blocks of one group into one block: the series of every block merged in
//! label order, their chunks copied as stored (any encoding: raw XOR, native histograms,
//! downsampled aggregates), so a horizontal compaction neither decodes nor re-encodes.
//! Where blocks overlap in time (a vertical compaction: replicas deduplicated, or a
//! block written twice), XOR chunks that overlap are merged sample by sample, samples
//! at equal timestamps kept once; overlapping chunks of other encodings cannot be merged
//! and make the group fail (the caller marks the blocks no-compact). Deletions
//! (tombstones) are applied.
//!
//! Memory: the merge holds the list of every series of the group with references to
//! its chunks (labels and a few words per chunk); chunk data is read from the mapped
//! block files one series at a time.

use std::path::Path;
use std::sync::Arc;

use kiln_storage::ChunkQuerier;
use kiln_tsdb::block::{BlockError, BlockMeta, BlockReader, BlockWriter, FinishOptions};
use kiln_tsdb::db::DbChunkQuerier;
use ulid::Ulid;

/// Why a group could not be compacted.
#[derive(Debug, thiserror::Error)]
pub enum CompactError {
    #[error("writing the compacted block")]
    Write(#[source] BlockError),
    #[error("reading the blocks")]
    Read(#[source] kiln_storage::StorageError),
    /// Overlapping chunks that cannot be merged (not XOR): the blocks named overlap.
    #[error(
        "series {series}: chunks in encoding {encoding} overlap in time between the blocks; they cannot be merged"
    )]
    Overlap { series: String, encoding: u8 },
}

/// Merges `blocks` (one group: same external labels and resolution) into a new block
/// under `parent`, with `thanos` as its `thanos` section. Returns its ULID, or `None`
/// when no series had data left (everything deleted).
pub fn compact_blocks(
    blocks: &[Arc<BlockReader>],
    parent: &Path,
    thanos: serde_json::Value,
) -> Result<Option<Ulid>, CompactError> {
    let mint = blocks.iter().map(|b| b.meta().min_time).min().unwrap_or(0);
    let maxt = blocks.iter().map(|b| b.meta().max_time).max().unwrap_or(0);
    let querier = DbChunkQuerier::over_blocks(blocks.to_vec(), mint, maxt.saturating_sub(1));
    let mut set = querier.select_chunks(true, None, &[]);
    let mut writer = BlockWriter::create(parent, mint, maxt).map_err(CompactError::Write)?;
    let mut written = 0u64;
    while let Some(series) = set.next() {
        if let Some(pair) = series
            .chunks
            .windows(2)
            .find(|w| w[1].min_time <= w[0].max_time)
        {
            return Err(CompactError::Overlap {
                series: series.labels.to_string(),
                encoding: pair[1].encoding,
            });
        }
        let chunks: Vec<(i64, i64, u8, &[u8])> = series
            .chunks
            .iter()
            .map(|c| (c.min_time, c.max_time, c.encoding, c.data.as_slice()))
            .collect();
        writer
            .add_series(&series.labels, &chunks)
            .map_err(CompactError::Write)?;
        written += 1;
    }
    if let Some(e) = set.err() {
        return Err(CompactError::Read(e.clone()));
    }
    if written == 0 {
        return Ok(None);
    }
    let metas: Vec<&BlockMeta> = blocks.iter().map(|b| b.meta()).collect();
    writer
        .finish(FinishOptions {
            thanos: Some(thanos),
            ..FinishOptions::merged_from(&metas)
        })
        .map(Some)
        .map_err(CompactError::Write)
}
