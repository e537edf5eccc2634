//! [`StoreError`]: what can go wrong serving a bucket, with the block and object it
//! happened on.

use kiln_objstore::BucketError;
use kiln_storage::{ErrorKind, StorageError};
use kiln_tsdb::block::BlockError;
use ulid::Ulid;

/// A failure of the bucket store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The bucket could not be read.
    #[error(transparent)]
    Bucket(#[from] BucketError),
    /// A block's data does not decode.
    #[error("block {block}")]
    Block {
        block: Ulid,
        #[source]
        source: BlockError,
    },
    /// The local data directory could not be written or read.
    #[error("{op} {path}")]
    Local {
        op: &'static str,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A request asked for more than a limit allows.
    #[error("{what} limit of {limit} exceeded")]
    Limit { what: &'static str, limit: u64 },
    /// The store's runtime is gone (shutting down).
    #[error("the store is shutting down")]
    ShuttingDown,
}

impl StoreError {
    pub(crate) fn block(block: Ulid) -> impl FnOnce(BlockError) -> StoreError {
        move |source| StoreError::Block { block, source }
    }

    /// Whether a request asked for too much (`RESOURCE_EXHAUSTED` on the StoreAPI, 422
    /// on the query API), as opposed to the store failing.
    pub fn is_limit(&self) -> bool {
        matches!(self, StoreError::Limit { .. })
    }

    /// As the storage contracts' error.
    pub fn into_storage(self, context: &str) -> StorageError {
        let kind = match &self {
            StoreError::Limit { .. } => ErrorKind::BadData,
            StoreError::Bucket(_) => ErrorKind::Unavailable,
            StoreError::ShuttingDown => ErrorKind::Canceled,
            StoreError::Block { .. } | StoreError::Local { .. } => ErrorKind::Internal,
        };
        StorageError::backend(kind, context.to_owned(), self)
    }
}
