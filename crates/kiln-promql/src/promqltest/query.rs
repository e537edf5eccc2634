//! Looking into a query's text for the runner: which series its selectors could select,
//! which functions it calls, and the `@`-modified copies Prometheus also evaluates.
//!
//! This reads the query with the `promql-parser` crate directly (not through
//! `crate::ast`), because it needs to rewrite and re-print the parser's own tree.

use std::time::{Duration, SystemTime};

use kiln_model::Labels;
use promql_parser::parser::{self as pp, AtModifier, Expr};

/// Functions whose instant-query result changes with the evaluation time even when
/// their arguments do not (the engine's list), plus the query range functions
/// (`start()`, `end()`, `step()`, `range()`), which differ too.
fn at_unsafe(name: &str) -> bool {
    crate::eval::TIME_DEPENDENT_FUNCTIONS.contains(&name) || RANGE_SENSITIVE.contains(&name)
}

/// Functions (and `@ start()`/`@ end()`) whose value depends on the query range, so an
/// instant query and the middle step of a range query legitimately differ.
pub(crate) const RANGE_SENSITIVE: &[&str] = &["start", "end", "step", "range"];

/// Whether any selector in `query` could select a series with one of `series`' label
/// sets. A query that does not parse here is checked by name: whether any identifier in
/// it is the metric name of one of the series.
pub(crate) fn selects_any(query: &str, series: &[Labels]) -> bool {
    if series.is_empty() {
        return false;
    }
    match pp::parse(query) {
        Ok(expr) => {
            let mut found = false;
            visit_selectors(&expr, &mut |vs| {
                found = found || series.iter().any(|l| selector_matches(vs, l));
            });
            found
        }
        Err(_) => identifiers(query).any(|id| series.iter().any(|l| l.metric_name() == Some(id))),
    }
}

fn selector_matches(vs: &pp::VectorSelector, l: &Labels) -> bool {
    if let Some(name) = &vs.name
        && l.metric_name() != Some(name.as_str())
    {
        return false;
    }
    let all = |ms: &[promql_parser::label::Matcher]| {
        ms.iter().all(|m| m.is_match(l.get(&m.name).unwrap_or("")))
    };
    if !all(&vs.matchers.matchers) {
        return false;
    }
    vs.matchers.or_matchers.is_empty() || vs.matchers.or_matchers.iter().any(|g| all(g))
}

fn visit_selectors(e: &Expr, f: &mut dyn FnMut(&pp::VectorSelector)) {
    match e {
        Expr::Aggregate(a) => {
            visit_selectors(&a.expr, f);
            if let Some(p) = &a.param {
                visit_selectors(p, f);
            }
        }
        Expr::Unary(u) => visit_selectors(&u.expr, f),
        Expr::Binary(b) => {
            visit_selectors(&b.lhs, f);
            visit_selectors(&b.rhs, f);
        }
        Expr::Paren(p) => visit_selectors(&p.expr, f),
        Expr::Subquery(s) => visit_selectors(&s.expr, f),
        Expr::VectorSelector(vs) => f(vs),
        Expr::MatrixSelector(ms) => f(&ms.vs),
        Expr::Call(c) => {
            for a in &c.args.args {
                visit_selectors(a, f);
            }
        }
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
    }
}

/// Whether `query` calls one of `names` (an identifier followed by `(`), outside string
/// literals. Also catches `@ start()` and `@ end()`.
pub(crate) fn calls_any(query: &str, names: &[&str]) -> bool {
    let b = query.as_bytes();
    let mut ids = identifier_spans(query);
    ids.any(|(s, e)| {
        names.contains(&&query[s..e])
            && b[e..].iter().find(|c| !c.is_ascii_whitespace()) == Some(&b'(')
    })
}

fn identifiers(query: &str) -> impl Iterator<Item = &str> {
    identifier_spans(query).map(move |(s, e)| &query[s..e])
}

