//! `/api/v1/rules`, `/api/v1/alerts` and `/api/v1/alertmanagers`, in Prometheus's
//! JSON, and the `prometheus_rule_*` and `prometheus_notifications_*` metrics.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use kiln_rules::{Alert, AlertState, Group, Rule, RuleStatus};

use super::params::Params;
use super::targets::rfc3339;
use super::{ApiError, ApiState, json, json_response};

/// How alert values are written: Go's `'e'` format, `1e+00`.
fn value_e(v: f64) -> String {
    kiln_model::format_go_float_exp(v, false)
}

fn string_map(out: &mut String, m: &BTreeMap<String, String>) {
    out.push('{');
    for (i, (k, v)) in m.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        json::string(out, k);
        out.push(':');
        json::string(out, v);
    }
    out.push('}');
}

fn alert_json(out: &mut String, a: &Alert) {
    out.push_str("{\"labels\":");
    json::labels(out, &a.labels);
    out.push_str(",\"annotations\":");
    string_map(out, &a.annotations);
    out.push_str(",\"state\":");
    json::string(out, a.state.as_str());
    out.push_str(",\"activeAt\":\"");
    rfc3339(out, a.active_at);
    out.push_str("\",");
    if let Some(since) = a.keep_firing_since {
        out.push_str("\"keepFiringSince\":\"");
        rfc3339(out, since);
        out.push_str("\",");
    }
    out.push_str("\"value\":");
    json::string(out, &value_e(a.value));
    out.push('}');
}

/// Alerts an API lists: pending and firing ones.
fn active(alerts: Vec<&Alert>) -> impl Iterator<Item = &Alert> {
    alerts
        .into_iter()
        .filter(|a| a.state != AlertState::Inactive)
}

fn rule_json(out: &mut String, rule: &Rule, status: &RuleStatus, with_alerts: bool) {
    out.push('{');
    match rule {
        Rule::Alerting(a) => {
            out.push_str("\"state\":");
            json::string(out, a.state().as_str());
            out.push_str(",\"name\":");
            json::string(out, rule.name());
            out.push_str(",\"query\":");
            json::string(out, rule.expr());
            let _ = write!(
                out,
                ",\"duration\":{},\"keepFiringFor\":{}",
                a.hold_seconds(),
                a.keep_firing_for_seconds()
            );
            out.push_str(",\"labels\":");
            string_map(out, rule.labels());
            out.push_str(",\"annotations\":");
            string_map(out, a.annotation_templates());
            if with_alerts {
                out.push_str(",\"alerts\":[");
                for (i, alert) in active(a.alerts()).enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    alert_json(out, alert);
                }
                out.push(']');
            }
        }
        Rule::Recording(_) => {
            out.push_str("\"name\":");
            json::string(out, rule.name());
            out.push_str(",\"query\":");
            json::string(out, rule.expr());
            out.push_str(",\"labels\":");
            string_map(out, rule.labels());
        }
    }
    out.push_str(",\"health\":");
    json::string(out, status.health.as_str());
    if let Some(e) = &status.last_error {
        out.push_str(",\"lastError\":");
        json::string(out, e);
    }
    let _ = write!(out, ",\"evaluationTime\":{}", status.eval_duration_s);
    out.push_str(",\"lastEvaluation\":\"");
    rfc3339(out, status.last_eval_ms.unwrap_or(0));
    out.push_str("\",\"type\":");
    json::string(
        out,
        match rule {
            Rule::Alerting(_) => "alerting",
            Rule::Recording(_) => "recording",
        },
    );
    out.push('}');
}

/// The filters of `/api/v1/rules`.
struct RuleFilter {
    kind: Option<String>,
    names: Vec<String>,
    groups: Vec<String>,
    files: Vec<String>,
    exclude_alerts: bool,
}

impl RuleFilter {
    fn parse(p: &Params) -> Result<RuleFilter, ApiError> {
        let kind = p.get("type").map(str::to_ascii_lowercase);
        if let Some(k) = &kind
            && k != "alert"
            && k != "record"
        {
            return Err(ApiError::bad_data(format!(
                "invalid query parameter type='{k}'"
            )));
        }
        let exclude_alerts = match p.get("exclude_alerts") {
            None | Some("") | Some("false") => false,
            Some("true") => true,
            Some(other) => {
                return Err(ApiError::bad_data(format!(
                    "parameter \"exclude_alerts\": invalid boolean {other:?}"
                )));
            }
        };
        let all = |name: &str| p.all(name).into_iter().map(str::to_owned).collect();
        Ok(RuleFilter {
            kind,
            names: all("rule_name[]"),
            groups: all("rule_group[]"),
            files: all("file[]"),
            exclude_alerts,
        })
    }

    fn group(&self, g: &Group) -> bool {
        (self.groups.is_empty() || self.groups.contains(&g.name))
            && (self.files.is_empty() || self.files.contains(&g.file))
    }

