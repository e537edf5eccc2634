//! One `remote_write` entry at work: a thread following the WAL feeds the shards, saves
//! progress, and resizes the shard set to the load.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use kiln_model::{Labels, relabel::relabel};
use kiln_tsdb::wal::{RefSample, WalEvent, WalFollower, WalPosition};

use super::metrics::QueueMetrics;
use super::progress::Progress;
use super::request::{QueuedSample, SeriesLabels};
use super::shards::{ShardContext, Shards};

/// How often the WAL is looked at when there was nothing new.
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// How often the committed position is written to disk.
const SAVE_INTERVAL: Duration = Duration::from_secs(1);
/// How often the number of shards is reconsidered (Prometheus's interval).
const RESHARD_INTERVAL: Duration = Duration::from_secs(10);

/// A series as the queue knows it: what to send it as (`None`: dropped by write
/// relabelling) and the newest segment it was seen in, to forget it after a checkpoint.
struct KnownSeries {
    labels: Option<Arc<SeriesLabels>>,
    segment: u64,
}

/// Everything the follower thread owns.
pub(crate) struct Follow {
    pub(crate) wal_dir: PathBuf,
    pub(crate) ctx: Arc<ShardContext>,
    pub(crate) external_labels: BTreeMap<String, String>,
    pub(crate) stop: Arc<AtomicBool>,
    /// How long stopping may spend delivering what is queued.
    pub(crate) flush_deadline: Duration,
    pub(crate) rt: tokio::runtime::Handle,
}

