//! The evaluator's hash-map keys and what it remembers per label set across steps.

use std::collections::HashMap;

use kiln_model::Labels;

use super::{key, subset_hash};
use crate::error::QueryError;

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

/// A bucket's label set without `le` and its upper bound; `None` without a valid `le`.
type Bucket = Option<(Labels, f64)>;

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
    /// Classic histogram buckets by label set: the label set, and its labels without
    /// `le` with its upper bound (`None`: no valid `le`).
    buckets: HashMap<usize, (Labels, Bucket), HashKeyed>,
    /// The bucket label sets without `le` made so far, each once, so that equal ones
    /// share a buffer.
    bucket_keys: HashMap<Labels, Labels, HashKeyed>,
    /// The last pairing of each vector-vector operation, by its matching's address.
    pairings: HashMap<usize, super::binary::Pairing, HashKeyed>,
    /// How the last vector of classic buckets grouped (see [`BucketPlan`]).
    pub(crate) bucket_plan: Option<BucketPlan>,
}

/// How a vector of classic histogram buckets splits into histograms: kept from one
/// step to the next, and used again as long as a step's samples carry the same label
/// sets in the same order (a range query's steps usually do), so that grouping costs
/// a comparison of addresses per sample instead of a lookup and a map per step.
pub(crate) struct BucketPlan {
    /// The label sets of the vector the plan was made for, in order; held, so their
    /// addresses cannot be reused by other label sets while the plan is kept.
    inputs: Vec<Labels>,
    /// For each input sample: its histogram's index in `groups` and its upper bound;
    /// `None` when its `le` is missing or malformed.
    pub(crate) slots: Vec<Option<(usize, f64)>>,
    /// Each histogram's label set without `le` and how many buckets it has, in the
    /// order they first appear in the vector.
    pub(crate) groups: Vec<(Labels, usize)>,
}

