//! Shards: the concurrent senders of one queue.
//!
//! Each shard is a tokio task with a bounded channel. A series always goes to the same
//! shard (by its WAL reference), so its samples are sent in order. A shard sends when
//! its batch holds `max_samples_per_send` samples or the oldest has waited
//! `batch_send_deadline`, and retries a failed request with exponential backoff as long
//! as the failure is recoverable (network errors, 5xx, and 429 when
//! `retry_on_http_429`); other answers (4xx) drop the batch, counted. When its channel
//! closes, a shard sends what it holds and ends: resharding and stopping flush this way.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kiln_config::{ProtobufMessage, RemoteWriteConfig};
use parking_lot::RwLock;
use tokio::sync::mpsc;

use super::metrics::QueueMetrics;
use super::progress::Progress;
use super::request::{FamilyMetadata, QueuedSample, encode_v1, encode_v2};

/// What every shard of a queue shares.
pub(crate) struct ShardContext {
    pub(crate) config: RemoteWriteConfig,
    pub(crate) client: kiln_http_client::HttpClient,
    pub(crate) metrics: Arc<QueueMetrics>,
    pub(crate) progress: Arc<Progress>,
    /// Metadata by family name, for 2.0 requests.
    pub(crate) metadata: RwLock<HashMap<String, FamilyMetadata>>,
    /// Set when the queue stops: a shard still failing then gives up (its samples stay
    /// undelivered and are read again after a restart) instead of retrying forever.
    pub(crate) give_up: AtomicBool,
    /// Whether the receiver is answering, so that the log says when it goes down and
    /// comes back rather than once per retry.
    pub(crate) receiver: ReceiverHealth,
}

/// The receiver's state as the shards last saw it: unknown until the first answer, then
/// up (a request was delivered) or down (a request failed in a retryable way). Shards
/// share it; the swap makes exactly one of them see each change.
#[derive(Debug)]
pub(crate) struct ReceiverHealth(AtomicU8);

impl Default for ReceiverHealth {
    fn default() -> Self {
        ReceiverHealth(AtomicU8::new(Self::UNKNOWN))
    }
}

impl ReceiverHealth {
    /// No answer yet.
    const UNKNOWN: u8 = 0;
    const UP: u8 = 1;
    const DOWN: u8 = 2;

    /// Records a delivered request; true when the receiver was down until now.
    pub(crate) fn delivered(&self) -> bool {
        self.0.swap(Self::UP, Ordering::Relaxed) == Self::DOWN
    }

    /// Records a retryable failure; true when it is the first since the receiver last
    /// worked (or since the queue started).
    pub(crate) fn failed(&self) -> bool {
        self.0.swap(Self::DOWN, Ordering::Relaxed) != Self::DOWN
    }

    /// Whether the last answer seen was a retryable failure.
    pub(crate) fn is_down(&self) -> bool {
        self.0.load(Ordering::Relaxed) == Self::DOWN
    }
}

/// The running shards of a queue.
pub(crate) struct Shards {
    senders: Vec<mpsc::Sender<QueuedSample>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Shards {
    pub(crate) fn start(n: usize, ctx: &Arc<ShardContext>, rt: &tokio::runtime::Handle) -> Shards {
        let capacity = ctx.config.queue_config.capacity.max(1);
        let mut senders = Vec::with_capacity(n);
        let mut tasks = Vec::with_capacity(n);
        for _ in 0..n.max(1) {
            let (tx, rx) = mpsc::channel(capacity);
            senders.push(tx);
            tasks.push(rt.spawn(run_shard(rx, ctx.clone())));
        }
        ctx.metrics.shards.store(senders.len(), Ordering::Relaxed);
        Shards { senders, tasks }
    }

    pub(crate) fn len(&self) -> usize {
        self.senders.len()
    }

    /// Hands `sample` of series `series_ref` to its shard; `Err` gives it back when that
    /// shard is full.
    pub(crate) fn try_enqueue(
        &self,
        series_ref: u64,
        sample: QueuedSample,
    ) -> Result<(), QueuedSample> {
        let shard = (series_ref % self.senders.len() as u64) as usize;
        match self.senders[shard].try_send(sample) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(s)) => Err(s),
            // A shard only ends after its channel closed, which only `stop` does.
            Err(mpsc::error::TrySendError::Closed(_)) => Ok(()),
        }
    }

    /// Closes every channel and waits (blocking) until each shard sent what it held.
    pub(crate) fn stop(self, rt: &tokio::runtime::Handle) {
        drop(self.senders);
        for t in self.tasks {
            let _ = rt.block_on(t);
        }
    }
}

