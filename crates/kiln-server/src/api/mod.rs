//! The Prometheus HTTP API, `/api/v1`: expression queries, series and label metadata,
//! build information. Response JSON follows the reference format exactly
//! (see [`json`]); errors carry Prometheus's `errorType` and HTTP status.

mod admin;
mod json;
mod metadata;
mod params;
mod remote_read;
mod remote_write;
mod rules;
mod runtime;
mod targets;
mod tsdb_status;

pub(crate) use admin::{clean_tombstones, delete_series, snapshot};
pub(crate) use metadata::metadata;
pub use remote_read::RemoteReadServer;
pub(crate) use remote_read::read as remote_read;
pub use remote_write::LIMITS as REMOTE_WRITE_LIMITS;
pub use remote_write::RemoteWriteLimits;
pub(crate) use remote_write::write as remote_write;
pub(crate) use rules::{alertmanagers, alerts, rules};
pub use runtime::RuntimeInfo;
pub(crate) use runtime::runtimeinfo;
pub(crate) use targets::targets;
pub(crate) use tsdb_status::tsdb_status;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use kiln_model::{Labels, Matcher, parse_selector};
use kiln_promql::{Engine, EngineOptions, QueryError, QueryErrorKind};
use kiln_storage::{Queryable, StorageError};

use params::{MAX_TIME, MIN_TIME, Params, parse_duration, parse_time};

/// What the API serves from.
pub struct ApiState {
    pub storage: Arc<dyn Queryable>,
    pub engine: Engine,
    /// `--query.max-concurrency` slots for API queries, awaited asynchronously (see
    /// `evaluate`).
    query_slots: Arc<tokio::sync::Semaphore>,
    /// The running configuration's external labels and YAML; replaced on reload.
    loaded: std::sync::RwLock<LoadedConfig>,
    /// Where `/-/reload` sends its requests; `None` unless `--web.enable-lifecycle`.
    pub reload: Option<ReloadSender>,
    /// Writes the server's own metrics for `/metrics` (text format).
    pub self_metrics: Option<SelfMetricsWriter>,
    /// The scrape targets, for `/api/v1/targets`.
    pub targets: Option<kiln_scrape::TargetsView>,
    /// The rule groups, for `/api/v1/rules` and `/api/v1/alerts`.
    pub rules: Option<kiln_rules::RulesView>,
    /// Series the remote-write receiver has seen (see `kiln_remote::SeriesCache`).
    pub remote_write_cache: kiln_remote::SeriesCache,
    /// What `/api/v1/read` serves; `None`: 404.
    pub remote_read: Option<RemoteReadServer>,
    /// The remote-write receiver (`--web.enable-remote-write-receiver`); `None`:
    /// `/api/v1/write` answers 404.
    remote_write: Option<remote_write::RemoteWriteReceiver>,
    /// The Alertmanager notifier, for `/api/v1/alertmanagers` and `/metrics`.
    pub notifier: Option<Arc<kiln_rules::notify::Notifier>>,
    /// The command-line flags with their values, for `/api/v1/status/flags`.
    pub flags: Vec<(String, String)>,
    /// For `/api/v1/status/runtimeinfo`.
    pub runtime: RuntimeInfo,
    /// The local TSDB, for `/api/v1/status/tsdb`.
    pub tsdb: Option<Arc<kiln_tsdb::db::Db>>,
    /// Request and query metrics for `/metrics`.
    pub metrics: crate::server_metrics::ServerMetrics,
    /// Whether `/api/v1/admin/*` works (`--web.enable-admin-api`).
    pub admin_enabled: bool,
    /// What a query with `max_source_resolution` reads (a store with downsampled data);
    /// `None`: the parameter is accepted and ignored, as Prometheus ignores it.
    resolutions: Option<ResolutionStorage>,
}

/// The storage seen at a maximum resolution, ms per sample (0: raw data).
pub type ResolutionStorage = Arc<dyn Fn(i64) -> Arc<dyn Queryable> + Send + Sync>;

/// What the API needs of the running configuration.
#[derive(Default)]
struct LoadedConfig {
    /// `global.external_labels`, added by `/federate` to series that lack them.
    external_labels: Labels,
    /// For `/api/v1/status/config`.
    yaml: String,
}

/// A configuration reload request: the reply says whether it worked.
pub type ReloadSender = tokio::sync::mpsc::Sender<tokio::sync::oneshot::Sender<Result<(), String>>>;

