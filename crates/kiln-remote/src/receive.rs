//! The remote-write receiver: a request body in, one append transaction out.
//!
//! What it checks, and the status each failure means to a sender (Prometheus's and
//! vmagent's senders retry 5xx and 429, and drop 4xx):
//! - `Content-Type`: `application/x-protobuf`; remote write 1.0 without a `proto`
//!   parameter or with `proto=prometheus.WriteRequest`, 2.0 with
//!   `proto=io.prometheus.write.v2.Request`; anything else, and no `Content-Type` at
//!   all, is 415. (A browser sends a cross-site POST without a preflight only with a
//!   "simple" content type or none, so insisting on protobuf keeps web pages out.)
//!   A body whose top-level fields belong to the other protocol (1.0's `timeseries`
//!   under a 2.0 type, 2.0's `symbols`/`timeseries` under a 1.0 type) is 400: decoding
//!   it as announced would skip every field and store nothing.
//!   `Content-Encoding`: `snappy` (the block format) or absent-as-snappy, as Prometheus
//!   accepts; anything else is 415.
//! - 2.0: `symbols[0]` must be the empty string and every reference (labels, help,
//!   unit, exemplar labels) inside the table, label references in pairs (400
//!   otherwise). Created (start) timestamps and metadata are accepted and not stored
//!   yet; the answer carries `X-Prometheus-Remote-Write-Samples-Written` (and
//!   `-Histograms-`, `-Exemplars-Written`, 0: not stored).
//! - Sizes: the compressed body against [`ReceiveLimits::max_body_bytes`] (413), the
//!   length the snappy header announces against
//!   [`ReceiveLimits::max_decompressed_bytes`] before anything is allocated (413, also
//!   for announcements of 4 GiB and more, which the snappy format cannot hold), the
//!   series per request (413).
//! - Series: label names non-empty, unique and sorted, `__name__` present, values
//!   non-empty... the rules of a valid Prometheus label set; native histograms refused
//!   (Kiln does not store them yet). Any of these is a 400 with the reason, and nothing
//!   of the request is stored.
//! - Samples go in one transaction; a sample the storage refuses as bad data (out of
//!   order, duplicate, out of bounds — judged against the head's newest sample, as
//!   Prometheus does, not the wall clock) rolls the request back and is a 400 with the
//!   storage's message. Other storage failures are a 500 (retried). Success is 204,
//!   after the commit, so after the WAL holds the samples.

use kiln_model::{Labels, LabelsBuilder, METRIC_NAME};
use kiln_storage::{Appender, ErrorKind, SampleValue, SeriesRef, StorageError};
use prost::Message;

use crate::proto::{WriteRequest, v2};

/// The protocol of a request, from its `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `prometheus.WriteRequest`.
    V1,
    /// `io.prometheus.write.v2.Request`.
    V2,
}

/// Limits of one request.
#[derive(Debug, Clone, Copy)]
pub struct ReceiveLimits {
    pub max_body_bytes: usize,
    pub max_decompressed_bytes: usize,
    pub max_series: usize,
}

impl Default for ReceiveLimits {
    fn default() -> Self {
        ReceiveLimits {
            max_body_bytes: 32 << 20,
            max_decompressed_bytes: 256 << 20,
            max_series: 1_000_000,
        }
    }
}

/// Why a request was refused; [`status`](ReceiveError::status) is the HTTP answer.
#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    #[error(
        "unsupported content type {0:?}: Kiln accepts remote write 1.0 (application/x-protobuf, proto=prometheus.WriteRequest)"
    )]
    UnsupportedContentType(String),
    #[error(
        "no Content-Type: remote write requests must say application/x-protobuf (1.0, or 2.0 with proto=io.prometheus.write.v2.Request)"
    )]
    MissingContentType,
    #[error(
        "the body is not a {declared} message: it holds field {field} of {found}; the Content-Type's proto parameter must name the message the body holds"
    )]
    ProtocolMismatch {
        declared: &'static str,
        found: &'static str,
        field: u64,
    },
    #[error("unsupported content encoding {0:?}: remote write bodies are snappy-compressed")]
    UnsupportedEncoding(String),
    #[error("request body of {size} bytes is over the limit of {limit}")]
    BodyTooLarge { size: usize, limit: usize },
    #[error("decompressed body of {size} bytes would be over the limit of {limit}")]
    DecompressedTooLarge { size: u64, limit: usize },
    #[error("{series} series in one request, over the limit of {limit}")]
    TooManySeries { series: usize, limit: usize },
    #[error("snappy decompression failed: {0}")]
    Snappy(String),
    #[error("protobuf decoding failed: {0}")]
    Protobuf(String),
    #[error("invalid series {labels}: {reason}")]
    InvalidSeries { labels: String, reason: String },
    #[error("symbol reference {reference} outside the table of {symbols} symbols")]
    BadSymbolRef { reference: u32, symbols: usize },
    #[error("invalid symbol table: {0}")]
    BadSymbols(String),
    #[error("series {labels}: native histograms are not supported by Kiln yet")]
    NativeHistogram { labels: String },
    #[error("{0}")]
    Storage(StorageError),
}