async fn run_shard(mut rx: mpsc::Receiver<QueuedSample>, ctx: Arc<ShardContext>) {
    let max = ctx.config.queue_config.max_samples_per_send.max(1);
    let deadline = ctx.config.queue_config.batch_send_deadline.as_std();
    let mut batch: Vec<QueuedSample> = Vec::with_capacity(max);
    // When the oldest sample of the batch must be sent by.
    let mut send_by = tokio::time::Instant::now();
    loop {
        let open = if batch.is_empty() {
            let n = rx.recv_many(&mut batch, max).await;
            send_by = tokio::time::Instant::now() + deadline;
            n > 0
        } else {
            let room = max - batch.len();
            match tokio::time::timeout_at(send_by, rx.recv_many(&mut batch, room)).await {
                Ok(n) => n > 0,
                Err(_) => {
                    send_batch(&ctx, &mut batch).await;
                    continue;
                }
            }
        };
        if !open {
            if !batch.is_empty() {
                send_batch(&ctx, &mut batch).await;
            }
            return;
        }
        if batch.len() >= max {
            send_batch(&ctx, &mut batch).await;
        }
    }
}

/// How a request ended.
pub(crate) enum Outcome {
    Sent,
    /// Not retryable: drop the batch.
    Refused(String),
    /// Retry after the given delay (the server's `Retry-After`) or the backoff.
    Retry(String, Option<Duration>),
}

/// Sends `batch` until it is delivered, refused, or the queue gives up; empties it.
async fn send_batch(ctx: &ShardContext, batch: &mut Vec<QueuedSample>) {
    let q = &ctx.config.queue_config;
    let mut backoff = q.min_backoff.as_std();
    let max_backoff = q.max_backoff.as_std();
    let mut done: Vec<(u64, usize)> = Vec::new();
    // Encoded once per batch (again only if old samples were dropped); retries share it.
    let mut body: Option<Bytes> = None;
    loop {
        if q.sample_age_limit.as_millis() > 0 {
            let oldest_ok = kiln_model::calendar::now_ms() - q.sample_age_limit.as_millis();
            let before = batch.len();
            batch.retain(|s| {
                let keep = s.t >= oldest_ok;
                if !keep {
                    add_run(&mut done, s.seq);
                }
                keep
            });
            let dropped = before - batch.len();
            if dropped > 0 {
                ctx.metrics
                    .samples_dropped_too_old
                    .fetch_add(dropped as u64, Ordering::Relaxed);
                body = None;
            }
        }
        if batch.is_empty() {
            break;
        }
        let payload = body
            .get_or_insert_with(|| {
                Bytes::from(match ctx.config.protobuf_message {
                    ProtobufMessage::V1 => encode_v1(batch),
                    ProtobufMessage::V2 => encode_v2(batch, &ctx.metadata.read()),
                })
            })
            .clone();
        let bytes = payload.len() as u64;
        let started = Instant::now();
        let outcome = post(ctx, payload).await;
        let n = batch.len() as u64;
        match outcome {
            Outcome::Sent => {
                if ctx.receiver.delivered() {
                    tracing::info!(remote_name = %ctx.config.name, url = %ctx.config.url, "Remote write receiver is back; sending resumed");
                }
                ctx.metrics.observe_batch(started.elapsed().as_secs_f64());
                ctx.metrics.samples_sent.fetch_add(n, Ordering::Relaxed);
                ctx.metrics.bytes_sent.fetch_add(bytes, Ordering::Relaxed);
                let newest = batch.iter().map(|s| s.t).max().unwrap_or(0);
                QueueMetrics::raise(&ctx.metrics.highest_sent_ms, newest);
                break;
            }
            Outcome::Refused(reason) => {
                ctx.metrics.observe_batch(started.elapsed().as_secs_f64());
                ctx.metrics.samples_failed.fetch_add(n, Ordering::Relaxed);
                tracing::error!(remote_name = %ctx.config.name, url = %ctx.config.url, samples = n, err = %reason, "remote write refused a batch; dropping it");
                break;
            }
            Outcome::Retry(reason, after) => {
                ctx.metrics.samples_retried.fetch_add(n, Ordering::Relaxed);
                if ctx.give_up.load(Ordering::Relaxed) {
                    tracing::warn!(remote_name = %ctx.config.name, samples = n, err = %reason, "Stopping: leaving a failed batch for the next start");
                    batch.clear();
                    return;
                }
                if ctx.receiver.failed() {
                    tracing::warn!(remote_name = %ctx.config.name, url = %ctx.config.url, err = %reason, "Remote write receiver is failing; retrying with backoff until it answers");
                } else {
                    tracing::debug!(remote_name = %ctx.config.name, samples = n, err = %reason, retry_in = ?after.unwrap_or(backoff), "Failed to send batch, retrying");
                }
                tokio::time::sleep(after.unwrap_or(backoff)).await;
                backoff = (backoff * 2).min(max_backoff);
            }
        }
    }
    for s in batch.drain(..) {
        add_run(&mut done, s.seq);
    }
    ctx.progress.done(&done);
}

