//! Running a query: parsing, the instant query, and the range query in time slices,
//! each slice's step results gathered into the result's series.

use std::collections::HashMap;
use std::sync::Arc;

use kiln_model::{Labels, Timestamp};
use kiln_storage::Queryable;

use super::budget::Budget;
use super::step_table::{Grid, StepTable};
use super::{
    Evaluator, HashKeyed, Instant, check_unique, drop_name, invariant_nodes, settle_names, table_in,
};
use crate::ast::{self, Expr, ValueType};
use crate::engine::{Engine, Limits};
use crate::error::QueryError;
use crate::value::{QueryResult, Series, Value};

/// Runs a query from `start` to `end` every `step` ms (`step` 0: an instant query).
pub(crate) fn run(
    engine: &Engine,
    storage: &dyn Queryable,
    query: &str,
    start: Timestamp,
    end: Timestamp,
    step: i64,
    limits: &Limits,
) -> Result<QueryResult, QueryError> {
    let expr = ast::parse(
        query,
        ast::DurationParams {
            step_ms: step,
            range_ms: end - start,
        },
    )?;
    let budget = Arc::new(Budget::new(
        engine.opts.max_samples,
        engine.opts.max_memory_bytes,
    ));
    let mut ev = Evaluator::new(
        storage,
        start,
        end,
        step,
        engine.opts.lookback_delta,
        engine.opts.delayed_name_removal,
        budget,
        limits,
    );
    let ty = expr.value_type();
    if step != 0 && !matches!(ty, ValueType::Scalar | ValueType::Vector) {
        let name = if ty == ValueType::Matrix {
            "range vector"
        } else {
            "string"
        };
        return Err(QueryError::invalid_query(format!(
            "invalid expression type \"{name}\" for range query, must be Scalar or instant Vector"
        )));
    }
    let grid = if step == 0 {
        Grid {
            first: start,
            step: 0,
            count: 1,
        }
    } else {
        Grid {
            first: start,
            step,
            count: ((end - start) / step) as usize + 1,
        }
    };
    let mut invariant = std::collections::HashSet::default();
    invariant_nodes(&expr, &mut invariant);
    ev.invariant = Arc::new(invariant);
    let mut hints = super::SelectorHints::new();
    super::selector_hints(&expr, None, &mut hints);
    ev.hints = Arc::new(hints);
    let mut slices = 1;
    let value = if step == 0 {
        ev.preload(&expr, start, end, Some(grid))?;
        match ev.eval(&expr, start)? {
            Instant::Scalar(v) => Value::Scalar { t: start, v },
            Instant::String(v) => Value::String { t: start, v },
            Instant::Vector(mut v) => {
                settle_names(&mut v);
                check_unique(&v)?;
                Value::Vector(v)
            }
            Instant::Range(r) => Value::Matrix(
                r.into_iter()
                    .map(|s| {
                        let points = s
                            .ts()
                            .iter()
                            .copied()
                            .zip(s.vals().iter().copied())
                            .collect();
                        let labels = if s.drop_name {
                            drop_name(&s.labels)
                        } else {
                            s.labels
                        };
                        Series { labels, points }
                    })
                    .collect(),
            ),
        }
    } else {
        // In time slices: each slice loads its selectors' data for its own times (plus
        // the windows reaching back from them), is evaluated, and gives its data back
        // before the next one loads; only the result grows across slices.
        let plan = slice_plan(&expr, grid, ev.lookback);
        slices = plan.len();
        let mut series = SeriesCollector::default();
        for part in plan {
            for collected in ev.eval_slice(&expr, part)? {
                series.append(collected);
            }
        }
        let mut out = series.series;
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        Value::Matrix(out)
    };
    let mut stats = ev.budget.stats();
    stats.slices = slices;
    stats.series = match &value {
        Value::Vector(v) => v.len(),
        Value::Matrix(m) => m.len(),
        _ => 0,
    };
    Ok(QueryResult {
        value,
        warnings: ev.warnings,
        infos: ev.infos,
        stats,
    })
}

/// A range query's steps split into time slices: each spans at least
/// [`SLICE_WINDOWS`] times the longest window the query reads back over (lookback,
/// ranges, subquery ranges) and [`SLICE_MIN_STEPS`] steps, so re-reading the windows at
/// slice edges costs little, and most dashboard queries are one slice.
fn slice_plan(expr: &Expr, grid: Grid, lookback: i64) -> Vec<Grid> {
    let window = longest_window(expr, lookback);
    let span = window
        .saturating_mul(SLICE_WINDOWS)
        .max(grid.step.saturating_mul(SLICE_MIN_STEPS as i64))
        .max(SLICE_MIN_SPAN_MS);
    let per_slice = usize::try_from(span / grid.step.max(1))
        .unwrap_or(usize::MAX)
        .max(1);
    let mut out = Vec::new();
    let mut k = 0;
    while k < grid.count {
        let count = per_slice.min(grid.count - k);
        out.push(Grid {
            first: grid.time(k),
            step: grid.step,
            count,
        });
        k += count;
    }
    out
}

/// Slices span at least this many of the query's longest window...
const SLICE_WINDOWS: i64 = 8;
/// ...and at least this many steps...
const SLICE_MIN_STEPS: usize = 256;
/// ...and at least this long (2 h: the usual dashboard range is one slice).
const SLICE_MIN_SPAN_MS: i64 = 2 * 3_600_000;

