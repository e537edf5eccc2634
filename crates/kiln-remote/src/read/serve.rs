//! The `/api/v1/read` server: a snappy-compressed `ReadRequest` in, the stored series out,
//! as samples (`SAMPLES`) or as the chunks exactly as stored (`STREAMED_XOR_CHUNKS`).
//!
//! As in Prometheus, matchers on the server's external labels are dropped from each
//! query (a client with `filter_external_labels` adds them), and the external labels are
//! added to every series returned that lacks them. The server answers in the first
//! response type of the client's list it supports (samples when the list is empty).

use std::collections::BTreeMap;

use kiln_model::{Labels, MatchType, Matcher};
use kiln_storage::{ChunkQueryable, Queryable, SelectHints, StorageError, ValueKind};
use prost::Message;

use crate::proto::read::{
    Chunk, ChunkedReadResponse, ChunkedSeries, LabelMatcher, Query, QueryResult, RESPONSE_SAMPLES,
    RESPONSE_STREAMED_XOR_CHUNKS, ReadRequest, ReadResponse,
};
use crate::proto::{Label, Sample, TimeSeries};
use crate::receive::{ReceiveLimits, decompress};

use super::frames::put_frame;

/// The content type of a streamed answer.
pub const STREAMED_CONTENT_TYPE: &str =
    "application/x-streamed-protobuf; proto=prometheus.ChunkedReadResponse";

/// Limits of one read request (Prometheus's `--storage.remote.read-*` flags).
#[derive(Debug, Clone, Copy)]
pub struct ReadLimits {
    /// Samples a `SAMPLES` answer may hold in all (0: no limit).
    pub max_samples: usize,
    /// Bytes of chunk data per frame of a streamed answer (a frame may exceed it by
    /// one chunk).
    pub max_bytes_in_frame: usize,
}

impl Default for ReadLimits {
    fn default() -> ReadLimits {
        ReadLimits {
            max_samples: 50_000_000,
            max_bytes_in_frame: 1 << 20,
        }
    }
}

/// Why a read request failed; [`ReadError::status`] is the HTTP answer.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{0}")]
    BadRequest(String),
    #[error("exceeded sample limit ({0})")]
    SampleLimit(usize),
    #[error("{0}")]
    Storage(#[from] StorageError),
    /// The client stopped reading a streamed answer.
    #[error("the client went away")]
    Gone,
}

impl ReadError {
    pub fn status(&self) -> u16 {
        match self {
            ReadError::BadRequest(_) | ReadError::SampleLimit(_) => 400,
            ReadError::Storage(_) | ReadError::Gone => 500,
        }
    }
}

/// An answer: its headers and body.
#[derive(Debug)]
pub struct ReadAnswer {
    pub content_type: &'static str,
    /// `Some("snappy")` for sample answers.
    pub content_encoding: Option<&'static str>,
    pub body: Vec<u8>,
}

/// What remote read reads from: decoded samples (`SAMPLES` answers) and stored chunks
/// (`STREAMED_XOR_CHUNKS`) over a time range. Anything that implements both storage
/// contracts serves: the TSDB, a bucket store, a fan-out.
pub trait ReadStorage: Queryable + ChunkQueryable {}

impl<T: Queryable + ChunkQueryable + ?Sized> ReadStorage for T {}

/// A decoded read request and the response type it will be answered in.
pub struct ReadPlan {
    req: ReadRequest,
    streamed: bool,
}

impl ReadPlan {
    /// Decodes a request body (snappy + protobuf) and picks the response type: the
    /// first of the client's list Kiln supports, samples when the list is empty.
    pub fn decode(body: &[u8]) -> Result<ReadPlan, ReadError> {
        let raw = decompress(body, &ReceiveLimits::default())
            .map_err(|e| ReadError::BadRequest(e.to_string()))?;
        let req = ReadRequest::decode(raw.as_slice())
            .map_err(|e| ReadError::BadRequest(format!("protobuf decoding failed: {e}")))?;
        let supported = [RESPONSE_SAMPLES, RESPONSE_STREAMED_XOR_CHUNKS];
        let first = req
            .accepted_response_types
            .iter()
            .find(|t| supported.contains(t));
        if !req.accepted_response_types.is_empty() && first.is_none() {
            return Err(ReadError::BadRequest(format!(
                "none of the accepted response types {:?} is supported",
                req.accepted_response_types
            )));
        }
        let streamed = first == Some(&RESPONSE_STREAMED_XOR_CHUNKS);
        Ok(ReadPlan { req, streamed })
    }

