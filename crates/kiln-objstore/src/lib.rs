//! Object storage in Thanos's shape.
//!
//! Kiln keeps blocks past one machine in a bucket laid out as Thanos lays it out, so a
//! Kiln bucket and a Thanos bucket are interchangeable. This crate is the bucket itself:
//! the configuration users already have (`objstore.yml`), a client for a local directory,
//! S3, GCS or Azure (on `object_store`), and the operations the shipper, the store
//! gateway, the compactor and the bucket tools build on, with Thanos's bucket metrics.
//!
//! Module map:
//! - [`config`]: parsing `objstore.yml` (environment variables, providers, refusals).
//! - [`bucket`]: [`Bucket`] and its operations; [`BucketError`].
//! - [`catalog`]: the blocks of a bucket (and its partial and corrupt block directories).
//! - [`lock`]: the one-compactor-per-bucket lock.
//! - [`markers`]: `deletion-mark.json`, `no-compact-mark.json`, `no-downsample-mark.json`.
//! - [`metrics`]: the bucket metrics (`thanos_objstore_bucket_*`).
//! - `provider`: building the `object_store` client (retries, timeouts, TLS).
//! - [`thanos_meta`]: the `thanos` section of a block's `meta.json`.
//! - [`upload`]: one block directory into the bucket, `meta.json` last.
//! - [`rewrite`]: a block rewritten without deleted series or samples.
//! - [`verify`]: checks of the bucket's blocks (overlaps, missing files, index problems).
//! - [`shipper`]: a server's new blocks into the bucket, recorded in
//!   `thanos.shipper.json` (Thanos's sidecar role).

pub mod bucket;
pub mod catalog;
pub mod config;
pub mod lock;
pub mod markers;
pub mod metrics;
mod provider;
pub mod rewrite;
pub mod shipper;
pub mod thanos_meta;
pub mod upload;
pub mod verify;

pub use bucket::{Bucket, BucketError, ObjectAttributes, Version};
pub use catalog::{BucketBlock, Catalog, list_blocks};
pub use config::{BucketConfig, ConfigError, Provider, parse};
pub use metrics::{BucketMetrics, Operation};
pub use provider::BuildError;
pub use shipper::{Shipper, SyncError, SyncReport};
pub use thanos_meta::ThanosMeta;
pub use upload::{UploadError, UploadOptions, upload_block};
