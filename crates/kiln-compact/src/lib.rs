//! The bucket compactor's work on blocks (Thanos's compactor role). Built so far:
//!
//! - [`downsample`]: a raw block to 5m, or a 5m block to 1h, as a new block of aggregate
//!   chunks in Thanos's encoding.
//!
//! Still to come: compaction of a bucket's block groups with Thanos's ranges (the
//! planning is `kiln_tsdb::db::plan`), retention per resolution, and the `kiln compact`
//! command around them (with `kiln_objstore::lock`).

pub mod downsample;

pub use downsample::{DownsampleError, Downsampled, downsample_block, next_resolution};
