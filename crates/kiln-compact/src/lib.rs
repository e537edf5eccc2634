//! The bucket compactor (Thanos's compactor role).
//!
//! - [`compactor`]: [`Compactor`], one pass over a bucket: grouping, planning with
//!   Thanos's ranges, merging, downsampling, retention, deletion.
//! - [`merge`]: blocks of one group merged into one, chunks copied as stored.
//! - [`downsample`]: a raw block to 5m, or a 5m block to 1h, as a new block of aggregate
//!   chunks in Thanos's encoding.
//!
//! The `kiln compact` command (the binary crate) holds the bucket's lock
//! (`kiln_objstore::lock`) around passes.

pub mod compactor;
pub mod downsample;
pub mod merge;

pub use compactor::{Compactor, CompactorError, CompactorOptions, PassReport, Progress};
pub use downsample::{DownsampleError, Downsampled, downsample_block, next_resolution};
pub use merge::{CompactError, compact_blocks};
