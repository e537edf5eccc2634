//! Looking into a query's text for the runner: which series its selectors could select,
//! which functions it calls, and the `@`-modified copies Prometheus also evaluates.
//!
//! This works on the parser's syntax tree (not `crate::ast`), because it needs to
//! rewrite and re-print the query.

use kiln_model::Labels;

use crate::parser::syntax::{AtModifier, Node, NodeKind, VectorSelector};
use crate::parser::{parse, print};

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
    match parse(query) {
        Ok(node) => {
            let mut found = false;
            visit_selectors(&node, &mut |vs| {
                found = found || series.iter().any(|l| selector_matches(vs, l));
            });
            found
        }
        Err(_) => identifiers(query).any(|id| series.iter().any(|l| l.metric_name() == Some(id))),
    }
}

fn selector_matches(vs: &VectorSelector, l: &Labels) -> bool {
    if let Some(name) = &vs.name
        && l.metric_name() != Some(name.as_str())
    {
        return false;
    }
    vs.matchers
        .iter()
        .all(|m| m.matches(l.get(&m.name).unwrap_or("")))
}

fn visit_selectors(n: &Node, f: &mut dyn FnMut(&VectorSelector)) {
    match &n.kind {
        NodeKind::Aggregate { expr, param, .. } => {
            visit_selectors(expr, f);
            if let Some(p) = param {
                visit_selectors(p, f);
            }
        }
        NodeKind::Unary { expr, .. } | NodeKind::Paren(expr) | NodeKind::Subquery { expr, .. } => {
            visit_selectors(expr, f);
        }
        NodeKind::Binary { lhs, rhs, .. } => {
            visit_selectors(lhs, f);
            visit_selectors(rhs, f);
        }
        NodeKind::Selector(vs) => f(vs),
        NodeKind::Matrix { selector, .. } => visit_selectors(selector, f),
        NodeKind::Call { args, .. } => {
            for a in args {
                visit_selectors(a, f);
            }
        }
        NodeKind::Number { .. } | NodeKind::String(_) => {}
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
    let Ok(mut node) = parse(query) else {
        return Vec::new();
    };
    let mut unsafe_fn = false;
    add_at(&mut node, AtModifier::Time(t), &mut unsafe_fn);
    if unsafe_fn {
        return Vec::new();
    }
    let text = print::one_line(&node);
    match parse(&text) {
        Ok(back) if print::one_line(&back) == text => {}
        _ => return Vec::new(),
    }
    let times: Vec<i64> = if t == 0 {
        vec![-1000, 0, 1000]
    } else {
        vec![t.saturating_mul(-10), 0, t / 5, t, t.saturating_mul(10)]
    };
    times.into_iter().map(|et| (text.clone(), et)).collect()
}

fn add_at(n: &mut Node, at: AtModifier, unsafe_fn: &mut bool) {
    match &mut n.kind {
        NodeKind::Aggregate { expr, param, .. } => {
            add_at(expr, at, unsafe_fn);
            if let Some(p) = param {
                add_at(p, at, unsafe_fn);
            }
        }
        NodeKind::Unary { expr, .. } | NodeKind::Paren(expr) => add_at(expr, at, unsafe_fn),
        NodeKind::Binary { lhs, rhs, .. } => {
            add_at(lhs, at, unsafe_fn);
            add_at(rhs, at, unsafe_fn);
        }
        // Everything inside a subquery is evaluated relative to it: pin the subquery
        // only, and do not look inside.
        NodeKind::Subquery { at: slot, .. } => {
            slot.get_or_insert(at);
        }
        NodeKind::Selector(vs) => {
            vs.at.get_or_insert(at);
        }
        NodeKind::Matrix { selector, .. } => add_at(selector, at, unsafe_fn),
        NodeKind::Call { func, args, .. } => {
            if at_unsafe(func) {
                *unsafe_fn = true;
            }
            for a in args {
                add_at(a, at, unsafe_fn);
            }
        }
        NodeKind::Number { .. } | NodeKind::String(_) => {}
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
