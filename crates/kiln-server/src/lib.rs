//! Kiln's HTTP server.
//!
//! Module map:
//! - [`api`]: the Prometheus HTTP API under `/api/v1` (queries, series, labels, build
//!   information), JSON exactly as Prometheus writes it.
//! - [`federate`]: `/federate`, the newest samples of selected series as text exposition.
//! - [`self_metrics`]: `/metrics`, Kiln's own metrics under Prometheus's names.
//! - [`tsdb_metrics`]: the storage engine's part of `/metrics` (`prometheus_tsdb_*`).
//! - [`server_metrics`]: the request and query metrics the router and handlers keep.
//! - `landing`: `/`, a page saying what the server answers until the web UI lands.
//! - [`connections`]: the accept loop: connection limit, read timeouts, the health
//!   checks' reserve; `body_deadline`: the request-body half of the read timeout.
//! - this file: the router, health and lifecycle endpoints (`/-/healthy`, `/-/ready`,
//!   `/-/reload`) and [`serve`].
//!
//! Handlers are async; the query engine and storage are synchronous and run on tokio's
//! blocking pool, never on the async workers. Work proportional to a result's size
//! (encoding a query's JSON) runs there too, so the async workers only move bytes and
//! `/-/healthy` and `/-/ready` (answered on them, with no lock and no allocation
//! beyond the response) never wait behind a query.

pub mod api;
mod body_deadline;
pub mod connections;
pub mod federate;
mod landing;
pub mod self_metrics;
pub mod server_metrics;
pub mod tsdb_metrics;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{get, post};

pub use api::{
    ApiState, ReloadSender, RemoteReadServer, RemoteWriteLimits, RuntimeInfo, SelfMetricsWriter,
};
pub use connections::ConnectionLimits;

/// `/-/healthy` and `/-/ready`: constant answers, so that they depend on nothing but
/// the connection (see [`connections`] for the reserve that serves them when every
/// connection slot is taken).
pub(crate) fn health_routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/-/healthy", get(|| async { "Kiln is Healthy.\n" }))
        .route("/-/ready", get(|| async { "Kiln is Ready.\n" }))
}

/// The router with every endpoint.
pub fn router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route("/api/v1/query", get(api::query).post(api::query))
        .route(
            "/api/v1/query_range",
            get(api::query_range).post(api::query_range),
        )
        .route("/api/v1/series", get(api::series).post(api::series))
        .route("/api/v1/labels", get(api::labels).post(api::labels))
        .route("/api/v1/label/{name}/values", get(api::label_values))
        .route(
            "/api/v1/format_query",
            get(api::format_query).post(api::format_query),
        )
        .route("/api/v1/status/buildinfo", get(api::buildinfo))
        .route("/api/v1/status/config", get(api::status_config))
        .route("/api/v1/status/flags", get(api::flags))
        .route("/api/v1/status/runtimeinfo", get(api::runtimeinfo))
        .route("/api/v1/status/tsdb", get(api::tsdb_status))
        .route("/api/v1/targets", get(api::targets))
        .route("/api/v1/rules", get(api::rules))
        .route("/api/v1/alerts", get(api::alerts))
        .route("/api/v1/alertmanagers", get(api::alertmanagers))
        .route("/api/v1/write", post(api::remote_write))
        .route("/api/v1/read", post(api::remote_read))
        .route("/api/v1/metadata", get(api::metadata))
        .route(
            "/api/v1/admin/tsdb/snapshot",
            post(api::snapshot).put(api::snapshot),
        )
        .route(
            "/api/v1/admin/tsdb/delete_series",
            post(api::delete_series).put(api::delete_series),
        )
        .route(
            "/api/v1/admin/tsdb/clean_tombstones",
            post(api::clean_tombstones).put(api::clean_tombstones),
        )
        .route(
            "/federate",
            get(federate::federate).post(federate::federate),
        )
        .route("/metrics", get(api::metrics))
        .route("/-/reload", post(api::reload).put(api::reload))
        .route("/", get(landing::landing))
        .fallback(landing::not_found)
        .merge(health_routes())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            count_request,
        ))
        .with_state(state)
}

/// Counts every request by route pattern and status, with its duration.
async fn count_request(State(state): State<Arc<ApiState>>, req: Request, next: Next) -> Response {
    let handler = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("other", |p| p.as_str())
        .to_owned();
    let started = std::time::Instant::now();
    let resp = next.run(req).await;
    state
        .metrics
        .observe_request(&handler, resp.status().as_u16(), started.elapsed());
    resp
}

/// Serves only `/metrics` (from `writer`) and the health endpoints, for components with
/// no query API (the compactor), until `shutdown` completes.
pub async fn serve_metrics_only(
    listener: tokio::net::TcpListener,
    writer: SelfMetricsWriter,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let metrics = move || {
        let writer = writer.clone();
        async move {
            let out = tokio::task::spawn_blocking(move || {
                let mut out = Vec::new();
                writer(&mut out);
                out
            })
            .await
            .unwrap_or_default();
            (
                [(
                    axum::http::header::CONTENT_TYPE,
                    kiln_exposition::Format::Text004.content_type(),
                )],
                out,
            )
        }
    };
    let app = Router::new()
        .route("/metrics", get(metrics))
        .merge(health_routes())
        .fallback(landing::not_found);
    connections::serve_connections(listener, app, ConnectionLimits::default(), shutdown).await
}

/// Serves the API on `listener` within `limits` until `shutdown` completes, then
/// finishes the requests in flight.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<ApiState>,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    connections::serve_connections(listener, router(state), limits, shutdown).await
}
