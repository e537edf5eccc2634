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

/// Adds one series' chunks, `(min_time, max_time, encoding, data)`, to `out`,
/// re-encoding XOR chunks that overlap a deletion. Chunks in other encodings (native
/// histograms) pass through as stored.
fn add_chunks<'d>(
    out: &mut BTreeMap<Labels, Vec<EncodedChunk>>,
    labels: Labels,
    chunks: impl Iterator<Item = (Timestamp, Timestamp, u8, &'d [u8])>,
    deleted: &[Interval],
) {
    let xor = Encoding::Xor.as_u8();
    let entry = out.entry(labels).or_default();
    for (min_time, max_time, encoding, data) in chunks {
        let touched = deleted
            .iter()
            .any(|d| d.mint <= max_time && d.maxt >= min_time);
        if !touched || encoding != xor {
            entry.push(EncodedChunk {
                min_time,
                max_time,
                encoding,
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
            encoding: xor,
            data,
        }));
    }
}

/// Sorts a series' chunks by time and, when XOR chunks overlap (the same samples in the
/// head and a just-written block, or overlapping blocks), merges them into
/// non-overlapping chunks without duplicate samples.
fn dedupe_chunks(mut chunks: Vec<EncodedChunk>) -> Vec<EncodedChunk> {
    let xor = Encoding::Xor.as_u8();
    chunks.sort_by_key(|c| (c.min_time, c.max_time));
    let overlap = chunks
        .iter()
        .filter(|c| c.encoding == xor)
        .collect::<Vec<_>>()
        .windows(2)
        .any(|w| w[1].min_time <= w[0].max_time);
    if !overlap {
        return chunks;
    }
    let (xor_chunks, mut others): (Vec<EncodedChunk>, Vec<EncodedChunk>) =
        chunks.into_iter().partition(|c| c.encoding == xor);
    let views: Vec<(Timestamp, Timestamp, &[u8])> = xor_chunks
        .iter()
        .map(|c| (c.min_time, c.max_time, c.data.as_slice()))
        .collect();
    let mut merged: Vec<OwnedChunk> = Vec::new();
    reencode(&views, Timestamp::MIN, Timestamp::MAX, &[], &mut merged);
    others.extend(merged.into_iter().map(|(lo, hi, data)| EncodedChunk {
        min_time: lo,
        max_time: hi,
        encoding: xor,
        data,
    }));
    others.sort_by_key(|c| (c.min_time, c.max_time));
    others
}

impl DbChunkQuerier<'_> {
    fn collect(&self, matchers: &[Matcher]) -> Result<Vec<ChunkSeries>, StorageError> {
        let mut out: BTreeMap<Labels, Vec<EncodedChunk>> = BTreeMap::new();
        for b in &self.blocks {
            let q = BlockQuerier::new(b.clone(), self.mint, self.maxt);
            for s in q.series_chunks(matchers)? {
                add_chunks(
                    &mut out,
                    s.labels,
                    s.chunks.into_iter(),
                    b.tombstones().get(u64::from(s.id)),
                );
            }
        }
        let xor = Encoding::Xor.as_u8();
        for s in self.head.querier(self.mint, self.maxt).snapshot(matchers)? {
            let chunks = s
                .chunks
                .iter()
                .map(|c| (c.min_time, c.max_time, xor, c.data.as_ref()));
            add_chunks(&mut out, s.labels.clone(), chunks, &s.deleted);
        }
        Ok(out
            .into_iter()
            .filter(|(_, chunks)| !chunks.is_empty())
            .map(|(labels, chunks)| ChunkSeries {
                labels,
                chunks: dedupe_chunks(chunks),
            })
            .collect())
    }
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
