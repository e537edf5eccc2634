//! The scrape manager: one loop per target of every scrape config, started, kept or
//! stopped as the configuration changes.
//!
//! Applying a configuration keeps the loop of every target whose scrape config and
//! labels are unchanged (its schedule and staleness tracking go on undisturbed), stops
//! the loops of targets that are gone or changed (their series get staleness markers)
//! and starts the new ones. Target groups come from `kiln-discovery`: the caller passes
//! the current groups of every job with the config, and again whenever discovery
//! publishes a change ([`ScrapeManager::apply_groups`]).

use std::collections::HashMap;
use std::sync::Arc;

use kiln_config::{Config, HttpClientConfig, ScrapeConfig};
use kiln_http_client::HttpClient;
use kiln_model::Labels;
use kiln_storage::Appendable;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use crate::body_pool::BodyBufferPool;
use crate::scrape_loop::{LoopControl, LoopShared, run_scrape_loop};
use crate::status::{SharedStatus, TargetsView};
use crate::target::{Target, TargetGroup, populate_targets};

struct RunningLoop {
    config: Arc<ScrapeConfig>,
    target: Target,
    status: SharedStatus,
    stop: watch::Sender<LoopControl>,
    handle: JoinHandle<()>,
}

/// Runs the scrape loops. Must be used inside a tokio runtime.
pub struct ScrapeManager {
    storage: Arc<dyn Appendable>,
    config: Arc<Config>,
    /// One client per job, rebuilt when the job's `<http_config>` changes.
    clients: HashMap<String, (HttpClientConfig, HttpClient)>,
    loops: HashMap<(String, Labels), RunningLoop>,
    view: TargetsView,
    /// Body buffers the loops borrow for one scrape at a time.
    buffers: Arc<BodyBufferPool>,
}

const USER_AGENT: &str = concat!("Kiln/", env!("CARGO_PKG_VERSION"));

impl ScrapeManager {
    pub fn new(storage: Arc<dyn Appendable>) -> ScrapeManager {
        ScrapeManager {
            storage,
            config: Arc::new(Config::default()),
            clients: HashMap::new(),
            loops: HashMap::new(),
            view: TargetsView::default(),
            buffers: Arc::new(BodyBufferPool::new()),
        }
    }

    /// Brings the running loops in line with `config` and the jobs' target groups.
    pub async fn apply(&mut self, config: &Config, groups: &HashMap<String, Vec<TargetGroup>>) {
        self.config = Arc::new(config.clone());
        self.apply_groups(groups).await;
    }

