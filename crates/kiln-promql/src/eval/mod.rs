//! The evaluator.
//!
//! [`run`] parses a query and runs it: an instant query at once, a range query in time
//! slices, each with its own data, caches and step tables, given back before the next
//! slice loads; what the query holds is counted in [`budget`] (samples and bytes, with
//! their limits and peaks). Within a slice (or for an instant query) evaluation has two
//! phases. First ([`prepare`]) the nodes evaluated at the slice's known grid of times
//! (instant selectors, range functions over selectors) get step tables built straight
//! from storage a series at a time ([`stream`]); every other selector's data is loaded
//! once for the whole time range the slice will look at (a selector's window widened by
//! lookback, range, offsets and enclosing subqueries), and range functions over it or
//! over subqueries get step tables too ([`step_table`]), as do binary operations over
//! tables and constants ([`binary_table`]); a query whose value is a table is read off
//! it. Otherwise the expression is
//! evaluated at each step (long ranges split over the cores): every node yields an
//! instant value at one timestamp, a tabled node reads its column, other selectors slice
//! their loaded samples with cursors that move forward. Subquery results are cached per
//! inner timestamp, so overlapping windows of consecutive steps are computed once. What
//! is worked out per series (groups, pairings, signatures, label sets without names) is
//! remembered across steps.

mod aggregate;
mod avg_lanes;
mod binary;
mod binary_table;
mod budget;
mod label_cache;
mod prepare;
mod run;
mod step_table;
mod stream;

use run::SeriesCollector;
pub(crate) use run::run;

pub(crate) use aggregate::{KahanSum, avg, go_float, variance};
pub(crate) use avg_lanes::avg4;
use budget::{Budget, VECTOR_SAMPLE_BYTES};
pub(crate) use label_cache::{DistinctLabels, HashKeyed, LabelCache};
use step_table::StepTable;

use std::collections::HashMap;
use std::sync::Arc;

use kiln_model::{Labels, METRIC_NAME, Timestamp, is_stale_nan};
use kiln_storage::Queryable;

use crate::ast::{self, At, Expr, Selector};
use crate::engine::Limits;
use crate::error::QueryError;
use crate::value::Sample;

/// Range queries with fewer steps per core than this are evaluated on one thread.
const MIN_STEPS_PER_THREAD: usize = 32;

/// Default step of a subquery without one (Prometheus's default evaluation interval).
const DEFAULT_SUBQUERY_STEP: i64 = 60_000;

/// One series of a range vector at one evaluation time: the samples in the window.
#[derive(Debug, Clone)]
///
/// The samples are a window into shared arrays: a range selector's window is a slice of
/// the data loaded for the query, so sliding it from step to step copies nothing.
pub(crate) struct RangeSeries {
    pub(crate) labels: Labels,
    ts: Arc<Vec<Timestamp>>,
    vals: Arc<Vec<f64>>,
    window: std::ops::Range<usize>,
    /// The metric name is to be dropped (delayed name removal through a subquery).
    pub(crate) drop_name: bool,
}

impl RangeSeries {
    /// A range series owning its samples.
    pub(crate) fn owned(
        labels: Labels,
        ts: Vec<Timestamp>,
        vals: Vec<f64>,
        drop_name: bool,
    ) -> Self {
        let window = 0..ts.len();
        RangeSeries {
            labels,
            // `Arc<Vec>`, not `Arc<[T]>`: wrapping a vector moves it, no copy.
            ts: Arc::new(ts),
            vals: Arc::new(vals),
            window,
            drop_name,
        }
    }

    pub(crate) fn ts(&self) -> &[Timestamp] {
        &self.ts[self.window.clone()]
    }

    pub(crate) fn vals(&self) -> &[f64] {
        &self.vals[self.window.clone()]
    }
}

/// A value at one evaluation time.
#[derive(Debug, Clone)]
pub(crate) enum Instant {
    Scalar(f64),
    String(String),
    Vector(Vec<Sample>),
    Range(Vec<RangeSeries>),
}

impl Instant {
    pub(crate) fn type_name(&self) -> &'static str {
        match self {
            Instant::Scalar(_) => "scalar",
            Instant::String(_) => "string",
            Instant::Vector(_) => "instant vector",
            Instant::Range(_) => "range vector",
        }
    }
}

/// A selector's series, loaded once per query.
#[derive(Clone)]
struct Loaded {
    labels: Labels,
    ts: Arc<Vec<Timestamp>>,
    vals: Arc<Vec<f64>>,
    /// Whether any value is a staleness marker (range windows then need filtering).
    has_stale: bool,
}

