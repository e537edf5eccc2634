//! Accepting and serving HTTP connections: the connection limit, read timeouts, and a
//! reserve of connections for health checks.
//!
//! What a connection may hold, and for how long (Prometheus's `--web.read-timeout` and
//! `--web.max-connections`):
//! - The request line and headers must arrive within the read timeout, counted from the
//!   moment the server starts waiting for them: on a new connection, and after each
//!   answer on a keep-alive connection. So a connection that sends nothing, stops in
//!   the middle of its headers, or sits idle between requests is closed after the read
//!   timeout.
//! - The body must arrive within the read timeout of the headers (the crate's
//!   `body_deadline` module); a late body is answered 408 and the connection closed.
//! - At most `max_connections` connections are served at once. Beyond that, a small
//!   reserve of [`HEALTH_RESERVE`] more connections is accepted with a short header
//!   timeout ([`RESERVE_READ_TIMEOUT`]) and no keep-alive, and answers only
//!   `/-/healthy` and `/-/ready` (anything else: 503): a server whose slots are all
//!   held by idle or slow clients still tells its health checks that it is alive,
//!   instead of leaving them in the accept queue until a slot frees as Prometheus
//!   does. When the reserve is taken too, new connections wait in the kernel's accept
//!   queue, as in Prometheus.
//!
//! Slots are tokio semaphore permits acquired before `accept` and held by the
//! connection's task until it ends, so the count is exact whatever way a connection
//! ends. Shutdown stops accepting, asks every connection to finish its request in
//! flight (idle ones close at once), and waits for them.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tower_service::Service as _;

use crate::body_deadline::{BodyDeadline, DeadlineBody};

/// Connections accepted beyond `max_connections` that answer only health checks.
pub const HEALTH_RESERVE: usize = 8;

/// The header read timeout of a reserve connection (or the read timeout, if shorter):
/// a health check sends its request at once.
pub const RESERVE_READ_TIMEOUT: Duration = Duration::from_secs(2);

/// How connections are limited; `Default` gives Prometheus's defaults.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// `--web.read-timeout`: how long the server waits for a request's headers (on a
    /// new or an idle keep-alive connection) and, after them, for its body.
    pub read_timeout: Duration,
    /// `--web.max-connections`: connections served at once (at least 1), the health
    /// reserve not counted.
    pub max_connections: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            read_timeout: Duration::from_secs(5 * 60),
            max_connections: 512,
        }
    }
}

/// Which slot a connection holds.
enum Slot {
    /// One of `max_connections`: the whole API.
    Full(OwnedSemaphorePermit),
    /// One of the [`HEALTH_RESERVE`]: health checks only.
    Reserve(OwnedSemaphorePermit),
}

/// Serves `app` on `listener` within `limits` until `shutdown` completes, then lets
/// the requests in flight finish.
pub async fn serve_connections(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let full = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let reserve = Arc::new(Semaphore::new(HEALTH_RESERVE));
    let health = health_only();
    let (stop_tx, stop_rx) = watch::channel(false);
    // Every connection task holds a clone of `open_rx`; `open_tx.closed()` completes
    // when the last one ends.
    let (open_tx, open_rx) = watch::channel(());
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            biased;
            () = &mut shutdown => break,
            p = full.clone().acquire_owned() => match p {
                Ok(p) => Slot::Full(p),
                Err(_) => break,
            },
            p = reserve.clone().acquire_owned() => match p {
                Ok(p) => Slot::Reserve(p),
                Err(_) => break,
            },
        };
        let (stream, _) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    accept_failed(&e).await;
                    continue;
                }
            },
        };
        // A full slot may have freed while this one waited in `accept`.
        let slot = match slot {
            Slot::Reserve(r) => match full.clone().try_acquire_owned() {
                Ok(p) => {
                    drop(r);
                    Slot::Full(p)
                }
                Err(_) => Slot::Reserve(r),
            },
            full_slot => full_slot,
        };
        let task = ConnectionTask {
            stream,
            limits,
            stop: stop_rx.clone(),
            open: open_rx.clone(),
        };
        match slot {
            Slot::Full(permit) => {
                tokio::spawn(task.run(app.clone(), false, permit));
            }
            Slot::Reserve(permit) => {
                tokio::spawn(task.run(health.clone(), true, permit));
            }
        }
    }
    let _ = stop_tx.send(true);
    drop(open_rx);
    open_tx.closed().await;
    Ok(())
}

/// An accept error: a connection that failed before it was accepted is nothing to
/// report; running out of file descriptors (or memory) is, and waiting a little gives
/// connections time to close before the next try.
async fn accept_failed(e: &std::io::Error) {
    use std::io::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::ConnectionRefused | ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(component = "web", err = %e, "Accepting a connection failed");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// One accepted connection and what it needs to be served.
struct ConnectionTask {
    stream: TcpStream,
    limits: ConnectionLimits,
    stop: watch::Receiver<bool>,
    /// Held until the connection ends (see [`serve_connections`]).
    open: watch::Receiver<()>,
}

impl ConnectionTask {
    /// Serves the connection with `app` until it closes; `permit` is its slot.
    async fn run(mut self, app: Router, reserve: bool, permit: OwnedSemaphorePermit) {
        // Answers are written whole; waiting for more to send only delays them.
        let _ = self.stream.set_nodelay(true);
        let read_timeout = self.limits.read_timeout;
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder.timer(TokioTimer::new());
        if reserve {
            builder
                .keep_alive(false)
                .header_read_timeout(read_timeout.min(RESERVE_READ_TIMEOUT));
        } else {
            builder.header_read_timeout(read_timeout);
        }
        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
            let mut app = app.clone();
            let deadline = BodyDeadline::new(read_timeout);
            let req = req.map(|b| Body::new(DeadlineBody::new(b, deadline.clone())));
            async move {
                let response = app.call(req).await?;
                if deadline.expired.load(Ordering::Acquire) {
                    return Ok::<_, Infallible>(body_timed_out(read_timeout));
                }
                Ok(response)
            }
        });
        let conn = builder.serve_connection(TokioIo::new(self.stream), service);
        tokio::pin!(conn);
        let mut stopping = false;
        loop {
            tokio::select! {
                served = conn.as_mut() => {
                    if let Err(e) = served {
                        tracing::debug!(component = "web", err = %e, "Connection ended with an error");
                    }
                    break;
                }
                changed = self.stop.changed(), if !stopping => {
                    if changed.is_err() || *self.stop.borrow() {
                        stopping = true;
                        conn.as_mut().graceful_shutdown();
                    }
                }
            }
        }
        drop(permit);
        drop(self.open);
    }
}

/// The answer to a request whose body did not arrive in time; the connection closes,
/// since the rest of the body may still come.
fn body_timed_out(read_timeout: Duration) -> Response {
    (
        StatusCode::REQUEST_TIMEOUT,
        [(header::CONNECTION, "close")],
        format!(
            "request body not received within the read timeout ({}s, --web.read-timeout)\n",
            read_timeout.as_secs_f64()
        ),
    )
        .into_response()
}

/// The router of reserve connections: health checks, and 503 for anything else.
fn health_only() -> Router {
    crate::health_routes().fallback(|| async {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONNECTION, "close")],
            "too many open connections (--web.max-connections): only /-/healthy and /-/ready are answered now\n",
        )
    })
}
