//! The `global` section: defaults for every scrape config and rule group, and the
//! external labels attached when talking to the outside (federation, remote write,
//! alerts).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::units::{Duration, Size};
use crate::yaml::Problem;

/// Scrape limits. 0 means no limit. Set globally and overridable per scrape config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ScrapeLimits {
    pub body_size_limit: Size,
    pub sample_limit: u64,
    pub label_limit: u64,
    pub label_name_length_limit: u64,
    pub label_value_length_limit: u64,
    pub target_limit: u64,
    pub keep_dropped_targets: u64,
}

/// The limits as written, where unset falls back to the enclosing level.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawScrapeLimits {
    #[serde(default)]
    pub(crate) body_size_limit: Option<Size>,
    #[serde(default)]
    pub(crate) sample_limit: Option<u64>,
    #[serde(default)]
    pub(crate) label_limit: Option<u64>,
    #[serde(default)]
    pub(crate) label_name_length_limit: Option<u64>,
    #[serde(default)]
    pub(crate) label_value_length_limit: Option<u64>,
    #[serde(default)]
    pub(crate) target_limit: Option<u64>,
    #[serde(default)]
    pub(crate) keep_dropped_targets: Option<u64>,
}

impl RawScrapeLimits {
    pub(crate) fn resolve(&self, parent: &ScrapeLimits) -> ScrapeLimits {
        ScrapeLimits {
            body_size_limit: self.body_size_limit.unwrap_or(parent.body_size_limit),
            sample_limit: self.sample_limit.unwrap_or(parent.sample_limit),
            label_limit: self.label_limit.unwrap_or(parent.label_limit),
            label_name_length_limit: self
                .label_name_length_limit
                .unwrap_or(parent.label_name_length_limit),
            label_value_length_limit: self
                .label_value_length_limit
                .unwrap_or(parent.label_value_length_limit),
            target_limit: self.target_limit.unwrap_or(parent.target_limit),
            keep_dropped_targets: self
                .keep_dropped_targets
                .unwrap_or(parent.keep_dropped_targets),
        }
    }
}

/// The `global` section with defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub struct GlobalConfig {
    /// Default 1m.
    pub scrape_interval: Duration,
    /// Default 10s, or the scrape interval when that is shorter and the timeout unset.
    pub scrape_timeout: Duration,
    /// Empty means Kiln's default order of exposition formats.
    pub scrape_protocols: Vec<String>,
    /// Default 1m.
    pub evaluation_interval: Duration,
    /// Default 0s.
    pub rule_query_offset: Duration,
    /// Sorted by name; names are valid label names.
    pub external_labels: BTreeMap<String, String>,
    pub query_log_file: String,
    pub scrape_failure_log_file: String,
    pub limits: ScrapeLimits,
    /// `utf8` (Prometheus 3's default) or `legacy`.
    pub metric_name_validation_scheme: String,
    pub scrape_native_histograms: bool,
    pub convert_classic_histograms_to_nhcb: bool,
    pub always_scrape_classic_histograms: bool,
    pub extra_scrape_metrics: bool,
}

