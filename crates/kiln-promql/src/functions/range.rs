//! Functions over range vectors: `rate` and friends, `*_over_time`, `deriv`,
//! `predict_linear`, `changes`, `resets`, `double_exponential_smoothing`.

use kiln_model::{Labels, Timestamp};

use super::quantile;
use crate::ast::{Expr, Pos, Selector, ValueType};
use crate::error::QueryError;
use crate::eval::{Evaluator, Instant, unwrap_parens};
use crate::value::Sample;

/// What a range function sees besides one series' window.
pub(crate) struct RangeCtx {
    /// The window's end (evaluation time after `@` and `offset`).
    pub(crate) t: Timestamp,
    /// The step's evaluation time (differs from `t` with `@` or `offset`).
    pub(crate) ts: Timestamp,
    /// The window's length, ms.
    pub(crate) range: i64,
    /// The other arguments, evaluated as scalars, in order.
    pub(crate) scalars: Vec<f64>,
}

/// One series' samples inside a window, oldest first (staleness markers left out).
pub(crate) struct Window<'a> {
    pub(crate) ts: &'a [Timestamp],
    pub(crate) vals: &'a [f64],
}

impl Window<'_> {
    fn ts(&self) -> &[Timestamp] {
        self.ts
    }

    fn vals(&self) -> &[f64] {
        self.vals
    }
}

/// A range function: one series' window in, at most one value out.
pub(crate) type RangeFn = fn(&RangeCtx, &Window<'_>) -> Option<f64>;

/// Functions that keep the metric name.
const KEEPS_NAME: [&str; 2] = ["last_over_time", "first_over_time"];

/// The window end and range of a range-vector argument at step `ts`.
fn window_of(ev: &Evaluator<'_>, e: &Expr, ts: Timestamp) -> Option<(Timestamp, i64)> {
    match unwrap_parens(e) {
        Expr::Matrix { sel, range } => Some((ev.shifted(sel.at, sel.offset, ts), *range)),
        Expr::Subquery {
            range, offset, at, ..
        } => Some((ev.shifted(*at, *offset, ts), *range)),
        _ => None,
    }
}

pub(super) fn call(
    ev: &mut Evaluator<'_>,
    name: &str,
    f: RangeFn,
    args: &[Expr],
    ts: Timestamp,
    arg_pos: &[Pos],
) -> Result<Instant, QueryError> {
    let pos = matrix_arg(name, args)?;
    let Some((t, range)) = window_of(ev, &args[pos], ts) else {
        return Err(QueryError::bad_data(format!(
            "expected a range vector argument in call to function {name:?}"
        )));
    };
    let mut scalars = Vec::new();
    for (i, a) in args.iter().enumerate() {
        if i == pos {
            continue;
        }
        match ev.eval(a, ts)? {
            Instant::Scalar(v) => scalars.push(v),
            other => {
                return Err(QueryError::bad_data(format!(
                    "expected a scalar argument in call to {name:?}, got {}",
                    other.type_name()
                )));
            }
        }
    }
    let Instant::Range(series) = ev.eval(&args[pos], ts)? else {
        return Err(QueryError::bad_data(format!(
            "expected a range vector argument in call to function {name:?}"
        )));
    };
    annotate(
        ev,
        name,
        series.iter().map(|s| &s.labels),
        &scalars,
        arg_pos,
    );
    let ctx = RangeCtx {
        t,
        ts,
        range,
        scalars,
    };
    let keep = keeps_name(name);
    let mut out = Vec::with_capacity(series.len());
    for s in &series {
        let window = Window {
            ts: s.ts(),
            vals: s.vals(),
        };
        if let Some(v) = f(&ctx, &window) {
            out.push(Sample {
                labels: s.labels.clone(),
                t: ts,
                v,
                drop_name: s.drop_name || !keep,
            });
        }
    }
    Ok(Instant::Vector(out))
}

/// Whether the function's results keep the metric name.
pub(crate) fn keeps_name(name: &str) -> bool {
    KEEPS_NAME.contains(&name)
}

/// The position of the range-vector argument of a call to `name`.
fn matrix_arg(name: &str, args: &[Expr]) -> Result<usize, QueryError> {
    args.iter()
        .position(|a| a.value_type() == ValueType::Matrix)
        .ok_or_else(|| {
            QueryError::bad_data(format!(
                "expected a range vector argument in call to function {name:?}"
            ))
        })
}

/// The annotations of a call to `name` over series with these label sets (those with
/// samples in their window): `rate`/`increase` of a metric whose name says it is not a
/// counter, a `quantile_over_time` quantile outside [0, 1].
pub(crate) fn annotate<'l>(
    ev: &mut Evaluator<'_>,
    name: &str,
    labels: impl Iterator<Item = &'l Labels>,
    scalars: &[f64],
    arg_pos: &[Pos],
) {
    if matches!(name, "rate" | "increase") {
        // The same series come back at every step: look at each label set once. (An
        // address reused by another label set can only skip this info, never change a
        // result.)
        let mut checked: Option<&str> = None;
        for l in labels {
            if !ev.counter_checked.insert(l.buffer_addr()) {
                continue;
            }
            let m = l.metric_name();
            if m.is_none() || m == checked {
                continue;
            }
            checked = m;
            if let Some(m) = m
                && !["_total", "_sum", "_count", "_bucket"]
                    .iter()
                    .any(|suffix| m.ends_with(suffix))
            {
                ev.info(format!(
                    "PromQL info: metric might not be a counter, name does not end in _total/_sum/_count/_bucket: {m:?}"
                ));
            }
        }
    }
    if name == "quantile_over_time"
        && let Some(&q) = scalars.first()
        && !(0.0..=1.0).contains(&q)
    {
        let p = arg_pos.first().copied().unwrap_or_default();
        ev.warn(format!(
            "PromQL warning: quantile value should be between 0 and 1, got {} {p}",
            crate::eval::go_float(q)
        ));
    }
}

