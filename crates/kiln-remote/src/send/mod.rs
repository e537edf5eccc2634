//! The remote-write sender: every `remote_write` entry of the config becomes a queue
//! that follows Kiln's own WAL and delivers each sample to its endpoint.
//!
//! Reading the WAL rather than the append path is what makes delivery reliable: a
//! receiver that is down only delays sending (the WAL keeps the samples until
//! compaction checkpoints them away, about two hours), and the queue's delivered
//! position is saved under `<data>/remote_write/`, so a restart resumes where the last
//! run stopped. Samples acknowledged before a crash and not yet recorded as delivered
//! are sent again; receivers treat a repeated identical sample as a no-op.
//!
//! Module map:
//! - [`queue`]: one entry at work (follower thread, enqueueing, resharding).
//! - [`shards`]: batching and sending with retries.
//! - [`progress`]: which records are delivered, and the saved position.
//! - [`request`]: 1.0 and 2.0 request bodies.
//! - [`metrics`]: `prometheus_remote_storage_*` under Prometheus's names.

mod metrics;
mod progress;
mod queue;
mod request;
mod shards;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use kiln_config::{ProtobufMessage, RemoteWriteConfig};
use parking_lot::{Mutex, RwLock};

pub use metrics::{QueueMetrics, QueueView, write_metrics};
pub use request::FamilyMetadata;

use progress::Progress;
use shards::{Outcome, ShardContext, post};

/// Where metadata comes from (the scrape targets' metadata, in `kiln server`).
pub type MetadataSource = Arc<dyn Fn() -> Vec<FamilyMetadata> + Send + Sync>;

/// All running remote-write queues. See the module docs.
pub struct RemoteWriteSender {
    wal_dir: PathBuf,
    progress_dir: PathBuf,
    flush_deadline: Duration,
    metadata: Option<MetadataSource>,
    rt: tokio::runtime::Handle,
    queues: Mutex<Vec<RunningQueue>>,
}

struct RunningQueue {
    config: RemoteWriteConfig,
    external_labels: BTreeMap<String, String>,
    ctx: Arc<ShardContext>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    metadata_task: Option<tokio::task::JoinHandle<()>>,
}

impl RemoteWriteSender {
    /// A sender with no queues, reading `wal_dir` and keeping positions in
    /// `progress_dir`; shards run on `rt`. `flush_deadline` bounds how long stopping
    /// spends delivering what is queued.
    pub fn new(
        wal_dir: &Path,
        progress_dir: &Path,
        flush_deadline: Duration,
        metadata: Option<MetadataSource>,
        rt: tokio::runtime::Handle,
    ) -> RemoteWriteSender {
        RemoteWriteSender {
            wal_dir: wal_dir.to_path_buf(),
            progress_dir: progress_dir.to_path_buf(),
            flush_deadline,
            metadata,
            rt,
            queues: Mutex::new(Vec::new()),
        }
    }

    /// Runs exactly the queues of `configs`: unchanged ones keep running, removed or
    /// changed ones are stopped (flushing first), new ones start. A config whose HTTP
    /// client cannot be built (a bad TLS file, say) fails the whole call and changes
    /// nothing.
    pub async fn apply(
        &self,
        configs: &[RemoteWriteConfig],
        external_labels: &BTreeMap<String, String>,
    ) -> Result<(), String> {
        let mut clients = Vec::with_capacity(configs.len());
        for c in configs {
            let client = kiln_http_client::HttpClient::new(&c.http_client, USER_AGENT)
                .map_err(|e| format!("remote_write {:?}: {e}", c.name))?;
            clients.push(client);
        }
        let mut old = std::mem::take(&mut *self.queues.lock());
        let mut next = Vec::with_capacity(configs.len());
        for (c, client) in configs.iter().zip(clients) {
            if let Some(i) = old
                .iter()
                .position(|q| &q.config == c && &q.external_labels == external_labels)
            {
                next.push(old.swap_remove(i));
                continue;
            }
            next.push(self.start(c.clone(), external_labels.clone(), client));
        }
        for q in old {
            stop_queue(q).await;
        }
        *self.queues.lock() = next;
        Ok(())
    }

    /// Stops every queue, each flushing for at most the flush deadline.
    pub async fn stop(&self) {
        let queues = std::mem::take(&mut *self.queues.lock());
        for q in queues {
            stop_queue(q).await;
        }
    }

