//! Query results: the four PromQL value types.

use kiln_model::{Labels, Timestamp};

/// One sample of an instant vector.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: Labels,
    pub t: Timestamp,
    pub v: f64,
    /// During evaluation: the metric name is to be removed at the end (Prometheus's
    /// delayed name removal). Always false in query results.
    pub drop_name: bool,
}

impl Sample {
    pub fn new(labels: Labels, t: Timestamp, v: f64) -> Sample {
        Sample {
            labels,
            t,
            v,
            drop_name: false,
        }
    }
}

/// One series of a matrix (a range query's result, or a range vector).
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub labels: Labels,
    /// Points in time order.
    pub points: Vec<(Timestamp, f64)>,
}

/// The result of a query.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Scalar {
        t: Timestamp,
        v: f64,
    },
    String {
        t: Timestamp,
        v: String,
    },
    /// An instant vector (instant queries).
    Vector(Vec<Sample>),
    /// A range query's result, or a range vector returned by an instant query.
    Matrix(Vec<Series>),
}

impl Value {
    /// The Prometheus API name of the type: `scalar`, `string`, `vector`, `matrix`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Scalar { .. } => "scalar",
            Value::String { .. } => "string",
            Value::Vector(_) => "vector",
            Value::Matrix(_) => "matrix",
        }
    }
}

/// A query's value with the annotations Prometheus attaches to it, and what evaluating
/// it took.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryResult {
    pub value: Value,
    /// Warnings (`PromQL warning: ...`), e.g. from storage or odd input.
    pub warnings: Vec<String>,
    /// Informational annotations (`PromQL info: ...`), e.g. a metric that might not be a
    /// counter.
    pub infos: Vec<String>,
    pub stats: QueryStats,
}

/// What a query held and read (the API's `stats=all`). Not part of a result's identity:
/// results compare equal whatever their stats.
#[derive(Debug, Clone, Copy, Default)]
pub struct QueryStats {
    /// The most samples held at once (Prometheus's `peakSamples`).
    pub peak_samples: usize,
    /// The most bytes held at once (decoded samples, vectors kept between steps, step
    /// tables, the result).
    pub peak_bytes: usize,
    /// Samples read from storage (Prometheus's `totalQueryableSamples`).
    pub total_queryable_samples: usize,
    /// Series in the result.
    pub series: usize,
    /// Time slices a range query was evaluated in.
    pub slices: usize,
}

impl PartialEq for QueryStats {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