/// A call whose values can be computed for a whole evaluation grid at once (see
/// [`crate::eval::StepTable`]): a range function over a matrix selector or a subquery
/// without `@`, its other arguments constant.
pub(crate) struct GridCall<'e> {
    pub(crate) f: RangeFn,
    /// The same function over four windows' values at once (bit for bit), for those
    /// that read only values and gain from it.
    pub(crate) lanes: Option<Lanes4Fn>,
    pub(crate) source: GridSource<'e>,
    pub(crate) range: i64,
    pub(crate) offset: i64,
    pub(crate) scalars: Vec<f64>,
}

/// A range function of values only, over four windows at once.
pub(crate) type Lanes4Fn = fn([&[f64]; 4]) -> [f64; 4];

/// Where a [`GridCall`]'s range vector comes from.
pub(crate) enum GridSource<'e> {
    Selector(&'e Selector),
    /// The subquery node.
    Subquery(&'e Expr),
}

/// The [`GridCall`] of a call to `name`, if it is one.
pub(crate) fn grid_call<'e>(
    ev: &mut Evaluator<'_>,
    f: RangeFn,
    name: &str,
    args: &'e [Expr],
) -> Result<Option<GridCall<'e>>, QueryError> {
    let Ok(pos) = matrix_arg(name, args) else {
        return Ok(None);
    };
    let (source, range, offset) = match unwrap_parens(&args[pos]) {
        Expr::Matrix { sel, range } if sel.at.is_none() => {
            (GridSource::Selector(sel), *range, sel.offset)
        }
        node @ Expr::Subquery {
            range,
            offset,
            at: None,
            ..
        } => (GridSource::Subquery(node), *range, *offset),
        _ => return Ok(None),
    };
    let mut scalars = Vec::new();
    for (i, a) in args.iter().enumerate() {
        if i == pos {
            continue;
        }
        match ev.constant_value(a)? {
            Some(v) => scalars.push(v),
            None => return Ok(None),
        }
    }
    let lanes = match name {
        "avg_over_time" => Some(crate::eval::avg4 as Lanes4Fn),
        _ => None,
    };
    Ok(Some(GridCall {
        f,
        lanes,
        source,
        range,
        offset,
        scalars,
    }))
}

/// Whether `e` is arithmetic over number literals only.
pub(crate) fn constant(e: &Expr) -> bool {
    crate::parser::with_stack(|| constant_node(e))
}

fn constant_node(e: &Expr) -> bool {
    match e {
        Expr::Number(_) => true,
        Expr::Paren(inner) | Expr::Neg(inner) => constant(inner),
        Expr::Binary { lhs, rhs, .. } => constant(lhs) && constant(rhs),
        _ => false,
    }
}

