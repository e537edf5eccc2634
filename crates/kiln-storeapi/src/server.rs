//! [`StoreService`]: `thanos.Store` and `thanos.info.Info` over a chunk source, as
//! Thanos's sidecar and receiver serve them.
//!
//! A `Series` call reads the source on a blocking thread and streams the answer through a
//! small channel, so a slow client holds back the reading instead of letting the answer
//! pile up in memory. Each series goes out with its chunks as stored (whole chunks that
//! overlap the range, unclipped, as Thanos stores send them), split into messages of at
//! most about [`StoreOptions::max_bytes_per_frame`] of chunk data.
//!
//! **Order.** Stores answer in the order of the labels they send, which the querier's
//! merge relies on. Those labels are the stored ones with the external labels set (and
//! the `without_replica_labels` taken out), and that can change the order: `up{a="1"}`
//! sorts before `up{a="1",b="2"}`, but with `replica="0"` added it sorts after. So when a
//! store has external labels, a first pass over the series' labels alone (no chunk is
//! read) checks the order. When it holds, as it usually does, the answer streams
//! straight from the source; when it does not, the series are put in the right order
//! with as few of them held back as the source order allows, within
//! [`StoreOptions::max_reorder_bytes`] (past it the call fails with
//! `RESOURCE_EXHAUSTED` rather than growing without bound). Thanos's own stores buffer
//! the whole answer to re-sort it.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;

use futures_util::Stream;
use kiln_model::{Labels, Timestamp};
use kiln_storage::{ChunkQuerier, ChunkQueryable, ChunkSeries, SelectHints, StorageError};
use tonic::{Request, Response, Status};

use crate::convert::{ExternalLabelsPlan, to_wire_labels, wire_encoding};
use crate::proto::thanos::info::info_server::{Info, InfoServer};
use crate::proto::thanos::info::{InfoRequest, InfoResponse, StoreInfo, TsdbInfo};
use crate::proto::thanos::store_server::{Store, StoreServer};
use crate::proto::thanos::{
    AggrChunk, Chunk, LabelNamesRequest, LabelNamesResponse, LabelValuesRequest,
    LabelValuesResponse, Series, SeriesRequest, SeriesResponse, ZLabelSet, series_response,
};

/// Limits and identity of a store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Chunk bytes per `Series` message (a message may exceed it by one chunk).
    pub max_bytes_per_frame: usize,
    /// Chunk bytes a `Series` answer may hold back to put its series in order (see the
    /// module docs).
    pub max_reorder_bytes: usize,
    /// What `Info` says the endpoint is (`sidecar`, `store`, `receive`, ...).
    pub component_type: &'static str,
    /// `Series` calls answered at once (0: no limit); later ones wait for a slot, as
    /// with Thanos's `--store.grpc.series-max-concurrency`.
    pub max_concurrent_series: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            max_bytes_per_frame: 1 << 20,
            max_reorder_bytes: 256 << 20,
            component_type: "sidecar",
            max_concurrent_series: 0,
        }
    }
}

/// The time range a store advertises, `(min, max)` in ms (a store with data yet to come,
/// a server's head, says `i64::MAX`); `None` when it holds none.
pub type TimeRange = Arc<dyn Fn() -> Option<(Timestamp, Timestamp)> + Send + Sync>;

/// The external label sets of a source that labels its series itself (a bucket's
/// blocks, each with its own), for `Info`.
pub type LabelSets = Arc<dyn Fn() -> Vec<Labels> + Send + Sync>;

/// The source seen at a maximum resolution (ms per sample), for a `Series` request's
/// `max_resolution_window` (a bucket with downsampled blocks).
pub type AtResolution = Arc<dyn Fn(i64) -> Arc<dyn ChunkQueryable> + Send + Sync>;

/// `thanos.Store` and `thanos.info.Info` over a chunk source. See the module docs.
#[derive(Clone)]
pub struct StoreService {
    storage: Arc<dyn ChunkQueryable>,
    external_labels: Labels,
    /// Set for a source that labels its own series ([`StoreService::self_labelled`]).
    label_sets: Option<LabelSets>,
    /// Set for a source with downsampled data ([`StoreService::with_resolutions`]).
    at_resolution: Option<AtResolution>,
    time_range: TimeRange,
    opts: StoreOptions,
    series_slots: Option<Arc<tokio::sync::Semaphore>>,
}