impl Default for GlobalConfig {
    fn default() -> GlobalConfig {
        GlobalConfig {
            scrape_interval: Duration::from_secs(60),
            scrape_timeout: Duration::from_secs(10),
            scrape_protocols: Vec::new(),
            evaluation_interval: Duration::from_secs(60),
            rule_query_offset: Duration(0),
            external_labels: BTreeMap::new(),
            query_log_file: String::new(),
            scrape_failure_log_file: String::new(),
            limits: ScrapeLimits::default(),
            metric_name_validation_scheme: "utf8".to_owned(),
            scrape_native_histograms: false,
            convert_classic_histograms_to_nhcb: false,
            always_scrape_classic_histograms: false,
            extra_scrape_metrics: false,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGlobal {
    #[serde(default)]
    scrape_interval: Option<Duration>,
    #[serde(default)]
    scrape_timeout: Option<Spanned<Duration>>,
    #[serde(default)]
    scrape_protocols: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    evaluation_interval: Option<Duration>,
    #[serde(default)]
    rule_query_offset: Option<Duration>,
    #[serde(default)]
    external_labels: Option<Spanned<BTreeMap<String, String>>>,
    #[serde(default)]
    query_log_file: Option<String>,
    #[serde(default)]
    scrape_failure_log_file: Option<String>,
    #[serde(default)]
    body_size_limit: Option<Size>,
    #[serde(default)]
    sample_limit: Option<u64>,
    #[serde(default)]
    label_limit: Option<u64>,
    #[serde(default)]
    label_name_length_limit: Option<u64>,
    #[serde(default)]
    label_value_length_limit: Option<u64>,
    #[serde(default)]
    target_limit: Option<u64>,
    #[serde(default)]
    keep_dropped_targets: Option<u64>,
    #[serde(default)]
    metric_name_validation_scheme: Option<Spanned<String>>,
    #[serde(default)]
    scrape_native_histograms: Option<bool>,
    #[serde(default)]
    convert_classic_histograms_to_nhcb: Option<bool>,
    #[serde(default)]
    always_scrape_classic_histograms: Option<bool>,
    #[serde(default)]
    extra_scrape_metrics: Option<bool>,
}

/// The exposition formats a scrape may ask for, by Prometheus's names.
pub(crate) const SCRAPE_PROTOCOLS: [&str; 5] = [
    "PrometheusProto",
    "OpenMetricsText0.0.1",
    "OpenMetricsText1.0.0",
    "PrometheusText0.0.4",
    "PrometheusText1.0.0",
];

/// Checks a `scrape_protocols` list: known names, no repeats.
pub(crate) fn check_scrape_protocols(list: &[String]) -> Result<(), String> {
    for (i, p) in list.iter().enumerate() {
        if !SCRAPE_PROTOCOLS.contains(&p.as_str()) {
            return Err(format!(
                "unknown scrape protocol {p:?}, supported: {}",
                SCRAPE_PROTOCOLS.join(", ")
            ));
        }
        if list[..i].contains(p) {
            return Err(format!("duplicated protocol in scrape_protocols: {p:?}"));
        }
    }
    Ok(())
}

pub(crate) fn check_validation_scheme(s: &str) -> Result<(), String> {
    match s {
        "utf8" | "legacy" => Ok(()),
        _ => Err(format!(
            "unknown metric_name_validation_scheme {s:?} (want utf8 or legacy)"
        )),
    }
}

impl RawGlobal {
    /// Applies the defaults and checks the section. A problem points at the value it is
    /// about; the caller names the section.
    pub(crate) fn resolve(self) -> Result<GlobalConfig, Problem> {
        let d = GlobalConfig::default();
        let scrape_interval = self.scrape_interval.unwrap_or(d.scrape_interval);
        let scrape_timeout = match self.scrape_timeout {
            Some(t) if t.value > scrape_interval => {
                return Err(Problem::at(
                    &t.referenced,
                    format!(
                        "scrape timeout {} greater than scrape interval {scrape_interval}",
                        t.value
                    ),
                ));
            }
            Some(t) => t.value,
            None => d.scrape_timeout.min(scrape_interval),
        };
        let external_labels = match self.external_labels {
            Some(labels) => {
                check_external_labels(&labels.value)
                    .map_err(|e| Problem::at(&labels.referenced, e))?;
                labels.value
            }
            None => BTreeMap::new(),
        };
        let scrape_protocols = match self.scrape_protocols {
            Some(p) => {
                check_scrape_protocols(&p.value).map_err(|e| Problem::at(&p.referenced, e))?;
                p.value
            }
            None => Vec::new(),
        };
        let scheme = match self.metric_name_validation_scheme {
            Some(s) => {
                check_validation_scheme(&s.value).map_err(|e| Problem::at(&s.referenced, e))?;
                s.value
            }
            None => d.metric_name_validation_scheme,
        };
        let limits = RawScrapeLimits {
            body_size_limit: self.body_size_limit,
            sample_limit: self.sample_limit,
            label_limit: self.label_limit,
            label_name_length_limit: self.label_name_length_limit,
            label_value_length_limit: self.label_value_length_limit,
            target_limit: self.target_limit,
            keep_dropped_targets: self.keep_dropped_targets,
        }
        .resolve(&d.limits);
        Ok(GlobalConfig {
            scrape_interval,
            scrape_timeout,
            scrape_protocols,
            evaluation_interval: self.evaluation_interval.unwrap_or(d.evaluation_interval),
            rule_query_offset: self.rule_query_offset.unwrap_or(d.rule_query_offset),
            external_labels,
            query_log_file: self.query_log_file.unwrap_or_default(),
            scrape_failure_log_file: self.scrape_failure_log_file.unwrap_or_default(),
            limits,
            metric_name_validation_scheme: scheme,
            scrape_native_histograms: self.scrape_native_histograms.unwrap_or(false),
            convert_classic_histograms_to_nhcb: self
                .convert_classic_histograms_to_nhcb
                .unwrap_or(false),
            always_scrape_classic_histograms: self
                .always_scrape_classic_histograms
                .unwrap_or(false),
            extra_scrape_metrics: self.extra_scrape_metrics.unwrap_or(false),
        })
    }
}

/// External labels: valid names, non-empty values.
fn check_external_labels(labels: &BTreeMap<String, String>) -> Result<(), String> {
    for (name, value) in labels {
        crate::check_label_name(name, "external_labels")?;
        if value.is_empty() {
            return Err(format!("external label {name:?} has an empty value"));
        }
    }
    Ok(())
}
