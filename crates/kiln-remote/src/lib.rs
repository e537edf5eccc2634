//! Remote write and remote read (Prometheus's remote storage protocols).
//!
//! Module map:
//! - [`proto`]: the remote-write 1.0 and 2.0 protobuf messages.
//! - [`receive`]: the `/api/v1/write` receiver: headers, limits, snappy, protobuf,
//!   series checks, one append transaction per request, the HTTP status of each failure.
//! - [`send`]: the `remote_write` sender: queues following the WAL, shards, retries,
//!   saved progress, `prometheus_remote_storage_*` metrics.
//! - [`read`]: remote read: the `/api/v1/read` server, the `remote_read` client, and the
//!   queryable that merges remote series into local queries.
//!
//! The HTTP route lives in `kiln-server`; this crate stays free of a web framework.

pub mod proto;
pub mod read;
pub mod receive;
pub mod send;

pub use receive::{Protocol, ReceiveError, ReceiveLimits, SeriesCache, WriteStats, receive};
