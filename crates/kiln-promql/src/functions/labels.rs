//! Functions that work on labels or order: `label_replace`, `label_join`, `sort*`,
//! `absent`.

use std::cmp::Ordering;

use kiln_model::labels::is_valid_label_name;
use kiln_model::{Labels, LabelsBuilder, METRIC_NAME, MatchType, Timestamp};

use super::{string_arg, vector_arg};
use crate::ast::Expr;
use crate::error::QueryError;
use crate::eval::{Evaluator, Instant};
use crate::value::Sample;

pub(super) fn label_replace(
    _ev: &mut Evaluator<'_>,
    _args: &[Expr],
    mut vals: Vec<Instant>,
    _ts: Timestamp,
) -> Result<Instant, QueryError> {
    let (dst, repl, src, pattern) = (
        string_arg(&vals, 1)?,
        string_arg(&vals, 2)?,
        string_arg(&vals, 3)?,
        string_arg(&vals, 4)?,
    );
    let re = kiln_model::matcher::compile_anchored(&pattern).map_err(|e| {
        QueryError::bad_data(format!(
            "invalid regular expression in label_replace(): {pattern}: {e}"
        ))
    })?;
    if !is_valid_label_name(&dst) {
        return Err(QueryError::bad_data(format!(
            "invalid destination label name in label_replace(): {dst}"
        )));
    }
    let v = vector_arg(&mut vals, 0)?;
    let mut out = Vec::with_capacity(v.len());
    for s in v {
        let value = s.labels.get(&src).unwrap_or("");
        let labels = match re.captures(value) {
            Some(caps) => {
                let mut expanded = String::new();
                caps.expand(&repl, &mut expanded);
                let mut b = s.labels.to_builder();
                b.set(&dst, &expanded);
                b.build()
            }
            None => s.labels,
        };
        out.push(Sample {
            labels,
            t: s.t,
            v: s.v,
            drop_name: s.drop_name && dst != METRIC_NAME,
        });
    }
    Ok(Instant::Vector(out))
}

pub(super) fn label_join(
    _ev: &mut Evaluator<'_>,
    _args: &[Expr],
    mut vals: Vec<Instant>,
    _ts: Timestamp,
) -> Result<Instant, QueryError> {
    let (dst, sep) = (string_arg(&vals, 1)?, string_arg(&vals, 2)?);
    let mut srcs = Vec::new();
    for i in 3..vals.len() {
        let src = string_arg(&vals, i)?;
        if !is_valid_label_name(&src) {
            return Err(QueryError::bad_data(format!(
                "invalid source label name in label_join(): {src}"
            )));
        }
        srcs.push(src);
    }
    if !is_valid_label_name(&dst) {
        return Err(QueryError::bad_data(format!(
            "invalid destination label name in label_join(): {dst}"
        )));
    }
    let v = vector_arg(&mut vals, 0)?;
    let out = v
        .into_iter()
        .map(|s| {
            let joined: Vec<&str> = srcs.iter().map(|n| s.labels.get(n).unwrap_or("")).collect();
            let mut b = s.labels.to_builder();
            b.set(&dst, &joined.join(&sep));
            Sample {
                labels: b.build(),
                t: s.t,
                v: s.v,
                drop_name: s.drop_name && dst != METRIC_NAME,
            }
        })
        .collect();
    Ok(Instant::Vector(out))
}

/// Ascending by value, NaN last.
fn by_value(a: &Sample, b: &Sample) -> Ordering {
    match (a.v.is_nan(), b.v.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        _ => a.v.partial_cmp(&b.v).unwrap_or(Ordering::Equal),
    }
}

pub(super) fn sort(
    ev: &mut Evaluator<'_>,
    _args: &[Expr],
    mut vals: Vec<Instant>,
    _ts: Timestamp,
) -> Result<Instant, QueryError> {
    warn_if_range(ev);
    let mut v = vector_arg(&mut vals, 0)?;
    v.sort_by(by_value);
    Ok(Instant::Vector(v))
}

pub(super) fn sort_desc(
    ev: &mut Evaluator<'_>,
    _args: &[Expr],
    mut vals: Vec<Instant>,
    _ts: Timestamp,
) -> Result<Instant, QueryError> {
    warn_if_range(ev);
    let mut v = vector_arg(&mut vals, 0)?;
    v.sort_by(|a, b| match (a.v.is_nan(), b.v.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        _ => b.v.partial_cmp(&a.v).unwrap_or(Ordering::Equal),
    });
    Ok(Instant::Vector(v))
}

