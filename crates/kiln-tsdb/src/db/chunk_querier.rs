//! Reading encoded chunks (for remote read, store gateways and downsampling).

use std::collections::BTreeMap;
use std::sync::Arc;

use kiln_chunkenc::Encoding;
use kiln_model::{Labels, Matcher, Timestamp};
use kiln_storage::{
    ChunkQuerier, ChunkSeries, ChunkSeriesSet, EncodedChunk, SelectHints, StorageError,
};

use super::Db;
use super::compact::{OwnedChunk, reencode};
use super::querier::BlockQuerier;
use crate::block::{BlockReader, Interval};
use crate::head::Head;

/// A chunk querier over a [`Db`]'s blocks and head for `[mint, maxt]`.
///
/// Chunks are returned whole, as stored, when they overlap the range, so they may hold
/// samples outside it (callers clip, as with Prometheus's remote read). A chunk that
/// holds deleted samples is re-encoded without them.
pub struct DbChunkQuerier<'a> {
    blocks: Vec<Arc<BlockReader>>,
    head: &'a Head,
    mint: Timestamp,
    maxt: Timestamp,
}

impl Db {
    /// A chunk querier over `[mint, maxt]`.
    pub fn chunk_querier(&self, mint: Timestamp, maxt: Timestamp) -> DbChunkQuerier<'_> {
        let blocks = self
            .blocks()
            .into_iter()
            .filter(|b| b.meta().max_time > mint && b.meta().min_time <= maxt)
            .collect();
        DbChunkQuerier {
            blocks,
            head: &self.head,
            mint,
            maxt,
        }
    }
}

/// Adds one series' chunks to `out`, re-encoding those that overlap a deletion.
fn add_chunks<'d>(
    out: &mut BTreeMap<Labels, Vec<EncodedChunk>>,
    labels: Labels,
    chunks: impl Iterator<Item = (Timestamp, Timestamp, &'d [u8])>,
    deleted: &[Interval],
) {
    let entry = out.entry(labels).or_default();
    for (min_time, max_time, data) in chunks {
        let touched = deleted
            .iter()
            .any(|d| d.mint <= max_time && d.maxt >= min_time);
        if !touched {
            entry.push(EncodedChunk {
                min_time,
                max_time,
                encoding: Encoding::Xor.as_u8(),
                data: data.to_vec(),
            });
            continue;
        }
        let mut kept: Vec<OwnedChunk> = Vec::new();
        reencode(
            &[(min_time, max_time, data)],
            Timestamp::MIN,
            Timestamp::MAX,
            deleted,
            &mut kept,
        );
        entry.extend(kept.into_iter().map(|(lo, hi, data)| EncodedChunk {
            min_time: lo,
            max_time: hi,
            encoding: Encoding::Xor.as_u8(),
            data,
        }));
    }
}

impl DbChunkQuerier<'_> {
    fn collect(&self, matchers: &[Matcher]) -> Result<Vec<ChunkSeries>, StorageError> {
        let mut out: BTreeMap<Labels, Vec<EncodedChunk>> = BTreeMap::new();
        for b in &self.blocks {
            let q = BlockQuerier::new(b.clone(), self.mint, self.maxt);
            let index = b.index();
            for id in q.postings_for(matchers)? {
                let (labels, metas) = index.series(id).map_err(|e| block_read_error(b, e))?;
                let mut chunks = Vec::with_capacity(metas.len());
                for m in metas
                    .iter()
                    .filter(|m| m.max_time >= self.mint && m.min_time <= self.maxt)
                {
                    let (_, data) = b
                        .chunks()
                        .chunk(m.chunk_ref)
                        .map_err(|e| block_read_error(b, e))?;
                    chunks.push((m.min_time, m.max_time, data));
                }
                if !chunks.is_empty() {
                    add_chunks(
                        &mut out,
                        labels,
                        chunks.into_iter(),
                        b.tombstones().get(u64::from(id)),
                    );
                }
            }
        }
        for s in self.head.querier(self.mint, self.maxt).snapshot(matchers)? {
            let chunks = s
                .chunks
                .iter()
                .map(|c| (c.min_time, c.max_time, c.data.as_ref()));
            add_chunks(&mut out, s.labels.clone(), chunks, &s.deleted);
        }
        Ok(out
            .into_iter()
            .filter(|(_, chunks)| !chunks.is_empty())
            .map(|(labels, mut chunks)| {
                chunks.sort_by_key(|c| (c.min_time, c.max_time));
                ChunkSeries { labels, chunks }
            })
            .collect())
    }
}

fn block_read_error(b: &BlockReader, e: crate::block::BlockError) -> StorageError {
    StorageError::backend(
        kiln_storage::ErrorKind::Internal,
        format!("reading block {}", b.dir().display()),
        e,
    )
}

/// A chunk series set over an owned list.
struct VecChunkSeriesSet {
    series: std::vec::IntoIter<ChunkSeries>,
    err: Option<StorageError>,
}

impl ChunkSeriesSet for VecChunkSeriesSet {
    fn next(&mut self) -> Option<ChunkSeries> {
        self.series.next()
    }

    fn err(&self) -> Option<&StorageError> {
        self.err.as_ref()
    }

    fn warnings(&self) -> Vec<String> {
        Vec::new()
    }
}

impl ChunkQuerier for DbChunkQuerier<'_> {
    fn select_chunks<'a>(
        &'a self,
        _sorted: bool,
        _hints: Option<&SelectHints>,
        matchers: &[Matcher],
    ) -> Box<dyn ChunkSeriesSet + 'a> {
        match self.collect(matchers) {
            Ok(series) => Box::new(VecChunkSeriesSet {
                series: series.into_iter(),
                err: None,
            }),
            Err(e) => Box::new(VecChunkSeriesSet {
                series: Vec::new().into_iter(),
                err: Some(e),
            }),
        }
    }
}
