//! Body buffers shared by all scrape loops.
//!
//! A scrape reads the whole body into memory before parsing it (the parser works on a
//! byte slice). Keeping one body-sized buffer per target would hold N bodies (10k
//! series are about 1 MB of text) although only the targets scraping at this moment
//! need one; allocating afresh every scrape churns the allocator with large blocks that
//! it rarely hands back. So loops borrow a buffer from a pool shared by all of them for
//! the duration of one scrape, as Prometheus's scrape pool does with its buffer pool.

use std::sync::Mutex;

/// Idle buffers the pool keeps. Scrapes are spread over the interval, so only a few run
/// at once; a burst above this frees the extra buffers when it is over.
const MAX_IDLE: usize = 4;

/// Buffers larger than this are not kept: one huge scrape must not pin its memory.
const MAX_KEPT_CAPACITY: usize = 64 << 20;

/// A pool of byte buffers for scrape bodies. See the module docs.
#[derive(Debug, Default)]
pub struct BodyBufferPool {
    idle: Mutex<Vec<Vec<u8>>>,
}

impl BodyBufferPool {
    pub fn new() -> BodyBufferPool {
        BodyBufferPool::default()
    }

    /// An empty buffer, preferably one with at least `want` bytes of capacity (the
    /// size of this target's last body), else the largest idle one.
    pub fn take(&self, want: usize) -> Vec<u8> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        // The smallest buffer that fits keeps large ones for large targets; without one
        // that fits, the largest grows least.
        let fitting = idle
            .iter()
            .enumerate()
            .filter(|(_, b)| b.capacity() >= want)
            .min_by_key(|(_, b)| b.capacity())
            .map(|(i, _)| i);
        let pick = fitting.or_else(|| {
            idle.iter()
                .enumerate()
                .max_by_key(|(_, b)| b.capacity())
                .map(|(i, _)| i)
        });
        pick.map(|i| idle.swap_remove(i)).unwrap_or_default()
    }

    /// Returns a buffer for later scrapes (its contents are discarded).
    pub fn give_back(&self, mut buf: Vec<u8>) {
        if buf.capacity() == 0 || buf.capacity() > MAX_KEPT_CAPACITY {
            return;
        }
        buf.clear();
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(buf);
        } else if let Some(smallest) = idle.iter_mut().min_by_key(|b| b.capacity())
            && smallest.capacity() < buf.capacity()
        {
            // Full: keep the larger of the two, so the pool converges on buffers that
            // fit the largest targets.
            *smallest = buf;
        }
    }

    /// Number of idle buffers (for tests).
    #[cfg(test)]
    fn idle_len(&self) -> usize {
        self.idle.lock().map(|i| i.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuses_returned_buffers_and_prefers_the_smallest_that_fits() {
        let pool = BodyBufferPool::new();
        assert_eq!(
            pool.take(100).capacity(),
            0,
            "an empty pool hands out new buffers"
        );
        pool.give_back(Vec::with_capacity(1000));
        pool.give_back(Vec::with_capacity(10));
        pool.give_back(Vec::with_capacity(500));
        assert_eq!(pool.take(400).capacity(), 500);
        assert_eq!(pool.take(5000).capacity(), 1000, "none fits: the largest");
        assert_eq!(pool.take(0).capacity(), 10);
        assert_eq!(pool.idle_len(), 0);
    }

    #[test]
    fn keeps_at_most_max_idle_buffers_preferring_large_ones() {
        let pool = BodyBufferPool::new();
        for cap in 1..=MAX_IDLE {
            pool.give_back(Vec::with_capacity(cap * 100));
        }
        pool.give_back(Vec::with_capacity(50));
        assert_eq!(pool.idle_len(), MAX_IDLE);
        assert_eq!(
            pool.take(0).capacity(),
            100,
            "the smaller newcomer was dropped"
        );
        pool.give_back(Vec::with_capacity(10_000));
        pool.give_back(Vec::with_capacity(20_000));
        assert_eq!(pool.idle_len(), MAX_IDLE);
        assert_eq!(
            pool.take(0).capacity(),
            300,
            "the larger newcomer replaced 200"
        );
        assert_eq!(pool.take(15_000).capacity(), 20_000);
    }

    #[test]
    fn returned_buffers_come_back_empty() {
        let pool = BodyBufferPool::new();
        let mut b = pool.take(0);
        b.extend_from_slice(b"up 1\n");
        pool.give_back(b);
        let b = pool.take(0);
        assert!(b.is_empty());
        assert!(b.capacity() >= 5);
    }
}