/// Compares strings in natural order: digit runs compare as numbers.
fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (mut x, mut y) = (a.as_bytes(), b.as_bytes());
    loop {
        match (x.first(), y.first()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(c), Some(d)) if c.is_ascii_digit() && d.is_ascii_digit() => {
                let nx = x.iter().take_while(|c| c.is_ascii_digit()).count();
                let ny = y.iter().take_while(|c| c.is_ascii_digit()).count();
                let (dx, dy) = (&x[..nx], &y[..ny]);
                let tx = dx.iter().skip_while(|&&c| c == b'0').count();
                let ty = dy.iter().skip_while(|&&c| c == b'0').count();
                let o = tx.cmp(&ty).then_with(|| dx[nx - tx..].cmp(&dy[ny - ty..]));
                if o != Ordering::Equal {
                    return o;
                }
                x = &x[nx..];
                y = &y[ny..];
            }
            (Some(c), Some(d)) => {
                if c != d {
                    return c.cmp(d);
                }
                x = &x[1..];
                y = &y[1..];
            }
        }
    }
}

/// Sorting means nothing in a range query, whose series come ordered by labels.
fn warn_if_range(ev: &mut Evaluator<'_>) {
    if ev.step != 0 {
        let pos = ev.call_pos.0;
        ev.warn(format!("PromQL warning: sort is ineffective for range queries since results are always ordered by labels {pos}"));
    }
}

fn sort_by_labels(mut vals: Vec<Instant>, desc: bool) -> Result<Instant, QueryError> {
    let names: Vec<String> = (1..vals.len())
        .map(|i| string_arg(&vals, i))
        .collect::<Result<_, _>>()?;
    let mut v = vector_arg(&mut vals, 0)?;
    v.sort_by(|a, b| {
        for n in &names {
            let o = natural_cmp(a.labels.get(n).unwrap_or(""), b.labels.get(n).unwrap_or(""));
            if o != Ordering::Equal {
                return if desc { o.reverse() } else { o };
            }
        }
        // Ties are broken by the whole label set, for a stable order.
        let o = a.labels.cmp(&b.labels);
        if desc { o.reverse() } else { o }
    });
    Ok(Instant::Vector(v))
}

pub(super) fn sort_by_label(
    ev: &mut Evaluator<'_>,
    _args: &[Expr],
    vals: Vec<Instant>,
    _ts: Timestamp,
) -> Result<Instant, QueryError> {
    warn_if_range(ev);
    sort_by_labels(vals, false)
}

pub(super) fn sort_by_label_desc(
    ev: &mut Evaluator<'_>,
    _args: &[Expr],
    vals: Vec<Instant>,
    _ts: Timestamp,
) -> Result<Instant, QueryError> {
    warn_if_range(ev);
    sort_by_labels(vals, true)
}

/// The labels `absent` reports: the selector's equality matchers (except the metric
/// name), for names matched only once.
pub(super) fn absent_labels(arg: Option<&Expr>) -> Labels {
    let mut e = arg;
    while let Some(Expr::Paren(inner)) = e {
        e = Some(inner);
    }
    let sel = match e {
        Some(Expr::Selector(sel)) | Some(Expr::Matrix { sel, .. }) => sel,
        _ => return Labels::empty(),
    };
    let mut b = LabelsBuilder::new();
    let mut seen: Vec<&str> = Vec::new();
    let mut repeated: Vec<&str> = Vec::new();
    for m in &sel.matchers {
        if seen.contains(&m.name.as_str()) {
            repeated.push(&m.name);
        }
        seen.push(&m.name);
    }
    for m in &sel.matchers {
        if m.kind == MatchType::Equal
            && m.name != METRIC_NAME
            && !repeated.contains(&m.name.as_str())
        {
            b.set(&m.name, &m.value);
        }
    }
    b.build()
}

pub(super) fn absent(
    _ev: &mut Evaluator<'_>,
    args: &[Expr],
    vals: Vec<Instant>,
    ts: Timestamp,
) -> Result<Instant, QueryError> {
    match vals.first() {
        Some(Instant::Vector(v)) if !v.is_empty() => Ok(Instant::Vector(Vec::new())),
        _ => Ok(Instant::Vector(vec![Sample::new(
            absent_labels(args.first()),
            ts,
            1.0,
        )])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn natural_order() {
        assert_eq!(natural_cmp("a2", "a10"), Ordering::Less);
        assert_eq!(natural_cmp("a10", "a10"), Ordering::Equal);
        assert_eq!(natural_cmp("b", "a10"), Ordering::Greater);
        assert_eq!(natural_cmp("a02", "a2"), Ordering::Equal);
    }
}
