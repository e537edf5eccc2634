//! Range-function calls computed for a whole grid of evaluation times at once.
//!
//! Step by step, `rate(x[5m])` finds every series' window at each step, calls the
//! function on it and builds a sample, visiting every series' samples once per step in
//! an order that misses the CPU cache. When the call's range vector is a plain matrix
//! selector (no `@`) and its other arguments are constants, the values at every time
//! the call will be evaluated at (a range query's steps, a subquery's inner steps) can
//! instead be computed series by series before evaluation: each series' samples are
//! swept once, in order, with two cursors. A subquery without `@` is treated the same
//! way once its inner expression has been evaluated at every inner step: its results,
//! gathered per series, are the samples the windows slide over. The values are kept step-major, so a step's
//! vector is read off one contiguous row. The results are the same values the
//! step-by-step path computes (the same function on the same windows); evaluation
//! falls back to that path for times off the grid.

use std::collections::HashMap;
use std::sync::Arc;

use kiln_model::{Labels, Timestamp, is_stale_nan};

use super::{HashKeyed, Loaded, advance, drop_name};
use crate::error::QueryError;
use crate::functions::range::{GridCall, RangeCtx, Window};
use crate::value::Sample;

/// Tables larger than this many cells (series x grid times) are not built: the
/// step-by-step path needs no memory per step.
const MAX_CELLS: usize = 16 << 20;

/// Series-steps of work below which a table is built on one thread.
const MIN_CELLS_PER_THREAD: usize = 64 << 10;

/// Evaluation times `first + k * step` for `k` in `0..count`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Grid {
    pub(crate) first: Timestamp,
    pub(crate) step: i64,
    pub(crate) count: usize,
}

impl Grid {
    /// The position of `ts` on the grid.
    fn index(&self, ts: Timestamp) -> Option<usize> {
        let d = ts.checked_sub(self.first)?;
        if d < 0 || self.step <= 0 || d % self.step != 0 {
            return None;
        }
        let k = usize::try_from(d / self.step).ok()?;
        (k < self.count).then_some(k)
    }

    pub(crate) fn time(&self, k: usize) -> Timestamp {
        self.first + k as i64 * self.step
    }
}

/// One time of a [`StepTable`] (see [`StepTable::column`]).
pub(crate) struct Column<'t> {
    pub(crate) labels: &'t [Labels],
    pub(crate) values: &'t [f64],
    pub(crate) present: &'t [bool],
    pub(crate) drop_name: bool,
}

/// A range-function call's (or an instant selector's) values at every time of a
/// [`Grid`].
#[derive(Clone)]
pub(crate) struct StepTable {
    pub(super) grid: Grid,
    /// The result label set of each series that has a value at some grid time.
    pub(super) labels: Vec<Labels>,
    /// Whether the results still carry a name to drop (delayed name removal).
    pub(super) drop_name: bool,
    /// `values[k * labels.len() + i]`: series `i` at grid time `k`, when
    /// `present[k * labels.len() + i]`.
    pub(super) values: Vec<f64>,
    pub(super) present: Vec<bool>,
    /// For a selector's table, the stored timestamp of each cell's sample (laid out as
    /// `values`), for `timestamp()`; empty for a call's.
    sample_times: Vec<Timestamp>,
    /// Built from storage (see [`super::stream`]): the node has no loaded data to be
    /// evaluated from off the grid.
    pub(super) from_storage: bool,
}

impl StepTable {
    /// The table of `labels` over `grid` with cells laid out as the fields are, the
    /// series without a value at any time left out. Labels are final and distinct.
    pub(super) fn from_cells(
        grid: Grid,
        labels: Vec<Labels>,
        mut values: Vec<f64>,
        mut present: Vec<bool>,
    ) -> StepTable {
        let n = labels.len();
        let mut with_value = vec![false; n];
        for k in 0..grid.count {
            for (w, &p) in with_value.iter_mut().zip(&present[k * n..(k + 1) * n]) {
                *w |= p;
            }
        }
        let kept = with_value.iter().filter(|&&w| w).count();
        let labels = if kept == n {
            labels
        } else {
            let mut cells = 0;
            for k in 0..grid.count {
                for i in (0..n).filter(|&i| with_value[i]) {
                    values[cells] = values[k * n + i];
                    present[cells] = present[k * n + i];
                    cells += 1;
                }
            }
            values.truncate(cells);
            present.truncate(cells);
            labels
                .into_iter()
                .zip(&with_value)
                .filter(|(_, w)| **w)
                .map(|(l, _)| l)
                .collect()
        };
        StepTable {
            grid,
            labels,
            drop_name: false,
            values,
            present,
            sample_times: Vec::new(),
            from_storage: false,
        }
    }

