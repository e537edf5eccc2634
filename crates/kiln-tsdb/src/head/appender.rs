//! Write transactions on the head.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use kiln_model::{Labels, Timestamp};
use kiln_storage::{Appender, ErrorKind, SampleValue, SeriesRef, StorageError};

use super::Head;
use super::series::{Appended, MemSeries, Rejection};
use crate::wal::record::{self, RefSample, RefSeries};

/// The newest timestamp an appender accepts: `now + max_future` (saturating).
#[derive(Clone, Copy)]
struct FutureBound {
    now: Timestamp,
    max_future: i64,
}

impl FutureBound {
    /// The bound of `head` read from the clock now, if the head has one.
    fn of(head: &Head) -> Option<FutureBound> {
        head.opts.max_future.map(|max_future| FutureBound {
            now: kiln_model::calendar::now_ms(),
            max_future,
        })
    }

    fn max_valid(self) -> Timestamp {
        self.now.saturating_add(self.max_future)
    }
}

struct Pending {
    series: Arc<MemSeries>,
    t: Timestamp,
    v: f64,
}

/// The buffers of an appender, handed back to the head when it is dropped so the next
/// appender starts with them: a scrape of 10k series would otherwise grow a fresh
/// pending list and WAL buffers by doubling every time, and the freed blocks fragment
/// the allocator's arenas (measured with `bench/scrape/run.py`).
#[derive(Default)]
pub(super) struct AppenderBuffers {
    pending: Vec<Pending>,
    series_buf: Vec<u8>,
    samples_buf: Vec<u8>,
}

/// How many appenders' buffers the head keeps for reuse.
const KEPT_BUFFERS: usize = 8;
/// Pending lists longer than this (a huge remote-write request) are not kept.
const KEPT_PENDING_MAX: usize = 1 << 16;
/// A kept series-record buffer is shrunk to this: new series come in bursts (a new
/// target's first scrape) and the steady state writes few series records, so a buffer
/// sized for a burst would sit idle.
const KEPT_SERIES_BUF_MAX: usize = 64 << 10;

/// One write transaction on the [`Head`]; see [`Appender`] for the contract. The
/// appender can be used again after `commit` or `rollback`.
///
/// While it holds uncommitted samples, the appender publishes the oldest of their
/// timestamps in `inflight`, so that head compaction can wait for it before persisting
/// and dropping that time range (see [`Head::wait_for_appenders_below`]).
pub struct HeadAppender<'h> {
    head: &'h Head,
    pending: Vec<Pending>,
    /// Samples before this are out of bounds: already in a block, or more than half a
    /// chunk range behind the newest sample.
    min_valid: Timestamp,
    /// The clock when `min_valid` was computed, with the head's `max_future`: samples
    /// after `clock + max_future` are too far in the future. `None` when the head has no
    /// such bound.
    future_bound: Option<FutureBound>,
    /// Oldest pending timestamp, `i64::MAX` when nothing is pending.
    pending_min: Timestamp,
    /// `pending_min` as the head's compaction sees it.
    inflight: Arc<AtomicI64>,
    series_buf: Vec<u8>,
    samples_buf: Vec<u8>,
}

impl<'h> HeadAppender<'h> {
    pub(super) fn new(head: &'h Head) -> Self {
        let buffers = head.appender_buffers.lock().pop().unwrap_or_default();
        HeadAppender {
            head,
            pending: buffers.pending,
            min_valid: Self::compute_min_valid(head),
            future_bound: FutureBound::of(head),
            pending_min: i64::MAX,
            inflight: head.register_appender(),
            series_buf: buffers.series_buf,
            samples_buf: buffers.samples_buf,
        }
    }

