//! Runs the providers of every job and collects their target groups.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use kiln_config::{
    DnsSdConfig, FileSdConfig, HttpSdConfig, KubernetesSdConfig, ScrapeConfig, StaticConfig,
};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tracing::warn;

use crate::dns::DnsDiscovery;
use crate::file::FileDiscovery;
use crate::group::TargetGroup;
use crate::http::HttpDiscovery;
use crate::kubernetes::KubernetesDiscovery;

/// The discovery part of a scrape config (or, later, of an Alertmanager config).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DiscoveryConfigs {
    pub static_configs: Vec<StaticConfig>,
    pub file_sd_configs: Vec<FileSdConfig>,
    pub http_sd_configs: Vec<HttpSdConfig>,
    pub dns_sd_configs: Vec<DnsSdConfig>,
    pub kubernetes_sd_configs: Vec<KubernetesSdConfig>,
}

impl DiscoveryConfigs {
    /// The discoveries of an `alerting.alertmanagers` entry.
    pub fn of_alertmanager_config(am: &kiln_config::AlertmanagerConfig) -> DiscoveryConfigs {
        DiscoveryConfigs {
            static_configs: am.static_configs.clone(),
            file_sd_configs: am.file_sd_configs.clone(),
            http_sd_configs: am.http_sd_configs.clone(),
            dns_sd_configs: am.dns_sd_configs.clone(),
            kubernetes_sd_configs: am.kubernetes_sd_configs.clone(),
        }
    }

    pub fn of_scrape_config(sc: &ScrapeConfig) -> DiscoveryConfigs {
        DiscoveryConfigs {
            static_configs: sc.static_configs.clone(),
            file_sd_configs: sc.file_sd_configs.clone(),
            http_sd_configs: sc.http_sd_configs.clone(),
            dns_sd_configs: sc.dns_sd_configs.clone(),
            kubernetes_sd_configs: sc.kubernetes_sd_configs.clone(),
        }
    }
}

#[derive(Default)]
struct Shared {
    /// Latest groups per provider slot; `None` until the provider's first publication.
    /// A slot is removed when its provider stops, so late publications are dropped.
    slots: Mutex<HashMap<u64, Option<Vec<TargetGroup>>>>,
    changed: Notify,
}

/// A provider's handle for publishing its current target groups.
#[derive(Clone)]
pub struct Publisher {
    slot: u64,
    shared: Arc<Shared>,
}

impl Publisher {
    /// Replaces this provider's groups with `groups` and wakes the manager's user.
    pub fn publish(&self, groups: Vec<TargetGroup>) {
        let mut slots = self.shared.slots.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = slots.get_mut(&self.slot) {
            if slot.as_ref() == Some(&groups) {
                return;
            }
            *slot = Some(groups);
            drop(slots);
            self.shared.changed.notify_one();
        }
    }

    /// A publisher whose groups land in a slot of its own, for tests of providers.
    #[cfg(test)]
    pub(crate) fn for_test() -> (Publisher, PublishedGroups) {
        let shared = Arc::new(Shared::default());
        shared
            .slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(0, None);
        (
            Publisher {
                slot: 0,
                shared: shared.clone(),
            },
            PublishedGroups(shared),
        )
    }
}

/// Reads what a [`Publisher::for_test`] publisher published.
#[cfg(test)]
pub(crate) struct PublishedGroups(Arc<Shared>);

#[cfg(test)]
impl PublishedGroups {
    /// Waits (at most 10 s, then panics) until the provider has published groups that
    /// `wanted` accepts.
    pub(crate) async fn next_where(
        &self,
        wanted: impl FnMut(&[TargetGroup]) -> bool,
    ) -> Vec<TargetGroup> {
        tokio::time::timeout(std::time::Duration::from_secs(10), self.wait(wanted))
            .await
            .expect("the provider did not publish the expected groups within 10 s")
    }

    async fn wait(&self, mut wanted: impl FnMut(&[TargetGroup]) -> bool) -> Vec<TargetGroup> {
        loop {
            let notified = self.0.changed.notified();
            let current = self
                .0
                .slots
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&0)
                .cloned()
                .flatten();
            if let Some(groups) = current
                && wanted(&groups)
            {
                return groups;
            }
            notified.await;
        }
    }
}

/// Waits for providers' publications; see [`DiscoveryManager::watcher`].
pub struct ChangeWatcher(Arc<Shared>);

impl ChangeWatcher {
    /// Completes when some provider published a change since the last call returned
    /// (a change before the first call counts).
    pub async fn changed(&self) {
        self.0.changed.notified().await;
    }
}

