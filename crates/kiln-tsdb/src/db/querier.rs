//! Reading blocks, and the querier that merges blocks with the head.

use std::sync::Arc;

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

/// A querier over one persisted block for `[mint, maxt]`.
pub struct BlockQuerier {
    block: Arc<BlockReader>,
    mint: Timestamp,
    maxt: Timestamp,
}

fn block_err(
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

    fn series(&self, matchers: &[Matcher]) -> Result<Vec<ChunkedSeries<&[u8]>>, StorageError> {
        let index = self.block.index();
        let chunks = self.block.chunks();
        let mut out = Vec::new();
        for id in self.postings_for(matchers)? {
            let (labels, metas) = index.series(id).map_err(|e| block_err(&self.block, e))?;
            let mut views = Vec::with_capacity(metas.len());
            for m in metas
                .iter()
                .filter(|m| m.max_time >= self.mint && m.min_time <= self.maxt)
            {
                let (_encoding, data) = chunks
                    .chunk(m.chunk_ref)
                    .map_err(|e| block_err(&self.block, e))?;
                views.push(ChunkView {
                    min_time: m.min_time,
                    max_time: m.max_time,
                    data,
                });
            }
            if views.is_empty() {
                continue;
            }
            out.push(ChunkedSeries {
                labels,
                chunks: views,
                mint: self.mint,
                maxt: self.maxt,
                deleted: self.block.tombstones().get(u64::from(id)).to_vec(),
            });
        }
        // Index order is label order already.
        Ok(out)
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
            Ok(series) => Box::new(VecSeriesSet::new(series, Vec::new())),
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
        let series = self.series(matchers)?;
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
        let series = self.series(matchers)?;
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