impl StoreService {
    pub fn new(
        storage: Arc<dyn ChunkQueryable>,
        external_labels: Labels,
        time_range: TimeRange,
        opts: StoreOptions,
    ) -> StoreService {
        StoreService {
            storage,
            external_labels,
            label_sets: None,
            at_resolution: None,
            time_range,
            series_slots: slots(&opts),
            opts,
        }
    }

    /// A service over a source whose series already carry their external labels, which
    /// differ between its parts (a bucket store: each block has its producer's). Its
    /// matchers on those labels are the source's to decide; `Info` lists `label_sets`.
    pub fn self_labelled(
        storage: Arc<dyn ChunkQueryable>,
        label_sets: LabelSets,
        time_range: TimeRange,
        opts: StoreOptions,
    ) -> StoreService {
        StoreService {
            storage,
            external_labels: Labels::default(),
            label_sets: Some(label_sets),
            at_resolution: None,
            time_range,
            series_slots: slots(&opts),
            opts,
        }
    }
}

impl StoreService {
    /// Serves `Series` requests with a `max_resolution_window` from `at_resolution`
    /// (blocks of at most that many ms per sample, downsampled ones as aggregate
    /// chunks); without one, or with 0, from the source as given.
    pub fn with_resolutions(mut self, at_resolution: AtResolution) -> StoreService {
        self.at_resolution = Some(at_resolution);
        self
    }
}

fn slots(opts: &StoreOptions) -> Option<Arc<tokio::sync::Semaphore>> {
    (opts.max_concurrent_series > 0)
        .then(|| Arc::new(tokio::sync::Semaphore::new(opts.max_concurrent_series)))
}

impl StoreService {
    /// How a request's matchers meet the external labels (`None`: the store has nothing
    /// for it); a bad matcher is `INVALID_ARGUMENT`.
    fn plan(
        &self,
        matchers: &[crate::proto::thanos::LabelMatcher],
        without_replica_labels: &[String],
    ) -> Result<Option<ExternalLabelsPlan>, Status> {
        ExternalLabelsPlan::new(matchers, &self.external_labels, without_replica_labels)
            .map_err(Status::invalid_argument)
    }
}

/// Serves both services on `listener` until `shutdown` completes.
pub async fn serve(
    service: StoreService,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let incoming = futures_util::stream::unfold(listener, |listener| async move {
        let conn = listener.accept().await.map(|(stream, _)| {
            // Small messages (Info, label calls) go out at once.
            let _ = stream.set_nodelay(true);
            stream
        });
        Some((conn, listener))
    });
    tonic::transport::Server::builder()
        .add_service(StoreServer::new(service.clone()).max_decoding_message_size(16 << 20))
        .add_service(InfoServer::new(service))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}

/// A storage error as a gRPC status: a request over a limit is `RESOURCE_EXHAUSTED`
/// (reads refuse no data otherwise), an unreachable backend `UNAVAILABLE`.
fn internal(e: &StorageError) -> Status {
    let message = e.to_string();
    match e.kind() {
        kiln_storage::ErrorKind::BadData => Status::resource_exhausted(message),
        kiln_storage::ErrorKind::Unavailable => Status::unavailable(message),
        kiln_storage::ErrorKind::Timeout => Status::deadline_exceeded(message),
        kiln_storage::ErrorKind::Canceled => Status::cancelled(message),
        kiln_storage::ErrorKind::NotFound | kiln_storage::ErrorKind::Internal => {
            Status::internal(message)
        }
    }
}

/// Runs `f` on a blocking thread (storage reads are synchronous).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Status> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Status::internal(format!("the reading task failed: {e}")))?
}

