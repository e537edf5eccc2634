//! The `remote_read` client: asks a remote endpoint for the series of one selection.
//!
//! Requests accept both answer types (streamed chunks first, which Kiln and Prometheus
//! serve; samples otherwise) and are sent with the protocol's headers. With
//! `filter_external_labels` (the default) the external labels go into the request as
//! equality matchers and come off the series returned, so a remote store shared by
//! several senders returns this server's own series as they are stored locally.

use std::collections::BTreeMap;
use std::sync::Arc;

use kiln_config::RemoteReadConfig;
use kiln_model::{LabelsBuilder, MatchType, Matcher};
use kiln_storage::{SelectHints, StorageError, VecSeries};
use prost::Message;

use crate::proto::Label;
use crate::proto::read::{
    ChunkedReadResponse, LabelMatcher, Query, RESPONSE_SAMPLES, RESPONSE_STREAMED_XOR_CHUNKS,
    ReadHints, ReadRequest, ReadResponse,
};
use crate::receive::{ReceiveLimits, decompress};

use super::frames::frames;

/// The largest streamed frame accepted from a remote (Prometheus sends ~1 MiB).
const MAX_FRAME: usize = 64 << 20;

/// One `remote_read` endpoint.
pub struct RemoteReadClient {
    pub(crate) config: RemoteReadConfig,
    client: kiln_http_client::HttpClient,
    external_labels: BTreeMap<String, String>,
    rt: tokio::runtime::Handle,
}

impl RemoteReadClient {
    /// A client for `config`; requests run on `rt`.
    pub fn new(
        config: RemoteReadConfig,
        external_labels: BTreeMap<String, String>,
        rt: tokio::runtime::Handle,
    ) -> Result<RemoteReadClient, String> {
        let client = kiln_http_client::HttpClient::new(&config.http_client, super::USER_AGENT)
            .map_err(|e| format!("remote_read {:?}: {e}", config.name))?;
        Ok(RemoteReadClient {
            config,
            client,
            external_labels,
            rt,
        })
    }

    /// Whether a selection with `matchers` is for this endpoint: it holds every
    /// `required_matchers` pair as an equality matcher.
    pub fn wanted(&self, matchers: &[Matcher]) -> bool {
        self.config.required_matchers.iter().all(|(name, value)| {
            matchers
                .iter()
                .any(|m| m.kind == MatchType::Equal && &m.name == name && &m.value == value)
        })
    }

    /// The series matching `matchers` in `[mint, maxt]`, sorted by labels. Blocks the
    /// calling thread (never call it on an async worker).
    pub fn read(
        &self,
        mint: i64,
        maxt: i64,
        matchers: &[Matcher],
        hints: Option<&SelectHints>,
    ) -> Result<Vec<VecSeries>, StorageError> {
        let body = self.request(mint, maxt, matchers, hints);
        let (tx, rx) = std::sync::mpsc::channel();
        let client = self.client.clone();
        let config = self.config.clone();
        self.rt.spawn(async move {
            let _ = tx.send(post(&client, &config, body).await);
        });
        let (content_type, body) = rx
            .recv()
            .map_err(|_| self.error("the request task ended without an answer".into()))?
            .map_err(|e| self.error(e))?;
        let strip = if self.config.filter_external_labels {
            &self.external_labels
        } else {
            &BTreeMap::new()
        };
        let mut series = decode_answer(&content_type, &body, mint, maxt, strip)
            .map_err(|e| self.error(format!("bad answer: {e}")))?;
        series.sort_by(|a, b| a.labels.cmp(&b.labels));
        Ok(series)
    }

    fn error(&self, message: String) -> StorageError {
        StorageError::Backend {
            kind: kiln_storage::ErrorKind::Unavailable,
            context: format!("remote_read {:?} ({})", self.config.name, self.config.url),
            source: Arc::new(std::io::Error::other(message)),
        }
    }

    /// A snappy-compressed `ReadRequest` for one query.
    fn request(
        &self,
        mint: i64,
        maxt: i64,
        matchers: &[Matcher],
        hints: Option<&SelectHints>,
    ) -> Vec<u8> {
        let mut ms: Vec<LabelMatcher> = matchers
            .iter()
            .map(|m| LabelMatcher {
                r#type: match m.kind {
                    MatchType::Equal => 0,
                    MatchType::NotEqual => 1,
                    MatchType::Regex => 2,
                    MatchType::NotRegex => 3,
                },
                name: m.name.clone(),
                value: m.value.clone(),
            })
            .collect();
        if self.config.filter_external_labels {
            ms.extend(self.external_labels.iter().map(|(k, v)| LabelMatcher {
                r#type: 0,
                name: k.clone(),
                value: v.clone(),
            }));
        }
        let req = ReadRequest {
            queries: vec![Query {
                start_timestamp_ms: mint,
                end_timestamp_ms: maxt,
                matchers: ms,
                hints: hints.map(|h| ReadHints {
                    step_ms: h.step,
                    func: h.func.clone().unwrap_or_default(),
                    start_ms: h.start,
                    end_ms: h.end,
                    grouping: Vec::new(),
                    by: false,
                    range_ms: h.range,
                }),
            }],
            accepted_response_types: vec![RESPONSE_STREAMED_XOR_CHUNKS, RESPONSE_SAMPLES],
        };
        snap::raw::Encoder::new()
            .compress_vec(&req.encode_to_vec())
            .unwrap_or_default()
    }
}

