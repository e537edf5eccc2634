//! The rule unit test file format (`promtool test rules`), as YAML.

use std::collections::BTreeMap;

use kiln_config::Duration;
use serde::{Deserialize, Deserializer};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TestFile {
    #[serde(default)]
    pub(super) rule_files: Vec<String>,
    pub(super) evaluation_interval: Option<Duration>,
    #[serde(default)]
    pub(super) fuzzy_compare: bool,
    #[serde(default)]
    pub(super) group_eval_order: Vec<String>,
    #[serde(default)]
    pub(super) tests: Vec<TestGroup>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TestGroup {
    pub(super) interval: Option<Duration>,
    #[serde(default)]
    pub(super) input_series: Vec<InputSeries>,
    #[serde(default)]
    pub(super) name: String,
    #[serde(default, deserialize_with = "start_timestamp")]
    pub(super) start_timestamp: i64,
    #[serde(default)]
    pub(super) alert_rule_test: Vec<AlertTestCase>,
    #[serde(default)]
    pub(super) promql_expr_test: Vec<PromqlTestCase>,
    #[serde(default)]
    pub(super) external_labels: BTreeMap<String, String>,
    #[serde(default)]
    pub(super) external_url: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct InputSeries {
    pub(super) series: String,
    #[serde(default)]
    pub(super) values: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AlertTestCase {
    pub(super) eval_time: Duration,
    #[serde(default)]
    pub(super) alertname: String,
    #[serde(default)]
    pub(super) exp_alerts: Vec<ExpAlert>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ExpAlert {
    #[serde(default)]
    pub(super) exp_labels: BTreeMap<String, String>,
    #[serde(default)]
    pub(super) exp_annotations: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PromqlTestCase {
    pub(super) expr: String,
    pub(super) eval_time: Duration,
    #[serde(default)]
    pub(super) exp_samples: Vec<ExpSample>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ExpSample {
    #[serde(default)]
    pub(super) labels: String,
    #[serde(default)]
    pub(super) value: f64,
    /// Native histogram samples, which Kiln does not store yet.
    pub(super) histogram: Option<String>,
}

/// `start_timestamp`: Unix seconds, or an RFC 3339 time. Returns ms.
fn start_timestamp<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    let s = String::deserialize(d)?;
    if let Ok(secs) = s.parse::<i64>() {
        return secs
            .checked_mul(1000)
            .ok_or_else(|| serde::de::Error::custom("start_timestamp out of range"));
    }
    kiln_model::calendar::parse_rfc3339_ms(&s).ok_or_else(|| {
        serde::de::Error::custom(format!(
            "start_timestamp {s:?}: want Unix seconds or an RFC 3339 time"
        ))
    })
}
