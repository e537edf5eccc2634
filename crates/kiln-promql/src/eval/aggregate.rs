//! Aggregation operators at one evaluation time.

use std::collections::HashMap;

use kiln_model::{Labels, METRIC_NAME, Timestamp};

use super::{Evaluator, Instant, LabelCache};
use crate::ast::{AggOp, Expr, Grouping, Pos};
use crate::error::QueryError;
use crate::functions::quantile;
use crate::value::Sample;

/// The hash identifying a sample's group (see [`group_labels`]).
fn group_key(sigs: &mut LabelCache, l: &Labels, grouping: Option<&Grouping>) -> u64 {
    match grouping {
        None => 0,
        Some(Grouping::By(names)) => sigs.of(l, names, true),
        Some(Grouping::Without(names)) => sigs.of(l, names, false),
    }
}

/// The label set identifying a sample's group.
fn group_labels(l: &Labels, grouping: Option<&Grouping>) -> Labels {
    match grouping {
        None => Labels::empty(),
        Some(Grouping::By(names)) => l.retain(|name| names.iter().any(|n| n == name)),
        Some(Grouping::Without(names)) => {
            l.retain(|name| name != METRIC_NAME && !names.iter().any(|n| n == name))
        }
    }
}

/// Formats a float in annotations as Go's `%v` would.
pub(crate) fn go_float(v: f64) -> String {
    kiln_model::format_go_float(v)
}

/// Kahan-compensated running sum, as Prometheus uses for `sum` and `avg`.
#[derive(Default, Clone, Copy)]
pub(crate) struct KahanSum {
    sum: f64,
    c: f64,
}

impl KahanSum {
    pub(crate) fn add(&mut self, v: f64) {
        (self.sum, self.c) = kahan_inc(v, self.sum, self.c);
    }

    pub(crate) fn value(&self) -> f64 {
        if self.sum.is_infinite() {
            self.sum
        } else {
            self.sum + self.c
        }
    }
}

/// The scalar parameter of `topk`, `quantile`, ...
fn scalar_param(op: AggOp, param: Option<Instant>) -> Result<f64, QueryError> {
    match param {
        Some(Instant::Scalar(v)) => Ok(v),
        _ => Err(QueryError::bad_data(format!(
            "expected a scalar parameter for {op:?}"
        ))),
    }
}

/// An aggregation node's groups, kept across the steps of a query: the same series
/// fall into the same groups at every step, so a label set is looked up by its address
/// (a clone is kept, so the address cannot be reused by another label set meanwhile),
/// and each group's buffer of member values is reused.
#[derive(Default)]
pub(crate) struct Groups {
    by_addr: HashMap<usize, (Labels, usize), super::HashKeyed>,
    by_key: HashMap<u64, usize, super::HashKeyed>,
    labels: Vec<Labels>,
    /// Whether each group's label set keeps `__name__` (`by (__name__)`).
    has_name: Vec<bool>,
    members: Vec<Vec<f64>>,
    drop_name: Vec<bool>,
    /// The evaluation that last used each group (its buffer is stale otherwise).
    mark: Vec<u64>,
    evaluation: u64,
    /// The group of each series of the step table this node read last (by the
    /// table's label list address; a node reads one table for a whole slice).
    table_rows: Option<(usize, Vec<usize>)>,
}

impl Groups {
    /// Starts an evaluation: the groups seen in it are collected anew.
    fn begin(&mut self) -> u64 {
        self.evaluation += 1;
        self.evaluation
    }

    /// Adds a member value to group `g` in evaluation `mark`, noting in `order` the
    /// groups in order of first appearance.
    fn add(&mut self, g: usize, v: f64, drop_name: bool, mark: u64, order: &mut Vec<usize>) {
        if self.mark[g] != mark {
            self.mark[g] = mark;
            self.members[g].clear();
            self.drop_name[g] = false;
            order.push(g);
        }
        self.members[g].push(v);
        self.drop_name[g] |= drop_name;
    }

