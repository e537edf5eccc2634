//! The receiver's series cache: the label bytes a sender encodes for a series, hashed,
//! to the series' labels and storage reference.
//!
//! Senders encode a series' labels the same way in every request, so a hit means the
//! labels were already checked and built: the sample goes to the storage by reference.
//! A 128-bit hash makes a collision between two different label encodings practically
//! impossible (the scrape cache relies on the same). A reference the storage no longer
//! knows (the series was dropped by head truncation) is harmless: the appender then
//! looks the labels up again and returns the new reference, which replaces the old one.
//!
//! Bounded: a shard that grows past its share of the limit is emptied; series still
//! being sent are cached again on their next request.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use kiln_model::Labels;
use kiln_storage::SeriesRef;
use parking_lot::Mutex;

const SHARDS: usize = 16;

/// Keys are already xxh3 hashes: the map uses their low 64 bits as they are (the high
/// bits pick the shard), instead of hashing them again.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u128(&mut self, key: u128) {
        self.0 = key as u64;
    }
}

type Shard = HashMap<u128, CachedSeries, BuildHasherDefault<KeyHasher>>;

/// A cached series. See the module docs.
#[derive(Clone)]
pub(crate) struct CachedSeries {
    pub(crate) series_ref: SeriesRef,
    pub(crate) labels: Labels,
}

/// Label-encoding hash -> series. Shared by all requests; sharded to keep concurrent
/// requests apart.
pub struct SeriesCache {
    shards: Vec<Mutex<Shard>>,
    per_shard_limit: usize,
}

impl SeriesCache {
    /// A cache holding about `limit` series at most.
    pub fn new(limit: usize) -> SeriesCache {
        SeriesCache {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            per_shard_limit: (limit / SHARDS).max(1),
        }
    }

    pub(crate) fn key(label_bytes: &[u8]) -> u128 {
        xxhash_rust::xxh3::xxh3_128(label_bytes)
    }

    fn shard(&self, key: u128) -> &Mutex<Shard> {
        &self.shards[((key >> 64) as usize) % SHARDS]
    }

    pub(crate) fn get(&self, key: u128) -> Option<CachedSeries> {
        self.shard(key).lock().get(&key).cloned()
    }

    pub(crate) fn put(&self, key: u128, series: CachedSeries) {
        let mut shard = self.shard(key).lock();
        if shard.len() >= self.per_shard_limit && !shard.contains_key(&key) {
            shard.clear();
        }
        shard.insert(key, series);
    }

    /// Series cached now.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Default for SeriesCache {
    /// Room for four million series.
    fn default() -> SeriesCache {
        SeriesCache::new(4 << 20)
    }
}
