//! The syntax tree: a query as it was written, with the byte offset where each node
//! starts (error positions) and everything needed to print it back in Prometheus's
//! layout (`/api/v1/format_query`). The evaluator works on the smaller `ast::Expr`
//! made from it once it has been checked.

use kiln_model::Matcher;

/// The type of value an expression produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ValueType {
    Scalar,
    Vector,
    Matrix,
    String,
}

impl ValueType {
    /// The name Prometheus's error messages use (`range vector`, `instant vector`, ...).
    pub(crate) fn documented(self) -> &'static str {
        match self {
            ValueType::Scalar => "scalar",
            ValueType::Vector => "instant vector",
            ValueType::Matrix => "range vector",
            ValueType::String => "string",
        }
    }

    /// Prometheus's internal name (`vector`, `matrix`, ...), which a few messages show.
    pub(crate) fn internal(self) -> &'static str {
        match self {
            ValueType::Scalar => "scalar",
            ValueType::Vector => "vector",
            ValueType::Matrix => "matrix",
            ValueType::String => "string",
        }
    }
}

/// Aggregation operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AggregateOp {
    Sum,
    Min,
    Max,
    Avg,
    Count,
    Group,
    Stddev,
    Stdvar,
    Topk,
    Bottomk,
    Quantile,
    CountValues,
    Limitk,
    LimitRatio,
}

impl AggregateOp {
    pub(crate) fn name(self) -> &'static str {
        match self {
            AggregateOp::Sum => "sum",
            AggregateOp::Min => "min",
            AggregateOp::Max => "max",
            AggregateOp::Avg => "avg",
            AggregateOp::Count => "count",
            AggregateOp::Group => "group",
            AggregateOp::Stddev => "stddev",
            AggregateOp::Stdvar => "stdvar",
            AggregateOp::Topk => "topk",
            AggregateOp::Bottomk => "bottomk",
            AggregateOp::Quantile => "quantile",
            AggregateOp::CountValues => "count_values",
            AggregateOp::Limitk => "limitk",
            AggregateOp::LimitRatio => "limit_ratio",
        }
    }

    /// Whether the operator takes a parameter before the vector.
    pub(crate) fn has_param(self) -> bool {
        matches!(
            self,
            AggregateOp::Topk
                | AggregateOp::Bottomk
                | AggregateOp::Quantile
                | AggregateOp::CountValues
                | AggregateOp::Limitk
                | AggregateOp::LimitRatio
        )
    }
}

/// Binary operators, lowest precedence first in [`BinaryOp::precedence`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BinaryOp {
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
    /// `</` (Prometheus 3's experimental histogram trimming).
    TrimUpper,
    /// `>/`.
    TrimLower,
    And,
    Or,
    Unless,
}

impl BinaryOp {
    pub(crate) fn text(self) -> &'static str {
        match self {
            BinaryOp::Add => "+",
            BinaryOp::Sub => "-",
            BinaryOp::Mul => "*",
            BinaryOp::Div => "/",
            BinaryOp::Mod => "%",
            BinaryOp::Pow => "^",
            BinaryOp::Atan2 => "atan2",
            BinaryOp::Eql => "==",
            BinaryOp::Neq => "!=",
            BinaryOp::Gtr => ">",
            BinaryOp::Lss => "<",
            BinaryOp::Gte => ">=",
            BinaryOp::Lte => "<=",
            BinaryOp::TrimUpper => "</",
            BinaryOp::TrimLower => ">/",
            BinaryOp::And => "and",
            BinaryOp::Or => "or",
            BinaryOp::Unless => "unless",
        }
    }

    /// Binding strength: `or` < `and unless` < comparisons < `+ -` < `* / % atan2` < `^`.
    pub(crate) fn precedence(self) -> u8 {
        match self {
            BinaryOp::Or => 1,
            BinaryOp::And | BinaryOp::Unless => 2,
            BinaryOp::Eql
            | BinaryOp::Neq
            | BinaryOp::Gtr
            | BinaryOp::Lss
            | BinaryOp::Gte
            | BinaryOp::Lte
            | BinaryOp::TrimUpper
            | BinaryOp::TrimLower => 3,
            BinaryOp::Add | BinaryOp::Sub => 4,
            BinaryOp::Mul | BinaryOp::Div | BinaryOp::Mod | BinaryOp::Atan2 => 5,
            BinaryOp::Pow => 6,
        }
    }

    pub(crate) fn is_comparison(self) -> bool {
        matches!(
            self,
            BinaryOp::Eql
                | BinaryOp::Neq
                | BinaryOp::Gtr
                | BinaryOp::Lss
                | BinaryOp::Gte
                | BinaryOp::Lte
        )
    }

    pub(crate) fn is_set(self) -> bool {
        matches!(self, BinaryOp::And | BinaryOp::Or | BinaryOp::Unless)
    }
}

/// How the series of a vector-vector operation are matched (set operators are always
/// many-to-many, which the evaluator's tree records).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Card {
    OneToOne,
    ManyToOne,
    OneToMany,
}

