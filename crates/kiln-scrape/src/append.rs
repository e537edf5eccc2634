//! One scrape's body into storage: label handling, limits, staleness and the report
//! series, as Prometheus does it. The HTTP fetch and the schedule live elsewhere; this
//! is the part with the semantics, testable over any [`Appender`].
//!
//! For each sample of the body, in order:
//! 1. Target labels join the sample's. With `honor_labels` the sample's own win; without
//!    it the target's win and a clashing sample label is kept as `exported_<name>`
//!    (`exported_exported_<name>` if that exists too, and so on).
//! 2. `metric_relabel_configs` run; a dropped sample is not counted further.
//! 3. Limits (`label_limit`, `label_name_length_limit`, `label_value_length_limit`, then
//!    `sample_limit` over the whole body) fail the whole scrape: nothing of it is kept.
//! 4. The sample's own timestamp is used when `honor_timestamps` (the default), else the
//!    scrape time.
//!
//! After a successful scrape, every series of the previous scrape that is missing now
//! gets a staleness marker at the scrape time; after a failed one, every series of the
//! previous scrape does. Series with explicit timestamps are left out of this unless
//! `track_timestamps_staleness`. Then the report series are written with the target's
//! labels: `up`, `scrape_duration_seconds`, `scrape_samples_scraped`,
//! `scrape_samples_post_metric_relabeling` and `scrape_series_added`, and with
//! `extra_scrape_metrics` also `scrape_timeout_seconds`, `scrape_sample_limit` and
//! `scrape_body_size_bytes` (-1 when the body was over `body_size_limit`).

mod cache;

use std::collections::BTreeMap;
use std::sync::Arc;

pub use cache::ScrapeCache;
use cache::text_key;

use kiln_config::ScrapeConfig;
use kiln_exposition::{Entry, Format, MetricType, Parser, ParserOptions, series_labels};
use kiln_model::relabel::relabel;
use kiln_model::{Labels, LabelsBuilder, METRIC_NAME, STALE_NAN};
use kiln_storage::{Appender, SampleValue, StorageError};

/// A metric family's metadata, from the `# TYPE`, `# HELP` and `# UNIT` lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FamilyMetadata {
    pub kind: MetricType,
    pub help: String,
    pub unit: String,
}

/// Family name to metadata, as a target's last successful scrape gave them.
pub type TargetMetadata = Arc<BTreeMap<String, FamilyMetadata>>;

/// Why a scrape's body was not stored.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ScrapeError {
    #[error("{0}")]
    Parse(String),
    #[error("sample_limit exceeded: {samples} samples, limit {limit}")]
    SampleLimit { samples: u64, limit: u64 },
    #[error("label_limit exceeded (metric: {metric}, number of labels: {labels}, limit: {limit})")]
    LabelLimit {
        metric: String,
        labels: u64,
        limit: u64,
    },
    #[error(
        "label_name_length_limit exceeded (metric: {metric}, label name: {name}, length: {length}, limit: {limit})"
    )]
    LabelNameLength {
        metric: String,
        name: String,
        length: u64,
        limit: u64,
    },
    #[error(
        "label_value_length_limit exceeded (metric: {metric}, label name: {name}, value: {value:?}, length: {length}, limit: {limit})"
    )]
    LabelValueLength {
        metric: String,
        name: String,
        value: String,
        length: u64,
        limit: u64,
    },
    /// The fetch failed before there was a body (set by the caller).
    #[error("{0}")]
    Fetch(String),
    #[error("body size limit exceeded ({limit} bytes, body_size_limit)")]
    BodySizeLimit { limit: u64 },
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
}

/// What one scrape did: the numbers of the report series.
#[derive(Debug, Clone, Default)]
pub struct ScrapeReport {
    /// Samples in the body.
    pub samples_scraped: u64,
    /// Samples left after metric relabeling.
    pub samples_post_relabel: u64,
    /// Series of this scrape that the previous one did not have.
    pub series_added: u64,
    /// Samples the storage refused (out of order, duplicate, out of bounds).
    pub samples_rejected: u64,
    /// Of those, the ones refused for their timestamp: too old, or too far in the
    /// future (Prometheus's `out of bounds`).
    pub samples_out_of_bounds: u64,
    /// Of those, the ones older than their series' newest sample.
    pub samples_out_of_order: u64,
    /// Of those, the ones at the time of their series' newest sample with another value.
    pub samples_duplicate_timestamp: u64,
    /// Why the scrape failed, if it did (`up` is 0 then).
    pub error: Option<ScrapeError>,
}

/// When a scrape started, how long it took, and the target's timeout.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScrapeTiming {
    /// Start of the scrape, Unix ms: the time of the samples without their own.
    pub t: i64,
    pub duration_s: f64,
    pub timeout_s: f64,
}

