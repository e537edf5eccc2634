//! The global view: one query endpoint over many clusters (`kiln query`).
//!
//! Built so far:
//! - [`dedup`]: series of HA replicas (equal but for their replica labels) merged into
//!   one, with Thanos's penalty algorithm (counter-aware under `rate` and the like) or
//!   the chain merge.
//!
//! To come (issue 16): StoreAPI and remote-read endpoints, the fan-out with partial
//! responses, the query API and its flags.

pub mod dedup;

pub use dedup::{DedupAlgorithm, DedupSeriesSet};
