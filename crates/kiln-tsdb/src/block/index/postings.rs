//! Postings: strictly increasing lists of series ids, and their set operations.
//!
//! A [`Postings`] either borrows a list straight from the index file (big-endian `u32`s,
//! no copy) or owns a `Vec<u32>`. It is an [`Iterator`] with [`Postings::seek`] (binary
//! search forward), which makes [`intersect`] cost O(small · log large).

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// A sorted list of series ids; iterating consumes it from the front.
#[derive(Debug, Clone)]
pub struct Postings<'a> {
    repr: Repr<'a>,
    /// Index of the next element.
    pos: usize,
}

#[derive(Debug, Clone)]
enum Repr<'a> {
    /// Borrowed from an index file: each element is a big-endian `u32`.
    Raw(&'a [[u8; 4]]),
    Owned(Vec<u32>),
}

impl Default for Postings<'_> {
    fn default() -> Self {
        Postings::empty()
    }
}

impl<'a> Postings<'a> {
    /// The empty list.
    pub fn empty() -> Postings<'static> {
        Postings {
            repr: Repr::Owned(Vec::new()),
            pos: 0,
        }
    }

    /// A list from ids in any order; sorts and removes duplicates (cheap when already
    /// sorted).
    pub fn from_vec(mut ids: Vec<u32>) -> Postings<'static> {
        ids.sort_unstable();
        ids.dedup();
        Postings {
            repr: Repr::Owned(ids),
            pos: 0,
        }
    }

    /// Wraps big-endian ids read from a file. The caller has checked they increase.
    pub(crate) fn from_raw(raw: &'a [[u8; 4]]) -> Postings<'a> {
        Postings {
            repr: Repr::Raw(raw),
            pos: 0,
        }
    }

    fn total(&self) -> usize {
        match &self.repr {
            Repr::Raw(r) => r.len(),
            Repr::Owned(v) => v.len(),
        }
    }

    fn at(&self, i: usize) -> Option<u32> {
        match &self.repr {
            Repr::Raw(r) => r.get(i).map(|b| u32::from_be_bytes(*b)),
            Repr::Owned(v) => v.get(i).copied(),
        }
    }

    /// Ids not yet consumed.
    pub fn len(&self) -> usize {
        self.total() - self.pos
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The next id without consuming it.
    pub fn peek(&self) -> Option<u32> {
        self.at(self.pos)
    }

    /// Skips ids below `target` and returns the first id `>= target` without consuming it.
    /// Binary search: O(log n).
    pub fn seek(&mut self, target: u32) -> Option<u32> {
        let skip = match &self.repr {
            Repr::Raw(r) => r.get(self.pos..).map_or(0, |rest| {
                rest.partition_point(|b| u32::from_be_bytes(*b) < target)
            }),
            Repr::Owned(v) => v
                .get(self.pos..)
                .map_or(0, |rest| rest.partition_point(|&x| x < target)),
        };
        self.pos += skip;
        self.peek()
    }

    /// The remaining ids as a vector.
    pub fn into_vec(self) -> Vec<u32> {
        match self.repr {
            Repr::Owned(mut v) if self.pos == 0 => {
                v.shrink_to_fit();
                v
            }
            _ => self.collect(),
        }
    }

    /// A copy that does not borrow the index.
    pub fn into_owned(self) -> Postings<'static> {
        Postings {
            repr: Repr::Owned(self.into_vec()),
            pos: 0,
        }
    }
}

impl Iterator for Postings<'_> {
    type Item = u32;

    fn next(&mut self) -> Option<u32> {
        let v = self.at(self.pos)?;
        self.pos += 1;
        Some(v)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.len(), Some(self.len()))
    }
}

impl ExactSizeIterator for Postings<'_> {}

/// Ids present in every list. No lists gives the empty list.
///
/// Walks the shortest list and seeks in the others. Allocates only the result.
pub fn intersect(mut lists: Vec<Postings<'_>>) -> Postings<'static> {
    if lists.is_empty() || lists.iter().any(Postings::is_empty) {
        return Postings::empty();
    }
    lists.sort_by_key(Postings::len);
    let mut rest = lists.split_off(1);
    let Some(shortest) = lists.pop() else {
        return Postings::empty();
    };
    let mut out = Vec::with_capacity(shortest.len());
    'candidates: for id in shortest {
        for other in rest.iter_mut() {
            match other.seek(id) {
                Some(x) if x == id => {}
                Some(_) => continue 'candidates,
                None => break 'candidates,
            }
        }
        out.push(id);
    }
    Postings {
        repr: Repr::Owned(out),
        pos: 0,
    }
}