    fn rule(&self, r: &Rule) -> bool {
        let kind_ok = !matches!(
            (self.kind.as_deref(), r),
            (Some("alert"), Rule::Recording(_)) | (Some("record"), Rule::Alerting(_))
        );
        kind_ok && (self.names.is_empty() || self.names.iter().any(|n| n == r.name()))
    }
}

/// `GET /api/v1/rules?type=alert|record&rule_name[]=&rule_group[]=&file[]=&exclude_alerts=`.
pub(crate) async fn rules(
    State(state): State<Arc<ApiState>>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let p = Params::parse(q.unwrap_or_default().as_bytes());
    let filter = RuleFilter::parse(&p)?;
    let mut data = String::from("{\"groups\":[");
    let mut first_group = true;
    for shared in state.rule_groups() {
        let g = shared.snapshot();
        if !filter.group(&g) {
            continue;
        }
        let rules: Vec<(&Rule, &RuleStatus)> = g
            .rules
            .iter()
            .zip(&g.status)
            .filter(|(r, _)| filter.rule(r))
            .collect();
        // With a rule filter, groups left without rules are not listed.
        let filtered = filter.kind.is_some() || !filter.names.is_empty();
        if filtered && rules.is_empty() {
            continue;
        }
        if !first_group {
            data.push(',');
        }
        first_group = false;
        data.push_str("{\"name\":");
        json::string(&mut data, &g.name);
        data.push_str(",\"file\":");
        json::string(&mut data, &g.file);
        data.push_str(",\"rules\":[");
        for (i, (rule, status)) in rules.iter().enumerate() {
            if i > 0 {
                data.push(',');
            }
            rule_json(&mut data, rule, status, !filter.exclude_alerts);
        }
        let _ = write!(
            data,
            "],\"interval\":{},\"limit\":{},\"evaluationTime\":{},\"lastEvaluation\":\"",
            g.interval_ms as f64 / 1000.0,
            g.limit,
            g.last_duration_s
        );
        rfc3339(&mut data, g.last_eval_ms.unwrap_or(0));
        data.push_str("\"}");
    }
    data.push_str("]}");
    Ok(json_response(
        StatusCode::OK,
        json::success(&data, &[], &[]),
    ))
}

/// `GET /api/v1/alerts`: every pending and firing alert.
pub(crate) async fn alerts(State(state): State<Arc<ApiState>>) -> Response {
    let mut data = String::from("{\"alerts\":[");
    let mut first = true;
    for shared in state.rule_groups() {
        let g = shared.snapshot();
        for rule in &g.rules {
            let Rule::Alerting(a) = rule else { continue };
            for alert in active(a.alerts()) {
                if !first {
                    data.push(',');
                }
                first = false;
                alert_json(&mut data, alert);
            }
        }
    }
    data.push_str("]}");
    json_response(StatusCode::OK, json::success(&data, &[], &[]))
}

/// `GET /api/v1/alertmanagers`: the discovered Alertmanagers in use and dropped.
pub(crate) async fn alertmanagers(State(state): State<Arc<ApiState>>) -> Response {
    let sets = state
        .notifier
        .as_ref()
        .map(|n| n.sets())
        .unwrap_or_default();
    let statuses: Vec<_> = sets.iter().map(|s| s.status()).collect();
    let mut data = String::from("{\"activeAlertmanagers\":[");
    let active = statuses.iter().flat_map(|s| s.active.iter());
    for (i, url) in active.enumerate() {
        if i > 0 {
            data.push(',');
        }
        data.push_str("{\"url\":");
        json::string(&mut data, url);
        data.push('}');
    }
    data.push_str("],\"droppedAlertmanagers\":[");
    let dropped = statuses.iter().flat_map(|s| s.dropped.iter());
    for (i, labels) in dropped.enumerate() {
        if i > 0 {
            data.push(',');
        }
        // Prometheus lists a dropped Alertmanager by the URL it would have had.
        let url = format!(
            "{}://{}{}",
            labels.get("__scheme__").unwrap_or("http"),
            labels.get("__address__").unwrap_or_default(),
            labels.get("__alerts_path__").unwrap_or_default()
        );
        data.push_str("{\"url\":");
        json::string(&mut data, &url);
        data.push('}');
    }
    data.push_str("]}");
    json_response(StatusCode::OK, json::success(&data, &[], &[]))
}

