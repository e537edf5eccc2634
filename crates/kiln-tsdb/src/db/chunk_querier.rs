//! Reading encoded chunks (for remote read, the StoreAPI, store gateways and downsampling).
//!
//! A selection is answered as a stream: the head and every block in range each list the
//! matching series with references to their chunks (in label order: a block's index
//! order, the head sorted by labels), and the stream merges those lists, copying one
//! series' chunk bytes at a time as the caller asks for it. The memory a selection
//! holds is the lists of references (labels are shared, a chunk reference is a few
//! words), not the chunk data of the answer.

use kiln_chunkenc::Encoding;
use kiln_model::{Labels, Matcher, Timestamp};
use kiln_storage::{
    ChunkQuerier, ChunkQueryable, ChunkSeries, ChunkSeriesSet, EncodedChunk, Querier, SelectHints,
    StorageError, VecChunkSeriesSet,
};

use super::Db;
use super::compact::{OwnedChunk, merge_xor, reencode};
use super::querier::BlockQuerier;
use crate::block::Interval;
use crate::head::series::HeadChunkData;

/// A chunk querier over a [`Db`]'s blocks and head for `[mint, maxt]`.
///
/// Chunks are returned whole, as stored, when they overlap the range, so they may hold
/// samples outside it (callers clip, as with Prometheus's remote read). A chunk that
/// holds deleted samples is re-encoded without them.
pub struct DbChunkQuerier<'a> {
    /// The database whose head is read too; `None` for a querier over blocks alone.
    db: Option<&'a Db>,
    blocks: Vec<BlockQuerier>,
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
            .map(|b| BlockQuerier::new(b, mint, maxt))
            .collect();
        DbChunkQuerier {
            db: Some(self),
            blocks,
            mint,
            maxt,
        }
    }
}

impl DbChunkQuerier<'static> {
    /// A chunk querier over `blocks` alone (no head), e.g. blocks a compactor merges:
    /// the same merged, label-ordered stream, deletions applied, overlaps merged.
    pub fn over_blocks(
        blocks: Vec<std::sync::Arc<crate::block::BlockReader>>,
        mint: Timestamp,
        maxt: Timestamp,
    ) -> DbChunkQuerier<'static> {
        DbChunkQuerier {
            db: None,
            blocks: blocks
                .into_iter()
                .filter(|b| b.meta().max_time > mint && b.meta().min_time <= maxt)
                .map(|b| BlockQuerier::new(b, mint, maxt))
                .collect(),
            mint,
            maxt,
        }
    }
}

impl ChunkQueryable for Db {
    fn chunk_querier(
        &self,
        mint: Timestamp,
        maxt: Timestamp,
    ) -> Result<Box<dyn ChunkQuerier + '_>, StorageError> {
        Ok(Box::new(Db::chunk_querier(self, mint, maxt)))
    }
}

/// Where a listed chunk's bytes are: a block's mapped files or the head.
enum ChunkBytes<'a> {
    Block(&'a [u8]),
    Head(HeadChunkData),
}

impl AsRef<[u8]> for ChunkBytes<'_> {
    fn as_ref(&self) -> &[u8] {
        match self {
            ChunkBytes::Block(b) => b,
            ChunkBytes::Head(h) => h.as_ref(),
        }
    }
}

/// One source's entry for a series: its chunks in range `(min_time, max_time, encoding,
/// bytes)` and the source's deletions for it.
struct ListedSeries<'a> {
    labels: Labels,
    chunks: Vec<(Timestamp, Timestamp, u8, ChunkBytes<'a>)>,
    deleted: Deleted<'a>,
}

/// A series' deleted intervals: borrowed from a block's tombstones, owned from the head.
enum Deleted<'a> {
    Block(&'a [Interval]),
    Head(Vec<Interval>),
}

impl Deleted<'_> {
    fn intervals(&self) -> &[Interval] {
        match self {
            Deleted::Block(d) => d,
            Deleted::Head(d) => d,
        }
    }
}

