//! Reading blocks, and the querier that merges blocks with the head.

use std::sync::Arc;

use kiln_chunkenc::Encoding;
use kiln_model::{Matcher, Timestamp};
use kiln_storage::merge::MergeQuerier;
use kiln_storage::{
    ErrorKind, ErrorSeriesSet, Querier, SelectHints, SeriesSet, StorageError, VecSeriesSet,
    sorted_label_names, sorted_label_values,
};

use super::Db;
use crate::block::BlockReader;
use crate::block::index::postings;
use crate::querier::{ChunkView, ChunkedSeries};

/// One series of a block with its chunks in range: `(min_time, max_time, encoding,
/// data)` each.
pub(crate) struct BlockSeries<'b> {
    pub(crate) id: u32,
    pub(crate) labels: kiln_model::Labels,
    pub(crate) chunks: Vec<(Timestamp, Timestamp, u8, &'b [u8])>,
}

/// A block series as a sample source: its XOR chunks borrowed from the block's files.
type BlockChunkedSeries<'b> = ChunkedSeries<&'b [u8]>;

/// A querier over one persisted block for `[mint, maxt]`.
pub struct BlockQuerier {
    block: Arc<BlockReader>,
    mint: Timestamp,
    maxt: Timestamp,
}

pub(crate) fn block_err(
    block: &BlockReader,
    e: impl std::error::Error + Send + Sync + 'static,
) -> StorageError {
    StorageError::backend(
        ErrorKind::Internal,
        format!("reading block {}", block.dir().display()),
        e,
    )
}

impl BlockQuerier {
    pub fn new(block: Arc<BlockReader>, mint: Timestamp, maxt: Timestamp) -> Self {
        BlockQuerier { block, mint, maxt }
    }

    pub(crate) fn block(&self) -> &BlockReader {
        &self.block
    }

    pub(crate) fn mint(&self) -> Timestamp {
        self.mint
    }

    pub(crate) fn maxt(&self) -> Timestamp {
        self.maxt
    }

    /// Sorted ids of the series matching every matcher (absent labels match as `""`).
    pub(crate) fn postings_for(&self, matchers: &[Matcher]) -> Result<Vec<u32>, StorageError> {
        let index = self.block.index();
        let err = |e| block_err(&self.block, e);
        let (narrowing, widening): (Vec<&Matcher>, Vec<&Matcher>) =
            matchers.iter().partition(|m| !m.matches_empty());
        let mut lists = Vec::with_capacity(narrowing.len());
        for m in narrowing {
            let p = match m.set_matches() {
                Some(values) => {
                    let lists = values
                        .iter()
                        .map(|v| index.postings(&m.name, v))
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(err)?;
                    postings::merge(lists)
                }
                None => index
                    .postings_for_values(&m.name, |v| m.matches(v))
                    .map_err(err)?,
            };
            if p.is_empty() {
                return Ok(Vec::new());
            }
            lists.push(p);
        }
        let mut ids = if lists.is_empty() {
            index.all_postings().map_err(err)?.into_owned()
        } else {
            postings::intersect(lists)
        };
        for m in widening {
            let excluded = index
                .postings_for_values(&m.name, |v| !m.matches(v))
                .map_err(err)?;
            ids = postings::without(ids, excluded);
        }
        Ok(ids.into_vec())
    }

