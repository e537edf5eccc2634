//! The query engine: entry points and options.

use std::time::Duration;

use kiln_model::Timestamp;
use kiln_storage::Queryable;

use crate::error::QueryError;
use crate::value::QueryResult;

/// Engine options; `Default` gives Prometheus's defaults.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// How far back an instant selector looks for a sample, ms (`--query.lookback-delta`,
    /// default 5m).
    pub lookback_delta: i64,
    /// Most samples a query may hold in memory at once (`--query.max-samples`).
    pub max_samples: usize,
    /// Longest a query may run (`--query.timeout`, default 2m).
    pub timeout: Option<Duration>,
    /// Prometheus's `promql-delayed-name-removal` feature: operations that drop
    /// `__name__` only mark it, and marked names are removed when the query ends, so
    /// `label_replace` and `by (__name__)` can still see them. Off by default, as in the
    /// Prometheus server; Prometheus's test scripts run with it on.
    pub delayed_name_removal: bool,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            lookback_delta: 5 * 60 * 1000,
            max_samples: 50_000_000,
            timeout: Some(Duration::from_secs(120)),
            delayed_name_removal: false,
        }
    }
}

/// Evaluates PromQL over any [`Queryable`].
#[derive(Debug, Clone, Default)]
pub struct Engine {
    pub opts: EngineOptions,
}

impl Engine {
    pub fn new(opts: EngineOptions) -> Self {
        Engine { opts }
    }

    /// Evaluates `query` at time `t` (ms).
    pub fn instant_query(
        &self,
        storage: &dyn Queryable,
        query: &str,
        t: Timestamp,
    ) -> Result<QueryResult, QueryError> {
        crate::eval::run(self, storage, query, t, t, 0)
    }

    /// Evaluates `query` at every step from `start` to `end` (ms, inclusive).
    pub fn range_query(
        &self,
        storage: &dyn Queryable,
        query: &str,
        start: Timestamp,
        end: Timestamp,
        step: i64,
    ) -> Result<QueryResult, QueryError> {
        if step <= 0 {
            return Err(QueryError::bad_data(
                "zero or negative query resolution step widths are not accepted. Try a positive integer",
            ));
        }
        if end < start {
            return Err(QueryError::bad_data(
                "end timestamp must not be before start time",
            ));
        }
        crate::eval::run(self, storage, query, start, end, step)
    }
}
