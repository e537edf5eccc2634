//! Sending alerts to Alertmanager (API v2), as Prometheus's notifier does.
//!
//! - Which alerts: after each group evaluation, every firing alert is (re)sent when it
//!   was never sent, was resolved since it was last sent, or was last sent more than
//!   [`RESEND_DELAY_MS`] ago; resolved alerts are sent with `endsAt` = when they
//!   resolved, until they are forgotten. Firing alerts carry `endsAt` = now + 4 ×
//!   max(resend delay, group interval), so Alertmanager resolves them itself if Kiln
//!   goes silent.
//! - On the way: the configuration's external labels are added (the alert's own labels
//!   win), then `alert_relabel_configs` apply; an alert relabelled to nothing is
//!   dropped.
//! - Queue: bounded (`--alertmanager.notification-queue-capacity`); when full the
//!   oldest alerts are dropped and counted. A sender task takes batches of up to
//!   [`MAX_BATCH`] and POSTs each to every discovered Alertmanager of every
//!   `alertmanagers` entry concurrently. A batch that no Alertmanager accepted is
//!   retried with backoff (up to [`MAX_ATTEMPTS`] times) before the next batch.
//! - Alertmanagers come from service discovery like scrape targets, relabelled with
//!   `__scheme__`, `__address__` and `__alerts_path__`.

mod alertmanagers;

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use kiln_model::Labels;
use kiln_model::relabel::{RelabelConfig, relabel};
use parking_lot::Mutex;

pub use alertmanagers::{AlertmanagerSet, AlertmanagerStatus};

use crate::alerting::{Alert, AlertState};
use crate::group::{Group, Rule};

/// How often a firing alert is re-sent (Prometheus's `--rules.alert.resend-delay`).
pub const RESEND_DELAY_MS: i64 = 60_000;
/// Most alerts in one POST.
pub const MAX_BATCH: usize = 256;
/// Tries of one batch before it is given up.
pub const MAX_ATTEMPTS: u32 = 3;

/// An alert as Alertmanager's API v2 receives it.
#[derive(Debug, Clone, PartialEq)]
pub struct OutgoingAlert {
    pub labels: Labels,
    pub annotations: BTreeMap<String, String>,
    pub starts_at_ms: i64,
    pub ends_at_ms: i64,
    pub generator_url: String,
}

impl OutgoingAlert {
    /// The JSON object of the API v2 `postableAlert`.
    fn write_json(&self, out: &mut String) {
        let string = |out: &mut String, s: &str| {
            out.push_str(&serde_json::Value::String(s.to_owned()).to_string());
        };
        out.push_str("{\"labels\":{");
        for (i, l) in self.labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            string(out, l.name);
            out.push(':');
            string(out, l.value);
        }
        out.push_str("},\"annotations\":{");
        for (i, (k, v)) in self.annotations.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            string(out, k);
            out.push(':');
            string(out, v);
        }
        out.push_str("},\"startsAt\":");
        string(out, &rfc3339_ms(self.starts_at_ms));
        out.push_str(",\"endsAt\":");
        string(out, &rfc3339_ms(self.ends_at_ms));
        out.push_str(",\"generatorURL\":");
        string(out, &self.generator_url);
        out.push('}');
    }
}

/// `2024-01-02T03:04:05.678Z`.
fn rfc3339_ms(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (y, m, d) = kiln_model::calendar::civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60,
        ms.rem_euclid(1000)
    )
}

/// The JSON array body of one POST.
pub(crate) fn batch_json(alerts: &[OutgoingAlert]) -> String {
    let mut out = String::from("[");
    for (i, a) in alerts.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        a.write_json(&mut out);
    }
    out.push(']');
    out
}

/// Whether `a` is due to be sent at `t` (see the module docs).
fn needs_sending(a: &Alert, t: i64) -> bool {
    if a.state == AlertState::Pending {
        return false;
    }
    match (a.resolved_at, a.last_sent_at) {
        (Some(resolved), Some(sent)) if resolved > sent => true,
        (_, None) => true,
        (_, Some(sent)) => sent + RESEND_DELAY_MS < t,
    }
}

/// Picks the alerts of `group` due at `t`, marks them sent, and returns them as they go
/// to Alertmanager. `external_url` prefixes the generator URL.
pub fn due_alerts(group: &mut Group, t: i64, external_url: &str) -> Vec<OutgoingAlert> {
    let delta = RESEND_DELAY_MS.max(group.interval_ms);
    let mut out = Vec::new();
    for rule in &mut group.rules {
        let Rule::Alerting(rule) = rule else { continue };
        let generator_url = format!(
            "{}/graph?g0.expr={}&g0.tab=1",
            external_url.trim_end_matches('/'),
            crate::template::query_escape(&rule.expr)
        );
        for a in rule.alerts_mut() {
            if !needs_sending(a, t) {
                continue;
            }
            a.last_sent_at = Some(t);
            a.valid_until = Some(t + 4 * delta);
            out.push(OutgoingAlert {
                labels: a.labels.clone(),
                annotations: a.annotations.clone(),
                starts_at_ms: a.fired_at.unwrap_or(a.active_at),
                ends_at_ms: a.resolved_at.unwrap_or(t + 4 * delta),
                generator_url: generator_url.clone(),
            });
        }
    }
    out
}