    /// The index of the group of a sample with labels `l`.
    fn group_of(&mut self, l: &Labels, grouping: Option<&Grouping>) -> usize {
        if let Some(&(_, g)) = self.by_addr.get(&l.buffer_addr()) {
            return g;
        }
        if self.by_addr.len() > 1_000_000 {
            self.by_addr.clear();
        }
        let k = match grouping {
            None => 0,
            Some(Grouping::By(names)) => super::subset_hash(l, names, true),
            Some(Grouping::Without(names)) => super::subset_hash(l, names, false),
        };
        let g = *self.by_key.entry(k).or_insert_with(|| {
            let labels = group_labels(l, grouping);
            self.has_name.push(labels.get(METRIC_NAME).is_some());
            self.labels.push(labels);
            self.members.push(Vec::new());
            self.drop_name.push(false);
            self.mark.push(0);
            self.labels.len() - 1
        });
        self.by_addr.insert(l.buffer_addr(), (l.clone(), g));
        g
    }
}

/// Evaluates aggregation `node` at `ts` over `input`, with its parameter's value.
pub(super) fn eval(
    ev: &mut Evaluator<'_>,
    node: &Expr,
    input: Vec<Sample>,
    param: Option<Instant>,
    ts: Timestamp,
) -> Result<Instant, QueryError> {
    let Expr::Aggregate {
        op,
        grouping,
        param_pos,
        ..
    } = node
    else {
        return Err(QueryError::bad_data("not an aggregation"));
    };
    let (op, grouping, param_pos) = (*op, grouping.as_ref(), *param_pos);
    match op {
        AggOp::Topk | AggOp::Bottomk | AggOp::Limitk | AggOp::LimitRatio => {
            return select_samples(ev, op, input, scalar_param(op, param)?, grouping, param_pos);
        }
        AggOp::CountValues => {
            let Some(Instant::String(label)) = param else {
                return Err(QueryError::bad_data(
                    "count_values needs a string parameter",
                ));
            };
            return count_values(input, &label, grouping, ts);
        }
        _ => {}
    }
    let q = if op == AggOp::Quantile {
        Some(scalar_param(op, param)?)
    } else {
        None
    };
    let groups = ev.aggregations.entry(super::key(node)).or_default();
    let mark = groups.begin();
    // Groups in order of first appearance at this step.
    let mut order = Vec::new();
    for s in &input {
        let g = groups.group_of(&s.labels, grouping);
        groups.add(g, s.v, s.drop_name, mark, &mut order);
    }
    let out = finish(groups, op, q, order, ts)?;
    if let Some(q) = q
        && !(0.0..=1.0).contains(&q)
    {
        ev.warn(format!(
            "PromQL warning: quantile value should be between 0 and 1, got {} {param_pos}",
            go_float(q)
        ));
    }
    Ok(Instant::Vector(out))
}

/// Evaluates aggregation `node` (without parameter) at `ts` straight from the step
/// table its input reads at `ts`: no vector is built, and each series' group is worked
/// out once per table instead of looked up at every step. The same members in the same
/// order as [`eval`] gets from the table's vector, so the same result. `None` when the
/// aggregation takes a parameter.
pub(super) fn eval_column(
    ev: &mut Evaluator<'_>,
    node: &Expr,
    column: &super::step_table::Column<'_>,
    ts: Timestamp,
) -> Option<Result<Instant, QueryError>> {
    let Expr::Aggregate {
        op,
        grouping,
        param: None,
        ..
    } = node
    else {
        return None;
    };
    if !matches!(
        op,
        AggOp::Sum
            | AggOp::Avg
            | AggOp::Count
            | AggOp::Group
            | AggOp::Min
            | AggOp::Max
            | AggOp::Stddev
            | AggOp::Stdvar
    ) {
        return None;
    }
    let grouping = grouping.as_ref();
    let groups = ev.aggregations.entry(super::key(node)).or_default();
    let table = column.labels.as_ptr() as usize;
    if groups.table_rows.as_ref().is_none_or(|(t, _)| *t != table) {
        let rows = column
            .labels
            .iter()
            .map(|l| groups.group_of(l, grouping))
            .collect();
        groups.table_rows = Some((table, rows));
    }
    let rows = groups
        .table_rows
        .take()
        .map(|(_, rows)| rows)
        .unwrap_or_default();
    let mark = groups.begin();
    let mut order = Vec::new();
    for ((&g, &v), _) in rows
        .iter()
        .zip(column.values)
        .zip(column.present)
        .filter(|(_, p)| **p)
    {
        groups.add(g, v, column.drop_name, mark, &mut order);
    }
    groups.table_rows = Some((table, rows));
    Some(finish(groups, *op, None, order, ts).map(Instant::Vector))
}