struct JobProviders {
    configs: DiscoveryConfigs,
    static_groups: Vec<TargetGroup>,
    providers: Vec<(u64, JoinHandle<()>)>,
}

/// Runs the providers of every job. Must be used inside a tokio runtime.
pub struct DiscoveryManager {
    shared: Arc<Shared>,
    jobs: HashMap<String, JobProviders>,
    next_slot: u64,
}

impl Default for DiscoveryManager {
    fn default() -> DiscoveryManager {
        DiscoveryManager::new()
    }
}

impl DiscoveryManager {
    pub fn new() -> DiscoveryManager {
        DiscoveryManager {
            shared: Arc::new(Shared::default()),
            jobs: HashMap::new(),
            next_slot: 1,
        }
    }

    /// Runs the providers of `jobs`: those of a job whose configs are unchanged keep
    /// running (and keep their groups); the others are stopped and started anew.
    pub fn apply(&mut self, jobs: Vec<(String, DiscoveryConfigs)>) {
        let mut old = std::mem::take(&mut self.jobs);
        for (job, configs) in jobs {
            if let Some(running) = old.remove(&job) {
                if running.configs == configs {
                    self.jobs.insert(job, running);
                    continue;
                }
                self.stop(running);
            }
            let providers = self.start(&job, &configs);
            let static_groups = configs
                .static_configs
                .iter()
                .enumerate()
                .map(|(i, s)| TargetGroup::from_static(i, s))
                .collect();
            self.jobs.insert(
                job,
                JobProviders {
                    configs,
                    static_groups,
                    providers,
                },
            );
        }
        for (_, running) in old {
            self.stop(running);
        }
    }

    fn start(&mut self, job: &str, configs: &DiscoveryConfigs) -> Vec<(u64, JoinHandle<()>)> {
        let mut providers = Vec::new();
        let mut spawn = |run: ProviderFuture| {
            let slot = self.next_slot;
            self.next_slot += 1;
            self.shared
                .slots
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(slot, None);
            let publisher = Publisher {
                slot,
                shared: self.shared.clone(),
            };
            providers.push((slot, tokio::spawn(run(publisher))));
        };
        for c in &configs.file_sd_configs {
            let d = FileDiscovery::new(c.clone());
            spawn(Box::new(move |p| Box::pin(d.run(p))));
        }
        for c in &configs.http_sd_configs {
            match HttpDiscovery::new(c.clone()) {
                Ok(d) => spawn(Box::new(move |p| Box::pin(d.run(p)))),
                Err(e) => warn!(job, err = %e, "http_sd_configs: cannot start discovery"),
            }
        }
        for c in &configs.dns_sd_configs {
            match DnsDiscovery::new(c.clone()) {
                Ok(d) => spawn(Box::new(move |p| Box::pin(d.run(p)))),
                Err(e) => warn!(job, err = %e, "dns_sd_configs: cannot start discovery"),
            }
        }
        for c in &configs.kubernetes_sd_configs {
            match KubernetesDiscovery::new(c.clone()) {
                Ok(d) => spawn(Box::new(move |p| Box::pin(d.run(p)))),
                Err(e) => warn!(job, err = %e, "kubernetes_sd_configs: cannot start discovery"),
            }
        }
        providers
    }

    fn stop(&self, running: JobProviders) {
        let mut slots = self.shared.slots.lock().unwrap_or_else(|e| e.into_inner());
        for (slot, handle) in running.providers {
            handle.abort();
            slots.remove(&slot);
        }
    }

    /// The current groups of every job: static ones first, then each provider's in
    /// config order.
    pub fn groups(&self) -> HashMap<String, Vec<TargetGroup>> {
        let slots = self.shared.slots.lock().unwrap_or_else(|e| e.into_inner());
        self.jobs
            .iter()
            .map(|(job, running)| {
                let mut groups = running.static_groups.clone();
                for (slot, _) in &running.providers {
                    if let Some(Some(g)) = slots.get(slot) {
                        groups.extend(g.iter().cloned());
                    }
                }
                (job.clone(), groups)
            })
            .collect()
    }

    /// A handle that waits for changes without borrowing the manager.
    pub fn watcher(&self) -> ChangeWatcher {
        ChangeWatcher(self.shared.clone())
    }

    /// Stops every provider.
    pub fn stop_all(&mut self) {
        for (_, running) in std::mem::take(&mut self.jobs) {
            self.stop(running);
        }
    }
}

impl Drop for DiscoveryManager {
    fn drop(&mut self) {
        self.stop_all();
    }
}

type ProviderFuture = Box<
    dyn FnOnce(Publisher) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> + Send,
>;
