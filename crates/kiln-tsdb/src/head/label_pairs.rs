//! The head's label pairs, each held once; a series holds its labels as the numbers of
//! its pairs.
//!
//! A packed copy of every name and value took about 200 bytes of each head series at
//! eight labels, while a head's distinct pairs are few next to its series (tens of
//! thousands against hundreds of thousands): numbers, a varint each, take a few bytes
//! a pair. Readers get whole [`Labels`] built from the pairs when they ask.
//!
//! Pairs are counted by the series that hold them; the last series' removal frees the
//! pair, and its number is used again for another. So a series' numbers mean something
//! only while it is live, and a reader must not read them after garbage collection
//! released them. The rule: a series' labels are read under the table's read lock,
//! after checking under it that the series is not `removed`; garbage collection sets
//! `removed` before it takes the write lock to release the series' pairs (see
//! [`Head::truncate_before`](super::Head::truncate_before)), so either the reader sees
//! the flag or the pairs cannot be released until it lets go of the lock.

use std::hash::BuildHasher;
use std::sync::atomic::Ordering;

use kiln_model::Labels;
use parking_lot::{RwLock, RwLockReadGuard};

use super::series::MemSeries;

/// A series' labels: the uvarint numbers of its pairs, in label (name) order.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct SeriesLabels(Box<[u8]>);

impl SeriesLabels {
    /// The numbers of its pairs, in label order.
    pub(crate) fn numbers(&self) -> impl Iterator<Item = u32> + Clone + '_ {
        let mut rest = &self.0[..];
        std::iter::from_fn(move || {
            let mut n = 0u32;
            let mut shift = 0;
            loop {
                let (&b, tail) = rest.split_first()?;
                rest = tail;
                n |= u32::from(b & 0x7f) << shift;
                if b < 0x80 {
                    return Some(n);
                }
                shift += 7;
            }
        })
    }
}

/// One pair, or a free number when `refs` is 0.
#[derive(Debug, Default)]
struct Slot {
    /// Name and value one after the other.
    text: Box<str>,
    name_len: u32,
    /// Series holding the pair.
    refs: u32,
}

impl Slot {
    fn pair(&self) -> (&str, &str) {
        self.text.split_at(self.name_len as usize)
    }
}

#[derive(Debug, Default)]
struct Table {
    slots: Vec<Slot>,
    /// Numbers of free slots, used again before the table grows.
    free: Vec<u32>,
    /// Numbers of the live slots, found by their pair's hash.
    index: hashbrown::HashTable<u32>,
}

fn pair_hash(name: &str, value: &str) -> u64 {
    foldhash::fast::FixedState::with_seed(0x6b69_6c6e_7061_6972).hash_one((name, value))
}

impl Table {
    fn find(&self, name: &str, value: &str) -> Option<u32> {
        self.index
            .find(pair_hash(name, value), |&n| {
                self.slots[n as usize].pair() == (name, value)
            })
            .copied()
    }

    /// The number of pair `(name, value)`, added with no holder when new.
    fn number(&mut self, name: &str, value: &str) -> u32 {
        if let Some(n) = self.find(name, value) {
            return n;
        }
        let slot = Slot {
            text: format!("{name}{value}").into_boxed_str(),
            name_len: name.len() as u32,
            refs: 0,
        };
        let n = match self.free.pop() {
            Some(n) => {
                self.slots[n as usize] = slot;
                n
            }
            None => {
                self.slots.push(slot);
                (self.slots.len() - 1) as u32
            }
        };
        let slots = &self.slots;
        self.index.insert_unique(pair_hash(name, value), n, |&m| {
            let (name, value) = slots[m as usize].pair();
            pair_hash(name, value)
        });
        n
    }

    fn release(&mut self, n: u32) {
        let slot = &mut self.slots[n as usize];
        slot.refs -= 1;
        if slot.refs > 0 {
            return;
        }
        let hash = {
            let (name, value) = slot.pair();
            pair_hash(name, value)
        };
        if let Ok(entry) = self.index.find_entry(hash, |&m| m == n) {
            entry.remove();
        }
        self.slots[n as usize] = Slot::default();
        self.free.push(n);
    }

    fn pairs<'a>(
        &'a self,
        labels: &'a SeriesLabels,
    ) -> impl Iterator<Item = (&'a str, &'a str)> + Clone {
        labels.numbers().map(|n| self.slots[n as usize].pair())
    }
}

/// The head's table of label pairs.
#[derive(Debug, Default)]
pub(crate) struct LabelPairs {
    table: RwLock<Table>,
}

