//! Errors crossing the storage contracts.

use kiln_model::{Labels, Timestamp};

/// What kind of failure an error is, so that the HTTP layer can map it to Prometheus's
/// `errorType` and remote write can decide between retrying and dropping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The input was wrong; retrying the same input fails again.
    BadData,
    Timeout,
    Canceled,
    /// A dependency (disk full, a remote store) is not available now; retry later.
    Unavailable,
    NotFound,
    /// A bug or corruption on our side.
    Internal,
}

/// An error from a storage implementation. Cheap to clone (a backend's source is
/// shared), so that an error seen through a `&self` accessor can be passed on.
///
/// The sample-rejection variants carry the same messages as Prometheus's
/// `storage.Err*` errors, because scrapers and remote-write clients match on them.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StorageError {
    #[error("out of order sample: series {labels}, timestamp {t}")]
    OutOfOrderSample { labels: Labels, t: Timestamp },
    #[error("duplicate sample for timestamp: series {labels}, timestamp {t}")]
    DuplicateSampleForTimestamp { labels: Labels, t: Timestamp },
    #[error(
        "out of bounds: series {labels}, timestamp {t} is before the head's minimum {min_valid}"
    )]
    OutOfBounds {
        labels: Labels,
        t: Timestamp,
        min_valid: Timestamp,
    },
    #[error("invalid series labels {labels}: {reason}")]
    InvalidLabels {
        labels: Labels,
        reason: &'static str,
    },
    #[error("unknown series reference {series_ref}")]
    UnknownSeriesRef { series_ref: u64 },
    #[error("{context}: {source}")]
    Backend {
        kind: ErrorKind,
        context: String,
        #[source]
        source: std::sync::Arc<dyn std::error::Error + Send + Sync>,
    },
}

impl StorageError {
    /// The kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            StorageError::OutOfOrderSample { .. }
            | StorageError::DuplicateSampleForTimestamp { .. }
            | StorageError::OutOfBounds { .. }
            | StorageError::InvalidLabels { .. }
            | StorageError::UnknownSeriesRef { .. } => ErrorKind::BadData,
            StorageError::Backend { kind, .. } => *kind,
        }
    }

    /// Wraps a backend error with what was being done.
    pub fn backend(
        kind: ErrorKind,
        context: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> StorageError {
        StorageError::Backend {
            kind,
            context: context.into(),
            source: std::sync::Arc::new(source),
        }
    }
}