/// Counters of the notifier, for `/metrics`.
#[derive(Debug, Default)]
pub struct NotifierCounters {
    /// Alerts dropped: queue overflow, relabelled away, or given up after retries.
    pub dropped: AtomicU64,
    /// Alerts sent and errors, per Alertmanager URL.
    pub per_alertmanager: Mutex<BTreeMap<String, (u64, u64)>>,
}

/// What alerts go through before they are queued.
#[derive(Debug, Clone, Default)]
pub struct AlertShaping {
    pub external_labels: BTreeMap<String, String>,
    pub alert_relabel_configs: Vec<RelabelConfig>,
}

impl AlertShaping {
    /// External labels added (the alert's win), then relabelled; `None`: dropped.
    pub fn apply(&self, alert: &OutgoingAlert) -> Option<Labels> {
        let mut b = alert.labels.to_builder();
        for (k, v) in &self.external_labels {
            if alert.labels.get(k).is_none() {
                b.set(k, v);
            }
        }
        let labels = b.build();
        relabel(&labels, &self.alert_relabel_configs).filter(|l| !l.is_empty())
    }
}

/// The notifier: a bounded queue and the Alertmanager sets it sends to.
pub struct Notifier {
    queue: Mutex<VecDeque<OutgoingAlert>>,
    capacity: usize,
    wake: tokio::sync::Notify,
    shaping: Mutex<AlertShaping>,
    sets: Mutex<Vec<Arc<AlertmanagerSet>>>,
    pub counters: NotifierCounters,
}

impl Notifier {
    pub fn new(capacity: usize) -> Arc<Notifier> {
        Arc::new(Notifier {
            queue: Mutex::new(VecDeque::new()),
            capacity: capacity.max(1),
            wake: tokio::sync::Notify::new(),
            shaping: Mutex::new(AlertShaping::default()),
            sets: Mutex::new(Vec::new()),
            counters: NotifierCounters::default(),
        })
    }

    /// Replaces external labels, relabelling and the Alertmanager sets (reload).
    pub fn configure(&self, shaping: AlertShaping, sets: Vec<Arc<AlertmanagerSet>>) {
        *self.shaping.lock() = shaping;
        *self.sets.lock() = sets;
    }

    /// The Alertmanager sets, for the API and metrics.
    pub fn sets(&self) -> Vec<Arc<AlertmanagerSet>> {
        self.sets.lock().clone()
    }

    pub fn queue_len(&self) -> usize {
        self.queue.lock().len()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Queues alerts (shaped first); the oldest go when the queue is full.
    pub fn send(&self, alerts: Vec<OutgoingAlert>) {
        if alerts.is_empty() {
            return;
        }
        let shaping = self.shaping.lock().clone();
        let mut queue = self.queue.lock();
        for mut a in alerts {
            let Some(labels) = shaping.apply(&a) else {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            a.labels = labels;
            if queue.len() >= self.capacity {
                queue.pop_front();
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            }
            queue.push_back(a);
        }
        drop(queue);
        self.wake.notify_one();
    }

    /// Sends queued batches until `stop` turns true. Run it as a task.
    pub async fn run(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        loop {
            let batch: Vec<OutgoingAlert> = {
                let mut q = self.queue.lock();
                let n = q.len().min(MAX_BATCH);
                q.drain(..n).collect()
            };
            if batch.is_empty() {
                tokio::select! {
                    _ = self.wake.notified() => continue,
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
            let mut attempt = 0;
            loop {
                attempt += 1;
                if self.send_batch(&batch).await {
                    break;
                }
                if attempt >= MAX_ATTEMPTS {
                    tracing::warn!(
                        alerts = batch.len(),
                        "no Alertmanager accepted the alerts; giving up on this batch"
                    );
                    self.counters
                        .dropped
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                    break;
                }
                let backoff = Duration::from_millis(500 << attempt);
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
        }
    }

    /// POSTs `batch` to every Alertmanager, concurrently; true when at least one
    /// accepted it, or when there is none to send to.
    async fn send_batch(&self, batch: &[OutgoingAlert]) -> bool {
        let mut posts = tokio::task::JoinSet::new();
        for set in self.sets() {
            for (url, alerts) in set.targets_for(batch) {
                let set = set.clone();
                posts.spawn(async move {
                    let outcome = set.post(&url, &alerts).await;
                    (url, alerts.len(), outcome)
                });
            }
        }
        if posts.is_empty() {
            return true;
        }
        let mut any_ok = false;
        while let Some(joined) = posts.join_next().await {
            let Ok((url, n, outcome)) = joined else {
                continue;
            };
            let mut per = self.counters.per_alertmanager.lock();
            let entry = per.entry(url.clone()).or_default();
            match outcome {
                Ok(()) => {
                    any_ok = true;
                    entry.0 += n as u64;
                }
                Err(e) => {
                    entry.1 += n as u64;
                    tracing::warn!(alertmanager = %url, err = %e, "sending alerts failed");
                }
            }
        }
        any_ok
    }
}

#[cfg(test)]
mod tests;
