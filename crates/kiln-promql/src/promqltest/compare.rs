//! Checking a query's result, error and annotations against an eval's expectations,
//! with Prometheus's rules:
//!
//! - series are matched by their exact label set, in any order unless `expect ordered`;
//!   every expected series must be present and no other;
//! - floats are equal when [`almost_equal`] (relative epsilon 1e-6; NaN equals NaN; the
//!   staleness marker equals only itself);
//! - for matrices, expected point `i` is at `start + i * step` and `_` means no point;
//! - `expect warn`/`info` lines must each match an annotation and, when any is given, every
//!   annotation of that kind must match one; `no_warn`/`no_info` forbid them; with none of
//!   these lines annotations are not checked;
//! - `expect fail` messages match the error exactly (`msg:`) or by unanchored regex
//!   (`regex:`).

use std::fmt::Write as _;

use kiln_model::{Labels, format_go_float, is_stale_nan};

use super::script::{Expectations, Expected, ExpectedSeries, MsgMatch};
use super::series::SeqValue;
use crate::value::{Sample, Series, Value};

/// Relative tolerance for float comparisons, as Prometheus's test scripts use.
pub const EPSILON: f64 = 1e-6;

const MIN_NORMAL: f64 = f64::MIN_POSITIVE;

/// Whether `a` and `b` are equal within relative tolerance `epsilon`, like Prometheus's
/// `almost.Equal`: the staleness marker equals only itself, two NaNs are equal, and near
/// zero the tolerance is `epsilon` times the smallest normal float.
pub fn almost_equal(a: f64, b: f64, epsilon: f64) -> bool {
    if is_stale_nan(a) || is_stale_nan(b) {
        return is_stale_nan(a) && is_stale_nan(b);
    }
    if a.is_nan() && b.is_nan() {
        return true;
    }
    if a == b {
        return true;
    }
    let abs_sum = a.abs() + b.abs();
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || abs_sum < MIN_NORMAL {
        return diff < epsilon * MIN_NORMAL;
    }
    diff / abs_sum.min(f64::MAX) < epsilon
}

/// The time grid expected matrix points are laid on: point `i` at `start + i * step`,
/// never after `end`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Grid {
    pub(crate) start: i64,
    pub(crate) end: i64,
    pub(crate) step: i64,
}

/// Compares a query result with the expected one.
pub(crate) fn compare_result(
    expected: &Expected,
    ordered: bool,
    grid: Grid,
    got: &Value,
) -> Result<(), String> {
    match got {
        Value::Matrix(m) => {
            if ordered {
                return Err("expected ordered result, but query returned a matrix".into());
            }
            match expected {
                Expected::Series(exp) => compare_matrix(exp, grid, m),
                Expected::Scalar(v) => Err(format!(
                    "expected scalar {}, but got matrix {}",
                    fmt_value(*v),
                    fmt_matrix(m)
                )),
                Expected::String(s) => Err(format!(
                    "expected string {s:?}, but got matrix {}",
                    fmt_matrix(m)
                )),
            }
        }
        Value::Vector(v) => match expected {
            Expected::Series(exp) => compare_vector(exp, ordered, v),
            Expected::Scalar(s) => Err(format!(
                "expected scalar {}, but got vector {}",
                fmt_value(*s),
                fmt_vector(v)
            )),
            Expected::String(s) => Err(format!(
                "expected string {s:?}, but got vector {}",
                fmt_vector(v)
            )),
        },
        Value::Scalar { v, .. } => match expected {
            Expected::Scalar(want) if almost_equal(*want, *v, EPSILON) => Ok(()),
            Expected::Scalar(want) => Err(format!(
                "expected scalar {} but got {}",
                fmt_value(*want),
                fmt_value(*v)
            )),
            _ => Err(format!(
                "expected {}, but got scalar {}",
                describe(expected),
                fmt_value(*v)
            )),
        },
        Value::String { v, .. } => match expected {
            Expected::String(want) if want == v => Ok(()),
            Expected::String(want) => Err(format!("expected string {want:?} but got {v:?}")),
            _ => Err(format!(
                "expected {}, but got string {v:?}",
                describe(expected)
            )),
        },
    }
}

fn describe(e: &Expected) -> String {
    match e {
        Expected::Series(s) if s.is_empty() => "an empty vector or matrix".into(),
        Expected::Series(s) => format!("{} series", s.len()),
        Expected::Scalar(v) => format!("scalar {}", fmt_value(*v)),
        Expected::String(s) => format!("string {s:?}"),
    }
}

