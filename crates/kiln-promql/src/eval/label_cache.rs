//! The evaluator's hash-map keys and what it remembers per label set across steps.

use std::collections::HashMap;

use kiln_model::Labels;

use super::{key, subset_hash};

/// A map hasher for the evaluator's maps: keys that are already hashes (group and
/// signature hashes) are used as they are, addresses and times are spread (see
/// [`spread`]), label sets go through xxh3 (SipHash, the default, took a third of subquery time).
#[derive(Default)]
pub(crate) struct KeyHasher(u64);

impl std::hash::Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    /// Byte strings (label sets) hash with xxh3, mixed with what came before.
    fn write(&mut self, bytes: &[u8]) {
        self.write_u64(xxhash_rust::xxh3::xxh3_64(bytes));
    }

    /// Times (multiples of a step, so low bits often zero): mixed as addresses are.
    fn write_i64(&mut self, n: i64) {
        self.write_u64(spread(n as u64));
    }

    /// A single `u64` key (a hash already) is used as it is; a composite key mixes.
    fn write_u64(&mut self, n: u64) {
        self.0 = if self.0 == 0 {
            n
        } else {
            (self.0 ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15)
        };
    }

    /// Addresses: Fibonacci hashing, then the high half folded into the low one. The
    /// table picks buckets by the low bits, and an aligned address times an odd
    /// constant keeps its low zero bits: without the fold, keys crowd into a fraction
    /// of the buckets and lookups walk long probe chains.
    fn write_usize(&mut self, n: usize) {
        self.write_u64(spread(n as u64));
    }

    /// Flags in composite keys: mixed like a number, not hashed as a byte string.
    fn write_u8(&mut self, n: u8) {
        self.write_usize(usize::from(n) + 1);
    }
}

/// Fibonacci hashing with the high half folded into the low one (see
/// [`KeyHasher::write_usize`]).
fn spread(n: u64) -> u64 {
    let x = n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    x ^ (x >> 32)
}

/// `BuildHasher` of [`KeyHasher`].
pub(crate) type HashKeyed = std::hash::BuildHasherDefault<KeyHasher>;

/// What the evaluator works out per label set, remembered across the steps of a range
/// query (the same series are matched and grouped at every step): matching and
/// grouping signatures ([`subset_hash`]), and the result label sets of vector-matching
/// operations. Keyed by label-set addresses; clones of the label sets are kept, so an
/// address cannot be reused by another label set meanwhile.
#[derive(Default)]
pub(crate) struct LabelCache {
    /// By (label set, label-name list, include).
    signatures: HashMap<(usize, usize, bool), (Labels, u64), HashKeyed>,
    /// By (the "many" side's label set, the "one" side's, the matching): the inputs,
    /// and the result.
    results: HashMap<(usize, usize, usize), (Labels, Labels, Labels), HashKeyed>,
}

impl LabelCache {
    /// `subset_hash(l, names, include)`, from memory when `l` was seen.
    pub(crate) fn of(&mut self, l: &Labels, names: &[String], include: bool) -> u64 {
        if self.signatures.len() > 1_000_000 {
            self.signatures.clear();
        }
        let k = (l.buffer_addr(), names.as_ptr() as usize, include);
        self.signatures
            .entry(k)
            .or_insert_with(|| (l.clone(), subset_hash(l, names, include)))
            .1
    }

    /// `make(many, one)`, from memory when this pair was seen under `matching`.
    pub(crate) fn result_labels<M>(
        &mut self,
        many: &Labels,
        one: &Labels,
        matching: &M,
        make: impl FnOnce() -> Labels,
    ) -> Labels {
        if self.results.len() > 1_000_000 {
            self.results.clear();
        }
        let k = (many.buffer_addr(), one.buffer_addr(), key(matching));
        self.results
            .entry(k)
            .or_insert_with(|| (many.clone(), one.clone(), make()))
            .2
            .clone()
    }
}
