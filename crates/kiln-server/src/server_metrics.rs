//! Metrics the HTTP server and its query handlers keep, under Prometheus's names:
//! `prometheus_http_requests_total`, `prometheus_http_request_duration_seconds`,
//! `prometheus_engine_query_duration_seconds` and `prometheus_engine_queries`, so the
//! "Prometheus overview" dashboards show Kiln's API traffic and query latency.
//!
//! Requests are counted by the route pattern (`/api/v1/query`, not the full URL), as
//! Prometheus labels `handler`, so the label set stays small.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use kiln_exposition::{MetricType, encode_text_sample};
use kiln_model::Labels;

/// Prometheus's buckets for `prometheus_http_request_duration_seconds`.
const HTTP_BUCKETS: [f64; 9] = [0.1, 0.2, 0.4, 1.0, 3.0, 8.0, 20.0, 60.0, 120.0];
/// How many recent query durations the quantiles are computed from.
const QUANTILE_WINDOW: usize = 1024;
const QUANTILES: [f64; 3] = [0.5, 0.9, 0.99];

#[derive(Default)]
struct Histogram {
    buckets: [u64; HTTP_BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Default)]
struct Summary {
    recent: VecDeque<f64>,
    count: u64,
    sum: f64,
}

impl Summary {
    fn observe(&mut self, v: f64) {
        if self.recent.len() == QUANTILE_WINDOW {
            self.recent.pop_front();
        }
        self.recent.push_back(v);
        self.count += 1;
        self.sum += v;
    }

    /// The `q` quantile of the recent window (NaN when empty, as Prometheus reports).
    fn quantile(&self, q: f64) -> f64 {
        if self.recent.is_empty() {
            return f64::NAN;
        }
        let mut sorted: Vec<f64> = self.recent.iter().copied().collect();
        sorted.sort_by(f64::total_cmp);
        let rank = (q * (sorted.len() - 1) as f64).round() as usize;
        sorted[rank.min(sorted.len() - 1)]
    }
}

/// The server's request and query metrics.
#[derive(Default)]
pub struct ServerMetrics {
    /// `(handler, code)` -> requests.
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    durations: Mutex<BTreeMap<String, Histogram>>,
    query_eval: Mutex<Summary>,
    queries_in_flight: AtomicI64,
}

/// Counts a query as running until dropped.
pub struct QueryGuard<'m>(&'m ServerMetrics);

