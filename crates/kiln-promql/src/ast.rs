//! The expression tree the evaluator walks, made from the parser's checked syntax tree:
//! times become milliseconds (duration expressions computed for the query's step and
//! range), operators become enums, the metric name becomes a `__name__` matcher, and
//! positions become `line:column` for annotations.

use kiln_model::{METRIC_NAME, Matcher};

use crate::error::QueryError;
pub(crate) use crate::parser::syntax::ValueType;
use crate::parser::syntax::{self, Duration, DurationExpr, DurationKind, Node, NodeKind};

/// The `@` modifier.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum At {
    Start,
    End,
    Time(i64),
}

/// An instant vector selector.
#[derive(Debug, Clone)]
pub(crate) struct Selector {
    /// Matchers, the metric name as a `__name__` matcher included.
    pub(crate) matchers: Vec<Matcher>,
    pub(crate) offset: i64,
    pub(crate) at: Option<At>,
}

pub(crate) use crate::parser::syntax::AggregateOp as AggOp;

/// `by (...)` or `without (...)`; `None` groups everything together.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Grouping {
    By(Vec<String>),
    Without(Vec<String>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    Atan2,
    Eql,
    Neq,
    Gtr,
    Lss,
    Gte,
    Lte,
    And,
    Or,
    Unless,
}

impl BinOp {
    pub(crate) fn is_comparison(self) -> bool {
        matches!(
            self,
            BinOp::Eql | BinOp::Neq | BinOp::Gtr | BinOp::Lss | BinOp::Gte | BinOp::Lte
        )
    }

    pub(crate) fn is_set(self) -> bool {
        matches!(self, BinOp::And | BinOp::Or | BinOp::Unless)
    }
}

/// How the two sides of a vector binary operation are matched.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Cardinality {
    OneToOne,
    /// `group_left(<labels>)`.
    ManyToOne(Vec<String>),
    /// `group_right(<labels>)`.
    OneToMany(Vec<String>),
    ManyToMany,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct VectorMatching {
    /// `on(...)` when true, `ignoring(...)` when false (the default, with no labels).
    pub(crate) on: bool,
    pub(crate) labels: Vec<String>,
    pub(crate) card: Cardinality,
}

#[derive(Debug, Clone)]
pub(crate) enum Expr {
    Number(f64),
    String(String),
    Selector(Selector),
    Matrix {
        sel: Selector,
        range: i64,
    },
    Subquery {
        expr: Box<Expr>,
        range: i64,
        step: Option<i64>,
        offset: i64,
        at: Option<At>,
    },
    Aggregate {
        op: AggOp,
        expr: Box<Expr>,
        param: Option<Box<Expr>>,
        grouping: Option<Grouping>,
        /// Where the aggregation's first argument starts, for annotations.
        param_pos: Pos,
    },
    Binary {
        op: BinOp,
        lhs: Box<Expr>,
        rhs: Box<Expr>,
        return_bool: bool,
        matching: VectorMatching,
    },
    Neg(Box<Expr>),
    Call {
        func: String,
        args: Vec<Expr>,
        /// Where the call and each argument start in the query, for annotations.
        pos: Pos,
        arg_pos: Vec<Pos>,
    },
    Paren(Box<Expr>),
}

/// A tree as deep as the query is nested is dropped without recursion: children are
/// moved out onto a work list (leaves left in their place) and dropped from there, so
/// the compiler's drop glue never descends more than one level.
impl Drop for Expr {
    fn drop(&mut self) {
        let mut pending = Vec::new();
        take_children(self, &mut pending);
        while let Some(mut e) = pending.pop() {
            take_children(&mut e, &mut pending);
        }
    }
}

/// Moves the sub-expressions of `e` into `out`, leaving leaves behind.
fn take_children(e: &mut Expr, out: &mut Vec<Expr>) {
    let mut take = |b: &mut Box<Expr>| out.push(std::mem::replace(&mut **b, Expr::Number(0.0)));
    match e {
        Expr::Number(_) | Expr::String(_) | Expr::Selector(_) | Expr::Matrix { .. } => {}
        Expr::Subquery { expr, .. } | Expr::Neg(expr) | Expr::Paren(expr) => take(expr),
        Expr::Aggregate { expr, param, .. } => {
            take(expr);
            if let Some(p) = param {
                take(p);
            }
        }
        Expr::Binary { lhs, rhs, .. } => {
            take(lhs);
            take(rhs);
        }
        Expr::Call { args, .. } => out.append(args),
    }
}

