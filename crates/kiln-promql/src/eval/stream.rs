//! Step tables built straight from storage, one series at a time.
//!
//! In a range query, an instant selector or a range function over a matrix selector is
//! evaluated at known grid times only, so its step table (see [`super::step_table`]) can
//! be built without loading the selector's data first: each series is decoded, swept
//! into its row, and its samples given back before the next one is decoded (on every
//! core, each a series at a time). What the node holds is then its table — one value
//! per series and step — and never all the samples of its window: `100 * (a / b)` over
//! two selectors of 16,000 series held 244 MB of decoded samples at bench scale 4, and
//! its two selector tables hold 65 MB.
//!
//! A node streamed this way has no loaded data; it is only ever evaluated at its
//! table's times (the grid the slice or subquery evaluates it at).

use kiln_model::{Labels, Timestamp};

use super::budget::DECODED_SAMPLE_BYTES;
use super::prepare::decode;
use super::step_table::{self, Grid, SeriesRow};
use super::{Evaluator, Loaded, key};
use crate::ast::{self, Expr, Selector};
use crate::error::QueryError;
use crate::functions::range::GridSource;

impl Evaluator<'_> {
    /// Builds the table of instant selector `sel` over `grid` from storage. Returns
    /// false, having built nothing, when the table would be too large (the selector is
    /// then loaded and evaluated step by step).
    pub(super) fn stream_selector(
        &mut self,
        sel: &Selector,
        grid: Grid,
    ) -> Result<bool, QueryError> {
        let (first, last) = (grid.time(0), grid.time(grid.count - 1));
        let (a, b) = (
            first.saturating_sub(sel.offset),
            last.saturating_sub(sel.offset),
        );
        let lookback = self.lookback;
        let with_times = self.sample_times_wanted.contains(&key(sel));
        let Some(rows) = self.rows_from_storage(sel, a.saturating_sub(lookback), b, grid, |s| {
            step_table::lookback_row(&s.ts, &s.vals, grid, sel.offset, lookback, with_times)
        })?
        else {
            return Ok(false);
        };
        // A selector keeps its labels, name included: its series are distinct already.
        let Some((mut table, _)) = step_table::assemble(rows, grid, true, false) else {
            return Ok(false);
        };
        table.from_storage = true;
        self.keep_table(key(sel), table)?;
        Ok(true)
    }

    /// Builds the table of call `e` over `grid` from storage when it is a range
    /// function over a matrix selector with constant other arguments. Returns false,
    /// having built nothing, when it is not one or the table would be too large.
    pub(super) fn stream_call(
        &mut self,
        e: &Expr,
        func: &str,
        args: &[Expr],
        arg_pos: &[ast::Pos],
        grid: Grid,
    ) -> Result<bool, QueryError> {
        let Some(call) = crate::functions::grid_call(self, func, args)? else {
            return Ok(false);
        };
        let GridSource::Selector(sel) = call.source else {
            return Ok(false);
        };
        // The same call again (`rate(x[5m])` inside two subqueries over the same
        // grid): its table is the one already built, with its own annotations.
        let shape = call_shape(func, &call.scalars, sel, call.offset, call.range, grid);
        if let Some((node, inputs)) = self.streamed_calls.get(&shape)
            && let Some(table) = self.tables.get(node)
        {
            let (table, inputs) = (table.clone(), inputs.clone());
            crate::functions::range::annotate(self, func, inputs.iter(), &call.scalars, arg_pos);
            self.keep_table(key(e), table)?;
            return Ok(true);
        }
        let (first, last) = (grid.time(0), grid.time(grid.count - 1));
        let (a, b) = (
            first.saturating_sub(call.offset),
            last.saturating_sub(call.offset),
        );
        let Some(rows) =
            self.rows_from_storage(sel, a.saturating_sub(call.range), b, grid, |s| {
                step_table::row(s, &call, grid)
            })?
        else {
            return Ok(false);
        };
        let keep = crate::functions::range::keeps_name(func);
        let Some((mut table, inputs)) =
            step_table::assemble(rows, grid, keep, self.delayed_name_removal)
        else {
            return Ok(false);
        };
        table.from_storage = true;
        crate::functions::range::annotate(self, func, inputs.iter(), &call.scalars, arg_pos);
        self.keep_table(key(e), table)?;
        self.streamed_calls.insert(shape, (key(e), inputs));
        Ok(true)
    }

    /// Each series of `sel` with samples in `[mint, maxt]`, with its row: the series is
    /// decoded, `row` computes its row, and its samples are given back before the
    /// thread decodes its next series. `None`, having decoded nothing, when a table of
    /// them over `grid` would be too large.
    fn rows_from_storage(
        &mut self,
        sel: &Selector,
        mint: Timestamp,
        maxt: Timestamp,
        grid: Grid,
        row: impl Fn(&Loaded) -> SeriesRow + Sync,
    ) -> Result<Option<Vec<(Labels, SeriesRow)>>, QueryError> {
        self.with_selected(sel, mint, maxt, |ev, series, warnings| {
            if !step_table::fits(series.len(), grid) {
                return Ok(None);
            }
            ev.warnings.extend(warnings);
            let budget = &*ev.budget;
            let rows = step_table::compute_rows(&series, grid, |s| {
                let loaded = decode(s.as_ref(), budget)?;
                let r = row(&loaded);
                budget.release(loaded.ts.len(), loaded.ts.len() * DECODED_SAMPLE_BYTES);
                Ok(r)
            })?;
            Ok(Some(
                series
                    .iter()
                    .map(|s| s.labels().clone())
                    .zip(rows)
                    .collect(),
            ))
        })
    }
}

/// What makes two calls' tables built from storage equal: the function, its constant
/// arguments, the selector's matchers, offset and range, and the grid. (`@` is never
/// set here: such calls are not streamed.)
fn call_shape(
    func: &str,
    scalars: &[f64],
    sel: &Selector,
    offset: i64,
    range: i64,
    grid: Grid,
) -> String {
    let matchers: Vec<_> = sel
        .matchers
        .iter()
        .map(|m| (m.kind, &m.name, &m.value))
        .collect();
    format!(
        "{func} {scalars:?} {matchers:?} {offset} {range} {} {} {}",
        grid.first, grid.step, grid.count
    )
}
