//! Binary operators at one evaluation time: arithmetic, comparisons (filtering or
//! `bool`), set operators, and vector matching with `on`/`ignoring` and
//! `group_left`/`group_right`.

use std::collections::{HashMap, HashSet};

use kiln_model::{Labels, METRIC_NAME, Timestamp};

use super::{HashKeyed, Instant, LabelCache};
use crate::ast::{BinOp, Cardinality, VectorMatching};
use crate::error::QueryError;
use crate::value::Sample;

/// Applies `op` to two floats. Returns the value and, for comparisons, whether it holds.
pub(crate) fn apply(op: BinOp, l: f64, r: f64) -> (f64, bool) {
    match op {
        BinOp::Add => (l + r, true),
        BinOp::Sub => (l - r, true),
        BinOp::Mul => (l * r, true),
        BinOp::Div => (l / r, true),
        BinOp::Mod => (l % r, true),
        BinOp::Pow => (l.powf(r), true),
        BinOp::Atan2 => (l.atan2(r), true),
        BinOp::Eql => (l, l == r),
        BinOp::Neq => (l, l != r),
        BinOp::Gtr => (l, l > r),
        BinOp::Lss => (l, l < r),
        BinOp::Gte => (l, l >= r),
        BinOp::Lte => (l, l <= r),
        BinOp::And | BinOp::Or | BinOp::Unless => (l, true),
    }
}

/// A vector-vector operation's value for one pair of samples: `None` when a filtering
/// comparison (no `bool`) drops the pair; a comparison keeps the left-hand value.
pub(super) fn pair_value(op: BinOp, lv: f64, rv: f64, return_bool: bool) -> Option<f64> {
    let (value, holds) = apply(op, lv, rv);
    if !op.is_comparison() {
        Some(value)
    } else if return_bool {
        Some(if holds { 1.0 } else { 0.0 })
    } else {
        holds.then_some(value)
    }
}

/// Whether the operator removes the metric name from its result.
pub(super) fn drops_name(op: BinOp, return_bool: bool) -> bool {
    return_bool || !(op.is_comparison() || op.is_set())
}

pub(super) fn eval(
    op: BinOp,
    lhs: Instant,
    rhs: Instant,
    return_bool: bool,
    matching: &VectorMatching,
    ts: Timestamp,
    sigs: &mut LabelCache,
) -> Result<Instant, QueryError> {
    match (lhs, rhs) {
        (Instant::Scalar(l), Instant::Scalar(r)) => {
            let (v, keep) = apply(op, l, r);
            Ok(Instant::Scalar(if op.is_comparison() {
                if keep { 1.0 } else { 0.0 }
            } else {
                v
            }))
        }
        (Instant::Vector(v), Instant::Scalar(s)) => {
            Ok(Instant::Vector(vector_scalar(op, v, s, false, return_bool)))
        }
        (Instant::Scalar(s), Instant::Vector(v)) => {
            Ok(Instant::Vector(vector_scalar(op, v, s, true, return_bool)))
        }
        (Instant::Vector(l), Instant::Vector(r)) => {
            let out = match op {
                BinOp::And => and_unless(l, r, matching, true, sigs),
                BinOp::Unless => and_unless(l, r, matching, false, sigs),
                BinOp::Or => or(l, r, matching, sigs),
                _ => vector_vector(op, l, r, return_bool, matching, ts, sigs)?,
            };
            Ok(Instant::Vector(out))
        }
        (l, r) => Err(QueryError::bad_data(format!(
            "binary operator between {} and {} is not allowed",
            l.type_name(),
            r.type_name()
        ))),
    }
}

fn vector_scalar(
    op: BinOp,
    v: Vec<Sample>,
    s: f64,
    scalar_left: bool,
    return_bool: bool,
) -> Vec<Sample> {
    let drop = drops_name(op, return_bool);
    let mut out = Vec::with_capacity(v.len());
    for sample in v {
        let (l, r) = if scalar_left {
            (s, sample.v)
        } else {
            (sample.v, s)
        };
        let (mut value, keep) = apply(op, l, r);
        if op.is_comparison() {
            // The vector's value is kept even when the scalar is on the left.
            value = sample.v;
            if return_bool {
                value = if keep { 1.0 } else { 0.0 };
            } else if !keep {
                continue;
            }
        }
        out.push(Sample {
            labels: sample.labels,
            t: sample.t,
            v: value,
            drop_name: sample.drop_name || drop,
        });
    }
    out
}

/// The matching labels themselves, for error messages.
fn signature_labels(l: &Labels, m: &VectorMatching) -> Labels {
    l.retain(|name| {
        let listed = m.labels.iter().any(|n| n == name);
        if m.on {
            listed
        } else {
            !listed && name != METRIC_NAME
        }
    })
}

fn and_unless(
    l: Vec<Sample>,
    r: Vec<Sample>,
    m: &VectorMatching,
    and: bool,
    sigs: &mut LabelCache,
) -> Vec<Sample> {
    let right: HashSet<u64, HashKeyed> = r
        .iter()
        .map(|s| sigs.of(&s.labels, &m.labels, m.on))
        .collect();
    l.into_iter()
        .filter(|s| right.contains(&sigs.of(&s.labels, &m.labels, m.on)) == and)
        .collect()
}

fn or(l: Vec<Sample>, r: Vec<Sample>, m: &VectorMatching, sigs: &mut LabelCache) -> Vec<Sample> {
    let left: HashSet<u64, HashKeyed> = l
        .iter()
        .map(|s| sigs.of(&s.labels, &m.labels, m.on))
        .collect();
    let mut out = l;
    out.extend(
        r.into_iter()
            .filter(|s| !left.contains(&sigs.of(&s.labels, &m.labels, m.on))),
    );
    out
}