/// Stores one scrape of a target: `body` parsed as `format`, or the error that left no
/// body. Writes the samples, staleness markers and report series through `app` and
/// commits. `target_labels` are the labels every series of the target gets
/// ([`crate::Target::series_labels`]).
pub fn store_scrape(
    app: &mut dyn Appender,
    config: &ScrapeConfig,
    target_labels: &Labels,
    cache: &mut ScrapeCache,
    body: Result<(&[u8], Format), ScrapeError>,
    timing: ScrapeTiming,
) -> Result<ScrapeReport, StorageError> {
    let t = timing.t;
    // `scrape_body_size_bytes`: -1 when the body was over `body_size_limit`.
    let body_size = match &body {
        Ok((bytes, _)) => bytes.len() as f64,
        Err(ScrapeError::BodySizeLimit { .. }) => -1.0,
        Err(_) => 0.0,
    };
    let mut report = ScrapeReport::default();
    let iteration = cache.begin();
    let mut metadata = BTreeMap::new();
    let outcome = match body {
        Ok((bytes, format)) => append_body(
            app,
            config,
            target_labels,
            cache,
            bytes,
            format,
            t,
            &mut report,
            iteration,
            &mut metadata,
        ),
        Err(e) => Err(e),
    };
    if outcome.is_ok() {
        cache.metadata = Arc::new(metadata);
    }
    let success = outcome.is_ok();
    if let Err(e) = outcome {
        app.rollback()?;
        report.series_added = 0;
        report.error = Some(e);
    }
    // Staleness: series of the previous scrape that this one (or a failure) left out.
    // A refusal (the series already has a sample at or after `t`) is not an error.
    cache.finish(success, |labels, series_ref| {
        let _ = app.append(series_ref, labels, t, SampleValue::Float(STALE_NAN));
    });
    append_report(app, config, target_labels, timing, body_size, &report);
    app.commit()?;
    Ok(report)
}

// The scrape's whole context; bundling it in a struct would only rename the arguments.
#[allow(clippy::too_many_arguments)]
fn append_body(
    app: &mut dyn Appender,
    config: &ScrapeConfig,
    target_labels: &Labels,
    cache: &mut ScrapeCache,
    bytes: &[u8],
    format: Format,
    t: i64,
    report: &mut ScrapeReport,
    iteration: u32,
    metadata: &mut BTreeMap<String, FamilyMetadata>,
) -> Result<(), ScrapeError> {
    let limits = &config.limits;
    let mut builder = LabelsBuilder::new();
    // Labels are built only for series texts the cache does not know.
    let opts = ParserOptions {
        skip_labels: true,
        ..ParserOptions::default()
    };
    let mut parser = Parser::with_options(bytes, format, opts);
    while let Some(entry) = parser.next() {
        let entry = entry.map_err(|e| ScrapeError::Parse(e.to_string()))?;
        let sample = match entry {
            Entry::Sample(sample) => sample,
            Entry::Type { family, kind } => {
                family_metadata(metadata, family).kind = kind;
                continue;
            }
            Entry::Help { family, text } => {
                family_metadata(metadata, family).help = text.into_owned();
                continue;
            }
            Entry::Unit { family, unit } => {
                family_metadata(metadata, family).unit = unit.to_owned();
                continue;
            }
            Entry::Eof => continue,
        };
        report.samples_scraped += 1;
        let key = text_key(sample.series);
        let mut new_text = false;
        let slot = match cache.lookup(key) {
            Some(slot) => slot,
            None => {
                new_text = true;
                // The label set is checked here, the first time its text is seen; the
                // error points at the sample's line in the body.
                let (own, empty) = series_labels(sample.series, format).map_err(|mut e| {
                    e.line = parser.line();
                    ScrapeError::Parse(e.to_string())
                })?;
                let merged = merge_target_labels(
                    &mut builder,
                    &own,
                    &empty,
                    target_labels,
                    config.honor_labels,
                );
                let labels =
                    relabel(&merged, &config.metric_relabel_configs).filter(|l| !l.is_empty());
                if let Some(l) = &labels {
                    check_label_limits(l, config)?;
                }
                cache.insert(key, labels)
            }
        };
        let entry = cache.entry_mut(slot);
        let Some(labels) = &entry.labels else {
            continue;
        };
        report.samples_post_relabel += 1;
        if limits.sample_limit > 0 && report.samples_post_relabel > limits.sample_limit {
            // Count the rest, as Prometheus reports the full number.
            continue;
        }
        let explicit = config.honor_timestamps && sample.timestamp_ms.is_some();
        let ts = if explicit {
            sample.timestamp_ms.unwrap_or(t)
        } else {
            t
        };
        match app.append(
            entry.series_ref,
            labels,
            ts,
            SampleValue::Float(sample.value),
        ) {
            Ok(series_ref) => {
                entry.series_ref = series_ref;
                if new_text {
                    report.series_added += 1;
                }
                if !explicit || config.track_timestamps_staleness {
                    entry.track(iteration);
                }
            }
            Err(e) => {
                report.samples_rejected += 1;
                match e {
                    StorageError::OutOfOrderSample { .. } => report.samples_out_of_order += 1,
                    StorageError::DuplicateSampleForTimestamp { .. } => {
                        report.samples_duplicate_timestamp += 1;
                    }
                    e if e.is_out_of_bounds() => report.samples_out_of_bounds += 1,
                    _ => {}
                }
            }
        }
    }
    if limits.sample_limit > 0 && report.samples_post_relabel > limits.sample_limit {
        return Err(ScrapeError::SampleLimit {
            samples: report.samples_post_relabel,
            limit: limits.sample_limit,
        });
    }
    Ok(())
}

