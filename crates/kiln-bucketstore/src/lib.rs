//! The store gateway's storage: the blocks of a bucket, served as a
//! [`ChunkQueryable`](kiln_storage::ChunkQueryable) without copying them locally.
//!
//! Module map:
//! - [`store`]: [`BucketStore`], the served blocks and the querier entry point, with
//!   the store's metrics.
//! - [`sync`]: [`BlockSyncer`]: one recursive listing per sync, metas read once and kept
//!   locally, Thanos's block filters (time, relabel, consistency delay, deletion marks).
//! - [`block`]: [`StoreBlock`]: the lazily built index-header and ranged reads of
//!   postings, series and chunks.
//! - [`querier`]: [`BucketChunkQuerier`]: matchers to postings to series to chunks,
//!   merged across blocks and streamed through a bounded channel.
//! - [`cache`]: [`IndexCache`], postings and series entries within a byte limit.
//! - `ranges`: nearby ranged reads merged into one.
//! - [`error`]: the store's errors ([`StoreError`]).
//!
//! Local disk holds, per block, `<data-dir>/<ULID>/meta.json` and `index-header`; both
//! can be deleted at any time (they are rebuilt from the bucket).

pub mod block;
pub mod cache;
pub mod error;
pub mod querier;
mod ranges;
pub mod store;
pub mod sync;

pub use block::StoreBlock;
pub use cache::IndexCache;
pub use error::StoreError;
pub use querier::BucketChunkQuerier;
pub use store::{AtResolution, BucketStore, Limits, StoreConfig};
pub use sync::{BlockSyncer, SyncOptions, SyncReport};
