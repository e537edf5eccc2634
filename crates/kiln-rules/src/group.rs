//! A rule group: rules evaluated in order at one timestamp, their results stored with
//! staleness markers, and each rule's health.

use std::collections::{BTreeMap, HashSet};
use std::time::Instant;

use kiln_model::{Labels, STALE_NAN};
use kiln_storage::SampleValue;

use crate::alerting::AlertingRule;
use crate::eval::{EvalEnv, RuleError};
use crate::file::{GroupSpec, RuleKind};
use crate::recording::RecordingRule;

/// A recording or an alerting rule.
#[derive(Debug, Clone)]
pub enum Rule {
    Recording(RecordingRule),
    Alerting(AlertingRule),
}

impl Rule {
    pub fn name(&self) -> &str {
        match self {
            Rule::Recording(r) => &r.name,
            Rule::Alerting(a) => &a.name,
        }
    }

    pub fn expr(&self) -> &str {
        match self {
            Rule::Recording(r) => &r.expr,
            Rule::Alerting(a) => &a.expr,
        }
    }

    /// The rule's label templates (group labels included).
    pub fn labels(&self) -> &BTreeMap<String, String> {
        match self {
            Rule::Recording(r) => &r.labels,
            Rule::Alerting(a) => &a.labels,
        }
    }
}

/// Health of a rule after its last evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Unknown,
    Ok,
    Err,
}

impl Health {
    /// The name in `/api/v1/rules`.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Unknown => "unknown",
            Health::Ok => "ok",
            Health::Err => "err",
        }
    }
}

/// What the last evaluation of a rule did.
#[derive(Debug, Clone)]
pub struct RuleStatus {
    pub health: Health,
    pub last_error: Option<String>,
    /// Evaluation time, ms; `None` before the first evaluation.
    pub last_eval_ms: Option<i64>,
    pub eval_duration_s: f64,
    /// Series the last successful evaluation wrote; those missing next time get a
    /// staleness marker.
    written: HashSet<Labels>,
}

impl Default for RuleStatus {
    fn default() -> Self {
        RuleStatus {
            health: Health::Unknown,
            last_error: None,
            last_eval_ms: None,
            eval_duration_s: 0.0,
            written: HashSet::new(),
        }
    }
}

/// What one evaluation of a group did, for the `prometheus_rule_*` metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EvalReport {
    pub rules_evaluated: usize,
    pub rules_failed: usize,
    pub samples_written: usize,
}

/// Counters of a group's evaluations, for the `prometheus_rule_*` metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupCounters {
    pub iterations: u64,
    pub iterations_missed: u64,
    pub rule_evaluations: u64,
    pub rule_failures: u64,
    /// Samples the last evaluation wrote.
    pub last_samples: u64,
}

impl GroupCounters {
    pub fn record(&mut self, report: &EvalReport) {
        self.iterations += 1;
        self.rule_evaluations += report.rules_evaluated as u64;
        self.rule_failures += report.rules_failed as u64;
        self.last_samples = report.samples_written as u64;
    }
}

/// A group of rules; see the module docs.
#[derive(Debug, Clone)]
pub struct Group {
    pub name: String,
    pub file: String,
    pub interval_ms: i64,
    pub limit: usize,
    pub query_offset_ms: i64,
    pub rules: Vec<Rule>,
    pub status: Vec<RuleStatus>,
    /// Start of the last evaluation, ms.
    pub last_eval_ms: Option<i64>,
    pub last_duration_s: f64,
    pub counters: GroupCounters,
    /// Series of rules a reload removed from the group: marked stale by the next
    /// evaluation.
    removed_series: Vec<Labels>,
}