impl ReceiveError {
    /// The HTTP status: 415 for the wrong format, 413 over a limit, 400 for bad data,
    /// 503/500 for storage that cannot take the data now (senders retry those).
    pub fn status(&self) -> u16 {
        match self {
            ReceiveError::UnsupportedContentType(_)
            | ReceiveError::MissingContentType
            | ReceiveError::UnsupportedEncoding(_) => 415,
            ReceiveError::BodyTooLarge { .. }
            | ReceiveError::DecompressedTooLarge { .. }
            | ReceiveError::TooManySeries { .. } => 413,
            ReceiveError::Storage(e) => match e.kind() {
                ErrorKind::BadData => 400,
                ErrorKind::Unavailable | ErrorKind::Timeout => 503,
                _ => 500,
            },
            _ => 400,
        }
    }
}

/// What a stored request held.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteStats {
    pub series: usize,
    pub samples: usize,
    /// Exemplars received and not stored (Kiln does not store exemplars yet).
    pub exemplars_ignored: usize,
}

/// Checks the request's headers and tells the protocol: snappy-compressed protobuf of
/// remote write 1.0 or 2.0.
pub fn check_headers(
    content_type: Option<&str>,
    content_encoding: Option<&str>,
) -> Result<Protocol, ReceiveError> {
    let ct = content_type.ok_or(ReceiveError::MissingContentType)?;
    let mut parts = ct.split(';').map(str::trim);
    let media = parts.next().unwrap_or_default();
    if !media.eq_ignore_ascii_case("application/x-protobuf") {
        return Err(ReceiveError::UnsupportedContentType(ct.to_owned()));
    }
    let mut protocol = Protocol::V1;
    for p in parts {
        if let Some(proto) = p.strip_prefix("proto=") {
            protocol = match proto.trim_matches('"') {
                "prometheus.WriteRequest" => Protocol::V1,
                "io.prometheus.write.v2.Request" => Protocol::V2,
                _ => return Err(ReceiveError::UnsupportedContentType(ct.to_owned())),
            };
        }
    }
    match content_encoding {
        None => Ok(protocol),
        Some(e) if e.eq_ignore_ascii_case("snappy") => Ok(protocol),
        Some(e) => Err(ReceiveError::UnsupportedEncoding(e.to_owned())),
    }
}

/// Decompresses and decodes a 1.0 body, within `limits`.
pub fn decode(body: &[u8], limits: &ReceiveLimits) -> Result<WriteRequest, ReceiveError> {
    let raw = decompress(body, limits)?;
    let req =
        WriteRequest::decode(raw.as_slice()).map_err(|e| ReceiveError::Protobuf(e.to_string()))?;
    check_series_count(req.timeseries.len(), limits)?;
    Ok(req)
}

/// Decompresses and decodes a 2.0 body, within `limits`.
pub fn decode_v2(body: &[u8], limits: &ReceiveLimits) -> Result<v2::Request, ReceiveError> {
    let raw = decompress(body, limits)?;
    scan::refuse_v1_fields(&raw)?;
    let req =
        v2::Request::decode(raw.as_slice()).map_err(|e| ReceiveError::Protobuf(e.to_string()))?;
    check_series_count(req.timeseries.len(), limits)?;
    Ok(req)
}

fn check_series_count(series: usize, limits: &ReceiveLimits) -> Result<(), ReceiveError> {
    if series > limits.max_series {
        return Err(ReceiveError::TooManySeries {
            series,
            limit: limits.max_series,
        });
    }
    Ok(())
}

