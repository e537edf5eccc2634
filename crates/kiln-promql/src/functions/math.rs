//! Element-wise functions: arithmetic, trigonometry, rounding and clamping, and the
//! time and date functions.

use kiln_model::{Labels, Timestamp, calendar};

use super::{scalar_arg, vector_arg};
use crate::ast::Expr;
use crate::error::QueryError;
use crate::eval::{Evaluator, Instant};
use crate::value::Sample;

/// Applies `f` to every sample of the first argument, dropping the metric name.
fn map(mut vals: Vec<Instant>, f: impl Fn(f64) -> f64) -> Result<Instant, QueryError> {
    let v = vector_arg(&mut vals, 0)?;
    Ok(Instant::Vector(
        v.into_iter()
            .map(|s| Sample {
                labels: s.labels,
                t: s.t,
                v: f(s.v),
                drop_name: true,
            })
            .collect(),
    ))
}

macro_rules! simple {
    ($($name:ident => $f:expr),* $(,)?) => {
        $(
            pub(super) fn $name(_ev: &mut Evaluator<'_>, _args: &[Expr], vals: Vec<Instant>, _ts: Timestamp) -> Result<Instant, QueryError> {
                map(vals, $f)
            }
        )*
    };
}

simple! {
    abs => f64::abs,
    ceil => f64::ceil,
    floor => f64::floor,
    exp => f64::exp,
    ln => f64::ln,
    log2 => f64::log2,
    log10 => f64::log10,
    sqrt => f64::sqrt,
    sin => f64::sin,
    cos => f64::cos,
    tan => f64::tan,
    asin => f64::asin,
    acos => f64::acos,
    atan => f64::atan,
    sinh => f64::sinh,
    cosh => f64::cosh,
    tanh => f64::tanh,
    asinh => f64::asinh,
    acosh => f64::acosh,
    atanh => f64::atanh,
    deg => |v: f64| v * 180.0 / std::f64::consts::PI,
    rad => |v: f64| v * std::f64::consts::PI / 180.0,
    sgn => |v: f64| if v > 0.0 { 1.0 } else if v < 0.0 { -1.0 } else { v },
}

/// Go's `math.Max`: NaN wins (Rust's `f64::max` ignores NaN).
fn go_max(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.max(b)
    }
}

/// Go's `math.Min`: NaN wins.
fn go_min(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.min(b)
    }
}

pub(super) fn pi(
    _ev: &mut Evaluator<'_>,
    _args: &[Expr],
    _vals: Vec<Instant>,
    _ts: Timestamp,
) -> Result<Instant, QueryError> {
    Ok(Instant::Scalar(std::f64::consts::PI))
}

pub(super) fn round(
    _ev: &mut Evaluator<'_>,
    _args: &[Expr],
    vals: Vec<Instant>,
    _ts: Timestamp,
) -> Result<Instant, QueryError> {
    let to_nearest = if vals.len() > 1 {
        scalar_arg(&vals, 1)?
    } else {
        1.0
    };
    let inverse = 1.0 / to_nearest;
    map(vals, move |v| (v * inverse + 0.5).floor() / inverse)
}

pub(super) fn clamp(
    _ev: &mut Evaluator<'_>,
    _args: &[Expr],
    vals: Vec<Instant>,
    _ts: Timestamp,
) -> Result<Instant, QueryError> {
    let (lo, hi) = (scalar_arg(&vals, 1)?, scalar_arg(&vals, 2)?);
    if hi < lo {
        return Ok(Instant::Vector(Vec::new()));
    }
    map(vals, move |v| go_max(lo, go_min(hi, v)))
}

pub(super) fn clamp_min(
    _ev: &mut Evaluator<'_>,
    _args: &[Expr],
    vals: Vec<Instant>,
    _ts: Timestamp,
) -> Result<Instant, QueryError> {
    let lo = scalar_arg(&vals, 1)?;
    map(vals, move |v| go_max(lo, v))
}

pub(super) fn clamp_max(
    _ev: &mut Evaluator<'_>,
    _args: &[Expr],
    vals: Vec<Instant>,
    _ts: Timestamp,
) -> Result<Instant, QueryError> {
    let hi = scalar_arg(&vals, 1)?;
    map(vals, move |v| go_min(hi, v))
}

pub(super) fn step(
    ev: &mut Evaluator<'_>,
    _args: &[Expr],
    _vals: Vec<Instant>,
    _ts: Timestamp,
) -> Result<Instant, QueryError> {
    Ok(Instant::Scalar(ev.step as f64 / 1000.0))
}

pub(super) fn range(
    ev: &mut Evaluator<'_>,
    _args: &[Expr],
    _vals: Vec<Instant>,
    _ts: Timestamp,
) -> Result<Instant, QueryError> {
    let (start, end) = ev.bounds();
    Ok(Instant::Scalar((end - start) as f64 / 1000.0))
}

pub(super) fn start(
    ev: &mut Evaluator<'_>,
    _args: &[Expr],
    _vals: Vec<Instant>,
    _ts: Timestamp,
) -> Result<Instant, QueryError> {
    Ok(Instant::Scalar(ev.bounds().0 as f64 / 1000.0))
}