    /// Whether the answer is a stream of frames ([`answer_streamed`](Self::answer_streamed)).
    pub fn is_streamed(&self) -> bool {
        self.streamed
    }

    /// The `SAMPLES` answer, whole (bounded by the sample limit).
    pub fn answer_samples(
        &self,
        storage: &dyn ReadStorage,
        external_labels: &BTreeMap<String, String>,
        limits: &ReadLimits,
    ) -> Result<ReadAnswer, ReadError> {
        let mut results = Vec::with_capacity(self.req.queries.len());
        let mut samples = 0usize;
        for q in &self.req.queries {
            results.push(sample_query(
                q,
                storage,
                external_labels,
                limits,
                &mut samples,
            )?);
        }
        let raw = ReadResponse { results }.encode_to_vec();
        let body = snap::raw::Encoder::new()
            .compress_vec(&raw)
            .map_err(|e| ReadError::BadRequest(format!("snappy compression failed: {e}")))?;
        Ok(ReadAnswer {
            content_type: "application/x-protobuf",
            content_encoding: Some("snappy"),
            body,
        })
    }

    /// The `STREAMED_XOR_CHUNKS` answer, handed to `send` one frame at a time as it is
    /// read from storage (content type [`STREAMED_CONTENT_TYPE`]), so a large read holds
    /// about one frame in memory. An error from `send` (the client went away) stops it.
    pub fn answer_streamed(
        &self,
        storage: &dyn ReadStorage,
        external_labels: &BTreeMap<String, String>,
        limits: &ReadLimits,
        send: &mut dyn FnMut(Vec<u8>) -> Result<(), ReadError>,
    ) -> Result<(), ReadError> {
        for (i, q) in self.req.queries.iter().enumerate() {
            stream_query(i, q, storage, external_labels, limits, send)?;
        }
        Ok(())
    }
}

/// Answers one read request body in memory. See the module docs.
pub fn serve(
    body: &[u8],
    storage: &dyn ReadStorage,
    external_labels: &BTreeMap<String, String>,
    limits: &ReadLimits,
) -> Result<ReadAnswer, ReadError> {
    let plan = ReadPlan::decode(body)?;
    if !plan.is_streamed() {
        return plan.answer_samples(storage, external_labels, limits);
    }
    let mut out = Vec::new();
    plan.answer_streamed(storage, external_labels, limits, &mut |frame| {
        out.extend_from_slice(&frame);
        Ok(())
    })?;
    Ok(ReadAnswer {
        content_type: STREAMED_CONTENT_TYPE,
        content_encoding: None,
        body: out,
    })
}

/// The query's matchers, without those the external labels satisfy.
fn matchers(
    q: &Query,
    external_labels: &BTreeMap<String, String>,
) -> Result<Vec<Matcher>, ReadError> {
    let mut out = Vec::with_capacity(q.matchers.len());
    for m in &q.matchers {
        if m.r#type == 0 && external_labels.get(&m.name) == Some(&m.value) {
            continue;
        }
        out.push(to_matcher(m)?);
    }
    Ok(out)
}

pub(crate) fn to_matcher(m: &LabelMatcher) -> Result<Matcher, ReadError> {
    let kind = match m.r#type {
        0 => MatchType::Equal,
        1 => MatchType::NotEqual,
        2 => MatchType::Regex,
        3 => MatchType::NotRegex,
        t => return Err(ReadError::BadRequest(format!("unknown matcher type {t}"))),
    };
    Matcher::new(kind, &m.name, &m.value).map_err(|e| ReadError::BadRequest(e.to_string()))
}

