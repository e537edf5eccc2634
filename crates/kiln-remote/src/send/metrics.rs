//! A queue's counters and gauges, exposed under Prometheus's own names
//! (`prometheus_remote_storage_*`, `prometheus_wal_watcher_*`) so dashboards and alerts
//! written for Prometheus's remote write work unchanged.

use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};

use kiln_exposition::{MetricType, encode_text_header as header, encode_text_sample};
use kiln_model::Labels;
use parking_lot::Mutex;

/// Upper bounds of the `sent_batch_duration_seconds` buckets (Prometheus's).
const BATCH_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 60.0, 120.0,
];

/// What one queue counts. Counters only grow; the queue updates them as it works.
#[derive(Default)]
pub struct QueueMetrics {
    /// Samples read from the WAL and handed to shards.
    pub samples_in: AtomicU64,
    /// Samples the receiver accepted.
    pub samples_sent: AtomicU64,
    /// Samples dropped for good after a non-retryable answer (4xx).
    pub samples_failed: AtomicU64,
    /// Samples in a request that failed and was tried again.
    pub samples_retried: AtomicU64,
    /// Samples not sent because write relabelling dropped their series.
    pub samples_dropped_relabel: AtomicU64,
    /// Samples not sent because they were older than `sample_age_limit`.
    pub samples_dropped_too_old: AtomicU64,
    pub bytes_sent: AtomicU64,
    /// Times a full shard made reading the WAL wait.
    pub enqueue_retries: AtomicU64,
    pub metadata_sent: AtomicU64,
    pub metadata_failed: AtomicU64,
    pub metadata_retried: AtomicU64,
    pub metadata_bytes: AtomicU64,
    pub shards: AtomicUsize,
    /// f64 bits.
    pub desired_shards: AtomicU64,
    /// Newest sample timestamp the receiver accepted, ms.
    pub highest_sent_ms: AtomicI64,
    /// Newest sample timestamp read from the WAL, ms.
    pub highest_read_ms: AtomicI64,
    pub wal_segment: AtomicU64,
    pub records_series: AtomicU64,
    pub records_samples: AtomicU64,
    /// WAL segments deleted before they were read.
    pub segments_lost: AtomicU64,
    batch_durations: Mutex<Histogram>,
}