impl Follow {
    /// Runs until `stop` is set: follows the WAL, feeds shards, then flushes them.
    pub(crate) fn run(self) {
        let ctx = self.ctx.clone();
        let progress = ctx.progress.clone();
        let metrics = ctx.metrics.clone();
        let mut known: HashMap<u64, KnownSeries> = HashMap::new();
        let on_event = |e: WalEvent<'_>, known: &mut HashMap<u64, KnownSeries>| {
            self.note(e, known);
        };
        let saved = progress.load();
        let started = match saved {
            Some(pos) => WalFollower::resume(&self.wal_dir, pos, |e| on_event(e, &mut known)),
            None => WalFollower::at_end(&self.wal_dir, |e| on_event(e, &mut known)),
        };
        let mut follower = match started {
            Ok(f) => f,
            Err(e) => {
                tracing::error!(remote_name = %ctx.config.name, err = %e, "remote write cannot read the WAL; not sending");
                return;
            }
        };
        tracing::info!(
            remote_name = %ctx.config.name,
            url = %ctx.config.url,
            resumed = saved.is_some(),
            segment = follower.position().segment,
            shards = ctx.config.queue_config.min_shards.max(1),
            "Remote write queue started"
        );
        progress.start_at(follower.position());
        let q = &ctx.config.queue_config;
        let mut shards = Shards::start(q.min_shards, &ctx, &self.rt);
        let mut resharding = Resharding::new(&metrics, q.min_shards);
        let mut last_save = Instant::now();
        // Whether the last WAL read failed: only the first failure and the recovery are
        // logged, not every poll.
        let mut wal_failing = false;
        loop {
            // Read once more after the stop request: what was committed before it (the
            // last scrapes and rule evaluations) still goes out.
            let stopping = self.stop.load(Ordering::Relaxed);
            let polled = follower.poll(|e| match e {
                WalEvent::Samples { samples, end } => self.enqueue(samples, end, &known, &shards),
                other => on_event(other, &mut known),
            });
            metrics
                .wal_segment
                .store(follower.position().segment, Ordering::Relaxed);
            if stopping {
                break;
            }
            let idle = match polled {
                Ok(n) => {
                    if std::mem::take(&mut wal_failing) {
                        tracing::info!(remote_name = %ctx.config.name, "Reading the WAL works again");
                    }
                    n == 0
                }
                Err(e) if !wal_failing => {
                    wal_failing = true;
                    tracing::error!(remote_name = %ctx.config.name, err = %e, "Reading the WAL failed; retrying");
                    true
                }
                Err(e) => {
                    tracing::debug!(remote_name = %ctx.config.name, err = %e, "Reading the WAL failed again");
                    true
                }
            };
            if last_save.elapsed() >= SAVE_INTERVAL {
                self.save(&progress);
                last_save = Instant::now();
            }
            if let Some(n) = resharding.due(&metrics, &progress, shards.len(), q) {
                tracing::info!(remote_name = %ctx.config.name, from = shards.len(), to = n, "Remote storage resharding");
                shards.stop(&self.rt);
                shards = Shards::start(n, &ctx, &self.rt);
            }
            if idle {
                std::thread::sleep(POLL_INTERVAL);
            }
        }
        // Deliver what is queued, for at most the flush deadline.
        let give_up = ctx.clone();
        let deadline = self.flush_deadline;
        let timer = self.rt.spawn(async move {
            tokio::time::sleep(deadline).await;
            give_up.give_up.store(true, Ordering::Relaxed);
        });
        shards.stop(&self.rt);
        timer.abort();
        self.save(&progress);
        tracing::info!(
            remote_name = %ctx.config.name,
            url = %ctx.config.url,
            receiver_down = ctx.receiver.is_down(),
            "Remote write queue stopped"
        );
    }

    fn save(&self, progress: &Progress) {
        if let Err(e) = progress.save() {
            tracing::warn!(remote_name = %self.ctx.config.name, err = %e, "saving remote write progress failed");
        }
    }

    /// Takes note of a series, checkpoint or loss.
    fn note(&self, e: WalEvent<'_>, known: &mut HashMap<u64, KnownSeries>) {
        let metrics = &self.ctx.metrics;
        match e {
            WalEvent::Series { series, segment } => {
                metrics.records_series.fetch_add(1, Ordering::Relaxed);
                for s in series {
                    let labels = self.outgoing_labels(&s.labels);
                    known.insert(
                        s.id,
                        KnownSeries {
                            labels: labels.map(|labels| Arc::new(SeriesLabels { labels })),
                            segment,
                        },
                    );
                }
            }
            WalEvent::Checkpoint { segment } => known.retain(|_, s| s.segment >= segment),
            WalEvent::Lost { from, to } => {
                metrics
                    .segments_lost
                    .fetch_add(to.saturating_sub(from) + 1, Ordering::Relaxed);
                tracing::error!(remote_name = %self.ctx.config.name, from, to, "WAL segments were deleted before remote write read them; their samples are lost for this endpoint");
            }
            WalEvent::Samples { .. } => {}
        }
    }

    /// External labels added (where the series has no such label), then write
    /// relabelling; `None` when relabelling drops the series.
    fn outgoing_labels(&self, labels: &Labels) -> Option<Labels> {
        let with_external = if self.external_labels.is_empty() {
            labels.clone()
        } else {
            let mut b = labels.to_builder();
            for (k, v) in &self.external_labels {
                if labels.get(k).is_none() {
                    b.set(k, v);
                }
            }
            b.build()
        };
        let rc = &self.ctx.config.write_relabel_configs;
        if rc.is_empty() {
            return Some(with_external);
        }
        relabel(&with_external, rc)
    }

    /// Hands the samples of one WAL record to the shards, waiting while a shard is full.
    fn enqueue(
        &self,
        samples: &[RefSample],
        end: WalPosition,
        known: &HashMap<u64, KnownSeries>,
        shards: &Shards,
    ) {
        let metrics = &self.ctx.metrics;
        metrics.records_samples.fetch_add(1, Ordering::Relaxed);
        let kept = samples
            .iter()
            .filter(|s| known.get(&s.id).is_some_and(|k| k.labels.is_some()))
            .count();
        let dropped = samples.len() - kept;
        if dropped > 0 {
            metrics
                .samples_dropped_relabel
                .fetch_add(dropped as u64, Ordering::Relaxed);
        }
        let seq = self.ctx.progress.open(end, kept);
        for &RefSample { id, t, v } in samples {
            let Some(series) = known.get(&id).and_then(|s| s.labels.clone()) else {
                continue;
            };
            QueueMetrics::raise(&metrics.highest_read_ms, t);
            metrics.samples_in.fetch_add(1, Ordering::Relaxed);
            let mut item = QueuedSample { series, t, v, seq };
            loop {
                match shards.try_enqueue(id, item) {
                    Ok(()) => break,
                    Err(back) => {
                        if self.stop.load(Ordering::Relaxed) {
                            // Left undelivered: the record is not committed, so a
                            // restart reads it again.
                            return;
                        }
                        metrics.enqueue_retries.fetch_add(1, Ordering::Relaxed);
                        item = back;
                        std::thread::sleep(Duration::from_millis(5));
                    }
                }
            }
        }
    }
}

/// Decides the number of shards from the rates of samples in and out, in the manner of
/// Prometheus: the time one sample takes to send, times the samples arriving per second
/// plus the backlog to catch up on within one interval.
struct Resharding {
    last: Instant,
    last_in: u64,
    last_out: u64,
    last_retried: u64,
    last_send_seconds: f64,
    /// Smoothed rates per second.
    in_rate: f64,
    out_rate: f64,
    busy: f64,
    desired: f64,
}

