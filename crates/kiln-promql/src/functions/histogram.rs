//! Histogram functions over classic `le`-bucket series. Native histograms are not
//! supported yet: the `histogram_*` functions that only take native histograms return
//! nothing for float input, as Prometheus does.

use kiln_model::{Labels, Timestamp};

use super::{scalar_arg, vector_arg};
use crate::ast::Expr;
use crate::error::QueryError;
use crate::eval::{Evaluator, Instant};
use crate::value::Sample;

/// Relative tolerance under which a decrease between buckets is treated as float noise.
const SMALL_DELTA_TOLERANCE: f64 = 1e-12;

pub(super) fn native_only(
    _ev: &mut Evaluator<'_>,
    _args: &[Expr],
    _vals: Vec<Instant>,
    _ts: Timestamp,
) -> Result<Instant, QueryError> {
    Ok(Instant::Vector(Vec::new()))
}

/// Parses an `le` value as Prometheus does (`+Inf`, `Inf`, numbers).
fn parse_le(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" | "+inf" | "inf" => Some(f64::INFINITY),
        "-Inf" | "-inf" => Some(f64::NEG_INFINITY),
        _ => s.parse().ok(),
    }
}

/// Groups classic bucket samples (argument `arg` of the current call) by their labels
/// without `le`: `(group labels without the metric name, [(upper bound, count)])`. Two
/// metrics with otherwise equal labels stay apart, and then collide in the result, which
/// is an error as in Prometheus.
fn bucket_groups(
    ev: &mut Evaluator<'_>,
    v: Vec<Sample>,
    arg: usize,
) -> Vec<(Labels, Vec<(f64, f64)>)> {
    // The same series come back at every step, usually in the same order: the last
    // step's grouping is used again when it fits (see `BucketPlan`).
    let plan = match ev.label_cache.bucket_plan.take() {
        Some(plan) if plan.fits(v.iter().map(|s| &s.labels)) => plan,
        _ => {
            let labels: Vec<&Labels> = v.iter().map(|s| &s.labels).collect();
            ev.label_cache.make_bucket_plan(&labels, parse_le)
        }
    };
    let mut groups: Vec<(Labels, Vec<(f64, f64)>)> = plan
        .groups
        .iter()
        .map(|(key, n)| (key.clone(), Vec::with_capacity(*n)))
        .collect();
    for (s, slot) in v.iter().zip(&plan.slots) {
        match *slot {
            Some((i, upper)) => groups[i].1.push((upper, s.v)),
            None => {
                let le = s.labels.get("le").unwrap_or("");
                let pos = ev.arg_pos(arg);
                let name = s.labels.metric_name().unwrap_or("");
                ev.warn(format!(
                    "PromQL warning: bucket label \"le\" is missing or has a malformed value of {le:?} for metric name {name:?} {pos}"
                ));
            }
        }
    }
    ev.label_cache.bucket_plan = Some(plan);
    groups
}

fn warn_quantile(ev: &mut Evaluator<'_>, q: f64, arg: usize) {
    if q.is_nan() || !(0.0..=1.0).contains(&q) {
        let pos = ev.arg_pos(arg);
        ev.warn(format!(
            "PromQL warning: quantile value should be between 0 and 1, got {} {pos}",
            crate::eval::go_float(q)
        ));
    }
}

fn monotonicity_info(ev: &mut Evaluator<'_>, name: &str, arg: usize) {
    let pos = ev.arg_pos(arg);
    ev.info(format!(
        "PromQL info: input to histogram_quantile needed to be fixed for monotonicity (see https://prometheus.io/docs/prometheus/latest/querying/functions/#histogram_quantile) for metric name {name:?} {pos}"
    ));
}

pub(super) fn histogram_quantile(
    ev: &mut Evaluator<'_>,
    _args: &[Expr],
    mut vals: Vec<Instant>,
    ts: Timestamp,
) -> Result<Instant, QueryError> {
    let q = scalar_arg(&vals, 0)?;
    let v = vector_arg(&mut vals, 1)?;
    warn_quantile(ev, q, 0);
    let mut out = Vec::new();
    let first_name = v
        .first()
        .and_then(|s| s.labels.metric_name())
        .unwrap_or("")
        .to_owned();
    for (labels, buckets) in bucket_groups(ev, v, 1) {
        let (value, fixed) = bucket_quantile(q, buckets);
        if fixed {
            monotonicity_info(ev, &first_name, 1);
        }
        out.push(Sample {
            labels,
            t: ts,
            v: value,
            drop_name: true,
        });
    }
    Ok(Instant::Vector(out))
}