    fn out_of_bounds(
        &self,
        series_ref: SeriesRef,
        labels: &Labels,
        t: Timestamp,
        min_valid: Timestamp,
    ) -> StorageError {
        self.head
            .stats
            .out_of_bounds_rejected
            .fetch_add(1, Ordering::Relaxed);
        StorageError::OutOfBounds {
            labels: self.labels_for_error(series_ref, labels),
            t,
            min_valid,
        }
    }

    /// The labels a rejection names: those given, or the series' own when the caller
    /// appended by reference alone (empty labels).
    fn labels_for_error(&self, series_ref: SeriesRef, labels: &Labels) -> Labels {
        if labels.is_empty()
            && let Some(s) = self.head.series_by_id(series_ref)
        {
            return s.labels.clone();
        }
        labels.clone()
    }

    /// Forgets every pending sample: clears the series' pending marks and counts.
    fn discard_pending(&mut self) {
        for p in self.pending.drain(..) {
            let mut data = p.series.data.lock();
            data.set_pending(None);
            data.pending_commits = data.pending_commits.saturating_sub(1);
        }
        self.pending_min = i64::MAX;
        self.inflight.store(i64::MAX, Ordering::SeqCst);
    }

    fn compute_min_valid(head: &Head) -> Timestamp {
        let from_blocks = head.min_valid_time();
        match head.max_time() {
            Some(max) => from_blocks.max(max.saturating_sub(head.opts.chunk_range / 2)),
            None => from_blocks,
        }
    }

    /// Number of samples waiting for commit.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    fn resolve(
        &self,
        series_ref: SeriesRef,
        labels: &Labels,
    ) -> Result<Arc<MemSeries>, StorageError> {
        if series_ref != 0
            && let Some(s) = self.head.series_by_id(series_ref)
            && (labels.is_empty() || s.labels == *labels)
        {
            return Ok(s);
        }
        if labels.is_empty() {
            if series_ref != 0 {
                return Err(StorageError::UnknownSeriesRef { series_ref });
            }
            return Err(StorageError::InvalidLabels {
                labels: labels.clone(),
                reason: "empty label set",
            });
        }
        Ok(self.head.get_or_create(labels).0)
    }

    /// Logs to the WAL the series records not logged yet and this transaction's samples.
    fn log(&mut self) -> Result<(), StorageError> {
        let Some(wal) = self.head.wal.as_ref() else {
            return Ok(());
        };
        let mut new_series: Vec<RefSeries> = Vec::new();
        let mut samples: Vec<RefSample> = Vec::with_capacity(self.pending.len());
        for p in &self.pending {
            if !p.series.logged.load(Ordering::Acquire) {
                new_series.push(RefSeries {
                    id: p.series.id,
                    labels: p.series.labels.clone(),
                });
            }
            samples.push(RefSample {
                id: p.series.id,
                t: p.t,
                v: p.v,
            });
        }
        new_series.sort_by_key(|s| s.id);
        new_series.dedup_by_key(|s| s.id);
        middle_id_first(&mut samples);
        self.series_buf.clear();
        self.samples_buf.clear();
        record::encode_series(&new_series, &mut self.series_buf);
        record::encode_samples(&samples, &mut self.samples_buf);
        let mut recs: Vec<&[u8]> = Vec::with_capacity(2);
        if !new_series.is_empty() {
            recs.push(&self.series_buf);
        }
        recs.push(&self.samples_buf);
        wal.lock()
            .log(&recs)
            .map_err(|e| StorageError::backend(ErrorKind::Unavailable, "writing the WAL", e))?;
        for p in &self.pending {
            p.series.logged.store(true, Ordering::Release);
        }
        Ok(())
    }

    fn apply(&mut self) {
        let range = self.head.opts.chunk_range;
        let mut appended = 0u64;
        let (mut min_t, mut max_t) = (i64::MAX, i64::MIN);
        let disk = self.head.chunk_disk.as_ref();
        let mut new_chunks = 0u64;
        for p in self.pending.drain(..) {
            let mut data = p.series.data.lock();
            data.set_pending(None);
            data.pending_commits = data.pending_commits.saturating_sub(1);
            let done = data.append(p.series.id, p.t, p.v, range, disk);
            if done.stored() {
                appended += 1;
                min_t = min_t.min(p.t);
                max_t = max_t.max(p.t);
            }
            if done == Appended::NewChunk {
                new_chunks += 1;
            }
        }
        if new_chunks > 0 {
            self.head
                .stats
                .chunks_created
                .fetch_add(new_chunks, Ordering::Relaxed);
        }
        if appended > 0 {
            self.head.note_sample_time(min_t);
            self.head.note_sample_time(max_t);
        }
        self.head
            .stats
            .samples_appended
            .fetch_add(appended, Ordering::Relaxed);
        self.min_valid = Self::compute_min_valid(self.head);
        self.future_bound = FutureBound::of(self.head);
        self.pending_min = i64::MAX;
        self.inflight.store(i64::MAX, Ordering::SeqCst);
    }
}