/// Writes a text-format exposition of the server's own metrics.
pub type SelfMetricsWriter = Arc<dyn Fn(&mut Vec<u8>) + Send + Sync>;

impl ApiState {
    pub fn new(storage: Arc<dyn Queryable>, engine_opts: EngineOptions) -> Self {
        ApiState {
            storage,
            query_slots: Arc::new(tokio::sync::Semaphore::new(
                engine_opts.max_concurrency.max(1),
            )),
            engine: Engine::new(engine_opts),
            loaded: std::sync::RwLock::new(LoadedConfig::default()),
            reload: None,
            self_metrics: None,
            targets: None,
            rules: None,
            notifier: None,
            remote_write: None,
            remote_read: None,
            remote_write_cache: kiln_remote::SeriesCache::default(),
            flags: Vec::new(),
            runtime: RuntimeInfo::new(String::new()),
            tsdb: None,
            metrics: crate::server_metrics::ServerMetrics::default(),
            admin_enabled: false,
            resolutions: None,
        }
    }

    /// The scrape targets now (none when the server does not scrape).
    pub(crate) fn targets_snapshot(&self) -> kiln_scrape::TargetsSnapshot {
        self.targets
            .as_ref()
            .map(|v| v.snapshot())
            .unwrap_or_default()
    }

    /// The running rule groups (none without a rule manager).
    pub(crate) fn rule_groups(&self) -> Vec<kiln_rules::SharedGroup> {
        self.rules.as_ref().map(|v| v.groups()).unwrap_or_default()
    }

    /// Sets where `/api/v1/rules` and `/api/v1/alerts` read the rule groups.
    pub fn with_rules(mut self, rules: kiln_rules::RulesView) -> Self {
        self.rules = Some(rules);
        self
    }

    /// Enables the remote-write receiver, storing into `storage` within `limits`.
    pub fn with_remote_write(
        mut self,
        storage: Arc<dyn kiln_storage::Appendable>,
        limits: RemoteWriteLimits,
    ) -> Self {
        self.remote_write = Some(remote_write::RemoteWriteReceiver::new(storage, limits));
        self
    }

    /// Serves `/api/v1/read` with `server`.
    pub fn with_remote_read(mut self, server: RemoteReadServer) -> Self {
        self.remote_read = Some(server);
        self
    }

    /// Sets the notifier `/api/v1/alertmanagers` describes.
    pub fn with_notifier(mut self, notifier: Arc<kiln_rules::notify::Notifier>) -> Self {
        self.notifier = Some(notifier);
        self
    }

    /// Sets where `/api/v1/targets` reads the targets.
    pub fn with_targets(mut self, targets: kiln_scrape::TargetsView) -> Self {
        self.targets = Some(targets);
        self
    }

    /// Sets the TSDB `/api/v1/status/tsdb` describes.
    pub fn with_tsdb(mut self, db: Arc<kiln_tsdb::db::Db>) -> Self {
        self.tsdb = Some(db);
        self
    }

    /// Enables the TSDB admin API on the TSDB set by [`ApiState::with_tsdb`].
    pub fn with_admin_api(mut self) -> Self {
        self.admin_enabled = true;
        self
    }

    /// Sets what `/api/v1/status/runtimeinfo` reports.
    pub fn with_runtime(mut self, runtime: RuntimeInfo) -> Self {
        self.runtime = runtime;
        self
    }

    /// Sets the flags `/api/v1/status/flags` shows.
    pub fn with_flags(mut self, flags: Vec<(String, String)>) -> Self {
        self.flags = flags;
        self
    }

    /// Serves `max_source_resolution` (`raw`, `5m`, `1h`, any duration, or `auto`: a
    /// fifth of the step) from `f`.
    pub fn with_resolutions(mut self, f: ResolutionStorage) -> Self {
        self.resolutions = Some(f);
        self
    }

    /// The storage a query reads: at the request's `max_source_resolution` when the
    /// server has downsampled data; `step` is 0 for an instant query.
    fn request_storage(
        &self,
        p: &params::Params,
        step: i64,
    ) -> Result<Arc<dyn Queryable>, ApiError> {
        let (Some(f), Some(v)) = (&self.resolutions, p.get("max_source_resolution")) else {
            return Ok(self.storage.clone());
        };
        let res = match v {
            "" | "raw" => 0,
            "auto" => step / 5,
            other => parse_duration(other, "max_source_resolution")?,
        };
        Ok(f(res.max(0)))
    }

