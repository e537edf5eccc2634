//! Histogram functions over classic `le`-bucket series. Native histograms are not
//! supported yet: the `histogram_*` functions that only take native histograms return
//! nothing for float input, as Prometheus does.

use std::collections::HashMap;

use kiln_model::{Labels, METRIC_NAME, Timestamp};

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

pub(super) fn histogram_quantile(
    ev: &mut Evaluator<'_>,
    _args: &[Expr],
    mut vals: Vec<Instant>,
    ts: Timestamp,
) -> Result<Instant, QueryError> {
    let q = scalar_arg(&vals, 0)?;
    let v = vector_arg(&mut vals, 1)?;
    let mut index: HashMap<Labels, usize> = HashMap::new();
    let mut groups: Vec<(Labels, Vec<(f64, f64)>)> = Vec::new();
    for s in v {
        let Some(le) = s.labels.get("le") else {
            continue;
        };
        let Some(upper) = parse_le(le) else {
            ev.warn(format!(
                "PromQL warning: bucket label \"le\" is missing or has a malformed value of {le:?}"
            ));
            continue;
        };
        let mut b = s.labels.to_builder();
        b.del("le");
        b.del(METRIC_NAME);
        let key = b.build();
        let i = *index.entry(key.clone()).or_insert_with(|| {
            groups.push((key, Vec::new()));
            groups.len() - 1
        });
        groups[i].1.push((upper, s.v));
    }
    if !(0.0..=1.0).contains(&q) && !q.is_nan() {
        ev.warn(format!(
            "PromQL warning: quantile value should be between 0 and 1, got {q}"
        ));
    }
    let mut out = Vec::with_capacity(groups.len());
    for (labels, buckets) in groups {
        let (v, fixed) = bucket_quantile(q, buckets);
        if fixed {
            ev.info("PromQL info: input to histogram_quantile needed to be fixed for monotonicity (see https://prometheus.io/docs/prometheus/latest/querying/functions/#histogram_quantile)".into());
        }
        out.push(Sample { labels, t: ts, v });
    }
    Ok(Instant::Vector(out))
}

/// The quantile of classic buckets `(upper bound, cumulative count)`, and whether the
/// counts had to be made monotonic.
fn bucket_quantile(q: f64, mut buckets: Vec<(f64, f64)>) -> (f64, bool) {
    if q.is_nan() {
        return (f64::NAN, false);
    }
    if q < 0.0 {
        return (f64::NEG_INFINITY, false);
    }
    if q > 1.0 {
        return (f64::INFINITY, false);
    }
    buckets.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal));
    if !buckets.last().is_some_and(|b| b.0 == f64::INFINITY) {
        return (f64::NAN, false);
    }
    // Merge buckets with equal bounds.
    let mut merged: Vec<(f64, f64)> = Vec::with_capacity(buckets.len());
    for (ub, c) in buckets {
        match merged.last_mut() {
            Some(last) if last.0 == ub => last.1 += c,
            _ => merged.push((ub, c)),
        }
    }
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