pub(crate) struct Evaluator<'s> {
    storage: &'s dyn Queryable,
    /// The query's first and last step.
    start: Timestamp,
    end: Timestamp,
    /// The range query's step, 0 for an instant query.
    pub(crate) step: i64,
    lookback: i64,
    /// Keep `__name__` on results of name-dropping operations until the end of the
    /// query (see [`crate::EngineOptions::delayed_name_removal`]).
    delayed_name_removal: bool,
    /// What the query holds, shared with the evaluators of parallel step ranges and
    /// time slices.
    budget: Arc<Budget>,
    /// Selector data by the selector node's address.
    data: Arc<HashMap<usize, Vec<Loaded>>>,
    /// Range-function calls computed for every time they are evaluated at, by the call
    /// node's address (see [`step_table`]).
    tables: Arc<HashMap<usize, StepTable, HashKeyed>>,
    /// Range-function calls over selectors whose tables were built from storage, by
    /// what makes their tables equal (see `stream::call_shape`): the node that has
    /// the table, and the input series its annotations were made from.
    streamed_calls: HashMap<String, (usize, Vec<Labels>)>,
    /// Selectors (by address) whose samples' stored times are read (`timestamp(x)`):
    /// their step tables keep them.
    sample_times_wanted: std::collections::HashSet<usize, HashKeyed>,
    /// Subquery results by (node address, inner evaluation time).
    /// Each subquery node's inner results kept from one evaluation time to the next.
    subquery_cache: HashMap<usize, SubqueryWindow, HashKeyed>,
    /// Values of step-invariant subtrees by node address.
    invariant_cache: HashMap<usize, Instant>,
    /// The nodes (by address) whose value is the same at every step, literals left
    /// out: worked out once per query (see [`invariant_nodes`]).
    invariant: Arc<std::collections::HashSet<usize, HashKeyed>>,
    /// The select hints of each selector: worked out once per query (see
    /// [`selector_hints`]).
    hints: Arc<SelectorHints>,
    /// Where each selector's windows were at the last evaluation, by selector address.
    cursors: HashMap<usize, Cursor>,
    /// Label sets without `__name__`, by the address of the label set they came from
    /// (kept alive beside): the same series lose their name at every step.
    nameless: HashMap<usize, (Labels, Labels), HashKeyed>,
    /// The first input (by address) seen for each nameless label set (by hash).
    nameless_outputs: HashMap<u64, usize, HashKeyed>,
    /// Whether two label sets met so far lose their difference without `__name__` (or
    /// a hash of two outputs met): only then can dropping names make duplicates.
    names_may_collide: bool,
    /// Result label sets known to be distinct (see [`DistinctLabels`]).
    distinct: DistinctLabels,
    /// Aggregation groups by aggregation node address.
    aggregations: HashMap<usize, aggregate::Groups, HashKeyed>,
    pub(crate) label_cache: LabelCache,
    /// Label sets (by address) whose name `rate`/`increase` already checked.
    pub(crate) counter_checked: std::collections::HashSet<usize, HashKeyed>,
    limits: &'s Limits,
    pub(crate) warnings: Vec<String>,
    pub(crate) infos: Vec<String>,
    /// Positions of the function call being evaluated and of its arguments, for
    /// annotations.
    pub(crate) call_pos: (ast::Pos, Vec<ast::Pos>),
}

/// One subquery node's inner results between evaluation times: the non-empty inner
/// steps from the current window's start on, and how far evaluation has got.
#[derive(Default)]
struct SubqueryWindow {
    /// Non-empty inner results, oldest first.
    steps: std::collections::VecDeque<(Timestamp, Vec<Sample>)>,
    /// The first inner step this window was evaluated from.
    from: Option<Timestamp>,
    /// The last inner step evaluated.
    done_until: Option<Timestamp>,
}

impl SubqueryWindow {
    /// Makes the window start at inner step `first`: older steps are dropped; a window
    /// that cannot provide `first` (evaluation went back in time) starts over. Returns
    /// how many samples were dropped.
    fn slide_to(&mut self, first: Timestamp) -> usize {
        let mut dropped = 0;
        if self.from.is_none_or(|from| first < from) {
            dropped = self.steps.iter().map(|(_, v)| v.len()).sum();
            self.steps.clear();
            self.done_until = None;
            self.from = Some(first);
            return dropped;
        }
        while self.steps.front().is_some_and(|(at, _)| *at < first) {
            dropped += self.steps.pop_front().map_or(0, |(_, v)| v.len());
        }
        self.from = Some(first);
        dropped
    }

    /// The next inner step to evaluate for a window starting at `first`.
    fn next_step(&self, first: Timestamp, step: i64) -> Option<Timestamp> {
        match self.done_until {
            Some(d) if d >= first => d.checked_add(step),
            _ => Some(first),
        }
    }
}

