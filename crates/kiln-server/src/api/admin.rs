//! The TSDB admin API (`/api/v1/admin/tsdb/*`), served only with
//! `--web.enable-admin-api` as in Prometheus: snapshots, series deletion and tombstone
//! cleanup. Without the flag each endpoint answers 503 `admin APIs disabled`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::{ApiError, ApiState, blocking, json, json_response, params, selectors, time_range};

/// The TSDB the admin API works on, when it is enabled.
fn admin_db(state: &ApiState) -> Result<Arc<kiln_tsdb::db::Db>, ApiError> {
    if !state.admin_enabled {
        return Err(ApiError::unavailable("admin APIs disabled"));
    }
    state
        .tsdb
        .clone()
        .ok_or_else(|| ApiError::unavailable("no local TSDB to administer"))
}

/// `POST|PUT /api/v1/admin/tsdb/snapshot?skip_head=<bool>`: writes every block (and,
/// unless `skip_head`, the head as a block) under `<data>/snapshots/<name>` and answers
/// `{"name": "<name>"}`. Names are the UTC time and a random suffix, as Prometheus's.
pub(crate) async fn snapshot(
    State(state): State<Arc<ApiState>>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let db = admin_db(&state)?;
    let p = params(q, &headers, &body);
    let skip_head = match p.get("skip_head") {
        None | Some("") => false,
        Some(v) => parse_bool(v).ok_or_else(|| {
            ApiError::bad_data(format!(
                "unable to parse boolean 'skip_head' argument: {v:?}"
            ))
        })?,
    };
    let name = snapshot_name(super::now_ms());
    let dir = db.dir().join("snapshots").join(&name);
    blocking(move || {
        db.snapshot(&dir, skip_head)
            .map_err(|e| ApiError::internal(format!("create snapshot: {e}")))
    })
    .await?;
    let mut data = String::from("{\"name\":");
    json::string(&mut data, &name);
    data.push('}');
    Ok(json_response(
        StatusCode::OK,
        json::success(&data, &[], &[]),
    ))
}

/// `POST|PUT /api/v1/admin/tsdb/delete_series?match[]=...&start=...&end=...`: marks
/// the matching samples deleted (they disappear from queries at once and from disk at
/// the next compaction or `clean_tombstones`). 204 on success.
pub(crate) async fn delete_series(
    State(state): State<Arc<ApiState>>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let db = admin_db(&state)?;
    let p = params(q, &headers, &body);
    let sets = selectors(&p)?;
    if sets.is_empty() {
        return Err(ApiError::bad_data("no match[] parameter provided"));
    }
    let (start, end) = time_range(&p)?;
    blocking(move || {
        for matchers in &sets {
            db.delete(start, end, matchers)
                .map_err(|e| ApiError::internal(format!("delete series: {e}")))?;
        }
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST|PUT /api/v1/admin/tsdb/clean_tombstones`: rewrites blocks with deletions
/// without the deleted data. 204 on success.
pub(crate) async fn clean_tombstones(
    State(state): State<Arc<ApiState>>,
) -> Result<Response, ApiError> {
    let db = admin_db(&state)?;
    blocking(move || {
        db.clean_tombstones()
            .map_err(|e| ApiError::internal(format!("clean tombstones: {e}")))
    })
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `20261126T130500Z-<16 random hex digits>`: sorts by time, and two snapshots in one
/// second do not collide.
fn snapshot_name(now_ms: i64) -> String {
    use std::hash::{BuildHasher, Hasher};
    let secs = now_ms.div_euclid(1000);
    let (y, mo, d) = kiln_model::calendar::civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    // RandomState is seeded randomly per process and per instance.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_i64(now_ms);
    format!(
        "{y:04}{mo:02}{d:02}T{:02}{:02}{:02}Z-{:016x}",
        s / 3600,
        s / 60 % 60,
        s % 60,
        h.finish()
    )
}

/// Go's `strconv.ParseBool`.
fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}
