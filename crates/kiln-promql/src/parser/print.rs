//! A syntax tree back to text in Prometheus's canonical layout: the one-line form
//! (Prometheus's `String()`) and the indented form `/api/v1/format_query` answers
//! (`Pretty()`: a node longer than 100 characters is split over lines, its children
//! indented by two spaces).

use std::collections::HashMap;
use std::fmt::Write as _;

use kiln_model::{MatchType, Matcher};

use super::go;
use super::syntax::{
    AtModifier, Card, Duration, DurationExpr, DurationKind, Matching, Node, NodeKind, ValueType,
};

const MAX_LINE: usize = 100;

/// The query in Prometheus's indented layout.
///
/// The one-line length of every node is measured in one pass first, so deciding
/// where to split costs nothing more, and the layout is written into one buffer: the
/// work follows the size of the answer, which for deep nesting is large (every level
/// is indented), but never more.
pub(crate) fn pretty(node: &Node) -> String {
    let mut flat = Flat {
        out: String::new(),
        lens: Some(HashMap::new()),
    };
    write_node(&mut flat, node);
    let lens = flat.lens.unwrap_or_default();
    let mut out = String::new();
    pretty_into(&mut out, node, 0, true, &lens);
    out
}

/// The query on one line.
pub(crate) fn one_line(node: &Node) -> String {
    let mut flat = Flat {
        out: String::new(),
        lens: None,
    };
    write_node(&mut flat, node);
    flat.out
}

/// The one-line text being written and, when measuring, each node's length in it (by
/// node address).
struct Flat {
    out: String,
    lens: Option<HashMap<usize, usize>>,
}

fn addr(node: &Node) -> usize {
    std::ptr::from_ref(node) as usize
}

fn indent(out: &mut String, level: usize, first: bool) {
    if first {
        for _ in 0..level {
            out.push_str("  ");
        }
    }
}

/// Writes `node` at `level`; `first`: whether its first line is indented (a unary
/// operator puts its operand on its own line, unindented, as Prometheus trims it).
fn pretty_into(
    out: &mut String,
    node: &Node,
    level: usize,
    first: bool,
    lens: &HashMap<usize, usize>,
) {
    super::with_stack(|| pretty_node(out, node, level, first, lens));
}

fn pretty_node(
    out: &mut String,
    node: &Node,
    level: usize,
    first: bool,
    lens: &HashMap<usize, usize>,
) {
    let split = lens.get(&addr(node)).copied().unwrap_or(0) > MAX_LINE;
    match &node.kind {
        NodeKind::Aggregate {
            op,
            param,
            expr,
            grouping,
            without,
        } if split => {
            indent(out, level, first);
            out.push_str(op.name());
            write_grouping(out, *without, grouping);
            out.push_str("(\n");
            if let Some(p) = param {
                pretty_into(out, p, level + 1, true, lens);
                out.push_str(",\n");
            }
            pretty_into(out, expr, level + 1, true, lens);
            out.push('\n');
            indent(out, level, true);
            out.push(')');
        }
        NodeKind::Binary {
            op,
            lhs,
            rhs,
            return_bool,
            matching,
            ..
        } if split => {
            pretty_into(out, lhs, level + 1, first, lens);
            out.push('\n');
            indent(out, level, true);
            out.push_str(op.text());
            if *return_bool {
                out.push_str(" bool");
            }
            write_matching(out, lhs, rhs, matching);
            out.push('\n');
            pretty_into(out, rhs, level + 1, true, lens);
        }
        NodeKind::Call { func, args, .. } if split => {
            indent(out, level, first);
            out.push_str(func);
            out.push_str("(\n");
            for (i, a) in args.iter().enumerate() {
                if i > 0 {
                    out.push_str(",\n");
                }
                pretty_into(out, a, level + 1, true, lens);
            }
            out.push('\n');
            indent(out, level, true);
            out.push(')');
        }
        NodeKind::Paren(inner) if split => {
            indent(out, level, first);
            out.push_str("(\n");
            pretty_into(out, inner, level + 1, true, lens);
            out.push('\n');
            indent(out, level, true);
            out.push(')');
        }
        // Prometheus writes an unsplit subquery without indentation.
        NodeKind::Subquery { .. } if !split => out.push_str(&one_line(node)),
        NodeKind::Subquery {
            expr,
            range,
            step,
            offset,
            at,
        } => {
            pretty_into(out, expr, level, first, lens);
            write_subquery_suffix(out, range, step.as_ref(), offset.as_ref(), at.as_ref());
        }
        NodeKind::Unary { negative, expr } => {
            indent(out, level, first);
            out.push(if *negative { '-' } else { '+' });
            pretty_into(out, expr, level, false, lens);
        }
        _ => {
            indent(out, level, first);
            out.push_str(&one_line(node));
        }
    }
}

