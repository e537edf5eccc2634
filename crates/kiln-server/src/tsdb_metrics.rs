//! The TSDB's metrics on `/metrics`, named, typed and described exactly as Prometheus 3
//! exports them (`tsdb/db.go`, `tsdb/compact.go`, `tsdb/head.go`, `tsdb/wlog/wlog.go`,
//! `cmd/prometheus/main.go`), so the dashboards and alerts written for Prometheus's
//! storage (block sizes, compactions, retention, WAL) read Kiln's.
//!
//! The values come from the storage engine: counters and histograms it keeps in
//! [`DbMetrics`](kiln_tsdb::db::DbMetrics) and [`HeadStats`](kiln_tsdb::head::HeadStats),
//! and gauges measured when scraped (block, WAL and head-chunk bytes, the lowest
//! timestamp, the current WAL segment). Nothing here is a constant except the configured
//! retention limits, which Prometheus exports the same way.

use std::sync::atomic::{AtomicU64, Ordering};

use kiln_exposition::{MetricType, encode_text_sample};
use kiln_model::Labels;
use kiln_tsdb::db::Db;
use kiln_tsdb::stats::{Histogram, Summary};

use crate::self_metrics::{family, header};

/// Writes every `prometheus_tsdb_*` family of `db` in the text format.
pub fn write_tsdb_metrics(db: &Db, out: &mut Vec<u8>) {
    write_head(db, out);
    write_blocks(db, out);
    write_compaction(db, out);
    write_retention(db, out);
    write_wal(db, out);
}

fn counter(out: &mut Vec<u8>, name: &str, help: &str, value: &AtomicU64) {
    family(
        out,
        name,
        help,
        MetricType::Counter,
        value.load(Ordering::Relaxed) as f64,
    );
}

fn gauge(out: &mut Vec<u8>, name: &str, help: &str, value: f64) {
    family(out, name, help, MetricType::Gauge, value);
}

/// A classic histogram: cumulative `_bucket{le=...}` lines, `+Inf`, `_sum`, `_count`.
fn histogram(out: &mut Vec<u8>, name: &str, help: &str, h: &Histogram) {
    header(out, name, help, MetricType::Histogram);
    let s = h.snapshot();
    let bucket = format!("{name}_bucket");
    for (bound, count) in &s.buckets {
        let le = kiln_model::format_go_float(*bound);
        let labels = Labels::from_pairs(&[("__name__", bucket.as_str()), ("le", le.as_str())]);
        encode_text_sample(out, &labels, *count as f64, None);
    }
    let inf = Labels::from_pairs(&[("__name__", bucket.as_str()), ("le", "+Inf")]);
    encode_text_sample(out, &inf, s.count as f64, None);
    let sum = Labels::from_pairs(&[("__name__", &format!("{name}_sum"))]);
    encode_text_sample(out, &sum, s.sum, None);
    let count = Labels::from_pairs(&[("__name__", &format!("{name}_count"))]);
    encode_text_sample(out, &count, s.count as f64, None);
}

/// A summary without quantiles (`_sum` and `_count`), as Prometheus's summaries
/// declared without objectives are exposed.
fn summary(out: &mut Vec<u8>, name: &str, help: &str, s: &Summary) {
    header(out, name, help, MetricType::Summary);
    let (count, sum) = s.snapshot();
    let sum_labels = Labels::from_pairs(&[("__name__", &format!("{name}_sum"))]);
    encode_text_sample(out, &sum_labels, sum, None);
    let count_labels = Labels::from_pairs(&[("__name__", &format!("{name}_count"))]);
    encode_text_sample(out, &count_labels, count as f64, None);
}

/// Milliseconds to whole seconds the way Prometheus's `*_seconds` gauges compute them
/// (Go's integer division, which truncates toward zero).
fn ms_to_whole_seconds(ms: i64) -> f64 {
    (ms / 1000) as f64
}