/// Formats a quantile for the label `histogram_quantiles` adds: shortest digits, with
/// `.0` for whole numbers (`0.0`, `0.25`, `1.0`).
fn quantile_label(q: f64) -> String {
    if q.is_nan() {
        "NaN".into()
    } else if q.is_infinite() {
        if q > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else if q.fract() == 0.0 {
        format!("{q:.1}")
    } else {
        format!("{q}")
    }
}

/// `histogram_quantiles(v, "label", q1, q2, ...)`: one `histogram_quantile` per `q`, told
/// apart by `label`.
pub(super) fn histogram_quantiles(
    ev: &mut Evaluator<'_>,
    _args: &[Expr],
    mut vals: Vec<Instant>,
    ts: Timestamp,
) -> Result<Instant, QueryError> {
    let label = super::string_arg(&vals, 1)?;
    if !kiln_model::labels::is_valid_label_name(&label) {
        return Err(QueryError::bad_data(format!(
            "invalid label name {label:?}"
        )));
    }
    let qs: Vec<f64> = (2..vals.len())
        .map(|i| scalar_arg(&vals, i))
        .collect::<Result<_, _>>()?;
    let v = vector_arg(&mut vals, 0)?;
    for (i, &q) in qs.iter().enumerate() {
        warn_quantile(ev, q, i + 2);
    }
    let first_name = v
        .first()
        .and_then(|s| s.labels.metric_name())
        .unwrap_or("")
        .to_owned();
    let groups = bucket_groups(ev, v, 0);
    let mut out = Vec::new();
    for &q in &qs {
        for (labels, buckets) in &groups {
            if labels.get(&label).is_some() {
                return Err(QueryError::execution(format!(
                    "label {label:?} already exists on the input series"
                )));
            }
            let (value, fixed) = bucket_quantile(q, buckets.clone());
            if fixed {
                monotonicity_info(ev, &first_name, 0);
            }
            let mut b = labels.to_builder();
            b.set(&label, &quantile_label(q));
            out.push(Sample {
                labels: b.build(),
                t: ts,
                v: value,
                drop_name: true,
            });
        }
    }
    Ok(Instant::Vector(out))
}

/// `histogram_fraction(lower, upper, v)`: the fraction of observations between the bounds,
/// interpolating linearly inside buckets.
pub(super) fn histogram_fraction(
    ev: &mut Evaluator<'_>,
    _args: &[Expr],
    mut vals: Vec<Instant>,
    ts: Timestamp,
) -> Result<Instant, QueryError> {
    let (lower, upper) = (scalar_arg(&vals, 0)?, scalar_arg(&vals, 1)?);
    let v = vector_arg(&mut vals, 2)?;
    let out = bucket_groups(ev, v, 2)
        .into_iter()
        .map(|(labels, buckets)| Sample {
            labels,
            t: ts,
            v: bucket_fraction(lower, upper, buckets),
            drop_name: true,
        })
        .collect();
    Ok(Instant::Vector(out))
}

/// Sorts buckets by bound and merges equal bounds, in place; `None` without a `+Inf`
/// bucket.
fn prepared(mut buckets: Vec<(f64, f64)>) -> Option<Vec<(f64, f64)>> {
    buckets.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal));
    if !buckets.last().is_some_and(|b| b.0 == f64::INFINITY) {
        return None;
    }
    let mut kept = 0;
    for i in 0..buckets.len() {
        let (ub, c) = buckets[i];
        if kept > 0 && buckets[kept - 1].0 == ub {
            buckets[kept - 1].1 += c;
        } else {
            buckets[kept] = (ub, c);
            kept += 1;
        }
    }
    buckets.truncate(kept);
    Some(buckets)
}