fn find<'e>(exp: &'e [ExpectedSeries], labels: &Labels) -> Option<(usize, &'e ExpectedSeries)> {
    exp.iter().enumerate().find(|(_, e)| e.labels == *labels)
}

fn compare_vector(exp: &[ExpectedSeries], ordered: bool, got: &[Sample]) -> Result<(), String> {
    let mut seen = vec![false; exp.len()];
    for (pos, s) in got.iter().enumerate() {
        let Some((idx, e)) = find(exp, &s.labels) else {
            return Err(format!(
                "unexpected series {} in result, has value {}{}",
                fmt_labels(&s.labels),
                fmt_value(s.v),
                context_vector(got)
            ));
        };
        if seen[idx] {
            return Err(format!(
                "series {} appears more than once in the result",
                fmt_labels(&s.labels)
            ));
        }
        seen[idx] = true;
        if ordered && idx != pos {
            return Err(format!(
                "expected series {} at position {} but was at {}{}",
                fmt_labels(&s.labels),
                idx + 1,
                pos + 1,
                context_vector(got)
            ));
        }
        match e.values.first() {
            Some(SeqValue::Float(want)) => {
                if !almost_equal(*want, s.v, EPSILON) {
                    return Err(format!(
                        "expected {} for {} but got {}",
                        fmt_value(*want),
                        fmt_labels(&s.labels),
                        fmt_value(s.v)
                    ));
                }
            }
            Some(SeqValue::Omitted) | None => {
                return Err(format!(
                    "expected no sample for {} but got {}",
                    fmt_labels(&s.labels),
                    fmt_value(s.v)
                ));
            }
            Some(SeqValue::Histogram) => {
                return Err(format!(
                    "expected a native histogram for {} but got float {}",
                    fmt_labels(&s.labels),
                    fmt_value(s.v)
                ));
            }
        }
    }
    if let Some(i) = seen.iter().position(|s| !s) {
        let e = &exp[i];
        // An expected `_` alone (no sample) is satisfied by absence.
        if !matches!(e.values.first(), Some(SeqValue::Omitted)) {
            return Err(format!(
                "expected series {} with value {} not found{}",
                fmt_labels(&e.labels),
                fmt_seq(&e.values),
                context_vector(got)
            ));
        }
    }
    Ok(())
}

fn compare_matrix(exp: &[ExpectedSeries], grid: Grid, got: &[Series]) -> Result<(), String> {
    for w in got.windows(2) {
        if w[0].labels > w[1].labels {
            return Err(format!(
                "matrix results should always be sorted by labels, but {} comes before {}",
                fmt_labels(&w[0].labels),
                fmt_labels(&w[1].labels)
            ));
        }
    }
    let mut seen = vec![false; exp.len()];
    for s in got {
        let Some((idx, e)) = find(exp, &s.labels) else {
            return Err(format!(
                "unexpected series {} in result, has {}",
                fmt_labels(&s.labels),
                fmt_points(&s.points)
            ));
        };
        if seen[idx] {
            return Err(format!(
                "series {} appears more than once in the result",
                fmt_labels(&s.labels)
            ));
        }
        seen[idx] = true;
        let mut want: Vec<(i64, f64)> = Vec::with_capacity(e.values.len());
        for (i, v) in e.values.iter().enumerate() {
            let t = grid.start + i as i64 * grid.step;
            if t > grid.end {
                return Err(format!(
                    "expected {} points for {}, but the query time range cannot return this many points",
                    e.values.len(),
                    fmt_labels(&e.labels)
                ));
            }
            match v {
                SeqValue::Float(f) => want.push((t, *f)),
                SeqValue::Omitted => {}
                SeqValue::Histogram => {
                    return Err(format!(
                        "expected native histogram points for {}, which are not supported",
                        fmt_labels(&e.labels)
                    ));
                }
            }
        }
        if want.len() != s.points.len() {
            return Err(format!(
                "expected {} points for {}, but got {}: want {}, got {}",
                want.len(),
                fmt_labels(&s.labels),
                s.points.len(),
                fmt_points(&want),
                fmt_points(&s.points)
            ));
        }
        for (i, (w, g)) in want.iter().zip(&s.points).enumerate() {
            if w.0 != g.0 {
                return Err(format!(
                    "expected point {i} of {} at t={} but it is at t={}: want {}, got {}",
                    fmt_labels(&s.labels),
                    fmt_ms(w.0),
                    fmt_ms(g.0),
                    fmt_points(&want),
                    fmt_points(&s.points)
                ));
            }
            if !almost_equal(w.1, g.1, EPSILON) {
                return Err(format!(
                    "expected {} at t={} for {} but got {}: want {}, got {}",
                    fmt_value(w.1),
                    fmt_ms(w.0),
                    fmt_labels(&s.labels),
                    fmt_value(g.1),
                    fmt_points(&want),
                    fmt_points(&s.points)
                ));
            }
        }
    }
    if let Some(i) = seen.iter().position(|s| !s) {
        let e = &exp[i];
        // A series whose expected points are all `_` is satisfied by absence.
        if e.values.iter().any(|v| !matches!(v, SeqValue::Omitted)) {
            return Err(format!(
                "expected series {} not found{}",
                fmt_labels(&e.labels),
                context_matrix(got)
            ));
        }
    }
    Ok(())
}

