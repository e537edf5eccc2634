//! The chunk-level read contract: series as their encoded chunks, as stored.
//!
//! Remote read (`STREAMED_XOR_CHUNKS`), the StoreAPI, a store gateway and the compactor
//! move chunks without decoding them. A [`ChunkQueryable`] opens a [`ChunkQuerier`] over
//! a closed time range `[mint, maxt]` (ms, inclusive); its `select_chunks` answers with a
//! [`ChunkSeriesSet`], a stream read one series at a time, so that an implementation can
//! hold one series' chunk bytes at a time instead of the whole answer.
//!
//! Invariants of an answer:
//! - series come in [`Labels`] order, each once;
//! - a series' chunks are sorted by `min_time` and do not overlap (an implementation
//!   that holds the same samples twice, the head and a block just cut from it, merges
//!   them);
//! - a chunk is returned whole when it overlaps the range, so it may hold samples outside
//!   it: callers that need exact bounds clip, as Prometheus's remote read does;
//! - a series without a chunk in the range is left out.
//!
//! The [`SelectHints`] carry what the query engine knows: the enclosing function, its
//! range and the step. The function `series` means labels only (Prometheus's hint for
//! `/api/v1/series`): an implementation may then answer each series with no chunk. A source of downsampled data picks the aggregate it returns from
//! them; a deduplicating source applies counter adjustment under `rate` and the like.

use kiln_model::{Labels, Matcher, Timestamp};

use crate::{SelectHints, StorageError};

/// One encoded chunk as stored: time bounds, the Prometheus encoding byte and the data.
#[derive(Debug, Clone, PartialEq)]
pub struct EncodedChunk {
    pub min_time: Timestamp,
    pub max_time: Timestamp,
    pub encoding: u8,
    pub data: Vec<u8>,
}

/// One series with its encoded chunks, for remote read, store gateways and compaction.
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkSeries {
    pub labels: Labels,
    pub chunks: Vec<EncodedChunk>,
}

/// A stream of [`ChunkSeries`] in label order (see the module docs for the invariants).
pub trait ChunkSeriesSet {
    /// The next series, or `None` when done (check [`err`](ChunkSeriesSet::err)).
    fn next(&mut self) -> Option<ChunkSeries>;
    /// The error that ended the stream early, if any.
    fn err(&self) -> Option<&StorageError>;
    /// Non-fatal problems met while answering, e.g. a block that could not be read.
    fn warnings(&self) -> Vec<String>;
}

/// Like [`Querier`](crate::Querier), but yields encoded chunks instead of decoded samples.
pub trait ChunkQuerier {
    /// Series matching all `matchers` with their chunks overlapping the querier's range.
    /// Series always come in label order (`sorted` is accepted for symmetry with
    /// [`Querier::select`](crate::Querier::select); merging needs the order anyway).
    fn select_chunks<'a>(
        &'a self,
        sorted: bool,
        hints: Option<&SelectHints>,
        matchers: &[Matcher],
    ) -> Box<dyn ChunkSeriesSet + 'a>;

    /// Sorted, unique values of label `name` among series matching `matchers` (all series
    /// when empty) with data in the range. Returns warnings beside the values.
    fn label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
    ) -> Result<(Vec<String>, Vec<String>), StorageError>;

    /// Sorted, unique label names among series matching `matchers` with data in the range.
    fn label_names(&self, matchers: &[Matcher])
    -> Result<(Vec<String>, Vec<String>), StorageError>;
}

/// A source of chunk queriers: the TSDB, a bucket, a fan-out over stores.
pub trait ChunkQueryable: Send + Sync {
    fn chunk_querier(
        &self,
        mint: Timestamp,
        maxt: Timestamp,
    ) -> Result<Box<dyn ChunkQuerier + '_>, StorageError>;
}

impl<T: ChunkQueryable + ?Sized> ChunkQueryable for &T {
    fn chunk_querier(
        &self,
        mint: Timestamp,
        maxt: Timestamp,
    ) -> Result<Box<dyn ChunkQuerier + '_>, StorageError> {
        (**self).chunk_querier(mint, maxt)
    }
}

impl<T: ChunkQueryable + ?Sized> ChunkQueryable for std::sync::Arc<T> {
    fn chunk_querier(
        &self,
        mint: Timestamp,
        maxt: Timestamp,
    ) -> Result<Box<dyn ChunkQuerier + '_>, StorageError> {
        (**self).chunk_querier(mint, maxt)
    }
}

/// A chunk series set over an owned list (already in label order), or an error.
pub struct VecChunkSeriesSet {
    series: std::vec::IntoIter<ChunkSeries>,
    err: Option<StorageError>,
    warnings: Vec<String>,
}

impl VecChunkSeriesSet {
    /// `series` must already be in label order.
    pub fn new(series: Vec<ChunkSeries>, warnings: Vec<String>) -> Self {
        VecChunkSeriesSet {
            series: series.into_iter(),
            err: None,
            warnings,
        }
    }

    /// A set that yields nothing and reports `err`.
    pub fn failed(err: StorageError) -> Self {
        VecChunkSeriesSet {
            series: Vec::new().into_iter(),
            err: Some(err),
            warnings: Vec::new(),
        }
    }
}

impl ChunkSeriesSet for VecChunkSeriesSet {
    fn next(&mut self) -> Option<ChunkSeries> {
        self.series.next()
    }

    fn err(&self) -> Option<&StorageError> {
        self.err.as_ref()
    }

    fn warnings(&self) -> Vec<String> {
        self.warnings.clone()
    }
}