fn bucket_fraction(lower: f64, upper: f64, buckets: Vec<(f64, f64)>) -> f64 {
    let Some(buckets) = prepared(buckets) else {
        return f64::NAN;
    };
    let count = buckets[buckets.len() - 1].1;
    if count == 0.0 || lower.is_nan() || upper.is_nan() {
        return f64::NAN;
    }
    if lower >= upper {
        return 0.0;
    }
    let (mut rank, mut lower_rank, mut upper_rank) = (0.0, None, None);
    for (i, &(ub, c)) in buckets.iter().enumerate() {
        // The first bucket starts at 0 when its bound is positive; otherwise, like the
        // last bucket, it is infinitely wide and nothing inside it is interpolated.
        let lb = if i > 0 {
            buckets[i - 1].0
        } else if ub > 0.0 {
            0.0
        } else {
            f64::NEG_INFINITY
        };
        let interpolate = |x: f64| -> f64 {
            if lb.is_infinite() {
                c
            } else if ub.is_infinite() {
                rank
            } else {
                rank + (c - rank) * (x - lb) / (ub - lb)
            }
        };
        if lower_rank.is_none() && lb >= lower {
            lower_rank = Some(rank);
        }
        if upper_rank.is_none() && lb >= upper {
            upper_rank = Some(rank);
        }
        if lower_rank.is_some() && upper_rank.is_some() {
            break;
        }
        if lower_rank.is_none() && lb < lower && ub > lower {
            lower_rank = Some(interpolate(lower));
        }
        if upper_rank.is_none() && lb < upper && ub > upper {
            upper_rank = Some(if lb.is_infinite() {
                rank
            } else {
                interpolate(upper)
            });
        }
        if lower_rank.is_some() && upper_rank.is_some() {
            break;
        }
        rank = c;
    }
    let lower_rank = lower_rank.map_or(count, |r: f64| r.min(count));
    let upper_rank = upper_rank.map_or(count, |r: f64| r.min(count));
    (upper_rank - lower_rank) / count
}

/// The quantile of classic buckets `(upper bound, cumulative count)`, and whether the
/// counts had to be made monotonic.
fn bucket_quantile(q: f64, buckets: Vec<(f64, f64)>) -> (f64, bool) {
    if q.is_nan() {
        return (f64::NAN, false);
    }
    if q < 0.0 {
        return (f64::NEG_INFINITY, false);
    }
    if q > 1.0 {
        return (f64::INFINITY, false);
    }
    let Some(mut merged) = prepared(buckets) else {
        return (f64::NAN, false);
    };
    let mut fixed = false;
    let mut max = f64::NEG_INFINITY;
    for b in merged.iter_mut() {
        if b.1 >= max {
            max = b.1;
        } else if (max - b.1) / max.abs().max(f64::MIN_POSITIVE) <= SMALL_DELTA_TOLERANCE {
            b.1 = max;
        } else {
            fixed = true;
            b.1 = max;
        }
    }
    if merged.len() < 2 {
        return (f64::NAN, fixed);
    }
    let n = merged.len();
    let observations = merged[n - 1].1;
    if observations == 0.0 || observations.is_nan() {
        return (f64::NAN, fixed);
    }
    let mut rank = q * observations;
    let b = merged[..n - 1].partition_point(|x| x.1 < rank);
    if b == n - 1 {
        return (merged[n - 2].0, fixed);
    }
    if b == 0 && merged[0].0 <= 0.0 {
        return (merged[0].0, fixed);
    }
    let (mut start, end, mut count) = (0.0, merged[b].0, merged[b].1);
    if b > 0 {
        start = merged[b - 1].0;
        count -= merged[b - 1].1;
        rank -= merged[b - 1].1;
    }
    (start + (end - start) * (rank / count), fixed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles() {
        let b = vec![(0.1, 10.0), (0.5, 20.0), (f64::INFINITY, 20.0)];
        assert_eq!(bucket_quantile(0.5, b.clone()).0, 0.1);
        assert!((bucket_quantile(0.75, b.clone()).0 - 0.3).abs() < 1e-12);
        assert_eq!(bucket_quantile(1.0, b.clone()).0, 0.5);
        assert!(
            bucket_quantile(0.5, vec![(1.0, 1.0)]).0.is_nan(),
            "no +Inf bucket"
        );
        assert!(
            bucket_quantile(0.5, vec![(1.0, 5.0), (0.5, 10.0), (f64::INFINITY, 10.0)]).1,
            "fixed monotonicity"
        );
    }
}