impl Group {
    /// Builds a group from its spec; `default_interval_ms` and `default_offset_ms`
    /// apply where the group sets none.
    pub fn new(spec: &GroupSpec, default_interval_ms: i64, default_offset_ms: i64) -> Group {
        let rules: Vec<Rule> = spec
            .rules
            .iter()
            .map(|r| {
                // Group labels first; the rule's own win on a clash.
                let mut labels = spec.labels.clone();
                labels.extend(r.labels.clone());
                match &r.kind {
                    RuleKind::Recording { record } => {
                        Rule::Recording(RecordingRule::new(record.clone(), r.expr.clone(), labels))
                    }
                    RuleKind::Alerting {
                        alert,
                        hold_ms,
                        keep_firing_for_ms,
                        annotations,
                    } => Rule::Alerting(AlertingRule::new(
                        alert.clone(),
                        r.expr.clone(),
                        *hold_ms,
                        *keep_firing_for_ms,
                        labels,
                        annotations.clone(),
                    )),
                }
            })
            .collect();
        Group {
            name: spec.name.clone(),
            file: spec.file.clone(),
            interval_ms: spec.interval_ms.unwrap_or(default_interval_ms).max(1),
            limit: spec.limit,
            query_offset_ms: spec.query_offset_ms.unwrap_or(default_offset_ms),
            status: vec![RuleStatus::default(); rules.len()],
            rules,
            last_eval_ms: None,
            last_duration_s: 0.0,
            counters: GroupCounters::default(),
            removed_series: Vec::new(),
        }
    }

    /// A copy for readers (see `SharedGroup`): everything the API and metrics show,
    /// without the series each rule wrote last (staleness bookkeeping, as large as the
    /// rules' results) or those waiting for staleness markers.
    pub(crate) fn for_readers(&self) -> Group {
        Group {
            name: self.name.clone(),
            file: self.file.clone(),
            interval_ms: self.interval_ms,
            limit: self.limit,
            query_offset_ms: self.query_offset_ms,
            rules: self.rules.clone(),
            status: self
                .status
                .iter()
                .map(|s| RuleStatus {
                    health: s.health,
                    last_error: s.last_error.clone(),
                    last_eval_ms: s.last_eval_ms,
                    eval_duration_s: s.eval_duration_s,
                    written: HashSet::new(),
                })
                .collect(),
            last_eval_ms: self.last_eval_ms,
            last_duration_s: self.last_duration_s,
            counters: self.counters,
            removed_series: Vec::new(),
        }
    }

    /// Whether `other` has the same definition (so state may carry over on reload).
    pub fn same_definition(&self, other: &Group) -> bool {
        self.name == other.name
            && self.file == other.file
            && self.interval_ms == other.interval_ms
            && self.limit == other.limit
            && self.query_offset_ms == other.query_offset_ms
            && self.rules.len() == other.rules.len()
            && self
                .rules
                .iter()
                .zip(&other.rules)
                .all(|(a, b)| match (a, b) {
                    (Rule::Recording(a), Rule::Recording(b)) => a == b,
                    (Rule::Alerting(a), Rule::Alerting(b)) => a.same_definition(b),
                    _ => false,
                })
    }

    /// Takes over the alerts and staleness bookkeeping of `old`, the same group before
    /// a reload: rules matched by name and labels keep their alerts and written series;
    /// the series of old rules without a match get staleness markers at the next
    /// evaluation.
    pub fn adopt_state(&mut self, old: &mut Group) {
        for (i, rule) in self.rules.iter_mut().enumerate() {
            let matching = old
                .rules
                .iter()
                .position(|o| o.name() == rule.name() && o.labels() == rule.labels());
            let Some(j) = matching else { continue };
            self.status[i] = std::mem::take(&mut old.status[j]);
            if let (Rule::Alerting(new), Rule::Alerting(prev)) = (rule, &mut old.rules[j]) {
                new.active = std::mem::take(&mut prev.active);
                new.restored = prev.restored;
            }
        }
        for status in &mut old.status {
            self.removed_series.extend(status.written.drain());
        }
        self.last_eval_ms = old.last_eval_ms;
        self.counters = old.counters;
    }

    /// Marks the alerting rules as needing their `for` state restored (server start).
    pub fn require_restore(&mut self) {
        for rule in &mut self.rules {
            if let Rule::Alerting(a) = rule {
                a.restored = false;
            }
        }
    }

