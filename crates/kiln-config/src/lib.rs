//! The `prometheus.yml` schema: what `kiln server --config.file` and `kiln check config`
//! read.
//!
//! Loading is two steps, as in Prometheus. [`Config::parse`] deserializes the YAML with
//! every mapping closed (`deny_unknown_fields`), through [`yaml::from_str`], so a
//! misspelt key, a value of the wrong type or broken YAML is an error saying what is
//! wrong in the user's terms, at its line and column. Then defaults flow down (a scrape
//! config without `scrape_interval` takes the global one) and checks run that YAML
//! cannot express: unique job names, timeouts no longer than intervals, valid label
//! names, relabel rules Prometheus would accept. The values those checks look at keep
//! their place in the file ([`serde_saphyr::Spanned`]), so their errors point at the
//! value too, and also name where in the document it is
//! (`prometheus.yml:9:21: scrape_configs[2] (job "node"): ...`). Every error displays
//! as `<path>:<line>:<column>: <what is wrong>`.
//!
//! Sections Prometheus knows but Kiln does not implement yet (`storage`, `tracing`,
//! `otlp`, `runtime`) are accepted so existing files
//! load, and listed by [`Config::unapplied_sections`] so callers can say loudly that they
//! are not applied. Service discoveries Kiln does not have are errors, never ignored.
//!
//! The crate is pure: it reads the main file and nothing else. [`Config::load_file`]
//! makes relative paths relative to the file's directory; expanding `rule_files` and
//! `scrape_config_files` globs, and reading secrets from `*_file` fields, is the
//! caller's job, at the time it needs them (a reload reads them again).

mod alerting;
mod diff;
mod global;
mod http;
mod relabel;
pub use relabel::parse_relabel_configs;
mod remote;
mod render;
mod scrape;
mod sd;
mod secret;
mod units;
pub mod yaml;

use std::path::Path;

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::yaml::{Problem, YamlErrorKind};

pub use alerting::{AlertingConfig, AlertmanagerConfig};
pub use diff::{ConfigChanges, NamedChanges};
pub use global::{GlobalConfig, ScrapeLimits};
pub use http::{Authorization, BasicAuth, HttpClientConfig, TlsConfig};
pub use remote::{
    MetadataConfig, ProtobufMessage, QueueConfig, RemoteReadConfig, RemoteWriteConfig,
};
pub use scrape::{Scheme, ScrapeConfig};
pub use sd::{
    DnsRecordType, DnsSdConfig, FileSdConfig, HttpSdConfig, KubernetesAttachMetadata,
    KubernetesNamespaces, KubernetesRole, KubernetesSdConfig, KubernetesSelector, StaticConfig,
};
pub use secret::{SECRET_PLACEHOLDER, Secret, SecretUrl, URL_PASSWORD_PLACEHOLDER, redact_url};
pub use units::{Duration, Size};
pub use yaml::{Position, YamlError};

/// The exposition formats asked for, in order, when `scrape_protocols` is not set
/// (Prometheus's default without protobuf, which Kiln does not parse).
pub const DEFAULT_SCRAPE_PROTOCOLS: [&str; 4] = [
    "OpenMetricsText1.0.0",
    "OpenMetricsText0.0.1",
    "PrometheusText1.0.0",
    "PrometheusText0.0.4",
];

/// A configuration that could not be loaded. Every variant but `Read` displays as
/// `<path>:<line>:<column>: <what is wrong>`, the path as the caller gave it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// The YAML did not parse or did not fit the schema.
    #[error("{path}:{source}")]
    Syntax {
        path: String,
        #[source]
        source: YamlError,
    },
    /// The YAML fits the schema but breaks a rule of it; `position` is the value's.
    #[error("{path}:{position}: {message}")]
    Invalid {
        path: String,
        position: Position,
        /// Where in the document (`scrape_configs[2] (job "node")`) and what is wrong.
        message: String,
    },
}

/// A whole `prometheus.yml`, with defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub global: GlobalConfig,
    /// Globs of rule files, as written (relative ones are relative to the config file).
    pub rule_files: Vec<String>,
    /// Globs of files holding more scrape configs, as written.
    pub scrape_config_files: Vec<String>,
    pub scrape_configs: Vec<ScrapeConfig>,
    pub alerting: AlertingConfig,
    pub remote_write: Vec<RemoteWriteConfig>,
    pub remote_read: Vec<RemoteReadConfig>,
    unapplied: Vec<&'static str>,
}

