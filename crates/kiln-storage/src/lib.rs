//! The storage contracts every Kiln source and sink speaks.
//!
//! Writers (scrape, rules, remote write) see an [`Appender`]; readers (PromQL, the HTTP
//! API, remote read, federation) see a [`Queryable`] that hands out [`Querier`]s for a
//! time range. The TSDB implements both; so do the in-memory [`mem::MemStorage`] used in
//! tests and, later, bucket and fan-out sources. Keeping the contracts here, below the
//! TSDB, lets the PromQL engine run unchanged over any of them.
//!
//! Module map:
//! - [`append`]: [`Appender`], [`Appendable`], [`SampleValue`].
//! - [`query`]: [`Queryable`], [`Querier`], [`SeriesSet`], [`Series`], [`SampleIterator`].
//! - [`chunks`]: the same contract over encoded chunks, as stored: [`ChunkQueryable`],
//!   [`ChunkQuerier`], [`ChunkSeriesSet`] (remote read, StoreAPI, store gateway,
//!   compaction).
//! - [`decoded`]: [`DecodedChunks`], samples from any chunk source (a `Queryable` over a
//!   `ChunkQueryable`).
//! - [`merge`]: merging sorted series sets from several queriers (head + blocks, several
//!   stores) into one, deduplicating equal timestamps.
//! - [`mem`]: an in-memory storage for tests.
//! - [`error`]: [`StorageError`] and its [`ErrorKind`].

pub mod append;
pub mod chunks;
pub mod decoded;
pub mod downsampled;
pub mod error;
pub mod mem;
pub mod merge;
pub mod query;

pub use append::{Appendable, Appender, SampleValue, SeriesRef};
pub use chunks::{
    ChunkQuerier, ChunkQueryable, ChunkSeries, ChunkSeriesSet, EncodedChunk, VecChunkSeriesSet,
};
pub use decoded::DecodedChunks;
pub use error::{ErrorKind, StorageError};
pub use query::{
    ErrorSeriesSet, Querier, Queryable, SampleIterator, SelectHints, Series, SeriesSet, ValueKind,
    VecSeries, VecSeriesSet, sorted_label_names, sorted_label_values,
};