type SeriesStream = Pin<Box<dyn Stream<Item = Result<SeriesResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Store for StoreService {
    type SeriesStream = SeriesStream;

    async fn series(
        &self,
        request: Request<SeriesRequest>,
    ) -> Result<Response<SeriesStream>, Status> {
        let req = request.into_inner();
        let Some(plan) = self.plan(&req.matchers, &req.without_replica_labels)? else {
            return Ok(Response::new(Box::pin(futures_util::stream::empty())));
        };
        if plan.matchers.is_empty() {
            return Err(Status::invalid_argument(
                "no matchers specified (excluding external labels)",
            ));
        }
        let permit = match &self.series_slots {
            Some(slots) => Some(
                slots
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|_| Status::unavailable("the store is shutting down"))?,
            ),
            None => None,
        };
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<SeriesResponse, Status>>(4);
        let storage = match (&self.at_resolution, req.max_resolution_window) {
            (Some(at), window) if window > 0 => at(window),
            _ => self.storage.clone(),
        };
        let opts = self.opts.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let mut send = |r: SeriesResponse| tx.blocking_send(Ok(r)).is_ok();
            if let Err(status) = answer_series(&*storage, &req, &plan, &opts, &mut send) {
                let _ = tx.blocking_send(Err(status));
            }
        });
        let stream = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn label_names(
        &self,
        request: Request<LabelNamesRequest>,
    ) -> Result<Response<LabelNamesResponse>, Status> {
        let req = request.into_inner();
        let Some(plan) = self.plan(&req.matchers, &req.without_replica_labels)? else {
            return Ok(Response::new(LabelNamesResponse::default()));
        };
        let storage = self.storage.clone();
        let (mut names, warnings) = blocking(move || {
            let q = storage
                .chunk_querier(req.start, req.end)
                .map_err(|e| internal(&e))?;
            let (mut names, warnings) = q.label_names(&plan.matchers).map_err(|e| internal(&e))?;
            names.retain(|n| !plan.removed.contains(n));
            if !names.is_empty() {
                names.extend(plan.external.iter().map(|l| l.name.to_owned()));
            }
            Ok((names, warnings))
        })
        .await?;
        names.sort_unstable();
        names.dedup();
        truncate(&mut names, req.limit);
        Ok(Response::new(LabelNamesResponse {
            names,
            warnings,
            hints: None,
        }))
    }

    async fn label_values(
        &self,
        request: Request<LabelValuesRequest>,
    ) -> Result<Response<LabelValuesResponse>, Status> {
        let req = request.into_inner();
        if req.label.is_empty() {
            return Err(Status::invalid_argument(
                "label name parameter cannot be empty",
            ));
        }
        let Some(plan) = self.plan(&req.matchers, &req.without_replica_labels)? else {
            return Ok(Response::new(LabelValuesResponse::default()));
        };
        if plan.removed.contains(&req.label) {
            return Ok(Response::new(LabelValuesResponse::default()));
        }
        let storage = self.storage.clone();
        let label = req.label.clone();
        let (mut values, warnings) = blocking(move || {
            let q = storage
                .chunk_querier(req.start, req.end)
                .map_err(|e| internal(&e))?;
            if let Some(v) = plan.external.get(&label) {
                // An external label has its one value wherever the store has a series.
                let (names, warnings) = q.label_names(&plan.matchers).map_err(|e| internal(&e))?;
                let values = if names.is_empty() {
                    Vec::new()
                } else {
                    vec![v.to_owned()]
                };
                return Ok((values, warnings));
            }
            q.label_values(&label, &plan.matchers)
                .map_err(|e| internal(&e))
        })
        .await?;
        truncate(&mut values, req.limit);
        Ok(Response::new(LabelValuesResponse {
            values,
            warnings,
            hints: None,
        }))
    }
}