/// A selector's window positions at its last evaluation time: for each loaded series,
/// the index of the first sample inside the window and the index past its last.
///
/// Steps mostly move forward in time, so the next window is found by moving these
/// forward a few samples, instead of binary searches over every series' samples at
/// every step (which missed the CPU cache on each probe).
struct Cursor {
    t: Timestamp,
    pos: Vec<(usize, usize)>,
}

/// The first index at or after `from` whose timestamp is above `bound` (`ts` is sorted
/// and `ts[..from]` are all at or below it): a short scan, then a binary search.
fn advance(ts: &[Timestamp], from: usize, bound: Timestamp) -> usize {
    let mut i = from;
    for _ in 0..8 {
        if i >= ts.len() || ts[i] > bound {
            return i;
        }
        i += 1;
    }
    i + ts[i.min(ts.len())..].partition_point(|&x| x <= bound)
}

fn key<T>(node: &T) -> usize {
    std::ptr::from_ref(node) as usize
}

/// Functions whose value changes with the evaluation time even when their arguments do
/// not (Prometheus's `AtModifierUnsafeFunctions`).
pub(crate) const TIME_DEPENDENT_FUNCTIONS: &[&str] = &[
    "days_in_month",
    "day_of_month",
    "day_of_week",
    "day_of_year",
    "hour",
    "minute",
    "month",
    "year",
    "predict_linear",
    "time",
    "timestamp",
];

/// Whether `e` has the same value at every step (literals, selectors and subqueries
/// pinned with `@`, and operations over only such inputs); the addresses of such nodes,
/// literals left out, are added to `out`. One pass over the tree, children first.
fn invariant_nodes(e: &Expr, out: &mut std::collections::HashSet<usize, HashKeyed>) -> bool {
    crate::parser::with_stack(|| {
        let invariant = match e {
            Expr::Number(_) | Expr::String(_) => return true,
            Expr::Selector(sel) | Expr::Matrix { sel, .. } => sel.at.is_some(),
            Expr::Subquery { expr, at, .. } => {
                // Inside a subquery everything is evaluated relative to it.
                invariant_nodes(expr, out);
                at.is_some()
            }
            Expr::Paren(inner) | Expr::Neg(inner) => invariant_nodes(inner, out),
            Expr::Aggregate { expr, param, .. } => {
                let p = param.as_deref().is_none_or(|p| invariant_nodes(p, out));
                invariant_nodes(expr, out) && p
            }
            Expr::Binary { lhs, rhs, .. } => {
                let l = invariant_nodes(lhs, out);
                invariant_nodes(rhs, out) && l
            }
            Expr::Call { func, args, .. } => {
                let mut all = true;
                for a in args {
                    all &= invariant_nodes(a, out);
                }
                all && !TIME_DEPENDENT_FUNCTIONS.contains(&func.as_str())
            }
        };
        if invariant {
            out.insert(key(e));
        }
        invariant
    })
}

/// What each selector is read with, by the selector node's address: the function or
/// aggregation directly around it and the range of its matrix selector, as Prometheus
/// computes its select hints — the nearest enclosing call or aggregation, seen through
/// parentheses, unary minus and subqueries but not through a binary operator (a
/// downsampled source picks its aggregate from it: `min` for `min_over_time`, the
/// counter for `rate`, ...).
pub(super) type SelectorHints = HashMap<usize, (Option<String>, i64)>;

pub(super) fn selector_hints(e: &Expr, func: Option<&str>, out: &mut SelectorHints) {
    crate::parser::with_stack(|| match e {
        Expr::Number(_) | Expr::String(_) => {}
        Expr::Selector(sel) => {
            out.insert(key(sel), (func.map(str::to_owned), 0));
        }
        Expr::Matrix { sel, range } => {
            out.insert(key(sel), (func.map(str::to_owned), *range));
        }
        Expr::Subquery { expr, .. } | Expr::Paren(expr) | Expr::Neg(expr) => {
            selector_hints(expr, func, out);
        }
        Expr::Aggregate {
            op, expr, param, ..
        } => {
            selector_hints(expr, Some(op.name()), out);
            if let Some(p) = param {
                selector_hints(p, Some(op.name()), out);
            }
        }
        Expr::Binary { lhs, rhs, .. } => {
            selector_hints(lhs, None, out);
            selector_hints(rhs, None, out);
        }
        Expr::Call { func, args, .. } => {
            for a in args {
                selector_hints(a, Some(func), out);
            }
        }
    })
}

