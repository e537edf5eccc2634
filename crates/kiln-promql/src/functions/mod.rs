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

/// One function: its name, signature and how it runs.
struct FunctionDef {
    name: &'static str,
    signature: Signature,
    kind: Kind,
}

/// What a function takes and returns, as the parser checks it (Prometheus's table).
#[derive(Clone, Copy)]
pub(crate) struct Signature {
    /// The argument types; with `variadic`, the last one may repeat or be left out.
    pub(crate) args: &'static [ValueType],
    /// 0: exactly `args`; n > 0: up to n more of the last type (which may also be
    /// left out); -1: any number more.
    pub(crate) variadic: i8,
    pub(crate) returns: ValueType,
}

const fn range_fn(
    name: &'static str,
    args: &'static [ValueType],
    f: range::RangeFn,
) -> FunctionDef {
    FunctionDef {
        name,
        signature: Signature {
            args,
            variadic: 0,
            returns: ValueType::Vector,
        },
        kind: Kind::Range(f),
    }
}

const fn instant_fn(
    name: &'static str,
    args: &'static [ValueType],
    returns: ValueType,
    f: InstantFn,
) -> FunctionDef {
    FunctionDef {
        name,
        signature: Signature {
            args,
            variadic: 0,
            returns,
        },
        kind: Kind::Instant(f),
    }
}

impl FunctionDef {
    const fn variadic(mut self, n: i8) -> Self {
        self.signature.variadic = n;
        self
    }
}

use ValueType::{Matrix as M, Scalar as S, String as Str, Vector as V};

