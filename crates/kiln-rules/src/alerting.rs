//! Alerting rules: the alert state machine, `ALERTS` and `ALERTS_FOR_STATE`.
//!
//! Every evaluation, each sample of the expression is an alert identified by its label
//! set (the sample's labels without `__name__`, the rule's expanded labels, and
//! `alertname`):
//! - new: **pending** from this evaluation (`active_at`), **firing** at once when the
//!   rule has no `for`;
//! - pending for at least `for`: **firing** (`fired_at`);
//! - gone: a pending alert is dropped; a firing one keeps firing for
//!   `keep_firing_for` (if set), then turns **inactive** (`resolved_at`) and is kept
//!   for [`RESOLVED_RETENTION`] so the notifier can send the resolution.
//!
//! Each active (pending or firing) alert writes `ALERTS{alertstate=...} 1` and
//! `ALERTS_FOR_STATE = active_at` (Unix seconds); the latter lets a restarted server
//! restore how long an alert has been pending (see [`AlertingRule::restore`]).

use std::collections::{BTreeMap, HashMap, HashSet};

use kiln_model::{Labels, LabelsBuilder, METRIC_NAME};
use kiln_storage::ValueKind;

use crate::eval::{EvalEnv, RuleError, instant_vector, label_map, template_query};
use crate::template::{self, TemplateData};

/// How long a resolved alert is kept (and re-sent as resolved).
pub const RESOLVED_RETENTION_MS: i64 = 15 * 60 * 1000;
/// The metric of alert state series.
pub const ALERTS_METRIC: &str = "ALERTS";
/// The metric holding each active alert's `active_at`.
pub const ALERTS_FOR_STATE_METRIC: &str = "ALERTS_FOR_STATE";

/// An alert's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertState {
    Inactive,
    Pending,
    Firing,
}

impl AlertState {
    /// The name Prometheus uses (`alertstate` label, API).
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Inactive => "inactive",
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
        }
    }
}

/// One alert of a rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// Identifying labels, `alertname` included.
    pub labels: Labels,
    pub annotations: BTreeMap<String, String>,
    pub state: AlertState,
    /// When the alert became active (pending), ms.
    pub active_at: i64,
    /// When it started firing, ms.
    pub fired_at: Option<i64>,
    /// When it turned inactive, ms.
    pub resolved_at: Option<i64>,
    /// When the condition last cleared while `keep_firing_for` kept it firing, ms.
    pub keep_firing_since: Option<i64>,
    /// The sample value of the last evaluation.
    pub value: f64,
    /// When the notifier last sent it, ms (kept here so resends survive reloads).
    pub last_sent_at: Option<i64>,
    /// Until when the last notification asked Alertmanager to keep it, ms.
    pub valid_until: Option<i64>,
}

/// An alerting rule and its alerts.
#[derive(Debug, Clone)]
pub struct AlertingRule {
    pub(crate) name: String,
    pub(crate) expr: String,
    pub(crate) hold_ms: i64,
    pub(crate) keep_firing_for_ms: i64,
    /// Label templates: the group's labels overlaid with the rule's.
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) annotations: BTreeMap<String, String>,
    pub(crate) active: HashMap<Labels, Alert>,
    /// Whether `for` state was restored (or there was nothing to restore).
    pub(crate) restored: bool,
}

impl AlertingRule {
    pub fn new(
        name: String,
        expr: String,
        hold_ms: i64,
        keep_firing_for_ms: i64,
        labels: BTreeMap<String, String>,
        annotations: BTreeMap<String, String>,
    ) -> AlertingRule {
        AlertingRule {
            name,
            expr,
            hold_ms,
            keep_firing_for_ms,
            labels,
            annotations,
            active: HashMap::new(),
            restored: true,
        }
    }

    /// Whether two rules are the same definition (state can move from one to the other
    /// on reload).
    pub(crate) fn same_definition(&self, other: &AlertingRule) -> bool {
        self.name == other.name
            && self.expr == other.expr
            && self.hold_ms == other.hold_ms
            && self.keep_firing_for_ms == other.keep_firing_for_ms
            && self.labels == other.labels
            && self.annotations == other.annotations
    }

    /// `for`, seconds.
    pub fn hold_seconds(&self) -> f64 {
        self.hold_ms as f64 / 1000.0
    }

    /// `keep_firing_for`, seconds.
    pub fn keep_firing_for_seconds(&self) -> f64 {
        self.keep_firing_for_ms as f64 / 1000.0
    }

