//! A syntax tree back to text in Prometheus's canonical layout: the one-line form
//! (Prometheus's `String()`) and the indented form `/api/v1/format_query` answers
//! (`Pretty()`: a node longer than 100 characters is split over lines, its children
//! indented by two spaces).

use std::fmt::Write as _;

use kiln_model::{MatchType, Matcher};

use super::go;
use super::syntax::{
    AtModifier, Card, Duration, DurationExpr, DurationKind, Matching, Node, NodeKind, ValueType,
};

const MAX_LINE: usize = 100;

/// The query in Prometheus's indented layout.
pub(crate) fn pretty(node: &Node) -> String {
    pretty_at(node, 0)
}

/// The query on one line.
pub(crate) fn one_line(node: &Node) -> String {
    let mut out = String::new();
    write_node(&mut out, node);
    out
}

fn indent(level: usize) -> String {
    "  ".repeat(level)
}

fn pretty_at(node: &Node, level: usize) -> String {
    super::with_stack(|| pretty_node(node, level))
}

fn pretty_node(node: &Node, level: usize) -> String {
    let flat = one_line(node);
    let split = flat.len() > MAX_LINE;
    match &node.kind {
        NodeKind::Aggregate {
            op,
            param,
            expr,
            grouping,
            without,
        } if split => {
            let mut s = indent(level);
            s.push_str(op.name());
            write_grouping(&mut s, *without, grouping);
            s.push_str("(\n");
            if let Some(p) = param {
                s.push_str(&pretty_at(p, level + 1));
                s.push_str(",\n");
            }
            s.push_str(&pretty_at(expr, level + 1));
            s.push('\n');
            s.push_str(&indent(level));
            s.push(')');
            s
        }
        NodeKind::Binary {
            op,
            lhs,
            rhs,
            return_bool,
            matching,
            ..
        } if split => {
            let mut s = pretty_at(lhs, level + 1);
            s.push('\n');
            s.push_str(&indent(level));
            s.push_str(op.text());
            if *return_bool {
                s.push_str(" bool");
            }
            write_matching(&mut s, lhs, rhs, matching);
            s.push('\n');
            s.push_str(&pretty_at(rhs, level + 1));
            s
        }
        NodeKind::Call { func, args, .. } if split => {
            let parts: Vec<String> = args.iter().map(|a| pretty_at(a, level + 1)).collect();
            format!(
                "{}{func}(\n{}\n{})",
                indent(level),
                parts.join(",\n"),
                indent(level)
            )
        }
        NodeKind::Paren(inner) if split => format!(
            "{}(\n{}\n{})",
            indent(level),
            pretty_at(inner, level + 1),
            indent(level)
        ),
        NodeKind::Subquery {
            expr,
            range,
            step,
            offset,
            at,
        } => {
            if !split {
                return flat;
            }
            let mut s = pretty_at(expr, level);
            write_subquery_suffix(&mut s, range, step.as_ref(), offset.as_ref(), at.as_ref());
            s
        }
        NodeKind::Unary { negative, expr } => {
            let child = pretty_at(expr, level);
            format!(
                "{}{}{}",
                indent(level),
                if *negative { "-" } else { "+" },
                child.trim()
            )
        }
        _ => format!("{}{flat}", indent(level)),
    }
}

fn write_node(out: &mut String, node: &Node) {
    super::with_stack(|| write_node_inner(out, node));
}

fn write_node_inner(out: &mut String, node: &Node) {
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
            write_node(out, expr);
            write_subquery_suffix(out, range, step.as_ref(), offset.as_ref(), at.as_ref());
        }
        NodeKind::Paren(inner) => {
            out.push('(');
            write_node(out, inner);
            out.push(')');
        }
        NodeKind::Unary { negative, expr } => {
            out.push(if *negative { '-' } else { '+' });
            write_node(out, expr);
        }
        NodeKind::Binary {
            op,
            lhs,
            rhs,
            return_bool,
            matching,
            ..
        } => {
            write_node(out, lhs);
            out.push(' ');
            out.push_str(op.text());
            if *return_bool {
                out.push_str(" bool");
            }
            write_matching(out, lhs, rhs, matching);
            out.push(' ');
            write_node(out, rhs);
        }
        NodeKind::Call { func, args, .. } => {
            out.push_str(func);
            out.push('(');
            for (i, a) in args.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_node(out, a);
            }
            out.push(')');
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
                write_node(out, p);
                out.push_str(", ");
            }
            write_node(out, expr);
            out.push(')');
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