    /// Sets the writer of `/metrics`.
    pub fn with_self_metrics(mut self, writer: SelfMetricsWriter) -> Self {
        self.self_metrics = Some(writer);
        self
    }

    /// Sets the running configuration (at start and on every reload): its external
    /// labels and what `/api/v1/status/config` shows.
    pub fn set_config(&self, config: &kiln_config::Config) {
        let pairs: Vec<_> = config.global.external_labels.iter().collect();
        let loaded = LoadedConfig {
            external_labels: Labels::from_pairs(&pairs),
            yaml: config.to_yaml(),
        };
        *self.loaded.write().unwrap_or_else(|e| e.into_inner()) = loaded;
    }

    /// The current external labels.
    pub fn external_labels(&self) -> Labels {
        self.loaded
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .external_labels
            .clone()
    }

    fn config_yaml(&self) -> String {
        self.loaded
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .yaml
            .clone()
    }

    /// Enables `/-/reload`, which sends its requests to `reload`.
    pub fn with_reload(mut self, reload: ReloadSender) -> Self {
        self.reload = Some(reload);
        self
    }
}

/// An API error: Prometheus's `errorType` and the HTTP status that goes with it.
#[derive(Debug)]
pub(crate) struct ApiError {
    error_type: &'static str,
    status: StatusCode,
    message: String,
}

impl ApiError {
    pub(crate) fn bad_data(message: impl Into<String>) -> Self {
        ApiError {
            error_type: "bad_data",
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }

    /// The error message, without the JSON envelope.
    pub(crate) fn message(&self) -> &str {
        &self.message
    }

    fn timeout(message: impl Into<String>) -> Self {
        ApiError {
            error_type: "timeout",
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: message.into(),
        }
    }

    fn unavailable(message: impl Into<String>) -> Self {
        ApiError {
            error_type: "unavailable",
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: message.into(),
        }
    }

    fn internal(message: impl Into<String>) -> Self {
        ApiError {
            error_type: "internal",
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: message.into(),
        }
    }
}

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> Self {
        let (error_type, status) = match e.kind {
            QueryErrorKind::InvalidQuery => {
                return ApiError::bad_data(format!("invalid parameter \"query\": {}", e.message));
            }
            QueryErrorKind::BadData => ("bad_data", StatusCode::BAD_REQUEST),
            QueryErrorKind::Execution => ("execution", StatusCode::UNPROCESSABLE_ENTITY),
            QueryErrorKind::Timeout => ("timeout", StatusCode::SERVICE_UNAVAILABLE),
            QueryErrorKind::Canceled => ("canceled", StatusCode::SERVICE_UNAVAILABLE),
            QueryErrorKind::Storage => ("internal", StatusCode::INTERNAL_SERVER_ERROR),
        };
        ApiError {
            error_type,
            status,
            message: e.message,
        }
    }
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> Self {
        ApiError::internal(e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        json_response(self.status, json::error(self.error_type, &self.message))
    }
}

fn json_response(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// The parameters of a GET (URL query) or POST (URL query and form body) request.
pub(crate) fn params(query: Option<String>, headers: &HeaderMap, body: &Bytes) -> Params {
    let mut p = Params::parse(query.unwrap_or_default().as_bytes());
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
    if form {
        p.extend(Params::parse(body));
    }
    p
}

/// Runs blocking work (the engine, storage) off the async runtime.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("query task failed: {e}")))?
}

fn required<'a>(p: &'a Params, name: &str) -> Result<&'a str, ApiError> {
    p.get(name)
        .ok_or_else(|| ApiError::bad_data(format!("invalid parameter {name:?}: parameter missing")))
}

/// Engine options for one request: the server's, with `timeout` and `lookback_delta`
/// overrides (a timeout can only be lowered).
fn request_engine(state: &ApiState, p: &Params) -> Result<Engine, ApiError> {
    let mut engine = state.engine.clone();
    if let Some(t) = p.get("timeout") {
        let ms = parse_duration(t, "timeout")?;
        let requested = std::time::Duration::from_millis(ms.max(0) as u64);
        engine.opts.timeout = Some(
            engine
                .opts
                .timeout
                .map_or(requested, |max| max.min(requested)),
        );
    }
    if let Some(l) = p.get("lookback_delta") {
        engine.opts.lookback_delta = parse_duration(l, "lookback_delta")?;
    }
    Ok(engine)
}