    /// The annotation templates as written.
    pub fn annotation_templates(&self) -> &BTreeMap<String, String> {
        &self.annotations
    }

    /// The rule's alerts (active, and resolved ones still retained), sorted by labels.
    pub fn alerts(&self) -> Vec<&Alert> {
        let mut v: Vec<&Alert> = self.active.values().collect();
        v.sort_by(|a, b| a.labels.cmp(&b.labels));
        v
    }

    /// Mutable access for the notifier's bookkeeping (`last_sent_at`, `valid_until`).
    pub fn alerts_mut(&mut self) -> impl Iterator<Item = &mut Alert> {
        self.active.values_mut()
    }

    /// The most severe state among the rule's alerts.
    pub fn state(&self) -> AlertState {
        let mut state = AlertState::Inactive;
        for a in self.active.values() {
            match a.state {
                AlertState::Firing => return AlertState::Firing,
                AlertState::Pending => state = AlertState::Pending,
                AlertState::Inactive => {}
            }
        }
        state
    }

    /// Evaluates at `t` (ms), querying at `query_t` (`t` minus the group's query
    /// offset): updates the alerts and returns the `ALERTS`/`ALERTS_FOR_STATE` samples
    /// to store at `query_t`.
    pub(crate) fn eval(
        &mut self,
        env: &EvalEnv<'_>,
        t: i64,
        query_t: i64,
        limit: usize,
    ) -> Result<Vec<(Labels, f64)>, RuleError> {
        let samples = instant_vector(env, &self.expr, query_t)?;
        let query = (!samples.is_empty() && self.uses_query_function())
            .then(|| template_query(env, query_t));
        let mut current: HashMap<Labels, Alert> = HashMap::with_capacity(samples.len());
        for s in &samples {
            let data = TemplateData {
                labels: label_map(&s.labels),
                external_labels: env.external_labels.clone(),
                external_url: env.external_url.to_owned(),
                value: s.v,
            };
            let expand = |text: &str| {
                template::expand(text, &data, t as f64 / 1000.0, query.clone())
                    .unwrap_or_else(|e| format!("<error expanding template: {e}>"))
            };
            let mut b: LabelsBuilder = s.labels.to_builder();
            b.del(METRIC_NAME);
            for (k, v) in &self.labels {
                b.set(k, &expand(v));
            }
            b.set("alertname", &self.name);
            let labels = b.build();
            let annotations = self
                .annotations
                .iter()
                .map(|(k, v)| (k.clone(), expand(v)))
                .filter(|(_, v)| !v.is_empty())
                .collect();
            if current.contains_key(&labels) {
                return Err(RuleError::Eval(
                    "vector contains metrics with the same labelset after applying alert labels"
                        .into(),
                ));
            }
            current.insert(
                labels.clone(),
                Alert {
                    labels,
                    annotations,
                    state: AlertState::Pending,
                    active_at: t,
                    fired_at: None,
                    resolved_at: None,
                    keep_firing_since: None,
                    value: s.v,
                    last_sent_at: None,
                    valid_until: None,
                },
            );
        }
        let present: HashSet<Labels> = current.keys().cloned().collect();
        for (labels, alert) in current {
            match self.active.get_mut(&labels) {
                Some(a) if a.state != AlertState::Inactive => {
                    a.value = alert.value;
                    a.annotations = alert.annotations;
                }
                _ => {
                    self.active.insert(labels, alert);
                }
            }
        }
        let mut out = Vec::new();
        let mut active_count = 0;
        let mut gone = Vec::new();
        for (labels, a) in self.active.iter_mut() {
            if !present.contains(labels) {
                let mut keep_firing = false;
                if a.state == AlertState::Firing && self.keep_firing_for_ms > 0 {
                    let since = *a.keep_firing_since.get_or_insert(t);
                    keep_firing = t - since < self.keep_firing_for_ms;
                }
                let expired = a.resolved_at.is_some_and(|r| t - r > RESOLVED_RETENTION_MS);
                if a.state == AlertState::Pending || expired {
                    gone.push(labels.clone());
                }
                if a.state != AlertState::Inactive && !keep_firing {
                    a.state = AlertState::Inactive;
                    a.resolved_at = Some(t);
                }
                if !keep_firing {
                    continue;
                }
            } else {
                a.keep_firing_since = None;
            }
            active_count += 1;
            if a.state == AlertState::Pending && t - a.active_at >= self.hold_ms {
                a.state = AlertState::Firing;
                a.fired_at = Some(t);
            }
            out.push((series(ALERTS_METRIC, a, Some(a.state)), 1.0));
            out.push((
                series(ALERTS_FOR_STATE_METRIC, a, None),
                (a.active_at.div_euclid(1000)) as f64,
            ));
        }
        for labels in gone {
            self.active.remove(&labels);
        }
        if limit > 0 && active_count > limit {
            self.active.clear();
            return Err(RuleError::Eval(format!(
                "exceeded limit of {limit} with {active_count} alerts"
            )));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    fn uses_query_function(&self) -> bool {
        self.labels
            .values()
            .chain(self.annotations.values())
            .any(|t| t.contains("query"))
    }

    /// Restores `active_at` of the rule's active alerts from the `ALERTS_FOR_STATE`
    /// series a previous run wrote, as Prometheus does after a restart (`t` is now,
    /// ms). `outage_tolerance_ms` is how far back to look; `grace_ms` is the minimum
    /// time an alert that had not fired yet stays pending after the restart.
    ///
    /// The time an alert spent pending before the outage counts towards `for`; the
    /// outage itself does not (the alert's `active_at` moves forward by it), except that
    /// an alert needing less than the grace period fires no earlier than `t + grace`.
    pub(crate) fn restore(
        &mut self,
        env: &EvalEnv<'_>,
        t: i64,
        outage_tolerance_ms: i64,
        grace_ms: i64,
    ) -> Result<(), RuleError> {
        self.restored = true;
        tracing::debug!(rule = %self.name, alerts = self.active.len(), "restore");
        if self.hold_ms <= 0 || self.active.is_empty() {
            return Ok(());
        }
        let mint = t - outage_tolerance_ms;
        for a in self.active.values_mut() {
            if a.state == AlertState::Inactive {
                continue;
            }
            let mut matchers = vec![kiln_model::Matcher::equal(
                METRIC_NAME,
                ALERTS_FOR_STATE_METRIC,
            )];
            for l in a.labels.iter() {
                matchers.push(kiln_model::Matcher::equal(l.name, l.value));
            }
            let found = last_sample(env, &matchers, &a.labels, mint, t)?;
            tracing::debug!(rule = %self.name, alert = %a.labels, ?found, "restoring for state");
            let Some((down_at, restored_active_at)) = found else {
                continue;
            };
            let restored_ms = (restored_active_at * 1000.0) as i64;
            let spent_pending = down_at - restored_ms;
            let remaining = self.hold_ms - spent_pending;
            let active_at = if remaining <= 0 {
                // It had fired before the outage: keep its history.
                restored_ms
            } else if remaining < grace_ms {
                t + grace_ms - self.hold_ms
            } else {
                restored_ms + (t - down_at)
            };
            a.active_at = active_at;
        }
        Ok(())
    }
}

/// `ALERTS`-style series of an alert: its labels with `__name__` (and `alertstate`).
fn series(metric: &str, a: &Alert, state: Option<AlertState>) -> Labels {
    let mut b = a.labels.to_builder();
    b.set(METRIC_NAME, metric);
    if let Some(s) = state {
        b.set("alertstate", s.as_str());
    }
    b.build()
}

/// The newest sample in `[mint, maxt]` of the series that has exactly `want` labels
/// plus `__name__`: (its timestamp ms, its value).
fn last_sample(
    env: &EvalEnv<'_>,
    matchers: &[kiln_model::Matcher],
    want: &Labels,
    mint: i64,
    maxt: i64,
) -> Result<Option<(i64, f64)>, RuleError> {
    let q = env
        .queryable
        .querier(mint, maxt)
        .map_err(|e| RuleError::Query(e.to_string()))?;
    let mut set = q.select(false, None, matchers);
    let mut best = None;
    while let Some(series) = set.next() {
        if series.labels().len() != want.len() + 1 {
            continue;
        }
        let mut it = series.iterator();
        while it.next() == ValueKind::Float {
            let (st, sv) = it.at();
            if !kiln_model::is_stale_nan(sv) && (mint..=maxt).contains(&st) {
                best = Some((st, sv));
            }
        }
    }
    if let Some(e) = set.err() {
        return Err(RuleError::Query(e.to_string()));
    }
    Ok(best)
}
