//! `kubernetes_sd_configs`: targets from the objects of a Kubernetes API server.
//!
//! Like Prometheus's informers, each needed kind of object (per namespace, or cluster
//! wide) has a watcher that lists it, then watches for changes from the list's resource
//! version, and lists again when the watch fails or the version is gone (410). The
//! watchers keep a shared [`objects::Cache`]; once every watcher has listed, each
//! change rebuilds the role's groups from the cache ([`roles`]) and publishes them.
//!
//! What each role watches:
//! - `node`: nodes. `service`: services. `ingress`: ingresses. `pod`: pods.
//! - `endpoints` / `endpointslice`: those, plus services and pods of the same
//!   namespaces (for the service and pod labels).
//! - `attach_metadata`: nodes (`node`) and namespaces (`namespace`) besides.
//!
//! A watcher that cannot reach the API server logs, waits (1 s doubling to 30 s) and
//! tries again; the targets it knew stay published meanwhile.

pub mod client;
pub mod objects;
pub mod roles;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kiln_config::{KubernetesRole, KubernetesSdConfig};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tracing::warn;

use crate::group::TargetGroup;
use crate::manager::Publisher;
use client::{ApiClient, Selectors, WatchEvent};
use objects::{
    Cache, EndpointSlice, Endpoints, Ingress, KubeObject, Namespace, Node, Pod, Service,
};
use roles::Attach;

pub struct KubernetesDiscovery {
    config: KubernetesSdConfig,
    client: ApiClient,
    /// Empty: all namespaces.
    namespaces: Vec<String>,
}

/// The state the watchers share with the publishing loop.
#[derive(Default)]
struct Shared {
    cache: Mutex<Cache>,
    changed: Notify,
    /// Watchers that have not finished their first list yet.
    unsynced: Mutex<usize>,
}

impl KubernetesDiscovery {
    pub fn new(config: KubernetesSdConfig) -> Result<KubernetesDiscovery, String> {
        let client = ApiClient::new(&config)?;
        let mut namespaces = config.namespaces.names.clone();
        if config.namespaces.own_namespace {
            namespaces.push(client::own_namespace()?);
        }
        namespaces.sort();
        namespaces.dedup();
        Ok(KubernetesDiscovery {
            config,
            client,
            namespaces,
        })
    }

    fn selectors(&self, role: KubernetesRole) -> Selectors {
        self.config
            .selectors
            .iter()
            .find(|s| s.role == role)
            .map(|s| Selectors {
                label: s.label.clone(),
                field: s.field.clone(),
            })
            .unwrap_or_default()
    }

    fn attach(&self) -> Attach {
        Attach {
            node: self.config.attach_metadata.node,
            namespace: self.config.attach_metadata.namespace,
        }
    }