/// Adds one series' chunks from one source to `out`, re-encoding XOR chunks that
/// overlap a deletion. Chunks in other encodings (native histograms) pass through as
/// stored.
fn add_chunks(out: &mut Vec<EncodedChunk>, series: &ListedSeries<'_>) {
    let xor = Encoding::Xor.as_u8();
    let deleted = series.deleted.intervals();
    for (min_time, max_time, encoding, data) in &series.chunks {
        let (min_time, max_time, encoding) = (*min_time, *max_time, *encoding);
        let data = data.as_ref();
        let touched = deleted
            .iter()
            .any(|d| d.mint <= max_time && d.maxt >= min_time);
        if !touched || encoding != xor {
            out.push(EncodedChunk {
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
        out.extend(kept.into_iter().map(|(lo, hi, data)| EncodedChunk {
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
pub fn merge_overlapping_chunks(mut chunks: Vec<EncodedChunk>) -> Vec<EncodedChunk> {
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
    merge_xor(&views, &mut merged);
    others.extend(merged.into_iter().map(|(lo, hi, data)| EncodedChunk {
        min_time: lo,
        max_time: hi,
        encoding: xor,
        data,
    }));
    others.sort_by_key(|c| (c.min_time, c.max_time));
    others
}

impl<'q> DbChunkQuerier<'q> {
    /// Every source's matching series with their chunk references, each list in label
    /// order.
    fn list<'a>(
        &'a self,
        matchers: &[Matcher],
    ) -> Result<Vec<std::vec::IntoIter<ListedSeries<'a>>>, StorageError> {
        let mut sources = Vec::with_capacity(self.blocks.len() + 1);
        for q in &self.blocks {
            let tombstones = q.block().tombstones();
            let listed: Vec<ListedSeries<'a>> = q
                .series_chunks(matchers)?
                .into_iter()
                .map(|s| ListedSeries {
                    deleted: Deleted::Block(tombstones.get(u64::from(s.id))),
                    labels: s.labels,
                    chunks: s
                        .chunks
                        .into_iter()
                        .map(|(lo, hi, enc, data)| (lo, hi, enc, ChunkBytes::Block(data)))
                        .collect(),
                })
                .collect();
            sources.push(listed.into_iter());
        }
        let Some(db) = self.db else {
            return Ok(sources);
        };
        let xor = Encoding::Xor.as_u8();
        let head: Vec<ListedSeries<'a>> = db
            .head
            .querier(self.mint, self.maxt)
            .snapshot(matchers)?
            .into_iter()
            .map(|s| ListedSeries {
                labels: s.labels,
                chunks: s
                    .chunks
                    .into_iter()
                    .map(|c| (c.min_time, c.max_time, xor, ChunkBytes::Head(c.data)))
                    .collect(),
                deleted: Deleted::Head(s.deleted),
            })
            .collect();
        sources.push(head.into_iter());
        Ok(sources)
    }
}

/// The merged stream: the series of every source in label order, a series present in
/// several sources answered once with all their chunks.
struct MergedChunkSeriesSet<'a> {
    sources: Vec<std::iter::Peekable<std::vec::IntoIter<ListedSeries<'a>>>>,
    /// Labels only: each series with a chunk in range, with no chunk copied (the
    /// `series` function hint, as Prometheus gives it for label-only reads).
    labels_only: bool,
}

impl ChunkSeriesSet for MergedChunkSeriesSet<'_> {
    fn next(&mut self) -> Option<ChunkSeries> {
        loop {
            let labels = self
                .sources
                .iter_mut()
                .filter_map(|s| s.peek().map(|p| &p.labels))
                .min()?
                .clone();
            let mut chunks = Vec::new();
            let mut listed = false;
            for source in &mut self.sources {
                if let Some(series) = source.next_if(|p| p.labels == labels) {
                    listed |= !series.chunks.is_empty();
                    if !self.labels_only {
                        add_chunks(&mut chunks, &series);
                    }
                }
            }
            if self.labels_only && listed {
                return Some(ChunkSeries {
                    labels,
                    chunks: Vec::new(),
                });
            }
            if !chunks.is_empty() {
                return Some(ChunkSeries {
                    labels,
                    chunks: merge_overlapping_chunks(chunks),
                });
            }
        }
    }

    fn err(&self) -> Option<&StorageError> {
        None
    }

    fn warnings(&self) -> Vec<String> {
        Vec::new()
    }
}

impl DbChunkQuerier<'_> {
    /// The sorted union of a label answer over every block (no head).
    fn merged_blocks(
        &self,
        f: impl Fn(&BlockQuerier) -> Result<(Vec<String>, Vec<String>), StorageError>,
    ) -> Result<(Vec<String>, Vec<String>), StorageError> {
        let mut all = Vec::new();
        let mut warnings = Vec::new();
        for q in &self.blocks {
            let (v, w) = f(q)?;
            all.extend(v);
            warnings.extend(w);
        }
        all.sort_unstable();
        all.dedup();
        Ok((all, warnings))
    }
}

impl ChunkQuerier for DbChunkQuerier<'_> {
    /// With the function hint `series` (Prometheus's hint for a read that needs labels
    /// only), series come without chunks.
    fn select_chunks<'a>(
        &'a self,
        _sorted: bool,
        hints: Option<&SelectHints>,
        matchers: &[Matcher],
    ) -> Box<dyn ChunkSeriesSet + 'a> {
        let labels_only = hints.is_some_and(|h| h.func.as_deref() == Some("series"));
        match self.list(matchers) {
            Ok(sources) => Box::new(MergedChunkSeriesSet {
                sources: sources.into_iter().map(Iterator::peekable).collect(),
                labels_only,
            }),
            Err(e) => Box::new(VecChunkSeriesSet::failed(e)),
        }
    }

    fn label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
    ) -> Result<(Vec<String>, Vec<String>), StorageError> {
        match self.db {
            Some(db) => db
                .querier(self.mint, self.maxt)
                .label_values(name, matchers),
            None => self.merged_blocks(|q| q.label_values(name, matchers)),
        }
    }

    fn label_names(
        &self,
        matchers: &[Matcher],
    ) -> Result<(Vec<String>, Vec<String>), StorageError> {
        match self.db {
            Some(db) => db.querier(self.mint, self.maxt).label_names(matchers),
            None => self.merged_blocks(|q| q.label_names(matchers)),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn xor(samples: &[(i64, f64)]) -> EncodedChunk {
        let mut enc = kiln_chunkenc::XorEncoder::new();
        for &(t, v) in samples {
            enc.append(t, v);
        }
        EncodedChunk {
            min_time: samples[0].0,
            max_time: samples[samples.len() - 1].0,
            encoding: Encoding::Xor.as_u8(),
            data: enc.into_bytes(),
        }
    }

    fn samples(chunks: &[EncodedChunk]) -> Vec<(i64, f64)> {
        let mut out = Vec::new();
        for c in chunks {
            let mut it = kiln_chunkenc::XorIterator::new(&c.data);
            while it.next() {
                out.push(it.at());
            }
        }
        out
    }

    #[test]
    fn overlapping_chunks_merge_in_time_order_once() {
        // The same samples twice (a replica, or the head and a block cut from it), and a
        // chunk overlapping their end.
        let a: Vec<(i64, f64)> = (0..200).map(|i| (i * 10, i as f64)).collect();
        let b: Vec<(i64, f64)> = (150..260).map(|i| (i * 10 + 5, -(i as f64))).collect();
        let merged =
            merge_overlapping_chunks(vec![xor(&a[..120]), xor(&a[120..]), xor(&a), xor(&b)]);
        let got = samples(&merged);
        assert!(
            got.windows(2).all(|w| w[0].0 < w[1].0),
            "strictly increasing"
        );
        assert_eq!(got.len(), a.len() + b.len());
        assert!(merged.windows(2).all(|w| w[0].max_time < w[1].min_time));
        // Without overlap, chunks pass through untouched.
        let apart = vec![xor(&a[..100]), xor(&a[100..])];
        assert_eq!(merge_overlapping_chunks(apart.clone()), apart);
    }
}
