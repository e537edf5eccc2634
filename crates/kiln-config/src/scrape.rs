//! `<scrape_config>`: one job, its targets and how to scrape them.

use std::collections::BTreeMap;

use kiln_model::relabel::RelabelConfig;
use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::global::{
    GlobalConfig, RawScrapeLimits, ScrapeLimits, check_scrape_protocols, check_validation_scheme,
};
use crate::http::{HttpClientConfig, with_http_client_fields};
use crate::relabel::{RawRelabelConfig, resolve_all};
use crate::sd::{
    DnsSdConfig, FileSdConfig, HttpSdConfig, KubernetesSdConfig, RawDnsSdConfig, RawFileSdConfig,
    RawHttpSdConfig, RawKubernetesSdConfig, RawStaticConfig, StaticConfig,
};
use crate::units::{Duration, Size};
use crate::yaml::Problem;

/// `http` or `https`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    #[default]
    Http,
    Https,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// A scrape config with the global defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub struct ScrapeConfig {
    pub job_name: String,
    pub scrape_interval: Duration,
    /// Never longer than `scrape_interval`.
    pub scrape_timeout: Duration,
    pub scrape_protocols: Vec<String>,
    pub fallback_scrape_protocol: String,
    /// Default `/metrics`.
    pub metrics_path: String,
    pub honor_labels: bool,
    /// Default true.
    pub honor_timestamps: bool,
    pub track_timestamps_staleness: bool,
    pub scheme: Scheme,
    /// URL query parameters, each possibly repeated (`match[]` for federation).
    pub params: BTreeMap<String, Vec<String>>,
    /// Default true: ask for gzip.
    pub enable_compression: bool,
    pub scrape_failure_log_file: String,
    pub http_client: HttpClientConfig,
    pub static_configs: Vec<StaticConfig>,
    pub file_sd_configs: Vec<FileSdConfig>,
    pub http_sd_configs: Vec<HttpSdConfig>,
    pub dns_sd_configs: Vec<DnsSdConfig>,
    pub kubernetes_sd_configs: Vec<KubernetesSdConfig>,
    pub relabel_configs: Vec<RelabelConfig>,
    pub metric_relabel_configs: Vec<RelabelConfig>,
    pub limits: ScrapeLimits,
    pub metric_name_validation_scheme: String,
    pub scrape_native_histograms: bool,
    pub convert_classic_histograms_to_nhcb: bool,
    pub always_scrape_classic_histograms: bool,
    pub extra_scrape_metrics: bool,
}

with_http_client_fields! {
/// A scrape config as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawScrapeConfig {
    #[serde(default)]
    pub(crate) job_name: Option<Spanned<String>>,
    #[serde(default)]
    scrape_interval: Option<Spanned<Duration>>,
    #[serde(default)]
    scrape_timeout: Option<Spanned<Duration>>,
    #[serde(default)]
    scrape_protocols: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    fallback_scrape_protocol: Option<Spanned<String>>,
    #[serde(default)]
    metrics_path: Option<Spanned<String>>,
    #[serde(default)]
    honor_labels: Option<bool>,
    #[serde(default)]
    honor_timestamps: Option<bool>,
    #[serde(default)]
    track_timestamps_staleness: Option<bool>,
    #[serde(default)]
    scheme: Option<Scheme>,
    #[serde(default)]
    params: Option<BTreeMap<String, Vec<String>>>,
    #[serde(default)]
    enable_compression: Option<bool>,
    #[serde(default)]
    scrape_failure_log_file: Option<String>,
    #[serde(default)]
    static_configs: Option<Vec<Spanned<RawStaticConfig>>>,
    #[serde(default)]
    file_sd_configs: Option<Vec<Spanned<RawFileSdConfig>>>,
    #[serde(default)]
    http_sd_configs: Option<Vec<Spanned<RawHttpSdConfig>>>,
    #[serde(default)]
    dns_sd_configs: Option<Vec<Spanned<RawDnsSdConfig>>>,
    #[serde(default)]
    kubernetes_sd_configs: Option<Vec<Spanned<RawKubernetesSdConfig>>>,
    #[serde(default)]
    relabel_configs: Option<Vec<Spanned<RawRelabelConfig>>>,
    #[serde(default)]
    metric_relabel_configs: Option<Vec<Spanned<RawRelabelConfig>>>,
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
    metric_name_escaping_scheme: Option<Spanned<String>>,
    // Native histograms are not stored yet; their tuning fields are accepted and unused.
    #[serde(default, rename = "native_histogram_bucket_limit")]
    _native_histogram_bucket_limit: Option<u64>,
    #[serde(default, rename = "native_histogram_min_bucket_factor")]
    _native_histogram_min_bucket_factor: Option<f64>,
    #[serde(default)]
    scrape_native_histograms: Option<bool>,
    #[serde(default)]
    convert_classic_histograms_to_nhcb: Option<bool>,
    #[serde(default)]
    always_scrape_classic_histograms: Option<bool>,
    #[serde(default)]
    extra_scrape_metrics: Option<bool>,
}
}

