//! Downsampling a block: every series of a raw block to 5m aggregate chunks, or of a 5m
//! block to 1h ones (`kiln_chunkenc::downsample`), written as a new block with the same
//! time range, series and labels, as Thanos's compactor writes downsampled blocks.
//!
//! One series is read, downsampled and written at a time, so memory follows the largest
//! series, not the block. Chunks in encodings that cannot be downsampled (native
//! histograms) are left out and counted.

use std::path::Path;

use kiln_chunkenc::aggr::AGGR_ENCODING;
use kiln_chunkenc::downsample::{RES_1H, RES_5M, downsample_aggr, downsample_raw};
use kiln_chunkenc::{ChunkError, XorIterator};
use kiln_tsdb::block::{BlockError, BlockReader, BlockWriter, ENCODING_XOR, FinishOptions};
use ulid::Ulid;

/// Why a block could not be downsampled.
#[derive(Debug, thiserror::Error)]
pub enum DownsampleError {
    #[error("block {block}: resolution {from} ms cannot be downsampled further (0 and 300000 can)")]
    Resolution { block: Ulid, from: i64 },
    #[error("block {block}")]
    Block {
        block: Ulid,
        #[source]
        source: BlockError,
    },
    #[error("block {block}: a chunk of {series} does not decode")]
    Chunk {
        block: Ulid,
        series: String,
        #[source]
        source: ChunkError,
    },
}

/// What a downsampling wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Downsampled {
    /// The new block; `None` when no series had samples to keep.
    pub block: Option<Ulid>,
    pub resolution: i64,
    /// Chunks left out for their encoding.
    pub skipped_chunks: u64,
}

/// The resolution a block of resolution `from` is downsampled to.
pub fn next_resolution(from: i64) -> Option<i64> {
    match from {
        0 => Some(RES_5M),
        RES_5M => Some(RES_1H),
        _ => None,
    }
}

/// Downsamples `src` (of resolution `from`: 0 or 5m) into a new block under `parent`.
/// `thanos` becomes the new block's `thanos` section as given: the caller sets its
/// labels, source and `downsample.resolution`.
pub fn downsample_block(
    src: &BlockReader,
    from: i64,
    parent: &Path,
    thanos: serde_json::Value,
) -> Result<Downsampled, DownsampleError> {
    let meta = src.meta();
    let id = meta.ulid;
    let to = next_resolution(from).ok_or(DownsampleError::Resolution { block: id, from })?;
    let block_err = |source| DownsampleError::Block { block: id, source };
    let index = src.index();
    let chunks = src.chunks();
    let mut writer =
        BlockWriter::create(parent, meta.min_time, meta.max_time).map_err(block_err)?;
    let mut skipped = 0u64;
    let mut written = 0u64;
    let mut raw: Vec<(i64, f64)> = Vec::new();
    for series_ref in index.all_postings().map_err(block_err)?.into_vec() {
        let (labels, metas) = index.series(series_ref).map_err(block_err)?;
        let chunk_err = |source| DownsampleError::Chunk {
            block: id,
            series: labels.to_string(),
            source,
        };
        let aggregated = if from == 0 {
            raw.clear();
            for m in &metas {
                let (encoding, data) = chunks.chunk(m.chunk_ref).map_err(block_err)?;
                if encoding != ENCODING_XOR {
                    skipped += 1;
                    continue;
                }
                let mut it = XorIterator::new(data);
                while it.next() {
                    raw.push(it.at());
                }
                if let Some(e) = it.err() {
                    return Err(chunk_err(e.clone()));
                }
            }
            downsample_raw(&raw, to)
        } else {
            let mut datas: Vec<&[u8]> = Vec::with_capacity(metas.len());
            for m in &metas {
                let (encoding, data) = chunks.chunk(m.chunk_ref).map_err(block_err)?;
                if encoding == AGGR_ENCODING {
                    datas.push(data);
                } else {
                    skipped += 1;
                }
            }
            if datas.is_empty() {
                Vec::new()
            } else {
                let (lo, hi) = (metas[0].min_time, metas[metas.len() - 1].max_time);
                downsample_aggr(&datas, lo, hi, from, to).map_err(chunk_err)?
            }
        };
        if aggregated.is_empty() {
            continue;
        }
        let out: Vec<(i64, i64, u8, &[u8])> = aggregated
            .iter()
            .map(|c| (c.min_time, c.max_time, AGGR_ENCODING, c.data.as_slice()))
            .collect();
        writer.add_series(&labels, &out).map_err(block_err)?;
        written += 1;
    }
    if written == 0 {
        return Ok(Downsampled {
            block: None,
            resolution: to,
            skipped_chunks: skipped,
        });
    }
    let new = writer
        .finish(FinishOptions {
            level: meta.compaction.level,
            sources: meta.compaction.sources.clone(),
            parents: Vec::new(),
            hints: Vec::new(),
            thanos: Some(thanos),
        })
        .map_err(block_err)?;
    Ok(Downsampled {
        block: Some(new),
        resolution: to,
        skipped_chunks: skipped,
    })
}
