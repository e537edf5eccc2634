//! Thanos's StoreAPI over gRPC, so that Kiln and Thanos components mix: a Thanos querier
//! reads a Kiln server as it reads a sidecar, and Kiln's own querier reads either.
//!
//! - [`proto`]: the `thanos.Store` and `thanos.info.Info` messages and services,
//!   generated from `proto/` (Kiln's own transcription of Thanos's wire format).
//! - [`server`]: [`StoreService`], both services over any
//!   [`ChunkQueryable`](kiln_storage::ChunkQueryable) with external labels, and
//!   [`serve`] to run them on a listener.
//! - [`convert`]: matchers and labels between the wire and Kiln's model.

pub mod convert;
pub mod server;

pub use server::{StoreOptions, StoreService, serve};

/// Generated from `proto/` (see build.rs). Thanos's message and field names are kept, so
/// the generated code is left as the generator writes it.
#[allow(
    unreachable_pub,
    missing_docs,
    clippy::all,
    clippy::pedantic,
    clippy::unwrap_used
)]
pub mod proto {
    /// Package `thanos`: the Store service, series, chunks, labels, matchers.
    pub mod thanos {
        tonic::include_proto!("thanos");

        /// Package `thanos.info`: the Info service.
        pub mod info {
            tonic::include_proto!("thanos.info");
        }
    }
}