impl LabelPairs {
    /// `labels` as numbers, each of its pairs now held once more.
    pub(crate) fn intern(&self, labels: &Labels) -> SeriesLabels {
        let mut table = self.table.write();
        let mut bytes = Vec::with_capacity(3 * labels.len());
        for l in labels.iter() {
            let n = table.number(l.name, l.value);
            table.slots[n as usize].refs += 1;
            put_uvarint(&mut bytes, n);
        }
        SeriesLabels(bytes.into_boxed_slice())
    }

    /// Interns the pairs of `pairs` (a head snapshot's table) and returns their numbers
    /// here, in the same order, none of them held yet: a restore then gives each series
    /// its numbers with [`SeriesLabels`] built by [`restored`](Self::restored), and
    /// counts the holders with [`hold`](Self::hold).
    pub(crate) fn intern_table(&self, pairs: &[(&str, &str)]) -> Vec<u32> {
        let mut table = self.table.write();
        pairs.iter().map(|&(n, v)| table.number(n, v)).collect()
    }

    /// A series' labels from numbers [`intern_table`](Self::intern_table) returned.
    pub(crate) fn restored(numbers: impl Iterator<Item = u32>) -> SeriesLabels {
        let mut bytes = Vec::new();
        for n in numbers {
            put_uvarint(&mut bytes, n);
        }
        SeriesLabels(bytes.into_boxed_slice())
    }

    /// Adds `holders[i]` holders to the pair numbered `numbers[i]`.
    pub(crate) fn hold(&self, numbers: &[u32], holders: &[u32]) {
        let mut table = self.table.write();
        for (&n, &h) in numbers.iter().zip(holders) {
            table.slots[n as usize].refs += h;
        }
        // Pairs of the snapshot no series holds (there are none in a consistent one)
        // are not kept.
        for &n in numbers {
            if table.slots[n as usize].refs == 0 && !table.slots[n as usize].text.is_empty() {
                table.slots[n as usize].refs = 1;
                table.release(n);
            }
        }
    }

    /// Lets go of the pairs of series that were removed (their `removed` flag set
    /// before this is called).
    pub(crate) fn release<'a>(&self, series: impl IntoIterator<Item = &'a MemSeries>) {
        let mut table = self.table.write();
        for s in series {
            debug_assert!(s.removed.load(Ordering::Acquire));
            for n in s.labels.numbers() {
                table.release(n);
            }
        }
    }

    /// Lets go of the pairs of numbers that [`intern`](Self::intern) returned and no
    /// series took (another thread created the series first).
    pub(crate) fn release_unused(&self, labels: &SeriesLabels) {
        let mut table = self.table.write();
        for n in labels.numbers() {
            table.release(n);
        }
    }

    /// Read access to the pairs, for reading the labels of many series in one go.
    pub(crate) fn read(&self) -> PairsReader<'_> {
        PairsReader(self.table.read())
    }

    /// The labels of `series`, `None` once it has been removed.
    pub(crate) fn labels_of(&self, series: &MemSeries) -> Option<Labels> {
        self.read().labels(series)
    }

    /// How the labels of `a` and `b` compare ([`Labels`]' order) without building
    /// them; a removed series sorts first.
    pub(crate) fn compare(&self, a: &MemSeries, b: &MemSeries) -> std::cmp::Ordering {
        let table = self.table.read();
        let live = |s: &MemSeries| !s.removed.load(Ordering::Acquire);
        match (live(a), live(b)) {
            (true, true) => table.pairs(&a.labels).cmp(table.pairs(&b.labels)),
            (x, y) => x.cmp(&y),
        }
    }

    /// Every pair held, as `(name, value, number)`, in no particular order.
    pub(crate) fn all(&self) -> Vec<(String, String, u32)> {
        let table = self.table.read();
        table
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.refs > 0)
            .map(|(n, s)| {
                let (name, value) = s.pair();
                (name.to_string(), value.to_string(), n as u32)
            })
            .collect()
    }

    /// Distinct pairs held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        let table = self.table.read();
        table.slots.len() - table.free.len()
    }
}

/// The pairs under the table's read lock. Hold it briefly: series creation waits for it.
pub(crate) struct PairsReader<'a>(RwLockReadGuard<'a, Table>);