fn hints(q: &Query) -> SelectHints {
    let h = q.hints.clone().unwrap_or_default();
    SelectHints {
        start: q.start_timestamp_ms,
        end: q.end_timestamp_ms,
        step: h.step_ms,
        range: h.range_ms,
        func: (!h.func.is_empty()).then_some(h.func),
    }
}

/// `labels` with the external labels it lacks, as protobuf labels (sorted).
fn outgoing_labels(labels: &Labels, external_labels: &BTreeMap<String, String>) -> Vec<Label> {
    let full = if external_labels.keys().all(|k| labels.get(k).is_some()) {
        labels.clone()
    } else {
        let mut b = labels.to_builder();
        for (k, v) in external_labels {
            if labels.get(k).is_none() {
                b.set(k, v);
            }
        }
        b.build()
    };
    full.iter()
        .map(|l| Label {
            name: l.name.to_owned(),
            value: l.value.to_owned(),
        })
        .collect()
}

fn sample_query(
    q: &Query,
    storage: &dyn ReadStorage,
    external_labels: &BTreeMap<String, String>,
    limits: &ReadLimits,
    total: &mut usize,
) -> Result<QueryResult, ReadError> {
    let ms = matchers(q, external_labels)?;
    let (mint, maxt) = (q.start_timestamp_ms, q.end_timestamp_ms);
    let querier = storage.querier(mint, maxt)?;
    let h = hints(q);
    let mut set = querier.select(true, Some(&h), &ms);
    let mut timeseries = Vec::new();
    while let Some(series) = set.next() {
        let mut it = series.iterator();
        let mut samples = Vec::new();
        while it.next() != ValueKind::None {
            let (t, v) = it.at();
            if t < mint || t > maxt {
                continue;
            }
            samples.push(Sample {
                value: v,
                timestamp: t,
            });
        }
        if let Some(e) = it.err() {
            return Err(ReadError::Storage(e.clone()));
        }
        if samples.is_empty() {
            continue;
        }
        *total += samples.len();
        if limits.max_samples > 0 && *total > limits.max_samples {
            return Err(ReadError::SampleLimit(limits.max_samples));
        }
        timeseries.push(TimeSeries {
            labels: outgoing_labels(series.labels(), external_labels),
            samples,
            exemplars: Vec::new(),
            histograms: Vec::new(),
        });
    }
    if let Some(e) = set.err() {
        return Err(ReadError::Storage(e.clone()));
    }
    Ok(QueryResult { timeseries })
}

