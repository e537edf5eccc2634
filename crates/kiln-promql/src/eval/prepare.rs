//! Before evaluation: the step tables of instant selectors and of range-function calls
//! over selectors built from storage where the grid of evaluation times is known (see
//! [`super::stream`]); elsewhere every selector's data loaded (decoded on all cores) for
//! the whole window the query reads, and the step tables of range-function calls built
//! from it (see [`super::step_table`]).

use std::sync::Arc;

use kiln_model::{Labels, Timestamp, is_stale_nan};

use super::budget::Budget;
use super::step_table::{self, Grid, StepTable};
use super::{
    DEFAULT_SUBQUERY_STEP, Evaluator, Instant, Loaded, SeriesCollector, key, unwrap_parens,
};
use crate::ast::{self, Expr, Selector};
use crate::error::QueryError;
use crate::functions::range::GridSource;
use crate::value::Sample;

/// The most inner steps a subquery's step table is built over (one time and one result
/// slot each, allocated up front).
const MAX_TABLE_STEPS: usize = 1 << 20;

/// Selectors with fewer series per core than this are decoded on one thread.
const MIN_SERIES_PER_LOAD_THREAD: usize = 256;

/// One series' float samples, decoded.
pub(super) fn decode(
    series: &dyn kiln_storage::Series,
    budget: &Budget,
) -> Result<Loaded, QueryError> {
    let mut it = series.iterator();
    let (mut ts, mut vals) = (Vec::new(), Vec::new());
    it.read_floats(&mut ts, &mut vals);
    if let Some(e) = it.err() {
        return Err(e.clone().into());
    }
    budget.hold_loaded(ts.len())?;
    // Reserved per chunk, so mostly exact; shrinking copies, so only for real slack.
    if ts.capacity() - ts.len() > ts.len() / 8 {
        ts.shrink_to_fit();
        vals.shrink_to_fit();
    }
    let has_stale = vals.iter().any(|v| is_stale_nan(*v));
    Ok(Loaded {
        labels: series.labels().clone(),
        ts: Arc::new(ts),
        vals: Arc::new(vals),
        has_stale,
    })
}

/// The inner steps of a subquery with `range` and `step` whose windows end at every
/// time in `[a, b]`: every multiple of the step in `(a - range, b]` (`None` when
/// there is none).
pub(super) fn subquery_grid(a: Timestamp, b: Timestamp, range: i64, step: i64) -> Option<Grid> {
    let first = (a.saturating_sub(range).div_euclid(step) * step).saturating_add(step);
    (b >= first).then(|| Grid {
        first,
        step,
        count: usize::try_from(b.saturating_sub(first) / step).map_or(usize::MAX, |c| c + 1),
    })
}

