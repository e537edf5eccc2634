//! Service-discovery configs: where a scrape config's targets come from.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::http::{HttpClientConfig, with_http_client_fields};
use crate::secret::{SecretUrl, UrlKind, check_url};
use crate::units::Duration;
use crate::yaml::Problem;

/// `static_configs` entry: fixed targets with common labels.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticConfig {
    #[serde(default)]
    pub targets: Vec<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// A `static_configs` entry as written: its parts keep their place for errors.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawStaticConfig {
    #[serde(default)]
    targets: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    labels: Option<Spanned<BTreeMap<String, String>>>,
}

impl RawStaticConfig {
    /// Checks label names, and addresses without a scheme or path (as Prometheus: only
    /// a `/` is refused here; an empty address fails when the target is populated).
    pub(crate) fn resolve(self) -> Result<StaticConfig, Problem> {
        let targets = match self.targets {
            Some(t) => {
                if let Some(bad) = t.value.iter().find(|a| a.contains('/')) {
                    return Err(Problem::at(
                        &t.referenced,
                        format!("{bad:?} is not a valid hostname"),
                    ));
                }
                t.value
            }
            None => Vec::new(),
        };
        let labels = match self.labels {
            Some(l) => {
                for name in l.value.keys() {
                    crate::check_label_name(name, "static_configs labels")
                        .map_err(|e| Problem::at(&l.referenced, e))?;
                }
                l.value
            }
            None => BTreeMap::new(),
        };
        Ok(StaticConfig { targets, labels })
    }
}

/// `file_sd_configs` entry: target groups read from JSON or YAML files, watched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSdConfig {
    /// Paths ending in `.json`, `.yml` or `.yaml`; the last segment may hold one `*`.
    pub files: Vec<String>,
    /// Re-read period, besides watching. Default 5m.
    pub refresh_interval: Duration,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFileSdConfig {
    #[serde(default)]
    files: Vec<String>,
    #[serde(default)]
    refresh_interval: Option<Duration>,
}

impl RawFileSdConfig {
    pub(crate) fn resolve(self) -> Result<FileSdConfig, String> {
        for f in &self.files {
            let ext_ok = [".json", ".yml", ".yaml"].iter().any(|e| f.ends_with(e));
            if !ext_ok {
                return Err(format!(
                    "file_sd_configs: path {f:?} is not valid for file discovery: \
                     it must end in .json, .yml or .yaml"
                ));
            }
            let last = f.rsplit('/').next().unwrap_or(f);
            if f.matches('*').count() > 1 || (f.contains('*') && !last.contains('*')) {
                return Err(format!(
                    "file_sd_configs: path {f:?}: only the last path segment may hold a \
                     single '*'"
                ));
            }
        }
        Ok(FileSdConfig {
            files: self.files,
            refresh_interval: self.refresh_interval.unwrap_or(Duration::from_secs(300)),
        })
    }
}

/// `http_sd_configs` entry: target groups fetched as JSON from a URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpSdConfig {
    /// Displays redacted: see [`SecretUrl`].
    pub url: SecretUrl,
    /// Default 60s.
    pub refresh_interval: Duration,
    pub http_client: HttpClientConfig,
}

with_http_client_fields! {
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(crate) struct RawHttpSdConfig {
        #[serde(default)]
        url: String,
        #[serde(default)]
        refresh_interval: Option<Duration>,
    }
}

impl RawHttpSdConfig {
    pub(crate) fn resolve(mut self) -> Result<HttpSdConfig, Problem> {
        let http_client = self.take_http_client();
        let url = check_url(&self.url, "http_sd_configs: url", UrlKind::Http)?;
        Ok(HttpSdConfig {
            url,
            refresh_interval: self.refresh_interval.unwrap_or(Duration::from_secs(60)),
            http_client: http_client
                .resolve()
                .map_err(|e| e.within("http_sd_configs"))?,
        })
    }
}

/// The DNS record type a [`DnsSdConfig`] asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum DnsRecordType {
    #[default]
    #[serde(rename = "SRV")]
    Srv,
    A,
    #[serde(rename = "AAAA")]
    Aaaa,
    #[serde(rename = "MX")]
    Mx,
    #[serde(rename = "NS")]
    Ns,
}

/// `dns_sd_configs` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsSdConfig {
    pub names: Vec<String>,
    pub record_type: DnsRecordType,
    /// Required for every type but SRV, whose records carry the port.
    pub port: u16,
    /// Default 30s.
    pub refresh_interval: Duration,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDnsSdConfig {
    #[serde(default)]
    names: Vec<String>,
    #[serde(default, rename = "type")]
    record_type: DnsRecordType,
    #[serde(default)]
    port: Option<u16>,
    #[serde(default)]
    refresh_interval: Option<Duration>,
}