fn write_head(db: &Db, out: &mut Vec<u8>) {
    let head = db.head();
    let stats = &head.stats;
    gauge(
        out,
        "prometheus_tsdb_head_series",
        "Total number of series in the head block.",
        head.num_series() as f64,
    );
    // An empty head reports the extremes, as Prometheus's does.
    let min_time = head.min_time().unwrap_or(i64::MAX);
    let max_time = head.max_time().unwrap_or(i64::MIN);
    gauge(
        out,
        "prometheus_tsdb_head_min_time",
        "Minimum time bound of the head block. The unit is decided by the library consumer.",
        min_time as f64,
    );
    gauge(
        out,
        "prometheus_tsdb_head_max_time",
        "Maximum timestamp of the head block. The unit is decided by the library consumer.",
        max_time as f64,
    );
    gauge(
        out,
        "prometheus_tsdb_head_min_time_seconds",
        "Minimum time bound of the head block.",
        ms_to_whole_seconds(min_time),
    );
    gauge(
        out,
        "prometheus_tsdb_head_max_time_seconds",
        "Maximum timestamp of the head block.",
        ms_to_whole_seconds(max_time),
    );
    let by_type = [
        (
            "prometheus_tsdb_head_samples_appended_total",
            "Total number of appended samples.",
            &stats.samples_appended,
        ),
        (
            "prometheus_tsdb_out_of_bound_samples_total",
            "Total number of out of bound samples ingestion failed attempts with out of order support disabled.",
            &stats.out_of_bounds_rejected,
        ),
        (
            "prometheus_tsdb_out_of_order_samples_total",
            "Total number of out of order samples ingestion failed attempts due to out of order being disabled.",
            &stats.out_of_order_rejected,
        ),
    ];
    for (name, help, n) in by_type {
        header(out, name, help, MetricType::Counter);
        encode_text_sample(
            out,
            &Labels::from_pairs(&[("__name__", name), ("type", "float")]),
            n.load(Ordering::Relaxed) as f64,
            None,
        );
    }
    counter(
        out,
        "prometheus_tsdb_head_series_created_total",
        "Total number of series created in the head",
        &stats.series_created,
    );
    counter(
        out,
        "prometheus_tsdb_head_series_removed_total",
        "Total number of series removed in the head",
        &stats.series_removed,
    );
    gauge(
        out,
        "prometheus_tsdb_head_chunks",
        "Total number of chunks in the head block.",
        stats.chunks() as f64,
    );
    counter(
        out,
        "prometheus_tsdb_head_chunks_created_total",
        "Total number of chunks created in the head",
        &stats.chunks_created,
    );
    counter(
        out,
        "prometheus_tsdb_head_chunks_removed_total",
        "Total number of chunks removed in the head",
        &stats.chunks_removed,
    );
    gauge(
        out,
        "prometheus_tsdb_head_chunks_storage_size_bytes",
        "Size of the chunks_head directory.",
        db.head_chunks_size() as f64,
    );
    counter(
        out,
        "prometheus_tsdb_head_truncations_total",
        "Total number of head truncations attempted.",
        &stats.truncations,
    );
    summary(
        out,
        "prometheus_tsdb_head_gc_duration_seconds",
        "Runtime of garbage collection in the head block.",
        &stats.gc_duration,
    );
}

fn write_blocks(db: &Db, out: &mut Vec<u8>) {
    let m = db.metrics();
    gauge(
        out,
        "prometheus_tsdb_blocks_loaded",
        "Number of currently loaded data blocks",
        db.blocks().len() as f64,
    );
    gauge(
        out,
        "prometheus_tsdb_storage_blocks_bytes",
        "The number of bytes that are currently used for local storage by all blocks.",
        db.blocks_size() as f64,
    );
    gauge(
        out,
        "prometheus_tsdb_symbol_table_size_bytes",
        "Size of symbol table in memory for loaded blocks",
        db.symbol_table_size() as f64,
    );
    // No data at all reports the empty head's minimum, as Prometheus does.
    let lowest = db.lowest_timestamp().unwrap_or(i64::MAX);
    gauge(
        out,
        "prometheus_tsdb_lowest_timestamp",
        "Lowest timestamp value stored in the database. The unit is decided by the library consumer.",
        lowest as f64,
    );
    gauge(
        out,
        "prometheus_tsdb_lowest_timestamp_seconds",
        "Lowest timestamp value stored in the database.",
        ms_to_whole_seconds(lowest),
    );
    counter(
        out,
        "prometheus_tsdb_reloads_total",
        "Number of times the database reloaded block data from disk.",
        &m.reloads,
    );
    counter(
        out,
        "prometheus_tsdb_reloads_failures_total",
        "Number of times the database failed to reloadBlocks block data from disk.",
        &m.reloads_failed,
    );
    histogram(
        out,
        "prometheus_tsdb_tombstone_cleanup_seconds",
        "The time taken to recompact blocks to remove tombstones.",
        &m.tombstone_cleanup,
    );
}