impl PairsReader<'_> {
    /// The labels of `series`, `None` once it has been removed (its numbers may then
    /// name other pairs).
    pub(crate) fn labels(&self, series: &MemSeries) -> Option<Labels> {
        if series.removed.load(Ordering::Acquire) {
            return None;
        }
        // Built from pairs of label sets that were valid, so always valid.
        Labels::from_sorted_pairs(self.0.pairs(&series.labels))
    }

    /// Whether `series` has exactly `labels`; a removed series has none.
    pub(crate) fn equals(&self, series: &MemSeries, labels: &Labels) -> bool {
        if series.removed.load(Ordering::Acquire) {
            return false;
        }
        let mut mine = self.0.pairs(&series.labels);
        let mut theirs = labels.iter_bytes();
        loop {
            match (mine.next(), theirs.next()) {
                (None, None) => return true,
                (Some((n, v)), Some((m, w))) if n.as_bytes() == m && v.as_bytes() == w => {}
                _ => return false,
            }
        }
    }
}

fn put_uvarint(buf: &mut Vec<u8>, mut n: u32) {
    while n >= 0x80 {
        buf.push((n as u8) | 0x80);
        n >>= 7;
    }
    buf.push(n as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(pairs: &LabelPairs, id: u64, labels: &Labels) -> MemSeries {
        MemSeries::new(id, labels.hash(), pairs.intern(labels))
    }

    #[test]
    fn pairs_are_held_once_and_freed_with_their_last_series() {
        let pairs = LabelPairs::default();
        let a = Labels::from_pairs(&[("__name__", "up"), ("job", "a")]);
        let b = Labels::from_pairs(&[("__name__", "up"), ("job", "b")]);
        let sa = series(&pairs, 1, &a);
        let sb = series(&pairs, 2, &b);
        assert_eq!(pairs.len(), 3, "__name__=up once");
        assert_eq!(pairs.labels_of(&sa), Some(a.clone()));
        assert!(pairs.read().equals(&sb, &b) && !pairs.read().equals(&sb, &a));
        sa.removed.store(true, Ordering::Release);
        assert_eq!(pairs.labels_of(&sa), None, "a removed series has no labels");
        pairs.release([&sa]);
        assert_eq!(pairs.len(), 2, "job=a went with its only series");
        // Its number is used again, and the live series still reads right.
        let c = Labels::from_pairs(&[("__name__", "up"), ("zone", "eu")]);
        let sc = series(&pairs, 3, &c);
        assert_eq!(pairs.len(), 3);
        assert_eq!(pairs.labels_of(&sb), Some(b));
        assert_eq!(pairs.labels_of(&sc), Some(c));
        assert_eq!(sc.labels.numbers().count(), 2);
    }

    #[test]
    fn garbage_collection_frees_the_pairs_of_removed_series_only() {
        use kiln_storage::{Appender, SampleValue};
        let head = super::super::Head::new(Default::default());
        let old = Labels::from_pairs(&[("__name__", "up"), ("job", "old")]);
        let new = Labels::from_pairs(&[("__name__", "up"), ("job", "new")]);
        let mut app = head.appender();
        let old_ref = app
            .append(0, &old, 1_000, SampleValue::Float(1.0))
            .expect("old");
        app.append(0, &new, 10_000_000, SampleValue::Float(2.0))
            .expect("new");
        app.commit().expect("commit");
        let gone = head.series_by_id(old_ref).expect("old series");
        assert_eq!(head.pairs.len(), 3);
        let dead = head.truncate_before(5_000_000);
        assert_eq!(dead.into_iter().collect::<Vec<_>>(), vec![old_ref]);
        assert_eq!(head.pairs.len(), 2, "job=old is gone, __name__=up stays");
        assert_eq!(head.pairs.labels_of(&gone), None);
        // A series made again with the old labels gets them back whole.
        let mut app = head.appender();
        let again = app
            .append(0, &old, 10_000_000, SampleValue::Float(3.0))
            .expect("again");
        app.commit().expect("commit");
        let again = head.series_by_id(again).expect("series");
        assert_eq!(head.pairs.labels_of(&again), Some(old));
        assert_eq!(head.pairs.len(), 3);
    }

    #[test]
    fn a_restore_counts_its_holders_and_drops_pairs_nobody_holds() {
        let pairs = LabelPairs::default();
        let numbers = pairs.intern_table(&[("a", "x"), ("a", "y"), ("b", "z")]);
        let s = MemSeries::new(
            1,
            0,
            LabelPairs::restored([numbers[0], numbers[2]].into_iter()),
        );
        pairs.hold(&numbers, &[1, 0, 1]);
        assert_eq!(pairs.len(), 2, "a=y has no series");
        assert_eq!(
            pairs.labels_of(&s),
            Some(Labels::from_pairs(&[("a", "x"), ("b", "z")]))
        );
        s.removed.store(true, Ordering::Release);
        pairs.release([&s]);
        assert_eq!(pairs.len(), 0);
    }
}
