//! PromQL functions.
//!
//! One registry ([`FUNCTIONS`]) holds each function's name, return type and
//! implementation kind; the implementations live by family in the submodules:
//! [`range`] (functions over range vectors), [`math`] (element-wise arithmetic and
//! time), [`labels`] (label manipulation and sorting), [`histogram`] (classic bucket
//! histograms).

mod histogram;
mod labels;
mod math;
pub(crate) mod range;

use kiln_model::Timestamp;

use crate::ast::{Expr, Pos, ValueType};
use crate::error::QueryError;
use crate::eval::{Evaluator, Instant};
use crate::value::Sample;

/// A function over its evaluated arguments (the expressions are there for functions
/// that look at their syntax, like `absent` and `timestamp`).
type InstantFn =
    fn(&mut Evaluator<'_>, &[Expr], Vec<Instant>, Timestamp) -> Result<Instant, QueryError>;

/// How a function is evaluated.
#[derive(Clone, Copy)]
enum Kind {
    /// Over the range-vector argument, one series window at a time.
    Range(range::RangeFn),
    /// Over evaluated arguments.
    Instant(InstantFn),
}

/// One function: its name, what it returns, how it runs.
struct FunctionDef {
    name: &'static str,
    returns: ValueType,
    kind: Kind,
}

const fn range_fn(name: &'static str, f: range::RangeFn) -> FunctionDef {
    FunctionDef {
        name,
        returns: ValueType::Vector,
        kind: Kind::Range(f),
    }
}

const fn instant_fn(name: &'static str, returns: ValueType, f: InstantFn) -> FunctionDef {
    FunctionDef {
        name,
        returns,
        kind: Kind::Instant(f),
    }
}

use ValueType::{Scalar as S, Vector as V};

static FUNCTIONS: &[FunctionDef] = &[
    range_fn("rate", range::rate),
    range_fn("increase", range::increase),
    range_fn("delta", range::delta),
    range_fn("irate", range::irate),
    range_fn("idelta", range::idelta),
    range_fn("deriv", range::deriv),
    range_fn("predict_linear", range::predict_linear),
    range_fn("changes", range::changes),
    range_fn("resets", range::resets),
    range_fn("avg_over_time", range::avg_over_time),
    range_fn("min_over_time", range::min_over_time),
    range_fn("max_over_time", range::max_over_time),
    range_fn("sum_over_time", range::sum_over_time),
    range_fn("count_over_time", range::count_over_time),
    range_fn("quantile_over_time", range::quantile_over_time),
    range_fn("stddev_over_time", range::stddev_over_time),
    range_fn("stdvar_over_time", range::stdvar_over_time),
    range_fn("mad_over_time", range::mad_over_time),
    range_fn("last_over_time", range::last_over_time),
    range_fn("first_over_time", range::first_over_time),
    range_fn("present_over_time", range::present_over_time),
    range_fn("ts_of_max_over_time", range::ts_of_max_over_time),
    range_fn("ts_of_min_over_time", range::ts_of_min_over_time),
    range_fn("ts_of_last_over_time", range::ts_of_last_over_time),
    range_fn("ts_of_first_over_time", range::ts_of_first_over_time),
    range_fn(
        "double_exponential_smoothing",
        range::double_exponential_smoothing,
    ),
    range_fn("holt_winters", range::double_exponential_smoothing),
    instant_fn("absent_over_time", V, range::absent_over_time),
    instant_fn("abs", V, math::abs),
    instant_fn("ceil", V, math::ceil),
    instant_fn("floor", V, math::floor),
    instant_fn("exp", V, math::exp),
    instant_fn("ln", V, math::ln),
    instant_fn("log2", V, math::log2),
    instant_fn("log10", V, math::log10),
    instant_fn("sqrt", V, math::sqrt),
    instant_fn("sgn", V, math::sgn),
    instant_fn("sin", V, math::sin),
    instant_fn("cos", V, math::cos),
    instant_fn("tan", V, math::tan),
    instant_fn("asin", V, math::asin),
    instant_fn("acos", V, math::acos),
    instant_fn("atan", V, math::atan),
    instant_fn("sinh", V, math::sinh),
    instant_fn("cosh", V, math::cosh),
    instant_fn("tanh", V, math::tanh),
    instant_fn("asinh", V, math::asinh),
    instant_fn("acosh", V, math::acosh),
    instant_fn("atanh", V, math::atanh),
    instant_fn("deg", V, math::deg),
    instant_fn("rad", V, math::rad),
    instant_fn("pi", S, math::pi),
    instant_fn("round", V, math::round),
    instant_fn("clamp", V, math::clamp),
    instant_fn("clamp_min", V, math::clamp_min),
    instant_fn("clamp_max", V, math::clamp_max),
    instant_fn("time", S, math::time),
    instant_fn("timestamp", V, math::timestamp),
    instant_fn("vector", V, math::vector),
    instant_fn("scalar", S, math::scalar),
    instant_fn("minute", V, math::minute),
    instant_fn("hour", V, math::hour),
    instant_fn("day_of_month", V, math::day_of_month),
    instant_fn("day_of_week", V, math::day_of_week),
    instant_fn("day_of_year", V, math::day_of_year),
    instant_fn("days_in_month", V, math::days_in_month),
    instant_fn("month", V, math::month),
    instant_fn("year", V, math::year),
    instant_fn("label_replace", V, labels::label_replace),
    instant_fn("label_join", V, labels::label_join),
    instant_fn("sort", V, labels::sort),
    instant_fn("sort_desc", V, labels::sort_desc),
    instant_fn("sort_by_label", V, labels::sort_by_label),
    instant_fn("sort_by_label_desc", V, labels::sort_by_label_desc),
    instant_fn("absent", V, labels::absent),
    instant_fn("histogram_quantile", V, histogram::histogram_quantile),
    instant_fn("histogram_quantiles", V, histogram::histogram_quantiles),
    instant_fn("step", S, math::step),
    instant_fn("range", S, math::range),
    instant_fn("start", S, math::start),
    instant_fn("end", S, math::end),
    instant_fn("min_of", S, math::min_of),
    instant_fn("max_of", S, math::max_of),
    instant_fn("histogram_count", V, histogram::native_only),
    instant_fn("histogram_sum", V, histogram::native_only),
    instant_fn("histogram_avg", V, histogram::native_only),
    instant_fn("histogram_fraction", V, histogram::histogram_fraction),
    instant_fn("histogram_stddev", V, histogram::native_only),
    instant_fn("histogram_stdvar", V, histogram::native_only),
];

fn lookup(name: &str) -> Option<&'static FunctionDef> {
    FUNCTIONS.iter().find(|f| f.name == name)
}

