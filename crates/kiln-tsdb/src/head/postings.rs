//! The head's inverted index: for each label pair, the ids of the series that have it.
//!
//! Series ids are handed out in increasing order and only appended, so every postings
//! list stays sorted without sorting; garbage collection removes ids in one pass.

use std::collections::{HashMap, HashSet};

use kiln_model::{Labels, Matcher};

/// Maps keyed by label names and values, hashed with foldhash (label strings are short;
/// SipHash's DoS resistance is not needed for data the server itself indexes, and its
/// cost showed in series creation).
type StrMap<V> = HashMap<Box<str>, V, foldhash::fast::RandomState>;

/// Label name -> label value -> sorted series ids.
#[derive(Debug, Default)]
pub(crate) struct MemPostings {
    by_name: StrMap<StrMap<Vec<u64>>>,
    all: Vec<u64>,
}

impl MemPostings {
    /// Indexes a new series. Ids usually arrive in increasing order (an append); a
    /// smaller id (a concurrent creator, WAL replay) is inserted in place.
    pub(crate) fn add(&mut self, id: u64, labels: &Labels) {
        for l in labels.iter() {
            // Look up before inserting: names and values are almost always known, and
            // an entry would allocate its key every time.
            let values = match self.by_name.get_mut(l.name) {
                Some(v) => v,
                None => self.by_name.entry(Box::from(l.name)).or_default(),
            };
            let ids = match values.get_mut(l.value) {
                Some(ids) => ids,
                None => values.entry(Box::from(l.value)).or_default(),
            };
            insert_sorted(ids, id);
        }
        insert_sorted(&mut self.all, id);
    }

    /// Adds the values of label `name` with their series ids, read back whole (from a
    /// head snapshot): each list sorted, `name` not indexed yet. Returns `false`, adding
    /// nothing, when `name` is already indexed or a value comes twice.
    pub(crate) fn insert_name(&mut self, name: &str, values: Vec<(Box<str>, Vec<u64>)>) -> bool {
        if self.by_name.contains_key(name) {
            return false;
        }
        let n = values.len();
        let mut map = StrMap::with_capacity_and_hasher(n, Default::default());
        map.extend(values);
        if map.len() != n {
            return false;
        }
        self.by_name.insert(Box::from(name), map);
        true
    }

    /// Sets the sorted list of every indexed series id (see [`insert_name`](Self::insert_name)).
    pub(crate) fn set_all(&mut self, all: Vec<u64>) {
        self.all = all;
    }

    /// Removes the given series ids everywhere.
    pub(crate) fn remove(&mut self, dead: &HashSet<u64>) {
        if dead.is_empty() {
            return;
        }
        self.all.retain(|id| !dead.contains(id));
        for values in self.by_name.values_mut() {
            for ids in values.values_mut() {
                ids.retain(|id| !dead.contains(id));
            }
            values.retain(|_, ids| !ids.is_empty());
        }
        self.by_name.retain(|_, values| !values.is_empty());
    }

    /// Sorted ids of series matching every matcher. Absent labels match as `""`.
    pub(crate) fn select(&self, matchers: &[Matcher]) -> Vec<u64> {
        let mut result: Option<Vec<u64>> = None;
        // Matchers that select by a non-empty value narrow the set; run them first.
        let (narrowing, rest): (Vec<&Matcher>, Vec<&Matcher>) =
            matchers.iter().partition(|m| !m.matches_empty());
        for m in narrowing {
            let ids = self.union_matching(m);
            result = Some(match result {
                None => ids,
                Some(r) => intersect(&r, &ids),
            });
            if result.as_ref().is_some_and(Vec::is_empty) {
                return Vec::new();
            }
        }
        let mut ids = result.unwrap_or_else(|| self.all.clone());
        for m in rest {
            // The matcher accepts "", so it rejects only series whose value it rejects.
            let inverse = self.union_not_matching(m);
            ids = subtract(&ids, &inverse);
        }
        ids
    }

    fn union_matching(&self, m: &Matcher) -> Vec<u64> {
        let Some(values) = self.by_name.get(m.name.as_str()) else {
            return Vec::new();
        };
        if let Some(set) = m.set_matches() {
            let lists: Vec<&[u64]> = set
                .iter()
                .filter_map(|v| values.get(*v).map(Vec::as_slice))
                .collect();
            return union(&lists);
        }
        let lists: Vec<&[u64]> = values
            .iter()
            .filter(|(v, _)| m.matches(v))
            .map(|(_, ids)| ids.as_slice())
            .collect();
        union(&lists)
    }