    /// The matching series with their chunks overlapping the range, in label order,
    /// each chunk as `(min_time, max_time, encoding, data)`.
    pub(crate) fn series_chunks(
        &self,
        matchers: &[Matcher],
    ) -> Result<Vec<BlockSeries<'_>>, StorageError> {
        let index = self.block.index();
        let chunks = self.block.chunks();
        let mut out = Vec::new();
        for id in self.postings_for(matchers)? {
            let (labels, metas) = index.series(id).map_err(|e| block_err(&self.block, e))?;
            let mut found = Vec::with_capacity(metas.len());
            for m in metas
                .iter()
                .filter(|m| m.max_time >= self.mint && m.min_time <= self.maxt)
            {
                let (encoding, data) = chunks
                    .chunk(m.chunk_ref)
                    .map_err(|e| block_err(&self.block, e))?;
                found.push((m.min_time, m.max_time, encoding, data));
            }
            if !found.is_empty() {
                out.push(BlockSeries {
                    id,
                    labels,
                    chunks: found,
                });
            }
        }
        Ok(out)
    }

    /// The matching series as sample sources, and a warning when chunks in encodings
    /// Kiln does not read yet (native histograms) were left out.
    fn series(
        &self,
        matchers: &[Matcher],
    ) -> Result<(Vec<BlockChunkedSeries<'_>>, Vec<String>), StorageError> {
        let mut skipped = 0usize;
        let mut out = Vec::new();
        for s in self.series_chunks(matchers)? {
            let mut views = Vec::with_capacity(s.chunks.len());
            for (min_time, max_time, encoding, data) in s.chunks {
                if encoding == Encoding::Xor.as_u8() {
                    views.push(ChunkView {
                        min_time,
                        max_time,
                        data,
                    });
                } else {
                    skipped += 1;
                }
            }
            if !views.is_empty() {
                out.push(ChunkedSeries {
                    deleted: self.block.tombstones().get(u64::from(s.id)).to_vec(),
                    labels: s.labels,
                    chunks: views,
                    mint: self.mint,
                    maxt: self.maxt,
                });
            }
        }
        let warnings = if skipped > 0 {
            vec![format!(
                "block {}: {skipped} chunks in an unsupported encoding (native histograms) were skipped",
                self.block.dir().display()
            )]
        } else {
            Vec::new()
        };
        Ok((out, warnings))
    }
}

impl Querier for BlockQuerier {
    fn select<'a>(
        &'a self,
        _sorted: bool,
        _hints: Option<&SelectHints>,
        matchers: &[Matcher],
    ) -> Box<dyn SeriesSet<'a> + 'a> {
        match self.series(matchers) {
            Ok((series, warnings)) => Box::new(VecSeriesSet::new(series, warnings)),
            Err(e) => Box::new(ErrorSeriesSet(e)),
        }
    }

    fn label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
    ) -> Result<(Vec<String>, Vec<String>), StorageError> {
        if matchers.is_empty() {
            let values = self
                .block
                .index()
                .label_values(name)
                .map_err(|e| block_err(&self.block, e))?;
            return Ok((values, Vec::new()));
        }
        let (series, _) = self.series(matchers)?;
        Ok((
            sorted_label_values(series.iter().map(|s| &s.labels), name),
            Vec::new(),
        ))
    }

    fn label_names(
        &self,
        matchers: &[Matcher],
    ) -> Result<(Vec<String>, Vec<String>), StorageError> {
        if matchers.is_empty() {
            return Ok((self.block.index().label_names(), Vec::new()));
        }
        let (series, _) = self.series(matchers)?;
        Ok((
            sorted_label_names(series.iter().map(|s| &s.labels)),
            Vec::new(),
        ))
    }
}

impl Db {
    /// A querier over `[mint, maxt]` merging every overlapping block and the head.
    pub fn querier(&self, mint: Timestamp, maxt: Timestamp) -> MergeQuerier<'_> {
        let mut queriers: Vec<Box<dyn Querier + '_>> = Vec::new();
        for b in self.blocks.read().iter() {
            let meta = b.meta();
            // Block max time is exclusive.
            if meta.max_time > mint && meta.min_time <= maxt {
                queriers.push(Box::new(BlockQuerier::new(b.clone(), mint, maxt)));
            }
        }
        queriers.push(Box::new(self.head.querier(mint, maxt)));
        MergeQuerier::new(queriers)
    }
}

impl kiln_storage::Queryable for Db {
    fn querier(
        &self,
        mint: Timestamp,
        maxt: Timestamp,
    ) -> Result<Box<dyn Querier + '_>, StorageError> {
        Ok(Box::new(Db::querier(self, mint, maxt)))
    }
}

impl kiln_storage::Appendable for Db {
    fn appender(&self) -> Box<dyn kiln_storage::Appender + '_> {
        Box::new(self.head.appender())
    }
}