impl Expr {
    /// The type of the expression's value.
    pub(crate) fn value_type(&self) -> ValueType {
        crate::parser::with_stack(|| self.value_type_inner())
    }

    fn value_type_inner(&self) -> ValueType {
        match self {
            Expr::Number(_) => ValueType::Scalar,
            Expr::String(_) => ValueType::String,
            Expr::Selector(_) | Expr::Aggregate { .. } => ValueType::Vector,
            Expr::Matrix { .. } | Expr::Subquery { .. } => ValueType::Matrix,
            Expr::Binary { lhs, rhs, .. } => {
                if lhs.value_type() == ValueType::Scalar && rhs.value_type() == ValueType::Scalar {
                    ValueType::Scalar
                } else {
                    ValueType::Vector
                }
            }
            Expr::Neg(e) | Expr::Paren(e) => e.value_type(),
            Expr::Call { func, .. } => crate::functions::return_type(func),
        }
    }
}

/// A position in the query text, shown as `(line:column)` after annotations as
/// Prometheus does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Pos {
    pub(crate) line: usize,
    pub(crate) col: usize,
}

impl std::fmt::Display for Pos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "({}:{})", self.line, self.col)
    }
}

/// What duration expressions (`step()`, `range()`) stand for in one query.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct DurationParams {
    /// The query's step in milliseconds (0 for an instant query).
    pub(crate) step_ms: i64,
    /// `end - start` in milliseconds.
    pub(crate) range_ms: i64,
}

/// Parses and checks a query, with Prometheus's error text.
fn parse_checked(query: &str) -> Result<Node, QueryError> {
    crate::parser::parse(query).map_err(|e| QueryError::invalid_query(e.render(query)))
}

/// The query in Prometheus's canonical layout (what `/api/v1/format_query` answers).
pub fn format_query(query: &str) -> Result<String, QueryError> {
    let node = parse_checked(query)?;
    // Refuse what evaluation would refuse, as Prometheus formats only valid queries.
    Converter::new(query, DurationParams::default()).convert(&node)?;
    Ok(crate::parser::print::pretty(&node))
}

/// Checks that `query` is a valid expression (it parses and its types check) without
/// evaluating it: what rule files and `promtool check rules` verify.
pub fn validate_query(query: &str) -> Result<(), QueryError> {
    let node = parse_checked(query)?;
    Converter::new(query, DurationParams::default())
        .lenient_durations()
        .convert(&node)
        .map(|_| ())
}

/// Parses a query for evaluation.
pub(crate) fn parse(query: &str, durations: DurationParams) -> Result<Expr, QueryError> {
    let node = parse_checked(query)?;
    Converter::new(query, durations).convert(&node)
}

/// Turns the syntax tree into an [`Expr`].
struct Converter<'q> {
    query: &'q str,
    durations: DurationParams,
    /// Whether computed durations may be out of bounds (when no query gives them
    /// values, as when a rule file is checked).
    lenient: bool,
}

impl<'q> Converter<'q> {
    fn new(query: &'q str, durations: DurationParams) -> Self {
        Converter {
            query,
            durations,
            lenient: false,
        }
    }

    fn lenient_durations(mut self) -> Self {
        self.lenient = true;
        self
    }

    fn position(&self, offset: usize) -> Pos {
        let (line, col) = crate::parser::line_col(self.query, offset);
        Pos { line, col }
    }

    fn error(&self, offset: usize, message: &str) -> QueryError {
        let (line, col) = crate::parser::line_col(self.query, offset);
        QueryError::invalid_query(format!("{line}:{col}: {message}"))
    }

    fn convert(&self, node: &Node) -> Result<Expr, QueryError> {
        crate::parser::with_stack(|| self.convert_node(node))
    }