/// The longest span a query reads back from an evaluation time: the lookback of
/// instant selectors, the range of range selectors, a subquery's range plus what its
/// inner expression reads back. `@`-pinned parts read a fixed window and are left out.
fn longest_window(e: &Expr, lookback: i64) -> i64 {
    crate::parser::with_stack(|| match e {
        Expr::Number(_) | Expr::String(_) => 0,
        Expr::Selector(sel) => {
            if sel.at.is_some() {
                0
            } else {
                lookback
            }
        }
        Expr::Matrix { sel, range } => {
            if sel.at.is_some() {
                0
            } else {
                *range
            }
        }
        Expr::Subquery {
            expr, range, at, ..
        } => {
            if at.is_some() {
                0
            } else {
                range.saturating_add(longest_window(expr, lookback))
            }
        }
        Expr::Paren(inner) | Expr::Neg(inner) => longest_window(inner, lookback),
        Expr::Aggregate { expr, param, .. } => longest_window(expr, lookback)
            .max(param.as_deref().map_or(0, |p| longest_window(p, lookback))),
        Expr::Binary { lhs, rhs, .. } => {
            longest_window(lhs, lookback).max(longest_window(rhs, lookback))
        }
        Expr::Call { args, .. } => args
            .iter()
            .map(|a| longest_window(a, lookback))
            .max()
            .unwrap_or(0),
    })
}

impl<'s> Evaluator<'s> {
    /// Evaluates one time slice of a range query with the slice's own data, caches and
    /// step tables, each step's result folded into its series as it comes (one
    /// collector per thread, in step order), then gives back what it held but the
    /// result. Annotations are kept.
    fn eval_slice(&mut self, expr: &Expr, part: Grid) -> Result<Vec<SeriesCollector>, QueryError> {
        let (samples_before, bytes_before) = self.budget.held();
        let mut ev = self.fresh();
        let last = part.time(part.count - 1);
        ev.preload(expr, part.first, last, Some(part))?;
        let results = match table_in(&ev.tables, expr).filter(|t| t.covers(part)) {
            // The whole value is a table: read off it series by series.
            Some(table) => Ok(vec![SeriesCollector::from_table(table)]),
            None => {
                let steps: Vec<Timestamp> = (0..part.count).map(|k| part.time(k)).collect();
                ev.eval_steps_into(expr, &steps, SeriesCollector::default, fold_step)
            }
        };
        for w in std::mem::take(&mut ev.warnings) {
            self.warn(w);
        }
        for i in std::mem::take(&mut ev.infos) {
            self.info(i);
        }
        drop(ev);
        let (samples, bytes) = self.budget.held();
        self.budget.release(
            samples.saturating_sub(samples_before),
            bytes.saturating_sub(bytes_before),
        );
        let results = results?;
        // The slice's result stays held, as part of the query's.
        let points = results
            .iter()
            .flat_map(|c| c.series.iter())
            .map(|s| s.points.len())
            .sum();
        self.hold_samples(points)?;
        Ok(results)
    }
}

/// Adds one step's result to a range query's series.
fn fold_step(
    ev: &mut Evaluator<'_>,
    series: &mut SeriesCollector,
    t: Timestamp,
    value: Instant,
) -> Result<(), QueryError> {
    match value {
        Instant::Scalar(v) => series.points(Labels::empty()).push((t, v)),
        Instant::Vector(mut v) => {
            settle_names(&mut v);
            ev.hold_samples(v.len())?;
            for s in v {
                let points = series.points(s.labels);
                if points.last().is_some_and(|p| p.0 == t) {
                    return Err(QueryError::execution(
                        "vector cannot contain metrics with the same labelset",
                    ));
                }
                points.push((t, s.v));
            }
        }
        other => {
            return Err(QueryError::bad_data(format!(
                "unexpected {} in a range query",
                other.type_name()
            )));
        }
    }
    Ok(())
}

/// Gathers a range query's points per series. The same series come back at every step
/// mostly with the same label-set buffer, so a series is found by the buffer's address
/// first (the series keeps its labels, so the address cannot be reused meanwhile) and
/// by hashing the labels only for addresses not seen before.
#[derive(Default)]
pub(super) struct SeriesCollector {
    pub(super) series: Vec<Series>,
    by_addr: HashMap<usize, (Labels, usize), HashKeyed>,
    by_labels: HashMap<Labels, usize, HashKeyed>,
}

impl SeriesCollector {
    /// The series of a table over a slice's grid, each with its points in time order:
    /// what folding the table's vector at every step gives (its label sets are final
    /// and distinct).
    fn from_table(table: &StepTable) -> SeriesCollector {
        let n = table.labels.len();
        let grid = table.grid;
        let series = table
            .labels
            .iter()
            .enumerate()
            .map(|(i, labels)| Series {
                labels: labels.clone(),
                points: (0..grid.count)
                    .filter(|&k| table.present[k * n + i])
                    .map(|k| (grid.time(k), table.values[k * n + i]))
                    .collect(),
            })
            .collect();
        SeriesCollector {
            series,
            ..SeriesCollector::default()
        }
    }

    /// Appends `later`'s points (all after this collector's in time) to its series.
    fn append(&mut self, later: SeriesCollector) {
        for s in later.series {
            let points = self.points(s.labels);
            if points.is_empty() {
                *points = s.points;
            } else {
                points.extend(s.points);
            }
        }
    }

    pub(super) fn points(&mut self, labels: Labels) -> &mut Vec<(Timestamp, f64)> {
        let addr = labels.buffer_addr();
        let i = match self.by_addr.get(&addr) {
            Some(&(_, i)) => i,
            None => {
                let i = *self.by_labels.entry(labels.clone()).or_insert_with(|| {
                    self.series.push(Series {
                        labels: labels.clone(),
                        points: Vec::new(),
                    });
                    self.series.len() - 1
                });
                self.by_addr.insert(addr, (labels, i));
                i
            }
        };
        &mut self.series[i].points
    }
}