/// Resolves each of an optional list of raw configs, placing a problem at the failing
/// entry and naming its list (`file_sd_configs[1]`).
pub(crate) fn collect<R, T, E: Into<Problem>>(
    raw: Option<Vec<Spanned<R>>>,
    field: &str,
    resolve: impl Fn(R) -> Result<T, E>,
) -> Result<Vec<T>, Problem> {
    raw.unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            resolve(r.value).map_err(|e| {
                let mut e: Problem = e.into();
                // The discoveries' messages name their list; the index is added here.
                if let Some(rest) = e.message.strip_prefix(&format!("{field}: ")) {
                    e.message = rest.to_owned();
                }
                e.within(format!("{field}[{i}]")).or_at(&r.referenced)
            })
        })
        .collect()
}

/// Checks a setting written in the file, pointing a problem at it.
fn check_at<T>(
    value: &Option<Spanned<T>>,
    check: impl FnOnce(&T) -> Result<(), String>,
) -> Result<(), Problem> {
    match value {
        Some(v) => check(&v.value).map_err(|e| Problem::at(&v.referenced, e)),
        None => Ok(()),
    }
}

impl RawScrapeConfig {
    /// Applies `global`'s defaults and checks the result. A problem points at the value
    /// it is about when that was written; the caller adds the entry's place and name.
    pub(crate) fn resolve(mut self, global: &GlobalConfig) -> Result<ScrapeConfig, Problem> {
        let http_client = self.take_http_client();
        let job_name = self.job_name.take().map(|j| j.value).unwrap_or_default();
        if job_name.is_empty() {
            return Err("job_name is empty".into());
        }
        let scrape_interval = self
            .scrape_interval
            .as_ref()
            .map_or(global.scrape_interval, |s| s.value);
        let scrape_timeout = match &self.scrape_timeout {
            Some(t) => t.value,
            // Prometheus: an unset timeout is the global one, capped at the interval.
            None => global.scrape_timeout.min(scrape_interval),
        };
        if scrape_timeout > scrape_interval {
            let msg = format!(
                "scrape timeout {scrape_timeout} greater than scrape interval {scrape_interval}"
            );
            return Err(match &self.scrape_timeout {
                Some(t) => Problem::at(&t.referenced, msg),
                None => msg.into(),
            });
        }
        if scrape_interval.as_millis() <= 0 {
            let msg = "scrape interval must be greater than 0";
            return Err(match &self.scrape_interval {
                Some(i) => Problem::at(&i.referenced, msg),
                None => msg.into(),
            });
        }
        check_at(&self.scrape_protocols, |p| check_scrape_protocols(p))?;
        let scrape_protocols = self
            .scrape_protocols
            .map_or_else(|| global.scrape_protocols.clone(), |p| p.value);
        check_at(&self.fallback_scrape_protocol, |p| {
            check_scrape_protocols(std::slice::from_ref(p))
                .map_err(|e| format!("fallback_scrape_protocol: {e}"))
        })?;
        let fallback_scrape_protocol = self
            .fallback_scrape_protocol
            .map(|p| p.value)
            .unwrap_or_default();
        check_at(&self.metric_name_validation_scheme, |s| {
            check_validation_scheme(s)
        })?;
        let metric_name_validation_scheme = self
            .metric_name_validation_scheme
            .map_or_else(|| global.metric_name_validation_scheme.clone(), |s| s.value);
        check_at(&self.metric_name_escaping_scheme, |e| {
            if matches!(
                e.as_str(),
                "allow-utf-8" | "underscores" | "dots" | "values"
            ) {
                Ok(())
            } else {
                Err(format!(
                    "unknown metric_name_escaping_scheme {e:?} \
                     (want allow-utf-8, underscores, dots or values)"
                ))
            }
        })?;
        check_at(&self.metrics_path, |p| {
            if p.starts_with('/') {
                Ok(())
            } else {
                Err(format!("metrics_path {p:?} must start with '/'"))
            }
        })?;
        let metrics_path = self
            .metrics_path
            .map_or_else(|| "/metrics".to_owned(), |p| p.value);
        let static_configs = collect(
            self.static_configs,
            "static_configs",
            RawStaticConfig::resolve,
        )?;
        let limits = RawScrapeLimits {
            body_size_limit: self.body_size_limit,
            sample_limit: self.sample_limit,
            label_limit: self.label_limit,
            label_name_length_limit: self.label_name_length_limit,
            label_value_length_limit: self.label_value_length_limit,
            target_limit: self.target_limit,
            keep_dropped_targets: self.keep_dropped_targets,
        }
        .resolve(&global.limits);
        Ok(ScrapeConfig {
            scrape_interval,
            scrape_timeout,
            scrape_protocols,
            fallback_scrape_protocol,
            metrics_path,
            honor_labels: self.honor_labels.unwrap_or(false),
            honor_timestamps: self.honor_timestamps.unwrap_or(true),
            track_timestamps_staleness: self.track_timestamps_staleness.unwrap_or(false),
            scheme: self.scheme.unwrap_or_default(),
            params: self.params.unwrap_or_default(),
            enable_compression: self.enable_compression.unwrap_or(true),
            scrape_failure_log_file: self
                .scrape_failure_log_file
                .unwrap_or_else(|| global.scrape_failure_log_file.clone()),
            http_client: http_client.resolve()?,
            static_configs,
            file_sd_configs: collect(
                self.file_sd_configs,
                "file_sd_configs",
                RawFileSdConfig::resolve,
            )?,
            http_sd_configs: collect(
                self.http_sd_configs,
                "http_sd_configs",
                RawHttpSdConfig::resolve,
            )?,
            dns_sd_configs: collect(
                self.dns_sd_configs,
                "dns_sd_configs",
                RawDnsSdConfig::resolve,
            )?,
            kubernetes_sd_configs: collect(
                self.kubernetes_sd_configs,
                "kubernetes_sd_configs",
                RawKubernetesSdConfig::resolve,
            )?,
            relabel_configs: resolve_all(self.relabel_configs, "relabel_configs")?,
            metric_relabel_configs: resolve_all(
                self.metric_relabel_configs,
                "metric_relabel_configs",
            )?,
            limits,
            metric_name_validation_scheme,
            scrape_native_histograms: self
                .scrape_native_histograms
                .unwrap_or(global.scrape_native_histograms),
            convert_classic_histograms_to_nhcb: self
                .convert_classic_histograms_to_nhcb
                .unwrap_or(global.convert_classic_histograms_to_nhcb),
            always_scrape_classic_histograms: self
                .always_scrape_classic_histograms
                .unwrap_or(global.always_scrape_classic_histograms),
            extra_scrape_metrics: self
                .extra_scrape_metrics
                .unwrap_or(global.extra_scrape_metrics),
            job_name,
        })
    }
}