    pub async fn run(self, publisher: Publisher) {
        let shared = Arc::new(Shared::default());
        let mut watchers = JoinSet::new();
        let role = self.config.role;
        let attach = self.attach();
        {
            // `selectors_of`: the role whose `selectors` entry filters the watched kind.
            let mut start = |spawn: fn(&Self, &Arc<Shared>, &mut JoinSet<()>, Selectors, bool),
                             selectors_of: Option<KubernetesRole>,
                             namespaced: bool| {
                let selectors = selectors_of.map(|r| self.selectors(r)).unwrap_or_default();
                spawn(&self, &shared, &mut watchers, selectors, namespaced);
            };
            use KubernetesRole as R;
            match role {
                R::Node => start(watch_kind::<Node>, Some(R::Node), false),
                R::Pod => start(watch_kind::<Pod>, Some(R::Pod), true),
                R::Service => start(watch_kind::<Service>, Some(R::Service), true),
                R::Ingress => start(watch_kind::<Ingress>, Some(R::Ingress), true),
                R::Endpoints | R::EndpointSlice => {
                    if role == R::Endpoints {
                        start(watch_kind::<Endpoints>, Some(R::Endpoints), true);
                    } else {
                        start(watch_kind::<EndpointSlice>, Some(R::EndpointSlice), true);
                    }
                    start(watch_kind::<Service>, Some(R::Service), true);
                    start(watch_kind::<Pod>, Some(R::Pod), true);
                }
            }
            if attach.node && role != R::Node {
                start(watch_kind::<Node>, Some(R::Node), false);
            }
            if attach.namespace {
                start(watch_kind::<Namespace>, None, false);
            }
        }
        loop {
            let notified = shared.changed.notified();
            let synced = *shared.unsynced.lock().unwrap_or_else(|e| e.into_inner()) == 0;
            if synced {
                let groups = {
                    let cache = shared.cache.lock().unwrap_or_else(|e| e.into_inner());
                    build_groups(role, &cache, attach)
                };
                publisher.publish(groups);
            }
            notified.await;
            // Let a burst of events settle into one rebuild.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn build_groups(role: KubernetesRole, cache: &Cache, attach: Attach) -> Vec<TargetGroup> {
    match role {
        KubernetesRole::Node => roles::node_groups(cache),
        KubernetesRole::Pod => roles::pod_groups(cache, attach),
        KubernetesRole::Service => roles::service_groups(cache, attach),
        KubernetesRole::Endpoints => roles::endpoints_groups(cache, attach),
        KubernetesRole::EndpointSlice => roles::endpointslice_groups(cache, attach),
        KubernetesRole::Ingress => roles::ingress_groups(cache, attach),
    }
}

/// Starts the watchers of kind `T`: one per configured namespace for namespaced kinds,
/// else one cluster-wide. (Selectors of other roles than `T`'s are not passed here.)
fn watch_kind<T: KubeObject>(
    d: &KubernetesDiscovery,
    shared: &Arc<Shared>,
    set: &mut JoinSet<()>,
    selectors: Selectors,
    namespaced: bool,
) {
    let scopes: Vec<Option<String>> = match (namespaced, T::NAMESPACED_PATH) {
        (true, Some(_)) if !d.namespaces.is_empty() => {
            d.namespaces.iter().cloned().map(Some).collect()
        }
        _ => vec![None],
    };
    for scope in scopes {
        let path = match (&scope, T::NAMESPACED_PATH) {
            (Some(ns), Some(p)) => p.replace("{ns}", ns),
            _ => T::ALL_PATH.to_owned(),
        };
        *shared.unsynced.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        set.spawn(run_watcher::<T>(
            d.client.clone(),
            path,
            scope,
            selectors.clone(),
            shared.clone(),
        ));
    }
}

/// Lists, then watches, forever; keeps `T`'s part of the cache for `scope`.
async fn run_watcher<T: KubeObject>(
    client: ApiClient,
    path: String,
    scope: Option<String>,
    selectors: Selectors,
    shared: Arc<Shared>,
) {
    let mut synced = false;
    let mut backoff = Duration::from_secs(1);
    loop {
        let list = match client.list::<T>(&path, &selectors).await {
            Ok(l) => l,
            Err(e) => {
                warn!(path, err = %e, "kubernetes_sd: list failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
                continue;
            }
        };
        backoff = Duration::from_secs(1);
        {
            let mut cache = shared.cache.lock().unwrap_or_else(|e| e.into_inner());
            let slot = T::slot(&mut cache);
            slot.retain(|(ns, _), _| scope.as_ref().is_some_and(|s| s != ns));
            for item in list.items {
                slot.insert(item.key(), item);
            }
        }
        if !synced {
            synced = true;
            *shared.unsynced.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
        }
        shared.changed.notify_one();
        let mut version = list.resource_version;
        // Watch until the stream breaks; then list again.
        loop {
            let mut stream = match client.watch(&path, &selectors, &version).await {
                Ok(s) => s,
                Err(e) => {
                    warn!(path, err = %e, "kubernetes_sd: watch failed; listing again");
                    tokio::time::sleep(backoff).await;
                    break;
                }
            };
            let relist = loop {
                match stream.next::<T>().await {
                    Ok(None) => break false,
                    Ok(Some(event)) => {
                        let mut cache = shared.cache.lock().unwrap_or_else(|e| e.into_inner());
                        let slot = T::slot(&mut cache);
                        match event {
                            WatchEvent::Added(o) | WatchEvent::Modified(o) => {
                                version = o.meta().resource_version.clone();
                                slot.insert(o.key(), o);
                            }
                            WatchEvent::Deleted(o) => {
                                version = o.meta().resource_version.clone();
                                slot.remove(&o.key());
                            }
                            WatchEvent::Bookmark(v) => {
                                version = v;
                                continue;
                            }
                            WatchEvent::Error { code, message } => {
                                if code != 410 {
                                    warn!(path, code, message, "kubernetes_sd: watch error");
                                }
                                break true;
                            }
                        }
                        drop(cache);
                        shared.changed.notify_one();
                    }
                    Err(e) => {
                        warn!(path, err = %e, "kubernetes_sd: watch broke off; listing again");
                        break true;
                    }
                }
            };
            if relist {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests;