    fn convert_node(&self, node: &Node) -> Result<Expr, QueryError> {
        Ok(match &node.kind {
            NodeKind::Number { value, .. } => Expr::Number(*value),
            NodeKind::String(s) => Expr::String(s.clone()),
            NodeKind::Selector(s) => Expr::Selector(self.selector(s)?),
            NodeKind::Matrix { selector, range } => {
                let NodeKind::Selector(s) = &selector.kind else {
                    return Err(self.error(node.pos, "ranges only allowed for vector selectors"));
                };
                Expr::Matrix {
                    sel: self.selector(s)?,
                    range: self.duration(range, false)?,
                }
            }
            NodeKind::Subquery {
                expr,
                range,
                step,
                offset,
                at,
            } => Expr::Subquery {
                expr: Box::new(self.convert(expr)?),
                range: self.duration(range, false)?,
                step: match step {
                    Some(s) => Some(self.duration(s, false)?),
                    None => None,
                },
                offset: match offset {
                    Some(o) => self.duration(o, true)?,
                    None => 0,
                },
                at: at.map(at_of),
            },
            NodeKind::Paren(e) => Expr::Paren(Box::new(self.convert(e)?)),
            NodeKind::Unary { negative, expr } => {
                let inner = self.convert(expr)?;
                if *negative {
                    Expr::Neg(Box::new(inner))
                } else {
                    inner
                }
            }
            NodeKind::Aggregate {
                op,
                param,
                expr,
                grouping,
                without,
            } => Expr::Aggregate {
                op: *op,
                expr: Box::new(self.convert(expr)?),
                param: match param {
                    Some(p) => Some(Box::new(self.convert(p)?)),
                    None => None,
                },
                grouping: if *without {
                    Some(Grouping::Without(grouping.clone()))
                } else if grouping.is_empty() {
                    None
                } else {
                    Some(Grouping::By(grouping.clone()))
                },
                param_pos: self.position(param.as_ref().map_or(node.pos, |p| p.pos)),
            },
            NodeKind::Binary {
                op,
                op_pos,
                lhs,
                rhs,
                return_bool,
                matching,
            } => {
                let op = bin_op(*op).ok_or_else(|| {
                    self.error(
                        *op_pos,
                        &format!(
                            "binary operator {:?} is not supported by Kiln yet",
                            op.text()
                        ),
                    )
                })?;
                let card = if op.is_set() {
                    Cardinality::ManyToMany
                } else {
                    match matching.card {
                        syntax::Card::ManyToOne => Cardinality::ManyToOne(matching.include.clone()),
                        syntax::Card::OneToMany => Cardinality::OneToMany(matching.include.clone()),
                        syntax::Card::OneToOne => Cardinality::OneToOne,
                    }
                };
                Expr::Binary {
                    op,
                    lhs: Box::new(self.convert(lhs)?),
                    rhs: Box::new(self.convert(rhs)?),
                    return_bool: *return_bool,
                    matching: VectorMatching {
                        on: matching.on,
                        labels: matching.labels.clone(),
                        card,
                    },
                }
            }
            NodeKind::Call {
                func,
                args,
                arg_pos,
            } => {
                let mut converted = Vec::with_capacity(args.len());
                for a in args {
                    converted.push(self.convert(a)?);
                }
                Expr::Call {
                    func: func.clone(),
                    args: converted,
                    pos: self.position(node.pos),
                    arg_pos: arg_pos.iter().map(|&p| self.position(p)).collect(),
                }
            }
        })
    }

    fn selector(&self, s: &syntax::VectorSelector) -> Result<Selector, QueryError> {
        let mut matchers: Vec<Matcher> = Vec::with_capacity(s.matchers.len() + 1);
        if let Some(name) = &s.name {
            matchers.push(Matcher::equal(METRIC_NAME, name));
        }
        matchers.extend(s.matchers.iter().cloned());
        Ok(Selector {
            matchers,
            offset: match &s.offset {
                Some(o) => self.duration(o, true)?,
                None => 0,
            },
            at: s.at.map(at_of),
        })
    }

