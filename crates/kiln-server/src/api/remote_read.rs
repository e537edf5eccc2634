//! `POST /api/v1/read`: the remote-read server (see `kiln_remote::read::serve` for the
//! protocol). At most a fixed number of reads run at once; more wait their turn.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use kiln_remote::read::{ReadError, ReadLimits, ReadPlan, ReadStorage, STREAMED_CONTENT_TYPE};

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
    let plan = match ReadPlan::decode(&body) {
        Ok(p) => p,
        Err(e) => return text(e.status(), e.to_string()),
    };
    let permit = match &server.concurrency {
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
    if plan.is_streamed() {
        return streamed(plan, storage, external, limits, permit).await;
    }
    let answer = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        plan.answer_samples(storage.as_ref(), &external, &limits)
    })
    .await;
    match answer {
        Ok(Ok(a)) => {
            let mut resp = (StatusCode::OK, a.body).into_response();
            let h = resp.headers_mut();
            h.insert(header::CONTENT_TYPE, content_type(a.content_type));
            if let Some(enc) = a.content_encoding {
                h.insert(
                    header::CONTENT_ENCODING,
                    header::HeaderValue::from_static(enc),
                );
            }
            resp
        }
        Ok(Err(e)) => failed(&e),
        Err(e) => text(500, format!("remote read task failed: {e}")),
    }
}

/// Frames of a streamed answer in flight between the reading thread and the client.
const FRAMES_IN_FLIGHT: usize = 4;

/// A streamed answer: frames go out as the reading thread produces them (it waits
/// while [`FRAMES_IN_FLIGHT`] are unsent), holding the concurrency permit until the
/// last. An error before the first frame is an error status; after it, the
/// connection is cut, as the status line is gone.
async fn streamed(
    plan: ReadPlan,
    storage: Arc<dyn ReadStorage>,
    external: std::collections::BTreeMap<String, String>,
    limits: ReadLimits,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
) -> Response {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, ReadError>>(FRAMES_IN_FLIGHT);
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let mut sent_any = false;
        let mut send = |frame: Vec<u8>| {
            sent_any = true;
            tx.blocking_send(Ok(frame)).map_err(|_| ReadError::Gone)
        };
        if let Err(e) = plan.answer_streamed(storage.as_ref(), &external, &limits, &mut send)
            && !matches!(e, ReadError::Gone)
        {
            if sent_any {
                // The status line is gone: the client only sees the connection cut.
                tracing::error!(err = %e, "streamed remote read failed midway");
            }
            let _ = tx.blocking_send(Err(e));
        }
    });
    let first = match rx.recv().await {
        Some(Err(e)) => return failed(&e),
        first => first.and_then(Result::ok),
    };
    let mut resp = Response::new(axum::body::Body::from_stream(Frames { first, rx }));
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, content_type(STREAMED_CONTENT_TYPE));
    resp
}

fn content_type(value: &str) -> header::HeaderValue {
    value
        .parse()
        .unwrap_or(header::HeaderValue::from_static("application/x-protobuf"))
}

fn failed(e: &ReadError) -> Response {
    if e.status() >= 500 {
        tracing::error!(err = %e, "remote read failed");
    }
    text(e.status(), e.to_string())
}

/// The frames of a streamed answer as a body stream.
struct Frames {
    first: Option<Vec<u8>>,
    rx: tokio::sync::mpsc::Receiver<Result<Vec<u8>, ReadError>>,
}

impl futures_core::Stream for Frames {
    type Item = Result<Bytes, ReadError>;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if let Some(frame) = this.first.take() {
            return std::task::Poll::Ready(Some(Ok(Bytes::from(frame))));
        }
        this.rx
            .poll_recv(cx)
            .map(|next| next.map(|r| r.map(Bytes::from)))
    }
}
