//! What a query holds in memory, counted as it is taken and given back: samples (the
//! limit Prometheus users know, `--query.max-samples`) and bytes
//! (`--query.max-memory-bytes`), with the peaks for the query's stats.
//!
//! Counted: decoded selector samples (16 bytes each: time and value), samples of
//! instant vectors kept between steps (subquery windows) and of the result, and the cells
//! of step tables. A range query evaluated in time slices gives back each slice's
//! samples when the slice is done, so the counts follow what is held at once, as
//! Prometheus's `currentSamples` does, not everything the query ever read.

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::error::QueryError;

/// Bytes of one decoded sample: its time and its value.
pub(crate) const DECODED_SAMPLE_BYTES: usize = 16;

/// Bytes of one sample of an instant vector (its label set is shared, counted once per
/// series elsewhere as it is small next to the samples).
pub(crate) const VECTOR_SAMPLE_BYTES: usize = std::mem::size_of::<crate::value::Sample>();

/// The query's counts and limits, shared by the threads that load and evaluate it.
#[derive(Debug)]
pub(crate) struct Budget {
    samples: AtomicUsize,
    bytes: AtomicUsize,
    peak_samples: AtomicUsize,
    peak_bytes: AtomicUsize,
    /// Every sample read from storage, for the stats (`totalQueryableSamples`).
    total_loaded: AtomicUsize,
    max_samples: usize,
    /// 0: no byte limit.
    max_bytes: usize,
}

impl Budget {
    pub(crate) fn new(max_samples: usize, max_bytes: usize) -> Self {
        Budget {
            samples: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
            peak_samples: AtomicUsize::new(0),
            peak_bytes: AtomicUsize::new(0),
            total_loaded: AtomicUsize::new(0),
            max_samples,
            max_bytes,
        }
    }

    /// Counts `samples` more samples and `bytes` more bytes held, failing once the query
    /// holds too many (Prometheus's message for samples).
    pub(crate) fn hold(&self, samples: usize, bytes: usize) -> Result<(), QueryError> {
        let held = self.samples.fetch_add(samples, Ordering::Relaxed) + samples;
        let held_bytes = self.bytes.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.peak_samples.fetch_max(held, Ordering::Relaxed);
        self.peak_bytes.fetch_max(held_bytes, Ordering::Relaxed);
        if held > self.max_samples {
            return Err(QueryError::execution(
                "query processing would load too many samples into memory in query execution",
            ));
        }
        if self.max_bytes > 0 && held_bytes > self.max_bytes {
            return Err(QueryError::execution(format!(
                "query processing would use more than {} bytes of memory in query execution (--query.max-memory-bytes)",
                self.max_bytes
            )));
        }
        Ok(())
    }

    /// Counts samples read from storage: held, and added to the total read.
    pub(crate) fn hold_loaded(&self, samples: usize) -> Result<(), QueryError> {
        self.total_loaded.fetch_add(samples, Ordering::Relaxed);
        self.hold(samples, samples * DECODED_SAMPLE_BYTES)
    }

    /// Gives back what was held.
    pub(crate) fn release(&self, samples: usize, bytes: usize) {
        let _ = self
            .samples
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_sub(samples))
            });
        let _ = self
            .bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_sub(bytes))
            });
    }

    /// What is held now: (samples, bytes).
    pub(crate) fn held(&self) -> (usize, usize) {
        (
            self.samples.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
        )
    }

    /// The most held at once, and the samples read in all.
    pub(crate) fn stats(&self) -> crate::value::QueryStats {
        crate::value::QueryStats {
            peak_samples: self.peak_samples.load(Ordering::Relaxed),
            peak_bytes: self.peak_bytes.load(Ordering::Relaxed),
            total_queryable_samples: self.total_loaded.load(Ordering::Relaxed),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_go_up_and_down_and_peaks_stay() {
        let b = Budget::new(100, 1000);
        b.hold(60, 600).expect("fits");
        b.release(50, 500);
        b.hold(80, 800).expect("fits again");
        assert_eq!(b.held(), (90, 900));
        let s = b.stats();
        assert_eq!((s.peak_samples, s.peak_bytes), (90, 900));
        let e = b.hold(20, 0).expect_err("too many samples");
        assert!(e.message.contains("too many samples"), "{e}");
        b.release(200, 0);
        let e = b.hold(0, 200).expect_err("too many bytes");
        assert!(e.message.contains("--query.max-memory-bytes"), "{e}");
    }
}