    /// A duration in milliseconds; `signed` for offsets, which may be negative.
    fn duration(&self, d: &Duration, signed: bool) -> Result<i64, QueryError> {
        let (seconds, pos) = match d {
            Duration::Literal { seconds, pos } => (*seconds, *pos),
            Duration::Expr(e) => (self.duration_value(e)?, e.pos),
        };
        if !self.lenient {
            if !seconds.is_finite() {
                return Err(self.error(pos, "duration is NaN or infinite"));
            }
            if seconds <= 0.0 && !signed {
                return Err(self.error(pos, "duration must be greater than 0"));
            }
            if seconds.abs() > 9_223_372_036.854_775 {
                return Err(self.error(pos, "duration is out of range"));
            }
        }
        Ok((seconds * 1000.0).round() as i64)
    }

    /// A duration expression's value in seconds.
    fn duration_value(&self, e: &DurationExpr) -> Result<f64, QueryError> {
        crate::parser::with_stack(|| self.duration_value_inner(e))
    }

    fn duration_value_inner(&self, e: &DurationExpr) -> Result<f64, QueryError> {
        Ok(match &e.kind {
            DurationKind::Number { seconds, .. } => *seconds,
            DurationKind::Step => self.durations.step_ms as f64 / 1000.0,
            DurationKind::Range => self.durations.range_ms as f64 / 1000.0,
            DurationKind::MinOf(a, b) => self.duration_value(a)?.min(self.duration_value(b)?),
            DurationKind::MaxOf(a, b) => self.duration_value(a)?.max(self.duration_value(b)?),
            DurationKind::Unary(negative, inner) => {
                let v = self.duration_value(inner)?;
                if *negative { -v } else { v }
            }
            DurationKind::Binary(op, a, b) => {
                let (a, b) = (self.duration_value(a)?, self.duration_value(b)?);
                match op {
                    syntax::BinaryOp::Add => a + b,
                    syntax::BinaryOp::Sub => a - b,
                    syntax::BinaryOp::Mul => a * b,
                    syntax::BinaryOp::Div if b == 0.0 && !self.lenient => {
                        return Err(self.error(e.pos, "division by zero"));
                    }
                    syntax::BinaryOp::Div => a / b,
                    syntax::BinaryOp::Mod if b == 0.0 && !self.lenient => {
                        return Err(self.error(e.pos, "modulo by zero"));
                    }
                    syntax::BinaryOp::Mod => a % b,
                    _ => a.powf(b),
                }
            }
        })
    }
}

/// The furthest from 1970 an evaluation time may be, in milliseconds (about 73 million
/// years): `@` times beyond it are taken as this bound, which selects the same (no)
/// data, so that time arithmetic (`t - range`, `t + step`) never overflows.
pub(crate) const TIME_LIMIT_MS: i64 = i64::MAX / 4;

fn at_of(a: syntax::AtModifier) -> At {
    match a {
        syntax::AtModifier::Time(ms) => At::Time(ms.clamp(-TIME_LIMIT_MS, TIME_LIMIT_MS)),
        syntax::AtModifier::Start => At::Start,
        syntax::AtModifier::End => At::End,
    }
}

/// Kiln's operator for a parsed one; `None` for the ones it does not evaluate.
fn bin_op(op: syntax::BinaryOp) -> Option<BinOp> {
    use syntax::BinaryOp as B;
    Some(match op {
        B::Add => BinOp::Add,
        B::Sub => BinOp::Sub,
        B::Mul => BinOp::Mul,
        B::Div => BinOp::Div,
        B::Mod => BinOp::Mod,
        B::Pow => BinOp::Pow,
        B::Atan2 => BinOp::Atan2,
        B::Eql => BinOp::Eql,
        B::Neq => BinOp::Neq,
        B::Gtr => BinOp::Gtr,
        B::Lss => BinOp::Lss,
        B::Gte => BinOp::Gte,
        B::Lte => BinOp::Lte,
        B::And => BinOp::And,
        B::Or => BinOp::Or,
        B::Unless => BinOp::Unless,
        B::TrimUpper | B::TrimLower => return None,
    })
}
