//! PromQL for Kiln: parsing (through the `promql-parser` crate, behind [`ast`]),
//! evaluation with Prometheus 3 semantics over any `kiln_storage::Queryable`, and the
//! `promqltest` runner for Prometheus's own test scripts.
//!
//! Module map:
//! - [`engine`]: the engine and its options: the entry points.
//! - `ast`: Kiln's syntax tree and the conversion from the parser's.
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
pub mod promqltest;
pub mod value;

pub use ast::{format_query, validate_query};
pub use engine::{CancelToken, Engine, EngineOptions};
pub use error::{QueryError, QueryErrorKind};
pub use value::{QueryResult, Sample, Series, Value};