fn stream_query(
    index: usize,
    q: &Query,
    storage: &dyn ReadStorage,
    external_labels: &BTreeMap<String, String>,
    limits: &ReadLimits,
    send: &mut dyn FnMut(Vec<u8>) -> Result<(), ReadError>,
) -> Result<(), ReadError> {
    let ms = matchers(q, external_labels)?;
    let querier = storage.chunk_querier(q.start_timestamp_ms, q.end_timestamp_ms)?;
    let h = hints(q);
    let mut set = querier.select_chunks(true, Some(&h), &ms);
    let mut frame = ChunkedReadResponse {
        chunked_series: Vec::new(),
        query_index: index as i64,
    };
    let mut frame_bytes = 0usize;
    let flush = |frame: &mut ChunkedReadResponse,
                 bytes: &mut usize,
                 send: &mut dyn FnMut(Vec<u8>) -> Result<(), ReadError>| {
        *bytes = 0;
        if frame.chunked_series.is_empty() {
            return Ok(());
        }
        let mut out = Vec::new();
        put_frame(&mut out, &frame.encode_to_vec());
        frame.chunked_series.clear();
        send(out)
    };
    while let Some(series) = set.next() {
        let labels = outgoing_labels(&series.labels, external_labels);
        let mut current = ChunkedSeries {
            labels: labels.clone(),
            chunks: Vec::new(),
        };
        for c in series.chunks {
            frame_bytes += c.data.len();
            current.chunks.push(Chunk {
                min_time_ms: c.min_time,
                max_time_ms: c.max_time,
                r#type: i32::from(c.encoding),
                data: c.data,
            });
            if frame_bytes >= limits.max_bytes_in_frame {
                // A long series continues in the next frame, labels repeated.
                frame.chunked_series.push(std::mem::replace(
                    &mut current,
                    ChunkedSeries {
                        labels: labels.clone(),
                        chunks: Vec::new(),
                    },
                ));
                flush(&mut frame, &mut frame_bytes, send)?;
            }
        }
        if !current.chunks.is_empty() {
            frame.chunked_series.push(current);
        }
    }
    if let Some(e) = set.err() {
        return Err(ReadError::Storage(e.clone()));
    }
    flush(&mut frame, &mut frame_bytes, send)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use kiln_storage::{Appender, SampleValue};
    use kiln_tsdb::db::{Db, DbOptions};

    use super::*;
    use crate::read::frames::frames;

    fn db_with_data(dir: &std::path::Path) -> Db {
        let db = Db::open(dir, DbOptions::default()).unwrap();
        {
            let mut app = db.appender();
            for gpu in 0..3 {
                let l = Labels::from_pairs(&[("__name__", "gpu_util"), ("gpu", &gpu.to_string())]);
                for i in 0..500 {
                    let v = gpu as f64 + i as f64 / 1000.0;
                    app.append(0, &l, i * 15_000, SampleValue::Float(v))
                        .unwrap();
                }
            }
            app.commit().unwrap();
        }
        db
    }

    fn request(accepted: Vec<i32>, matchers: Vec<LabelMatcher>, start: i64, end: i64) -> Vec<u8> {
        let req = ReadRequest {
            queries: vec![Query {
                start_timestamp_ms: start,
                end_timestamp_ms: end,
                matchers,
                hints: None,
            }],
            accepted_response_types: accepted,
        };
        snap::raw::Encoder::new()
            .compress_vec(&req.encode_to_vec())
            .unwrap()
    }

    fn eq(name: &str, value: &str) -> LabelMatcher {
        LabelMatcher {
            r#type: 0,
            name: name.into(),
            value: value.into(),
        }
    }

    #[test]
    fn samples_answer_clips_to_the_range_and_adds_external_labels() {
        let tmp = tempfile::tempdir().unwrap();
        let db = db_with_data(tmp.path());
        let ext = BTreeMap::from([("cluster".to_owned(), "a".to_owned())]);
        // The client's external-label matcher is dropped; the series gain the label.
        let body = request(
            vec![],
            vec![eq("__name__", "gpu_util"), eq("cluster", "a")],
            30_000,
            60_000,
        );
        let a = serve(&body, &db, &ext, &ReadLimits::default()).unwrap();
        assert_eq!(a.content_type, "application/x-protobuf");
        assert_eq!(a.content_encoding, Some("snappy"));
        let raw = snap::raw::Decoder::new().decompress_vec(&a.body).unwrap();
        let resp = ReadResponse::decode(raw.as_slice()).unwrap();
        let ts = &resp.results[0].timeseries;
        assert_eq!(ts.len(), 3);
        let names: Vec<&str> = ts[1].labels.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["__name__", "cluster", "gpu"]);
        let times: Vec<i64> = ts[1].samples.iter().map(|s| s.timestamp).collect();
        assert_eq!(times, [30_000, 45_000, 60_000]);
        assert_eq!(ts[1].samples[0].value, 1.002);

        let limited = serve(
            &body,
            &db,
            &ext,
            &ReadLimits {
                max_samples: 5,
                ..ReadLimits::default()
            },
        );
        assert!(matches!(limited, Err(ReadError::SampleLimit(5))));
        let bad = request(
            vec![],
            vec![LabelMatcher {
                r#type: 2,
                name: "gpu".into(),
                value: "(".into(),
            }],
            0,
            1,
        );
        assert_eq!(
            serve(&bad, &db, &ext, &ReadLimits::default())
                .unwrap_err()
                .status(),
            400
        );
        assert_eq!(
            serve(b"garbage", &db, &ext, &ReadLimits::default())
                .unwrap_err()
                .status(),
            400
        );
    }

    #[test]
    fn streamed_answer_holds_the_stored_chunks_in_frames() {
        let tmp = tempfile::tempdir().unwrap();
        let db = db_with_data(tmp.path());
        let body = request(
            vec![RESPONSE_STREAMED_XOR_CHUNKS, RESPONSE_SAMPLES],
            vec![eq("__name__", "gpu_util")],
            0,
            i64::MAX,
        );
        // A tiny frame budget: every chunk makes a frame, series split across frames.
        let limits = ReadLimits {
            max_bytes_in_frame: 1,
            ..ReadLimits::default()
        };
        let a = serve(&body, &db, &BTreeMap::new(), &limits).unwrap();
        assert_eq!(a.content_type, STREAMED_CONTENT_TYPE);
        assert_eq!(a.content_encoding, None);
        let mut per_series: BTreeMap<String, Vec<(i64, f64)>> = BTreeMap::new();
        let mut n_frames = 0;
        for f in frames(&a.body, 1 << 20).unwrap() {
            n_frames += 1;
            let resp = ChunkedReadResponse::decode(f).unwrap();
            assert_eq!(resp.query_index, 0);
            for cs in resp.chunked_series {
                let key = cs
                    .labels
                    .iter()
                    .map(|l| format!("{}={}", l.name, l.value))
                    .collect::<Vec<_>>()
                    .join(",");
                for c in cs.chunks {
                    assert_eq!(c.r#type, 1, "XOR");
                    let mut it = kiln_chunkenc::XorIterator::new(&c.data);
                    while it.next() {
                        per_series.entry(key.clone()).or_default().push(it.at());
                    }
                }
            }
        }
        assert!(
            n_frames >= 6,
            "500 samples per series are several chunks: {n_frames}"
        );
        assert_eq!(per_series.len(), 3);
        let g2 = &per_series["__name__=gpu_util,gpu=2"];
        assert_eq!(g2.len(), 500);
        assert_eq!(g2[499], (499 * 15_000, 2.499));
    }

    #[test]
    fn any_storage_of_the_contracts_serves_both_answers() {
        // The in-memory storage of kiln-storage, not the TSDB: the server sees only the
        // two storage contracts.
        let st = kiln_storage::mem::MemStorage::new();
        let l = Labels::from_pairs(&[("__name__", "loss"), ("job", "train")]);
        let mut app = kiln_storage::Appendable::appender(&st);
        for i in 0..250 {
            app.append(0, &l, i * 1_000, SampleValue::Float(i as f64))
                .unwrap();
        }
        app.commit().unwrap();
        drop(app);
        let limits = ReadLimits::default();
        let ext = BTreeMap::new();

        let body = request(vec![], vec![eq("job", "train")], 10_000, 19_000);
        let a = serve(&body, &st, &ext, &limits).unwrap();
        let raw = snap::raw::Decoder::new().decompress_vec(&a.body).unwrap();
        let resp = ReadResponse::decode(raw.as_slice()).unwrap();
        let samples = &resp.results[0].timeseries[0].samples;
        assert_eq!(samples.len(), 10);
        assert_eq!((samples[0].timestamp, samples[9].value), (10_000, 19.0));

        let body = request(
            vec![RESPONSE_STREAMED_XOR_CHUNKS],
            vec![eq("job", "train")],
            0,
            i64::MAX,
        );
        let a = serve(&body, &st, &ext, &limits).unwrap();
        let mut n = 0;
        for f in frames(&a.body, 1 << 20).unwrap() {
            for cs in ChunkedReadResponse::decode(f).unwrap().chunked_series {
                for c in cs.chunks {
                    let mut it = kiln_chunkenc::XorIterator::new(&c.data);
                    while it.next() {
                        assert_eq!(it.at(), (n * 1_000, n as f64));
                        n += 1;
                    }
                }
            }
        }
        assert_eq!(n, 250);
    }
}