/// Rejects a function the parser knows but Kiln does not implement.
pub(crate) fn check_known(name: &str) -> Result<(), QueryError> {
    match lookup(name) {
        Some(_) => Ok(()),
        None => Err(QueryError::bad_data(format!(
            "function {name:?} is not supported yet"
        ))),
    }
}

/// The type a function returns.
pub(crate) fn return_type(name: &str) -> ValueType {
    lookup(name).map_or(ValueType::Vector, |f| f.returns)
}

/// Calls function `name` at time `ts`; `pos` and `arg_pos` locate the call in the
/// query for annotations.
pub(crate) fn call(
    ev: &mut Evaluator<'_>,
    name: &str,
    args: &[Expr],
    ts: Timestamp,
    pos: Pos,
    arg_pos: &[Pos],
) -> Result<Instant, QueryError> {
    let Some(def) = lookup(name) else {
        return Err(QueryError::bad_data(format!("unknown function {name:?}")));
    };
    match def.kind {
        Kind::Range(f) => range::call(ev, name, f, args, ts, arg_pos),
        Kind::Instant(f) => {
            let mut vals = Vec::with_capacity(args.len());
            for a in args {
                vals.push(ev.eval(a, ts)?);
            }
            // Set after the arguments, which may be calls themselves.
            ev.call_pos = (pos, arg_pos.to_vec());
            f(ev, args, vals, ts)
        }
    }
}

/// The call to `name` as a [`range::GridCall`], when it is a range function whose
/// values can be computed for a whole evaluation grid at once.
pub(crate) fn grid_call<'e>(
    ev: &mut Evaluator<'_>,
    name: &str,
    args: &'e [Expr],
) -> Result<Option<range::GridCall<'e>>, QueryError> {
    match lookup(name).map(|def| def.kind) {
        Some(Kind::Range(f)) => range::grid_call(ev, f, name, args),
        _ => Ok(None),
    }
}

/// The `n`th argument as a scalar.
pub(crate) fn scalar_arg(vals: &[Instant], n: usize) -> Result<f64, QueryError> {
    match vals.get(n) {
        Some(Instant::Scalar(v)) => Ok(*v),
        _ => Err(QueryError::bad_data(format!(
            "expected a scalar as argument {}",
            n + 1
        ))),
    }
}

/// The `n`th argument as a string.
pub(crate) fn string_arg(vals: &[Instant], n: usize) -> Result<String, QueryError> {
    match vals.get(n) {
        Some(Instant::String(s)) => Ok(s.clone()),
        _ => Err(QueryError::bad_data(format!(
            "expected a string as argument {}",
            n + 1
        ))),
    }
}

/// Takes the `n`th argument as an instant vector.
pub(crate) fn vector_arg(vals: &mut [Instant], n: usize) -> Result<Vec<Sample>, QueryError> {
    match vals.get_mut(n) {
        Some(Instant::Vector(v)) => Ok(std::mem::take(v)),
        _ => Err(QueryError::bad_data(format!(
            "expected an instant vector as argument {}",
            n + 1
        ))),
    }
}

/// The `q` quantile of `vals` (sorted in place), interpolating linearly between the two
/// nearest ranks, as Prometheus's `quantile` and `quantile_over_time` do.
pub(crate) fn quantile(q: f64, vals: &mut [f64]) -> f64 {
    if vals.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    // NaN sorts first, as Go's sort.Float64s does.
    vals.sort_by(|a, b| match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Less,
        (false, true) => std::cmp::Ordering::Greater,
        _ => a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal),
    });
    let n = vals.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let weight = rank - rank.floor();
    vals[lower as usize] * (1.0 - weight) + vals[upper as usize] * weight
}