#[tonic::async_trait]
impl Info for StoreService {
    async fn info(&self, _request: Request<InfoRequest>) -> Result<Response<InfoResponse>, Status> {
        // An empty store still answers (with nothing) for any range.
        let (min_time, max_time) = (self.time_range)().unwrap_or((i64::MAX, i64::MAX));
        let sets: Vec<Labels> = match &self.label_sets {
            Some(sets) => sets(),
            None if self.external_labels.is_empty() => Vec::new(),
            None => vec![self.external_labels.clone()],
        };
        let label_sets: Vec<ZLabelSet> = sets
            .iter()
            .map(|l| ZLabelSet {
                labels: to_wire_labels(l),
            })
            .collect();
        let tsdb_infos = if label_sets.is_empty() {
            vec![TsdbInfo {
                labels: Some(ZLabelSet::default()),
                min_time,
                max_time,
            }]
        } else {
            label_sets
                .iter()
                .map(|l| TsdbInfo {
                    labels: Some(l.clone()),
                    min_time,
                    max_time,
                })
                .collect()
        };
        Ok(Response::new(InfoResponse {
            label_sets,
            component_type: self.opts.component_type.to_owned(),
            store: Some(StoreInfo {
                min_time,
                max_time,
                supports_sharding: false,
                supports_without_replica_labels: true,
                tsdb_infos,
                supports_projections: false,
            }),
            ..InfoResponse::default()
        }))
    }
}

fn truncate(v: &mut Vec<String>, limit: i64) {
    if let Ok(limit) = usize::try_from(limit)
        && limit > 0
    {
        v.truncate(limit);
    }
}

/// Answers one `Series` request, handing each message to `send` (which returns false
/// when the client went away). See the module docs for the order.
fn answer_series(
    storage: &dyn ChunkQueryable,
    req: &SeriesRequest,
    plan: &ExternalLabelsPlan,
    opts: &StoreOptions,
    send: &mut dyn FnMut(SeriesResponse) -> bool,
) -> Result<(), Status> {
    let q = storage
        .chunk_querier(req.min_time, req.max_time)
        .map_err(|e| internal(&e))?;
    let func = req
        .query_hints
        .as_ref()
        .and_then(|h| h.func.as_ref())
        .map(|f| f.name.clone())
        .filter(|n| !n.is_empty());
    let hints = SelectHints {
        start: req.min_time,
        end: req.max_time,
        step: req.step,
        range: req.range,
        func,
    };
    // Prometheus's hint for "labels only": no chunk is read.
    let labels_only = SelectHints {
        func: Some("series".to_owned()),
        ..hints.clone()
    };
    let order = if plan.external.is_empty() && plan.removed.is_empty() {
        None
    } else {
        answer_order(&*q, &labels_only, plan)?
    };
    let mut writer = FrameWriter {
        send,
        opts,
        skip_chunks: req.skip_chunks,
        aggregates: req.aggregates.clone(),
        left: usize::try_from(req.limit)
            .ok()
            .filter(|&l| l > 0)
            .unwrap_or(usize::MAX),
        warnings: Vec::new(),
    };
    let mut set = q.select_chunks(
        true,
        Some(if req.skip_chunks {
            &labels_only
        } else {
            &hints
        }),
        &plan.matchers,
    );
    match order {
        None => {
            while let Some(s) = set.next() {
                if !writer.write(&plan.answer_labels(&s.labels), &s)? {
                    return Ok(());
                }
            }
        }
        Some(order) => {
            let mut reorder = Reorder::new(order, opts.max_reorder_bytes);
            while let Some(s) = set.next() {
                for ready in reorder.push(s)? {
                    if !writer.write(&plan.answer_labels(&ready.labels), &ready)? {
                        return Ok(());
                    }
                }
            }
            for ready in reorder.finish(plan) {
                if !writer.write(&plan.answer_labels(&ready.labels), &ready)? {
                    return Ok(());
                }
            }
        }
    }
    if let Some(e) = set.err() {
        return Err(internal(e));
    }
    writer.warnings.extend(set.warnings());
    for w in std::mem::take(&mut writer.warnings) {
        if !(writer.send)(SeriesResponse {
            result: Some(series_response::Result::Warning(w)),
        }) {
            return Ok(());
        }
    }
    Ok(())
}

