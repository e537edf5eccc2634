//! The query engine: entry points, options, cancellation and the concurrency limit.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use kiln_model::Timestamp;
use kiln_storage::Queryable;
use parking_lot::{Condvar, Mutex};

use crate::error::{QueryError, QueryErrorKind};
use crate::value::QueryResult;

/// Engine options; `Default` gives Prometheus's defaults.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// How far back an instant selector looks for a sample, ms (`--query.lookback-delta`,
    /// default 5m).
    pub lookback_delta: i64,
    /// Most samples a query may hold in memory at once (`--query.max-samples`): loaded
    /// series data, subquery results and a range query's output points together.
    pub max_samples: usize,
    /// Most bytes a query may hold at once (`--query.max-memory-bytes`; 0: no limit):
    /// decoded samples, vectors kept between steps, step tables and the result, as
    /// counted by the evaluator.
    pub max_memory_bytes: usize,
    /// Longest a query may run, waiting for a slot included (`--query.timeout`,
    /// default 2m).
    pub timeout: Option<Duration>,
    /// Most queries evaluated at once (`--query.max-concurrency`, default 20); others
    /// wait for a slot.
    pub max_concurrency: usize,
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
            max_memory_bytes: 0,
            timeout: Some(Duration::from_secs(120)),
            max_concurrency: 20,
            delayed_name_removal: false,
        }
    }
}

/// A handle to cancel a running query from another thread.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    pub fn new() -> Self {
        CancelToken::default()
    }

    /// Asks the query to stop; it returns a `canceled` error at its next check.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Release);
    }

    pub fn is_canceled(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// Counts running queries against `max_concurrency`.
#[derive(Debug, Default)]
struct Slots {
    running: Mutex<usize>,
    freed: Condvar,
}

/// A held query slot; dropping it frees the slot.
struct SlotGuard<'a>(&'a Slots);

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        *self.0.running.lock() -= 1;
        self.0.freed.notify_one();
    }
}

/// Evaluates PromQL over any [`Queryable`]. Cloning shares the concurrency limit.
#[derive(Debug, Clone, Default)]
pub struct Engine {
    pub opts: EngineOptions,
    slots: Arc<Slots>,
}

/// What the evaluator checks while it runs: the deadline and the cancel token.
pub(crate) struct Limits {
    pub(crate) deadline: Option<Instant>,
    pub(crate) cancel: CancelToken,
}

impl Limits {
    pub(crate) fn check(&self) -> Result<(), QueryError> {
        if self.cancel.is_canceled() {
            return Err(QueryError {
                kind: QueryErrorKind::Canceled,
                message: "query was canceled".into(),
            });
        }
        if self.deadline.is_some_and(|d| Instant::now() > d) {
            return Err(QueryError {
                kind: QueryErrorKind::Timeout,
                message: "query timed out in expression evaluation".into(),
            });
        }
        Ok(())
    }
}

impl Engine {
    pub fn new(opts: EngineOptions) -> Self {
        Engine {
            opts,
            slots: Arc::default(),
        }
    }

    /// Evaluates `query` at time `t` (ms).
    pub fn instant_query(
        &self,
        storage: &dyn Queryable,
        query: &str,
        t: Timestamp,
    ) -> Result<QueryResult, QueryError> {
        self.run(storage, query, t, t, 0, &CancelToken::new())
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
        self.range_query_cancelable(storage, query, start, end, step, &CancelToken::new())
    }

    /// Like [`instant_query`](Self::instant_query), stoppable through `cancel`.
    pub fn instant_query_cancelable(
        &self,
        storage: &dyn Queryable,
        query: &str,
        t: Timestamp,
        cancel: &CancelToken,
    ) -> Result<QueryResult, QueryError> {
        self.run(storage, query, t, t, 0, cancel)
    }

    /// Like [`range_query`](Self::range_query), stoppable through `cancel`.
    pub fn range_query_cancelable(
        &self,
        storage: &dyn Queryable,
        query: &str,
        start: Timestamp,
        end: Timestamp,
        step: i64,
        cancel: &CancelToken,
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
        self.run(storage, query, start, end, step, cancel)
    }

    fn run(
        &self,
        storage: &dyn Queryable,
        query: &str,
        start: Timestamp,
        end: Timestamp,
        step: i64,
        cancel: &CancelToken,
    ) -> Result<QueryResult, QueryError> {
        let limits = Limits {
            deadline: self.opts.timeout.map(|t| Instant::now() + t),
            cancel: cancel.clone(),
        };
        let _slot = self.acquire_slot(&limits)?;
        crate::eval::run(self, storage, query, start, end, step, &limits)
    }

    /// Waits for a free query slot, giving up on timeout or cancellation.
    fn acquire_slot(&self, limits: &Limits) -> Result<SlotGuard<'_>, QueryError> {
        let max = self.opts.max_concurrency.max(1);
        let mut running = self.slots.running.lock();
        while *running >= max {
            limits.check()?;
            self.slots
                .freed
                .wait_for(&mut running, Duration::from_millis(50));
        }
        *running += 1;
        Ok(SlotGuard(&self.slots))
    }
}
