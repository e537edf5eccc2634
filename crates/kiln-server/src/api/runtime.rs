//! `/api/v1/status/runtimeinfo`: start time, working directory, the state of the last
//! configuration (re)load and the storage retention, under Prometheus's field names.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;

use super::{ApiState, json, json_response, now_ms};

/// What the runtime information reports; the reload fields change after startup.
#[derive(Debug)]
pub struct RuntimeInfo {
    start_ms: i64,
    /// `15d`, `512MiB`, or `15d or 512MiB`, as Prometheus words it.
    pub storage_retention: String,
    reload_success: AtomicBool,
    last_config_ms: AtomicI64,
}

impl RuntimeInfo {
    /// Starts now, with the configuration loaded successfully now.
    pub fn new(storage_retention: String) -> RuntimeInfo {
        let now = now_ms();
        RuntimeInfo {
            start_ms: now,
            storage_retention,
            reload_success: AtomicBool::new(true),
            last_config_ms: AtomicI64::new(now),
        }
    }

    /// Records the outcome of a configuration reload.
    pub fn record_reload(&self, success: bool) {
        self.reload_success.store(success, Ordering::Release);
        if success {
            self.last_config_ms.store(now_ms(), Ordering::Release);
        }
    }
}

/// Threads of this process, from `/proc/self/status` (0 where unreadable).
fn thread_count() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// `GET /api/v1/status/runtimeinfo`. Go-specific fields keep their names so dashboards
/// find them: `goroutineCount` reports OS threads, `GOMAXPROCS` the available cores.
pub(crate) async fn runtimeinfo(State(state): State<Arc<ApiState>>) -> Response {
    let info = &state.runtime;
    let mut data = String::from("{\"startTime\":\"");
    super::targets::rfc3339(&mut data, info.start_ms);
    data.push_str("\",\"CWD\":");
    let cwd = std::env::current_dir()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    json::string(&mut data, &cwd);
    data.push_str(",\"reloadConfigSuccess\":");
    data.push_str(if info.reload_success.load(Ordering::Acquire) {
        "true"
    } else {
        "false"
    });
    data.push_str(",\"lastConfigTime\":\"");
    super::targets::rfc3339(&mut data, info.last_config_ms.load(Ordering::Acquire));
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    data.push_str(&format!(
        "\",\"corruptionCount\":0,\"goroutineCount\":{},\"GOMAXPROCS\":{cores},\"GOGC\":\"\",\"GODEBUG\":\"\",\"storageRetention\":",
        thread_count()
    ));
    json::string(&mut data, &info.storage_retention);
    data.push('}');
    json_response(StatusCode::OK, json::success(&data, &[], &[]))
}

impl RuntimeInfo {
    /// Writes `prometheus_config_last_reload_successful` and
    /// `prometheus_config_last_reload_success_timestamp_seconds`.
    pub(crate) fn write_metrics(&self, out: &mut Vec<u8>) {
        use crate::self_metrics::family;
        use kiln_exposition::MetricType;
        let ok = if self.reload_success.load(Ordering::Acquire) {
            1.0
        } else {
            0.0
        };
        let at = self.last_config_ms.load(Ordering::Acquire) as f64 / 1000.0;
        family(
            out,
            "prometheus_config_last_reload_successful",
            "Whether the last configuration reload attempt was successful.",
            MetricType::Gauge,
            ok,
        );
        family(
            out,
            "prometheus_config_last_reload_success_timestamp_seconds",
            "Timestamp of the last successful configuration reload.",
            MetricType::Gauge,
            at,
        );
    }
}
