//! Series by id within one lock stripe: ids sorted in a vector, found by position or
//! bisection.
//!
//! Series ids are handed out in increasing order, and a scrape appends its series in
//! the order it created them, so consecutive lookups ask for consecutive ids. Ids are
//! therefore striped in blocks of [`ID_BLOCK`] consecutive ids (not id by id): a run of
//! lookups stays in one stripe, under one lock word, reading neighbouring vector
//! entries that the CPU prefetches. A hash map, or round-robin striping, spreads the
//! same lookups over memory and pays cache misses for each (measured with perf on the
//! scrape benchmark: a hash map was a quarter of a scrape's CPU time at 100k series,
//! round-robin stripes an eighth). Inserting a new (highest) id is a push; removals
//! happen in batches at head truncation.

use std::sync::Arc;

use super::series::MemSeries;

/// log2 of the number of consecutive ids that share a stripe.
const ID_BLOCK_BITS: u32 = 10;
/// Consecutive ids that share a stripe.
pub(super) const ID_BLOCK: u64 = 1 << ID_BLOCK_BITS;

/// The stripe (of `stripes`, a power of two) that holds id `id`.
pub(super) fn id_stripe(id: u64, stripes: usize) -> usize {
    ((id >> ID_BLOCK_BITS) as usize) & (stripes - 1)
}

pub(super) struct IdIndex {
    /// Sorted ascending; `series[i]` has id `ids[i]`.
    ids: Vec<u64>,
    series: Vec<Arc<MemSeries>>,
    /// log2 of the number of stripes.
    stripe_bits: u32,
}

impl IdIndex {
    /// The index of one stripe of `stripes` (a power of two).
    pub(super) fn new(stripes: usize) -> IdIndex {
        IdIndex {
            ids: Vec::new(),
            series: Vec::new(),
            stripe_bits: stripes.max(1).trailing_zeros(),
        }
    }

    /// The id with the stripe bits taken out: the ids of one stripe map to consecutive
    /// numbers, so while no series was removed, id `x` sits at index
    /// `dense(x) - dense(ids[0])`.
    fn dense(&self, id: u64) -> u64 {
        ((id >> (ID_BLOCK_BITS + self.stripe_bits)) << ID_BLOCK_BITS) | (id & (ID_BLOCK - 1))
    }

    fn position(&self, id: u64) -> Option<usize> {
        let first = *self.ids.first()?;
        // Where the id is when the stripe's ids are dense; else bisect.
        if id >= first {
            let guess = (self.dense(id) - self.dense(first)) as usize;
            if self.ids.get(guess) == Some(&id) {
                return Some(guess);
            }
        }
        self.ids.binary_search(&id).ok()
    }

    pub(super) fn len(&self) -> usize {
        self.ids.len()
    }

    pub(super) fn get(&self, id: u64) -> Option<&Arc<MemSeries>> {
        self.position(id).map(|i| &self.series[i])
    }

    /// Makes room for `n` more series.
    pub(super) fn reserve(&mut self, n: usize) {
        self.ids.reserve(n);
        self.series.reserve(n);
    }

    pub(super) fn contains(&self, id: u64) -> bool {
        self.position(id).is_some()
    }

    /// Adds (or replaces) the series of `id`.
    pub(super) fn insert(&mut self, id: u64, series: Arc<MemSeries>) {
        if self.ids.last().is_none_or(|&last| last < id) {
            self.ids.push(id);
            self.series.push(series);
            return;
        }
        match self.ids.binary_search(&id) {
            Ok(i) => self.series[i] = series,
            Err(i) => {
                self.ids.insert(i, id);
                self.series.insert(i, series);
            }
        }
    }

    /// Keeps the series for which `keep(id)` is true.
    pub(super) fn retain(&mut self, mut keep: impl FnMut(u64) -> bool) {
        let mut w = 0;
        for r in 0..self.ids.len() {
            if keep(self.ids[r]) {
                self.ids.swap(w, r);
                self.series.swap(w, r);
                w += 1;
            }
        }
        self.ids.truncate(w);
        self.series.truncate(w);
    }

    pub(super) fn values(&self) -> impl Iterator<Item = &Arc<MemSeries>> {
        self.series.iter()
    }

    /// Every series with its id, by id.
    pub(super) fn entries(&self) -> impl Iterator<Item = (u64, &Arc<MemSeries>)> {
        self.ids.iter().copied().zip(&self.series)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_model::Labels;

    fn series(id: u64) -> Arc<MemSeries> {
        let labels = Labels::from_pairs(&[("id", id.to_string())]);
        Arc::new(MemSeries::new(id, labels.hash(), labels))
    }

    #[test]
    fn insert_get_retain() {
        let mut idx = IdIndex::new(1);
        for id in [1, 2, 5, 9] {
            idx.insert(id, series(id));
        }
        idx.insert(3, series(3)); // out of order (WAL replay)
        assert_eq!(idx.len(), 5);
        assert!(idx.contains(3) && !idx.contains(4));
        assert_eq!(idx.get(5).map(|s| s.id), Some(5));
        idx.retain(|id| id % 2 == 1);
        let ids: Vec<u64> = idx.values().map(|s| s.id).collect();
        assert_eq!(ids, [1, 3, 5, 9]);
        assert!(idx.get(2).is_none());
        assert_eq!(idx.get(9).map(|s| s.id), Some(9));
        // A stripe's dense ids are found by position.
        let stripes = 4;
        let mut idx = IdIndex::new(stripes);
        let ids: Vec<u64> = (5..10 * ID_BLOCK * stripes as u64)
            .filter(|&id| id_stripe(id, stripes) == 1)
            .collect();
        for &id in &ids {
            idx.insert(id, series(id));
        }
        for (i, &id) in ids.iter().enumerate() {
            assert_eq!(idx.position(id), Some(i));
            assert_eq!(
                idx.dense(id) - idx.dense(ids[0]),
                i as u64,
                "id {id} by position"
            );
        }
        assert!(idx.get(4).is_none() && idx.get(ids[0] - 1).is_none());
        assert!(idx.get(ids[ids.len() - 1] + 1).is_none());
        idx.retain(|id| id != ids[10]);
        assert_eq!(
            idx.get(ids[500]).map(|s| s.id),
            Some(ids[500]),
            "by bisection"
        );
        assert!(idx.get(ids[10]).is_none());
    }
}