/// A step-invariant value computed at another step, as evaluation at `ts` gives it: the
/// same values, but an instant vector that an operation produced carries the evaluation
/// time, as every step's result does in Prometheus (`timestamp(abs(x @ 60))` is each
/// step's time). A selector's samples keep their own times (`timestamp(x @ 60)` is 60).
fn restamped(v: Instant, e: &Expr, ts: Timestamp) -> Instant {
    match v {
        Instant::Vector(mut samples) if !matches!(unwrap_parens(e), Expr::Selector(_)) => {
            for s in &mut samples {
                s.t = ts;
            }
            Instant::Vector(samples)
        }
        other => other,
    }
}

/// The step table of node `e` (parentheses aside) in `tables`, if it has one: a
/// selector's, a range-function call's, a binary operation's.
fn table_in<'t>(
    tables: &'t HashMap<usize, StepTable, HashKeyed>,
    e: &Expr,
) -> Option<&'t StepTable> {
    match unwrap_parens(e) {
        Expr::Selector(sel) => tables.get(&key(sel)),
        node @ (Expr::Call { .. } | Expr::Binary { .. }) => tables.get(&key(node)),
        _ => None,
    }
}

/// `e` without enclosing parentheses.
pub(crate) fn unwrap_parens(mut e: &Expr) -> &Expr {
    while let Expr::Paren(inner) = e {
        e = inner;
    }
    e
}

/// Removes the metric name from samples marked for it.
fn settle_names(v: &mut [Sample]) {
    for s in v.iter_mut().filter(|s| s.drop_name) {
        s.labels = drop_name(&s.labels);
        s.drop_name = false;
    }
}

impl Evaluator<'_> {
    /// Finishes an operation's result: drops marked metric names now unless name removal
    /// is delayed to the end of the query, then checks for duplicate label sets.
    fn finish(&mut self, v: Instant) -> Result<Instant, QueryError> {
        self.finish_checked(v, false)
    }

    /// [`finish`](Self::finish). An operation's inputs hold unique label sets, so only
    /// dropping names (or `always_check`: rewriting labels) can make two results equal;
    /// the check for duplicates runs only then.
    fn finish_checked(
        &mut self,
        mut v: Instant,
        always_check: bool,
    ) -> Result<Instant, QueryError> {
        if let Instant::Vector(samples) = &mut v {
            let mut dropped = false;
            if !self.delayed_name_removal {
                for s in samples.iter_mut().filter(|s| s.drop_name) {
                    s.labels = self.without_name(&s.labels);
                    s.drop_name = false;
                    dropped = true;
                }
            }
            // Dropped names can only collide if two series ever lost their name to the
            // same label set in this query (see `without_name`).
            if always_check || (dropped && self.names_may_collide) {
                self.distinct.check(samples)?;
            }
        }
        Ok(v)
    }

    /// `l` without `__name__`, remembered for the next steps (see `nameless`).
    fn without_name(&mut self, l: &Labels) -> Labels {
        if self.nameless.len() > 1_000_000 {
            self.nameless.clear();
            self.nameless_outputs.clear();
            // What was learnt about collisions is gone with the entries.
            self.names_may_collide = true;
        }
        if let Some((_, out)) = self.nameless.get(&l.buffer_addr()) {
            return out.clone();
        }
        let out = drop_name(l);
        // Two label sets that differ only in their name lose their difference here.
        let first = *self
            .nameless_outputs
            .entry(out.hash())
            .or_insert_with(|| l.buffer_addr());
        if first != l.buffer_addr() {
            self.names_may_collide = true;
        }
        self.nameless
            .insert(l.buffer_addr(), (l.clone(), out.clone()));
        out
    }
}

/// An instant vector must not hold two samples with the same labels. Label sets are
/// told apart by their xxh3 hash, compared in full only when hashes meet.
pub(crate) fn check_unique(v: &[Sample]) -> Result<(), QueryError> {
    if v.len() < 2 {
        return Ok(());
    }
    let mut seen: HashMap<u64, &Labels, HashKeyed> =
        HashMap::with_capacity_and_hasher(v.len(), HashKeyed::default());
    let mut collided: Vec<&Labels> = Vec::new();
    for s in v {
        match seen.entry(s.labels.hash()) {
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(&s.labels);
            }
            std::collections::hash_map::Entry::Occupied(e) => {
                if *e.get() == &s.labels || collided.contains(&&s.labels) {
                    return Err(QueryError::execution(
                        "vector cannot contain metrics with the same labelset",
                    ));
                }
                collided.push(&s.labels);
            }
        }
    }
    Ok(())
}