    fn union_not_matching(&self, m: &Matcher) -> Vec<u64> {
        let Some(values) = self.by_name.get(m.name.as_str()) else {
            return Vec::new();
        };
        let lists: Vec<&[u64]> = values
            .iter()
            .filter(|(v, _)| !m.matches(v))
            .map(|(_, ids)| ids.as_slice())
            .collect();
        union(&lists)
    }

    /// Every label name with its values and their series ids, unsorted.
    pub(crate) fn by_name(
        &self,
    ) -> impl Iterator<Item = (&str, impl ExactSizeIterator<Item = (&str, &Vec<u64>)>)> {
        self.by_name
            .iter()
            .map(|(n, values)| (&**n, values.iter().map(|(v, ids)| (&**v, ids))))
    }

    /// All label names, unsorted.
    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(|k| &**k)
    }

    /// All values of `name`, unsorted.
    pub(crate) fn values(&self, name: &str) -> Vec<&str> {
        self.by_name
            .get(name)
            .map(|v| v.keys().map(|k| &**k).collect())
            .unwrap_or_default()
    }
}

fn insert_sorted(ids: &mut Vec<u64>, id: u64) {
    match ids.last() {
        Some(&last) if last >= id => {
            let at = ids.partition_point(|&x| x < id);
            if ids.get(at) != Some(&id) {
                ids.insert(at, id);
            }
        }
        _ => ids.push(id),
    }
}

/// Intersection of two sorted lists.
pub(crate) fn intersect(a: &[u64], b: &[u64]) -> Vec<u64> {
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::with_capacity(a.len().min(b.len()));
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out
}

/// `a` minus `b`, both sorted.
pub(crate) fn subtract(a: &[u64], b: &[u64]) -> Vec<u64> {
    let mut j = 0;
    let mut out = Vec::with_capacity(a.len());
    for &x in a {
        while j < b.len() && b[j] < x {
            j += 1;
        }
        if j < b.len() && b[j] == x {
            continue;
        }
        out.push(x);
    }
    out
}

/// Union of sorted lists.
pub(crate) fn union(lists: &[&[u64]]) -> Vec<u64> {
    match lists {
        [] => Vec::new(),
        [one] => one.to_vec(),
        _ => {
            let mut out: Vec<u64> = lists.iter().flat_map(|l| l.iter().copied()).collect();
            out.sort_unstable();
            out.dedup();
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_model::MatchType;

    fn m(kind: MatchType, n: &str, v: &str) -> Matcher {
        Matcher::new(kind, n, v).expect("valid matcher")
    }

    #[test]
    fn select_table() {
        let mut p = MemPostings::default();
        p.add(1, &Labels::from_pairs(&[("__name__", "up"), ("job", "a")]));
        p.add(2, &Labels::from_pairs(&[("__name__", "up"), ("job", "b")]));
        p.add(3, &Labels::from_pairs(&[("__name__", "up")]));
        p.add(4, &Labels::from_pairs(&[("__name__", "gpu"), ("job", "a")]));
        use MatchType::*;
        let cases: Vec<(Vec<Matcher>, Vec<u64>)> = vec![
            (vec![m(Equal, "__name__", "up")], vec![1, 2, 3]),
            (
                vec![m(Equal, "__name__", "up"), m(Equal, "job", "a")],
                vec![1],
            ),
            (
                vec![m(Equal, "__name__", "up"), m(Equal, "job", "")],
                vec![3],
            ),
            (
                vec![m(Equal, "__name__", "up"), m(NotEqual, "job", "a")],
                vec![2, 3],
            ),
            (vec![m(Regex, "job", "a|b")], vec![1, 2, 4]),
            (vec![m(Regex, "job", ".*")], vec![1, 2, 3, 4]),
            (vec![m(NotRegex, "job", "a")], vec![2, 3]),
            (vec![m(Regex, "job", ".+")], vec![1, 2, 4]),
            (vec![m(Equal, "nope", "x")], vec![]),
        ];
        for (matchers, want) in cases {
            assert_eq!(p.select(&matchers), want, "{matchers:?}");
        }
        p.remove(&HashSet::from([1, 4]));
        assert_eq!(p.select(&[m(Equal, "job", "a")]), Vec::<u64>::new());
        assert_eq!(p.values("job"), vec!["b"]);
    }
}
