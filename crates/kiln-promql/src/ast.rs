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

/// Runs the parser.
fn parse_tree(query: &str) -> Result<pp::Expr, QueryError> {
    // The parser panics on a few hostile inputs (a duration too large for
    // `std::time::Duration`, found by fuzzing): a query must get an error, never take the
    // process down, so a panic inside the parser is turned into one. The parser keeps no
    // state between calls, so nothing is left half-updated.
    std::panic::catch_unwind(|| pp::parse(query))
        .map_err(|_| {
            QueryError::bad_data(
                "invalid query: the parser rejected it (a number or duration out of range?)",
            )
        })?
        .map_err(QueryError::bad_data)
}

/// The query in Prometheus's canonical layout (what `/api/v1/format_query` answers),
/// after checking it the way evaluation would.
pub fn format_query(query: &str) -> Result<String, QueryError> {
    let parsed = parse_tree(query)?;
    let mut conv = Converter {
        text: query,
        seen: std::collections::HashMap::new(),
    };
    conv.convert(&parsed)?;
    Ok(parsed.prettify())
}

/// Checks that `query` is a valid expression (it parses and its types check) without
/// evaluating it: what rule files and `promtool check rules` verify.
pub fn validate_query(query: &str) -> Result<(), QueryError> {
    parse(query).map(|_| ())
}

/// Parses a query.
pub(crate) fn parse(query: &str) -> Result<Expr, QueryError> {
    let parsed = parse_tree(query)?;
    let mut conv = Converter {
        text: query,
        seen: std::collections::HashMap::new(),
    };
    conv.convert(&parsed)
}

/// Converts the parser's tree, finding positions in the text: the parser keeps none, but
/// calls and aggregations are visited in pre-order, which is the order in which their
/// names appear in the text, so the k-th visit of `name` is the k-th `name(` token.
struct Converter<'q> {
    text: &'q str,
    seen: std::collections::HashMap<String, usize>,
}

impl Converter<'_> {
    fn position(&self, offset: usize) -> Pos {
        let before = &self.text[..offset.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let col = before.rfind('\n').map_or(offset, |nl| offset - nl - 1) + 1;
        Pos { line, col }
    }

    /// The offsets of the `k`th `name` token (case-insensitive, not inside a string or
    /// part of a longer identifier) and of its arguments.
    fn find_call(&mut self, name: &str) -> (Pos, Vec<Pos>) {
        let k = {
            let e = self.seen.entry(name.to_lowercase()).or_insert(0);
            *e += 1;
            *e - 1
        };
        let tokens = identifier_offsets(self.text, name);
        let Some(&start) = tokens.get(k) else {
            return (Pos::default(), Vec::new());
        };
        let args = argument_offsets(self.text, start + name.len());
        (
            self.position(start),
            args.into_iter().map(|o| self.position(o)).collect(),
        )
    }
}

/// Offsets of `name` as a whole identifier outside string literals.
fn identifier_offsets(text: &str, name: &str) -> Vec<usize> {
    let bytes = text.as_bytes();
    let lower = text.to_lowercase();
    let name = name.to_lowercase();
    let mut out = Vec::new();
    let mut quote: Option<u8> = None;
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if let Some(q) = quote {
            if c == b'\\' && q != b'`' {
                i += 2;
                continue;
            }
            if c == q {
                quote = None;
            }
            i += 1;
            continue;
        }
        if matches!(c, b'"' | b'\'' | b'`') {
            quote = Some(c);
            i += 1;
            continue;
        }
        let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b':';
        if lower[i..].starts_with(&name)
            && (i == 0 || !ident(bytes[i - 1]))
            && bytes.get(i + name.len()).is_none_or(|&b| !ident(b))
        {
            out.push(i);
            i += name.len();
            continue;
        }
        i += 1;
    }
    out
}