impl Appender for HeadAppender<'_> {
    fn append(
        &mut self,
        series_ref: SeriesRef,
        labels: &Labels,
        t: Timestamp,
        v: SampleValue,
    ) -> Result<SeriesRef, StorageError> {
        let SampleValue::Float(v) = v;
        if t < self.min_valid {
            return Err(self.out_of_bounds(series_ref, labels, t, self.min_valid));
        }
        if let Some(bound) = self.future_bound
            && t > bound.max_valid()
        {
            self.head
                .stats
                .out_of_bounds_rejected
                .fetch_add(1, Ordering::Relaxed);
            return Err(StorageError::TooFarInFuture {
                labels: self.labels_for_error(series_ref, labels),
                t,
                now: bound.now,
                max_future: bound.max_future,
            });
        }
        let mut series = self.resolve(series_ref, labels)?;
        // Publish the sample before reading the head's bound: compaction raises the bound
        // before reading the published timestamps, so one of the two sees the other.
        self.inflight.fetch_min(t, Ordering::SeqCst);
        let bound = self.head.min_valid_time();
        if t < bound {
            self.inflight.store(self.pending_min, Ordering::SeqCst);
            return Err(self.out_of_bounds(series_ref, labels, t, bound));
        }
        let check = loop {
            let mut data = series.data.lock();
            if series.removed.load(Ordering::Acquire) {
                // Garbage-collected since we found it: use (or create) the live one.
                drop(data);
                let l = if labels.is_empty() {
                    series.labels.clone()
                } else {
                    labels.clone()
                };
                series = self.head.get_or_create(&l).0;
                continue;
            }
            let c = data.check(t, v);
            if c.is_ok() {
                if data.pending().is_none_or(|(pt, _)| t > pt) {
                    data.set_pending(Some((t, v)));
                }
                data.pending_commits += 1;
            }
            break c;
        };
        if check.is_err() {
            self.inflight.store(self.pending_min, Ordering::SeqCst);
        }
        match check {
            Ok(()) => {}
            Err(Rejection::OutOfOrder) => {
                self.head
                    .stats
                    .out_of_order_rejected
                    .fetch_add(1, Ordering::Relaxed);
                return Err(StorageError::OutOfOrderSample {
                    labels: series.labels.clone(),
                    t,
                });
            }
            Err(Rejection::Duplicate) => {
                self.head
                    .stats
                    .duplicate_rejected
                    .fetch_add(1, Ordering::Relaxed);
                return Err(StorageError::DuplicateSampleForTimestamp {
                    labels: series.labels.clone(),
                    t,
                });
            }
        }
        self.pending_min = self.pending_min.min(t);
        let id = series.id;
        self.pending.push(Pending { series, t, v });
        Ok(id)
    }

    fn commit(&mut self) -> Result<(), StorageError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        match self.head.wal.as_ref() {
            Some(_) => {
                // Log and apply under one lock so the WAL's order is the head's order:
                // a replay then rebuilds exactly what readers saw.
                let _order = self.head.commit_order.lock();
                if let Err(e) = self.log() {
                    self.rollback()?;
                    return Err(e);
                }
                self.apply();
            }
            None => self.apply(),
        }
        Ok(())
    }

    fn rollback(&mut self) -> Result<(), StorageError> {
        self.discard_pending();
        // A reused appender judges its next samples by the clock of then.
        self.future_bound = FutureBound::of(self.head);
        Ok(())
    }
}

