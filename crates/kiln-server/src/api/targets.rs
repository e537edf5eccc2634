//! `/api/v1/targets`: the scrape targets, their health and last scrape, and the targets
//! relabeling dropped, in Prometheus's JSON.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use kiln_scrape::TargetsSnapshot;
use kiln_scrape::target::{SCRAPE_INTERVAL_LABEL, SCRAPE_TIMEOUT_LABEL};

use super::params::Params;
use super::{ApiError, ApiState, json, json_response};

/// Unix milliseconds as Go's RFC 3339 with nanoseconds writes a UTC time: trailing zeros
/// of the fraction dropped, `Z` for UTC; the zero time for 0 (never).
pub(super) fn rfc3339(out: &mut String, ms: i64) {
    if ms == 0 {
        out.push_str("0001-01-01T00:00:00Z");
        return;
    }
    let secs = ms.div_euclid(1000);
    let frac = ms.rem_euclid(1000);
    let (y, m, d) = kiln_model::calendar::civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    let _ = write!(
        out,
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    );
    if frac > 0 {
        let digits = format!("{frac:03}");
        let _ = write!(out, ".{}", digits.trim_end_matches('0'));
    }
    out.push('Z');
}

fn write_targets(snapshot: &TargetsSnapshot, state: &str, pool: Option<&str>) -> String {
    let in_pool = |p: &str| pool.is_none_or(|want| want == p);
    let mut data = String::from("{\"activeTargets\":[");
    if state != "dropped" {
        let mut first = true;
        for a in snapshot.active.iter().filter(|a| in_pool(&a.scrape_pool)) {
            if !first {
                data.push(',');
            }
            first = false;
            let t = &a.target;
            data.push_str("{\"discoveredLabels\":");
            json::labels(&mut data, t.discovered_labels());
            data.push_str(",\"labels\":");
            json::labels(&mut data, &t.series_labels());
            data.push_str(",\"scrapePool\":");
            json::string(&mut data, &a.scrape_pool);
            data.push_str(",\"scrapeUrl\":");
            json::string(&mut data, t.url());
            data.push_str(",\"globalUrl\":");
            json::string(&mut data, t.url());
            data.push_str(",\"lastError\":");
            json::string(&mut data, &a.status.last_error);
            data.push_str(",\"lastScrape\":\"");
            rfc3339(&mut data, a.status.last_scrape_ms);
            data.push_str("\",\"lastScrapeDuration\":");
            let _ = write!(data, "{}", a.status.last_scrape_duration_s);
            data.push_str(",\"health\":");
            json::string(&mut data, a.status.health.as_str());
            data.push_str(",\"scrapeInterval\":");
            json::string(
                &mut data,
                t.labels().get(SCRAPE_INTERVAL_LABEL).unwrap_or_default(),
            );
            data.push_str(",\"scrapeTimeout\":");
            json::string(
                &mut data,
                t.labels().get(SCRAPE_TIMEOUT_LABEL).unwrap_or_default(),
            );
            data.push('}');
        }
    }
    data.push_str("],\"droppedTargets\":[");
    let mut first = true;
    for (p, labels) in snapshot.dropped.iter().filter(|(p, _)| in_pool(p)) {
        if state == "active" {
            continue;
        }
        if !first {
            data.push(',');
        }
        first = false;
        data.push_str("{\"discoveredLabels\":");
        json::labels(&mut data, labels);
        data.push_str(",\"scrapePool\":");
        json::string(&mut data, p);
        data.push('}');
    }
    data.push_str("],\"droppedTargetCounts\":{");
    let counts = snapshot.dropped_counts.iter().filter(|(p, _)| in_pool(p));
    for (i, (p, n)) in counts.enumerate() {
        if i > 0 {
            data.push(',');
        }
        json::string(&mut data, p);
        let _ = write!(data, ":{n}");
    }
    data.push_str("}}");
    data
}

/// `GET /api/v1/targets?state=active|dropped|any&scrapePool=name`.
pub(crate) async fn targets(
    State(state): State<Arc<ApiState>>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let p = Params::parse(q.unwrap_or_default().as_bytes());
    let which = p.get("state").unwrap_or("any").to_ascii_lowercase();
    if !matches!(which.as_str(), "active" | "dropped" | "any") {
        return Err(ApiError::bad_data(format!(
            "invalid parameter \"state\": {which:?}"
        )));
    }
    let snapshot = state.targets_snapshot();
    let data = write_targets(&snapshot, &which, p.get("scrapePool"));
    Ok(json_response(
        StatusCode::OK,
        json::success(&data, &[], &[]),
    ))
}

/// Writes `prometheus_target_scrape_pool_targets` (active targets per job),
/// `prometheus_sd_discovered_targets` (what discovery gave each job, dropped included)
/// and the counters of scraped samples the storage refused, by reason.
pub(crate) fn write_metrics(snapshot: &TargetsSnapshot, out: &mut Vec<u8>) {
    use kiln_exposition::{MetricType, encode_text_sample};
    use std::collections::BTreeMap;

    let mut active: BTreeMap<&str, usize> = BTreeMap::new();
    for t in &snapshot.active {
        *active.entry(t.scrape_pool.as_str()).or_default() += 1;
    }
    let mut discovered = active.clone();
    for (pool, n) in &snapshot.dropped_counts {
        *discovered.entry(pool.as_str()).or_default() += n;
    }
    let families = [
        (
            "prometheus_target_scrape_pool_targets",
            "Current number of targets in this scrape pool.",
            "scrape_job",
            &active,
        ),
        (
            "prometheus_sd_discovered_targets",
            "Current number of discovered targets.",
            "config",
            &discovered,
        ),
    ];
    let refused = [
        (
            "prometheus_target_scrapes_sample_out_of_bounds_total",
            "Total number of samples rejected due to timestamp falling outside of the time bounds.",
            snapshot.rejected_out_of_bounds,
        ),
        (
            "prometheus_target_scrapes_sample_out_of_order_total",
            "Total number of samples rejected due to not being out of the expected order.",
            snapshot.rejected_out_of_order,
        ),
        (
            "prometheus_target_scrapes_sample_duplicate_timestamp_total",
            "Total number of samples rejected due to duplicate timestamps but different values.",
            snapshot.rejected_duplicate_timestamp,
        ),
    ];
    for (name, help, n) in refused {
        crate::self_metrics::family(out, name, help, MetricType::Counter, n as f64);
    }
    for (name, help, label, counts) in families {
        crate::self_metrics::header(out, name, help, MetricType::Gauge);
        for (job, n) in counts {
            let mut pairs = vec![("__name__", name), (label, job)];
            if name == "prometheus_sd_discovered_targets" {
                pairs.push(("name", "scrape"));
            }
            encode_text_sample(
                out,
                &kiln_model::Labels::from_pairs(&pairs),
                *n as f64,
                None,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_like_go() {
        for (ms, want) in [
            (0, "0001-01-01T00:00:00Z"),
            (1_767_225_600_000, "2026-01-01T00:00:00Z"),
            (1_767_225_600_120, "2026-01-01T00:00:00.12Z"),
            (1_767_225_661_001, "2026-01-01T00:01:01.001Z"),
        ] {
            let mut s = String::new();
            rfc3339(&mut s, ms);
            assert_eq!(s, want);
        }
    }
}