fn write_compaction(db: &Db, out: &mut Vec<u8>) {
    let m = db.metrics();
    counter(
        out,
        "prometheus_tsdb_compactions_triggered_total",
        "Total number of triggered compactions for the partition.",
        &m.compactions_triggered,
    );
    counter(
        out,
        "prometheus_tsdb_compactions_failed_total",
        "Total number of compactions that failed for the partition.",
        &m.compactions_failed,
    );
    counter(
        out,
        "prometheus_tsdb_compactions_total",
        "Total number of compactions that were executed for the partition.",
        &m.compactions,
    );
    counter(
        out,
        "prometheus_tsdb_vertical_compactions_total",
        "Total number of compactions done on overlapping blocks.",
        &m.vertical_compactions,
    );
    gauge(
        out,
        "prometheus_tsdb_compaction_populating_block",
        "Set to 1 when a block is currently being written to the disk.",
        if m.populating_block.load(Ordering::Relaxed) {
            1.0
        } else {
            0.0
        },
    );
    histogram(
        out,
        "prometheus_tsdb_compaction_duration_seconds",
        "Duration of compaction runs",
        &m.compaction_duration,
    );
    histogram(
        out,
        "prometheus_tsdb_compaction_chunk_size_bytes",
        "Final size of chunks on their first compaction",
        &m.chunk_size,
    );
    histogram(
        out,
        "prometheus_tsdb_compaction_chunk_samples",
        "Final number of samples on their first compaction",
        &m.chunk_samples,
    );
    histogram(
        out,
        "prometheus_tsdb_compaction_chunk_range_seconds",
        "Final time range of chunks on their first compaction",
        &m.chunk_range,
    );
}

fn write_retention(db: &Db, out: &mut Vec<u8>) {
    let m = db.metrics();
    let opts = db.options();
    counter(
        out,
        "prometheus_tsdb_time_retentions_total",
        "The number of times that blocks were deleted because the maximum time limit was exceeded.",
        &m.time_retentions,
    );
    counter(
        out,
        "prometheus_tsdb_size_retentions_total",
        "The number of times that blocks were deleted because the maximum number of bytes was exceeded.",
        &m.size_retentions,
    );
    gauge(
        out,
        "prometheus_tsdb_retention_limit_bytes",
        "Max number of bytes to be retained in the tsdb blocks, configured 0 means disabled",
        opts.retention_size.unwrap_or(0) as f64,
    );
    gauge(
        out,
        "prometheus_tsdb_retention_limit_seconds",
        "How long to retain samples in storage.",
        opts.retention_time.unwrap_or(0) as f64 / 1000.0,
    );
}