/// The groups' results, in `order`.
fn finish(
    groups: &mut Groups,
    op: AggOp,
    q: Option<f64>,
    order: Vec<usize>,
    ts: Timestamp,
) -> Result<Vec<Sample>, QueryError> {
    let mut out = Vec::with_capacity(order.len());
    for g in order {
        let vals = &mut groups.members[g];
        let v = match op {
            AggOp::Sum => {
                let mut k = KahanSum::default();
                vals.iter().for_each(|&v| k.add(v));
                k.value()
            }
            AggOp::Avg => avg(vals),
            AggOp::Count => vals.len() as f64,
            AggOp::Group => 1.0,
            AggOp::Min => vals
                .iter()
                .copied()
                .fold(f64::NAN, |m, v| if m.is_nan() || v < m { v } else { m }),
            AggOp::Max => vals
                .iter()
                .copied()
                .fold(f64::NAN, |m, v| if m.is_nan() || v > m { v } else { m }),
            AggOp::Stddev => variance(vals).sqrt(),
            AggOp::Stdvar => variance(vals),
            AggOp::Quantile => quantile(q.unwrap_or(f64::NAN), vals),
            _ => unreachable_op(op)?,
        };
        let labels = groups.labels[g].clone();
        // A member's name matters only when the group keeps `__name__` (`by (__name__)`).
        let drop_name = groups.drop_name[g] && groups.has_name[g];
        out.push(Sample {
            labels,
            t: ts,
            v,
            drop_name,
        });
    }
    Ok(out)
}

fn unreachable_op(op: AggOp) -> Result<f64, QueryError> {
    Err(QueryError::bad_data(format!(
        "aggregation {op:?} handled elsewhere"
    )))
}

/// The mean as Prometheus computes it: a Kahan-compensated sum divided by the count,
/// switching to an incremental mean from the point where the sum would overflow.
pub(crate) fn avg(vals: &[f64]) -> f64 {
    let Some(&first) = vals.first() else {
        return f64::NAN;
    };
    // Fast path: the compensated sum of `kahan_inc` without its overflow checks. Once
    // a partial sum is infinite it never becomes finite again, so a finite total means
    // no step overflowed and the careful loop below would have taken exactly these
    // steps.
    let (mut sum, mut c) = (first, 0.0);
    for &v in &vals[1..] {
        let t = sum + v;
        c += if sum.abs() >= v.abs() {
            (sum - t) + v
        } else {
            (v - t) + sum
        };
        sum = t;
    }
    if sum.is_finite() {
        let n = vals.len() as f64;
        return sum / n + c / n;
    }
    let (mut sum, mut c) = (first, 0.0);
    let mut incremental: Option<(f64, f64)> = None;
    for (i, &v) in vals.iter().enumerate().skip(1) {
        let count = (i + 1) as f64;
        if incremental.is_none() {
            let (ns, nc) = kahan_inc(v, sum, c);
            if !ns.is_infinite() {
                (sum, c) = (ns, nc);
                continue;
            }
            // The sum would overflow: continue with a running mean.
            incremental = Some((sum / (count - 1.0), c / (count - 1.0)));
        }
        if let Some((mean, mc)) = incremental {
            let q = (count - 1.0) / count;
            incremental = Some(kahan_inc(v / count, q * mean, q * mc));
        }
    }
    match incremental {
        Some((mean, mc)) => mean + mc,
        None => {
            let n = vals.len() as f64;
            sum / n + c / n
        }
    }
}

/// One Kahan-Neumaier step: `(sum + inc, compensation)`.
fn kahan_inc(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    let c = if t.is_infinite() {
        0.0
    } else if sum.abs() >= inc.abs() {
        c + ((sum - t) + inc)
    } else {
        c + ((inc - t) + sum)
    };
    (t, c)
}

/// Population variance (Welford's algorithm).
pub(crate) fn variance(vals: &[f64]) -> f64 {
    let (mut n, mut mean, mut m2) = (0.0, 0.0, 0.0);
    for &v in vals {
        n += 1.0;
        let d = v - mean;
        mean += d / n;
        m2 += d * (v - mean);
    }
    if n == 0.0 { f64::NAN } else { m2 / n }
}