fn write_node(f: &mut Flat, node: &Node) {
    super::with_stack(|| {
        let start = f.out.len();
        write_node_inner(f, node);
        if let Some(lens) = &mut f.lens {
            lens.insert(addr(node), f.out.len() - start);
        }
    });
}

fn write_node_inner(f: &mut Flat, node: &Node) {
    let out = &mut f.out;
    match &node.kind {
        NodeKind::Number { value, duration } => write_number(out, *value, *duration),
        NodeKind::String(s) => out.push_str(&go::quote(s)),
        NodeKind::Selector(s) => {
            write_selector_body(out, s.name.as_deref(), &s.matchers);
            write_at(out, s.at.as_ref());
            write_offset(out, s.offset.as_ref());
        }
        NodeKind::Matrix { selector, range } => {
            let NodeKind::Selector(s) = &selector.kind else {
                return;
            };
            write_selector_body(out, s.name.as_deref(), &s.matchers);
            out.push('[');
            write_duration(out, range);
            out.push(']');
            write_at(out, s.at.as_ref());
            write_offset(out, s.offset.as_ref());
        }
        NodeKind::Subquery {
            expr,
            range,
            step,
            offset,
            at,
        } => {
            write_node(f, expr);
            write_subquery_suffix(
                &mut f.out,
                range,
                step.as_ref(),
                offset.as_ref(),
                at.as_ref(),
            );
        }
        NodeKind::Paren(inner) => {
            out.push('(');
            write_node(f, inner);
            f.out.push(')');
        }
        NodeKind::Unary { negative, expr } => {
            out.push(if *negative { '-' } else { '+' });
            write_node(f, expr);
        }
        NodeKind::Binary {
            op,
            lhs,
            rhs,
            return_bool,
            matching,
            ..
        } => {
            write_node(f, lhs);
            let out = &mut f.out;
            out.push(' ');
            out.push_str(op.text());
            if *return_bool {
                out.push_str(" bool");
            }
            write_matching(out, lhs, rhs, matching);
            out.push(' ');
            write_node(f, rhs);
        }
        NodeKind::Call { func, args, .. } => {
            out.push_str(func);
            out.push('(');
            for (i, a) in args.iter().enumerate() {
                if i > 0 {
                    f.out.push_str(", ");
                }
                write_node(f, a);
            }
            f.out.push(')');
        }
        NodeKind::Aggregate {
            op,
            param,
            expr,
            grouping,
            without,
        } => {
            out.push_str(op.name());
            write_grouping(out, *without, grouping);
            out.push('(');
            if let Some(p) = param {
                write_node(f, p);
                f.out.push_str(", ");
            }
            write_node(f, expr);
            f.out.push(')');
        }
    }
}

fn write_number(out: &mut String, value: f64, duration: bool) {
    if duration {
        if value < 0.0 {
            out.push('-');
        }
        out.push_str(&kiln_model::format_duration_ms(
            (value.abs() * 1000.0).round() as i64,
        ));
    } else {
        out.push_str(&go::format_float(value));
    }
}

/// ` by (a, b) `, ` without (a) `; nothing for an empty `by`.
fn write_grouping(out: &mut String, without: bool, labels: &[String]) {
    if without {
        out.push_str(" without (");
    } else if !labels.is_empty() {
        out.push_str(" by (");
    } else {
        return;
    }
    write_labels(out, labels);
    out.push_str(") ");
}

fn write_labels(out: &mut String, labels: &[String]) {
    for (i, l) in labels.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        if kiln_model::labels::is_valid_label_name(l) {
            out.push_str(l);
        } else {
            out.push_str(&go::quote(l));
        }
    }
}

