//! The `alerting` section: where alerts are sent (`alertmanagers`) and how they are
//! relabelled on the way (`alert_relabel_configs`).

use serde::Deserialize;

use crate::http::{HttpClientConfig, with_http_client_fields};
use crate::relabel::{RawRelabelConfig, resolve_all};
use crate::scrape::{Scheme, collect};
use crate::sd::{
    DnsSdConfig, FileSdConfig, HttpSdConfig, KubernetesSdConfig, RawDnsSdConfig, RawFileSdConfig,
    RawHttpSdConfig, RawKubernetesSdConfig, StaticConfig,
};
use crate::units::Duration;
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
    alert_relabel_configs: Option<Vec<RawRelabelConfig>>,
    #[serde(default)]
    alertmanagers: Option<Vec<RawAlertmanagerConfig>>,
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
    timeout: Option<Duration>,
    #[serde(default)]
    api_version: Option<String>,
    #[serde(default)]
    static_configs: Option<Vec<StaticConfig>>,
    #[serde(default)]
    file_sd_configs: Option<Vec<RawFileSdConfig>>,
    #[serde(default)]
    http_sd_configs: Option<Vec<RawHttpSdConfig>>,
    #[serde(default)]
    dns_sd_configs: Option<Vec<RawDnsSdConfig>>,
    #[serde(default)]
    kubernetes_sd_configs: Option<Vec<RawKubernetesSdConfig>>,
    #[serde(default)]
    relabel_configs: Option<Vec<RawRelabelConfig>>,
    #[serde(default)]
    alert_relabel_configs: Option<Vec<RawRelabelConfig>>,
}
}

impl RawAlertingConfig {
    pub(crate) fn resolve(self) -> Result<AlertingConfig, String> {
        let alertmanagers = self
            .alertmanagers
            .unwrap_or_default()
            .into_iter()
            .enumerate()
            .map(|(i, am)| am.resolve().map_err(|e| format!("alertmanagers[{i}]: {e}")))
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
    fn resolve(mut self) -> Result<AlertmanagerConfig, String> {
        let http_client = self.take_http_client().resolve()?;
        let api_version = self.api_version.unwrap_or_else(|| "v2".to_owned());
        if api_version != "v2" {
            return Err(format!(
                "expected Alertmanager api version to be one of [v2] but got {api_version}"
            ));
        }
        let timeout = self.timeout.unwrap_or(Duration::from_secs(10));
        if timeout.as_millis() <= 0 {
            return Err("timeout must be greater than 0".into());
        }
        let static_configs = self.static_configs.unwrap_or_default();
        for sc in &static_configs {
            if let Some(t) = sc.targets.iter().find(|t| t.contains('/')) {
                return Err(format!("static_configs: {t:?} is not a valid hostname"));
            }
        }
        Ok(AlertmanagerConfig {
            scheme: self.scheme.unwrap_or_default(),
            path_prefix: self.path_prefix.unwrap_or_default(),
            timeout,
            api_version,
            http_client,
            static_configs,
            file_sd_configs: collect(self.file_sd_configs, RawFileSdConfig::resolve)?,
            http_sd_configs: collect(self.http_sd_configs, RawHttpSdConfig::resolve)?,
            dns_sd_configs: collect(self.dns_sd_configs, RawDnsSdConfig::resolve)?,
            kubernetes_sd_configs: collect(
                self.kubernetes_sd_configs,
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