/// Checks an error against `expect fail`.
pub(crate) fn check_failure(want: &MsgMatch, err: &str) -> Result<(), String> {
    match msg_matches(want, err) {
        Ok(true) => Ok(()),
        Ok(false) => Err(format!(
            "expected error {} but got {err:?}",
            fmt_msg_match(want)
        )),
        Err(e) => Err(e),
    }
}

/// Checks warnings and infos against the `expect warn|info|no_warn|no_info` lines.
pub(crate) fn check_annotations(
    e: &Expectations,
    warnings: &[String],
    infos: &[String],
) -> Result<(), String> {
    check_kind("warn", &e.warn, warnings)?;
    check_kind("info", &e.info, infos)?;
    if e.no_warn && !warnings.is_empty() {
        return Err(format!("unexpected warnings: {warnings:?}"));
    }
    if e.no_info && !infos.is_empty() {
        return Err(format!("unexpected infos: {infos:?}"));
    }
    Ok(())
}

fn check_kind(kind: &str, want: &[MsgMatch], got: &[String]) -> Result<(), String> {
    if want.is_empty() {
        return Ok(());
    }
    if got.is_empty() {
        return Err(format!("expected {kind} annotations but none were found"));
    }
    for w in want {
        let mut found = false;
        for g in got {
            if msg_matches(w, g)? {
                found = true;
                break;
            }
        }
        if !found {
            return Err(format!(
                "expected {kind} annotation {} but no matching annotation was found; got {got:?}",
                fmt_msg_match(w)
            ));
        }
    }
    for g in got {
        let mut found = false;
        for w in want {
            if msg_matches(w, g)? {
                found = true;
                break;
            }
        }
        if !found {
            return Err(format!("unexpected {kind} annotation {g:?}"));
        }
    }
    Ok(())
}

fn msg_matches(want: &MsgMatch, got: &str) -> Result<bool, String> {
    match want {
        MsgMatch::Any => Ok(true),
        MsgMatch::Exact(s) => Ok(s == got),
        MsgMatch::Regex(re) => {
            // Unanchored, like Go's `regexp.MatchString`.
            let r = regex::Regex::new(re)
                .map_err(|e| format!("invalid regular expression {re:?}: {e}"))?;
            Ok(r.is_match(got))
        }
    }
}

fn fmt_msg_match(m: &MsgMatch) -> String {
    match m {
        MsgMatch::Any => "(any)".into(),
        MsgMatch::Exact(s) => format!("{s:?}"),
        MsgMatch::Regex(r) => format!("matching /{r}/"),
    }
}

/// A label set as Prometheus prints it: `name{a="b"}`, `{a="b"}` or `{}`.
pub(crate) fn fmt_labels(l: &Labels) -> String {
    let mut out = String::new();
    let name = l.metric_name();
    if let Some(n) = name {
        out.push_str(n);
    }
    let rest: Vec<_> = l
        .iter()
        .filter(|p| p.name != kiln_model::METRIC_NAME)
        .collect();
    if rest.is_empty() && name.is_some() {
        return out;
    }
    out.push('{');
    for (i, p) in rest.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        let _ = write!(out, "{}={:?}", p.name, p.value);
    }
    out.push('}');
    out
}

pub(crate) fn fmt_value(v: f64) -> String {
    if is_stale_nan(v) {
        "stale".into()
    } else {
        format_go_float(v)
    }
}

const MAX_POINTS: usize = 12;
const MAX_SERIES: usize = 6;