/// The label set of a vector-vector result, from the "many" side's labels and the
/// "one" side's. The metric name stays; the caller marks it for removal when the
/// operator drops it.
fn result_labels(many: &Labels, one: &Labels, m: &VectorMatching) -> Labels {
    match &m.card {
        Cardinality::OneToOne if m.on => many.retain(|name| m.labels.iter().any(|n| n == name)),
        Cardinality::OneToOne if m.labels.is_empty() => many.clone(),
        Cardinality::OneToOne => many.retain(|name| !m.labels.iter().any(|n| n == name)),
        Cardinality::ManyToOne(include) | Cardinality::OneToMany(include)
            if !include.is_empty() =>
        {
            let mut b = many.to_builder();
            for n in include {
                match one.get(n) {
                    Some(v) => b.set(n, v),
                    None => b.del(n),
                };
            }
            b.build()
        }
        _ => many.clone(),
    }
}

/// A vector-vector operation's pairing worked out at one step: which sample of the
/// "many" side meets which of the "one" side, under which result labels. The next step
/// usually brings the same series in the same order; then the pairing is reused as it
/// is, without signatures, lookups or checks (they would find the same). The input
/// label sets are kept, so their addresses, which tell them apart, cannot be reused.
pub(crate) struct Pairing {
    many: Vec<Labels>,
    one: Vec<Labels>,
    /// (index in "many", index in "one", result labels), in the order of "many".
    pub(super) pairs: Vec<(usize, usize, Labels)>,
}

/// Whether `samples` carry exactly the label sets of `kept`, by address, in order.
fn same_series(kept: &[Labels], samples: &[Sample]) -> bool {
    kept.len() == samples.len()
        && kept
            .iter()
            .zip(samples)
            .all(|(k, s)| k.buffer_addr() == s.labels.buffer_addr())
}

fn vector_vector(
    op: BinOp,
    lhs: Vec<Sample>,
    rhs: Vec<Sample>,
    return_bool: bool,
    m: &VectorMatching,
    ts: Timestamp,
    sigs: &mut LabelCache,
) -> Result<Vec<Sample>, QueryError> {
    // The "one" side is the right one unless group_right swaps the roles.
    let swap = matches!(m.card, Cardinality::OneToMany(_));
    let (many, one) = if swap { (rhs, lhs) } else { (lhs, rhs) };
    let node = super::key(m);
    let known = sigs
        .pairing(node)
        .is_some_and(|p| same_series(&p.many, &many) && same_series(&p.one, &one));
    let pairing = if known {
        sigs.pairing(node)
    } else {
        let p = pair(&many, &one, m, sigs)?;
        Some(sigs.keep_pairing(node, p))
    };
    // Always there: just found or just kept.
    let Some(pairing) = pairing else {
        return Ok(Vec::new());
    };
    let mut out = Vec::with_capacity(pairing.pairs.len());
    for (i, j, labels) in &pairing.pairs {
        let (s, o) = (&many[*i], &one[*j]);
        let (lv, rv) = if swap { (o.v, s.v) } else { (s.v, o.v) };
        let Some(value) = pair_value(op, lv, rv, return_bool) else {
            continue;
        };
        out.push(Sample {
            labels: labels.clone(),
            t: ts,
            v: value,
            drop_name: s.drop_name || drops_name(op, return_bool),
        });
    }
    Ok(out)
}

/// Pairs the samples of the two sides by their matching signatures, with the errors
/// Prometheus gives for duplicates and ambiguous matches.
pub(super) fn pair(
    many: &[Sample],
    one: &[Sample],
    m: &VectorMatching,
    sigs: &mut LabelCache,
) -> Result<Pairing, QueryError> {
    let side = if matches!(m.card, Cardinality::OneToMany(_)) {
        "left"
    } else {
        "right"
    };
    let mut one_by_sig: HashMap<u64, usize, HashKeyed> =
        HashMap::with_capacity_and_hasher(one.len(), HashKeyed::default());
    for (j, s) in one.iter().enumerate() {
        let sig = sigs.of(&s.labels, &m.labels, m.on);
        if let Some(&prev) = one_by_sig.get(&sig) {
            return Err(QueryError::execution(format!(
                "found duplicate series for the match group {} on the {side} hand-side of the operation: [{}, {}];many-to-many matching not allowed: matching labels must be unique on one side",
                signature_labels(&s.labels, m),
                one[prev].labels,
                s.labels
            )));
        }
        one_by_sig.insert(sig, j);
    }
    let one_to_one = m.card == Cardinality::OneToOne;
    let mut matched_sigs: HashSet<u64, HashKeyed> = HashSet::default();
    let mut seen_results: HashSet<Labels, HashKeyed> = HashSet::default();
    let mut pairs = Vec::new();
    for (i, s) in many.iter().enumerate() {
        let sig = sigs.of(&s.labels, &m.labels, m.on);
        let Some(&j) = one_by_sig.get(&sig) else {
            continue;
        };
        if one_to_one {
            if matched_sigs.contains(&sig) {
                return Err(QueryError::execution(
                    "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)",
                ));
            }
            matched_sigs.insert(sig);
        }
        let o = &one[j];
        let labels = sigs.result_labels(&s.labels, &o.labels, m, || {
            result_labels(&s.labels, &o.labels, m)
        });
        if !one_to_one && !seen_results.insert(labels.clone()) {
            return Err(QueryError::execution(
                "multiple matches for labels: grouping labels must ensure unique matches",
            ));
        }
        pairs.push((i, j, labels));
    }
    Ok(Pairing {
        many: many.iter().map(|s| s.labels.clone()).collect(),
        one: one.iter().map(|s| s.labels.clone()).collect(),
        pairs,
    })
}