/// Vector matching is shown only between two instant vectors.
fn write_matching(out: &mut String, lhs: &Node, rhs: &Node, m: &Matching) {
    if lhs.value_type() != ValueType::Vector || rhs.value_type() != ValueType::Vector {
        return;
    }
    let grouped = matches!(m.card, Card::ManyToOne | Card::OneToMany);
    if !m.labels.is_empty() || m.on || grouped {
        out.push_str(if m.on { " on (" } else { " ignoring (" });
        write_labels(out, &m.labels);
        out.push(')');
    }
    if grouped {
        out.push_str(if m.card == Card::ManyToOne {
            " group_left ("
        } else {
            " group_right ("
        });
        write_labels(out, &m.include);
        out.push(')');
    }
}

fn write_selector_body(out: &mut String, name: Option<&str>, matchers: &[Matcher]) {
    if let Some(n) = name {
        out.push_str(n);
    }
    if matchers.is_empty() {
        return;
    }
    let mut parts: Vec<String> = matchers.iter().map(matcher_text).collect();
    parts.sort();
    out.push('{');
    out.push_str(&parts.join(","));
    out.push('}');
}

fn matcher_text(m: &Matcher) -> String {
    let plain = !m.name.is_empty()
        && m.name
            .chars()
            .enumerate()
            .all(|(i, c)| c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit()));
    let mut s = if plain {
        m.name.clone()
    } else {
        go::quote(&m.name)
    };
    s.push_str(match m.kind {
        MatchType::Equal => "=",
        MatchType::NotEqual => "!=",
        MatchType::Regex => "=~",
        MatchType::NotRegex => "!~",
    });
    s.push_str(&go::quote(&m.value));
    s
}

fn write_at(out: &mut String, at: Option<&AtModifier>) {
    match at {
        Some(AtModifier::Time(ms)) => {
            let _ = write!(out, " @ {:.3}", *ms as f64 / 1000.0);
        }
        Some(AtModifier::Start) => out.push_str(" @ start()"),
        Some(AtModifier::End) => out.push_str(" @ end()"),
        None => {}
    }
}

fn write_offset(out: &mut String, offset: Option<&Duration>) {
    match offset {
        Some(Duration::Literal { seconds, .. }) => {
            let ms = (seconds * 1000.0).round() as i64;
            if ms > 0 {
                out.push_str(" offset ");
                out.push_str(&kiln_model::format_duration_ms(ms));
            } else if ms < 0 {
                out.push_str(" offset -");
                out.push_str(&kiln_model::format_duration_ms(-ms));
            }
        }
        Some(Duration::Expr(e)) => {
            out.push_str(" offset ");
            write_duration_expr(out, e);
        }
        None => {}
    }
}

fn write_subquery_suffix(
    out: &mut String,
    range: &Duration,
    step: Option<&Duration>,
    offset: Option<&Duration>,
    at: Option<&AtModifier>,
) {
    out.push('[');
    write_duration(out, range);
    out.push(':');
    if let Some(s) = step {
        write_duration(out, s);
    }
    out.push(']');
    write_at(out, at);
    write_offset(out, offset);
}

fn write_duration(out: &mut String, d: &Duration) {
    match d {
        Duration::Literal { seconds, .. } => out.push_str(&kiln_model::format_duration_ms(
            (seconds * 1000.0).round() as i64,
        )),
        Duration::Expr(e) => write_duration_expr(out, e),
    }
}

fn write_duration_expr(out: &mut String, e: &DurationExpr) {
    super::with_stack(|| write_duration_inner(out, e));
}

fn write_duration_inner(out: &mut String, e: &DurationExpr) {
    if e.wrapped {
        out.push('(');
    }
    match &e.kind {
        DurationKind::Number { seconds, duration } => write_number(out, *seconds, *duration),
        DurationKind::Step => out.push_str("step()"),
        DurationKind::Range => out.push_str("range()"),
        DurationKind::MinOf(a, b) | DurationKind::MaxOf(a, b) => {
            out.push_str(if matches!(e.kind, DurationKind::MinOf(..)) {
                "min_of("
            } else {
                "max_of("
            });
            write_duration_expr(out, a);
            out.push_str(", ");
            write_duration_expr(out, b);
            out.push(')');
        }
        DurationKind::Unary(negative, inner) => {
            if *negative {
                out.push('-');
            }
            write_duration_expr(out, inner);
        }
        DurationKind::Binary(op, a, b) => {
            write_duration_expr(out, a);
            out.push(' ');
            out.push_str(op.text());
            out.push(' ');
            write_duration_expr(out, b);
        }
    }
    if e.wrapped {
        out.push(')');
    }
}
