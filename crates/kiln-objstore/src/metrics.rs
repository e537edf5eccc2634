//! The bucket's metrics, under Thanos's names so that its dashboards and alerts work:
//! `thanos_objstore_bucket_operations_total`, `..._operation_failures_total`,
//! `..._operation_duration_seconds` (per `bucket` and `operation`) and
//! `thanos_objstore_bucket_last_successful_upload_time`.
//!
//! As in Thanos, every operation's series exist from the start (at zero), a "not found"
//! answer to a read is not a failure (callers ask on purpose), and the duration
//! histogram observes successful operations only.

use std::sync::atomic::{AtomicU64, Ordering};

use kiln_exposition::{MetricType, encode_text_header, encode_text_sample};
use kiln_model::Labels;
use parking_lot::Mutex;

/// What a bucket does, by Thanos's operation names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Iter,
    Get,
    GetRange,
    Exists,
    Upload,
    Delete,
    Attributes,
}

impl Operation {
    pub const ALL: [Operation; 7] = [
        Operation::Iter,
        Operation::Get,
        Operation::GetRange,
        Operation::Exists,
        Operation::Upload,
        Operation::Delete,
        Operation::Attributes,
    ];

    /// The `operation` label value.
    pub fn name(self) -> &'static str {
        match self {
            Operation::Iter => "iter",
            Operation::Get => "get",
            Operation::GetRange => "get_range",
            Operation::Exists => "exists",
            Operation::Upload => "upload",
            Operation::Delete => "delete",
            Operation::Attributes => "attributes",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Upper bounds of the duration buckets, seconds (Thanos's).
const DURATION_BUCKETS: [f64; 14] = [
    0.001, 0.01, 0.1, 0.3, 0.6, 1.0, 3.0, 6.0, 9.0, 20.0, 30.0, 60.0, 90.0, 120.0,
];

#[derive(Default, Clone)]
struct Histogram {
    /// Cumulative counts per bucket.
    counts: [u64; DURATION_BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// One bucket's counters. Shared by every clone of the bucket.
pub struct BucketMetrics {
    bucket: String,
    operations: [AtomicU64; Operation::ALL.len()],
    failures: [AtomicU64; Operation::ALL.len()],
    durations: Mutex<[Histogram; Operation::ALL.len()]>,
    /// Unix seconds of the last successful upload, as f64 bits (0: none yet).
    last_upload: AtomicU64,
}

impl BucketMetrics {
    pub(crate) fn new(bucket: &str) -> BucketMetrics {
        BucketMetrics {
            bucket: bucket.to_owned(),
            operations: Default::default(),
            failures: Default::default(),
            durations: Mutex::new(Default::default()),
            last_upload: AtomicU64::new(0),
        }
    }

    /// Records one operation: attempted always; failed when `failed`; its duration when
    /// it succeeded.
    pub(crate) fn record(&self, op: Operation, seconds: f64, outcome: Outcome) {
        self.operations[op.index()].fetch_add(1, Ordering::Relaxed);
        match outcome {
            Outcome::Failed => {
                self.failures[op.index()].fetch_add(1, Ordering::Relaxed);
            }
            Outcome::Expected => {}
            Outcome::Succeeded => {
                let mut h = self.durations.lock();
                let h = &mut h[op.index()];
                for (i, le) in DURATION_BUCKETS.iter().enumerate() {
                    if seconds <= *le {
                        h.counts[i] += 1;
                    }
                }
                h.count += 1;
                h.sum += seconds;
                if op == Operation::Upload {
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0.0, |d| d.as_secs_f64());
                    self.last_upload.store(now.to_bits(), Ordering::Relaxed);
                }
            }
        }
    }

    /// Operations attempted so far.
    pub fn operations(&self, op: Operation) -> u64 {
        self.operations[op.index()].load(Ordering::Relaxed)
    }

    /// Operations failed so far (not counting "not found" answers to reads).
    pub fn failures(&self, op: Operation) -> u64 {
        self.failures[op.index()].load(Ordering::Relaxed)
    }

    /// Appends the metrics in the text exposition format.
    pub fn write_metrics(&self, out: &mut Vec<u8>) {
        let bucket = self.bucket.as_str();
        let counters: [(&str, &str, &[AtomicU64; 7]); 2] = [
            (
                "thanos_objstore_bucket_operations_total",
                "Operations attempted on the bucket.",
                &self.operations,
            ),
            (
                "thanos_objstore_bucket_operation_failures_total",
                "Operations on the bucket that failed (a missing object asked for is not a failure).",
                &self.failures,
            ),
        ];
        for (name, help, cells) in counters {
            encode_text_header(out, name, help, MetricType::Counter);
            for op in Operation::ALL {
                let v = cells[op.index()].load(Ordering::Relaxed) as f64;
                sample(
                    out,
                    name,
                    &[("bucket", bucket), ("operation", op.name())],
                    v,
                );
            }
        }
        let name = "thanos_objstore_bucket_operation_duration_seconds";
        encode_text_header(
            out,
            name,
            "Duration of the successful operations on the bucket.",
            MetricType::Histogram,
        );
        let durations = self.durations.lock().clone();
        let (bucket_name, sum_name, count_name) = (
            format!("{name}_bucket"),
            format!("{name}_sum"),
            format!("{name}_count"),
        );
        for op in Operation::ALL {
            let h = &durations[op.index()];
            let les = DURATION_BUCKETS
                .iter()
                .map(|le| kiln_model::format_go_float(*le))
                .chain(std::iter::once("+Inf".to_owned()));
            let counts = h.counts.iter().chain(std::iter::once(&h.count));
            for (le, count) in les.zip(counts) {
                let pairs = [
                    ("bucket", bucket),
                    ("le", le.as_str()),
                    ("operation", op.name()),
                ];
                sample(out, &bucket_name, &pairs, *count as f64);
            }
            let pairs = [("bucket", bucket), ("operation", op.name())];
            sample(out, &sum_name, &pairs, h.sum);
            sample(out, &count_name, &pairs, h.count as f64);
        }
        let name = "thanos_objstore_bucket_last_successful_upload_time";
        encode_text_header(
            out,
            name,
            "Unix time in seconds of the last successful upload to the bucket.",
            MetricType::Gauge,
        );
        let v = f64::from_bits(self.last_upload.load(Ordering::Relaxed));
        sample(out, name, &[("bucket", bucket)], v);
    }
}

/// Writes one sample of metric `name` with the label `pairs`.
fn sample(out: &mut Vec<u8>, name: &str, pairs: &[(&str, &str)], value: f64) {
    let mut all = Vec::with_capacity(pairs.len() + 1);
    all.push(("__name__", name));
    all.extend_from_slice(pairs);
    encode_text_sample(out, &Labels::from_pairs(&all), value, None);
}

/// How an operation ended, for the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Succeeded,
    /// An answer the caller expects now and then (a missing object): neither a failure
    /// nor a success with a duration worth timing.
    Expected,
    Failed,
}