impl Drop for HeadAppender<'_> {
    /// An appender dropped without commit rolls back.
    fn drop(&mut self) {
        self.discard_pending();
        let mut kept = self.head.appender_buffers.lock();
        if kept.len() < KEPT_BUFFERS && self.pending.capacity() <= KEPT_PENDING_MAX {
            let mut buffers = AppenderBuffers {
                pending: std::mem::take(&mut self.pending),
                series_buf: std::mem::take(&mut self.series_buf),
                samples_buf: std::mem::take(&mut self.samples_buf),
            };
            buffers.series_buf.clear();
            buffers.series_buf.shrink_to(KEPT_SERIES_BUF_MAX);
            buffers.samples_buf.clear();
            kept.push(buffers);
        }
    }
}

/// Moves the first sample of the series with the middle id to the front of `samples`.
///
/// A samples record stores its first sample's series id, and each sample's id as a
/// varint delta from it (Prometheus's layout, which decodes in any order). A request's
/// samples usually come in id order, so from the first the deltas span all of the ids;
/// and under concurrent writers the series one request creates get ids spread over
/// several requests' worth: at bench scale 1, 2% of the deltas took three bytes where
/// Prometheus's WAL had 0.8%. From the middle id no delta is more than half the spread.
/// Only a series' first sample moves, so every series' samples keep their order.
fn middle_id_first(samples: &mut [RefSample]) {
    if samples.len() < 3 {
        return;
    }
    let mut ids: Vec<u64> = samples.iter().map(|s| s.id).collect();
    let mid = ids.len() / 2;
    let (_, &mut middle, _) = ids.select_nth_unstable(mid);
    if let Some(i) = samples.iter().position(|s| s.id == middle) {
        samples[..=i].rotate_right(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_middle_id_goes_first_and_series_keep_their_order() {
        // Ids spread as concurrent writers leave them, two samples for some series.
        let mut samples: Vec<RefSample> = (0..2000u64)
            .map(|i| RefSample {
                id: 100 + i * 6,
                t: 1_000,
                v: i as f64,
            })
            .chain((0..10u64).map(|i| RefSample {
                id: 100 + i * 6,
                t: 2_000,
                v: 0.5,
            }))
            .collect();
        let before = samples.clone();
        let encoded = |s: &[RefSample]| {
            let mut buf = Vec::new();
            record::encode_samples(s, &mut buf);
            buf
        };
        let mut ids: Vec<u64> = before.iter().map(|s| s.id).collect();
        ids.sort_unstable();
        middle_id_first(&mut samples);
        assert_eq!(samples[0].id, ids[ids.len() / 2], "the middle id leads");
        // Each series' samples in their order, nothing lost or added.
        for id in before.iter().map(|s| s.id) {
            let of = |v: &[RefSample]| -> Vec<(i64, u64)> {
                v.iter()
                    .filter(|s| s.id == id)
                    .map(|s| (s.t, s.v.to_bits()))
                    .collect()
            };
            assert_eq!(of(&samples), of(&before), "series {id}");
        }
        // Deltas of up to 6,000 from the middle instead of 12,000 from the lowest id:
        // two bytes each, where the 634 ids 8,192 or more above the lowest took three.
        assert!(
            encoded(&samples).len() + 600 < encoded(&before).len(),
            "{} vs {}",
            encoded(&samples).len(),
            encoded(&before).len()
        );
    }
}
