//! Type checks on a parsed query, in the order Prometheus makes them (children first
//! where it checks them first), so the first error reported is the one Prometheus
//! reports: wrong argument counts and types, operands a binary operator does not take,
//! `bool` outside comparisons, set operators with grouping, selectors that would select
//! everything.

use super::ParseError;
use super::go;
use super::syntax::{AggregateOp, Card, Node, NodeKind, ValueType};

type Res<T> = Result<T, ParseError>;

/// Checks `node` and returns its type.
pub(super) fn check(node: &Node) -> Res<ValueType> {
    super::with_stack(|| check_node(node))
}

/// Checks one node, its children first; its type comes from theirs (asking
/// [`Node::value_type`] at every level would walk the whole subtree again).
fn check_node(node: &Node) -> Res<ValueType> {
    let ty = match &node.kind {
        NodeKind::Number { .. } => ValueType::Scalar,
        NodeKind::String(_) => ValueType::String,
        NodeKind::Aggregate {
            op, param, expr, ..
        } => {
            expect_type(expr, ValueType::Vector, "aggregation expression")?;
            match op {
                AggregateOp::Topk
                | AggregateOp::Bottomk
                | AggregateOp::Quantile
                | AggregateOp::Limitk
                | AggregateOp::LimitRatio => {
                    if let Some(p) = param {
                        expect_type(p, ValueType::Scalar, "aggregation parameter")?;
                    }
                }
                AggregateOp::CountValues => {
                    if let Some(p) = param {
                        expect_type(p, ValueType::String, "aggregation parameter")?;
                    }
                }
                _ => {}
            }
            ValueType::Vector
        }
        NodeKind::Binary {
            op,
            op_pos,
            lhs,
            rhs,
            return_bool,
            matching,
        } => {
            let lt = check(lhs)?;
            let rt = check(rhs)?;
            let err = |pos: usize, message: String| Err(ParseError::new(pos, message));
            if *return_bool && !op.is_comparison() {
                return err(
                    *op_pos,
                    "bool modifier can only be used on comparison operators".into(),
                );
            }
            if op.is_comparison() && !return_bool && lt == ValueType::Scalar && rt == lt {
                return err(
                    *op_pos,
                    "comparisons between scalars must use BOOL modifier".into(),
                );
            }
            if matching.on
                && let Some(l) = matching
                    .labels
                    .iter()
                    .find(|l| matching.include.contains(l))
            {
                return err(
                    *op_pos,
                    format!(
                        "label {} must not occur in ON and GROUP clause at once",
                        go::quote(l)
                    ),
                );
            }
            for (side, t) in [(lhs, lt), (rhs, rt)] {
                if t != ValueType::Scalar && t != ValueType::Vector {
                    return err(
                        side.pos,
                        "binary expression must contain only scalar and instant vector types"
                            .into(),
                    );
                }
            }
            let quoted_op = go::quote(op.text());
            if lt != ValueType::Vector || rt != ValueType::Vector {
                if !matching.labels.is_empty() {
                    return err(
                        node.pos,
                        "vector matching only allowed between instant vectors".into(),
                    );
                }
            } else if op.is_set() && matches!(matching.card, Card::OneToMany | Card::ManyToOne) {
                return err(
                    node.pos,
                    format!("no grouping allowed for {quoted_op} operation"),
                );
            }
            if (lt == ValueType::Scalar || rt == ValueType::Scalar) && op.is_set() {
                return err(
                    node.pos,
                    format!("set operator {quoted_op} not allowed in binary scalar expression"),
                );
            }
            if lt == ValueType::Scalar && rt == ValueType::Scalar {
                ValueType::Scalar
            } else {
                ValueType::Vector
            }
        }
        NodeKind::Call { func, args, .. } => check_call(node.pos, func, args)?,
        NodeKind::Paren(e) => check(e)?,
        NodeKind::Unary { expr, .. } => {
            let t = check(expr)?;
            if t != ValueType::Scalar && t != ValueType::Vector {
                return Err(ParseError::new(
                    node.pos,
                    format!(
                        "unary expression only allowed on expressions of type scalar or instant vector, got {}",
                        go::quote(t.documented())
                    ),
                ));
            }
            t
        }
        NodeKind::Subquery { expr, .. } => {
            let t = check(expr)?;
            if t != ValueType::Vector {
                return Err(ParseError::new(
                    node.pos,
                    format!(
                        "subquery is only allowed on instant vector, got {} instead",
                        t.internal()
                    ),
                ));
            }
            ValueType::Matrix
        }
        NodeKind::Matrix { selector, .. } => {
            check(selector)?;
            ValueType::Matrix
        }
        NodeKind::Selector(s) => {
            if let Some(name) = &s.name {
                if let Some(m) = s
                    .matchers
                    .iter()
                    .find(|m| m.name == kiln_model::METRIC_NAME)
                {
                    return Err(ParseError::new(
                        node.pos,
                        format!(
                            "metric name must not be set twice: {} or {}",
                            go::quote(name),
                            go::quote(&m.value)
                        ),
                    ));
                }
            } else if s.matchers.iter().all(|m| m.matches_empty()) {
                return Err(ParseError::new(
                    node.pos,
                    "vector selector must contain at least one non-empty matcher",
                ));
            }
            ValueType::Vector
        }
    };
    Ok(ty)
}

fn expect_type(node: &Node, want: ValueType, context: &str) -> Res<()> {
    let t = check(node)?;
    if t != want {
        return Err(ParseError::new(
            node.pos,
            format!(
                "expected type {} in {context}, got {}",
                want.documented(),
                t.documented()
            ),
        ));
    }
    Ok(())
}

fn check_call(pos: usize, func: &str, args: &[Node]) -> Res<ValueType> {
    let Some(sig) = crate::functions::signature(func) else {
        // The parser only builds calls of known functions.
        return Err(ParseError::new(
            pos,
            format!("unknown function with name {}", go::quote(func)),
        ));
    };
    let name = go::quote(func);
    let n = sig.args.len();
    let got = args.len();
    if sig.variadic == 0 {
        if n != got {
            return Err(ParseError::new(
                pos,
                format!("expected {n} argument(s) in call to {name}, got {got}"),
            ));
        }
    } else {
        let least = n - 1;
        if least > got {
            return Err(ParseError::new(
                pos,
                format!("expected at least {least} argument(s) in call to {name}, got {got}"),
            ));
        }
        if sig.variadic > 0 {
            let most = least + sig.variadic as usize;
            if most < got {
                return Err(ParseError::new(
                    pos,
                    format!("expected at most {most} argument(s) in call to {name}, got {got}"),
                ));
            }
        }
    }
    for (i, arg) in args.iter().enumerate() {
        let want = match sig.args.get(i) {
            Some(&t) => t,
            None if sig.variadic == 0 => break,
            None => sig.args[n - 1],
        };
        let t = check(arg)?;
        if t != want {
            return Err(ParseError::new(
                arg.pos,
                format!(
                    "expected type {} in call to function {name}, got {}",
                    want.documented(),
                    t.documented()
                ),
            ));
        }
    }
    Ok(sig.returns)
}
