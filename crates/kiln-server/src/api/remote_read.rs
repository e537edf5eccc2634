//! `POST /api/v1/read`: the remote-read server (see `kiln_remote::read::serve` for the
//! protocol). At most a fixed number of reads run at once; more wait their turn.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use kiln_remote::read::{ReadLimits, ReadStorage};

use super::ApiState;

/// What `/api/v1/read` reads from, and its limits.
pub struct RemoteReadServer {
    pub storage: Arc<dyn ReadStorage>,
    pub limits: ReadLimits,
    /// Bounds concurrent reads (`--storage.remote.read-concurrent-limit`; 0: none).
    pub concurrency: Option<Arc<tokio::sync::Semaphore>>,
}

impl RemoteReadServer {
    pub fn new(storage: Arc<dyn ReadStorage>, limits: ReadLimits, concurrent: usize) -> Self {
        RemoteReadServer {
            storage,
            limits,
            concurrency: (concurrent > 0)
                .then(|| Arc::new(tokio::sync::Semaphore::new(concurrent))),
        }
    }
}

fn text(status: u16, message: String) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, format!("{message}\n")).into_response()
}

pub(crate) async fn read(State(state): State<Arc<ApiState>>, body: Bytes) -> Response {
    let Some(server) = state.remote_read.as_ref() else {
        return text(404, "remote read is not served".into());
    };
    let _permit = match &server.concurrency {
        Some(s) => match s.clone().acquire_owned().await {
            Ok(p) => Some(p),
            Err(_) => return text(503, "remote read is shutting down".into()),
        },
        None => None,
    };
    let storage = server.storage.clone();
    let limits = server.limits;
    let external: std::collections::BTreeMap<String, String> = state
        .external_labels()
        .iter()
        .map(|l| (l.name.to_owned(), l.value.to_owned()))
        .collect();
    let answer = tokio::task::spawn_blocking(move || {
        kiln_remote::read::serve(&body, storage.as_ref(), &external, &limits)
    })
    .await;
    match answer {
        Ok(Ok(a)) => {
            let mut resp = (StatusCode::OK, a.body).into_response();
            let h = resp.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                a.content_type
                    .parse()
                    .unwrap_or(header::HeaderValue::from_static("application/x-protobuf")),
            );
            if let Some(enc) = a.content_encoding {
                h.insert(
                    header::CONTENT_ENCODING,
                    header::HeaderValue::from_static(enc),
                );
            }
            resp
        }
        Ok(Err(e)) => {
            if e.status() >= 500 {
                tracing::error!(error = %e, "remote read failed");
            }
            text(e.status(), e.to_string())
        }
        Err(e) => text(500, format!("remote read task failed: {e}")),
    }
}