/// Decodes a remote-read answer (streamed chunks or samples, by `content_type`) into
/// series holding the samples in `[mint, maxt]`, with the labels `strip` holds
/// (name and value both) removed. A series split across frames is joined back.
/// The entry point for fuzzing: any bytes give series or an error, never a panic.
pub fn decode_answer(
    content_type: &str,
    body: &[u8],
    mint: i64,
    maxt: i64,
    strip: &BTreeMap<String, String>,
) -> Result<Vec<VecSeries>, String> {
    let mut b = LabelsBuilder::new();
    let mut labels = |pairs: &[Label]| {
        b.reset();
        for l in pairs {
            if strip.get(&l.name) != Some(&l.value) {
                b.set(&l.name, &l.value);
            }
        }
        b.build()
    };
    let mut out: Vec<VecSeries> = Vec::new();
    if !content_type.starts_with("application/x-streamed-protobuf") {
        let raw = decompress(body, &ReceiveLimits::default()).map_err(|e| e.to_string())?;
        let resp = ReadResponse::decode(raw.as_slice()).map_err(|e| format!("protobuf: {e}"))?;
        for result in resp.results {
            for ts in result.timeseries {
                let samples = ts
                    .samples
                    .iter()
                    .filter(|s| s.timestamp >= mint && s.timestamp <= maxt);
                out.push(VecSeries {
                    labels: labels(&ts.labels),
                    ts: samples.clone().map(|s| s.timestamp).collect(),
                    vals: samples.map(|s| s.value).collect(),
                });
            }
        }
        return Ok(out);
    }
    for frame in frames(body, MAX_FRAME).map_err(|e| e.to_string())? {
        let resp = ChunkedReadResponse::decode(frame).map_err(|e| format!("protobuf: {e}"))?;
        for cs in resp.chunked_series {
            let l = labels(&cs.labels);
            if out.last().is_none_or(|s| s.labels != l) {
                out.push(VecSeries {
                    labels: l,
                    ts: Vec::new(),
                    vals: Vec::new(),
                });
            }
            let Some(series) = out.last_mut() else {
                continue;
            };
            for c in &cs.chunks {
                if c.r#type != i32::from(kiln_chunkenc::Encoding::Xor.as_u8()) {
                    return Err(format!(
                        "chunk encoding {} is not supported (only XOR)",
                        c.r#type
                    ));
                }
                let mut it = kiln_chunkenc::XorIterator::new(&c.data);
                while it.next() {
                    let (t, v) = it.at();
                    if t >= mint && t <= maxt && series.ts.last().is_none_or(|&l| t > l) {
                        series.ts.push(t);
                        series.vals.push(v);
                    }
                }
                if let Some(e) = it.err() {
                    return Err(format!("bad chunk: {e}"));
                }
            }
        }
    }
    Ok(out)
}

/// POSTs a read request; returns the answer's content type and body.
async fn post(
    client: &kiln_http_client::HttpClient,
    config: &RemoteReadConfig,
    body: Vec<u8>,
) -> Result<(String, Vec<u8>), String> {
    let mut req = client
        .request(reqwest::Method::POST, config.url.expose())
        .map_err(|e| e.to_string())?;
    for (k, v) in &config.headers {
        req = req.header(k, v.expose());
    }
    let resp = req
        .header("Content-Type", "application/x-protobuf")
        .header("Content-Encoding", "snappy")
        .header("X-Prometheus-Remote-Read-Version", "0.1.0")
        .timeout(config.remote_timeout.as_std())
        .body(body)
        .send()
        .await
        .map_err(|e| kiln_http_client::error_chain(&e))?;
    let status = resp.status();
    let content_type = resp
        .headers()
        .get("Content-Type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let bytes = resp
        .bytes()
        .await
        .map_err(|e| kiln_http_client::error_chain(&e))?;
    if !status.is_success() {
        let text = String::from_utf8_lossy(&bytes[..bytes.len().min(512)]).into_owned();
        return Err(format!(
            "server returned HTTP status {status}: {}",
            text.trim()
        ));
    }
    Ok((content_type, bytes.to_vec()))
}