fn family_metadata<'m>(
    metadata: &'m mut BTreeMap<String, FamilyMetadata>,
    family: &str,
) -> &'m mut FamilyMetadata {
    metadata
        .entry(family.to_owned())
        .or_insert_with(|| FamilyMetadata {
            kind: MetricType::Unknown,
            help: String::new(),
            unit: String::new(),
        })
}

/// Step 1 of the module documentation.
///
/// `empty` names the sample's labels written with an empty value: with `honor_labels`
/// they count as present (so `instance=""` keeps the target's `instance` off), then
/// vanish like every empty label.
fn merge_target_labels(
    builder: &mut LabelsBuilder,
    sample: &Labels,
    empty: &[String],
    target: &Labels,
    honor_labels: bool,
) -> Labels {
    if target.is_empty() {
        return sample.clone();
    }
    builder.reset();
    for l in sample.iter() {
        builder.set(l.name, l.value);
    }
    if honor_labels {
        for l in target.iter() {
            if sample.get(l.name).is_none() && !empty.iter().any(|n| n == l.name) {
                builder.set(l.name, l.value);
            }
        }
    } else {
        for l in target.iter() {
            if let Some(existing) = sample.get(l.name) {
                let mut exported = format!("exported_{}", l.name);
                while sample.get(&exported).is_some() {
                    exported.insert_str(0, "exported_");
                }
                builder.set(&exported, existing);
            }
            builder.set(l.name, l.value);
        }
    }
    builder.build()
}

fn check_label_limits(labels: &Labels, config: &ScrapeConfig) -> Result<(), ScrapeError> {
    let limits = &config.limits;
    let metric = || labels.metric_name().unwrap_or_default().to_owned();
    let count = labels.len() as u64;
    if limits.label_limit > 0 && count > limits.label_limit {
        return Err(ScrapeError::LabelLimit {
            metric: metric(),
            labels: count,
            limit: limits.label_limit,
        });
    }
    for l in labels.iter() {
        let name_len = l.name.len() as u64;
        if limits.label_name_length_limit > 0 && name_len > limits.label_name_length_limit {
            return Err(ScrapeError::LabelNameLength {
                metric: metric(),
                name: l.name.to_owned(),
                length: name_len,
                limit: limits.label_name_length_limit,
            });
        }
        let value_len = l.value.chars().count() as u64;
        if limits.label_value_length_limit > 0 && value_len > limits.label_value_length_limit {
            return Err(ScrapeError::LabelValueLength {
                metric: metric(),
                name: l.name.to_owned(),
                value: l.value.to_owned(),
                length: value_len,
                limit: limits.label_value_length_limit,
            });
        }
    }
    Ok(())
}

/// The report series Prometheus writes with `extra_scrape_metrics: true`, besides
/// [`REPORT_SERIES`].
pub const EXTRA_REPORT_SERIES: [&str; 3] = [
    "scrape_timeout_seconds",
    "scrape_sample_limit",
    "scrape_body_size_bytes",
];

/// The report series every scrape writes.
pub const REPORT_SERIES: [&str; 5] = [
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
];

/// The report series, each with the target's labels, at the scrape time.
fn append_report(
    app: &mut dyn Appender,
    config: &ScrapeConfig,
    target_labels: &Labels,
    timing: ScrapeTiming,
    body_size: f64,
    report: &ScrapeReport,
) {
    let up = if report.error.is_none() { 1.0 } else { 0.0 };
    let mut series = vec![
        ("up", up),
        ("scrape_duration_seconds", timing.duration_s),
        ("scrape_samples_scraped", report.samples_scraped as f64),
        (
            "scrape_samples_post_metric_relabeling",
            report.samples_post_relabel as f64,
        ),
        ("scrape_series_added", report.series_added as f64),
    ];
    if config.extra_scrape_metrics {
        series.extend([
            ("scrape_timeout_seconds", timing.timeout_s),
            ("scrape_sample_limit", config.limits.sample_limit as f64),
            ("scrape_body_size_bytes", body_size),
        ]);
    }
    for (name, value) in series {
        let mut b = target_labels.to_builder();
        b.set(METRIC_NAME, name);
        // A refusal (a report already written for this time) leaves the earlier one.
        let _ = app.append(0, &b.build(), timing.t, SampleValue::Float(value));
    }
}

#[cfg(test)]
mod tests;