static FUNCTIONS: &[FunctionDef] = &[
    range_fn("rate", &[M], range::rate),
    range_fn("increase", &[M], range::increase),
    range_fn("delta", &[M], range::delta),
    range_fn("irate", &[M], range::irate),
    range_fn("idelta", &[M], range::idelta),
    range_fn("deriv", &[M], range::deriv),
    range_fn("predict_linear", &[M, S], range::predict_linear),
    range_fn("changes", &[M], range::changes),
    range_fn("resets", &[M], range::resets),
    range_fn("avg_over_time", &[M], range::avg_over_time),
    range_fn("min_over_time", &[M], range::min_over_time),
    range_fn("max_over_time", &[M], range::max_over_time),
    range_fn("sum_over_time", &[M], range::sum_over_time),
    range_fn("count_over_time", &[M], range::count_over_time),
    range_fn("quantile_over_time", &[S, M], range::quantile_over_time),
    range_fn("stddev_over_time", &[M], range::stddev_over_time),
    range_fn("stdvar_over_time", &[M], range::stdvar_over_time),
    range_fn("mad_over_time", &[M], range::mad_over_time),
    range_fn("last_over_time", &[M], range::last_over_time),
    range_fn("first_over_time", &[M], range::first_over_time),
    range_fn("present_over_time", &[M], range::present_over_time),
    range_fn("ts_of_max_over_time", &[M], range::ts_of_max_over_time),
    range_fn("ts_of_min_over_time", &[M], range::ts_of_min_over_time),
    range_fn("ts_of_last_over_time", &[M], range::ts_of_last_over_time),
    range_fn("ts_of_first_over_time", &[M], range::ts_of_first_over_time),
    range_fn(
        "double_exponential_smoothing",
        &[M, S, S],
        range::double_exponential_smoothing,
    ),
    range_fn(
        "holt_winters",
        &[M, S, S],
        range::double_exponential_smoothing,
    ),
    instant_fn("absent_over_time", &[M], V, range::absent_over_time),
    instant_fn("abs", &[V], V, math::abs),
    instant_fn("ceil", &[V], V, math::ceil),
    instant_fn("floor", &[V], V, math::floor),
    instant_fn("exp", &[V], V, math::exp),
    instant_fn("ln", &[V], V, math::ln),
    instant_fn("log2", &[V], V, math::log2),
    instant_fn("log10", &[V], V, math::log10),
    instant_fn("sqrt", &[V], V, math::sqrt),
    instant_fn("sgn", &[V], V, math::sgn),
    instant_fn("sin", &[V], V, math::sin),
    instant_fn("cos", &[V], V, math::cos),
    instant_fn("tan", &[V], V, math::tan),
    instant_fn("asin", &[V], V, math::asin),
    instant_fn("acos", &[V], V, math::acos),
    instant_fn("atan", &[V], V, math::atan),
    instant_fn("sinh", &[V], V, math::sinh),
    instant_fn("cosh", &[V], V, math::cosh),
    instant_fn("tanh", &[V], V, math::tanh),
    instant_fn("asinh", &[V], V, math::asinh),
    instant_fn("acosh", &[V], V, math::acosh),
    instant_fn("atanh", &[V], V, math::atanh),
    instant_fn("deg", &[V], V, math::deg),
    instant_fn("rad", &[V], V, math::rad),
    instant_fn("pi", &[], S, math::pi),
    instant_fn("round", &[V, S], V, math::round).variadic(1),
    instant_fn("clamp", &[V, S, S], V, math::clamp),
    instant_fn("clamp_min", &[V, S], V, math::clamp_min),
    instant_fn("clamp_max", &[V, S], V, math::clamp_max),
    instant_fn("time", &[], S, math::time),
    instant_fn("timestamp", &[V], V, math::timestamp),
    instant_fn("vector", &[S], V, math::vector),
    instant_fn("scalar", &[V], S, math::scalar),
    instant_fn("minute", &[V], V, math::minute).variadic(1),
    instant_fn("hour", &[V], V, math::hour).variadic(1),
    instant_fn("day_of_month", &[V], V, math::day_of_month).variadic(1),
    instant_fn("day_of_week", &[V], V, math::day_of_week).variadic(1),
    instant_fn("day_of_year", &[V], V, math::day_of_year).variadic(1),
    instant_fn("days_in_month", &[V], V, math::days_in_month).variadic(1),
    instant_fn("month", &[V], V, math::month).variadic(1),
    instant_fn("year", &[V], V, math::year).variadic(1),
    instant_fn(
        "label_replace",
        &[V, Str, Str, Str, Str],
        V,
        labels::label_replace,
    ),
    instant_fn("label_join", &[V, Str, Str, Str], V, labels::label_join).variadic(-1),
    instant_fn("sort", &[V], V, labels::sort),
    instant_fn("sort_desc", &[V], V, labels::sort_desc),
    instant_fn("sort_by_label", &[V, Str], V, labels::sort_by_label).variadic(-1),
    instant_fn(
        "sort_by_label_desc",
        &[V, Str],
        V,
        labels::sort_by_label_desc,
    )
    .variadic(-1),
    instant_fn("absent", &[V], V, labels::absent),
    instant_fn(
        "histogram_quantile",
        &[S, V],
        V,
        histogram::histogram_quantile,
    ),
    instant_fn(
        "histogram_quantiles",
        &[V, Str, S, S],
        V,
        histogram::histogram_quantiles,
    )
    .variadic(9),
    instant_fn("step", &[], S, math::step),
    instant_fn("range", &[], S, math::range),
    instant_fn("start", &[], S, math::start),
    instant_fn("end", &[], S, math::end),
    instant_fn("min_of", &[S, S], S, math::min_of),
    instant_fn("max_of", &[S, S], S, math::max_of),
    instant_fn("histogram_count", &[V], V, histogram::native_only),
    instant_fn("histogram_sum", &[V], V, histogram::native_only),
    instant_fn("histogram_avg", &[V], V, histogram::native_only),
    instant_fn(
        "histogram_fraction",
        &[S, S, V],
        V,
        histogram::histogram_fraction,
    ),
    instant_fn("histogram_stddev", &[V], V, histogram::native_only),
    instant_fn("histogram_stdvar", &[V], V, histogram::native_only),
];

fn lookup(name: &str) -> Option<&'static FunctionDef> {
    FUNCTIONS.iter().find(|f| f.name == name)
}

/// The signature of a function Kiln implements.
pub(crate) fn signature(name: &str) -> Option<Signature> {
    lookup(name).map(|f| f.signature)
}

/// Functions of Prometheus 3 that Kiln does not implement yet (the parser says so
/// instead of calling them unknown).
pub(crate) fn known_to_prometheus(name: &str) -> bool {
    matches!(name, "info" | "start_timestamp")
}

/// The type a function returns.
pub(crate) fn return_type(name: &str) -> ValueType {
    lookup(name).map_or(ValueType::Vector, |f| f.signature.returns)
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
