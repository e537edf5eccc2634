//! Instruments the storage engine keeps about itself: what the server's `/metrics`
//! exports under Prometheus's `prometheus_tsdb_*` names. The engine only counts; it
//! never formats or prints.
//!
//! Everything here is lock-free, so recording costs a few atomic operations on the
//! maintenance path and never blocks a reader: counters are plain `AtomicU64`s,
//! [`Histogram`] keeps one atomic count per bucket and [`Summary`] a count, and both keep
//! their sum as the bits of an `f64` updated by compare-and-swap.
//!
//! A reader racing an observation may see its bucket before its sum (or the other way
//! round). [`Histogram::snapshot`] derives the count from the buckets, so an exported
//! histogram's `_count` always equals its `+Inf` bucket.

use std::sync::atomic::{AtomicU64, Ordering};

/// Adds `v` to the `f64` stored as bits in `cell`.
fn add_f64(cell: &AtomicU64, v: f64) {
    // The closure always returns `Some`, so the update cannot fail.
    let _ = cell.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
        Some((f64::from_bits(bits) + v).to_bits())
    });
}

/// A histogram with fixed upper bounds, like a Prometheus classic histogram.
#[derive(Debug)]
pub struct Histogram {
    /// Upper bounds, ascending; the `+Inf` bucket is implied.
    bounds: &'static [f64],
    /// Observations per bucket (not cumulative); one more than `bounds`, the last for
    /// values above every bound.
    counts: Box<[AtomicU64]>,
    sum: AtomicU64,
}

/// A point-in-time copy of a [`Histogram`], in the shape the exposition formats want.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// `(upper bound, observations at or below it)` for every finite bound, ascending.
    pub buckets: Vec<(f64, u64)>,
    /// Every observation: the `+Inf` bucket.
    pub count: u64,
    pub sum: f64,
}

impl Histogram {
    /// A histogram with the given ascending upper bounds.
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0f64.to_bits()),
        }
    }

    /// Records one value. A value equal to a bound counts in that bound's bucket, as in
    /// Prometheus (`le` means "less than or equal").
    pub fn observe(&self, v: f64) {
        let i = self.bounds.partition_point(|b| *b < v);
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        add_f64(&self.sum, v);
    }

    /// The cumulative bucket counts, count and sum now.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut running = 0u64;
        let mut buckets = Vec::with_capacity(self.bounds.len());
        for (bound, count) in self.bounds.iter().zip(self.counts.iter()) {
            running += count.load(Ordering::Relaxed);
            buckets.push((*bound, running));
        }
        let above = self.counts[self.bounds.len()].load(Ordering::Relaxed);
        HistogramSnapshot {
            buckets,
            count: running + above,
            sum: f64::from_bits(self.sum.load(Ordering::Relaxed)),
        }
    }
}

/// A count and a sum of observations: what a Prometheus summary without quantile
/// objectives exports (`_count` and `_sum`), as Prometheus's head garbage-collection and
/// WAL-truncation timings are.
#[derive(Debug)]
pub struct Summary {
    count: AtomicU64,
    sum: AtomicU64,
}

impl Default for Summary {
    fn default() -> Self {
        Summary {
            count: AtomicU64::new(0),
            sum: AtomicU64::new(0f64.to_bits()),
        }
    }
}

impl Summary {
    /// Records one value.
    pub fn observe(&self, v: f64) {
        add_f64(&self.sum, v);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// `(count, sum)` now.
    pub fn snapshot(&self) -> (u64, f64) {
        (
            self.count.load(Ordering::Relaxed),
            f64::from_bits(self.sum.load(Ordering::Relaxed)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_inclusive() {
        static BOUNDS: [f64; 3] = [1.0, 2.0, 4.0];
        let check = |values: &[f64], want_buckets: [u64; 3], want_count: u64| {
            let h = Histogram::new(&BOUNDS);
            for v in values {
                h.observe(*v);
            }
            let s = h.snapshot();
            let got: Vec<u64> = s.buckets.iter().map(|b| b.1).collect();
            assert_eq!(got, want_buckets, "{values:?}");
            assert_eq!(s.count, want_count, "{values:?}");
            assert_eq!(s.sum, values.iter().sum::<f64>(), "{values:?}");
        };
        check(&[], [0, 0, 0], 0);
        check(&[1.0], [1, 1, 1], 1);
        check(&[0.5, 1.5, 2.0, 3.0, 9.0], [1, 3, 4], 5);
        check(&[100.0, 200.0], [0, 0, 0], 2);
    }

    #[test]
    fn summary_counts_and_sums() {
        let s = Summary::default();
        assert_eq!(s.snapshot(), (0, 0.0));
        s.observe(0.25);
        s.observe(0.5);
        assert_eq!(s.snapshot(), (2, 0.75));
    }
}