    /// Whether the table holds final results (no name left to drop) at exactly the
    /// times of `grid`.
    pub(super) fn covers(&self, grid: Grid) -> bool {
        !self.drop_name
            && (self.grid.first, self.grid.step, self.grid.count)
                == (grid.first, grid.step, grid.count)
    }

    /// Bytes of the table's cells (a value and a presence flag per series and time,
    /// and a sample time in a selector's table).
    pub(crate) fn bytes(&self) -> usize {
        self.values.len() * (std::mem::size_of::<f64>() + 1)
            + self.sample_times.len() * std::mem::size_of::<Timestamp>()
    }

    /// The table at `ts`, for consumers that read it in place: every series' result
    /// labels, its value and whether it has one (`values[i]` counts when `present[i]`),
    /// and whether names are still to be dropped. `None` when `ts` is not on the grid.
    pub(crate) fn column(&self, ts: Timestamp) -> Option<Column<'_>> {
        let k = self.grid.index(ts)?;
        let n = self.labels.len();
        Some(Column {
            labels: &self.labels,
            values: &self.values[k * n..(k + 1) * n],
            present: &self.present[k * n..(k + 1) * n],
            drop_name: self.drop_name,
        })
    }

    /// A selector table's instant vector at `ts` with each sample's stored timestamp
    /// (for `timestamp()`); `None` when `ts` is not on the grid or this is a call's.
    pub(crate) fn vector_at_sample_times(&self, ts: Timestamp) -> Option<Vec<Sample>> {
        let mut v = self.vector_at(ts)?;
        let k = self.grid.index(ts)?;
        let n = self.labels.len();
        let times = self.sample_times.get(k * n..(k + 1) * n)?;
        let present = &self.present[k * n..(k + 1) * n];
        for (s, &t) in v.iter_mut().zip(
            times
                .iter()
                .zip(present)
                .filter(|(_, p)| **p)
                .map(|(t, _)| t),
        ) {
            s.t = t;
        }
        Some(v)
    }

    /// The call's instant vector at `ts`, `None` when `ts` is not on the grid.
    pub(crate) fn vector_at(&self, ts: Timestamp) -> Option<Vec<Sample>> {
        let k = self.grid.index(ts)?;
        let n = self.labels.len();
        let (values, present) = (
            &self.values[k * n..(k + 1) * n],
            &self.present[k * n..(k + 1) * n],
        );
        let count = present.iter().filter(|&&p| p).count();
        let mut out = Vec::with_capacity(count);
        for ((labels, &v), _) in self
            .labels
            .iter()
            .zip(values)
            .zip(present)
            .filter(|(_, p)| **p)
        {
            out.push(Sample {
                labels: labels.clone(),
                t: ts,
                v,
                drop_name: self.drop_name,
            });
        }
        Some(out)
    }
}

impl StepTable {
    /// The table's series as samples over `grid` — its columns, each series' values at
    /// the times it has one — when the table covers exactly that grid and its labels
    /// are final (no name left to drop).
    pub(super) fn series_over(&self, grid: Grid) -> Option<Vec<Loaded>> {
        if !self.covers(grid) {
            return None;
        }
        let n = self.labels.len();
        Some(
            self.labels
                .iter()
                .enumerate()
                .map(|(i, labels)| {
                    let (mut ts, mut vals) = (Vec::new(), Vec::new());
                    for k in 0..self.grid.count {
                        if self.present[k * n + i] {
                            ts.push(self.grid.time(k));
                            vals.push(self.values[k * n + i]);
                        }
                    }
                    Loaded {
                        labels: labels.clone(),
                        has_stale: vals.iter().any(|v| is_stale_nan(*v)),
                        ts: Arc::new(ts),
                        vals: Arc::new(vals),
                    }
                })
                .collect(),
        )
    }
}

/// One series' values at every grid time, and whether any window held samples.
pub(super) struct SeriesRow {
    values: Vec<f64>,
    present: Vec<bool>,
    /// Sample times (a selector's row only).
    times: Vec<Timestamp>,
    any_window: bool,
}