/// The modifiers after a binary operator: `bool`, `on`/`ignoring`, `group_left`/
/// `group_right`, `fill*`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Matching {
    pub(crate) card: Card,
    /// `on(...)` when true; `ignoring(...)` (or nothing) when false.
    pub(crate) on: bool,
    pub(crate) labels: Vec<String>,
    /// The labels of `group_left(...)`/`group_right(...)`.
    pub(crate) include: Vec<String>,
    pub(crate) fill_left: Option<f64>,
    pub(crate) fill_right: Option<f64>,
}

/// The `@` modifier.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum AtModifier {
    /// `@ <seconds>`, in milliseconds.
    Time(i64),
    Start,
    End,
}

/// A duration: a literal (seconds) or, with duration expressions, arithmetic over
/// literals, `step()` and `range()`, resolved when the query runs.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Duration {
    Literal { seconds: f64, pos: usize },
    Expr(DurationExpr),
}

/// A duration expression as written.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DurationExpr {
    pub(crate) kind: DurationKind,
    pub(crate) pos: usize,
    /// Written inside parentheses (kept for printing).
    pub(crate) wrapped: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum DurationKind {
    Number {
        seconds: f64,
        /// Written as a duration (`5m`) rather than a number (`300`).
        duration: bool,
    },
    Step,
    Range,
    MinOf(Box<DurationExpr>, Box<DurationExpr>),
    MaxOf(Box<DurationExpr>, Box<DurationExpr>),
    /// `-d` or `+d`.
    Unary(bool, Box<DurationExpr>),
    Binary(BinaryOp, Box<DurationExpr>, Box<DurationExpr>),
}

/// An instant vector selector.
#[derive(Debug, Clone)]
pub(crate) struct VectorSelector {
    /// The metric name written before the braces.
    pub(crate) name: Option<String>,
    /// The matchers inside the braces, in order.
    pub(crate) matchers: Vec<Matcher>,
    pub(crate) offset: Option<Duration>,
    pub(crate) at: Option<AtModifier>,
}

/// A node of the syntax tree, where it starts in the query (a byte offset), and the
/// type of its value (worked out from its children when it is made, so asking for it
/// never walks the tree).
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub(crate) kind: NodeKind,
    pub(crate) pos: usize,
    ty: ValueType,
}

#[derive(Debug, Clone)]
pub(crate) enum NodeKind {
    Number {
        value: f64,
        /// Written as a duration (`5m`).
        duration: bool,
    },
    String(String),
    Selector(VectorSelector),
    /// `selector[range]`; `anchored`/`smoothed` are not accepted, so not kept.
    Matrix {
        selector: Box<Node>,
        range: Duration,
    },
    Subquery {
        expr: Box<Node>,
        range: Duration,
        step: Option<Duration>,
        offset: Option<Duration>,
        at: Option<AtModifier>,
    },
    Paren(Box<Node>),
    /// `-expr` or `+expr` (numbers absorb their sign instead).
    Unary {
        negative: bool,
        expr: Box<Node>,
    },
    Binary {
        op: BinaryOp,
        /// Where the operator starts, for errors about it.
        op_pos: usize,
        lhs: Box<Node>,
        rhs: Box<Node>,
        return_bool: bool,
        matching: Matching,
    },
    Call {
        func: String,
        args: Vec<Node>,
        /// Where each argument starts.
        arg_pos: Vec<usize>,
    },
    Aggregate {
        op: AggregateOp,
        param: Option<Box<Node>>,
        expr: Box<Node>,
        grouping: Vec<String>,
        without: bool,
    },
}

/// A tree as deep as the query is nested is dropped with a growing stack too (the
/// compiler's drop glue would recurse on the thread's stack).
impl Drop for Node {
    fn drop(&mut self) {
        let kind = std::mem::replace(
            &mut self.kind,
            NodeKind::Number {
                value: 0.0,
                duration: false,
            },
        );
        super::with_stack(move || drop(kind));
    }
}

impl Node {
    pub(crate) fn new(pos: usize, kind: NodeKind) -> Node {
        let ty = match &kind {
            NodeKind::Number { .. } => ValueType::Scalar,
            NodeKind::String(_) => ValueType::String,
            NodeKind::Selector(_) | NodeKind::Aggregate { .. } => ValueType::Vector,
            NodeKind::Matrix { .. } | NodeKind::Subquery { .. } => ValueType::Matrix,
            NodeKind::Paren(e) | NodeKind::Unary { expr: e, .. } => e.ty,
            NodeKind::Binary { lhs, rhs, .. } => {
                if lhs.ty == ValueType::Scalar && rhs.ty == ValueType::Scalar {
                    ValueType::Scalar
                } else {
                    ValueType::Vector
                }
            }
            NodeKind::Call { func, .. } => {
                crate::functions::signature(func).map_or(ValueType::Vector, |s| s.returns)
            }
        };
        Node { kind, pos, ty }
    }

    /// The type of the node's value (without checking it).
    pub(crate) fn value_type(&self) -> ValueType {
        self.ty
    }
}
