//! The rule manager: one task per group, evaluating it on its interval at aligned
//! timestamps, and reloads that keep unchanged groups running.
//!
//! Evaluation timestamps follow Prometheus: a group with interval `i` is evaluated at
//! `k·i + offset`, where `offset` is a hash of its file and name modulo `i`, so groups
//! spread over the interval and a group's timestamps stay on one grid across restarts.
//! An evaluation that overruns its slot skips the missed ones (counted as missed
//! iterations) rather than queueing them.
//!
//! On reload (rule files re-read, [`RuleManager::apply`]):
//! - a group whose definition did not change keeps running untouched;
//! - a changed group is restarted and takes over the alerts and staleness bookkeeping
//!   of the rules it still has;
//! - a removed group is stopped and its series get staleness markers.
//!
//! If any rule file fails to load, nothing changes (Prometheus applies rule files only
//! when all are valid).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kiln_promql::Engine;
use kiln_storage::{Appendable, Queryable};
use parking_lot::{Mutex, RwLock};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::eval::EvalEnv;
use crate::file::{RuleFileError, load_rule_files};
use crate::group::{Group, RestoreOptions};

/// What the manager evaluates against.
#[derive(Clone)]
pub struct RuleManagerOptions {
    pub engine: Engine,
    pub queryable: Arc<dyn Queryable>,
    pub appendable: Arc<dyn Appendable>,
    pub restore: RestoreOptions,
    /// `--web.external-url`, for templates and alerts' generator URLs.
    pub external_url: String,
    /// Where firing and resolved alerts go after each evaluation.
    pub notifier: Option<Arc<crate::notify::Notifier>>,
}

/// The settings of the configuration that rules use.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RuleSettings {
    /// `rule_files` patterns.
    pub rule_files: Vec<String>,
    /// `global.evaluation_interval`, ms.
    pub evaluation_interval_ms: i64,
    /// `global.rule_query_offset`, ms.
    pub query_offset_ms: i64,
    /// `global.external_labels`.
    pub external_labels: BTreeMap<String, String>,
}

impl RuleSettings {
    pub fn of_config(config: &kiln_config::Config) -> RuleSettings {
        RuleSettings {
            rule_files: config.rule_files.clone(),
            evaluation_interval_ms: config.global.evaluation_interval.as_millis(),
            query_offset_ms: config.global.rule_query_offset.as_millis(),
            external_labels: config.global.external_labels.clone(),
        }
    }
}

/// What one [`RuleManager::apply`] did, for the reload's log line. Groups are named
/// `file;group`, as Prometheus keys them; lists are in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupChanges {
    /// Groups that were not running before.
    pub added: Vec<String>,
    /// Groups stopped because their file or name is gone.
    pub removed: Vec<String>,
    /// Groups restarted because their definition changed.
    pub changed: Vec<String>,
    /// Groups running now.
    pub groups: usize,
    /// Rules in them.
    pub rules: usize,
    /// Rule files they come from.
    pub files: usize,
}

impl GroupChanges {
    /// Whether the running groups are exactly those of before.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

/// A group shared between its task and readers (the API, `/metrics`).
///
/// Readers never wait for an evaluation: the task holds the group's lock for a whole
/// evaluation (which can take as long as its queries), so readers get instead the
/// state the last completed evaluation published, an `Arc` they clone under a lock
/// held only for that clone. Lock order: `state`, then `published`.
#[derive(Clone)]
pub struct SharedGroup {
    /// The group itself: taken by its task for each evaluation, and by the manager
    /// while the task is stopped (reloads). Readers never take it.
    state: Arc<Mutex<Group>>,
    /// A copy of the group as it was after its last evaluation (or start), without the
    /// evaluation's private bookkeeping; replaced whole, never changed in place.
    published: Arc<RwLock<Arc<Group>>>,
}

impl SharedGroup {
    fn new(group: Group) -> SharedGroup {
        let published = Arc::new(RwLock::new(Arc::new(group.for_readers())));
        SharedGroup {
            state: Arc::new(Mutex::new(group)),
            published,
        }
    }

