//! PromQL for Kiln: parsing (with Prometheus's error messages, in `parser`),
//! evaluation with Prometheus 3 semantics over any `kiln_storage::Queryable`, and the
//! `promqltest` runner for Prometheus's own test scripts.
//!
//! Module map:
//! - [`engine`]: the engine and its options: the entry points.
//! - `parser`: lexer, parser, type checks and printer, with Prometheus's messages.
//! - `ast`: the evaluator's expression tree, made from the parser's syntax tree.
//! - `eval`: loading selector data, per-step evaluation, aggregations, binary operators.
//! - `functions`: the function registry and implementations by family.
//! - [`value`]: result types.
//! - [`error`]: the error type.
//!
//! Only kiln-model and kiln-storage are visible from here, so the same engine evaluates
//! over the local TSDB, a bucket or a fan-out.

mod ast;
pub mod engine;
pub mod error;
mod eval;
mod functions;
mod parser;
pub mod promqltest;
pub mod value;

pub use ast::{format_query, validate_query};
pub use engine::{CancelToken, Engine, EngineOptions};
pub use error::{QueryError, QueryErrorKind};
pub use value::{QueryResult, QueryStats, Sample, Series, Value};
