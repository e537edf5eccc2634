//! The scrape cache: what a target's scrapes remember between one scrape and the next.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use kiln_model::Labels;
use kiln_storage::SeriesRef;

use super::TargetMetadata;

/// A hasher for keys that are already hashes.
#[derive(Default)]
struct PrehashedKey(u64);

impl Hasher for PrehashedKey {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used by the index's keys; fold anything else in.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// A 128-bit xxh3 of a series text: the cache's key. Keeping the hash instead of the
/// text saves the text's memory and the pointer chase to compare it on every lookup;
/// two texts of one target would have to collide in 128 bits (odds about n²/2¹²⁹ for n
/// series) to be confused. Two `u64` halves rather than a `u128`, whose 16-byte
/// alignment would pad every cache entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct TextKey {
    /// The half the index is keyed by.
    low: u64,
    high: u64,
}

pub(super) fn text_key(series: &str) -> TextKey {
    let h = xxhash_rust::xxh3::xxh3_128(series.as_bytes());
    TextKey {
        low: h as u64,
        high: (h >> 64) as u64,
    }
}

/// How many scrapes a series text may be missing before its entry is forgotten.
pub(super) const CACHE_KEEP_SCRAPES: u32 = 10;

/// What one series text of a target's bodies became.
#[derive(Debug)]
pub(super) struct SeriesEntry {
    key: TextKey,
    /// The final labels (target labels joined, metric relabeling applied); `None` when
    /// relabeling drops the series.
    pub(super) labels: Option<Labels>,
    /// The storage's reference, 0 until the first append.
    pub(super) series_ref: SeriesRef,
    /// The scrape that last had this text (0: a free slot). Scrape numbers are `u32`
    /// here to keep entries small: 2³² scrapes are over a century at 1 s.
    last_seen: u32,
    /// The scrape that last wrote a sample of it under staleness tracking (0: none
    /// since its last staleness marker).
    tracked: u32,
    /// Whether the scrape before `tracked` had written it too (decides a failed
    /// scrape's staleness markers, since its samples were rolled back).
    tracked_before: bool,
    /// Where the text was in the last scrape's order.
    pos: u32,
}

impl SeriesEntry {
    /// Records that this scrape wrote the series under staleness tracking.
    pub(super) fn track(&mut self, iteration: u32) {
        if self.tracked != iteration {
            self.tracked_before = self.tracked_in(iteration - 1);
            self.tracked = iteration;
        }
    }

    /// Whether scrape `iteration` wrote the series under staleness tracking.
    fn tracked_in(&self, iteration: u32) -> bool {
        self.tracked != 0 && self.tracked == iteration
    }
}

/// What a target's scrapes remember, as Prometheus's scrape cache does.
///
/// - Series text (`gpu_util{gpu="0"}`, exactly as written; kept as a 128-bit hash) to its
///   final labels and storage reference: a series seen before skips label parsing,
///   target labels, relabeling and limit checks, which dominate the cost of a scrape
///   otherwise. A text not in the cache is a new series for `scrape_series_added`, as
///   in Prometheus. Entries are computed with the loop's config and target labels, so a
///   cache belongs to one target under one config (the scrape manager starts a new
///   loop, with a new cache, when either changes).
/// - Which series the last scrape wrote, for staleness markers.
/// - The metadata of the target's families.
///
/// Targets write their series in the same order scrape after scrape, so the cache
/// keeps the last scrape's order and first checks whether the next text is the one
/// that followed last time: entries are then read in memory order and the hash index
/// is consulted only when the body changed shape. A staleness marker for a label set
/// that another text wrote again in the same scrape is refused by storage (same
/// timestamp), so identity by text gives Prometheus's identity by label set.
#[derive(Debug, Default)]
pub struct ScrapeCache {
    entries: Vec<SeriesEntry>,
    free: Vec<u32>,
    /// The low 64 bits of a key to its slot, whose entry holds the whole key: a lookup
    /// checks it, so even a 64-bit clash only costs a cache miss.
    index: HashMap<u64, u32, BuildHasherDefault<PrehashedKey>>,
    /// Slots in the order the current (or, between scrapes, the last) scrape met them.
    order: Vec<u32>,
    prev_order: Vec<u32>,
    /// Position in `prev_order` of the text expected next.
    cursor: usize,
    iteration: u32,
    pub(super) metadata: TargetMetadata,
}

impl ScrapeCache {
    /// Number of series the last scrape wrote (and tracks for staleness).
    pub fn len(&self) -> usize {
        self.series().count()
    }

    pub fn is_empty(&self) -> bool {
        self.series().next().is_none()
    }

