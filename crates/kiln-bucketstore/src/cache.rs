//! [`IndexCache`]: postings lists and series entries read from buckets, kept in memory
//! within a byte limit (`--index-cache-size`), least recently used out first.
//!
//! Metrics under Thanos's names (`thanos_store_index_cache_*`, by `item_type`
//! `Postings` or `Series`), so the store gateway's dashboards work. An item larger than
//! half the limit is not cached (it would push everything else out).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use kiln_exposition::{MetricType, encode_text_header, encode_text_sample};
use kiln_model::Labels;
use parking_lot::Mutex;
use ulid::Ulid;

/// What a cached item is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ItemType {
    Postings,
    Series,
}

impl ItemType {
    const ALL: [ItemType; 2] = [ItemType::Postings, ItemType::Series];

    fn name(self) -> &'static str {
        match self {
            ItemType::Postings => "Postings",
            ItemType::Series => "Series",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// A cached item: block, kind, and its offset in the block's index.
pub type CacheKey = (Ulid, ItemType, u64);

/// Bytes an entry costs beyond its data (key, map slots, bookkeeping), counted so that a
/// cache of many small items still keeps to its limit.
const ENTRY_OVERHEAD: u64 = 96;

/// See the module docs.
pub struct IndexCache {
    max_bytes: u64,
    inner: Mutex<Inner>,
    requests: [AtomicU64; 2],
    hits: [AtomicU64; 2],
    added: [AtomicU64; 2],
    evicted: [AtomicU64; 2],
}

#[derive(Default)]
struct Inner {
    items: HashMap<CacheKey, (Bytes, u64)>,
    /// Last use tick -> key; the first entry is the least recently used.
    by_use: BTreeMap<u64, CacheKey>,
    tick: u64,
    bytes: u64,
    count: [u64; 2],
    bytes_by_type: [u64; 2],
}

fn cost(b: &Bytes) -> u64 {
    b.len() as u64 + ENTRY_OVERHEAD
}

impl IndexCache {
    /// A cache holding at most `max_bytes` (0 disables caching).
    pub fn new(max_bytes: u64) -> IndexCache {
        IndexCache {
            max_bytes,
            inner: Mutex::new(Inner::default()),
            requests: Default::default(),
            hits: Default::default(),
            added: Default::default(),
            evicted: Default::default(),
        }
    }

    /// The cached item, marked as just used.
    pub fn get(&self, key: &CacheKey) -> Option<Bytes> {
        self.requests[key.1.index()].fetch_add(1, Ordering::Relaxed);
        let mut inner = self.inner.lock();
        let inner = &mut *inner;
        inner.tick += 1;
        let tick = inner.tick;
        let (bytes, used) = inner.items.get_mut(key)?;
        inner.by_use.remove(used);
        *used = tick;
        inner.by_use.insert(tick, *key);
        self.hits[key.1.index()].fetch_add(1, Ordering::Relaxed);
        Some(bytes.clone())
    }

    /// Caches `bytes` under `key`, evicting the least recently used items to make room.
    pub fn put(&self, key: CacheKey, bytes: Bytes) {
        let c = cost(&bytes);
        if c > self.max_bytes / 2 {
            return;
        }
        let mut inner = self.inner.lock();
        let inner = &mut *inner;
        if inner.items.contains_key(&key) {
            return;
        }
        while inner.bytes + c > self.max_bytes {
            let Some((_, old)) = inner.by_use.pop_first() else {
                break;
            };
            if let Some((b, _)) = inner.items.remove(&old) {
                inner.bytes -= cost(&b);
                inner.count[old.1.index()] -= 1;
                inner.bytes_by_type[old.1.index()] -= cost(&b);
                self.evicted[old.1.index()].fetch_add(1, Ordering::Relaxed);
            }
        }
        inner.tick += 1;
        let tick = inner.tick;
        inner.bytes += c;
        inner.count[key.1.index()] += 1;
        inner.bytes_by_type[key.1.index()] += c;
        inner.by_use.insert(tick, key);
        inner.items.insert(key, (bytes, tick));
        self.added[key.1.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Bytes held (data and overhead).
    pub fn size_bytes(&self) -> u64 {
        self.inner.lock().bytes
    }

    /// Writes `thanos_store_index_cache_*` in the text format.
    pub fn write_metrics(&self, out: &mut Vec<u8>) {
        let (count, bytes) = {
            let inner = self.inner.lock();
            (inner.count, inner.bytes_by_type)
        };
        let counters: [(&str, &str, &[AtomicU64; 2]); 4] = [
            (
                "thanos_store_index_cache_requests_total",
                "Requests to the index cache.",
                &self.requests,
            ),
            (
                "thanos_store_index_cache_hits_total",
                "Requests to the index cache that found the item.",
                &self.hits,
            ),
            (
                "thanos_store_index_cache_items_added_total",
                "Items added to the index cache.",
                &self.added,
            ),
            (
                "thanos_store_index_cache_items_evicted_total",
                "Items evicted from the index cache to make room.",
                &self.evicted,
            ),
        ];
        for (name, help, cells) in counters {
            encode_text_header(out, name, help, MetricType::Counter);
            for t in ItemType::ALL {
                let v = cells[t.index()].load(Ordering::Relaxed) as f64;
                sample(out, name, t, v);
            }
        }
        let gauges: [(&str, &str, [u64; 2]); 2] = [
            (
                "thanos_store_index_cache_items",
                "Items in the index cache.",
                count,
            ),
            (
                "thanos_store_index_cache_items_size_bytes",
                "Bytes the index cache's items take.",
                bytes,
            ),
        ];
        for (name, help, cells) in gauges {
            encode_text_header(out, name, help, MetricType::Gauge);
            for t in ItemType::ALL {
                sample(out, name, t, cells[t.index()] as f64);
            }
        }
        let name = "thanos_store_index_cache_max_size_bytes";
        encode_text_header(out, name, "Limit of the index cache.", MetricType::Gauge);
        let labels = Labels::from_pairs(&[("__name__", name)]);
        encode_text_sample(out, &labels, self.max_bytes as f64, None);
    }
}

fn sample(out: &mut Vec<u8>, name: &str, t: ItemType, value: f64) {
    let labels = Labels::from_pairs(&[("__name__", name), ("item_type", t.name())]);
    encode_text_sample(out, &labels, value, None);
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn key(i: u64) -> CacheKey {
        (Ulid::nil(), ItemType::Postings, i)
    }

    #[test]
    fn keeps_within_the_limit_evicting_least_recently_used() {
        let item = Bytes::from(vec![0u8; 100]);
        let per = cost(&item);
        let cache = IndexCache::new(per * 3);
        for i in 0..3 {
            cache.put(key(i), item.clone());
        }
        assert!(cache.get(&key(0)).is_some()); // 0 is now the most recently used
        cache.put(key(3), item.clone());
        assert!(
            cache.get(&key(1)).is_none(),
            "1 was the least recently used"
        );
        assert!(cache.get(&key(0)).is_some());
        assert!(cache.get(&key(3)).is_some());
        assert!(cache.size_bytes() <= per * 3);
        // Too large to cache: refused, nothing evicted.
        cache.put(key(9), Bytes::from(vec![0u8; (per * 2) as usize]));
        assert!(cache.get(&key(9)).is_none());
        assert!(cache.get(&key(2)).is_some());
        let mut out = Vec::new();
        cache.write_metrics(&mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("thanos_store_index_cache_items_evicted_total{item_type=\"Postings\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("thanos_store_index_cache_items{item_type=\"Postings\"} 3"),
            "{text}"
        );
    }

    #[test]
    fn zero_limit_caches_nothing() {
        let cache = IndexCache::new(0);
        cache.put(key(1), Bytes::from_static(b"x"));
        assert!(cache.get(&key(1)).is_none());
    }
}
