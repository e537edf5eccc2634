//! Binary operators over whole step tables.
//!
//! `100 * (used / total)` over two selectors of 16,000 series, step by step, builds a
//! vector of each side at every step, pairs them, drops names and checks the result
//! for duplicates, then folds every result sample into its series: per-step work on
//! every sample, most of the query's time once the selectors' tables exist. When both
//! operands of an operation have step tables over the grid it is evaluated at (or one
//! is a constant), the operation's own table is computed once, cell by cell: the
//! pairing, the result label sets and their distinctness are worked out over the
//! tables' series, then every step is a loop over the pairs.
//!
//! The result is what the step-by-step path gives at each step. A pairing found over
//! all the series of the tables holds for the ones present at any one step (a subset
//! of each side keeps signatures unique and matches unambiguous), and distinct result
//! label sets stay distinct in any subset. Where the whole tables do not pair (two
//! series with one signature, results that collide once names are dropped), the error
//! may still never happen at a step, so nothing is built and the step-by-step path
//! runs, reporting it at the step where it does. Set operators, delayed name removal
//! and step-invariant operations are left to that path.

use kiln_model::Labels;

use super::binary::{apply, drops_name, pair, pair_value};
use super::step_table::{Grid, StepTable, all_distinct};
use super::{Evaluator, Instant, LabelCache, drop_name, key, table_in, unwrap_parens};
use crate::ast::{BinOp, Cardinality, Expr, VectorMatching};
use crate::error::QueryError;
use crate::value::Sample;

/// One operand of an operation built as a table.
enum Operand<'t> {
    Constant(f64),
    Table(&'t StepTable),
}

impl Evaluator<'_> {
    /// Builds the step table of binary operation `e` over `grid` from its operands'
    /// tables, when they have them (see the module's notes).
    pub(super) fn build_binary_table(&mut self, e: &Expr, grid: Grid) -> Result<(), QueryError> {
        let Expr::Binary {
            op,
            lhs,
            rhs,
            return_bool,
            matching,
        } = e
        else {
            return Ok(());
        };
        if self.delayed_name_removal || op.is_set() || self.invariant.contains(&key(e)) {
            return Ok(());
        }
        let (lc, rc) = (self.constant_value(lhs)?, self.constant_value(rhs)?);
        let tables = self.tables.clone();
        let operand = |side: &Expr, constant: Option<f64>| match constant {
            Some(v) => Some(Operand::Constant(v)),
            None => table_in(&tables, side)
                .filter(|t| t.covers(grid))
                .map(Operand::Table),
        };
        let (Some(l), Some(r)) = (operand(lhs, lc), operand(rhs, rc)) else {
            return Ok(());
        };
        let table = match (l, r) {
            (Operand::Table(t), Operand::Constant(c)) => {
                vector_constant(*op, t, c, false, *return_bool)
            }
            (Operand::Constant(c), Operand::Table(t)) => {
                vector_constant(*op, t, c, true, *return_bool)
            }
            (Operand::Table(a), Operand::Table(b)) => {
                vector_vector(*op, a, b, *return_bool, matching, &mut self.label_cache)
            }
            (Operand::Constant(_), Operand::Constant(_)) => None,
        };
        match table {
            Some(t) => self.keep_table(key(e), t),
            None => Ok(()),
        }
    }

    /// The value of `e` when it is arithmetic over number literals (any evaluation
    /// time gives the same value).
    pub(crate) fn constant_value(&mut self, e: &Expr) -> Result<Option<f64>, QueryError> {
        if !crate::functions::range::constant(e) {
            return Ok(None);
        }
        match self.eval(unwrap_parens(e), 0)? {
            Instant::Scalar(v) => Ok(Some(v)),
            _ => Ok(None),
        }
    }
}

/// `t op c` (or `c op t` when `constant_left`), cell by cell, as
/// [`super::binary`]'s vector-scalar operation does it at each step.
fn vector_constant(
    op: BinOp,
    t: &StepTable,
    c: f64,
    constant_left: bool,
    return_bool: bool,
) -> Option<StepTable> {
    let labels = if drops_name(op, return_bool) {
        let labels: Vec<Labels> = t.labels.iter().map(drop_name).collect();
        if !all_distinct(&labels) {
            return None;
        }
        labels
    } else {
        t.labels.clone()
    };
    let mut values = Vec::with_capacity(t.values.len());
    let mut present = t.present.clone();
    for (&v, p) in t.values.iter().zip(present.iter_mut()) {
        let (l, r) = if constant_left { (c, v) } else { (v, c) };
        let (mut value, holds) = apply(op, l, r);
        if op.is_comparison() {
            // The vector's value, even with the constant on the left.
            value = v;
            if return_bool {
                value = if holds { 1.0 } else { 0.0 };
            } else if !holds {
                *p = false;
            }
        }
        values.push(value);
    }
    Some(StepTable::from_cells(t.grid, labels, values, present))
}

/// `a op b` with `matching`, pair by pair and step by step, as [`super::binary`]'s
/// vector-vector operation does it at each step; `None` when the tables' series do
/// not pair as a whole or their results collide.
fn vector_vector(
    op: BinOp,
    a: &StepTable,
    b: &StepTable,
    return_bool: bool,
    m: &VectorMatching,
    cache: &mut LabelCache,
) -> Option<StepTable> {
    // The "one" side is the right one unless group_right swaps the roles.
    let swap = matches!(m.card, Cardinality::OneToMany(_));
    let (many, one) = if swap { (b, a) } else { (a, b) };
    let samples = |t: &StepTable| -> Vec<Sample> {
        t.labels
            .iter()
            .map(|l| Sample::new(l.clone(), 0, 0.0))
            .collect()
    };
    let pairing = pair(&samples(many), &samples(one), m, cache).ok()?;
    let drop = drops_name(op, return_bool);
    let labels: Vec<Labels> = pairing
        .pairs
        .iter()
        .map(|(_, _, l)| if drop { drop_name(l) } else { l.clone() })
        .collect();
    if !all_distinct(&labels) {
        return None;
    }
    let grid = a.grid;
    let (n, n_many, n_one) = (labels.len(), many.labels.len(), one.labels.len());
    let mut values = vec![0.0; n * grid.count];
    let mut present = vec![false; n * grid.count];
    for k in 0..grid.count {
        let (mv, mp) = (
            &many.values[k * n_many..(k + 1) * n_many],
            &many.present[k * n_many..(k + 1) * n_many],
        );
        let (ov, op_) = (
            &one.values[k * n_one..(k + 1) * n_one],
            &one.present[k * n_one..(k + 1) * n_one],
        );
        let (out_v, out_p) = (
            &mut values[k * n..(k + 1) * n],
            &mut present[k * n..(k + 1) * n],
        );
        for (p, &(i, j, _)) in pairing.pairs.iter().enumerate() {
            if !(mp[i] && op_[j]) {
                continue;
            }
            let (lv, rv) = if swap { (ov[j], mv[i]) } else { (mv[i], ov[j]) };
            if let Some(value) = pair_value(op, lv, rv, return_bool) {
                out_v[p] = value;
                out_p[p] = true;
            }
        }
    }
    Some(StepTable::from_cells(grid, labels, values, present))
}