/// Writes the notifier's `prometheus_notifications_*` metrics.
pub(crate) fn write_notifier_metrics(n: &kiln_rules::notify::Notifier, out: &mut Vec<u8>) {
    use kiln_exposition::{MetricType, encode_text_sample};
    use std::sync::atomic::Ordering;

    let plain = |out: &mut Vec<u8>, name: &str, help: &str, kind: MetricType, v: f64| {
        crate::self_metrics::header(out, name, help, kind);
        encode_text_sample(
            out,
            &kiln_model::Labels::from_pairs(&[("__name__", name)]),
            v,
            None,
        );
    };
    plain(
        out,
        "prometheus_notifications_dropped_total",
        "Total number of alerts dropped due to errors when sending to Alertmanager.",
        MetricType::Counter,
        n.counters.dropped.load(Ordering::Relaxed) as f64,
    );
    plain(
        out,
        "prometheus_notifications_queue_length",
        "The number of alert notifications in the queue.",
        MetricType::Gauge,
        n.queue_len() as f64,
    );
    plain(
        out,
        "prometheus_notifications_queue_capacity",
        "The capacity of the alert notifications queue.",
        MetricType::Gauge,
        n.capacity() as f64,
    );
    let active: usize = n.sets().iter().map(|s| s.status().active.len()).sum();
    plain(
        out,
        "prometheus_notifications_alertmanagers_discovered",
        "The number of alertmanagers discovered and active.",
        MetricType::Gauge,
        active as f64,
    );
    let per = n.counters.per_alertmanager.lock().clone();
    for (name, help, pick) in [
        (
            "prometheus_notifications_sent_total",
            "Total number of alerts sent.",
            0,
        ),
        (
            "prometheus_notifications_errors_total",
            "Total number of sent alerts affected by errors.",
            1,
        ),
    ] {
        crate::self_metrics::header(out, name, help, MetricType::Counter);
        for (url, (sent, errors)) in &per {
            let v = if pick == 0 { *sent } else { *errors };
            let labels =
                kiln_model::Labels::from_pairs(&[("__name__", name), ("alertmanager", url)]);
            encode_text_sample(out, &labels, v as f64, None);
        }
    }
}

/// Writes the `prometheus_rule_group_*` and `prometheus_rule_evaluation*` metrics,
/// labelled `rule_group="FILE;GROUP"` as in Prometheus.
pub(crate) fn write_metrics(groups: &[kiln_rules::SharedGroup], out: &mut Vec<u8>) {
    use kiln_exposition::{MetricType, encode_text_sample};

    type Get = fn(&Group) -> f64;
    let families: [(&str, &str, MetricType, Get); 9] = [
        (
            "prometheus_rule_evaluations_total",
            "The total number of rule evaluations.",
            MetricType::Counter,
            |g| g.counters.rule_evaluations as f64,
        ),
        (
            "prometheus_rule_evaluation_failures_total",
            "The total number of rule evaluation failures.",
            MetricType::Counter,
            |g| g.counters.rule_failures as f64,
        ),
        (
            "prometheus_rule_group_iterations_total",
            "The total number of scheduled rule group evaluations, whether executed or missed.",
            MetricType::Counter,
            |g| (g.counters.iterations + g.counters.iterations_missed) as f64,
        ),
        (
            "prometheus_rule_group_iterations_missed_total",
            "The total number of rule group evaluations missed due to slow rule group evaluation.",
            MetricType::Counter,
            |g| g.counters.iterations_missed as f64,
        ),
        (
            "prometheus_rule_group_interval_seconds",
            "The interval of a rule group.",
            MetricType::Gauge,
            |g| g.interval_ms as f64 / 1000.0,
        ),
        (
            "prometheus_rule_group_last_duration_seconds",
            "The duration of the last rule group evaluation.",
            MetricType::Gauge,
            |g| g.last_duration_s,
        ),
        (
            "prometheus_rule_group_last_evaluation_timestamp_seconds",
            "The timestamp of the last rule group evaluation in seconds.",
            MetricType::Gauge,
            |g| g.last_eval_ms.map_or(0.0, |t| t as f64 / 1000.0),
        ),
        (
            "prometheus_rule_group_last_evaluation_samples",
            "The number of samples returned during the last rule group evaluation.",
            MetricType::Gauge,
            |g| g.counters.last_samples as f64,
        ),
        (
            "prometheus_rule_group_rules",
            "The number of rules.",
            MetricType::Gauge,
            |g| g.rules.len() as f64,
        ),
    ];
    // Each group as its last evaluation left it; never waits for one in progress.
    let values: Vec<(String, Vec<f64>)> = groups
        .iter()
        .map(|g| {
            let g = g.snapshot();
            let key = format!("{};{}", g.file, g.name);
            (key, families.iter().map(|f| (f.3)(&g)).collect())
        })
        .collect();
    for (i, (name, help, kind, _)) in families.iter().enumerate() {
        crate::self_metrics::header(out, name, help, *kind);
        for (key, v) in &values {
            let labels =
                kiln_model::Labels::from_pairs(&[("__name__", *name), ("rule_group", key)]);
            encode_text_sample(out, &labels, v[i], None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alert_values_print_like_go_e_format() {
        assert_eq!(value_e(1.0), "1e+00");
        assert_eq!(value_e(15.5), "1.55e+01");
        assert_eq!(value_e(0.000123), "1.23e-04");
        assert_eq!(value_e(f64::INFINITY), "+Inf");
    }
}