impl Evaluator<'_> {
    /// Loads every selector's data for evaluation times `[lo, hi]` of `e`, and builds
    /// the step tables of range-function calls. `grid`: the times `e` is evaluated at
    /// within `[lo, hi]`, when exactly known (it is not inside a subquery whose windows
    /// leave gaps between the outer steps).
    pub(super) fn preload(
        &mut self,
        e: &Expr,
        lo: Timestamp,
        hi: Timestamp,
        grid: Option<Grid>,
    ) -> Result<(), QueryError> {
        crate::parser::with_stack(|| self.preload_node(e, lo, hi, grid))
    }

    fn preload_node(
        &mut self,
        e: &Expr,
        lo: Timestamp,
        hi: Timestamp,
        grid: Option<Grid>,
    ) -> Result<(), QueryError> {
        match e {
            Expr::Number(_) | Expr::String(_) => Ok(()),
            Expr::Selector(sel) => {
                // At known grid times the selector's table is built from storage a
                // series at a time (see `stream`), instead of loading its window.
                if let Some(g) = grid.filter(|g| g.count >= 2)
                    && sel.at.is_none()
                    && self.stream_selector(sel, g)?
                {
                    return Ok(());
                }
                let (a, b) = self.shifted_span(sel.at, sel.offset, lo, hi);
                self.load(sel, a.saturating_sub(self.lookback), b)
            }
            Expr::Matrix { sel, range } => {
                let (a, b) = self.shifted_span(sel.at, sel.offset, lo, hi);
                self.load(sel, a.saturating_sub(*range), b)
            }
            Expr::Subquery {
                expr,
                range,
                step,
                offset,
                at,
            } => {
                let (a, b) = self.shifted_span(*at, *offset, lo, hi);
                // The inner expression runs at every multiple of the step in each
                // window `(t - range, t]`; over all outer times that is every multiple
                // in `(a - range, b]` when the windows of consecutive outer times
                // touch or overlap.
                let step = step.unwrap_or(DEFAULT_SUBQUERY_STEP).max(1);
                let windows_touch = at.is_some()
                    || grid.is_some_and(|g| g.count == 1 || (g.step > 0 && g.step <= *range));
                let inner = subquery_grid(a, b, *range, step).filter(|_| windows_touch);
                self.preload(expr, a.saturating_sub(*range), b, inner)
            }
            Expr::Aggregate { expr, param, .. } => {
                if let Some(p) = param {
                    self.preload(p, lo, hi, grid)?;
                }
                self.preload(expr, lo, hi, grid)
            }
            Expr::Binary { lhs, rhs, .. } => {
                self.preload(lhs, lo, hi, grid)?;
                self.preload(rhs, lo, hi, grid)?;
                match grid {
                    Some(g) if g.count >= 2 => self.build_binary_table(e, g),
                    _ => Ok(()),
                }
            }
            Expr::Neg(e) | Expr::Paren(e) => self.preload(e, lo, hi, grid),
            Expr::Call {
                func,
                args,
                arg_pos,
                ..
            } => {
                if let Some(g) = grid.filter(|g| g.count >= 2)
                    && !self.invariant.contains(&key(e))
                    && self.stream_call(e, func, args, arg_pos, g)?
                {
                    return Ok(());
                }
                // `timestamp(x)` reads the stored times of selector `x`'s samples.
                if func == "timestamp"
                    && let Some(Expr::Selector(sel)) = args.first().map(unwrap_parens)
                {
                    self.sample_times_wanted.insert(key(sel));
                }
                for a in args {
                    self.preload(a, lo, hi, grid)?;
                }
                match grid {
                    Some(g) if g.count >= 2 && !self.invariant.contains(&key(e)) => {
                        self.build_table(e, func, args, arg_pos, g)
                    }
                    _ => Ok(()),
                }
            }
        }
    }

    /// Keeps `table` for the node at address `node`, counted in what the query holds.
    pub(super) fn keep_table(&mut self, node: usize, table: StepTable) -> Result<(), QueryError> {
        self.budget.hold(0, table.bytes())?;
        Arc::make_mut(&mut self.tables).insert(node, table);
        Ok(())
    }

    /// Builds the step table of call `e` over `grid` when it is a [`GridCall`]
    /// (see [`step_table`]), with the annotations its evaluation would give.
    ///
    /// [`GridCall`]: crate::functions::range::GridCall
    fn build_table(
        &mut self,
        e: &Expr,
        func: &str,
        args: &[Expr],
        arg_pos: &[ast::Pos],
        grid: Grid,
    ) -> Result<(), QueryError> {
        let Some(call) = crate::functions::grid_call(self, func, args)? else {
            return Ok(());
        };
        let data = self.data.clone();
        let gathered;
        let series = match call.source {
            GridSource::Selector(sel) => match data.get(&key(sel)) {
                Some(series) => series,
                None => return Ok(()),
            },
            GridSource::Subquery(node) => match self.subquery_series(node, grid)? {
                Some(series) => {
                    gathered = series;
                    &gathered
                }
                None => return Ok(()),
            },
        };
        let keep = crate::functions::range::keeps_name(func);
        let Some((table, inputs)) =
            step_table::build(series, &call, grid, keep, self.delayed_name_removal)
        else {
            return Ok(());
        };
        crate::functions::range::annotate(self, func, inputs.iter(), &call.scalars, arg_pos);
        self.keep_table(key(e), table)
    }

    /// The series of subquery `node` over all its windows at the times of `grid`: its
    /// inner expression evaluated at every inner step (on all cores), the results
    /// gathered per label set in time order — what [`subquery_at`](Self::subquery_at)
    /// slices windows from, step by step. `None` when that is not possible here (the
    /// step-by-step path then runs and reports any error at its step).
    fn subquery_series(
        &mut self,
        node: &Expr,
        grid: Grid,
    ) -> Result<Option<Vec<Loaded>>, QueryError> {
        let Expr::Subquery {
            expr,
            range,
            step,
            offset,
            at: None,
        } = node
        else {
            return Ok(None);
        };
        // With delayed name removal the inner samples carry per-sample name marks a
        // table does not keep.
        if self.delayed_name_removal || grid.step > *range {
            return Ok(None);
        }
        let step = step.unwrap_or(DEFAULT_SUBQUERY_STEP).max(1);
        let (a, b) = (
            grid.first.saturating_sub(*offset),
            grid.time(grid.count - 1).saturating_sub(*offset),
        );
        // The table holds every inner step's result at once: for a grid larger than
        // [`MAX_TABLE_STEPS`] the step-by-step path (which holds one window) is used.
        let Some(inner) = subquery_grid(a, b, *range, step).filter(|g| g.count <= MAX_TABLE_STEPS)
        else {
            return Ok(None);
        };
        // A range-function call inside (`rate(x[5m])[10m:]`) has its own table over
        // these very times: its columns are the series.
        if let Some(table) = self.tables.get(&key(unwrap_parens(expr)))
            && let Some(series) = table.series_over(inner)
        {
            self.hold_samples(series.iter().map(|s| s.ts.len()).sum())?;
            return Ok(Some(series));
        }
        let times: Vec<Timestamp> = (0..inner.count).map(|k| inner.time(k)).collect();
        let Ok(results) = self.eval_steps_parallel(expr, &times) else {
            return Ok(None);
        };
        let mut collected = SeriesCollector::default();
        for (&t, value) in times.iter().zip(results) {
            let samples = match value {
                Instant::Vector(v) => v,
                Instant::Scalar(v) => vec![Sample::new(Labels::empty(), t, v)],
                _ => return Ok(None),
            };
            self.hold_samples(samples.len())?;
            if samples.iter().any(|s| s.drop_name) {
                return Ok(None);
            }
            for s in samples {
                collected.points(s.labels).push((t, s.v));
            }
        }
        Ok(Some(
            collected
                .series
                .into_iter()
                .map(|s| {
                    let (ts, vals): (Vec<Timestamp>, Vec<f64>) = s.points.into_iter().unzip();
                    Loaded {
                        has_stale: vals.iter().any(|v| is_stale_nan(*v)),
                        labels: s.labels,
                        ts: Arc::new(ts),
                        vals: Arc::new(vals),
                    }
                })
                .collect(),
        ))
    }

    /// Loads the samples of `sel`'s series in `[mint, maxt]`, decoding them on all cores
    /// when there are many.
    fn load(&mut self, sel: &Selector, mint: Timestamp, maxt: Timestamp) -> Result<(), QueryError> {
        self.with_selected(sel, mint, maxt, |ev, series, warnings| {
            ev.warnings.extend(warnings);
            ev.load_series(sel, &series)
        })
    }

    /// Hands `f` the series of `sel` with samples in `[mint, maxt]`, not decoded yet,
    /// and the storage's warnings.
    pub(super) fn with_selected<T>(
        &mut self,
        sel: &Selector,
        mint: Timestamp,
        maxt: Timestamp,
        f: impl FnOnce(
            &mut Self,
            Vec<Box<dyn kiln_storage::Series + '_>>,
            Vec<String>,
        ) -> Result<T, QueryError>,
    ) -> Result<T, QueryError> {
        let querier = self.storage.querier(mint, maxt)?;
        let hints = self
            .hints
            .get(&key(sel))
            .map(|(func, range)| kiln_storage::SelectHints {
                start: mint,
                end: maxt,
                step: self.step,
                range: *range,
                func: func.clone(),
            });
        let mut set = querier.select(true, hints.as_ref(), &sel.matchers);
        let mut series = Vec::new();
        while let Some(s) = set.next() {
            series.push(s);
        }
        if let Some(e) = set.err() {
            return Err(e.clone().into());
        }
        let warnings = set.warnings();
        f(self, series, warnings)
    }

    /// Decodes `series` of `sel` (on all cores when there are many) as its data.
    fn load_series(
        &mut self,
        sel: &Selector,
        series: &[Box<dyn kiln_storage::Series + '_>],
    ) -> Result<(), QueryError> {
        let k = key(sel);
        let budget = &*self.budget;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let parts = cores.min(series.len() / MIN_SERIES_PER_LOAD_THREAD).max(1);
        let out = if parts == 1 {
            series
                .iter()
                .map(|s| decode(s.as_ref(), budget))
                .collect::<Result<Vec<_>, _>>()?
        } else {
            let chunk = series.len().div_ceil(parts);
            let parts: Vec<Result<Vec<Loaded>, QueryError>> = std::thread::scope(|scope| {
                let handles: Vec<_> = series
                    .chunks(chunk)
                    .map(|part| {
                        scope.spawn(move || {
                            part.iter()
                                .map(|s| decode(s.as_ref(), budget))
                                .collect::<Result<Vec<_>, _>>()
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| {
                        h.join().unwrap_or_else(|_| {
                            Err(QueryError::execution("decoding series panicked"))
                        })
                    })
                    .collect()
            });
            let mut out = Vec::with_capacity(series.len());
            for p in parts {
                out.extend(p?);
            }
            out
        };
        Arc::make_mut(&mut self.data).insert(k, out);
        Ok(())
    }
}
