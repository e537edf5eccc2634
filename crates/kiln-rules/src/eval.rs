//! What rule evaluation runs against: the engine, the storage it reads and writes, and
//! the server's external labels and URL.

use std::collections::BTreeMap;
use std::sync::Arc;

use kiln_model::{Labels, METRIC_NAME};
use kiln_promql::{Engine, Sample, Value};
use kiln_storage::{Appendable, Queryable};

use crate::template::{QueryFn, QuerySample};

/// Why a rule's evaluation failed. The group goes on with its next rule.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RuleError {
    /// The query failed (bad data, timeout, storage error).
    #[error("{0}")]
    Query(String),
    /// The result cannot be recorded (wrong type, duplicate label sets, over the limit).
    #[error("{0}")]
    Eval(String),
}

/// The environment of one evaluation.
#[derive(Clone, Copy)]
pub struct EvalEnv<'a> {
    pub engine: &'a Engine,
    /// What queries read; shared so that alert templates' `query` can hold it.
    pub queryable: &'a Arc<dyn Queryable>,
    pub appendable: &'a dyn Appendable,
    /// `global.external_labels`, for alert templates (`$externalLabels`).
    pub external_labels: &'a BTreeMap<String, String>,
    /// `--web.external-url`, for alert templates (`$externalURL`).
    pub external_url: &'a str,
}

/// Runs `expr` as an instant query at `t` (ms) and returns its samples: a scalar
/// becomes one sample without labels, as in Prometheus; strings and range vectors are
/// errors.
pub(crate) fn instant_vector(
    env: &EvalEnv<'_>,
    expr: &str,
    t: i64,
) -> Result<Vec<Sample>, RuleError> {
    let result = env
        .engine
        .instant_query(env.queryable.as_ref(), expr, t)
        .map_err(|e| RuleError::Query(e.message))?;
    match result.value {
        Value::Vector(v) => Ok(v),
        Value::Scalar { t, v } => Ok(vec![Sample::new(Labels::empty(), t, v)]),
        other => Err(RuleError::Eval(format!(
            "rule result is not a vector or scalar: {}",
            other.type_name()
        ))),
    }
}

/// The `query` function of templates expanded at `t` (template functions must own
/// what they use).
pub(crate) fn template_query(env: &EvalEnv<'_>, t: i64) -> QueryFn {
    let engine = env.engine.clone();
    let queryable = env.queryable.clone();
    Arc::new(move |q: &str| {
        let env_result = engine
            .instant_query(queryable.as_ref(), q, t)
            .map_err(|e| e.message)?;
        let samples = match env_result.value {
            Value::Vector(v) => v,
            Value::Scalar { t, v } => vec![Sample::new(Labels::empty(), t, v)],
            other => {
                return Err(format!(
                    "query {q:?}: result is a {}, not a vector or scalar",
                    other.type_name()
                ));
            }
        };
        Ok(samples
            .into_iter()
            .map(|s| QuerySample {
                labels: s
                    .labels
                    .iter()
                    .map(|l| (l.name.to_owned(), l.value.to_owned()))
                    .collect(),
                value: s.v,
            })
            .collect())
    })
}

/// The labels of `l` as a map, without the metric name.
pub(crate) fn label_map(l: &Labels) -> BTreeMap<String, String> {
    l.iter()
        .filter(|l| l.name != METRIC_NAME)
        .map(|l| (l.name.to_owned(), l.value.to_owned()))
        .collect()
}