    /// Brings the running loops in line with new target groups under the current config.
    pub async fn apply_groups(&mut self, groups: &HashMap<String, Vec<TargetGroup>>) {
        let config = self.config.clone();
        let mut wanted: HashMap<(String, Labels), (Arc<ScrapeConfig>, Target)> = HashMap::new();
        let mut dropped = Vec::new();
        let mut dropped_counts = Vec::new();
        self.clients
            .retain(|job, _| config.scrape_config(job).is_some());
        for sc in &config.scrape_configs {
            if !self.ensure_client(sc) {
                continue;
            }
            let job_groups = groups.get(&sc.job_name).map_or(&[][..], |g| g.as_slice());
            let populated = populate_targets(sc, job_groups);
            for (labels, e) in &populated.errors {
                warn!(job = %sc.job_name, target = %labels, err = %e, "skipping target");
            }
            // keep_dropped_targets: how many dropped targets the targets API keeps per
            // job (0: all).
            let keep = match sc.limits.keep_dropped_targets {
                0 => usize::MAX,
                n => usize::try_from(n).unwrap_or(usize::MAX),
            };
            if !populated.dropped.is_empty() {
                dropped_counts.push((sc.job_name.clone(), populated.dropped.len()));
            }
            dropped.extend(
                populated
                    .dropped
                    .into_iter()
                    .take(keep)
                    .map(|l| (sc.job_name.clone(), l)),
            );
            let mut active = populated.active;
            let limit = sc.limits.target_limit;
            if limit > 0 && active.len() as u64 > limit {
                warn!(
                    job = %sc.job_name,
                    targets = active.len(),
                    limit,
                    "target_limit exceeded: no target of this job is scraped"
                );
                active.clear();
            }
            let sc = Arc::new(sc.clone());
            for t in active {
                wanted.insert((sc.job_name.clone(), t.labels().clone()), (sc.clone(), t));
            }
        }
        // Stop what is gone or changed.
        let stale: Vec<(String, Labels)> = self
            .loops
            .iter()
            .filter(|(key, running)| {
                wanted
                    .get(*key)
                    .is_none_or(|(sc, _)| **sc != *running.config)
            })
            .map(|(key, _)| key.clone())
            .collect();
        for key in stale {
            if let Some(running) = self.loops.remove(&key) {
                stop_loop(running, LoopControl::Stop).await;
            }
        }
        // Start what is new.
        let mut started = 0;
        for (key, (sc, target)) in wanted {
            if self.loops.contains_key(&key) {
                continue;
            }
            let (stop, stop_rx) = watch::channel(LoopControl::Run);
            let status = SharedStatus::default();
            let Some((_, client)) = self.clients.get(&sc.job_name) else {
                continue;
            };
            let handle = tokio::spawn(run_scrape_loop(
                client.clone(),
                sc.clone(),
                target.clone(),
                self.storage.clone(),
                status.clone(),
                LoopShared {
                    buffers: self.buffers.clone(),
                    rejections: self.view.rejections.clone(),
                },
                stop_rx,
            ));
            self.loops.insert(
                key,
                RunningLoop {
                    config: sc,
                    target,
                    status,
                    stop,
                    handle,
                },
            );
            started += 1;
        }
        // Discovery changes land here every few seconds in a busy cluster: detail, not
        // news (reloads say which pools changed).
        debug!(
            targets = self.loops.len(),
            started, "Scrape targets applied"
        );
        self.publish(dropped, dropped_counts);
    }

    /// Makes sure the job has a client for its `<http_config>`; false (logged) when the
    /// config cannot make one (a missing CA file, say): the job is not scraped.
    fn ensure_client(&mut self, sc: &ScrapeConfig) -> bool {
        if let Some((cfg, _)) = self.clients.get(&sc.job_name)
            && *cfg == sc.http_client
        {
            return true;
        }
        match HttpClient::new(&sc.http_client, USER_AGENT) {
            Ok(client) => {
                self.clients
                    .insert(sc.job_name.clone(), (sc.http_client.clone(), client));
                true
            }
            Err(e) => {
                warn!(job = %sc.job_name, err = %e, "cannot create the job's HTTP client; its targets are not scraped");
                self.clients.remove(&sc.job_name);
                false
            }
        }
    }

    /// A handle on the targets for the targets API.
    pub fn view(&self) -> TargetsView {
        self.view.clone()
    }

    fn publish(&self, dropped: Vec<(String, Labels)>, dropped_counts: Vec<(String, usize)>) {
        let mut state = self.view.state.write().unwrap_or_else(|e| e.into_inner());
        state.active = self
            .loops
            .iter()
            .map(|((pool, _), l)| (pool.clone(), l.target.clone(), l.status.clone()))
            .collect();
        state.dropped = dropped;
        state.dropped_counts = dropped_counts;
    }

    /// Stops every loop, writing their staleness markers.
    /// Stops every loop for shutdown: no staleness markers (see [`LoopControl`]).
    pub async fn stop_all(&mut self) {
        for (_, running) in self.loops.drain() {
            stop_loop(running, LoopControl::Shutdown).await;
        }
        self.publish(Vec::new(), Vec::new());
    }
}

async fn stop_loop(running: RunningLoop, how: LoopControl) {
    let _ = running.stop.send(how);
    if let Err(e) = running.handle.await {
        warn!(url = running.target.url(), err = %e, "scrape loop ended abnormally");
    }
}
