//! Kiln's PromQL syntax tree, and the one place that talks to the `promql-parser` crate.
//!
//! The parser's tree is converted right away into this smaller one: times become
//! milliseconds, operators become enums, and label matchers become `kiln_model`
//! matchers, whose regexes follow Prometheus 3 (`.` matches newline, ASCII `\d\w\s`)
//! rather than the parser's own.

use std::time::{Duration, UNIX_EPOCH};

use kiln_model::{METRIC_NAME, MatchType, Matcher};
use promql_parser::label::MatchOp;
use promql_parser::parser::{self as pp, LabelModifier, VectorMatchCardinality};

use crate::error::QueryError;

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AggOp {
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

/// The type an expression evaluates to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ValueType {
    Scalar,
    String,
    Vector,
    Matrix,
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
    },
    Paren(Box<Expr>),
}

impl Expr {
    /// The type of the expression's value.
    pub(crate) fn value_type(&self) -> ValueType {
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

/// Parses a query.
pub(crate) fn parse(query: &str) -> Result<Expr, QueryError> {
    let parsed = pp::parse(query).map_err(QueryError::bad_data)?;
    convert(&parsed)
}

fn millis(d: &Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn offset_ms(o: &Option<pp::Offset>) -> i64 {
    match o {
        None => 0,
        Some(pp::Offset::Pos(d)) => millis(d),
        Some(pp::Offset::Neg(d)) => -millis(d),
    }
}

fn at(a: &Option<pp::AtModifier>) -> Option<At> {
    a.as_ref().map(|a| match a {
        pp::AtModifier::Start => At::Start,
        pp::AtModifier::End => At::End,
        pp::AtModifier::At(t) => At::Time(match t.duration_since(UNIX_EPOCH) {
            Ok(d) => millis(&d),
            Err(e) => -millis(&e.duration()),
        }),
    })
}

fn labels_of(l: &promql_parser::label::Labels) -> Vec<String> {
    l.labels.clone()
}

fn selector(vs: &pp::VectorSelector) -> Result<Selector, QueryError> {
    if !vs.matchers.or_matchers.is_empty() {
        return Err(QueryError::bad_data("`or` in label matchers is not PromQL"));
    }
    let mut matchers = Vec::with_capacity(vs.matchers.matchers.len() + 1);
    if let Some(name) = &vs.name {
        matchers.push(Matcher::equal(METRIC_NAME, name));
    }
    for m in &vs.matchers.matchers {
        let kind = match m.op {
            MatchOp::Equal => MatchType::Equal,
            MatchOp::NotEqual => MatchType::NotEqual,
            MatchOp::Re(_) => MatchType::Regex,
            MatchOp::NotRe(_) => MatchType::NotRegex,
        };
        let built = Matcher::new(kind, &m.name, &m.value)
            .map_err(|e| QueryError::bad_data(e.to_string()))?;
        matchers.push(built);
    }
    Ok(Selector {
        matchers,
        offset: offset_ms(&vs.offset),
        at: at(&vs.at),
    })
}

fn agg_op(op: &pp::token::TokenType) -> Result<AggOp, QueryError> {
    Ok(match op.to_string().to_lowercase().as_str() {
        "sum" => AggOp::Sum,
        "min" => AggOp::Min,
        "max" => AggOp::Max,
        "avg" => AggOp::Avg,
        "count" => AggOp::Count,
        "group" => AggOp::Group,
        "stddev" => AggOp::Stddev,
        "stdvar" => AggOp::Stdvar,
        "topk" => AggOp::Topk,
        "bottomk" => AggOp::Bottomk,
        "quantile" => AggOp::Quantile,
        "count_values" => AggOp::CountValues,
        "limitk" => AggOp::Limitk,
        "limit_ratio" => AggOp::LimitRatio,
        other => {
            return Err(QueryError::bad_data(format!(
                "unknown aggregation operator {other:?}"
            )));
        }
    })
}

fn bin_op(op: &pp::token::TokenType) -> Result<BinOp, QueryError> {
    Ok(match op.to_string().to_lowercase().as_str() {
        "+" => BinOp::Add,
        "-" => BinOp::Sub,
        "*" => BinOp::Mul,
        "/" => BinOp::Div,
        "%" => BinOp::Mod,
        "^" => BinOp::Pow,
        "atan2" => BinOp::Atan2,
        "==" => BinOp::Eql,
        "!=" => BinOp::Neq,
        ">" => BinOp::Gtr,
        "<" => BinOp::Lss,
        ">=" => BinOp::Gte,
        "<=" => BinOp::Lte,
        "and" => BinOp::And,
        "or" => BinOp::Or,
        "unless" => BinOp::Unless,
        other => {
            return Err(QueryError::bad_data(format!(
                "unknown binary operator {other:?}"
            )));
        }
    })
}

fn convert(e: &pp::Expr) -> Result<Expr, QueryError> {
    Ok(match e {
        pp::Expr::NumberLiteral(n) => Expr::Number(n.val),
        pp::Expr::StringLiteral(s) => Expr::String(s.val.clone()),
        pp::Expr::VectorSelector(vs) => Expr::Selector(selector(vs)?),
        pp::Expr::MatrixSelector(ms) => Expr::Matrix {
            sel: selector(&ms.vs)?,
            range: millis(&ms.range),
        },
        pp::Expr::Subquery(sq) => Expr::Subquery {
            expr: Box::new(convert(&sq.expr)?),
            range: millis(&sq.range),
            step: sq.step.as_ref().map(millis),
            offset: offset_ms(&sq.offset),
            at: at(&sq.at),
        },
        pp::Expr::Paren(p) => Expr::Paren(Box::new(convert(&p.expr)?)),
        pp::Expr::Unary(u) => Expr::Neg(Box::new(convert(&u.expr)?)),
        pp::Expr::Aggregate(a) => Expr::Aggregate {
            op: agg_op(&a.op)?,
            expr: Box::new(convert(&a.expr)?),
            param: a
                .param
                .as_ref()
                .map(|p| convert(p).map(Box::new))
                .transpose()?,
            grouping: a.modifier.as_ref().map(|m| match m {
                LabelModifier::Include(l) => Grouping::By(labels_of(l)),
                LabelModifier::Exclude(l) => Grouping::Without(labels_of(l)),
            }),
        },
        pp::Expr::Binary(b) => {
            let op = bin_op(&b.op)?;
            let (return_bool, matching) = match &b.modifier {
                None => (
                    false,
                    VectorMatching {
                        on: false,
                        labels: Vec::new(),
                        card: if op.is_set() {
                            Cardinality::ManyToMany
                        } else {
                            Cardinality::OneToOne
                        },
                    },
                ),
                Some(m) => {
                    let (on, labels) = match &m.matching {
                        Some(LabelModifier::Include(l)) => (true, labels_of(l)),
                        Some(LabelModifier::Exclude(l)) => (false, labels_of(l)),
                        None => (false, Vec::new()),
                    };
                    let card = match &m.card {
                        VectorMatchCardinality::OneToOne => Cardinality::OneToOne,
                        VectorMatchCardinality::ManyToOne(l) => {
                            Cardinality::ManyToOne(labels_of(l))
                        }
                        VectorMatchCardinality::OneToMany(l) => {
                            Cardinality::OneToMany(labels_of(l))
                        }
                        VectorMatchCardinality::ManyToMany => Cardinality::ManyToMany,
                    };
                    let card = if op.is_set() {
                        Cardinality::ManyToMany
                    } else {
                        card
                    };
                    (m.return_bool, VectorMatching { on, labels, card })
                }
            };
            Expr::Binary {
                op,
                lhs: Box::new(convert(&b.lhs)?),
                rhs: Box::new(convert(&b.rhs)?),
                return_bool,
                matching,
            }
        }
        pp::Expr::Call(c) => {
            let args = c
                .args
                .args
                .iter()
                .map(|a| convert(a))
                .collect::<Result<Vec<_>, _>>()?;
            crate::functions::check_known(c.func.name)?;
            Expr::Call {
                func: c.func.name.to_owned(),
                args,
            }
        }
        pp::Expr::Extension(_) => return Err(QueryError::bad_data("unsupported expression")),
    })
}