/// The offsets where the arguments of a call start, scanning from just after its name:
/// an optional `by (...)`/`without (...)` clause is skipped, then the parenthesised
/// list is split at top-level commas.
fn argument_offsets(text: &str, from: usize) -> Vec<usize> {
    let bytes = text.as_bytes();
    let mut i = from;
    let skip_ws = |mut i: usize| {
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        i
    };
    i = skip_ws(i);
    // A grouping clause between the name and the arguments.
    let rest = text[i..].to_lowercase();
    if (rest.starts_with("by") || rest.starts_with("without"))
        && let Some(open) = text[i..].find('(')
        && let Some(close) = text[i + open..].find(')')
    {
        i = skip_ws(i + open + close + 1);
    }
    if bytes.get(i) != Some(&b'(') {
        return Vec::new();
    }
    i += 1;
    let mut out = vec![skip_ws(i)];
    let mut depth = 0i32;
    let mut quote: Option<u8> = None;
    while i < bytes.len() {
        let c = bytes[i];
        if let Some(q) = quote {
            if c == b'\\' && q != b'`' {
                i += 2;
                continue;
            }
            if c == q {
                quote = None;
            }
        } else {
            match c {
                b'"' | b'\'' | b'`' => quote = Some(c),
                b'(' | b'[' | b'{' => depth += 1,
                b')' | b']' | b'}' if depth == 0 => break,
                b')' | b']' | b'}' => depth -= 1,
                b',' if depth == 0 => out.push(skip_ws(i + 1)),
                _ => {}
            }
        }
        i += 1;
    }
    out
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

impl Converter<'_> {
    fn convert(&mut self, e: &pp::Expr) -> Result<Expr, QueryError> {
        Ok(match e {
            pp::Expr::NumberLiteral(n) => Expr::Number(n.val),
            pp::Expr::StringLiteral(s) => Expr::String(s.val.clone()),
            pp::Expr::VectorSelector(vs) => Expr::Selector(selector(vs)?),
            pp::Expr::MatrixSelector(ms) => Expr::Matrix {
                sel: selector(&ms.vs)?,
                range: millis(&ms.range),
            },
            pp::Expr::Subquery(sq) => Expr::Subquery {
                expr: Box::new(self.convert(&sq.expr)?),
                range: millis(&sq.range),
                step: sq.step.as_ref().map(millis),
                offset: offset_ms(&sq.offset),
                at: at(&sq.at),
            },
            pp::Expr::Paren(p) => Expr::Paren(Box::new(self.convert(&p.expr)?)),
            pp::Expr::Unary(u) => Expr::Neg(Box::new(self.convert(&u.expr)?)),
            pp::Expr::Aggregate(a) => {
                let op = agg_op(&a.op)?;
                let (pos, args) = self.find_call(&a.op.to_string());
                let param = match &a.param {
                    Some(p) => Some(Box::new(self.convert(p)?)),
                    None => None,
                };
                Expr::Aggregate {
                    op,
                    expr: Box::new(self.convert(&a.expr)?),
                    param,
                    grouping: a.modifier.as_ref().map(|m| match m {
                        LabelModifier::Include(l) => Grouping::By(labels_of(l)),
                        LabelModifier::Exclude(l) => Grouping::Without(labels_of(l)),
                    }),
                    param_pos: args.first().copied().unwrap_or(pos),
                }
            }
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
                    lhs: Box::new(self.convert(&b.lhs)?),
                    rhs: Box::new(self.convert(&b.rhs)?),
                    return_bool,
                    matching,
                }
            }
            pp::Expr::Call(c) => {
                crate::functions::check_known(c.func.name)?;
                let (pos, arg_pos) = self.find_call(c.func.name);
                let mut args = Vec::with_capacity(c.args.args.len());
                for a in &c.args.args {
                    args.push(self.convert(a)?);
                }
                Expr::Call {
                    func: c.func.name.to_owned(),
                    args,
                    pos,
                    arg_pos,
                }
            }
            pp::Expr::Extension(_) => return Err(QueryError::bad_data("unsupported expression")),
        })
    }
}