#[derive(Default)]
struct Histogram {
    counts: [u64; BATCH_BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl QueueMetrics {
    pub(crate) fn observe_batch(&self, seconds: f64) {
        let mut h = self.batch_durations.lock();
        for (i, le) in BATCH_BUCKETS.iter().enumerate() {
            if seconds <= *le {
                h.counts[i] += 1;
            }
        }
        h.count += 1;
        h.sum += seconds;
    }

    /// Total seconds spent in sends so far.
    pub(crate) fn send_seconds(&self) -> f64 {
        self.batch_durations.lock().sum
    }

    pub(crate) fn raise(cell: &AtomicI64, v: i64) {
        cell.fetch_max(v, Ordering::Relaxed);
    }
}

/// One queue as `/metrics` shows it.
pub struct QueueView<'a> {
    pub name: &'a str,
    /// The endpoint with its password redacted, as Prometheus labels it.
    pub url: std::borrow::Cow<'a, str>,
    pub capacity: usize,
    pub min_shards: usize,
    pub max_shards: usize,
    pub max_samples_per_send: usize,
    pub pending: usize,
    pub metrics: &'a QueueMetrics,
}

/// Writes every queue's metrics, family by family.
pub fn write_metrics(queues: &[QueueView<'_>], out: &mut Vec<u8>) {
    use Ordering::Relaxed;
    type Get = fn(&QueueView<'_>) -> f64;
    let families: &[(&str, &str, MetricType, Get)] = &[
        (
            "prometheus_remote_storage_samples_total",
            "Total number of samples sent to remote storage.",
            MetricType::Counter,
            |q| q.metrics.samples_sent.load(Relaxed) as f64,
        ),
        (
            "prometheus_remote_storage_samples_failed_total",
            "Total number of samples which failed on send to remote storage, non-recoverable errors.",
            MetricType::Counter,
            |q| q.metrics.samples_failed.load(Relaxed) as f64,
        ),
        (
            "prometheus_remote_storage_samples_retried_total",
            "Total number of samples which failed on send to remote storage but were retried because the send error was recoverable.",
            MetricType::Counter,
            |q| q.metrics.samples_retried.load(Relaxed) as f64,
        ),
        (
            "prometheus_remote_storage_samples_dropped_total",
            "Total number of samples which were dropped after being read from the WAL before being sent via remote write, either via relabelling, due to being too old (sample_age_limit) or unintentionally because of an unknown reference ID.",
            MetricType::Counter,
            |q| {
                (q.metrics.samples_dropped_relabel.load(Relaxed)
                    + q.metrics.samples_dropped_too_old.load(Relaxed)) as f64
            },
        ),
        (
            "prometheus_remote_storage_samples_pending",
            "The number of samples pending in the queues shards to be sent to the remote storage.",
            MetricType::Gauge,
            |q| q.pending as f64,
        ),
        (
            "prometheus_remote_storage_bytes_total",
            "The total number of bytes of data (not metadata) sent by the queue after compression.",
            MetricType::Counter,
            |q| q.metrics.bytes_sent.load(Relaxed) as f64,
        ),
        (
            "prometheus_remote_storage_enqueue_retries_total",
            "Total number of times enqueue has failed because a shards queue was full.",
            MetricType::Counter,
            |q| q.metrics.enqueue_retries.load(Relaxed) as f64,
        ),
        (
            "prometheus_remote_storage_metadata_total",
            "Total number of metadata entries sent to remote storage.",
            MetricType::Counter,
            |q| q.metrics.metadata_sent.load(Relaxed) as f64,
        ),
        (
            "prometheus_remote_storage_metadata_failed_total",
            "Total number of metadata entries which failed on send to remote storage, non-recoverable errors.",
            MetricType::Counter,
            |q| q.metrics.metadata_failed.load(Relaxed) as f64,
        ),
        (
            "prometheus_remote_storage_metadata_retried_total",
            "Total number of metadata entries which failed on send to remote storage but were retried because the send error was recoverable.",
            MetricType::Counter,
            |q| q.metrics.metadata_retried.load(Relaxed) as f64,
        ),
        (
            "prometheus_remote_storage_metadata_bytes_total",
            "The total number of bytes of metadata sent by the queue after compression.",
            MetricType::Counter,
            |q| q.metrics.metadata_bytes.load(Relaxed) as f64,
        ),
        (
            "prometheus_remote_storage_shards",
            "The number of shards used for parallel sending to the remote storage.",
            MetricType::Gauge,
            |q| q.metrics.shards.load(Relaxed) as f64,
        ),
        (
            "prometheus_remote_storage_shards_desired",
            "The number of shards that the queues shard calculation wants to run based on the rate of samples in vs. samples out.",
            MetricType::Gauge,
            |q| f64::from_bits(q.metrics.desired_shards.load(Relaxed)),
        ),
        (
            "prometheus_remote_storage_shards_min",
            "The minimum number of shards that the queue is allowed to run.",
            MetricType::Gauge,
            |q| q.min_shards as f64,
        ),
        (
            "prometheus_remote_storage_shards_max",
            "The maximum number of shards that the queue is allowed to run.",
            MetricType::Gauge,
            |q| q.max_shards as f64,
        ),
        (
            "prometheus_remote_storage_shard_capacity",
            "The capacity of each shard of the queue used for parallel sending to the remote storage.",
            MetricType::Gauge,
            |q| q.capacity as f64,
        ),
        (
            "prometheus_remote_storage_max_samples_per_send",
            "The maximum number of samples to be sent, in a single request, to the remote storage.",
            MetricType::Gauge,
            |q| q.max_samples_per_send as f64,
        ),
        (
            "prometheus_remote_storage_queue_highest_sent_timestamp_seconds",
            "Timestamp from a WAL sample, the highest timestamp successfully sent by this queue, in seconds since epoch.",
            MetricType::Gauge,
            |q| seconds(q.metrics.highest_sent_ms.load(Relaxed)),
        ),
        (
            "prometheus_remote_storage_queue_highest_read_timestamp_seconds",
            "Timestamp from a WAL sample, the highest timestamp read by this queue, in seconds since epoch.",
            MetricType::Gauge,
            |q| seconds(q.metrics.highest_read_ms.load(Relaxed)),
        ),
    ];
    for (name, help, kind, get) in families {
        header(out, name, help, *kind);
        for q in queues {
            let labels = Labels::from_pairs(&[
                ("__name__", *name),
                ("remote_name", q.name),
                ("url", &q.url),
            ]);
            encode_text_sample(out, &labels, get(q), None);
        }
    }
    let name = "prometheus_remote_storage_sent_batch_duration_seconds";
    header(
        out,
        name,
        "Duration of send calls to the remote storage.",
        MetricType::Histogram,
    );
    let (bucket, sum, count) = (
        format!("{name}_bucket"),
        format!("{name}_sum"),
        format!("{name}_count"),
    );
    for q in queues {
        let h = q.metrics.batch_durations.lock();
        let mut sample = |metric: &str, le: Option<&str>, v: f64| {
            let mut pairs = vec![
                ("__name__", metric),
                ("remote_name", q.name),
                ("url", &q.url),
            ];
            pairs.extend(le.map(|le| ("le", le)));
            encode_text_sample(out, &Labels::from_pairs(&pairs), v, None);
        };
        for (le, n) in BATCH_BUCKETS.iter().zip(h.counts) {
            sample(&bucket, Some(&kiln_model::format_go_float(*le)), n as f64);
        }
        sample(&bucket, Some("+Inf"), h.count as f64);
        sample(&sum, None, h.sum);
        sample(&count, None, h.count as f64);
    }
    let watcher: &[(&str, &str, MetricType, Get)] = &[
        (
            "prometheus_wal_watcher_current_segment",
            "Current segment the WAL watcher is reading records from.",
            MetricType::Gauge,
            |q| q.metrics.wal_segment.load(Relaxed) as f64,
        ),
        (
            "prometheus_wal_watcher_segments_lost_total",
            "WAL segments deleted before the watcher read them (their samples were never sent).",
            MetricType::Counter,
            |q| q.metrics.segments_lost.load(Relaxed) as f64,
        ),
    ];
    for (name, help, kind, get) in watcher {
        header(out, name, help, *kind);
        for q in queues {
            let l = Labels::from_pairs(&[("__name__", *name), ("consumer", q.name)]);
            encode_text_sample(out, &l, get(q), None);
        }
    }
    let name = "prometheus_wal_watcher_records_read_total";
    header(
        out,
        name,
        "Number of records read by the WAL watcher from the WAL.",
        MetricType::Counter,
    );
    for q in queues {
        for (kind, v) in [
            ("series", q.metrics.records_series.load(Relaxed)),
            ("samples", q.metrics.records_samples.load(Relaxed)),
        ] {
            let l = Labels::from_pairs(&[("__name__", name), ("consumer", q.name), ("type", kind)]);
            encode_text_sample(out, &l, v as f64, None);
        }
    }
}

/// `prometheus_remote_storage_highest_timestamp_in_seconds`: the newest sample stored,
/// which `queue_highest_sent_timestamp_seconds` is compared with to see a queue's lag.
pub(crate) fn write_highest_timestamp(newest_ms: Option<i64>, out: &mut Vec<u8>) {
    let name = "prometheus_remote_storage_highest_timestamp_in_seconds";
    header(
        out,
        name,
        "Highest timestamp that has come into the remote storage via the Appender interface, in seconds since epoch.",
        MetricType::Gauge,
    );
    let l = Labels::from_pairs(&[("__name__", name)]);
    encode_text_sample(out, &l, seconds(newest_ms.unwrap_or(0)), None);
}

/// A millisecond timestamp in seconds (0 before the first sample).
fn seconds(ms: i64) -> f64 {
    if ms > 0 { ms as f64 / 1000.0 } else { 0.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_durations_are_a_histogram_per_queue() {
        let m = QueueMetrics::default();
        m.observe_batch(0.004);
        m.observe_batch(3.0);
        let view = QueueView {
            name: "a",
            url: "http://x/api/v1/write".into(),
            capacity: 1,
            min_shards: 1,
            max_shards: 2,
            max_samples_per_send: 10,
            pending: 0,
            metrics: &m,
        };
        let mut out = Vec::new();
        write_metrics(&[view], &mut out);
        let text = String::from_utf8(out).unwrap_or_default();
        let name = "prometheus_remote_storage_sent_batch_duration_seconds";
        let labels = r#"remote_name="a",url="http://x/api/v1/write""#;
        for want in [
            format!("{name}_bucket{{le=\"0.005\",{labels}}} 1\n"),
            format!("{name}_bucket{{le=\"2.5\",{labels}}} 1\n"),
            format!("{name}_bucket{{le=\"5\",{labels}}} 2\n"),
            format!("{name}_bucket{{le=\"+Inf\",{labels}}} 2\n"),
            format!("{name}_sum{{{labels}}} 3.004\n"),
            format!("{name}_count{{{labels}}} 2\n"),
            format!("prometheus_remote_storage_shards_max{{{labels}}} 2\n"),
        ] {
            assert!(text.contains(&want), "{want}in\n{text}");
        }
    }
}