    /// Writes the queues' metrics in the text format, and
    /// `prometheus_remote_storage_highest_timestamp_in_seconds` from
    /// `newest_appended_ms` (the storage's newest sample).
    pub fn write_metrics(&self, newest_appended_ms: Option<i64>, out: &mut Vec<u8>) {
        metrics::write_highest_timestamp(newest_appended_ms, out);
        let queues = self.queues.lock();
        let views: Vec<QueueView<'_>> = queues
            .iter()
            .map(|q| QueueView {
                name: &q.config.name,
                url: q.config.url.redacted(),
                capacity: q.config.queue_config.capacity,
                min_shards: q.config.queue_config.min_shards,
                max_shards: q.config.queue_config.max_shards,
                max_samples_per_send: q.config.queue_config.max_samples_per_send,
                pending: q.ctx.progress.outstanding(),
                metrics: &q.ctx.metrics,
            })
            .collect();
        write_metrics(&views, out);
    }

    fn start(
        &self,
        config: RemoteWriteConfig,
        external_labels: BTreeMap<String, String>,
        client: kiln_http_client::HttpClient,
    ) -> RunningQueue {
        let progress = Arc::new(Progress::new(
            self.progress_dir
                .join(format!("{}.position", file_name(&config.name))),
            &config.url.redacted(),
        ));
        let ctx = Arc::new(ShardContext {
            config: config.clone(),
            client,
            metrics: Arc::new(QueueMetrics::default()),
            progress,
            metadata: RwLock::new(HashMap::new()),
            give_up: AtomicBool::new(false),
            receiver: shards::ReceiverHealth::default(),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let follow = queue::Follow {
            wal_dir: self.wal_dir.clone(),
            ctx: ctx.clone(),
            external_labels: external_labels.clone(),
            stop: stop.clone(),
            flush_deadline: self.flush_deadline,
            rt: self.rt.clone(),
        };
        let thread = std::thread::Builder::new()
            .name(format!("remote-write-{}", config.name))
            .spawn(move || follow.run())
            .map_err(|e| tracing::error!(remote_name = %config.name, err = %e, "cannot start the remote write thread"))
            .ok();
        let metadata_task = self
            .metadata
            .clone()
            .filter(|_| {
                config.metadata_config.send || config.protobuf_message == ProtobufMessage::V2
            })
            .map(|source| {
                self.rt
                    .spawn(send_metadata(ctx.clone(), source, stop.clone()))
            });
        RunningQueue {
            config,
            external_labels,
            ctx,
            stop,
            thread,
            metadata_task,
        }
    }
}

use crate::read::USER_AGENT;

async fn stop_queue(mut q: RunningQueue) {
    q.stop.store(true, Ordering::Relaxed);
    if let Some(t) = q.metadata_task.take() {
        t.abort();
    }
    if let Some(t) = q.thread.take() {
        let _ = tokio::task::spawn_blocking(move || t.join()).await;
    }
}

/// A file name for a queue's progress from its (user-chosen) name.
fn file_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Every `send_interval`: refreshes the metadata 2.0 requests attach, and for 1.0
/// sends it in requests of its own (`metadata_config.max_samples_per_send` entries
/// each), retrying a few times.
async fn send_metadata(ctx: Arc<ShardContext>, source: MetadataSource, stop: Arc<AtomicBool>) {
    let md = &ctx.config.metadata_config;
    let mut tick = tokio::time::interval(md.send_interval.as_std().max(Duration::from_secs(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let all = source();
        if ctx.config.protobuf_message == ProtobufMessage::V2 {
            *ctx.metadata.write() = all.into_iter().map(|m| (m.family.clone(), m)).collect();
            continue;
        }
        if !md.send {
            continue;
        }
        for chunk in all.chunks(md.max_samples_per_send.max(1)) {
            let body = bytes::Bytes::from(request::encode_metadata_v1(chunk));
            let n = chunk.len() as u64;
            let mut backoff = ctx.config.queue_config.min_backoff.as_std();
            for attempt in 0..3 {
                match post(&ctx, body.clone()).await {
                    Outcome::Sent => {
                        ctx.metrics.metadata_sent.fetch_add(n, Ordering::Relaxed);
                        ctx.metrics
                            .metadata_bytes
                            .fetch_add(body.len() as u64, Ordering::Relaxed);
                        break;
                    }
                    Outcome::Retry(reason, after) if attempt < 2 => {
                        ctx.metrics.metadata_retried.fetch_add(n, Ordering::Relaxed);
                        tracing::debug!(remote_name = %ctx.config.name, err = %reason, "metadata send failed; retrying");
                        tokio::time::sleep(after.unwrap_or(backoff)).await;
                        backoff = (backoff * 2).min(ctx.config.queue_config.max_backoff.as_std());
                    }
                    Outcome::Retry(reason, _) | Outcome::Refused(reason) => {
                        ctx.metrics.metadata_failed.fetch_add(n, Ordering::Relaxed);
                        tracing::warn!(remote_name = %ctx.config.name, err = %reason, "metadata send failed; dropped");
                        break;
                    }
                }
            }
        }
    }
}
