//! A request body that must arrive by a deadline (the body half of
//! `--web.read-timeout`; hyper's header read timeout is the other half).
//!
//! hyper reads a body only as the handler asks for it, and has no timeout of its own
//! for that, so a client that announces a body and sends it slowly, or never, would
//! hold the handler (and, for remote write, a decoding slot) for as long as it likes.
//! [`DeadlineBody`] ends such a body with an error at the deadline and records that it
//! did in [`BodyDeadline::expired`], so the connection layer answers 408 whatever the
//! handler made of the error. The timer is only created when the body is not there at
//! once: bodiless requests and bodies already read cost no timer.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

/// The deadline of one request's body, shared between its body and the connection.
#[derive(Debug, Clone)]
pub(crate) struct BodyDeadline {
    at: Instant,
    timeout: Duration,
    /// Set when the body was cut off at the deadline.
    pub(crate) expired: Arc<AtomicBool>,
}

impl BodyDeadline {
    /// A deadline `timeout` from now (when the request's headers have been read).
    pub(crate) fn new(timeout: Duration) -> BodyDeadline {
        BodyDeadline {
            at: Instant::now() + timeout,
            timeout,
            expired: Arc::default(),
        }
    }
}

/// Why a body ended early.
#[derive(Debug, thiserror::Error)]
#[error("request body not received within the read timeout of {timeout:?}")]
pub(crate) struct BodyTimedOut {
    timeout: Duration,
}

/// `inner`, cut off with [`BodyTimedOut`] once its deadline passes.
pub(crate) struct DeadlineBody<B> {
    inner: B,
    deadline: BodyDeadline,
    /// Created the first time the body has to wait.
    sleep: Option<Pin<Box<Sleep>>>,
}

impl<B> DeadlineBody<B> {
    pub(crate) fn new(inner: B, deadline: BodyDeadline) -> DeadlineBody<B> {
        DeadlineBody {
            inner,
            deadline,
            sleep: None,
        }
    }
}

impl<B> Body for DeadlineBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => Poll::Ready(frame.map(|f| f.map_err(Into::into))),
            Poll::Pending => {
                let at = this.deadline.at;
                let sleep = this
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
                if sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                this.deadline.expired.store(true, Ordering::Release);
                Poll::Ready(Some(Err(Box::new(BodyTimedOut {
                    timeout: this.deadline.timeout,
                }))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