/// The snappy block of `body`, within `limits`.
pub(crate) fn decompress(body: &[u8], limits: &ReceiveLimits) -> Result<Vec<u8>, ReceiveError> {
    if body.len() > limits.max_body_bytes {
        return Err(ReceiveError::BodyTooLarge {
            size: body.len(),
            limit: limits.max_body_bytes,
        });
    }
    // The snappy header announces the decompressed length; check it before the decoder
    // allocates that much. The format caps it at 4 GiB - 1: the decoder reports a larger
    // announcement as an error of its own, which is the same refusal (over the limit),
    // not malformed input.
    let size = match snap::raw::decompress_len(body) {
        Ok(size) => size as u64,
        Err(snap::Error::TooBig { given, .. }) => given,
        Err(e) => return Err(ReceiveError::Snappy(e.to_string())),
    };
    if size > limits.max_decompressed_bytes as u64 {
        return Err(ReceiveError::DecompressedTooLarge {
            size,
            limit: limits.max_decompressed_bytes,
        });
    }
    snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| ReceiveError::Snappy(e.to_string()))
}

/// The label set of a series (name/value pairs as sent), checked as Prometheus checks
/// remote-written series.
fn series_labels(labels: &[(&str, &str)], b: &mut LabelsBuilder) -> Result<Labels, ReceiveError> {
    let shown = || {
        let mut s = String::from("{");
        for (i, (n, v)) in labels.iter().enumerate() {
            if i > 0 {
                s.push_str(", ");
            }
            s.push_str(&format!("{n}={v:?}"));
        }
        s.push('}');
        s
    };
    let invalid = |reason: String| ReceiveError::InvalidSeries {
        labels: shown(),
        reason,
    };
    b.reset();
    let mut has_name = false;
    for (i, &(name, value)) in labels.iter().enumerate() {
        if name.is_empty() {
            return Err(invalid("empty label name".into()));
        }
        if value.is_empty() {
            return Err(invalid(format!("label {name:?} has an empty value")));
        }
        if i > 0 {
            let prev = labels[i - 1].0;
            if prev == name {
                return Err(invalid(format!("duplicate label name {name:?}")));
            }
            if prev > name {
                return Err(invalid(format!(
                    "label names out of order: {prev:?} before {name:?}"
                )));
            }
        }
        has_name |= name == METRIC_NAME;
        b.set(name, value);
    }
    if !has_name {
        return Err(invalid("no metric name (__name__)".into()));
    }
    Ok(b.build())
}

/// One series of a request, whichever the protocol.
struct Series<'a, I> {
    /// Label names and values as sent.
    pairs: &'a [(&'a str, &'a str)],
    /// (timestamp, value) of each float sample.
    samples: I,
    histograms: usize,
    exemplars: usize,
}

/// Checks a series' labels and appends its samples; counts into `stats`.
fn store_series<I: Iterator<Item = (i64, f64)>>(
    app: &mut dyn Appender,
    series: Series<'_, I>,
    b: &mut LabelsBuilder,
    stats: &mut WriteStats,
) -> Result<(), ReceiveError> {
    let labels = series_labels(series.pairs, b)?;
    append_series(app, &labels, 0, series.samples, series.histograms, stats)?;
    stats.exemplars_ignored += series.exemplars;
    Ok(())
}

/// Appends one series' float samples under `labels` (a series with native histograms
/// is refused), starting from the storage reference `series_ref` (0: look it up);
/// counts the series and its samples into `stats` and returns the reference.
fn append_series(
    app: &mut dyn Appender,
    labels: &Labels,
    mut series_ref: SeriesRef,
    samples: impl IntoIterator<Item = (i64, f64)>,
    histograms: usize,
    stats: &mut WriteStats,
) -> Result<SeriesRef, ReceiveError> {
    if histograms > 0 {
        return Err(ReceiveError::NativeHistogram {
            labels: labels.to_string(),
        });
    }
    for (t, v) in samples {
        series_ref = app
            .append(series_ref, labels, t, SampleValue::Float(v))
            .map_err(ReceiveError::Storage)?;
        stats.samples += 1;
    }
    stats.series += 1;
    Ok(series_ref)
}