pub(crate) async fn query(
    State(state): State<Arc<ApiState>>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let p = params(q, &headers, &body);
    let query = required(&p, "query")?.to_owned();
    let t = match p.get("time") {
        Some(t) => parse_time(t, "time")?,
        None => now_ms(),
    };
    let engine = request_engine(&state, &p)?;
    let storage = state.request_storage(&p, 0)?;
    let stats = p.get("stats").is_some();
    evaluate(&state, engine, storage, stats, move |engine, storage| {
        engine.instant_query(storage, &query, t)
    })
    .await
}

pub(crate) async fn query_range(
    State(state): State<Arc<ApiState>>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let p = params(q, &headers, &body);
    let query = required(&p, "query")?.to_owned();
    let start = parse_time(required(&p, "start")?, "start")?;
    let end = parse_time(required(&p, "end")?, "end")?;
    if end < start {
        return Err(ApiError::bad_data(
            "end timestamp must not be before start time",
        ));
    }
    let step = parse_duration(required(&p, "step")?, "step")?;
    if step <= 0 {
        return Err(ApiError::bad_data(
            "zero or negative query resolution step widths are not accepted. Try a positive integer",
        ));
    }
    // Prometheus refuses more than 11,000 points per series.
    if (end - start) / step > 11_000 {
        return Err(ApiError::bad_data(
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)",
        ));
    }
    let engine = request_engine(&state, &p)?;
    let storage = state.request_storage(&p, step)?;
    let stats = p.get("stats").is_some();
    evaluate(&state, engine, storage, stats, move |engine, storage| {
        engine.range_query(storage, &query, start, end, step)
    })
    .await
}

/// Runs a query on the blocking pool, counted in `prometheus_engine_queries` and timed
/// for `prometheus_engine_query_duration_seconds`, and answers with its result.
///
/// At most `--query.max-concurrency` queries run at once: a query first waits for one
/// of [`ApiState::query_slots`] here, asynchronously (a waiting query holds no thread,
/// and its wait counts against its timeout: "query timed out in query queue", as
/// Prometheus says). The slot is held until the JSON is written, on the blocking pool
/// too: the JSON is as large as the result, so writing it on an async worker would
/// stall every other connection (health checks among them) for as long, and writing
/// it outside the slot would let every waiting query hold its result in memory at
/// once.
async fn evaluate(
    state: &ApiState,
    mut engine: Engine,
    storage: Arc<dyn Queryable>,
    with_stats: bool,
    query: impl FnOnce(&Engine, &dyn Queryable) -> Result<kiln_promql::QueryResult, QueryError>
    + Send
    + 'static,
) -> Result<Response, ApiError> {
    let waiting = std::time::Instant::now();
    let slot = state.query_slots.clone().acquire_owned();
    let slot = match engine.opts.timeout {
        Some(timeout) => tokio::time::timeout(timeout, slot)
            .await
            .map_err(|_| ApiError::timeout("query timed out in query queue"))?,
        None => slot.await,
    }
    .map_err(|e| ApiError::internal(format!("query slots closed: {e}")))?;
    let queued = waiting.elapsed();
    engine.opts.timeout = engine
        .opts
        .timeout
        .map(|t| t.saturating_sub(waiting.elapsed()));
    let _running = state.metrics.query_started();
    let (body, took) = blocking(move || {
        let _slot = slot;
        let started = std::time::Instant::now();
        let result = query(&engine, &*storage)?;
        let took = started.elapsed();
        let timings = with_stats.then_some(json::QueryTimings {
            stats: result.stats,
            queue: queued.as_secs_f64(),
            eval: took.as_secs_f64(),
        });
        let body = json::query_success(
            result.value,
            timings.as_ref(),
            &result.warnings,
            &result.infos,
        );
        Ok((body, took))
    })
    .await?;
    state.metrics.observe_query_eval(took);
    Ok(json_response(StatusCode::OK, body))
}

