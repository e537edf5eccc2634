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
    /// A sample further ahead of the storage's clock than it allows. Refused where
    /// samples enter, because one far-future sample would move the head's newest time
    /// so far that every current sample became out of bounds. The message starts like
    /// [`OutOfBounds`](Self::OutOfBounds)'s: to a sender both are "out of bounds".
    #[error(
        "out of bounds: series {labels}, timestamp {t} is too far in the future: more than {} ahead of the server's clock ({now})",
        kiln_model::format_duration_ms(*max_future)
    )]
    TooFarInFuture {
        labels: Labels,
        t: Timestamp,
        /// The storage's clock when the sample was judged, Unix ms.
        now: Timestamp,
        /// How far ahead of `now` a sample may be, ms.
        max_future: i64,
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
            | StorageError::TooFarInFuture { .. }
            | StorageError::InvalidLabels { .. }
            | StorageError::UnknownSeriesRef { .. } => ErrorKind::BadData,
            StorageError::Backend { kind, .. } => *kind,
        }
    }

    /// Whether the sample was refused for its timestamp being outside the times the
    /// storage accepts (too old or too far in the future), the class Prometheus's
    /// scrapes count as `out of bounds`.
    pub fn is_out_of_bounds(&self) -> bool {
        matches!(
            self,
            StorageError::OutOfBounds { .. } | StorageError::TooFarInFuture { .. }
        )
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