/// The file as written: every field optional, so defaults can be told from values.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    global: Option<Spanned<global::RawGlobal>>,
    #[serde(default)]
    rule_files: Option<Vec<String>>,
    #[serde(default)]
    scrape_config_files: Option<Vec<String>>,
    #[serde(default)]
    scrape_configs: Option<Vec<Spanned<scrape::RawScrapeConfig>>>,
    #[serde(default)]
    alerting: Option<Spanned<alerting::RawAlertingConfig>>,
    #[serde(default)]
    remote_write: Option<Vec<Spanned<remote::RawRemoteWriteConfig>>>,
    #[serde(default)]
    remote_read: Option<Vec<Spanned<remote::RawRemoteReadConfig>>>,
    #[serde(default)]
    storage: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    tracing: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    otlp: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    runtime: Option<serde::de::IgnoredAny>,
}

impl Default for Config {
    /// What an empty file gives: global defaults, no scrape configs.
    fn default() -> Config {
        Config {
            global: GlobalConfig::default(),
            rule_files: Vec::new(),
            scrape_config_files: Vec::new(),
            scrape_configs: Vec::new(),
            alerting: AlertingConfig::default(),
            remote_write: Vec::new(),
            remote_read: Vec::new(),
            unapplied: Vec::new(),
        }
    }
}

