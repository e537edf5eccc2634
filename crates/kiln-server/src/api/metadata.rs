//! `/api/v1/metadata`: the type, help and unit of each metric family, as the scraped
//! targets expose them.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use kiln_scrape::FamilyMetadata;

use super::params::Params;
use super::{ApiError, ApiState, json, json_response};

fn limit(p: &Params, name: &str) -> Result<Option<usize>, ApiError> {
    match p.get(name) {
        None => Ok(None),
        Some(v) => match v.parse::<i64>() {
            // Prometheus: a negative or zero limit means no limit.
            Ok(n) if n > 0 => Ok(Some(n as usize)),
            Ok(_) => Ok(None),
            Err(_) => Err(ApiError::bad_data(format!(
                "invalid parameter {name:?}: {v:?} is not a number"
            ))),
        },
    }
}

/// `GET /api/v1/metadata?metric=name&limit=N&limit_per_metric=N`.
pub(crate) async fn metadata(
    State(state): State<Arc<ApiState>>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let p = Params::parse(q.unwrap_or_default().as_bytes());
    let metric = p.get("metric").filter(|m| !m.is_empty());
    let limit_metrics = limit(&p, "limit")?;
    let limit_per_metric = limit(&p, "limit_per_metric")?;
    let snapshot = state.targets_snapshot();
    // Family name -> distinct metadata, in the order first seen.
    let mut all: BTreeMap<&str, Vec<&FamilyMetadata>> = BTreeMap::new();
    for target in &snapshot.active {
        for (name, meta) in target.status.metadata.iter() {
            if metric.is_some_and(|m| m != name) {
                continue;
            }
            let entries = all.entry(name).or_default();
            if !entries.contains(&meta) {
                entries.push(meta);
            }
        }
    }
    let mut data = String::from("{");
    for (i, (name, entries)) in all
        .iter()
        .take(limit_metrics.unwrap_or(usize::MAX))
        .enumerate()
    {
        if i > 0 {
            data.push(',');
        }
        json::string(&mut data, name);
        data.push_str(":[");
        for (j, m) in entries
            .iter()
            .take(limit_per_metric.unwrap_or(usize::MAX))
            .enumerate()
        {
            if j > 0 {
                data.push(',');
            }
            data.push_str("{\"type\":");
            json::string(&mut data, m.kind.as_str());
            data.push_str(",\"help\":");
            json::string(&mut data, &m.help);
            data.push_str(",\"unit\":");
            json::string(&mut data, &m.unit);
            data.push('}');
        }
        data.push(']');
    }
    data.push('}');
    Ok(json_response(
        StatusCode::OK,
        json::success(&data, &[], &[]),
    ))
}
