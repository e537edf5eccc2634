//! One `alertmanagers` entry: the Alertmanagers its service discovery finds, and
//! POSTing batches to them.

use kiln_config::AlertmanagerConfig;
use kiln_discovery::TargetGroup;
use kiln_http_client::{HttpClient, error_chain};
use kiln_model::Labels;
use kiln_model::relabel::relabel;
use parking_lot::Mutex;

use super::{OutgoingAlert, batch_json};

/// The Alertmanagers of a set after relabelling: URLs in use and label sets dropped.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AlertmanagerStatus {
    pub active: Vec<String>,
    pub dropped: Vec<Labels>,
}

/// An `alertmanagers` entry in use.
pub struct AlertmanagerSet {
    pub config: AlertmanagerConfig,
    client: HttpClient,
    status: Mutex<AlertmanagerStatus>,
}

const USER_AGENT: &str = concat!("Kiln/", env!("CARGO_PKG_VERSION"));

impl AlertmanagerSet {
    pub fn new(config: AlertmanagerConfig) -> Result<AlertmanagerSet, String> {
        let client = HttpClient::new(&config.http_client, USER_AGENT).map_err(|e| e.to_string())?;
        Ok(AlertmanagerSet {
            config,
            client,
            status: Mutex::default(),
        })
    }

    /// The API path alerts are posted to: `path_prefix` + `/api/v2/alerts`.
    fn alerts_path(&self) -> String {
        let prefix = self.config.path_prefix.trim_end_matches('/');
        let prefix = if prefix.is_empty() || prefix.starts_with('/') {
            prefix.to_owned()
        } else {
            format!("/{prefix}")
        };
        format!("{prefix}/api/v2/alerts")
    }

    /// Takes the Alertmanagers of freshly discovered `groups`: each target gets
    /// `__scheme__` and `__alerts_path__`, then the set's `relabel_configs`.
    pub fn update(&self, groups: &[TargetGroup]) {
        let mut status = AlertmanagerStatus::default();
        let path = self.alerts_path();
        for g in groups {
            for t in &g.targets {
                let mut b = g.labels.to_builder();
                for l in t.iter() {
                    b.set(l.name, l.value);
                }
                b.set("__scheme__", self.config.scheme.as_str());
                b.set("__alerts_path__", &path);
                let discovered = b.build();
                match relabel(&discovered, &self.config.relabel_configs) {
                    Some(l) if l.get("__address__").is_some_and(|a| !a.is_empty()) => {
                        let url = format!(
                            "{}://{}{}",
                            l.get("__scheme__").unwrap_or("http"),
                            l.get("__address__").unwrap_or_default(),
                            l.get("__alerts_path__").unwrap_or(&path)
                        );
                        if !status.active.contains(&url) {
                            status.active.push(url);
                        }
                    }
                    _ => status.dropped.push(discovered),
                }
            }
        }
        *self.status.lock() = status;
    }

    pub fn status(&self) -> AlertmanagerStatus {
        self.status.lock().clone()
    }

    /// The batch as this set sends it (its own `alert_relabel_configs` applied), once
    /// per active Alertmanager URL.
    pub(super) fn targets_for(&self, batch: &[OutgoingAlert]) -> Vec<(String, Vec<OutgoingAlert>)> {
        let alerts: Vec<OutgoingAlert> = if self.config.alert_relabel_configs.is_empty() {
            batch.to_vec()
        } else {
            batch
                .iter()
                .filter_map(|a| {
                    let labels = relabel(&a.labels, &self.config.alert_relabel_configs)
                        .filter(|l| !l.is_empty())?;
                    Some(OutgoingAlert {
                        labels,
                        ..a.clone()
                    })
                })
                .collect()
        };
        if alerts.is_empty() {
            return Vec::new();
        }
        self.status()
            .active
            .into_iter()
            .map(|url| (url, alerts.clone()))
            .collect()
    }

    /// POSTs `alerts` to one Alertmanager; a 2xx answer is success.
    pub(super) async fn post(&self, url: &str, alerts: &[OutgoingAlert]) -> Result<(), String> {
        let req = self
            .client
            .request(reqwest::Method::POST, url)
            .map_err(|e| e.to_string())?
            .timeout(self.config.timeout.as_std())
            .header("Content-Type", "application/json")
            .body(batch_json(alerts));
        let resp = req.send().await.map_err(|e| error_chain(&e))?;
        if resp.status().is_success() {
            Ok(())
        } else {
            let status = resp.status();
            let body = resp.text().await.unwrap_or_default();
            Err(format!(
                "bad response status {status}: {}",
                body.chars().take(200).collect::<String>()
            ))
        }
    }
}