impl Drop for QueryGuard<'_> {
    fn drop(&mut self) {
        self.0.queries_in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl ServerMetrics {
    /// Records one finished request.
    pub fn observe_request(&self, handler: &str, code: u16, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        *self
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((handler.to_owned(), code))
            .or_default() += 1;
        let mut durations = self.durations.lock().unwrap_or_else(|e| e.into_inner());
        let h = durations.entry(handler.to_owned()).or_default();
        for (i, upper) in HTTP_BUCKETS.iter().enumerate() {
            if secs <= *upper {
                h.buckets[i] += 1;
            }
        }
        h.count += 1;
        h.sum += secs;
    }

    /// Marks a query as running (for `prometheus_engine_queries`).
    pub fn query_started(&self) -> QueryGuard<'_> {
        self.queries_in_flight.fetch_add(1, Ordering::Relaxed);
        QueryGuard(self)
    }

    /// Records how long a query's evaluation took.
    pub fn observe_query_eval(&self, elapsed: Duration) {
        self.query_eval
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .observe(elapsed.as_secs_f64());
    }

    /// Writes the metrics in the text format.
    pub fn write(&self, out: &mut Vec<u8>) {
        use crate::self_metrics::header;
        let sample = |out: &mut Vec<u8>, pairs: &[(&str, &str)], v: f64| {
            encode_text_sample(out, &Labels::from_pairs(pairs), v, None);
        };

        let requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        header(
            out,
            "prometheus_http_requests_total",
            "Counter of HTTP requests.",
            MetricType::Counter,
        );
        for ((handler, code), n) in requests.iter() {
            let code = code.to_string();
            sample(
                out,
                &[
                    ("__name__", "prometheus_http_requests_total"),
                    ("code", &code),
                    ("handler", handler),
                ],
                *n as f64,
            );
        }
        drop(requests);

        let durations = self.durations.lock().unwrap_or_else(|e| e.into_inner());
        let name = "prometheus_http_request_duration_seconds";
        header(
            out,
            name,
            "Histogram of latencies for HTTP requests.",
            MetricType::Histogram,
        );
        let bucket = format!("{name}_bucket");
        for (handler, h) in durations.iter() {
            for (i, upper) in HTTP_BUCKETS.iter().enumerate() {
                let le = kiln_model::format_go_float(*upper);
                sample(
                    out,
                    &[("__name__", &bucket), ("handler", handler), ("le", &le)],
                    h.buckets[i] as f64,
                );
            }
            let count = h.count as f64;
            sample(
                out,
                &[("__name__", &bucket), ("handler", handler), ("le", "+Inf")],
                count,
            );
            sample(
                out,
                &[("__name__", &format!("{name}_sum")), ("handler", handler)],
                h.sum,
            );
            sample(
                out,
                &[("__name__", &format!("{name}_count")), ("handler", handler)],
                count,
            );
        }
        drop(durations);

        let name = "prometheus_engine_query_duration_seconds";
        header(out, name, "Query timings", MetricType::Summary);
        let eval = self.query_eval.lock().unwrap_or_else(|e| e.into_inner());
        for q in QUANTILES {
            let ql = kiln_model::format_go_float(q);
            sample(
                out,
                &[
                    ("__name__", name),
                    ("slice", "inner_eval"),
                    ("quantile", &ql),
                ],
                eval.quantile(q),
            );
        }
        sample(
            out,
            &[
                ("__name__", &format!("{name}_sum")),
                ("slice", "inner_eval"),
            ],
            eval.sum,
        );
        sample(
            out,
            &[
                ("__name__", &format!("{name}_count")),
                ("slice", "inner_eval"),
            ],
            eval.count as f64,
        );
        drop(eval);

        header(
            out,
            "prometheus_engine_queries",
            "The current number of queries being executed or waiting.",
            MetricType::Gauge,
        );
        sample(
            out,
            &[("__name__", "prometheus_engine_queries")],
            self.queries_in_flight.load(Ordering::Relaxed) as f64,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_queries_are_exposed() {
        let m = ServerMetrics::default();
        m.observe_request("/api/v1/query", 200, Duration::from_millis(150));
        m.observe_request("/api/v1/query", 200, Duration::from_millis(50));
        m.observe_request("/api/v1/query", 400, Duration::from_millis(5));
        for ms in 1..=100 {
            m.observe_query_eval(Duration::from_millis(ms));
        }
        let guard = m.query_started();
        let mut out = Vec::new();
        m.write(&mut out);
        drop(guard);
        let text = String::from_utf8(out).expect("utf8");
        for want in [
            "prometheus_http_requests_total{code=\"200\",handler=\"/api/v1/query\"} 2\n",
            "prometheus_http_requests_total{code=\"400\",handler=\"/api/v1/query\"} 1\n",
            "prometheus_http_request_duration_seconds_bucket{handler=\"/api/v1/query\",le=\"0.1\"} 2\n",
            "prometheus_http_request_duration_seconds_bucket{handler=\"/api/v1/query\",le=\"0.2\"} 3\n",
            "prometheus_http_request_duration_seconds_count{handler=\"/api/v1/query\"} 3\n",
            "prometheus_engine_query_duration_seconds{quantile=\"0.5\",slice=\"inner_eval\"} 0.05",
            "prometheus_engine_query_duration_seconds_count{slice=\"inner_eval\"} 100\n",
            "prometheus_engine_queries 1\n",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
        // The exposition is valid: Kiln's own parser reads it.
        let problems = kiln_exposition::lint_text(text.as_bytes()).expect("parses");
        assert!(problems.is_empty(), "{problems:?}");
    }
}