pub(super) fn end(
    ev: &mut Evaluator<'_>,
    _args: &[Expr],
    _vals: Vec<Instant>,
    _ts: Timestamp,
) -> Result<Instant, QueryError> {
    Ok(Instant::Scalar(ev.bounds().1 as f64 / 1000.0))
}

pub(super) fn min_of(
    _ev: &mut Evaluator<'_>,
    _args: &[Expr],
    vals: Vec<Instant>,
    _ts: Timestamp,
) -> Result<Instant, QueryError> {
    Ok(Instant::Scalar(go_min(
        scalar_arg(&vals, 0)?,
        scalar_arg(&vals, 1)?,
    )))
}

pub(super) fn max_of(
    _ev: &mut Evaluator<'_>,
    _args: &[Expr],
    vals: Vec<Instant>,
    _ts: Timestamp,
) -> Result<Instant, QueryError> {
    Ok(Instant::Scalar(go_max(
        scalar_arg(&vals, 0)?,
        scalar_arg(&vals, 1)?,
    )))
}

pub(super) fn time(
    _ev: &mut Evaluator<'_>,
    _args: &[Expr],
    _vals: Vec<Instant>,
    ts: Timestamp,
) -> Result<Instant, QueryError> {
    Ok(Instant::Scalar(ts as f64 / 1000.0))
}

/// `timestamp(v)`: each sample's timestamp in seconds. Given a selector directly, that is
/// the stored sample's own time, not the evaluation time.
pub(super) fn timestamp(
    ev: &mut Evaluator<'_>,
    args: &[Expr],
    mut vals: Vec<Instant>,
    ts: Timestamp,
) -> Result<Instant, QueryError> {
    let mut arg = args.first();
    while let Some(Expr::Paren(inner)) = arg {
        arg = Some(inner);
    }
    let v = match arg {
        Some(Expr::Selector(sel)) => ev.vector_at_sample_times(sel, ts),
        _ => vector_arg(&mut vals, 0)?,
    };
    Ok(Instant::Vector(
        v.into_iter()
            .map(|s| Sample {
                labels: s.labels,
                t: ts,
                v: s.t as f64 / 1000.0,
                drop_name: true,
            })
            .collect(),
    ))
}

pub(super) fn vector(
    _ev: &mut Evaluator<'_>,
    _args: &[Expr],
    vals: Vec<Instant>,
    ts: Timestamp,
) -> Result<Instant, QueryError> {
    Ok(Instant::Vector(vec![Sample::new(
        Labels::empty(),
        ts,
        scalar_arg(&vals, 0)?,
    )]))
}

pub(super) fn scalar(
    _ev: &mut Evaluator<'_>,
    _args: &[Expr],
    mut vals: Vec<Instant>,
    _ts: Timestamp,
) -> Result<Instant, QueryError> {
    let v = vector_arg(&mut vals, 0)?;
    Ok(Instant::Scalar(if v.len() == 1 {
        v[0].v
    } else {
        f64::NAN
    }))
}

/// Applies a date function to each sample value (seconds since the epoch), or to the
/// evaluation time when called without an argument.
fn date_fn(
    mut vals: Vec<Instant>,
    ts: Timestamp,
    f: fn(i64, u32, u32, i64) -> f64,
) -> Result<Instant, QueryError> {
    let v = if vals.is_empty() {
        vec![Sample::new(Labels::empty(), ts, ts as f64 / 1000.0)]
    } else {
        vector_arg(&mut vals, 0)?
    };
    let out = v
        .into_iter()
        .map(|s| {
            let value = if s.v.is_finite() {
                let secs = s.v.floor() as i64;
                let days = secs.div_euclid(86_400);
                let (y, m, d) = calendar::civil_from_days(days);
                f(y, m, d, secs)
            } else {
                s.v
            };
            Sample {
                labels: s.labels,
                t: s.t,
                v: value,
                drop_name: true,
            }
        })
        .collect();
    Ok(Instant::Vector(out))
}

macro_rules! date {
    ($($name:ident => $f:expr),* $(,)?) => {
        $(
            pub(super) fn $name(_ev: &mut Evaluator<'_>, _args: &[Expr], vals: Vec<Instant>, ts: Timestamp) -> Result<Instant, QueryError> {
                date_fn(vals, ts, $f)
            }
        )*
    };
}

date! {
    minute => |_, _, _, secs| (secs.rem_euclid(3600) / 60) as f64,
    hour => |_, _, _, secs| (secs.rem_euclid(86_400) / 3600) as f64,
    day_of_month => |_, _, d, _| f64::from(d),
    day_of_week => |_, _, _, secs| (secs.div_euclid(86_400) + 4).rem_euclid(7) as f64,
    day_of_year => |y, m, d, _| {
        let before: u32 = (1..m).map(|mm| calendar::days_in_month(y, mm)).sum();
        f64::from(before + d)
    },
    days_in_month => |y, m, _, _| f64::from(calendar::days_in_month(y, m)),
    month => |_, m, _, _| f64::from(m),
    year => |y, _, _, _| y as f64,
}