    /// The group as its last completed evaluation left it; cheap, and never waits for
    /// an evaluation in progress.
    pub fn snapshot(&self) -> Arc<Group> {
        self.published.read().clone()
    }

    /// The group itself, for its task and the manager.
    fn lock(&self) -> parking_lot::MutexGuard<'_, Group> {
        self.state.lock()
    }

    /// Makes `group` (the locked state) what readers see.
    fn publish(&self, group: &Group) {
        let copy = Arc::new(group.for_readers());
        *self.published.write() = copy;
    }
}

/// The running groups, for readers. Cloning shares the view.
#[derive(Clone, Default)]
pub struct RulesView {
    groups: Arc<RwLock<Vec<SharedGroup>>>,
}

impl RulesView {
    /// The groups in file order.
    pub fn groups(&self) -> Vec<SharedGroup> {
        self.groups.read().clone()
    }
}

struct RunningGroup {
    group: SharedGroup,
    stop: watch::Sender<bool>,
    handle: JoinHandle<()>,
}

/// Runs rule groups. Must be used inside a tokio runtime.
pub struct RuleManager {
    opts: Arc<RuleManagerOptions>,
    external_labels: Arc<RwLock<BTreeMap<String, String>>>,
    running: Vec<RunningGroup>,
    view: RulesView,
    /// Whether groups started by the next `apply` restore alert `for` state (only at
    /// start: a reload keeps state in memory).
    first_load: bool,
}

impl RuleManager {
    pub fn new(opts: RuleManagerOptions) -> RuleManager {
        RuleManager {
            opts: Arc::new(opts),
            external_labels: Arc::default(),
            running: Vec::new(),
            view: RulesView::default(),
            first_load: true,
        }
    }

    pub fn view(&self) -> RulesView {
        self.view.clone()
    }

    /// Loads the rule files of `settings` and brings the running groups in line (see
    /// the module docs), saying what changed. On error nothing changes.
    pub async fn apply(&mut self, settings: &RuleSettings) -> Result<GroupChanges, RuleFileError> {
        let specs = load_rule_files(&settings.rule_files)?;
        *self.external_labels.write() = settings.external_labels.clone();
        let mut changes = GroupChanges {
            groups: specs.len(),
            rules: specs.iter().map(|s| s.rules.len()).sum(),
            files: specs
                .iter()
                .map(|s| s.file.as_str())
                .collect::<std::collections::BTreeSet<_>>()
                .len(),
            ..GroupChanges::default()
        };
        let mut old: Vec<RunningGroup> = std::mem::take(&mut self.running);
        for spec in &specs {
            let key = format!("{};{}", spec.file, spec.name);
            let mut group = Group::new(
                spec,
                settings.evaluation_interval_ms,
                settings.query_offset_ms,
            );
            let previous = old
                .iter()
                .position(|r| {
                    let g = r.group.lock();
                    g.file == group.file && g.name == group.name
                })
                .map(|i| old.swap_remove(i));
            match previous {
                Some(prev) if prev.group.lock().same_definition(&group) => {
                    self.running.push(prev);
                    continue;
                }
                Some(prev) => {
                    stop(&prev).await;
                    group.adopt_state(&mut prev.group.lock());
                    changes.changed.push(key);
                }
                None if self.first_load => {
                    group.require_restore();
                    changes.added.push(key);
                }
                None => changes.added.push(key),
            }
            self.running.push(self.start(group));
        }
        // What is left was removed from the configuration.
        for gone in old {
            {
                let g = gone.group.lock();
                changes.removed.push(format!("{};{}", g.file, g.name));
            }
            stop(&gone).await;
            self.mark_stale(gone.group).await;
        }
        *self.view.groups.write() = self.running.iter().map(|r| r.group.clone()).collect();
        self.first_load = false;
        Ok(changes)
    }