/// The `match[]` selectors of a request.
pub(crate) fn selectors(p: &Params) -> Result<Vec<Vec<Matcher>>, ApiError> {
    p.all("match[]")
        .into_iter()
        .map(|s| {
            parse_selector(s)
                .map_err(|e| ApiError::bad_data(format!("invalid parameter \"match[]\": {e}")))
        })
        .collect()
}

/// `start`/`end` with Prometheus's defaults (the whole time range).
fn time_range(p: &Params) -> Result<(i64, i64), ApiError> {
    let start = p
        .get("start")
        .map(|s| parse_time(s, "start"))
        .transpose()?
        .unwrap_or(MIN_TIME);
    let end = p
        .get("end")
        .map(|s| parse_time(s, "end"))
        .transpose()?
        .unwrap_or(MAX_TIME);
    Ok((start, end))
}

fn limit(p: &Params) -> Result<usize, ApiError> {
    match p.get("limit") {
        None => Ok(0),
        Some(l) => l
            .parse()
            .map_err(|_| ApiError::bad_data(format!("invalid parameter \"limit\": {l:?}"))),
    }
}

pub(crate) async fn series(
    State(state): State<Arc<ApiState>>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let p = params(q, &headers, &body);
    let sets = selectors(&p)?;
    if sets.is_empty() {
        return Err(ApiError::bad_data("no match[] parameter provided"));
    }
    let (start, end) = time_range(&p)?;
    let limit = limit(&p)?;
    let storage = state.storage.clone();
    let labels = blocking(move || {
        let querier = storage.querier(start, end)?;
        let mut out: Vec<Labels> = Vec::new();
        let mut warnings = Vec::new();
        for matchers in &sets {
            let mut set = querier.select(true, None, matchers);
            while let Some(s) = set.next() {
                out.push(s.labels().clone());
            }
            if let Some(e) = set.err() {
                return Err(ApiError::internal(e.to_string()));
            }
            warnings.extend(set.warnings());
        }
        out.sort();
        out.dedup();
        // Encoded here, off the async workers: the answer may be large.
        let mut data = String::from("[");
        let shown = if limit > 0 {
            limit.min(out.len())
        } else {
            out.len()
        };
        for (i, l) in out.iter().take(shown).enumerate() {
            if i > 0 {
                data.push(',');
            }
            json::labels(&mut data, l);
        }
        data.push(']');
        if shown < out.len() {
            warnings.push("results truncated due to limit".into());
        }
        Ok(json::success(&data, &warnings, &[]))
    })
    .await?;
    Ok(json_response(StatusCode::OK, labels))
}

fn string_list(values: &[String], limit: usize) -> (String, bool) {
    let shown = if limit > 0 {
        limit.min(values.len())
    } else {
        values.len()
    };
    let mut data = String::from("[");
    for (i, v) in values.iter().take(shown).enumerate() {
        if i > 0 {
            data.push(',');
        }
        json::string(&mut data, v);
    }
    data.push(']');
    (data, shown < values.len())
}

/// Merges per-selector answers: sorted, unique.
fn merged(mut all: Vec<String>) -> Vec<String> {
    all.sort();
    all.dedup();
    all
}

/// Answers `labels` and `label/<name>/values`: `lookup` runs once per `match[]`
/// selector (once with no matchers when there is none); the answers are merged, sorted,
/// made unique and cut to `limit`.
async fn string_answers(
    state: &ApiState,
    p: &Params,
    lookup: impl Fn(
        &dyn kiln_storage::Querier,
        &[Matcher],
    ) -> Result<(Vec<String>, Vec<String>), StorageError>
    + Send
    + 'static,
) -> Result<Response, ApiError> {
    let mut sets = selectors(p)?;
    if sets.is_empty() {
        sets.push(Vec::new());
    }
    let (start, end) = time_range(p)?;
    let limit = limit(p)?;
    let storage = state.storage.clone();
    let body = blocking(move || {
        let querier = storage.querier(start, end)?;
        let (mut all, mut warnings) = (Vec::new(), Vec::new());
        for matchers in &sets {
            let (v, w) = lookup(&*querier, matchers)?;
            all.extend(v);
            warnings.extend(w);
        }
        // Encoded here, off the async workers: the answer may be large.
        let (data, truncated) = string_list(&merged(all), limit);
        if truncated {
            warnings.push("results truncated due to limit".into());
        }
        Ok(json::success(&data, &warnings, &[]))
    })
    .await?;
    Ok(json_response(StatusCode::OK, body))
}

