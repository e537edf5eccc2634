//! Recording rules: an expression's result stored under a new metric name.

use std::collections::{BTreeMap, HashSet};

use kiln_model::{Labels, METRIC_NAME};

use crate::eval::{EvalEnv, RuleError, instant_vector};

/// A recording rule ready to evaluate.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordingRule {
    pub(crate) name: String,
    pub(crate) expr: String,
    /// The group's labels overlaid with the rule's.
    pub(crate) labels: BTreeMap<String, String>,
}

impl RecordingRule {
    pub fn new(name: String, expr: String, labels: BTreeMap<String, String>) -> RecordingRule {
        RecordingRule { name, expr, labels }
    }

    /// Evaluates at `query_t` (ms): the series to store, each labelled with the rule's
    /// name and labels. More than `limit` series (when non-zero) is an error, as is a
    /// result with two series of one label set.
    pub(crate) fn eval(
        &self,
        env: &EvalEnv<'_>,
        query_t: i64,
        limit: usize,
    ) -> Result<Vec<(Labels, f64)>, RuleError> {
        let samples = instant_vector(env, &self.expr, query_t)?;
        let mut out = Vec::with_capacity(samples.len());
        let mut seen = HashSet::with_capacity(samples.len());
        for s in samples {
            let mut b = s.labels.to_builder();
            b.set(METRIC_NAME, &self.name);
            for (k, v) in &self.labels {
                b.set(k, v);
            }
            let labels = b.build();
            if !seen.insert(labels.clone()) {
                return Err(RuleError::Eval(
                    "vector contains metrics with the same labelset after applying rule labels"
                        .into(),
                ));
            }
            out.push((labels, s.v));
        }
        if limit > 0 && out.len() > limit {
            return Err(RuleError::Eval(format!(
                "exceeded limit of {limit} with {} series",
                out.len()
            )));
        }
        Ok(out)
    }
}
