//! `/metrics`: Kiln's own metrics, under Prometheus's names where the concept is the
//! same, so "monitor Prometheus itself" dashboards and alerts work on Kiln.
//!
//! Values are read when scraped (gauges of the TSDB and the process), not kept in a
//! registry. Process metrics come from `/proc/self` and are left out where it cannot be
//! read.

use kiln_exposition::{MetricFamily, MetricType, encode_text_family_header, encode_text_sample};
use kiln_model::Labels;

use kiln_tsdb::db::Db;

/// When the process started, Unix seconds; set once at startup by the caller.
pub struct ProcessInfo {
    pub start_time_seconds: f64,
}

/// Writes a family's `# HELP` and `# TYPE` lines.
pub(crate) fn header(out: &mut Vec<u8>, name: &str, help: &str, kind: MetricType) {
    kiln_exposition::encode_text_header(out, name, help, kind);
}

/// Writes a family with one unlabelled sample.
pub(crate) fn family(out: &mut Vec<u8>, name: &str, help: &str, kind: MetricType, value: f64) {
    header(out, name, help, kind);
    encode_text_sample(out, &Labels::from_pairs(&[("__name__", name)]), value, None);
}

/// Writes the metrics of `db` (see [`crate::tsdb_metrics`]) and of this process in the
/// text format.
pub fn write_self_metrics(db: &Db, process: &ProcessInfo, out: &mut Vec<u8>) {
    crate::tsdb_metrics::write_tsdb_metrics(db, out);
    let gauge = MetricType::Gauge;
    family(
        out,
        "process_start_time_seconds",
        "Start time of the process since unix epoch in seconds.",
        gauge,
        process.start_time_seconds,
    );
    if let Some((cpu_s, rss_bytes)) = proc_self_stat() {
        family(
            out,
            "process_cpu_seconds_total",
            "Total user and system CPU time spent in seconds.",
            MetricType::Counter,
            cpu_s,
        );
        family(
            out,
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            gauge,
            rss_bytes,
        );
    }
    encode_text_family_header(
        out,
        &MetricFamily {
            name: "kiln_build_info",
            help: Some("A metric with a constant '1' value labeled by version."),
            kind: gauge,
            unit: None,
        },
    );
    encode_text_sample(
        out,
        &Labels::from_pairs(&[
            ("__name__", "kiln_build_info"),
            ("version", env!("CARGO_PKG_VERSION")),
        ]),
        1.0,
        None,
    );
}

/// CPU seconds (user + system) and resident bytes from `/proc/self/stat`.
fn proc_self_stat() -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Counting from field 3 (state) as index 0: utime 11, stime 12, rss 21 (pages).
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    let rss_pages: f64 = fields.get(21)?.parse().ok()?;
    // Linux reports times in clock ticks of 1/100 s and pages of 4 KiB on the platforms
    // Kiln builds for.
    Some(((utime + stime) / 100.0, rss_pages * 4096.0))
}