/// Builds the table of `call` over `series` (the selector's loaded data) at the times of
/// `grid`, the selector shifted back by `offset`. `keep_name`: the function keeps the
/// metric name; `delayed`: names are dropped at the end of the query instead of here.
///
/// Returns the table and the input label sets of the series that had samples in some
/// window (for the call's annotations), or `None` when the table would be too large or
/// two results would share a label set once names are dropped (the step-by-step path
/// then reports it, at the step where it happens).
pub(crate) fn build(
    series: &[Loaded],
    call: &GridCall<'_>,
    grid: Grid,
    keep_name: bool,
    delayed: bool,
) -> Option<(StepTable, Vec<Labels>)> {
    if series.len().checked_mul(grid.count)? > MAX_CELLS {
        return None;
    }
    let rows = compute_rows(series, grid, |s| Ok(row(s, call, grid)))
        .ok()?
        .into_iter()
        .zip(series)
        .map(|(r, s)| (s.labels.clone(), r))
        .collect();
    assemble(rows, grid, keep_name, delayed)
}

/// Whether a table of `series` x `grid` cells may be built.
pub(crate) fn fits(series: usize, grid: Grid) -> bool {
    series
        .checked_mul(grid.count)
        .is_some_and(|cells| cells <= MAX_CELLS)
}

/// The table made of `rows` (each series' input labels and row), as [`build`] returns
/// it: the series without any value left out, names dropped unless kept or delayed.
pub(crate) fn assemble(
    rows: Vec<(Labels, SeriesRow)>,
    grid: Grid,
    keep_name: bool,
    delayed: bool,
) -> Option<(StepTable, Vec<Labels>)> {
    let mut inputs = Vec::new();
    let mut kept = Vec::new();
    for (labels, row) in rows {
        if row.any_window {
            inputs.push(labels.clone());
        }
        if row.present.iter().any(|&p| p) {
            kept.push((labels, row));
        }
    }
    let (labels, drop) = if keep_name || delayed {
        let labels: Vec<Labels> = kept.iter().map(|(l, _)| l.clone()).collect();
        (labels, !keep_name)
    } else {
        let labels: Vec<Labels> = kept.iter().map(|(l, _)| drop_name(l)).collect();
        if !all_distinct(&labels) {
            return None;
        }
        (labels, false)
    };
    let n = kept.len();
    let with_times = kept.first().is_some_and(|(_, r)| !r.times.is_empty());
    let mut values = vec![0.0; n * grid.count];
    let mut present = vec![false; n * grid.count];
    let mut sample_times = if with_times {
        vec![0; n * grid.count]
    } else {
        Vec::new()
    };
    for (i, (_, row)) in kept.iter().enumerate() {
        for k in 0..grid.count {
            values[k * n + i] = row.values[k];
            present[k * n + i] = row.present[k];
            if with_times {
                sample_times[k * n + i] = row.times[k];
            }
        }
    }
    let table = StepTable {
        grid,
        labels,
        drop_name: drop,
        values,
        present,
        sample_times,
        from_storage: false,
    };
    Some((table, inputs))
}

/// `row(item)` for every item, in order, split over the machine's cores when there is
/// enough work (`grid.count` cells per item). The first error is returned.
pub(crate) fn compute_rows<T: Sync>(
    items: &[T],
    grid: Grid,
    row: impl Fn(&T) -> Result<SeriesRow, QueryError> + Sync,
) -> Result<Vec<SeriesRow>, QueryError> {
    let cells = items.len() * grid.count;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let parts = cores.min(cells / MIN_CELLS_PER_THREAD).max(1);
    if parts == 1 {
        return items.iter().map(&row).collect();
    }
    let chunk = items.len().div_ceil(parts);
    let row = &row;
    std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().map(row).collect::<Result<Vec<_>, _>>()))
            .collect();
        let mut rows = Vec::with_capacity(items.len());
        for (h, part) in handles.into_iter().zip(items.chunks(chunk)) {
            // A panicking thread leaves its part computed here instead.
            match h.join() {
                Ok(r) => rows.extend(r?),
                Err(_) => {
                    for item in part {
                        rows.push(row(item)?);
                    }
                }
            }
        }
        Ok(rows)
    })
}