/// Stores a decompressed 1.0 request as one transaction, reading it in place (see
/// `scan`). A series the `cache` knows goes to the storage by reference alone: its
/// labels are neither checked nor built again. When the storage no longer knows the
/// reference (the series was garbage-collected), the labels are built from the request
/// and that sample and the rest are appended with them. The caller commits on
/// `Ok` (the appender's commit is what makes the samples durable) and rolls back on
/// `Err`.
fn append_v1(
    app: &mut dyn Appender,
    raw: &[u8],
    cache: &SeriesCache,
    limits: &ReceiveLimits,
) -> Result<WriteStats, ReceiveError> {
    let mut stats = WriteStats::default();
    let mut b = LabelsBuilder::new();
    let mut pairs: Vec<(&str, &str)> = Vec::new();
    let mut view = scan::SeriesView::default();
    let no_labels = Labels::empty();
    scan::for_each_series(raw, &mut view, |v| {
        check_series_count(stats.series + 1, limits)?;
        let key = v.labels_block.map(SeriesCache::key);
        let cached = key.and_then(|k| cache.get(k)).filter(|_| v.histograms == 0);
        let mut samples = v.samples.iter().copied();
        let mut series_ref = 0;
        let mut refused = None;
        if let Some(known) = cached {
            series_ref = known;
            for (t, value) in samples.by_ref() {
                match app.append(series_ref, &no_labels, t, SampleValue::Float(value)) {
                    Ok(r) => {
                        series_ref = r;
                        stats.samples += 1;
                    }
                    Err(StorageError::UnknownSeriesRef { .. }) => {
                        refused = Some((t, value));
                        series_ref = 0;
                        break;
                    }
                    Err(e) => return Err(ReceiveError::Storage(e)),
                }
            }
        }
        if cached.is_none() || refused.is_some() {
            pairs.clear();
            for l in &v.labels {
                pairs.push(scan::label(l)?);
            }
            let labels = series_labels(&pairs, &mut b)?;
            let rest = refused.into_iter().chain(samples);
            series_ref = append_series(app, &labels, series_ref, rest, v.histograms, &mut stats)?;
        } else {
            stats.series += 1;
        }
        stats.exemplars_ignored += v.exemplars;
        if let Some(k) = key
            && series_ref != 0
            && cached != Some(series_ref)
        {
            cache.put(k, series_ref);
        }
        Ok(())
    })?;
    Ok(stats)
}

/// Appends a decoded 2.0 request as one transaction (see [`append_v1`]).
pub fn append_v2(app: &mut dyn Appender, req: &v2::Request) -> Result<WriteStats, ReceiveError> {
    let symbols = &req.symbols;
    if symbols.first().is_some_and(|s| !s.is_empty()) {
        return Err(ReceiveError::BadSymbols(
            "the first symbol must be the empty string".into(),
        ));
    }
    let symbol = |r: u32| {
        symbols
            .get(r as usize)
            .map(String::as_str)
            .ok_or(ReceiveError::BadSymbolRef {
                reference: r,
                symbols: symbols.len(),
            })
    };
    let mut stats = WriteStats::default();
    let mut b = LabelsBuilder::new();
    let mut pairs = Vec::new();
    for ts in &req.timeseries {
        if ts.labels_refs.len() % 2 != 0 {
            return Err(ReceiveError::BadSymbols(format!(
                "{} label references: names and values must come in pairs",
                ts.labels_refs.len()
            )));
        }
        pairs.clear();
        for pair in ts.labels_refs.chunks_exact(2) {
            pairs.push((symbol(pair[0])?, symbol(pair[1])?));
        }
        if let Some(m) = &ts.metadata {
            symbol(m.help_ref)?;
            symbol(m.unit_ref)?;
        }
        for e in &ts.exemplars {
            for &r in &e.labels_refs {
                symbol(r)?;
            }
        }
        let series = Series {
            pairs: &pairs,
            samples: ts.samples.iter().map(|s| (s.timestamp, s.value)),
            histograms: ts.histograms.len(),
            exemplars: ts.exemplars.len(),
        };
        store_series(app, series, &mut b, &mut stats)?;
    }
    Ok(stats)
}

/// Decodes, checks and stores one request of `protocol` in `app`, committing it; what
/// a handler calls. On error nothing of the request is stored.
pub fn receive(
    app: &mut dyn Appender,
    protocol: Protocol,
    body: &[u8],
    limits: &ReceiveLimits,
    cache: &SeriesCache,
) -> Result<WriteStats, ReceiveError> {
    let appended = match protocol {
        Protocol::V1 => {
            decompress(body, limits).and_then(|raw| append_v1(app, &raw, cache, limits))
        }
        Protocol::V2 => decode_v2(body, limits).and_then(|req| append_v2(app, &req)),
    };
    match appended {
        Ok(stats) => {
            app.commit().map_err(ReceiveError::Storage)?;
            Ok(stats)
        }
        Err(e) => {
            let _ = app.rollback();
            Err(e)
        }
    }
}

mod cache;
mod scan;
#[cfg(test)]
mod tests;

pub use cache::SeriesCache;