impl RawDnsSdConfig {
    pub(crate) fn resolve(self) -> Result<DnsSdConfig, String> {
        if self.names.is_empty() {
            return Err(
                "dns_sd_configs: DNS-SD config must contain at least one SRV record name".into(),
            );
        }
        let port = match (self.record_type, self.port) {
            (DnsRecordType::Srv, _) => self.port.unwrap_or(0),
            (_, Some(p)) if p > 0 => p,
            (t, _) => {
                return Err(format!(
                    "dns_sd_configs: a port is required in DNS-SD configs for {t:?} records"
                ));
            }
        };
        Ok(DnsSdConfig {
            names: self.names,
            record_type: self.record_type,
            port,
            refresh_interval: self.refresh_interval.unwrap_or(Duration::from_secs(30)),
        })
    }
}

/// The kind of Kubernetes object a [`KubernetesSdConfig`] turns into targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KubernetesRole {
    Node,
    Pod,
    Service,
    Endpoints,
    EndpointSlice,
    Ingress,
}

/// `namespaces` of a Kubernetes SD config.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesNamespaces {
    #[serde(default)]
    pub own_namespace: bool,
    #[serde(default)]
    pub names: Vec<String>,
}

/// One entry of `selectors`: label and field selectors for one role's objects.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesSelector {
    pub role: KubernetesRole,
    #[serde(default)]
    pub label: String,
    #[serde(default)]
    pub field: String,
}

/// `attach_metadata` of a Kubernetes SD config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesAttachMetadata {
    #[serde(default)]
    pub node: bool,
    #[serde(default)]
    pub namespace: bool,
    #[serde(default)]
    pub deployment: bool,
    #[serde(default)]
    pub job: bool,
    #[serde(default)]
    pub cronjob: bool,
}

/// `kubernetes_sd_configs` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubernetesSdConfig {
    pub role: KubernetesRole,
    /// Empty means in-cluster configuration (service account) or `kubeconfig_file`.
    /// Displays redacted: see [`SecretUrl`].
    pub api_server: SecretUrl,
    pub kubeconfig_file: String,
    pub namespaces: KubernetesNamespaces,
    pub selectors: Vec<KubernetesSelector>,
    pub attach_metadata: KubernetesAttachMetadata,
    pub http_client: HttpClientConfig,
}

with_http_client_fields! {
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawKubernetesSdConfig {
    #[serde(default)]
    role: Option<KubernetesRole>,
    #[serde(default)]
    api_server: String,
    #[serde(default)]
    kubeconfig_file: String,
    #[serde(default)]
    namespaces: KubernetesNamespaces,
    #[serde(default)]
    selectors: Vec<KubernetesSelector>,
    #[serde(default)]
    attach_metadata: KubernetesAttachMetadata,
}
}

impl RawKubernetesSdConfig {
    pub(crate) fn resolve(mut self) -> Result<KubernetesSdConfig, Problem> {
        let http_client = self.take_http_client();
        let role = self
            .role
            .ok_or_else(|| Problem::from("kubernetes_sd_configs: role missing (one of: pod, service, endpoints, endpointslice, node, ingress)"))?;
        if !self.api_server.is_empty() && !self.kubeconfig_file.is_empty() {
            return Err(Problem::from(
                "kubernetes_sd_configs: cannot use 'kubeconfig_file' and 'api_server' simultaneously",
            ));
        }
        for sel in &self.selectors {
            let allowed = match role {
                KubernetesRole::Endpoints | KubernetesRole::EndpointSlice => matches!(
                    sel.role,
                    KubernetesRole::Pod
                        | KubernetesRole::Service
                        | KubernetesRole::Endpoints
                        | KubernetesRole::EndpointSlice
                ),
                _ => sel.role == role,
            };
            if !allowed {
                return Err(format!(
                    "kubernetes_sd_configs: {:?} role supports only its own selectors, not {:?}",
                    role, sel.role
                )
                .into());
            }
        }
        let api_server = if self.api_server.is_empty() {
            SecretUrl::default()
        } else {
            check_url(
                &self.api_server,
                "kubernetes_sd_configs: api_server",
                UrlKind::Http,
            )?
        };
        Ok(KubernetesSdConfig {
            role,
            api_server,
            kubeconfig_file: self.kubeconfig_file,
            namespaces: self.namespaces,
            selectors: self.selectors,
            attach_metadata: self.attach_metadata,
            http_client: http_client
                .resolve()
                .map_err(|e| e.within("kubernetes_sd_configs"))?,
        })
    }
}