fn fmt_points(p: &[(i64, f64)]) -> String {
    let mut out = String::from("[");
    for (i, (t, v)) in p.iter().enumerate() {
        if i == MAX_POINTS {
            let _ = write!(out, " ... ({} points)", p.len());
            break;
        }
        if i > 0 {
            out.push(' ');
        }
        let _ = write!(out, "{}@{}", fmt_value(*v), fmt_ms(*t));
    }
    out.push(']');
    out
}

/// Milliseconds as a short duration: `90s`, `1m30s`, `-5m`, `1500ms`.
pub(crate) fn fmt_ms(t: i64) -> String {
    if t == 0 {
        return "0".into();
    }
    let (neg, mut t) = if t < 0 {
        ("-", -(t as i128))
    } else {
        ("", t as i128)
    };
    let mut out = String::from(neg);
    for (unit, ms) in [("h", 3_600_000i128), ("m", 60_000), ("s", 1_000), ("ms", 1)] {
        if t >= ms {
            let _ = write!(out, "{}{unit}", t / ms);
            t %= ms;
        }
    }
    out
}

fn fmt_seq(v: &[SeqValue]) -> String {
    let parts: Vec<String> = v
        .iter()
        .map(|v| match v {
            SeqValue::Float(f) => fmt_value(*f),
            SeqValue::Omitted => "_".into(),
            SeqValue::Histogram => "{{...}}".into(),
        })
        .collect();
    parts.join(" ")
}

fn fmt_vector(v: &[Sample]) -> String {
    let mut out = String::from("[");
    for (i, s) in v.iter().enumerate() {
        if i == MAX_SERIES {
            let _ = write!(out, ", ... ({} series)", v.len());
            break;
        }
        if i > 0 {
            out.push_str(", ");
        }
        let _ = write!(out, "{} {}", fmt_labels(&s.labels), fmt_value(s.v));
    }
    out.push(']');
    out
}

fn fmt_matrix(m: &[Series]) -> String {
    let mut out = String::from("[");
    for (i, s) in m.iter().enumerate() {
        if i == MAX_SERIES {
            let _ = write!(out, ", ... ({} series)", m.len());
            break;
        }
        if i > 0 {
            out.push_str(", ");
        }
        let _ = write!(out, "{} {}", fmt_labels(&s.labels), fmt_points(&s.points));
    }
    out.push(']');
    out
}

fn context_vector(v: &[Sample]) -> String {
    format!("; got {}", fmt_vector(v))
}

