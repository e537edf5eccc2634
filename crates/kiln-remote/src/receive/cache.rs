//! The receiver's series cache: the label bytes a sender encodes for a series, hashed,
//! to the series' storage reference.
//!
//! Senders encode a series' labels the same way in every request, so a hit means the
//! labels were already checked and the series exists: the sample goes to the storage by
//! reference alone, without its labels (see `append_v1`). A 128-bit hash makes a
//! collision between two different label encodings practically impossible (the scrape
//! cache relies on the same). A reference the storage no longer knows (the series was
//! dropped by head truncation) is harmless: the storage refuses it, the receiver builds
//! the labels from the request and appends again, and the new reference replaces the
//! old one.
//!
//! An entry is 24 bytes (the key as two words and the reference), kept that small
//! because the cache holds one per series a sender writes: it is part of the memory per
//! active series.
//!
//! Bounded: a shard that grows past its share of the limit is emptied; series still
//! being sent are cached again on their next request.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

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

    fn write_u64(&mut self, word: u64) {
        self.0 = word;
    }
}

/// A key: the 128-bit hash as two 64-bit words (a `u128` would align entries to 16
/// bytes and make each 32 instead of 24). The map hashes only the low word (see
/// [`KeyHasher`]); the high word picks the shard.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Key {
    low: u64,
    high: u64,
}

impl std::hash::Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.low);
    }
}

type Shard = HashMap<Key, SeriesRef, BuildHasherDefault<KeyHasher>>;

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

    pub(crate) fn key(label_bytes: &[u8]) -> Key {
        let h = xxhash_rust::xxh3::xxh3_128(label_bytes);
        Key {
            low: h as u64,
            high: (h >> 64) as u64,
        }
    }

    fn shard(&self, key: Key) -> &Mutex<Shard> {
        &self.shards[(key.high as usize) % SHARDS]
    }

    pub(crate) fn get(&self, key: Key) -> Option<SeriesRef> {
        self.shard(key).lock().get(&key).copied()
    }

    pub(crate) fn put(&self, key: Key, series_ref: SeriesRef) {
        let mut shard = self.shard(key).lock();
        if shard.len() >= self.per_shard_limit && !shard.contains_key(&key) {
            shard.clear();
        }
        shard.insert(key, series_ref);
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