fn count_values(
    input: Vec<Sample>,
    label: &str,
    grouping: Option<&Grouping>,
    ts: Timestamp,
) -> Result<Instant, QueryError> {
    if !kiln_model::labels::is_valid_label_name(label) {
        return Err(QueryError::bad_data(format!(
            "invalid label name {label:?}"
        )));
    }
    let mut index: HashMap<Labels, usize, super::HashKeyed> = HashMap::default();
    let mut out: Vec<Sample> = Vec::new();
    for s in input {
        let mut b = group_labels(&s.labels, grouping).to_builder();
        b.set(label, &format_plain(s.v));
        let l = b.build();
        match index.get(&l) {
            Some(&i) => out[i].v += 1.0,
            None => {
                index.insert(l.clone(), out.len());
                out.push(Sample::new(l, ts, 1.0));
            }
        }
    }
    Ok(Instant::Vector(out))
}

/// Formats a value like Go's `strconv.FormatFloat(v, 'f', -1, 64)`, as `count_values`
/// labels its groups: shortest digits, never an exponent.
fn format_plain(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{v}")
    }
}

/// `topk`, `bottomk`, `limitk` and `limit_ratio`: keep some of each group's samples,
/// unchanged.
fn select_samples(
    ev: &mut Evaluator<'_>,
    op: AggOp,
    input: Vec<Sample>,
    param: f64,
    grouping: Option<&Grouping>,
    param_pos: Pos,
) -> Result<Instant, QueryError> {
    let mut index: HashMap<u64, usize, super::HashKeyed> = HashMap::default();
    let mut groups: Vec<Vec<Sample>> = Vec::new();
    for s in input {
        let i = *index
            .entry(group_key(&mut ev.label_cache, &s.labels, grouping))
            .or_insert_with(|| {
                groups.push(Vec::new());
                groups.len() - 1
            });
        groups[i].push(s);
    }
    let mut out = Vec::new();
    match op {
        AggOp::LimitRatio => {
            if param.is_nan() {
                return Err(QueryError::bad_data("Ratio value is NaN"));
            }
            if !(-1.0..=1.0).contains(&param) {
                let capped = if param < 0.0 { -1 } else { 1 };
                ev.warn(format!("PromQL warning: ratio value should be between -1 and 1, got {}, capping to {capped} {param_pos}", go_float(param)));
            }
            let r = param.clamp(-1.0, 1.0);
            for g in groups {
                for s in g {
                    let h = ratio_of(&s.labels);
                    let keep = if r >= 0.0 { h < r } else { h >= 1.0 + r };
                    if keep {
                        out.push(s);
                    }
                }
            }
        }
        _ => {
            if param.is_nan() {
                return Err(QueryError::bad_data("Parameter value is NaN"));
            }
            let k = if param >= 9.223_372_036_854_776e18 {
                usize::MAX
            } else {
                param.max(0.0) as usize
            };
            if k == 0 {
                return Ok(Instant::Vector(Vec::new()));
            }
            for mut g in groups {
                match op {
                    AggOp::Topk => g.sort_by(|a, b| cmp_desc(a.v, b.v)),
                    AggOp::Bottomk => g.sort_by(|a, b| cmp_asc_nan_last(a.v, b.v)),
                    _ => {}
                }
                g.truncate(k);
                out.extend(g);
            }
        }
    }
    Ok(Instant::Vector(out))
}

/// Descending, NaN last.
fn cmp_desc(a: f64, b: f64) -> std::cmp::Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Greater,
        (false, true) => std::cmp::Ordering::Less,
        _ => b.partial_cmp(&a).unwrap_or(std::cmp::Ordering::Equal),
    }
}

/// Ascending, NaN last.
fn cmp_asc_nan_last(a: f64, b: f64) -> std::cmp::Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Greater,
        (false, true) => std::cmp::Ordering::Less,
        _ => a.partial_cmp(&b).unwrap_or(std::cmp::Ordering::Equal),
    }
}

/// A stable number in `[0, 1)` from a label set, for `limit_ratio`.
fn ratio_of(l: &Labels) -> f64 {
    (l.hash() as f64) / (u64::MAX as f64 + 1.0)
}
