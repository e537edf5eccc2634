//! Label sets of recently read head series, kept whole for the next read.
//!
//! A head series holds its labels as pair numbers (see [`label_pairs`](super::label_pairs)),
//! so every query used to build each selected series' label set anew: an allocation and
//! a copy per series, a tenth of a large selection's time. Dashboards ask the same
//! queries again every few seconds, so the sets built for one read are kept for the
//! next, within a byte budget: a shard past its share is emptied and fills again with
//! what is read next. Entries are never stale: a series' labels never change, its id
//! is never used again, and removed series are dropped from here when garbage collection
//! removes them.

use std::collections::{HashMap, HashSet};

use kiln_model::Labels;
use parking_lot::Mutex;

const SHARDS: usize = 16;

/// Bytes one entry costs beside its label buffer (map slot, the buffer's `Arc` header
/// and allocator rounding, roughly).
const ENTRY_OVERHEAD: usize = 64;

#[derive(Default)]
struct Shard {
    sets: HashMap<u64, Labels, foldhash::fast::RandomState>,
    bytes: usize,
}

/// Label sets by series id, at most `budget` bytes in all.
pub(crate) struct LabelCache {
    shards: Box<[Mutex<Shard>]>,
    shard_budget: usize,
}

impl LabelCache {
    pub(crate) fn new(budget: usize) -> LabelCache {
        LabelCache {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            shard_budget: budget / SHARDS,
        }
    }

    fn shard(&self, id: u64) -> &Mutex<Shard> {
        // Ids come in runs; the low bits spread a run over the shards.
        &self.shards[(id as usize) % SHARDS]
    }

    /// The label set of series `id`, built by `build` (and kept) when not here.
    pub(crate) fn get_or_build(
        &self,
        id: u64,
        build: impl FnOnce() -> Option<Labels>,
    ) -> Option<Labels> {
        if let Some(l) = self.shard(id).lock().sets.get(&id) {
            return Some(l.clone());
        }
        let labels = build()?;
        let cost = labels.packed_len() + ENTRY_OVERHEAD;
        let mut shard = self.shard(id).lock();
        if shard.bytes + cost > self.shard_budget {
            shard.sets.clear();
            shard.sets.shrink_to(0);
            shard.bytes = 0;
        }
        if cost <= self.shard_budget && shard.sets.insert(id, labels.clone()).is_none() {
            shard.bytes += cost;
        }
        Some(labels)
    }

    /// Forgets the series `dead` (removed from the head).
    pub(crate) fn remove(&self, dead: &HashSet<u64>) {
        for shard in self.shards.iter() {
            let mut shard = shard.lock();
            let mut freed = 0;
            shard.sets.retain(|id, l| {
                let keep = !dead.contains(id);
                if !keep {
                    freed += l.packed_len() + ENTRY_OVERHEAD;
                }
                keep
            });
            shard.bytes -= freed;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_are_built_once_kept_within_the_budget_and_forgotten_when_removed() {
        let cache = LabelCache::new(SHARDS * 200);
        let set = |i: u64| Labels::from_pairs(&[("id", i.to_string())]);
        let mut built = 0;
        for _ in 0..3 {
            let got = cache.get_or_build(1, || {
                built += 1;
                Some(set(1))
            });
            assert_eq!(got, Some(set(1)));
        }
        assert_eq!(built, 1, "built once, then read from the cache");
        // Ids 1, 17, 33 share a shard of 200 bytes: the third empties it.
        for id in [17, 33] {
            cache.get_or_build(id, || Some(set(id)));
        }
        let shard = cache.shard(1).lock();
        assert!(shard.bytes <= 200 && !shard.sets.contains_key(&1));
        drop(shard);
        cache.remove(&HashSet::from([33]));
        let mut rebuilt = false;
        cache.get_or_build(33, || {
            rebuilt = true;
            Some(set(33))
        });
        assert!(rebuilt, "a removed series is built again");
        assert_eq!(
            cache.get_or_build(99, || None),
            None,
            "nothing for a gone series"
        );
    }
}