/// Ids present in any list (union), sorted and without duplicates.
///
/// A k-way merge through a heap: O(n log k). Allocates the result and the heap.
pub fn merge(lists: Vec<Postings<'_>>) -> Postings<'static> {
    let mut lists: Vec<Postings<'_>> = lists.into_iter().filter(|p| !p.is_empty()).collect();
    match lists.len() {
        0 => return Postings::empty(),
        1 => return lists.pop().map(Postings::into_owned).unwrap_or_default(),
        _ => {}
    }
    let total: usize = lists.iter().map(Postings::len).sum();
    let mut out: Vec<u32> = Vec::with_capacity(total);
    let mut heap: BinaryHeap<Reverse<(u32, usize)>> = BinaryHeap::with_capacity(lists.len());
    for (i, p) in lists.iter_mut().enumerate() {
        if let Some(v) = p.next() {
            heap.push(Reverse((v, i)));
        }
    }
    while let Some(Reverse((v, i))) = heap.pop() {
        if out.last() != Some(&v) {
            out.push(v);
        }
        if let Some(next) = lists.get_mut(i).and_then(Iterator::next) {
            heap.push(Reverse((next, i)));
        }
    }
    Postings {
        repr: Repr::Owned(out),
        pos: 0,
    }
}

/// Ids of `full` that are not in `drop`.
pub fn without(full: Postings<'_>, mut drop: Postings<'_>) -> Postings<'static> {
    let mut out = Vec::with_capacity(full.len());
    for id in full {
        match drop.seek(id) {
            Some(x) if x == id => {}
            _ => out.push(id),
        }
    }
    Postings {
        repr: Repr::Owned(out),
        pos: 0,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;

    fn p(ids: &[u32]) -> Postings<'static> {
        Postings::from_vec(ids.to_vec())
    }

    fn raw(ids: &[u32]) -> Vec<[u8; 4]> {
        ids.iter().map(|x| x.to_be_bytes()).collect()
    }

    #[test]
    fn raw_and_owned_behave_the_same() {
        let ids = [1, 5, 9, 200, 70_000];
        let bytes = raw(&ids);
        for mut list in [Postings::from_raw(&bytes), p(&ids)] {
            assert_eq!(list.len(), 5);
            assert_eq!(list.peek(), Some(1));
            assert_eq!(list.seek(6), Some(9));
            assert_eq!(list.seek(6), Some(9), "seek backwards stays put");
            assert_eq!(list.len(), 3);
            assert_eq!(list.next(), Some(9));
            assert_eq!(list.seek(70_001), None);
            assert!(list.is_empty());
        }
    }

    #[test]
    fn set_operations_table() {
        type Case = (Vec<Vec<u32>>, Vec<u32>, Vec<u32>);
        let cases: Vec<Case> = vec![
            (vec![], vec![], vec![]),
            (vec![vec![1, 2, 3]], vec![1, 2, 3], vec![1, 2, 3]),
            (vec![vec![1, 2, 3], vec![]], vec![], vec![1, 2, 3]),
            (
                vec![vec![1, 3, 5, 7], vec![3, 4, 5], vec![0, 3, 5, 9]],
                vec![3, 5],
                vec![0, 1, 3, 4, 5, 7, 9],
            ),
            (vec![vec![10, 20], vec![1, 2]], vec![], vec![1, 2, 10, 20]),
        ];
        for (lists, want_and, want_or) in cases {
            let check = || lists.iter().map(|l| p(l)).collect::<Vec<_>>();
            assert_eq!(
                intersect(check()).into_vec(),
                want_and,
                "intersect {lists:?}"
            );
            assert_eq!(merge(check()).into_vec(), want_or, "merge {lists:?}");
            // Run twice to catch state leaking between uses.
            assert_eq!(intersect(check()).into_vec(), want_and);
        }
        assert_eq!(
            without(p(&[1, 2, 3, 4, 5]), p(&[2, 4, 6])).into_vec(),
            vec![1, 3, 5]
        );
        assert_eq!(
            without(p(&[1, 2]), Postings::empty()).into_vec(),
            vec![1, 2]
        );
        assert_eq!(
            without(Postings::empty(), p(&[1])).into_vec(),
            Vec::<u32>::new()
        );
    }

    proptest! {
        #[test]
        fn set_operations_match_btreeset(
            lists in prop::collection::vec(prop::collection::btree_set(0u32..300, 0..60), 1..5),
        ) {
            let as_postings = || lists.iter().map(|s| Postings::from_vec(s.iter().copied().collect())).collect::<Vec<_>>();
            let mut want_and: BTreeSet<u32> = lists[0].clone();
            let mut want_or = BTreeSet::new();
            for s in &lists {
                want_and = want_and.intersection(s).copied().collect();
                want_or.extend(s.iter().copied());
            }
            prop_assert_eq!(intersect(as_postings()).into_vec(), want_and.into_iter().collect::<Vec<_>>());
            prop_assert_eq!(merge(as_postings()).into_vec(), want_or.into_iter().collect::<Vec<_>>());
            let bytes = raw(&lists[0].iter().copied().collect::<Vec<_>>());
            let drop = lists.last().map(|s| Postings::from_vec(s.iter().copied().collect())).unwrap_or_default();
            let want_diff: Vec<u32> = lists[0].iter().filter(|x| !lists[lists.len() - 1].contains(x)).copied().collect();
            prop_assert_eq!(without(Postings::from_raw(&bytes), drop).into_vec(), want_diff);
        }
    }
}