/// The stored label sets in answer order, when that differs from the source's order;
/// `None` when the source's order is already the answer's.
fn answer_order(
    q: &dyn ChunkQuerier,
    labels_only: &SelectHints,
    plan: &ExternalLabelsPlan,
) -> Result<Option<Vec<Labels>>, Status> {
    let mut set = q.select_chunks(true, Some(labels_only), &plan.matchers);
    let mut listed: Vec<(Labels, Labels)> = Vec::new();
    while let Some(s) = set.next() {
        listed.push((plan.answer_labels(&s.labels), s.labels));
    }
    if let Some(e) = set.err() {
        return Err(internal(e));
    }
    if listed.windows(2).all(|w| w[0].0 <= w[1].0) {
        return Ok(None);
    }
    listed.sort();
    Ok(Some(listed.into_iter().map(|(_, stored)| stored).collect()))
}

/// Puts series that arrive in stored-label order into answer order (see the module
/// docs), holding back as few as it can.
struct Reorder {
    /// Stored label sets in answer order, and the next one due.
    order: Vec<Labels>,
    next: usize,
    held: HashMap<Labels, ChunkSeries>,
    held_bytes: usize,
    max_bytes: usize,
}

impl Reorder {
    fn new(order: Vec<Labels>, max_bytes: usize) -> Reorder {
        Reorder {
            order,
            next: 0,
            held: HashMap::new(),
            held_bytes: 0,
            max_bytes,
        }
    }

    /// Takes the next series of the source; returns the series now due, in order.
    fn push(&mut self, s: ChunkSeries) -> Result<Vec<ChunkSeries>, Status> {
        let newest = s.labels.clone();
        self.held_bytes += size(&s);
        self.held.insert(s.labels.clone(), s);
        let mut ready = Vec::new();
        while let Some(due) = self.order.get(self.next) {
            if let Some(s) = self.held.remove(due) {
                self.held_bytes -= size(&s);
                ready.push(s);
                self.next += 1;
            } else if *due < newest {
                // The source has gone past it: it had no chunk after all.
                self.next += 1;
            } else {
                break;
            }
        }
        if self.held_bytes > self.max_bytes {
            return Err(Status::resource_exhausted(format!(
                "putting the series in the order of their labels with the external labels \
                 set would hold more than {} bytes of chunks: narrow the selector",
                self.max_bytes
            )));
        }
        Ok(ready)
    }

    /// What is still held, in answer order (series the first pass did not see last).
    fn finish(self, plan: &ExternalLabelsPlan) -> Vec<ChunkSeries> {
        let mut rest: Vec<ChunkSeries> = self.held.into_values().collect();
        rest.sort_by_cached_key(|s| plan.answer_labels(&s.labels));
        rest
    }
}

fn size(s: &ChunkSeries) -> usize {
    s.chunks.iter().map(|c| c.data.len() + 32).sum()
}

/// Writes series as `Series` messages of bounded size.
struct FrameWriter<'a> {
    send: &'a mut dyn FnMut(SeriesResponse) -> bool,
    opts: &'a StoreOptions,
    skip_chunks: bool,
    /// The aggregates of downsampled chunks the request wants (all when empty).
    aggregates: Vec<i32>,
    /// Series still allowed by the request's limit.
    left: usize,
    warnings: Vec<String>,
}