impl Resharding {
    fn new(metrics: &QueueMetrics, shards: usize) -> Resharding {
        metrics
            .desired_shards
            .store((shards as f64).to_bits(), Ordering::Relaxed);
        Resharding {
            last: Instant::now(),
            last_in: metrics.samples_in.load(Ordering::Relaxed),
            last_out: 0,
            last_retried: 0,
            last_send_seconds: 0.0,
            in_rate: 0.0,
            out_rate: 0.0,
            busy: 0.0,
            desired: shards as f64,
        }
    }

    /// The new number of shards, when it is time to change it.
    fn due(
        &mut self,
        metrics: &QueueMetrics,
        progress: &Progress,
        current: usize,
        q: &kiln_config::QueueConfig,
    ) -> Option<usize> {
        let elapsed = self.last.elapsed();
        if elapsed < RESHARD_INTERVAL {
            return None;
        }
        self.last = Instant::now();
        let secs = elapsed.as_secs_f64();
        let samples_in = metrics.samples_in.load(Ordering::Relaxed);
        let out = metrics.samples_sent.load(Ordering::Relaxed)
            + metrics.samples_failed.load(Ordering::Relaxed);
        let retried = metrics.samples_retried.load(Ordering::Relaxed);
        let send_seconds = metrics.send_seconds();
        let smooth = |old: f64, new: f64| {
            if old == 0.0 {
                new
            } else {
                0.2 * new + 0.8 * old
            }
        };
        self.in_rate = smooth(self.in_rate, (samples_in - self.last_in) as f64 / secs);
        self.out_rate = smooth(self.out_rate, (out - self.last_out) as f64 / secs);
        self.busy = smooth(self.busy, (send_seconds - self.last_send_seconds) / secs);
        let failing = retried > self.last_retried;
        self.last_in = samples_in;
        self.last_out = out;
        self.last_retried = retried;
        self.last_send_seconds = send_seconds;
        if self.out_rate > 0.0 {
            // Seconds of one shard's time per sample sent.
            let per_sample = self.busy / self.out_rate;
            let backlog = progress.outstanding() as f64;
            self.desired = per_sample * (self.in_rate + backlog / RESHARD_INTERVAL.as_secs_f64());
        }
        metrics
            .desired_shards
            .store(self.desired.to_bits(), Ordering::Relaxed);
        // More shards do not help an endpoint that is failing; small changes are noise.
        if failing {
            return None;
        }
        let cur = current as f64;
        if self.desired > cur * 0.7 && self.desired < cur * 1.3 {
            return None;
        }
        let n = (self.desired.ceil() as usize).clamp(q.min_shards, q.max_shards);
        (n != current).then_some(n)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Pretends `RESHARD_INTERVAL` passed in which `sent` samples went out (and came in)
    /// and sends kept one shard busy for `busy_s` seconds.
    fn interval(r: &mut Resharding, m: &QueueMetrics, sent: u64, busy_s: f64) {
        m.samples_in.fetch_add(sent, Ordering::Relaxed);
        m.samples_sent.fetch_add(sent, Ordering::Relaxed);
        m.observe_batch(busy_s);
        r.last = Instant::now() - RESHARD_INTERVAL;
    }

    #[test]
    fn shards_follow_the_time_sending_takes() {
        let q = kiln_config::QueueConfig {
            max_shards: 8,
            ..Default::default()
        };
        let m = QueueMetrics::default();
        let tmp = tempfile::tempdir().unwrap();
        let p = Progress::new(tmp.path().join("p"), "http://x");
        let mut r = Resharding::new(&m, 1);
        assert_eq!(r.due(&m, &p, 1, &q), None, "not before an interval passed");
        // 100k samples in 10 s, sending took 40 s of shard time: 4 shards needed.
        interval(&mut r, &m, 100_000, 40.0);
        assert_eq!(r.due(&m, &p, 1, &q), Some(4));
        // Within 30% of the current count: no change.
        interval(&mut r, &m, 100_000, 40.0);
        assert_eq!(r.due(&m, &p, 4, &q), None);
        // Far more work than max_shards can do: capped.
        interval(&mut r, &m, 100_000, 2000.0);
        assert_eq!(r.due(&m, &p, 4, &q), Some(8));
        // While sends fail, adding shards does not help.
        m.samples_retried.fetch_add(10, Ordering::Relaxed);
        interval(&mut r, &m, 100_000, 2000.0);
        assert_eq!(r.due(&m, &p, 2, &q), None);
        // Idle: back down to min_shards.
        for _ in 0..30 {
            interval(&mut r, &m, 10, 0.0001);
            r.due(&m, &p, 8, &q);
        }
        assert_eq!(r.due(&m, &p, 8, &q), None, "no interval passed");
        interval(&mut r, &m, 10, 0.0001);
        assert_eq!(r.due(&m, &p, 8, &q), Some(1));
    }
}