pub(crate) async fn labels(
    State(state): State<Arc<ApiState>>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let p = params(q, &headers, &body);
    string_answers(&state, &p, |querier, matchers| {
        querier.label_names(matchers)
    })
    .await
}

pub(crate) async fn label_values(
    State(state): State<Arc<ApiState>>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let p = params(q, &HeaderMap::new(), &Bytes::new());
    if !kiln_model::labels::is_valid_label_name(&name) {
        return Err(ApiError::bad_data(format!("invalid label name: {name:?}")));
    }
    string_answers(&state, &p, move |querier, matchers| {
        querier.label_values(&name, matchers)
    })
    .await
}

/// `/api/v1/format_query`: the query in Prometheus's canonical layout.
pub(crate) async fn format_query(
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let p = params(q, &headers, &body);
    let query = required(&p, "query")?.to_owned();
    // Parsing is work proportional to the query: off the async workers.
    let data = blocking(move || {
        let formatted = kiln_promql::format_query(&query)?;
        let mut data = String::new();
        json::string(&mut data, &formatted);
        Ok(data)
    })
    .await?;
    Ok(json_response(
        StatusCode::OK,
        json::success(&data, &[], &[]),
    ))
}

/// `POST` or `PUT /-/reload`: reloads the configuration (with `--web.enable-lifecycle`).
pub(crate) async fn reload(State(state): State<Arc<ApiState>>) -> Response {
    let Some(sender) = state.reload.clone() else {
        return (StatusCode::FORBIDDEN, "Lifecycle API is not enabled.\n").into_response();
    };
    let (reply, answer) = tokio::sync::oneshot::channel();
    if sender.send(reply).await.is_err() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response();
    }
    match answer.await {
        Ok(Ok(())) => StatusCode::OK.into_response(),
        Ok(Err(e)) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("failed to reload config: {e}\n"),
        )
            .into_response(),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response(),
    }
}

/// `/metrics`: the server's own metrics.
pub(crate) async fn metrics(State(state): State<Arc<ApiState>>) -> Response {
    let Some(writer) = state.self_metrics.clone() else {
        return (StatusCode::NOT_FOUND, "no metrics configured\n").into_response();
    };
    match tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        writer(&mut out);
        state.metrics.write(&mut out);
        state.runtime.write_metrics(&mut out);
        targets::write_metrics(&state.targets_snapshot(), &mut out);
        rules::write_metrics(&state.rule_groups(), &mut out);
        if let Some(n) = &state.notifier {
            rules::write_notifier_metrics(n, &mut out);
        }
        out
    })
    .await
    {
        Ok(out) => (
            [(
                header::CONTENT_TYPE,
                kiln_exposition::Format::Text004.content_type(),
            )],
            out,
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("collecting metrics failed: {e}"),
        )
            .into_response(),
    }
}

/// `/api/v1/status/config`: the running configuration as YAML, secrets masked.
pub(crate) async fn status_config(State(state): State<Arc<ApiState>>) -> Response {
    let mut data = String::from("{\"yaml\":");
    json::string(&mut data, &state.config_yaml());
    data.push('}');
    json_response(StatusCode::OK, json::success(&data, &[], &[]))
}

/// `/api/v1/status/flags`: every flag and its value, as strings.
pub(crate) async fn flags(State(state): State<Arc<ApiState>>) -> Response {
    let mut flags: Vec<&(String, String)> = state.flags.iter().collect();
    flags.sort();
    let mut data = String::from("{");
    for (i, (name, value)) in flags.into_iter().enumerate() {
        if i > 0 {
            data.push(',');
        }
        json::string(&mut data, name);
        data.push(':');
        json::string(&mut data, value);
    }
    data.push('}');
    json_response(StatusCode::OK, json::success(&data, &[], &[]))
}

pub(crate) async fn buildinfo() -> Response {
    let mut data = String::from("{\"version\":");
    json::string(&mut data, env!("CARGO_PKG_VERSION"));
    data.push_str(
        ",\"revision\":\"\",\"branch\":\"\",\"buildUser\":\"\",\"buildDate\":\"\",\"goVersion\":",
    );
    json::string(&mut data, "kiln (Rust)");
    data.push('}');
    json_response(StatusCode::OK, json::success(&data, &[], &[]))
}

pub(crate) use kiln_model::calendar::now_ms;