fn context_matrix(m: &[Series]) -> String {
    format!("; got {}", fmt_matrix(m))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_model::STALE_NAN;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        Labels::from_pairs(pairs)
    }

    fn exp(l: &[(&str, &str)], values: &[SeqValue]) -> ExpectedSeries {
        ExpectedSeries {
            line: 1,
            labels: labels(l),
            values: values.to_vec(),
        }
    }

    fn f(v: f64) -> SeqValue {
        SeqValue::Float(v)
    }

    fn sample(l: &[(&str, &str)], v: f64) -> Sample {
        Sample::new(labels(l), 0, v)
    }

    #[test]
    fn almost_equal_table() {
        for (a, b, want) in [
            (1.0, 1.0, true),
            (1.0, 1.0 + 1e-7, true),
            (1.0, 1.0 + 1e-5, false),
            (1e300, 1.0000001e300, true),
            (0.0, 0.0, true),
            (0.0, -0.0, true),
            (0.0, 1e-300, false),
            (f64::NAN, f64::NAN, true),
            (f64::NAN, 1.0, false),
            (STALE_NAN, STALE_NAN, true),
            (STALE_NAN, f64::NAN, false),
            (f64::INFINITY, f64::INFINITY, true),
            (f64::INFINITY, f64::NEG_INFINITY, false),
            (f64::INFINITY, f64::MAX, false),
            (-2.0, 2.0, false),
        ] {
            assert_eq!(almost_equal(a, b, EPSILON), want, "{a} vs {b}");
        }
    }

    const NO_GRID: Grid = Grid {
        start: 0,
        end: 0,
        step: 0,
    };

    #[test]
    fn vectors() {
        let e = Expected::Series(vec![
            exp(&[("__name__", "a"), ("x", "1")], &[f(1.0)]),
            exp(&[("x", "2")], &[f(f64::NAN)]),
        ]);
        let ok = Value::Vector(vec![
            sample(&[("x", "2")], f64::NAN),
            sample(&[("__name__", "a"), ("x", "1")], 1.0000001),
        ]);
        assert_eq!(compare_result(&e, false, NO_GRID, &ok), Ok(()));
        let err = compare_result(&e, true, NO_GRID, &ok).expect_err("order");
        assert!(err.contains("position"), "{err}");
        let cases: &[(Value, &str)] = &[
            (
                Value::Vector(vec![sample(&[("x", "2")], f64::NAN)]),
                "not found",
            ),
            (
                Value::Vector(vec![
                    sample(&[("x", "2")], f64::NAN),
                    sample(&[("__name__", "a"), ("x", "1")], 2.0),
                ]),
                "expected 1 for a{x=\"1\"} but got 2",
            ),
            (
                Value::Vector(vec![
                    sample(&[("x", "2")], f64::NAN),
                    sample(&[("__name__", "a"), ("x", "1")], 1.0),
                    sample(&[("x", "3")], 1.0),
                ]),
                "unexpected series {x=\"3\"}",
            ),
            (
                Value::Vector(vec![
                    sample(&[("x", "2")], f64::NAN),
                    sample(&[("x", "2")], f64::NAN),
                ]),
                "more than once",
            ),
            (Value::Scalar { t: 0, v: 1.0 }, "got scalar"),
            (Value::Matrix(vec![]), "not found"),
        ];
        for (got, want) in cases {
            let err = compare_result(&e, false, NO_GRID, got).expect_err(want);
            assert!(err.contains(want), "{err} does not contain {want}");
        }
        // Empty expectation, empty result.
        assert_eq!(
            compare_result(
                &Expected::Series(vec![]),
                false,
                NO_GRID,
                &Value::Vector(vec![])
            ),
            Ok(())
        );
    }

    #[test]
    fn scalars_and_strings() {
        let s = Expected::Scalar(2.0);
        assert_eq!(
            compare_result(&s, false, NO_GRID, &Value::Scalar { t: 0, v: 2.0000001 }),
            Ok(())
        );
        assert!(compare_result(&s, false, NO_GRID, &Value::Scalar { t: 0, v: 3.0 }).is_err());
        assert!(compare_result(&s, false, NO_GRID, &Value::Vector(vec![])).is_err());
        let st = Expected::String("Foo".into());
        assert_eq!(
            compare_result(
                &st,
                false,
                NO_GRID,
                &Value::String {
                    t: 0,
                    v: "Foo".into()
                }
            ),
            Ok(())
        );
        assert!(
            compare_result(
                &st,
                false,
                NO_GRID,
                &Value::String {
                    t: 0,
                    v: "foo".into()
                }
            )
            .is_err()
        );
        assert!(
            compare_result(
                &Expected::Series(vec![]),
                false,
                NO_GRID,
                &Value::String {
                    t: 0,
                    v: "x".into()
                }
            )
            .is_err()
        );
    }

    #[test]
    fn matrices() {
        let grid = Grid {
            start: 0,
            end: 120_000,
            step: 60_000,
        };
        let e = Expected::Series(vec![
            exp(&[("x", "1")], &[f(1.0), SeqValue::Omitted, f(3.0)]),
            exp(&[("x", "2")], &[f(5.0), f(5.0), f(5.0)]),
        ]);
        let series = |l: &str, p: &[(i64, f64)]| Series {
            labels: labels(&[("x", l)]),
            points: p.to_vec(),
        };
        let ok = Value::Matrix(vec![
            series("1", &[(0, 1.0), (120_000, 3.0)]),
            series("2", &[(0, 5.0), (60_000, 5.0), (120_000, 5.0)]),
        ]);
        assert_eq!(compare_result(&e, false, grid, &ok), Ok(()));
        assert!(
            compare_result(&e, true, grid, &ok).is_err(),
            "ordered with a matrix"
        );
        let cases: &[(Vec<Series>, &str)] = &[
            (
                vec![
                    series("2", &[(0, 5.0), (60_000, 5.0), (120_000, 5.0)]),
                    series("1", &[(0, 1.0), (120_000, 3.0)]),
                ],
                "sorted",
            ),
            (
                vec![
                    series("1", &[(0, 1.0), (60_000, 2.0), (120_000, 3.0)]),
                    series("2", &[(0, 5.0), (60_000, 5.0), (120_000, 5.0)]),
                ],
                "expected 2 points",
            ),
            (
                vec![
                    series("1", &[(0, 1.0), (60_000, 3.0)]),
                    series("2", &[(0, 5.0), (60_000, 5.0), (120_000, 5.0)]),
                ],
                "at t=2m",
            ),
            (
                vec![
                    series("1", &[(0, 1.0), (120_000, 4.0)]),
                    series("2", &[(0, 5.0), (60_000, 5.0), (120_000, 5.0)]),
                ],
                "expected 3 at t=2m",
            ),
            (
                vec![series("1", &[(0, 1.0), (120_000, 3.0)])],
                "expected series {x=\"2\"} not found",
            ),
        ];
        for (got, want) in cases {
            let err = compare_result(&e, false, grid, &Value::Matrix(got.clone())).expect_err(want);
            assert!(err.contains(want), "{err} does not contain {want}");
        }
        let short = Grid {
            start: 0,
            end: 60_000,
            step: 60_000,
        };
        let err = compare_result(&e, false, short, &ok).expect_err("too many points");
        assert!(err.contains("cannot return this many points"), "{err}");
    }

    #[test]
    fn annotations() {
        let w = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let ex = |warn: Vec<MsgMatch>, no_warn: bool| Expectations {
            warn,
            no_warn,
            ..Default::default()
        };
        let cases: &[(Expectations, Vec<String>, bool)] = &[
            (Expectations::default(), w(&["PromQL warning: x"]), true),
            (
                ex(vec![MsgMatch::Any], false),
                w(&["PromQL warning: x"]),
                true,
            ),
            (ex(vec![MsgMatch::Any], false), w(&[]), false),
            (ex(vec![], true), w(&["a"]), false),
            (ex(vec![], true), w(&[]), true),
            (
                ex(vec![MsgMatch::Exact("a (1:2)".into())], false),
                w(&["a (1:2)"]),
                true,
            ),
            (
                ex(vec![MsgMatch::Exact("a (1:2)".into())], false),
                w(&["a (1:3)"]),
                false,
            ),
            (
                ex(vec![MsgMatch::Exact("a".into())], false),
                w(&["a", "b"]),
                false,
            ),
            (
                ex(
                    vec![MsgMatch::Regex(r"got NaN \([0-9]+:[0-9]+\)".into())],
                    false,
                ),
                w(&["PromQL warning: got NaN (1:20)"]),
                true,
            ),
            (
                ex(vec![MsgMatch::Regex("^got".into())], false),
                w(&["PromQL warning: got"]),
                false,
            ),
            (
                ex(
                    vec![MsgMatch::Regex("a|b".into()), MsgMatch::Exact("c".into())],
                    false,
                ),
                w(&["xbx", "c"]),
                true,
            ),
        ];
        for (e, warnings, ok) in cases {
            let got = check_annotations(e, warnings, &[]);
            assert_eq!(got.is_ok(), *ok, "{e:?} {warnings:?}: {got:?}");
            // Infos are checked by the same rules, independently.
            let e2 = Expectations {
                info: e.warn.clone(),
                no_info: e.no_warn,
                ..Default::default()
            };
            assert_eq!(
                check_annotations(&e2, &[], warnings).is_ok(),
                *ok,
                "info {e:?}"
            );
        }
        assert!(
            check_annotations(&ex(vec![], true), &[], &["i".into()]).is_ok(),
            "no_warn ignores infos"
        );
    }

    #[test]
    fn failures() {
        assert!(check_failure(&MsgMatch::Any, "boom").is_ok());
        assert!(check_failure(&MsgMatch::Exact("boom".into()), "boom").is_ok());
        assert!(check_failure(&MsgMatch::Exact("boom".into()), "boom!").is_err());
        assert!(
            check_failure(
                &MsgMatch::Regex("vector cannot .*|other".into()),
                "x: vector cannot contain"
            )
            .is_ok()
        );
        assert!(check_failure(&MsgMatch::Regex("nope".into()), "boom").is_err());
        assert!(check_failure(&MsgMatch::Regex("(".into()), "boom").is_err());
    }

    #[test]
    fn formatting() {
        assert_eq!(fmt_labels(&labels(&[("__name__", "m")])), "m");
        assert_eq!(
            fmt_labels(&labels(&[("__name__", "m"), ("a", "b\"")])),
            "m{a=\"b\\\"\"}"
        );
        assert_eq!(fmt_labels(&Labels::empty()), "{}");
        assert_eq!(fmt_ms(90_000), "1m30s");
        assert_eq!(fmt_ms(-1_500), "-1s500ms");
        assert_eq!(fmt_value(STALE_NAN), "stale");
    }
}