/// Counts one more sample of record `seq` in run-length form.
fn add_run(runs: &mut Vec<(u64, usize)>, seq: u64) {
    match runs.last_mut() {
        Some((s, n)) if *s == seq => *n += 1,
        _ => runs.push((seq, 1)),
    }
}

/// POSTs one snappy-compressed body with the protocol's headers.
pub(crate) async fn post(ctx: &ShardContext, body: Bytes) -> Outcome {
    let c = &ctx.config;
    let mut req = match ctx.client.request(reqwest::Method::POST, c.url.expose()) {
        Ok(r) => r,
        Err(e) => return Outcome::Retry(e.to_string(), None),
    };
    let (content_type, version) = match c.protobuf_message {
        ProtobufMessage::V1 => ("application/x-protobuf", "0.1.0"),
        ProtobufMessage::V2 => (
            "application/x-protobuf;proto=io.prometheus.write.v2.Request",
            "2.0.0",
        ),
    };
    for (k, v) in &c.headers {
        req = req.header(k, v.expose());
    }
    req = req
        .header("Content-Type", content_type)
        .header("Content-Encoding", "snappy")
        .header("X-Prometheus-Remote-Write-Version", version)
        .timeout(c.remote_timeout.as_std())
        .body(body);
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) => return Outcome::Retry(kiln_http_client::error_chain(&e), None),
    };
    let status = resp.status();
    if status.is_success() {
        return Outcome::Sent;
    }
    let retry_after = resp
        .headers()
        .get("Retry-After")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let text = resp.text().await.unwrap_or_default();
    let reason = format!("server returned HTTP status {status}: {}", text.trim());
    let retry = status.is_server_error()
        || (status == reqwest::StatusCode::TOO_MANY_REQUESTS && c.queue_config.retry_on_http_429);
    if retry {
        Outcome::Retry(reason, retry_after)
    } else {
        Outcome::Refused(reason)
    }
}

#[cfg(test)]
mod tests {
    use super::ReceiverHealth;

    /// Each answer in turn, and whether it is a change worth a log line.
    fn check(answers: &[(bool, bool)]) {
        let health = ReceiverHealth::default();
        assert!(!health.is_down());
        for (i, &(delivered, want_logged)) in answers.iter().enumerate() {
            let logged = if delivered {
                health.delivered()
            } else {
                health.failed()
            };
            assert_eq!(logged, want_logged, "answer {i} of {answers:?}");
            assert_eq!(health.is_down(), !delivered);
        }
    }

    #[test]
    fn only_changes_of_the_receivers_state_are_logged() {
        // Up from the start: nothing to say.
        check(&[(true, false), (true, false)]);
        // Down from the start: the first failure is said once, and the recovery.
        check(&[
            (false, true),
            (false, false),
            (false, false),
            (true, true),
            (true, false),
        ]);
        // Going down after working, twice.
        check(&[
            (true, false),
            (false, true),
            (true, true),
            (false, true),
            (false, false),
        ]);
    }
}