impl BucketPlan {
    /// Whether the plan was made for a vector with exactly these label sets in order.
    pub(crate) fn fits<'l>(&self, labels: impl ExactSizeIterator<Item = &'l Labels>) -> bool {
        labels.len() == self.inputs.len()
            && labels
                .zip(&self.inputs)
                .all(|(a, b)| a.buffer_addr() == b.buffer_addr())
    }
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

    /// The last pairing kept for operation `node`.
    pub(crate) fn pairing(&self, node: usize) -> Option<&super::binary::Pairing> {
        self.pairings.get(&node)
    }

    /// Keeps `pairing` as operation `node`'s last, and returns it.
    pub(crate) fn keep_pairing(
        &mut self,
        node: usize,
        pairing: super::binary::Pairing,
    ) -> &super::binary::Pairing {
        self.pairings.insert(node, pairing);
        &self.pairings[&node]
    }

    /// Forgets the buckets when many were seen. Call between evaluations, never while
    /// grouping by [`bucket`](Self::bucket)'s label-set addresses.
    fn trim_buckets(&mut self) {
        if self.buckets.len() > 1_000_000 {
            self.buckets.clear();
            self.bucket_keys.clear();
        }
    }

    /// The [`BucketPlan`] of a vector with label sets `labels`, made with
    /// [`bucket`](Self::bucket)'s answers.
    pub(crate) fn make_bucket_plan(
        &mut self,
        labels: &[&Labels],
        parse_le: fn(&str) -> Option<f64>,
    ) -> BucketPlan {
        self.trim_buckets();
        let mut index: HashMap<usize, usize, HashKeyed> = HashMap::default();
        let mut groups: Vec<(Labels, usize)> = Vec::new();
        let slots = labels
            .iter()
            .map(|l| {
                let (key, upper) = self.bucket(l, parse_le)?;
                let i = *index.entry(key.buffer_addr()).or_insert_with(|| {
                    groups.push((key, 0));
                    groups.len() - 1
                });
                groups[i].1 += 1;
                Some((i, upper))
            })
            .collect();
        BucketPlan {
            inputs: labels.iter().map(|l| (*l).clone()).collect(),
            slots,
            groups,
        }
    }

    /// A classic histogram bucket's label set without `le`, and its upper bound as
    /// `parse_le` reads it; `None` when `le` is missing or malformed. Remembered per
    /// label set; equal results share one label-set buffer, so buckets can be grouped
    /// by its address.
    pub(crate) fn bucket(&mut self, l: &Labels, parse_le: fn(&str) -> Option<f64>) -> Bucket {
        if let Some((_, known)) = self.buckets.get(&l.buffer_addr()) {
            return known.clone();
        }
        let found = parse_le(l.get("le").unwrap_or("")).map(|upper| {
            let key = l.retain(|name| name != "le");
            let key = self.bucket_keys.entry(key.clone()).or_insert(key).clone();
            (key, upper)
        });
        self.buckets
            .insert(l.buffer_addr(), (l.clone(), found.clone()));
        found
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

/// Label sets (by address, clones kept) known to be pairwise distinct, so that a step
/// whose samples all carry different ones of them holds no duplicates: checking that
/// costs a lookup by address per sample, where [`super::check_unique`] hashes every
/// label set at every step. A step with label sets not known yet is checked in full,
/// and those of them whose hash no member has join.
#[derive(Default)]
pub(crate) struct DistinctLabels {
    /// Members by address: the label set, and the last check that met it.
    members: HashMap<usize, (Labels, u64), HashKeyed>,
    /// The members' hashes.
    hashes: std::collections::HashSet<u64, HashKeyed>,
    checks: u64,
}

impl DistinctLabels {
    /// Fails as [`super::check_unique`] does when two samples of `v` have equal labels.
    pub(crate) fn check(&mut self, v: &[crate::value::Sample]) -> Result<(), QueryError> {
        self.checks += 1;
        let check = self.checks;
        let mut known = true;
        for s in v {
            match self.members.get_mut(&s.labels.buffer_addr()) {
                // Met twice in this vector: the same buffer, so equal labels.
                Some((_, last)) if *last == check => {
                    known = false;
                    break;
                }
                Some((_, last)) => *last = check,
                None => {
                    known = false;
                    break;
                }
            }
        }
        if known {
            return Ok(());
        }
        super::check_unique(v)?;
        if self.members.len() > 1_000_000 {
            self.members.clear();
            self.hashes.clear();
        }
        for s in v {
            let addr = s.labels.buffer_addr();
            if !self.members.contains_key(&addr) && self.hashes.insert(s.labels.hash()) {
                self.members.insert(addr, (s.labels.clone(), 0));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::Sample;

    #[test]
    fn distinct_labels_refuse_duplicates_however_they_arrive() {
        let l = |id: &str| Labels::from_pairs(&[("job", "a"), ("id", id)]);
        let (a, b) = (l("1"), l("2"));
        let step = |labels: &[&Labels]| -> Vec<Sample> {
            labels
                .iter()
                .map(|l| Sample::new((*l).clone(), 0, 1.0))
                .collect()
        };
        let mut d = DistinctLabels::default();
        // Learnt at the first step, known at the next.
        assert!(d.check(&step(&[&a, &b])).is_ok());
        assert!(d.check(&step(&[&b, &a])).is_ok());
        assert!(d.check(&step(&[&a])).is_ok());
        // The same buffer twice, a known one included.
        assert!(d.check(&step(&[&a, &b, &a])).is_err());
        // Equal labels in another buffer, beside a member or not.
        let a2 = l("1");
        assert!(d.check(&step(&[&a, &a2])).is_err());
        assert!(d.check(&step(&[&a2, &l("1")])).is_err());
        // A label set equal to a member stays out, but is fine alone.
        assert!(d.check(&step(&[&a2, &b])).is_ok());
        assert!(d.check(&step(&[&a2, &b])).is_ok());
    }
}
