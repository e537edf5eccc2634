//! `/api/v1/status/tsdb`: head statistics and its largest cardinality contributors.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use kiln_tsdb::head::Stat;

use super::params::Params;
use super::{ApiError, ApiState, blocking, json, json_response};

fn stats(out: &mut String, key: &str, list: &[Stat]) {
    let _ = write!(out, ",\"{key}\":[");
    for (i, s) in list.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"name\":");
        json::string(out, &s.name);
        let _ = write!(out, ",\"value\":{}}}", s.value);
    }
    out.push(']');
}

/// `GET /api/v1/status/tsdb?limit=N` (default 10).
pub(crate) async fn tsdb_status(
    State(state): State<Arc<ApiState>>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let p = Params::parse(q.unwrap_or_default().as_bytes());
    let limit = match p.get("limit") {
        None => 10,
        Some(v) => match v.parse::<usize>() {
            Ok(n) if n > 0 => n,
            _ => {
                return Err(ApiError::bad_data(format!(
                    "invalid parameter \"limit\": limit must be a positive number, got {v:?}"
                )));
            }
        },
    };
    let Some(db) = state.tsdb.clone() else {
        return Err(ApiError::unavailable("no local TSDB"));
    };
    let c = blocking(move || Ok(db.head().cardinality(limit))).await?;
    let mut data = String::from("{\"headStats\":{");
    let _ = write!(
        data,
        "\"numSeries\":{},\"chunkCount\":{},\"minTime\":{},\"maxTime\":{}}}",
        c.num_series,
        c.chunk_count,
        c.min_time.unwrap_or(i64::MAX),
        c.max_time.unwrap_or(i64::MIN)
    );
    stats(
        &mut data,
        "seriesCountByMetricName",
        &c.series_count_by_metric_name,
    );
    stats(
        &mut data,
        "labelValueCountByLabelName",
        &c.label_value_count_by_label_name,
    );
    stats(
        &mut data,
        "memoryInBytesByLabelName",
        &c.memory_in_bytes_by_label_name,
    );
    stats(
        &mut data,
        "seriesCountByLabelValuePair",
        &c.series_count_by_label_value_pair,
    );
    data.push('}');
    Ok(json_response(
        StatusCode::OK,
        json::success(&data, &[], &[]),
    ))
}