/// Prometheus's extrapolated rate, increase and delta.
fn extrapolated(ctx: &RangeCtx, s: &Window<'_>, counter: bool, rate: bool) -> Option<f64> {
    let n = s.ts().len();
    if n < 2 {
        return None;
    }
    let (first_t, last_t) = (s.ts()[0], s.ts()[n - 1]);
    let (first_v, last_v) = (s.vals()[0], s.vals()[n - 1]);
    let mut result = last_v - first_v;
    if counter {
        let mut prev = first_v;
        for &v in &s.vals()[1..] {
            if v < prev {
                result += prev;
            }
            prev = v;
        }
    }
    let range_start = ctx.t - ctx.range;
    let range_end = ctx.t;
    let mut to_start = (first_t - range_start) as f64 / 1000.0;
    let mut to_end = (range_end - last_t) as f64 / 1000.0;
    let sampled = (last_t - first_t) as f64 / 1000.0;
    let avg_step = sampled / (n - 1) as f64;
    let threshold = avg_step * 1.1;
    if to_start >= threshold {
        to_start = avg_step / 2.0;
    }
    if counter && result > 0.0 && first_v >= 0.0 {
        let to_zero = sampled * (first_v / result);
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    if to_end >= threshold {
        to_end = avg_step / 2.0;
    }
    let mut factor = (sampled + to_start + to_end) / sampled;
    if rate {
        factor /= ctx.range as f64 / 1000.0;
    }
    Some(result * factor)
}

pub(super) fn rate(ctx: &RangeCtx, s: &Window<'_>) -> Option<f64> {
    extrapolated(ctx, s, true, true)
}

pub(super) fn increase(ctx: &RangeCtx, s: &Window<'_>) -> Option<f64> {
    extrapolated(ctx, s, true, false)
}

pub(super) fn delta(ctx: &RangeCtx, s: &Window<'_>) -> Option<f64> {
    extrapolated(ctx, s, false, false)
}

fn instant_delta(s: &Window<'_>, rate: bool) -> Option<f64> {
    let n = s.ts().len();
    if n < 2 {
        return None;
    }
    let (pt, pv) = (s.ts()[n - 2], s.vals()[n - 2]);
    let (lt, lv) = (s.ts()[n - 1], s.vals()[n - 1]);
    let mut result = if rate && lv < pv { lv } else { lv - pv };
    if rate {
        let dt = (lt - pt) as f64 / 1000.0;
        if dt == 0.0 {
            return None;
        }
        result /= dt;
    }
    Some(result)
}

pub(super) fn irate(_: &RangeCtx, s: &Window<'_>) -> Option<f64> {
    instant_delta(s, true)
}

pub(super) fn idelta(_: &RangeCtx, s: &Window<'_>) -> Option<f64> {
    instant_delta(s, false)
}

/// Least-squares slope and intercept of the samples, with time in seconds relative to
/// `at` (ms).
fn linear_regression(s: &Window<'_>, at: Timestamp) -> (f64, f64) {
    let n = s.ts().len() as f64;
    let (mut sx, mut sy, mut sxy, mut sxx) = (0.0, 0.0, 0.0, 0.0);
    let first = s.vals()[0];
    let mut const_y = true;
    for (&t, &v) in s.ts().iter().zip(s.vals()) {
        const_y &= v == first;
        let x = (t - at) as f64 / 1000.0;
        sx += x;
        sy += v;
        sxy += x * v;
        sxx += x * x;
    }
    if const_y && first.is_finite() {
        return (0.0, first);
    }
    let cov = sxy - sx * sy / n;
    let var = sxx - sx * sx / n;
    let slope = cov / var;
    let intercept = sy / n - slope * sx / n;
    (slope, intercept)
}

pub(super) fn deriv(_: &RangeCtx, s: &Window<'_>) -> Option<f64> {
    if s.ts().len() < 2 {
        return None;
    }
    Some(linear_regression(s, s.ts()[0]).0)
}

pub(super) fn predict_linear(ctx: &RangeCtx, s: &Window<'_>) -> Option<f64> {
    if s.ts().len() < 2 {
        return None;
    }
    let duration = ctx.scalars.first().copied().unwrap_or(f64::NAN);
    let (slope, intercept) = linear_regression(s, ctx.ts);
    Some(slope * duration + intercept)
}

pub(super) fn changes(_: &RangeCtx, s: &Window<'_>) -> Option<f64> {
    let mut n = 0.0;
    for w in s.vals().windows(2) {
        if !(w[0] == w[1] || (w[0].is_nan() && w[1].is_nan())) {
            n += 1.0;
        }
    }
    Some(n)
}

pub(super) fn resets(_: &RangeCtx, s: &Window<'_>) -> Option<f64> {
    Some(s.vals().windows(2).filter(|w| w[1] < w[0]).count() as f64)
}

pub(super) fn avg_over_time(_: &RangeCtx, s: &Window<'_>) -> Option<f64> {
    Some(crate::eval::avg(s.vals()))
}

pub(super) fn min_over_time(_: &RangeCtx, s: &Window<'_>) -> Option<f64> {
    Some(
        s.vals()
            .iter()
            .copied()
            .fold(f64::NAN, |m, v| if m.is_nan() || v < m { v } else { m }),
    )
}

pub(super) fn max_over_time(_: &RangeCtx, s: &Window<'_>) -> Option<f64> {
    Some(
        s.vals()
            .iter()
            .copied()
            .fold(f64::NAN, |m, v| if m.is_nan() || v > m { v } else { m }),
    )
}

pub(super) fn sum_over_time(_: &RangeCtx, s: &Window<'_>) -> Option<f64> {
    let mut k = crate::eval::KahanSum::default();
    s.vals().iter().for_each(|&v| k.add(v));
    Some(k.value())
}

pub(super) fn count_over_time(_: &RangeCtx, s: &Window<'_>) -> Option<f64> {
    Some(s.vals().len() as f64)
}

pub(super) fn quantile_over_time(ctx: &RangeCtx, s: &Window<'_>) -> Option<f64> {
    let q = ctx.scalars.first().copied().unwrap_or(f64::NAN);
    let mut vals = s.vals().to_vec();
    Some(quantile(q, &mut vals))
}

pub(super) fn stddev_over_time(_: &RangeCtx, s: &Window<'_>) -> Option<f64> {
    Some(crate::eval::variance(s.vals()).sqrt())
}

pub(super) fn stdvar_over_time(_: &RangeCtx, s: &Window<'_>) -> Option<f64> {
    Some(crate::eval::variance(s.vals()))
}

pub(super) fn mad_over_time(_: &RangeCtx, s: &Window<'_>) -> Option<f64> {
    if s.vals().iter().any(|v| v.is_nan()) {
        return Some(f64::NAN);
    }
    let mut vals = s.vals().to_vec();
    let median = quantile(0.5, &mut vals);
    let mut dev: Vec<f64> = s.vals().iter().map(|v| (v - median).abs()).collect();
    Some(quantile(0.5, &mut dev))
}

pub(super) fn last_over_time(_: &RangeCtx, s: &Window<'_>) -> Option<f64> {
    s.vals().last().copied()
}

pub(super) fn first_over_time(_: &RangeCtx, s: &Window<'_>) -> Option<f64> {
    s.vals().first().copied()
}

pub(super) fn present_over_time(_: &RangeCtx, s: &Window<'_>) -> Option<f64> {
    (!s.vals().is_empty()).then_some(1.0)
}

fn ts_of(s: &Window<'_>, pick: impl Fn(f64, f64) -> bool) -> Option<f64> {
    let mut best: Option<(i64, f64)> = None;
    for (&t, &v) in s.ts().iter().zip(s.vals()) {
        if best.is_none_or(|(_, b)| b.is_nan() || pick(v, b)) {
            best = Some((t, v));
        }
    }
    best.map(|(t, _)| t as f64 / 1000.0)
}

pub(super) fn ts_of_max_over_time(_: &RangeCtx, s: &Window<'_>) -> Option<f64> {
    ts_of(s, |v, b| v >= b)
}

pub(super) fn ts_of_min_over_time(_: &RangeCtx, s: &Window<'_>) -> Option<f64> {
    ts_of(s, |v, b| v <= b)
}

pub(super) fn ts_of_last_over_time(_: &RangeCtx, s: &Window<'_>) -> Option<f64> {
    s.ts().last().map(|&t| t as f64 / 1000.0)
}

pub(super) fn ts_of_first_over_time(_: &RangeCtx, s: &Window<'_>) -> Option<f64> {
    s.ts().first().map(|&t| t as f64 / 1000.0)
}

/// Holt's linear (double exponential) smoothing with smoothing factor `sf` and trend
/// factor `tf`, both in (0, 1).
pub(super) fn double_exponential_smoothing(ctx: &RangeCtx, s: &Window<'_>) -> Option<f64> {
    let sf = ctx.scalars.first().copied().unwrap_or(f64::NAN);
    let tf = ctx.scalars.get(1).copied().unwrap_or(f64::NAN);
    if !(sf > 0.0 && sf < 1.0 && tf > 0.0 && tf < 1.0) {
        return None;
    }
    let n = s.vals().len();
    if n < 2 {
        return None;
    }
    let (mut s0, mut s1, mut b) = (0.0, s.vals()[0], s.vals()[1] - s.vals()[0]);
    for i in 1..n {
        // The trend is updated from the second step on, from the last two smoothed values.
        if i > 1 {
            b = tf * (s1 - s0) + (1.0 - tf) * b;
        }
        let next = sf * s.vals()[i] + (1.0 - sf) * (s1 + b);
        s0 = s1;
        s1 = next;
    }
    Some(s1)
}

/// `absent_over_time(v[r])`: 1 with the selector's equality labels when no series has
/// samples in the window, nothing otherwise.
pub(super) fn absent_over_time(
    _ev: &mut Evaluator<'_>,
    args: &[Expr],
    vals: Vec<Instant>,
    ts: Timestamp,
) -> Result<Instant, QueryError> {
    match vals.first() {
        Some(Instant::Range(r)) if !r.is_empty() => Ok(Instant::Vector(Vec::new())),
        _ => Ok(Instant::Vector(vec![Sample::new(
            super::labels::absent_labels(args.first()),
            ts,
            1.0,
        )])),
    }
}