/// A hash of a subset of a label set, computed without building the subset: with
/// `include`, the labels named in `names`; otherwise every label except those and
/// `__name__`. Used as the key of aggregation groups and vector-matching signatures;
/// like Prometheus's signatures it is a 64-bit hash (FNV-1a), collisions being
/// negligible.
pub(crate) fn subset_hash(l: &Labels, names: &[String], include: bool) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
    };
    for (name, value) in l.iter_bytes() {
        let listed = names.iter().any(|n| n.as_bytes() == name);
        let keep = if include {
            listed
        } else {
            !listed && name != METRIC_NAME.as_bytes()
        };
        if keep {
            feed(name);
            feed(value);
        }
    }
    h
}

/// Removes `__name__` from a label set.
pub(crate) fn drop_name(l: &Labels) -> Labels {
    l.retain(|n| n != METRIC_NAME)
}

impl<'s> Evaluator<'s> {
    fn check_deadline(&self) -> Result<(), QueryError> {
        self.limits.check()
    }

    /// An evaluator for a query over `[start, end]` every `step` ms: nothing loaded, no
    /// tables, empty caches, no annotations.
    #[allow(clippy::too_many_arguments)]
    fn new(
        storage: &'s dyn Queryable,
        start: Timestamp,
        end: Timestamp,
        step: i64,
        lookback: i64,
        delayed_name_removal: bool,
        budget: Arc<Budget>,
        limits: &'s Limits,
    ) -> Evaluator<'s> {
        Evaluator {
            storage,
            start,
            end,
            step,
            lookback,
            delayed_name_removal,
            budget,
            data: Arc::default(),
            tables: Arc::default(),
            streamed_calls: HashMap::new(),
            sample_times_wanted: Default::default(),
            subquery_cache: HashMap::default(),
            invariant_cache: HashMap::new(),
            invariant: Arc::default(),
            hints: Arc::default(),
            cursors: HashMap::new(),
            nameless: HashMap::default(),
            nameless_outputs: HashMap::default(),
            names_may_collide: false,
            distinct: DistinctLabels::default(),
            aggregations: HashMap::default(),
            label_cache: LabelCache::default(),
            counter_checked: Default::default(),
            limits,
            warnings: Vec::new(),
            infos: Vec::new(),
            call_pos: Default::default(),
        }
    }

    /// An evaluator for another thread: the same query and loaded data, its own caches
    /// and annotations.
    fn fork(&self) -> Evaluator<'s> {
        let mut ev = Evaluator::new(
            self.storage,
            self.start,
            self.end,
            self.step,
            self.lookback,
            self.delayed_name_removal,
            self.budget.clone(),
            self.limits,
        );
        ev.data = self.data.clone();
        ev.tables = self.tables.clone();
        ev.hints = self.hints.clone();
        ev.sample_times_wanted = self.sample_times_wanted.clone();
        ev.invariant = self.invariant.clone();
        ev
    }

    /// An evaluator for another time slice of the same query: nothing loaded, fresh
    /// caches (label buffers of another slice's data may reuse freed addresses).
    fn fresh(&self) -> Evaluator<'s> {
        let mut ev = self.fork();
        ev.data = Arc::default();
        ev.tables = Arc::default();
        ev
    }

    /// Evaluates `expr` at every step, splitting long step lists over the machine's
    /// cores (each part with its own evaluator over the shared loaded data). Results come
    /// back in step order; annotations are merged.
    fn eval_steps_parallel(
        &mut self,
        expr: &Expr,
        steps: &[Timestamp],
    ) -> Result<Vec<Instant>, QueryError> {
        let parts = self.eval_steps_into(expr, steps, Vec::new, |_, out, _, v| {
            out.push(v);
            Ok(())
        })?;
        Ok(parts.into_iter().flatten().collect())
    }

    /// Evaluates `expr` at every step as [`eval_steps_parallel`](Self::eval_steps_parallel)
    /// does, handing each step's result to `consume` with the part's sink (made by
    /// `init`) instead of keeping them all: the sinks come back one per part, in step
    /// order.
    fn eval_steps_into<R: Send>(
        &mut self,
        expr: &Expr,
        steps: &[Timestamp],
        init: impl Fn() -> R + Sync,
        consume: impl Fn(&mut Evaluator<'s>, &mut R, Timestamp, Instant) -> Result<(), QueryError>
        + Sync,
    ) -> Result<Vec<R>, QueryError> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let parts = cores.min(steps.len() / MIN_STEPS_PER_THREAD).max(1);
        let run_part = |ev: &mut Evaluator<'s>, part: &[Timestamp]| -> Result<R, QueryError> {
            let mut sink = init();
            for &t in part {
                let v = ev.eval(expr, t)?;
                consume(ev, &mut sink, t, v)?;
            }
            Ok(sink)
        };
        if parts == 1 {
            return Ok(vec![run_part(self, steps)?]);
        }
        let chunk = steps.len().div_ceil(parts);
        let forks: Vec<Evaluator<'s>> = (0..parts).map(|_| self.fork()).collect();
        let run_part = &run_part;
        let outcomes: Vec<(Result<R, QueryError>, Evaluator<'s>)> = std::thread::scope(|scope| {
            let handles: Vec<_> = forks
                .into_iter()
                .zip(steps.chunks(chunk))
                .map(|(mut ev, part)| {
                    scope.spawn(move || {
                        let r = run_part(&mut ev, part);
                        (r, ev)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        (
                            Err(QueryError::execution("query evaluation panicked")),
                            self.fork(),
                        )
                    })
                })
                .collect()
        });
        let mut out = Vec::with_capacity(parts);
        for (r, ev) in outcomes {
            for w in ev.warnings {
                self.warn(w);
            }
            for i in ev.infos {
                self.info(i);
            }
            out.push(r?);
        }
        Ok(out)
    }

    /// Counts `n` more samples held by the query against the budget.
    fn hold_samples(&mut self, n: usize) -> Result<(), QueryError> {
        self.budget.hold(n, n * VECTOR_SAMPLE_BYTES)
    }

    /// The evaluation time of a node with `at`/`offset` at step time `ts`.
    /// The query's first and last step times.
    pub(crate) fn bounds(&self) -> (Timestamp, Timestamp) {
        (self.start, self.end)
    }

    pub(crate) fn shifted(&self, at: Option<At>, offset: i64, ts: Timestamp) -> Timestamp {
        let base = match at {
            None => ts,
            Some(At::Start) => self.start,
            Some(At::End) => self.end,
            Some(At::Time(t)) => t,
        };
        base.saturating_sub(offset)
    }

    /// The `[lo, hi]` evaluation times of a node with `at`/`offset` evaluated over
    /// `[lo, hi]`.
    fn shifted_span(
        &self,
        at: Option<At>,
        offset: i64,
        lo: Timestamp,
        hi: Timestamp,
    ) -> (Timestamp, Timestamp) {
        match at {
            None => (lo.saturating_sub(offset), hi.saturating_sub(offset)),
            Some(_) => {
                let t = self.shifted(at, offset, lo);
                (t, t)
            }
        }
    }

    /// Evaluates `e` at time `ts`.
    pub(crate) fn eval(&mut self, e: &Expr, ts: Timestamp) -> Result<Instant, QueryError> {
        // The tree is as deep as the query nests: grow the stack on the heap rather than
        // overflow a small one (the runtime's threads have 2 MiB).
        crate::parser::with_stack(|| self.eval_cached(e, ts))
    }

    fn eval_cached(&mut self, e: &Expr, ts: Timestamp) -> Result<Instant, QueryError> {
        self.check_deadline()?;
        // A step-invariant subtree (its selectors all pinned with `@`) has the same value
        // at every step: compute it once per query.
        if self.step != 0 && self.invariant.contains(&key(e)) {
            let k = key(e);
            if let Some(v) = self.invariant_cache.get(&k) {
                return Ok(restamped(v.clone(), e, ts));
            }
            let v = self.eval_node(e, ts)?;
            self.invariant_cache.insert(k, v.clone());
            return Ok(v);
        }
        self.eval_node(e, ts)
    }

    fn eval_node(&mut self, e: &Expr, ts: Timestamp) -> Result<Instant, QueryError> {
        match e {
            Expr::Number(v) => Ok(Instant::Scalar(*v)),
            Expr::String(s) => Ok(Instant::String(s.clone())),
            Expr::Paren(inner) => self.eval(inner, ts),
            Expr::Neg(inner) => {
                let v = match self.eval(inner, ts)? {
                    Instant::Scalar(v) => Instant::Scalar(-v),
                    Instant::Vector(v) => Instant::Vector(
                        v.into_iter()
                            .map(|s| Sample {
                                labels: s.labels,
                                t: s.t,
                                v: -s.v,
                                drop_name: true,
                            })
                            .collect(),
                    ),
                    other => {
                        return Err(QueryError::bad_data(format!(
                            "unary minus on a {}",
                            other.type_name()
                        )));
                    }
                };
                self.finish(v)
            }
            Expr::Selector(sel) => Ok(Instant::Vector(self.vector_at(sel, ts))),
            Expr::Matrix { sel, range } => Ok(Instant::Range(self.range_at(sel, *range, ts))),
            Expr::Subquery {
                expr,
                range,
                step,
                offset,
                at,
            } => {
                let step = step.unwrap_or(DEFAULT_SUBQUERY_STEP).max(1);
                let t = self.shifted(*at, *offset, ts);
                Ok(Instant::Range(self.subquery_at(e, expr, *range, step, t)?))
            }
            Expr::Aggregate { expr, param, .. } => {
                if param.is_none() {
                    // Over a step table: aggregated from the table in place.
                    let tables = self.tables.clone();
                    if let Some(column) = table_in(&tables, expr).and_then(|t| t.column(ts))
                        && let Some(v) = aggregate::eval_column(self, e, &column, ts)
                    {
                        return v;
                    }
                }
                let param = match param {
                    Some(p) => Some(self.eval(p, ts)?),
                    None => None,
                };
                let Instant::Vector(v) = self.eval(expr, ts)? else {
                    return Err(QueryError::bad_data("aggregation over a non-vector"));
                };
                aggregate::eval(self, e, v, param, ts)
            }
            Expr::Binary {
                op,
                lhs,
                rhs,
                return_bool,
                matching,
            } => {
                // Computed over its operands' tables (see `binary_table`): final labels.
                if let Some(table) = self.tables.get(&key(e))
                    && let Some(v) = table.vector_at(ts)
                {
                    return Ok(Instant::Vector(v));
                }
                let l = self.eval(lhs, ts)?;
                let r = self.eval(rhs, ts)?;
                let v = binary::eval(*op, l, r, *return_bool, matching, ts, &mut self.label_cache)?;
                self.finish(v)
            }
            Expr::Call {
                func,
                args,
                pos,
                arg_pos,
            } => {
                if let Some(table) = self.tables.get(&key(e)) {
                    if let Some(v) = table.vector_at(ts) {
                        // Labels are final already (names dropped, checked distinct).
                        return Ok(Instant::Vector(v));
                    }
                    debug_assert!(
                        !table.from_storage,
                        "call table built from storage evaluated off its grid at {ts}"
                    );
                }
                let v = crate::functions::call(self, func, args, ts, *pos, arg_pos)?;
                // These rewrite labels, so their results may collide whatever the names.
                let relabels = matches!(func.as_str(), "label_replace" | "label_join");
                self.finish_checked(v, relabels)
            }
        }
    }

    /// Like [`vector_at`](Self::vector_at), but each sample keeps its stored timestamp
    /// (for `timestamp()`).
    pub(crate) fn vector_at_sample_times(&mut self, sel: &Selector, ts: Timestamp) -> Vec<Sample> {
        self.select_at(sel, ts, true)
    }

    /// The instant vector a selector yields at `ts`: each series' newest sample in the
    /// lookback window `(t - lookback, t]`, unless it is a staleness marker.
    fn vector_at(&mut self, sel: &Selector, ts: Timestamp) -> Vec<Sample> {
        self.select_at(sel, ts, false)
    }

    fn select_at(&mut self, sel: &Selector, ts: Timestamp, sample_times: bool) -> Vec<Sample> {
        if let Some(table) = self.tables.get(&key(sel)) {
            // Built from storage for the grid this selector is evaluated at; it has no
            // loaded data to fall back on.
            let v = if sample_times {
                table.vector_at_sample_times(ts)
            } else {
                table.vector_at(ts)
            };
            debug_assert!(v.is_some(), "selector table evaluated off its grid at {ts}");
            return v.unwrap_or_default();
        }
        let t = self.shifted(sel.at, sel.offset, ts);
        let lookback = self.lookback;
        let mut out = Vec::with_capacity(self.data.get(&key(sel)).map_or(0, Vec::len));
        self.windows(sel, t - lookback, t, |s, _lo, hi| {
            if hi == 0 {
                return;
            }
            let (st, sv) = (s.ts[hi - 1], s.vals[hi - 1]);
            if st <= t - lookback || is_stale_nan(sv) {
                return;
            }
            out.push(Sample::new(
                s.labels.clone(),
                if sample_times { st } else { ts },
                sv,
            ));
        });
        out
    }

    /// Calls `f` with each loaded series of `sel` and the index range of its samples in
    /// `(from, to]`, moving the selector's cursor there (see [`Cursor`]).
    fn windows(
        &mut self,
        sel: &Selector,
        from: Timestamp,
        to: Timestamp,
        mut f: impl FnMut(&Loaded, usize, usize),
    ) {
        let k = key(sel);
        let data = self.data.clone();
        let Some(series) = data.get(&k) else {
            return;
        };
        let cur = self.cursors.entry(k).or_insert_with(|| Cursor {
            t: Timestamp::MIN,
            pos: vec![(0, 0); series.len()],
        });
        // Going back in time (a subquery's next outer step): start over.
        if to < cur.t {
            cur.pos.iter_mut().for_each(|p| *p = (0, 0));
        }
        cur.t = to;
        for (s, p) in series.iter().zip(cur.pos.iter_mut()) {
            let lo = advance(&s.ts, p.0, from);
            let hi = advance(&s.ts, p.1.max(lo), to);
            *p = (lo, hi);
            f(s, lo, hi);
        }
    }

    /// The range vector a matrix selector yields at `ts`: samples in `(t - range, t]`,
    /// staleness markers left out.
    fn range_at(&mut self, sel: &Selector, range: i64, ts: Timestamp) -> Vec<RangeSeries> {
        let t = self.shifted(sel.at, sel.offset, ts);
        let mut out = Vec::with_capacity(self.data.get(&key(sel)).map_or(0, Vec::len));
        self.windows(sel, t - range, t, |s, lo, hi| {
            if lo >= hi {
                return;
            }
            if !s.has_stale {
                out.push(RangeSeries {
                    labels: s.labels.clone(),
                    ts: s.ts.clone(),
                    vals: s.vals.clone(),
                    window: lo..hi,
                    drop_name: false,
                });
                return;
            }
            let (mut ts, mut vals) = (Vec::with_capacity(hi - lo), Vec::with_capacity(hi - lo));
            for i in lo..hi {
                if !is_stale_nan(s.vals[i]) {
                    ts.push(s.ts[i]);
                    vals.push(s.vals[i]);
                }
            }
            if !ts.is_empty() {
                out.push(RangeSeries::owned(s.labels.clone(), ts, vals, false));
            }
        });
        out
    }

    /// A subquery's range vector at evaluation time `t`: the inner expression at every
    /// multiple of `step` in `(t - range, t]`.
    ///
    /// Evaluation times mostly move forward, so the inner results are kept per node as a
    /// sliding window ([`SubqueryWindow`]): steps before the window are dropped, steps
    /// already evaluated are reused, and only the new ones are evaluated. Inner steps
    /// that return nothing are not stored, so memory follows the samples (which count
    /// against the sample budget), never the number of steps.
    fn subquery_at(
        &mut self,
        node: &Expr,
        inner: &Expr,
        range: i64,
        step: i64,
        t: Timestamp,
    ) -> Result<Vec<RangeSeries>, QueryError> {
        let first = (t.saturating_sub(range).div_euclid(step) * step).saturating_add(step);
        let k = key(node);
        let mut window = self.subquery_cache.remove(&k).unwrap_or_default();
        let dropped = window.slide_to(first);
        self.budget.release(dropped, dropped * VECTOR_SAMPLE_BYTES);
        let mut it = window.next_step(first, step);
        while let Some(at) = it.filter(|&at| at <= t) {
            let v = match self.eval(inner, at)? {
                Instant::Vector(v) => v,
                Instant::Scalar(v) => vec![Sample::new(Labels::empty(), at, v)],
                other => {
                    return Err(QueryError::bad_data(format!(
                        "subquery over a {}",
                        other.type_name()
                    )));
                }
            };
            if !v.is_empty() {
                self.hold_samples(v.len())?;
                window.steps.push_back((at, v));
            }
            window.done_until = Some(at);
            it = at.checked_add(step);
        }
        // Series in order of first appearance. The window's vectors are alive
        // throughout, so a label set's address identifies it; the same series mostly
        // share one address across inner steps, and only new addresses are hashed by
        // content.
        let mut by_addr: HashMap<usize, usize, HashKeyed> = HashMap::default();
        let mut by_labels: HashMap<Labels, usize, HashKeyed> = HashMap::default();
        let mut series: Vec<(Labels, Vec<Timestamp>, Vec<f64>, bool)> = Vec::new();
        for (at, samples) in window.steps.iter().take_while(|(at, _)| *at <= t) {
            for s in samples {
                let addr = s.labels.buffer_addr();
                let i = match by_addr.get(&addr) {
                    Some(&i) => i,
                    None => {
                        let i = *by_labels.entry(s.labels.clone()).or_insert_with(|| {
                            series.push((s.labels.clone(), Vec::new(), Vec::new(), s.drop_name));
                            series.len() - 1
                        });
                        by_addr.insert(addr, i);
                        i
                    }
                };
                series[i].1.push(*at);
                series[i].2.push(s.v);
            }
        }
        self.subquery_cache.insert(k, window);
        Ok(series
            .into_iter()
            .map(|(l, ts, vals, drop)| RangeSeries::owned(l, ts, vals, drop))
            .collect())
    }

    /// Where argument `i` of the current function call starts.
    pub(crate) fn arg_pos(&self, i: usize) -> ast::Pos {
        self.call_pos.1.get(i).copied().unwrap_or(self.call_pos.0)
    }

    pub(crate) fn info(&mut self, msg: String) {
        if !self.infos.contains(&msg) {
            self.infos.push(msg);
        }
    }

    pub(crate) fn warn(&mut self, msg: String) {
        if !self.warnings.contains(&msg) {
            self.warnings.push(msg);
        }
    }
}