    /// The metadata of the families of the last successful scrape.
    pub fn metadata(&self) -> TargetMetadata {
        self.metadata.clone()
    }

    /// The series the last scrape wrote (and tracks for staleness).
    pub fn series(&self) -> impl Iterator<Item = &Labels> {
        let it = self.iteration;
        self.entries
            .iter()
            .filter(move |e| e.last_seen != 0 && e.tracked_in(it))
            .filter_map(|e| e.labels.as_ref())
    }

    /// Starts a scrape; returns its number.
    pub(super) fn begin(&mut self) -> u32 {
        self.iteration = self.iteration.wrapping_add(1).max(1);
        std::mem::swap(&mut self.order, &mut self.prev_order);
        self.order.clear();
        self.cursor = 0;
        self.iteration
    }

    /// The slot of `key`, if the cache knows it; notes it as the scrape's next text.
    pub(super) fn lookup(&mut self, key: TextKey) -> Option<u32> {
        let expected = self.prev_order.get(self.cursor).copied();
        let slot = match expected {
            Some(s) if self.entries[s as usize].key == key => s,
            _ => {
                let s = *self.index.get(&key.low)?;
                if self.entries[s as usize].key != key {
                    return None;
                }
                // Resynchronize the expectation after the body's shape changed.
                let prev_pos = self.entries[s as usize].pos as usize;
                if self.prev_order.get(prev_pos) == Some(&s) {
                    self.cursor = prev_pos;
                }
                s
            }
        };
        self.cursor += 1;
        self.met(slot);
        Some(slot)
    }

    /// Adds a text the cache did not know; notes it as the scrape's next text.
    pub(super) fn insert(&mut self, key: TextKey, labels: Option<Labels>) -> u32 {
        let entry = SeriesEntry {
            key,
            labels,
            series_ref: 0,
            last_seen: self.iteration,
            tracked: 0,
            tracked_before: false,
            pos: 0,
        };
        let slot = match self.free.pop() {
            Some(s) => {
                self.entries[s as usize] = entry;
                s
            }
            None => {
                self.entries.push(entry);
                (self.entries.len() - 1) as u32
            }
        };
        self.index.insert(key.low, slot);
        self.met(slot);
        slot
    }

    fn met(&mut self, slot: u32) {
        let e = &mut self.entries[slot as usize];
        e.last_seen = self.iteration;
        e.pos = self.order.len() as u32;
        self.order.push(slot);
    }

    pub(super) fn entry_mut(&mut self, slot: u32) -> &mut SeriesEntry {
        &mut self.entries[slot as usize]
    }

    /// Ends a scrape: calls `stale` for every series that gets a staleness marker (a
    /// series of the previous scrape missing now; after a failed scrape, every series
    /// of the previous one) and forgets texts missing for a while.
    pub(super) fn finish(&mut self, success: bool, mut stale: impl FnMut(&Labels, SeriesRef)) {
        let it = self.iteration;
        let oldest_kept = it.saturating_sub(CACHE_KEEP_SCRAPES);
        for (slot, e) in self.entries.iter_mut().enumerate() {
            if e.last_seen == 0 {
                continue;
            }
            // Written by the previous scrape: `tracked` still says so, or this scrape
            // overwrote it and `tracked_before` remembers.
            let in_previous = e.tracked_in(it - 1) || (e.tracked_in(it) && e.tracked_before);
            let goes_stale = if success {
                e.tracked_in(it - 1)
            } else {
                in_previous
            };
            if goes_stale && let Some(labels) = &e.labels {
                stale(labels, e.series_ref);
            }
            if !success && e.tracked_in(it) {
                // Rolled back: nothing of this scrape is tracked.
                e.tracked = 0;
            } else if goes_stale {
                e.tracked = 0;
            }
            if e.last_seen < oldest_kept {
                if self.index.get(&e.key.low) == Some(&(slot as u32)) {
                    self.index.remove(&e.key.low);
                }
                e.last_seen = 0;
                e.labels = None;
                self.free.push(slot as u32);
            }
        }
        self.release_slack();
    }

    /// Gives back growth slack once a target's size has settled: vectors grown by
    /// doubling during a target's first scrape would otherwise hold up to twice their
    /// size for the target's lifetime. A little headroom stays so that a slowly growing
    /// target does not reallocate every scrape.
    fn release_slack(&mut self) {
        fn shrink<T>(v: &mut Vec<T>) {
            let headroom = v.len() / 16 + 16;
            if v.capacity() > v.len() + 4 * headroom {
                v.shrink_to(v.len() + headroom);
            }
        }
        shrink(&mut self.entries);
        shrink(&mut self.order);
        shrink(&mut self.prev_order);
        shrink(&mut self.free);
    }
}