    /// Stops every group (shutdown). Their series are not marked stale: they resume
    /// after a restart, as in Prometheus.
    pub async fn stop_all(&mut self) {
        for r in std::mem::take(&mut self.running) {
            stop(&r).await;
        }
        self.view.groups.write().clear();
    }

    fn start(&self, group: Group) -> RunningGroup {
        let (stop, stop_rx) = watch::channel(false);
        let group = SharedGroup::new(group);
        let handle = tokio::spawn(run_group(
            group.clone(),
            self.opts.clone(),
            self.external_labels.clone(),
            stop_rx,
        ));
        RunningGroup {
            group,
            stop,
            handle,
        }
    }

    async fn mark_stale(&self, group: SharedGroup) {
        let opts = self.opts.clone();
        let labels = self.external_labels.read().clone();
        let _ = tokio::task::spawn_blocking(move || {
            let env = env(&opts, &labels);
            group
                .lock()
                .mark_stale(&env, kiln_model::calendar::now_ms());
        })
        .await;
    }
}

async fn stop(r: &RunningGroup) {
    let _ = r.stop.send(true);
    // The task ends at its next await point; an evaluation in progress finishes first.
    let _ = tokio::time::timeout(Duration::from_secs(60), async {
        while !r.handle.is_finished() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

fn env<'a>(opts: &'a RuleManagerOptions, labels: &'a BTreeMap<String, String>) -> EvalEnv<'a> {
    EvalEnv {
        engine: &opts.engine,
        queryable: &opts.queryable,
        appendable: opts.appendable.as_ref(),
        external_labels: labels,
        external_url: &opts.external_url,
    }
}

/// The first evaluation time of a group at or before `now` (see the module docs).
pub fn eval_timestamp(now: i64, interval: i64, offset: i64) -> i64 {
    let adjusted = now - offset;
    adjusted - adjusted.rem_euclid(interval) + offset
}

/// The group's offset within its interval: a hash of its file and name.
fn group_offset(group: &Group) -> i64 {
    let key = format!("{};{}", group.file, group.name);
    (xxhash_rust::xxh3::xxh3_64(key.as_bytes()) % group.interval_ms.max(1) as u64) as i64
}

async fn run_group(
    group: SharedGroup,
    opts: Arc<RuleManagerOptions>,
    external_labels: Arc<RwLock<BTreeMap<String, String>>>,
    mut stop: watch::Receiver<bool>,
) {
    let (interval, offset) = {
        let g = group.lock();
        (g.interval_ms, group_offset(&g))
    };
    let mut next = eval_timestamp(kiln_model::calendar::now_ms(), interval, offset) + interval;
    loop {
        let wait = (next - kiln_model::calendar::now_ms()).max(0) as u64;
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(wait)) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let t = next;
        let (group2, opts2, labels) = (group.clone(), opts.clone(), external_labels.read().clone());
        let evaluated = tokio::task::spawn_blocking(move || {
            let env = env(&opts2, &labels);
            let mut g = group2.lock();
            let report = g.eval(&env, t, &opts2.restore);
            g.counters.record(&report);
            if let Some(notifier) = &opts2.notifier {
                notifier.send(crate::notify::due_alerts(&mut g, t, &opts2.external_url));
            }
            group2.publish(&g);
        })
        .await;
        if let Err(e) = evaluated {
            tracing::error!(err = %e, "rule group evaluation task failed");
        }
        next += interval;
        let now = kiln_model::calendar::now_ms();
        if now >= next + interval {
            // Overran: skip the slots that already passed.
            let missed = (now - next) / interval;
            let mut g = group.lock();
            g.counters.iterations_missed += missed as u64;
            group.publish(&g);
            next += missed * interval;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eval_timestamps_sit_on_the_groups_grid() {
        assert_eq!(eval_timestamp(125_000, 60_000, 7_000), 67_000);
        assert_eq!(eval_timestamp(127_000, 60_000, 7_000), 127_000);
        assert_eq!(eval_timestamp(126_999, 60_000, 7_000), 67_000);
        assert_eq!(eval_timestamp(60_000, 60_000, 0), 60_000);
    }
}