/// An instant selector's row: at each grid time `t` (shifted back by `offset`), the
/// newest sample in `(t - lookback, t]` unless it is a staleness marker, and its time
/// when `with_times` (for `timestamp()`; 8 bytes more per cell otherwise unused).
pub(crate) fn lookback_row(
    ts: &[Timestamp],
    vals: &[f64],
    grid: Grid,
    offset: i64,
    lookback: i64,
    with_times: bool,
) -> SeriesRow {
    let mut out = SeriesRow {
        values: vec![0.0; grid.count],
        present: vec![false; grid.count],
        times: if with_times {
            vec![0; grid.count]
        } else {
            Vec::new()
        },
        any_window: false,
    };
    let mut hi = 0;
    for k in 0..grid.count {
        let t = grid.time(k).saturating_sub(offset);
        hi = advance(ts, hi, t);
        if hi == 0 {
            continue;
        }
        let (st, sv) = (ts[hi - 1], vals[hi - 1]);
        if st <= t - lookback || is_stale_nan(sv) {
            continue;
        }
        out.any_window = true;
        out.values[k] = sv;
        out.present[k] = true;
        if with_times {
            out.times[k] = st;
        }
    }
    out
}

/// One series' values: its samples swept once, the window `(t - range, t]` moving
/// forward with each grid time `t` (shifted back by the selector's offset).
pub(crate) fn row(s: &Loaded, call: &GridCall<'_>, grid: Grid) -> SeriesRow {
    // Windows leave staleness markers out: dropping them from the whole series once
    // gives the same windows.
    let filtered;
    let (ts, vals): (&[Timestamp], &[f64]) = if s.has_stale {
        filtered =
            s.ts.iter()
                .zip(s.vals.iter())
                .filter(|(_, v)| !is_stale_nan(**v))
                .map(|(&t, &v)| (t, v))
                .unzip::<_, _, Vec<_>, Vec<_>>();
        (&filtered.0, &filtered.1)
    } else {
        (&s.ts, &s.vals)
    };
    let mut ctx = RangeCtx {
        t: 0,
        ts: 0,
        range: call.range,
        scalars: call.scalars.clone(),
    };
    let mut out = SeriesRow {
        values: vec![0.0; grid.count],
        present: vec![false; grid.count],
        times: Vec::new(),
        any_window: false,
    };
    let (mut lo, mut hi) = (0, 0);
    // Windows waiting to go through `call.lanes` four at a time: (grid index, lo, hi).
    let mut batch = [(0usize, 0usize, 0usize); 4];
    let mut batched = 0;
    // The function over one window, at grid index `k`.
    let mut one = |out: &mut SeriesRow, k: usize, lo: usize, hi: usize| {
        ctx.ts = grid.time(k);
        ctx.t = ctx.ts.saturating_sub(call.offset);
        let window = Window {
            ts: &ts[lo..hi],
            vals: &vals[lo..hi],
        };
        if let Some(v) = (call.f)(&ctx, &window) {
            out.values[k] = v;
            out.present[k] = true;
        }
    };
    for k in 0..grid.count {
        let t = grid.time(k).saturating_sub(call.offset);
        lo = advance(ts, lo, t - call.range);
        hi = advance(ts, hi.max(lo), t);
        if lo >= hi {
            continue;
        }
        out.any_window = true;
        let Some(lanes) = call.lanes else {
            one(&mut out, k, lo, hi);
            continue;
        };
        batch[batched] = (k, lo, hi);
        batched += 1;
        if batched == 4 {
            let r = lanes(batch.map(|(_, l, h)| &vals[l..h]));
            for ((k, _, _), v) in batch.iter().zip(r) {
                out.values[*k] = v;
                out.present[*k] = true;
            }
            batched = 0;
        }
    }
    // The last windows of a batched function, one at a time.
    for &(k, lo, hi) in &batch[..batched] {
        one(&mut out, k, lo, hi);
    }
    out
}

/// Whether no two label sets are equal (told apart by hash, compared when hashes meet).
pub(super) fn all_distinct(labels: &[Labels]) -> bool {
    let mut seen: HashMap<u64, Vec<&Labels>, HashKeyed> =
        HashMap::with_capacity_and_hasher(labels.len(), HashKeyed::default());
    for l in labels {
        let same_hash = seen.entry(l.hash()).or_default();
        if same_hash.contains(&l) {
            return false;
        }
        same_hash.push(l);
    }
    true
}