impl FrameWriter<'_> {
    /// Sends one series; returns false when the answer is complete (the limit reached or
    /// the client gone).
    fn write(&mut self, labels: &Labels, s: &ChunkSeries) -> Result<bool, Status> {
        if self.left == 0 {
            return Ok(false);
        }
        self.left -= 1;
        let wire_labels = to_wire_labels(labels);
        let frame = |chunks| SeriesResponse {
            result: Some(series_response::Result::Series(Series {
                labels: wire_labels.clone(),
                chunks,
            })),
        };
        if self.skip_chunks {
            return Ok((self.send)(frame(Vec::new())) && self.left > 0);
        }
        let mut chunks = Vec::new();
        let mut bytes = 0usize;
        let mut skipped = 0usize;
        for c in &s.chunks {
            let chunk = if c.encoding == kiln_chunkenc::aggr::AGGR_ENCODING {
                match aggregates_on_wire(c, &self.aggregates) {
                    Some(a) => a,
                    None => {
                        skipped += 1;
                        continue;
                    }
                }
            } else {
                let Some(encoding) = wire_encoding(c.encoding) else {
                    skipped += 1;
                    continue;
                };
                AggrChunk {
                    min_time: c.min_time,
                    max_time: c.max_time,
                    raw: Some(Chunk {
                        r#type: encoding as i32,
                        data: c.data.clone(),
                        hash: 0,
                    }),
                    ..AggrChunk::default()
                }
            };
            bytes += c.data.len();
            chunks.push(chunk);
            if bytes >= self.opts.max_bytes_per_frame {
                if !(self.send)(frame(std::mem::take(&mut chunks))) {
                    return Ok(false);
                }
                bytes = 0;
            }
        }
        if skipped > 0 {
            self.warnings.push(format!(
                "{skipped} chunk(s) of {labels} in an encoding the StoreAPI does not carry were left out"
            ));
        }
        if !chunks.is_empty() && !(self.send)(frame(chunks)) {
            return Ok(false);
        }
        Ok(self.left > 0)
    }
}

/// A downsampled chunk as the wire carries it: each aggregate its own XOR chunk, only
/// those `wanted` (all when empty); `None` when the chunk does not decode.
fn aggregates_on_wire(c: &kiln_storage::EncodedChunk, wanted: &[i32]) -> Option<AggrChunk> {
    use crate::proto::thanos::Aggr;
    use kiln_chunkenc::aggr::{AggrType, decode_aggr_chunk};
    let subs = decode_aggr_chunk(&c.data).ok()?;
    let pick = |t: AggrType, wire: Aggr| -> Option<Chunk> {
        if !wanted.is_empty() && !wanted.contains(&(wire as i32)) {
            return None;
        }
        let sub = subs[t as usize]?;
        Some(Chunk {
            r#type: wire_encoding(sub.encoding)? as i32,
            data: sub.data.to_vec(),
            hash: 0,
        })
    };
    Some(AggrChunk {
        min_time: c.min_time,
        max_time: c.max_time,
        raw: None,
        count: pick(AggrType::Count, Aggr::Count),
        sum: pick(AggrType::Sum, Aggr::Sum),
        min: pick(AggrType::Min, Aggr::Min),
        max: pick(AggrType::Max, Aggr::Max),
        counter: pick(AggrType::Counter, Aggr::Counter),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::proto::thanos::Aggr;
    use kiln_chunkenc::aggr::{AGGR_ENCODING, AggrType, SubChunk, encode_aggr_chunk};

    #[test]
    fn downsampled_chunks_go_out_as_their_aggregates() {
        let sub = |d: &'static [u8]| {
            Some(SubChunk {
                encoding: 1,
                data: d,
            })
        };
        let mut subs = [None; 5];
        subs[AggrType::Count as usize] = sub(b"count");
        subs[AggrType::Sum as usize] = sub(b"sum");
        subs[AggrType::Max as usize] = sub(b"max");
        let c = kiln_storage::EncodedChunk {
            min_time: 10,
            max_time: 20,
            encoding: AGGR_ENCODING,
            data: encode_aggr_chunk(subs),
        };
        let all = aggregates_on_wire(&c, &[]).unwrap();
        assert_eq!((all.min_time, all.max_time), (10, 20));
        assert!(all.raw.is_none() && all.min.is_none() && all.counter.is_none());
        assert_eq!(all.count.unwrap().data, b"count");
        assert_eq!(all.max.as_ref().unwrap().data, b"max");
        assert_eq!(all.max.unwrap().r#type, chunk_xor());
        let some = aggregates_on_wire(&c, &[Aggr::Sum as i32]).unwrap();
        assert!(some.count.is_none() && some.max.is_none());
        assert_eq!(some.sum.unwrap().data, b"sum");
        let bad = kiln_storage::EncodedChunk {
            data: vec![0xff, 0xff],
            ..c
        };
        assert!(aggregates_on_wire(&bad, &[]).is_none());
    }

    fn chunk_xor() -> i32 {
        crate::proto::thanos::chunk::Encoding::Xor as i32
    }
}
