//! The `alerting` section: where alerts are sent (`alertmanagers`) and how they are
//! relabelled on the way (`alert_relabel_configs`).

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::http::{HttpClientConfig, with_http_client_fields};
use crate::relabel::{RawRelabelConfig, resolve_all};
use crate::scrape::{Scheme, collect};
use crate::sd::{
    DnsSdConfig, FileSdConfig, HttpSdConfig, KubernetesSdConfig, RawDnsSdConfig, RawFileSdConfig,
    RawHttpSdConfig, RawKubernetesSdConfig, RawStaticConfig, StaticConfig,
};
use crate::units::Duration;
use crate::yaml::Problem;
use kiln_model::relabel::RelabelConfig;

/// `alerting`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AlertingConfig {
    /// Applied to every alert before it is sent; an alert relabelled to nothing is
    /// dropped.
    pub alert_relabel_configs: Vec<RelabelConfig>,
    pub alertmanagers: Vec<AlertmanagerConfig>,
}

/// One `alertmanagers` entry: a set of Alertmanagers found by service discovery.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertmanagerConfig {
    pub scheme: Scheme,
    /// Prefix of the API path (`/alertmanager` for `.../alertmanager/api/v2/alerts`).
    pub path_prefix: String,
    /// Timeout of one POST. Default 10s.
    pub timeout: Duration,
    /// Only `v2` (Alertmanager's API v1 was removed in Alertmanager 0.27).
    pub api_version: String,
    pub http_client: HttpClientConfig,
    pub static_configs: Vec<StaticConfig>,
    pub file_sd_configs: Vec<FileSdConfig>,
    pub http_sd_configs: Vec<HttpSdConfig>,
    pub dns_sd_configs: Vec<DnsSdConfig>,
    pub kubernetes_sd_configs: Vec<KubernetesSdConfig>,
    /// Applied to each discovered Alertmanager (`__address__`, `__scheme__`,
    /// `__alerts_path__`, meta labels); one relabelled to nothing is not used.
    pub relabel_configs: Vec<RelabelConfig>,
    /// Applied to the alerts sent to these Alertmanagers only (after the global ones).
    pub alert_relabel_configs: Vec<RelabelConfig>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAlertingConfig {
    #[serde(default)]
    alert_relabel_configs: Option<Vec<Spanned<RawRelabelConfig>>>,
    #[serde(default)]
    alertmanagers: Option<Vec<Spanned<RawAlertmanagerConfig>>>,
}

with_http_client_fields! {
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAlertmanagerConfig {
    #[serde(default)]
    scheme: Option<Scheme>,
    #[serde(default)]
    path_prefix: Option<String>,
    #[serde(default)]
    timeout: Option<Spanned<Duration>>,
    #[serde(default)]
    api_version: Option<Spanned<String>>,
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
    alert_relabel_configs: Option<Vec<Spanned<RawRelabelConfig>>>,
}
}

impl RawAlertingConfig {
    pub(crate) fn resolve(self) -> Result<AlertingConfig, Problem> {
        let alertmanagers = self
            .alertmanagers
            .unwrap_or_default()
            .into_iter()
            .enumerate()
            .map(|(i, am)| {
                am.value.resolve().map_err(|e| {
                    e.or_at(&am.referenced)
                        .within(format!("alertmanagers[{i}]"))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(AlertingConfig {
            alert_relabel_configs: resolve_all(
                self.alert_relabel_configs,
                "alert_relabel_configs",
            )?,
            alertmanagers,
        })
    }
}

impl RawAlertmanagerConfig {
    fn resolve(mut self) -> Result<AlertmanagerConfig, Problem> {
        let http_client = self.take_http_client().resolve()?;
        let api_version = match self.api_version {
            Some(v) if v.value != "v2" => {
                return Err(Problem::at(
                    &v.referenced,
                    format!(
                        "expected Alertmanager api version to be one of [v2] but got {}",
                        v.value
                    ),
                ));
            }
            Some(v) => v.value,
            None => "v2".to_owned(),
        };
        let timeout = match self.timeout {
            Some(t) if t.value.as_millis() <= 0 => {
                return Err(Problem::at(&t.referenced, "timeout must be greater than 0"));
            }
            Some(t) => t.value,
            None => Duration::from_secs(10),
        };
        let static_configs = collect(
            self.static_configs,
            "static_configs",
            RawStaticConfig::resolve,
        )?;
        Ok(AlertmanagerConfig {
            scheme: self.scheme.unwrap_or_default(),
            path_prefix: self.path_prefix.unwrap_or_default(),
            timeout,
            api_version,
            http_client,
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
            alert_relabel_configs: resolve_all(
                self.alert_relabel_configs,
                "alert_relabel_configs",
            )?,
        })
    }
}