/// Byte spans of identifiers (`[a-zA-Z_:][a-zA-Z0-9_:]*`) outside string literals.
fn identifier_spans(query: &str) -> impl Iterator<Item = (usize, usize)> + '_ {
    let b = query.as_bytes();
    let mut i = 0;
    std::iter::from_fn(move || {
        while i < b.len() {
            let c = b[i];
            if c == b'"' || c == b'\'' || c == b'`' {
                i += 1;
                while i < b.len() && b[i] != c {
                    if b[i] == b'\\' && c != b'`' {
                        i += 1;
                    }
                    i += 1;
                }
                i += 1;
            } else if c.is_ascii_alphabetic() || c == b'_' || c == b':' {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b':')
                {
                    i += 1;
                }
                return Some((start, i));
            } else if c.is_ascii_digit() {
                // Skip numbers and durations (`5m`, `1e3`) so their letters are not names.
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.') {
                    i += 1;
                }
            } else {
                i += 1;
            }
        }
        None
    })
}

/// The extra instant evaluations Prometheus's test runner does to check that a query is
/// step invariant: every selector and subquery that has no `@` gets `@ <t>` (selectors
/// inside a subquery are left alone), and the rewritten query must give the same result
/// at other evaluation times: `-10t, 0, t/5, t, 10t` (or `-1s, 0, 1s` when `t` is 0).
///
/// Returns no cases when the query uses a time-dependent function, does not parse here,
/// or does not survive re-printing unchanged.
pub(crate) fn at_modifier_cases(query: &str, t: i64) -> Vec<(String, i64)> {
    if t < 0 {
        return Vec::new();
    }
    let Ok(mut expr) = pp::parse(query) else {
        return Vec::new();
    };
    let at = AtModifier::At(SystemTime::UNIX_EPOCH + Duration::from_millis(t.unsigned_abs()));
    let mut unsafe_fn = false;
    add_at(&mut expr, &at, &mut unsafe_fn);
    if unsafe_fn {
        return Vec::new();
    }
    let text = expr.to_string();
    match pp::parse(&text) {
        Ok(mut back) => {
            normalize(&mut expr);
            normalize(&mut back);
            if back != expr {
                return Vec::new();
            }
        }
        Err(_) => return Vec::new(),
    }
    let times: Vec<i64> = if t == 0 {
        vec![-1000, 0, 1000]
    } else {
        vec![t.saturating_mul(-10), 0, t / 5, t, t.saturating_mul(10)]
    };
    times.into_iter().map(|et| (text.clone(), et)).collect()
}

/// Puts a tree in a canonical form for comparing a query with its re-printed self:
/// matchers sorted (printing sorts them) and `by ()` as no grouping (printing drops it).
fn normalize(e: &mut Expr) {
    fn sort(m: &mut promql_parser::label::Matchers) {
        let key =
            |m: &promql_parser::label::Matcher| (m.name.clone(), m.op.to_string(), m.value.clone());
        m.matchers.sort_by_key(key);
        for g in &mut m.or_matchers {
            g.sort_by_key(key);
        }
    }
    match e {
        Expr::Aggregate(a) => {
            if matches!(&a.modifier, Some(pp::LabelModifier::Include(l)) if l.labels.is_empty()) {
                a.modifier = None;
            }
            normalize(&mut a.expr);
            if let Some(p) = &mut a.param {
                normalize(p);
            }
        }
        Expr::Unary(u) => normalize(&mut u.expr),
        Expr::Binary(b) => {
            normalize(&mut b.lhs);
            normalize(&mut b.rhs);
        }
        Expr::Paren(p) => normalize(&mut p.expr),
        Expr::Subquery(s) => normalize(&mut s.expr),
        Expr::VectorSelector(vs) => sort(&mut vs.matchers),
        Expr::MatrixSelector(ms) => sort(&mut ms.vs.matchers),
        Expr::Call(c) => {
            for a in &mut c.args.args {
                normalize(a);
            }
        }
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
    }
}