impl Config {
    /// Reads and parses the file at `path`.
    pub fn load_file(path: &Path) -> Result<Config, ConfigError> {
        let text = yaml::read_file(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let mut config = Config::parse(&text, &path.display().to_string())?;
        if let Some(dir) = path.parent() {
            config.resolve_paths(dir);
        }
        Ok(config)
    }

    /// Makes every relative file path of the config (rule files, `file_sd_configs`
    /// files, `*_file` secrets, TLS files, kubeconfig) relative to `dir`, the config
    /// file's directory, as Prometheus does.
    pub fn resolve_paths(&mut self, dir: &Path) {
        for f in self
            .rule_files
            .iter_mut()
            .chain(self.scrape_config_files.iter_mut())
        {
            join_dir(dir, f);
        }
        for am in &mut self.alerting.alertmanagers {
            am.http_client.resolve_paths(dir);
            for fsd in &mut am.file_sd_configs {
                fsd.files.iter_mut().for_each(|f| join_dir(dir, f));
            }
            for hsd in &mut am.http_sd_configs {
                hsd.http_client.resolve_paths(dir);
            }
            for ksd in &mut am.kubernetes_sd_configs {
                ksd.http_client.resolve_paths(dir);
                join_dir(dir, &mut ksd.kubeconfig_file);
            }
        }
        for rw in &mut self.remote_write {
            rw.http_client.resolve_paths(dir);
        }
        for rr in &mut self.remote_read {
            rr.http_client.resolve_paths(dir);
        }
        for sc in &mut self.scrape_configs {
            sc.http_client.resolve_paths(dir);
            for fsd in &mut sc.file_sd_configs {
                fsd.files.iter_mut().for_each(|f| join_dir(dir, f));
            }
            for hsd in &mut sc.http_sd_configs {
                hsd.http_client.resolve_paths(dir);
            }
            for ksd in &mut sc.kubernetes_sd_configs {
                ksd.http_client.resolve_paths(dir);
                join_dir(dir, &mut ksd.kubeconfig_file);
            }
        }
    }

    /// Parses `text`; `path` names the file in errors.
    pub fn parse(text: &str, path: &str) -> Result<Config, ConfigError> {
        // An empty file (or one holding only comments) is a valid, empty config.
        let raw: RawConfig = if text.lines().all(|l| {
            let l = l.trim();
            l.is_empty() || l.starts_with('#')
        }) {
            RawConfig::default()
        } else {
            yaml::from_str(
                text,
                "a Prometheus configuration file is a mapping of sections \
                 (global:, scrape_configs:, ...)",
            )
            .map_err(|e| ConfigError::Syntax {
                path: path.to_owned(),
                source: explain_syntax_error(e),
            })?
        };
        raw.resolve().map_err(|p| ConfigError::Invalid {
            path: path.to_owned(),
            // Every problem is placed by the section it comes from; 1:1 is a fallback.
            position: p.position.unwrap_or(Position { line: 1, column: 1 }),
            message: p.message,
        })
    }

    /// Top-level sections present in the file that Kiln accepts but does not apply yet.
    pub fn unapplied_sections(&self) -> &[&'static str] {
        &self.unapplied
    }

    /// The scrape config for `job_name`.
    pub fn scrape_config(&self, job_name: &str) -> Option<&ScrapeConfig> {
        self.scrape_configs.iter().find(|s| s.job_name == job_name)
    }
}

impl RawConfig {
    /// Applies the defaults and checks what YAML cannot express. Stops at the first
    /// problem, as Prometheus does.
    fn resolve(self) -> Result<Config, Problem> {
        let global = match self.global {
            Some(g) => g
                .value
                .resolve()
                .map_err(|e| e.or_at(&g.referenced).within("global"))?,
            None => GlobalConfig::default(),
        };
        let mut scrape_configs: Vec<ScrapeConfig> = Vec::new();
        for (i, sc) in self
            .scrape_configs
            .unwrap_or_default()
            .into_iter()
            .enumerate()
        {
            let at = sc.referenced;
            let job_at = sc.value.job_name.as_ref().map(|j| j.referenced);
            let job = sc
                .value
                .job_name
                .as_ref()
                .map(|j| j.value.clone())
                .unwrap_or_default();
            let context = if job.is_empty() {
                format!("scrape_configs[{i}]")
            } else {
                format!("scrape_configs[{i}] (job {job:?})")
            };
            let sc = sc
                .value
                .resolve(&global)
                .map_err(|e| e.or_at(&at).within(&context))?;
            if let Some(prev) = scrape_configs
                .iter()
                .position(|p: &ScrapeConfig| p.job_name == sc.job_name)
            {
                return Err(Problem::at(
                    &job_at.unwrap_or(at),
                    format!(
                        "scrape_configs[{i}]: found multiple scrape configs with job name {:?} \
                         (the first is scrape_configs[{prev}])",
                        sc.job_name
                    ),
                ));
            }
            scrape_configs.push(sc);
        }
        let alerting = match self.alerting {
            Some(a) => a
                .value
                .resolve()
                .map_err(|e| e.or_at(&a.referenced).within("alerting"))?,
            None => AlertingConfig::default(),
        };
        let remote_write = remote::resolve_list(
            self.remote_write,
            "remote_write",
            remote::RawRemoteWriteConfig::resolve,
            |c| &c.name,
        )?;
        let remote_read = remote::resolve_list(
            self.remote_read,
            "remote_read",
            remote::RawRemoteReadConfig::resolve,
            |c| &c.name,
        )?;
        let sections = [
            ("storage", self.storage.is_some()),
            ("tracing", self.tracing.is_some()),
            ("otlp", self.otlp.is_some()),
            ("runtime", self.runtime.is_some()),
        ];
        Ok(Config {
            global,
            rule_files: self.rule_files.unwrap_or_default(),
            scrape_config_files: self.scrape_config_files.unwrap_or_default(),
            scrape_configs,
            alerting,
            remote_write,
            remote_read,
            unapplied: sections
                .iter()
                .filter(|(_, present)| *present)
                .map(|(name, _)| *name)
                .collect(),
        })
    }
}

/// Joins a non-empty relative `path` to `dir`.
pub(crate) fn join_dir(dir: &Path, path: &mut String) {
    if !path.is_empty() && Path::new(path.as_str()).is_relative() {
        *path = dir.join(path.as_str()).display().to_string();
    }
}

/// Service discoveries Prometheus 3 has and Kiln does not (its `<name>_sd_configs`).
const PROMETHEUS_ONLY_DISCOVERIES: &[&str] = &[
    "aws",
    "azure",
    "consul",
    "digitalocean",
    "docker",
    "dockerswarm",
    "ec2",
    "eureka",
    "gce",
    "hetzner",
    "ionos",
    "kuma",
    "lightsail",
    "linode",
    "marathon",
    "nerve",
    "nomad",
    "oci",
    "openstack",
    "outscale",
    "ovhcloud",
    "puppetdb",
    "scaleway",
    "serverset",
    "stackit",
    "triton",
    "uyuni",
    "vultr",
];

/// Says that an unknown field is a service discovery Prometheus has and Kiln does not,
/// which would otherwise read as a typo.
fn explain_syntax_error(mut e: YamlError) -> YamlError {
    if let YamlErrorKind::UnknownField(field) = &e.kind
        && field
            .strip_suffix("_sd_configs")
            .is_some_and(|sd| PROMETHEUS_ONLY_DISCOVERIES.contains(&sd))
    {
        e.message = format!(
            "{field} is a Prometheus service discovery that Kiln does not have (Kiln \
             supports static_configs, file_sd_configs, http_sd_configs, dns_sd_configs and \
             kubernetes_sd_configs)"
        );
    }
    e
}

/// Checks a label name by the classic rule, with a message naming where it was found.
fn check_label_name(name: &str, what: &str) -> Result<(), String> {
    if kiln_model::labels::is_valid_label_name(name) {
        Ok(())
    } else {
        Err(format!("{name:?} is not a valid label name in {what}"))
    }
}
