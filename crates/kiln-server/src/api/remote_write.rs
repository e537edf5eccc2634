//! `POST /api/v1/write`: the remote-write receiver (see `kiln_remote::receive` for what
//! is checked and which status each failure gets).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use kiln_remote::ReceiveLimits;

use super::ApiState;

/// Limits of `/api/v1/write` requests.
pub const LIMITS: ReceiveLimits = ReceiveLimits {
    max_body_bytes: 32 << 20,
    max_decompressed_bytes: 256 << 20,
    max_series: 1_000_000,
};

fn text(status: u16, message: String) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, format!("{message}\n")).into_response()
}

pub(crate) async fn write(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(storage) = state.remote_write.clone() else {
        return text(404, "remote write receiver not enabled".into());
    };
    let get = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    let protocol = match kiln_remote::receive::check_headers(
        get(header::CONTENT_TYPE),
        get(header::CONTENT_ENCODING),
    ) {
        Ok(p) => p,
        Err(e) => return text(e.status(), e.to_string()),
    };
    let stored = tokio::task::spawn_blocking(move || {
        let mut app = storage.appender();
        kiln_remote::receive(
            app.as_mut(),
            protocol,
            &body,
            &LIMITS,
            &state.remote_write_cache,
        )
    })
    .await;
    let (mut response, samples) = match stored {
        Ok(Ok(stats)) => (StatusCode::NO_CONTENT.into_response(), stats.samples),
        Ok(Err(e)) => {
            if e.status() >= 500 {
                tracing::error!(err = %e, "storing a remote-write request failed");
            }
            (text(e.status(), e.to_string()), 0)
        }
        Err(e) => (text(500, format!("remote write task failed: {e}")), 0),
    };
    if protocol == kiln_remote::Protocol::V2 {
        // 2.0 senders learn what was written (nothing, when the request failed).
        let h = response.headers_mut();
        h.insert("X-Prometheus-Remote-Write-Samples-Written", samples.into());
        h.insert("X-Prometheus-Remote-Write-Histograms-Written", 0.into());
        h.insert("X-Prometheus-Remote-Write-Exemplars-Written", 0.into());
    }
    response
}