fn add_at(e: &mut Expr, at: &AtModifier, unsafe_fn: &mut bool) {
    match e {
        Expr::Aggregate(a) => {
            add_at(&mut a.expr, at, unsafe_fn);
            if let Some(p) = &mut a.param {
                add_at(p, at, unsafe_fn);
            }
        }
        Expr::Unary(u) => add_at(&mut u.expr, at, unsafe_fn),
        Expr::Binary(b) => {
            add_at(&mut b.lhs, at, unsafe_fn);
            add_at(&mut b.rhs, at, unsafe_fn);
        }
        Expr::Paren(p) => add_at(&mut p.expr, at, unsafe_fn),
        // Everything inside a subquery is evaluated relative to it: pin the subquery
        // only, and do not look inside.
        Expr::Subquery(s) => {
            if s.at.is_none() {
                s.at = Some(at.clone());
            }
        }
        Expr::VectorSelector(vs) => {
            if vs.at.is_none() {
                vs.at = Some(at.clone());
            }
        }
        Expr::MatrixSelector(ms) => {
            if ms.vs.at.is_none() {
                ms.vs.at = Some(at.clone());
            }
        }
        Expr::Call(c) => {
            if at_unsafe(c.func.name) {
                *unsafe_fn = true;
            }
            for a in &mut c.args.args {
                add_at(a, at, unsafe_fn);
            }
        }
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) => {}
        Expr::Extension(_) => *unsafe_fn = true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection() {
        let hist = [
            Labels::from_pairs(&[("__name__", "h"), ("job", "a")]),
            Labels::from_pairs(&[("__name__", "req_seconds"), ("job", "b")]),
        ];
        for (q, want) in [
            ("h", true),
            ("sum(rate(h[5m]))", true),
            ("h_bucket", false),
            ("rate(req_seconds_bucket[5m])", false),
            ("histogram_quantile(0.9, req_seconds)", true),
            ("h{job=\"b\"}", false),
            ("{job=\"b\"}", true),
            ("{__name__=~\"h|x\"}", true),
            ("{__name__=~\"req.*\"}", true),
            ("max_over_time(h[5m:1m])", true),
            ("1 + 2", false),
            ("x + on() group_left topk(1, h)", true),
            ("label_replace(h, \"a\", \"b\", \"c\", \"d\")", true),
            ("other", false),
            // Does not parse: checked by name.
            ("h +", true),
            ("other +", false),
        ] {
            assert_eq!(selects_any(q, &hist), want, "{q}");
        }
        assert!(!selects_any("h", &[]));
    }

    #[test]
    fn calls() {
        for (q, want) in [
            ("step()", true),
            ("vector(start())", true),
            ("x @ start()", true),
            ("x @ end ( )", true),
            ("range_metric", false),
            ("sum(x) by (step)", false),
            ("x{a=\"step()\"}", false),
            ("rate(x[5m])", false),
        ] {
            assert_eq!(calls_any(q, RANGE_SENSITIVE), want, "{q}");
        }
    }

    #[test]
    fn at_cases() {
        let cases = at_modifier_cases("sum(rate(x{a=\"b\"}[5m]))", 100_000);
        assert_eq!(cases.len(), 5);
        assert!(cases[0].0.contains("@ 100.000"), "{}", cases[0].0);
        let times: Vec<i64> = cases.iter().map(|c| c.1).collect();
        assert_eq!(times, vec![-1_000_000, 0, 20_000, 100_000, 1_000_000]);
        let cases = at_modifier_cases("x", 0);
        assert_eq!(
            cases.iter().map(|c| c.1).collect::<Vec<_>>(),
            vec![-1000, 0, 1000]
        );
        // A selector that already has @ keeps it; a subquery is pinned as a whole.
        let cases = at_modifier_cases("x @ 50 + max_over_time(y[5m:1m])", 60_000);
        let q = &cases[0].0;
        assert!(
            q.contains("@ 50.000") && q.contains("] @ 60.000") && !q.contains("y @"),
            "{q}"
        );
        for q in [
            "time()",
            "timestamp(x)",
            "predict_linear(x[5m], 60)",
            "hour(x)",
            "step()",
            "start()",
        ] {
            assert!(at_modifier_cases(q, 60_000).is_empty(), "{q}");
        }
        // Functions inside a subquery are pinned with it, so they are safe.
        assert!(!at_modifier_cases("max_over_time(vector(time())[5m:1m])", 60_000).is_empty());
        assert!(at_modifier_cases("bad +", 60_000).is_empty());
        // Re-printing sorts matchers and drops `by ()`; that is still the same query.
        assert_eq!(
            at_modifier_cases("sum by () (x{b=\"1\", a=\"2\"})", 60_000).len(),
            5
        );
    }
}