    /// Evaluates every rule in order at `t` (ms). Each rule's results are committed
    /// before the next rule runs, so later rules see them.
    pub fn eval(&mut self, env: &EvalEnv<'_>, t: i64, restore: &RestoreOptions) -> EvalReport {
        let started = Instant::now();
        let query_t = t - self.query_offset_ms;
        let mut report = EvalReport::default();
        if !self.removed_series.is_empty() {
            let mut app = env.appendable.appender();
            for l in self.removed_series.drain(..) {
                let _ = app.append(0, &l, query_t, SampleValue::Float(STALE_NAN));
            }
            if let Err(e) = app.commit() {
                tracing::warn!(group = %self.name, err = %e, "writing staleness markers failed");
            }
        }
        for (rule, status) in self.rules.iter_mut().zip(self.status.iter_mut()) {
            let rule_started = Instant::now();
            report.rules_evaluated += 1;
            let result = match rule {
                Rule::Recording(r) => r.eval(env, query_t, self.limit),
                Rule::Alerting(a) => {
                    let samples = a.eval(env, t, query_t, self.limit);
                    if samples.is_ok() && !a.restored {
                        if let Err(e) =
                            a.restore(env, t, restore.outage_tolerance_ms, restore.grace_ms)
                        {
                            tracing::warn!(rule = %a.name, err = %e, "restoring alert state failed");
                        }
                        // The restored `active_at` changes what is written.
                        a.eval(env, t, query_t, self.limit)
                    } else {
                        samples
                    }
                }
            };
            let outcome = result.and_then(|samples| write(env, status, samples, query_t));
            status.last_eval_ms = Some(t);
            status.eval_duration_s = rule_started.elapsed().as_secs_f64();
            match outcome {
                Ok(written) => {
                    report.samples_written += written;
                    status.health = Health::Ok;
                    status.last_error = None;
                }
                Err(e) => {
                    report.rules_failed += 1;
                    status.health = Health::Err;
                    status.last_error = Some(e.to_string());
                    tracing::warn!(group = %self.name, rule = rule.name(), err = %e, "rule evaluation failed");
                }
            }
        }
        self.last_eval_ms = Some(t);
        self.last_duration_s = started.elapsed().as_secs_f64();
        report
    }

    /// Writes staleness markers at `t` for everything the group's rules wrote last
    /// (when the group goes away on reload or shutdown).
    pub fn mark_stale(&mut self, env: &EvalEnv<'_>, t: i64) {
        let mut app = env.appendable.appender();
        for status in &mut self.status {
            for l in status.written.drain() {
                let _ = app.append(
                    0,
                    &l,
                    t - self.query_offset_ms,
                    SampleValue::Float(STALE_NAN),
                );
            }
        }
        if let Err(e) = app.commit() {
            tracing::warn!(group = %self.name, err = %e, "writing staleness markers failed");
        }
    }
}

/// How alert `for` state is restored after a restart (Prometheus's
/// `--rules.alert.for-outage-tolerance` and `--rules.alert.for-grace-period`).
#[derive(Debug, Clone, Copy)]
pub struct RestoreOptions {
    pub outage_tolerance_ms: i64,
    pub grace_ms: i64,
}

impl Default for RestoreOptions {
    fn default() -> Self {
        RestoreOptions {
            outage_tolerance_ms: 60 * 60 * 1000,
            grace_ms: 10 * 60 * 1000,
        }
    }
}

/// Stores one rule's samples at `t` in one transaction, with staleness markers for the
/// series it wrote last time and not now. Samples the storage refuses (out of order,
/// duplicates: a clash with other data) are skipped, as in Prometheus.
fn write(
    env: &EvalEnv<'_>,
    status: &mut RuleStatus,
    samples: Vec<(Labels, f64)>,
    t: i64,
) -> Result<usize, RuleError> {
    let mut app = env.appendable.appender();
    let mut current = HashSet::with_capacity(samples.len());
    let mut written = 0;
    for (labels, v) in samples {
        match app.append(0, &labels, t, SampleValue::Float(v)) {
            Ok(_) => written += 1,
            Err(e) => tracing::debug!(series = %labels, err = %e, "rule sample refused"),
        }
        current.insert(labels);
    }
    for gone in status.written.difference(&current) {
        let _ = app.append(0, gone, t, SampleValue::Float(STALE_NAN));
    }
    app.commit()
        .map_err(|e| RuleError::Eval(format!("storing rule results: {e}")))?;
    status.written = current;
    Ok(written)
}

#[cfg(test)]
mod tests;
