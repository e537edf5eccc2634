//! Query errors.

/// What kind of failure, so the HTTP API can answer with Prometheus's `errorType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryErrorKind {
    /// The query text is not a valid query: it does not parse, its types do not
    /// check, or it cannot be a range query. The API answers `bad_data` with
    /// `invalid parameter "query": ` before the message, as Prometheus does.
    InvalidQuery,
    /// Evaluation refused an argument's value (`bad_data`), e.g. an invalid label
    /// name given to `count_values`.
    BadData,
    /// Evaluation failed on the data (`execution`), e.g. duplicate series.
    Execution,
    /// The query took longer than the timeout (`timeout`).
    Timeout,
    /// The query was canceled (`canceled`).
    Canceled,
    /// Reading from storage failed (`internal` / `unavailable`).
    Storage,
}

/// A query that failed. The message is Prometheus's text where Prometheus has one, since
/// users and tests match on it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct QueryError {
    pub kind: QueryErrorKind,
    pub message: String,
}

impl QueryError {
    pub(crate) fn invalid_query(message: impl Into<String>) -> Self {
        QueryError {
            kind: QueryErrorKind::InvalidQuery,
            message: message.into(),
        }
    }

    pub(crate) fn bad_data(message: impl Into<String>) -> Self {
        QueryError {
            kind: QueryErrorKind::BadData,
            message: message.into(),
        }
    }

    pub(crate) fn execution(message: impl Into<String>) -> Self {
        QueryError {
            kind: QueryErrorKind::Execution,
            message: message.into(),
        }
    }
}

impl From<kiln_storage::StorageError> for QueryError {
    fn from(e: kiln_storage::StorageError) -> Self {
        QueryError {
            kind: QueryErrorKind::Storage,
            message: e.to_string(),
        }
    }
}