fn write_wal(db: &Db, out: &mut Vec<u8>) {
    let m = db.metrics();
    gauge(
        out,
        "prometheus_tsdb_wal_storage_size_bytes",
        "Size of the write log directory.",
        db.wal_size() as f64,
    );
    if let Some(segment) = db.wal_segment_current() {
        gauge(
            out,
            "prometheus_tsdb_wal_segment_current",
            "Write log segment index that TSDB is currently writing to.",
            segment as f64,
        );
    }
    if let Some((compression, saved)) = db.wal_bytes_saved() {
        let name = "prometheus_tsdb_wal_record_bytes_saved_total";
        header(
            out,
            name,
            "Bytes of WAL records that compression spared writing.",
            MetricType::Counter,
        );
        let labels = Labels::from_pairs(&[
            ("__name__", name),
            ("compression", &compression.to_string()),
        ]);
        encode_text_sample(out, &labels, saved as f64, None);
    }
    counter(
        out,
        "prometheus_tsdb_wal_truncations_total",
        "Total number of write log truncations attempted.",
        &m.wal_truncations,
    );
    counter(
        out,
        "prometheus_tsdb_wal_truncations_failed_total",
        "Total number of write log truncations that failed.",
        &m.wal_truncations_failed,
    );
    summary(
        out,
        "prometheus_tsdb_wal_truncate_duration_seconds",
        "Duration of WAL truncation.",
        &m.wal_truncate_duration,
    );
    counter(
        out,
        "prometheus_tsdb_checkpoint_creations_total",
        "Total number of checkpoint creations attempted.",
        &m.checkpoint_creations,
    );
    counter(
        out,
        "prometheus_tsdb_checkpoint_creations_failed_total",
        "Total number of checkpoint creations that failed.",
        &m.checkpoint_creations_failed,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_storage::{Appender, SampleValue};
    use kiln_tsdb::db::DbOptions;

    const HOUR: i64 = 3_600_000;

    /// The exposition of a database that cut two blocks and deleted one by time.
    fn exposition() -> String {
        let tmp = tempfile::tempdir().expect("tempdir");
        let db = Db::open(
            tmp.path(),
            DbOptions {
                max_block_duration: 2 * HOUR,
                retention_time: Some(2 * HOUR),
                ..DbOptions::default()
            },
        )
        .expect("open");
        let labels = Labels::from_pairs(&[("__name__", "x")]);
        for minute in 0..(7 * 60) {
            let mut app = db.appender();
            app.append(0, &labels, minute * 60_000, SampleValue::Float(1.0))
                .expect("append");
            app.commit().expect("commit");
        }
        db.compact().expect("compact");
        let mut out = Vec::new();
        write_tsdb_metrics(&db, &mut out);
        String::from_utf8(out).expect("utf8")
    }

    #[test]
    fn families_are_named_typed_and_valued_as_in_prometheus() {
        let text = exposition();
        for want in [
            "# TYPE prometheus_tsdb_storage_blocks_bytes gauge\n",
            "# HELP prometheus_tsdb_blocks_loaded Number of currently loaded data blocks\n",
            // Blocks [0, 2h) and [2h, 4h) were cut; the first, 2 h behind the newest, is
            // gone by time.
            "prometheus_tsdb_blocks_loaded 1\n",
            "prometheus_tsdb_compactions_total 2\n",
            "prometheus_tsdb_compactions_triggered_total 1\n",
            "prometheus_tsdb_time_retentions_total 1\n",
            "prometheus_tsdb_size_retentions_total 0\n",
            "prometheus_tsdb_retention_limit_seconds 7200\n",
            "prometheus_tsdb_retention_limit_bytes 0\n",
            "prometheus_tsdb_lowest_timestamp 7.2e+06\n",
            "prometheus_tsdb_lowest_timestamp_seconds 7200\n",
            "prometheus_tsdb_head_truncations_total 2\n",
            "prometheus_tsdb_checkpoint_creations_total 2\n",
            "prometheus_tsdb_wal_truncations_total 2\n",
            "prometheus_tsdb_wal_segment_current 2\n",
            "# TYPE prometheus_tsdb_wal_record_bytes_saved_total counter\n",
            "# TYPE prometheus_tsdb_compaction_duration_seconds histogram\n",
            "prometheus_tsdb_compaction_duration_seconds_bucket{le=\"8192\"} 2\n",
            "prometheus_tsdb_compaction_duration_seconds_count 2\n",
            "prometheus_tsdb_compaction_chunk_range_seconds_bucket{le=\"2.62144e+07\"} 2\n",
            "prometheus_tsdb_compaction_chunk_samples_bucket{le=\"153.7734375\"} 2\n",
            "prometheus_tsdb_compaction_chunk_samples_count 2\n",
            "# TYPE prometheus_tsdb_head_gc_duration_seconds summary\n",
            "prometheus_tsdb_head_gc_duration_seconds_count 2\n",
            "prometheus_tsdb_tombstone_cleanup_seconds_bucket{le=\"+Inf\"} 0\n",
            "prometheus_tsdb_vertical_compactions_total 0\n",
            "prometheus_tsdb_compaction_populating_block 0\n",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
        let value = |name: &str| -> f64 {
            let line = text
                .lines()
                .find(|l| l.starts_with(&format!("{name} ")))
                .unwrap_or_else(|| panic!("no {name}"));
            line[name.len() + 1..].parse().expect("number")
        };
        assert!(value("prometheus_tsdb_storage_blocks_bytes") > 0.0);
        assert!(value("prometheus_tsdb_wal_storage_size_bytes") > 0.0);
        // Snappy, the default, spared bytes of the WAL's records.
        assert!(
            value("prometheus_tsdb_wal_record_bytes_saved_total{compression=\"snappy\"}") > 0.0
        );
        assert!(value("prometheus_tsdb_symbol_table_size_bytes") > 0.0);
        // Kiln's own parser and linter accept the exposition, as promtool would.
        let problems = kiln_exposition::lint_text(text.as_bytes()).expect("parses");
        assert!(problems.is_empty(), "{problems:?}");
    }
}
