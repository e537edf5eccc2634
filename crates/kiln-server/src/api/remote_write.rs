//! `POST /api/v1/write`: the remote-write receiver (see `kiln_remote::receive` for what
//! is checked and which status each failure gets).
//!
//! Off unless `--web.enable-remote-write-receiver` (404 with Prometheus's message), as
//! in Prometheus: a server that accepts writes from anyone who can reach it must say so.
//!
//! Memory: a request is read and decoded only while it holds one of
//! [`RemoteWriteLimits::concurrency`] decoding slots, taken before its body is read.
//! Each slot holds at most the compressed body ([`LIMITS`]`.max_body_bytes`) and its
//! decompressed form (`max_decompressed_bytes`), so all of remote write holds at most
//! `concurrency × (32 MiB + 256 MiB)` plus the decoding's working set, however many
//! senders there are. A request that finds no free slot waits up to
//! [`RemoteWriteLimits::queue_wait`] with its body unread (TCP holds the sender back),
//! then gets 503 with `Retry-After`: senders retry 5xx, so nothing is lost.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_core::Stream;
use kiln_remote::ReceiveLimits;
use tokio::sync::Semaphore;

use super::ApiState;

/// Limits of `/api/v1/write` requests.
pub const LIMITS: ReceiveLimits = ReceiveLimits {
    max_body_bytes: 32 << 20,
    max_decompressed_bytes: 256 << 20,
    max_series: 1_000_000,
};

/// How many remote-write requests are read and decoded at once, and how long others
/// wait for a turn.
#[derive(Debug, Clone, Copy)]
pub struct RemoteWriteLimits {
    /// `--storage.remote.write-concurrent-limit` (at least 1).
    pub concurrency: usize,
    /// `--storage.remote.write-queue-wait`.
    pub queue_wait: Duration,
}

impl Default for RemoteWriteLimits {
    fn default() -> Self {
        RemoteWriteLimits {
            concurrency: 10,
            queue_wait: Duration::from_secs(5),
        }
    }
}

/// The enabled receiver: where it stores, and its decoding slots.
pub(crate) struct RemoteWriteReceiver {
    storage: Arc<dyn kiln_storage::Appendable>,
    slots: Arc<Semaphore>,
    limits: RemoteWriteLimits,
}

impl RemoteWriteReceiver {
    pub(crate) fn new(
        storage: Arc<dyn kiln_storage::Appendable>,
        limits: RemoteWriteLimits,
    ) -> RemoteWriteReceiver {
        RemoteWriteReceiver {
            storage,
            slots: Arc::new(Semaphore::new(limits.concurrency.max(1))),
            limits,
        }
    }
}

fn text(status: u16, message: String) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, format!("{message}\n")).into_response()
}

/// Why a body could not be read.
enum BodyError {
    /// Past `limit` bytes.
    TooLarge { limit: usize },
    /// The connection failed or the read timeout passed (the connection layer answers
    /// 408 for the latter).
    Read(axum::Error),
}

/// Reads `body` whole, refusing it as soon as it passes `limit` bytes.
async fn read_body(body: Body, limit: usize) -> Result<Bytes, BodyError> {
    let mut stream = body.into_data_stream();
    let mut buf = Vec::new();
    while let Some(chunk) = std::future::poll_fn(|cx| Pin::new(&mut stream).poll_next(cx)).await {
        let chunk = chunk.map_err(BodyError::Read)?;
        if buf.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge { limit });
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(buf))
}

pub(crate) async fn write(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(receiver) = &state.remote_write else {
        return text(
            404,
            "remote write receiver needs to be enabled with --web.enable-remote-write-receiver"
                .into(),
        );
    };
    let get = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    let protocol = match kiln_remote::receive::check_headers(
        get(header::CONTENT_TYPE),
        get(header::CONTENT_ENCODING),
    ) {
        Ok(p) => p,
        Err(e) => return text(e.status(), e.to_string()),
    };
    if let Some(size) = get(header::CONTENT_LENGTH).and_then(|l| l.parse::<usize>().ok())
        && size > LIMITS.max_body_bytes
    {
        let e = kiln_remote::ReceiveError::BodyTooLarge {
            size,
            limit: LIMITS.max_body_bytes,
        };
        return text(e.status(), e.to_string());
    }
    let wait = receiver.limits.queue_wait;
    let Ok(Ok(slot)) = tokio::time::timeout(wait, receiver.slots.clone().acquire_owned()).await
    else {
        let mut busy = text(
            503,
            format!(
                "too many remote-write requests in progress (--storage.remote.write-concurrent-limit={}); retry later",
                receiver.limits.concurrency
            ),
        );
        let retry_after = wait.as_secs().max(1);
        busy.headers_mut()
            .insert(header::RETRY_AFTER, retry_after.into());
        return busy;
    };
    let body = match read_body(body, LIMITS.max_body_bytes).await {
        Ok(b) => b,
        Err(BodyError::TooLarge { limit }) => {
            return text(
                413,
                format!("request body of more than {limit} bytes is over the limit of {limit}"),
            );
        }
        Err(BodyError::Read(e)) => return text(400, format!("reading the request body: {e}")),
    };
    let storage = receiver.storage.clone();
    let cache_state = state.clone();
    let stored = tokio::task::spawn_blocking(move || {
        let _slot = slot;
        let mut app = storage.appender();
        kiln_remote::receive(
            app.as_mut(),
            protocol,
            &body,
            &LIMITS,
            &cache_state.remote_write_cache,
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
