//! Merging several queriers into one.
//!
//! The TSDB answers a query from its head and every block overlapping the range; a global
//! view answers from many stores. Each source returns its series sorted by labels, so the
//! merge is a k-way merge on labels; series with equal labels from different sources are
//! combined into one whose samples are merged by timestamp. When two sources hold a
//! sample at the same timestamp, the first source (in the order given) wins, which is
//! what overlapping blocks and HA replicas need.

use kiln_model::{Labels, Matcher, Timestamp};

use crate::StorageError;
use crate::query::{Querier, SampleIterator, SelectHints, Series, SeriesSet, ValueKind};

/// A querier over several queriers. See the module docs.
pub struct MergeQuerier<'q> {
    queriers: Vec<Box<dyn Querier + 'q>>,
}

impl<'q> MergeQuerier<'q> {
    pub fn new(queriers: Vec<Box<dyn Querier + 'q>>) -> Self {
        MergeQuerier { queriers }
    }
}

impl Querier for MergeQuerier<'_> {
    fn select<'a>(
        &'a self,
        sorted: bool,
        hints: Option<&SelectHints>,
        matchers: &[Matcher],
    ) -> Box<dyn SeriesSet<'a> + 'a> {
        if self.queriers.len() == 1 {
            return self.queriers[0].select(sorted, hints, matchers);
        }
        // Merging needs sorted inputs whatever the caller asked for.
        let sets = self
            .queriers
            .iter()
            .map(|q| q.select(true, hints, matchers))
            .collect();
        Box::new(MergeSeriesSet::new(sets))
    }

    fn label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
    ) -> Result<(Vec<String>, Vec<String>), StorageError> {
        let mut values = Vec::new();
        let mut warnings = Vec::new();
        for q in &self.queriers {
            let (v, w) = q.label_values(name, matchers)?;
            values.extend(v);
            warnings.extend(w);
        }
        values.sort_unstable();
        values.dedup();
        Ok((values, warnings))
    }

    fn label_names(
        &self,
        matchers: &[Matcher],
    ) -> Result<(Vec<String>, Vec<String>), StorageError> {
        let mut names = Vec::new();
        let mut warnings = Vec::new();
        for q in &self.queriers {
            let (n, w) = q.label_names(matchers)?;
            names.extend(n);
            warnings.extend(w);
        }
        names.sort_unstable();
        names.dedup();
        Ok((names, warnings))
    }
}

/// K-way merge of sorted series sets.
pub struct MergeSeriesSet<'a> {
    sets: Vec<Box<dyn SeriesSet<'a> + 'a>>,
    /// The next series of each set, `None` once that set is exhausted.
    heads: Vec<Option<Box<dyn Series + 'a>>>,
    started: bool,
}

impl<'a> MergeSeriesSet<'a> {
    pub fn new(sets: Vec<Box<dyn SeriesSet<'a> + 'a>>) -> Self {
        let heads = sets.iter().map(|_| None).collect();
        MergeSeriesSet {
            sets,
            heads,
            started: false,
        }
    }
}

impl<'a> SeriesSet<'a> for MergeSeriesSet<'a> {
    fn next(&mut self) -> Option<Box<dyn Series + 'a>> {
        if !self.started {
            self.started = true;
            for (i, s) in self.sets.iter_mut().enumerate() {
                self.heads[i] = s.next();
            }
        }
        let min = self
            .heads
            .iter()
            .flatten()
            .map(|s| s.labels())
            .min()
            .cloned()?;
        let mut parts = Vec::new();
        for (i, head) in self.heads.iter_mut().enumerate() {
            if head.as_ref().is_some_and(|s| *s.labels() == min) {
                if let Some(s) = head.take() {
                    parts.push(s);
                }
                *head = self.sets[i].next();
            }
        }
        if parts.len() == 1 {
            return parts.pop();
        }
        Some(Box::new(MergedSeries { labels: min, parts }))
    }

    fn err(&self) -> Option<&StorageError> {
        self.sets.iter().find_map(|s| s.err())
    }

    fn warnings(&self) -> Vec<String> {
        self.sets.iter().flat_map(|s| s.warnings()).collect()
    }
}

/// Series with equal labels from several sources.
struct MergedSeries<'a> {
    labels: Labels,
    parts: Vec<Box<dyn Series + 'a>>,
}

impl Series for MergedSeries<'_> {
    fn labels(&self) -> &Labels {
        &self.labels
    }

    fn iterator(&self) -> Box<dyn SampleIterator + '_> {
        Box::new(MergeSampleIterator::new(
            self.parts.iter().map(|p| p.iterator()).collect(),
        ))
    }
}

/// Merges sample cursors by timestamp; on equal timestamps the earliest cursor wins.
pub struct MergeSampleIterator<'a> {
    its: Vec<Box<dyn SampleIterator + 'a>>,
    /// Current sample of each cursor, `None` when exhausted.
    heads: Vec<Option<(Timestamp, f64)>>,
    cur: Option<(Timestamp, f64)>,
    started: bool,
}

impl<'a> MergeSampleIterator<'a> {
    pub fn new(its: Vec<Box<dyn SampleIterator + 'a>>) -> Self {
        let heads = its.iter().map(|_| None).collect();
        MergeSampleIterator {
            its,
            heads,
            cur: None,
            started: false,
        }
    }

    fn pick(&mut self) -> ValueKind {
        self.cur = None;
        for h in self.heads.iter().flatten() {
            if self.cur.is_none_or(|(t, _)| h.0 < t) {
                self.cur = Some(*h);
            }
        }
        if self.cur.is_some() {
            ValueKind::Float
        } else {
            ValueKind::None
        }
    }
}

fn advance(it: &mut dyn SampleIterator, kind: ValueKind) -> Option<(Timestamp, f64)> {
    match kind {
        ValueKind::Float => Some(it.at()),
        ValueKind::None => None,
    }
}

impl SampleIterator for MergeSampleIterator<'_> {
    fn next(&mut self) -> ValueKind {
        if !self.started {
            self.started = true;
            for (i, it) in self.its.iter_mut().enumerate() {
                let k = it.next();
                self.heads[i] = advance(it.as_mut(), k);
            }
            return self.pick();
        }
        let Some((cur_t, _)) = self.cur else {
            return ValueKind::None;
        };
        for (i, it) in self.its.iter_mut().enumerate() {
            if self.heads[i].is_some_and(|(t, _)| t <= cur_t) {
                let k = it.next();
                self.heads[i] = advance(it.as_mut(), k);
            }
        }
        self.pick()
    }

    fn seek(&mut self, t: Timestamp) -> ValueKind {
        if self.started && self.cur.is_some_and(|(ct, _)| ct >= t) {
            return ValueKind::Float;
        }
        let first = !self.started;
        self.started = true;
        for (i, it) in self.its.iter_mut().enumerate() {
            if first || self.heads[i].is_some_and(|(ht, _)| ht < t) {
                let k = it.seek(t);
                self.heads[i] = advance(it.as_mut(), k);
            }
        }
        self.pick()
    }

    fn at(&self) -> (Timestamp, f64) {
        self.cur.unwrap_or((0, 0.0))
    }

    fn err(&self) -> Option<&StorageError> {
        self.its.iter().find_map(|i| i.err())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::{VecSeries, VecSeriesSet};

    fn series(name: &str, samples: &[(i64, f64)]) -> VecSeries {
        VecSeries {
            labels: Labels::from_pairs(&[("__name__", name)]),
            ts: samples.iter().map(|s| s.0).collect(),
            vals: samples.iter().map(|s| s.1).collect(),
        }
    }

    fn collect(s: &dyn Series) -> Vec<(i64, f64)> {
        let mut it = s.iterator();
        let mut out = Vec::new();
        while it.next() == ValueKind::Float {
            out.push(it.at());
        }
        out
    }

    #[test]
    fn merges_sorted_sets_and_overlapping_series() {
        let a = VecSeriesSet::new(
            vec![series("a", &[(1, 1.0), (3, 3.0)]), series("c", &[(1, 1.0)])],
            vec![],
        );
        let b = VecSeriesSet::new(
            vec![
                series("a", &[(2, 20.0), (3, 30.0), (4, 40.0)]),
                series("b", &[(5, 5.0)]),
            ],
            vec!["w".into()],
        );
        let mut m = MergeSeriesSet::new(vec![Box::new(a), Box::new(b)]);
        let s = m.next().expect("a");
        assert_eq!(s.labels().metric_name(), Some("a"));
        assert_eq!(
            collect(s.as_ref()),
            vec![(1, 1.0), (2, 20.0), (3, 3.0), (4, 40.0)]
        );
        assert_eq!(m.next().expect("b").labels().metric_name(), Some("b"));
        assert_eq!(m.next().expect("c").labels().metric_name(), Some("c"));
        assert!(m.next().is_none());
        assert_eq!(m.warnings(), vec!["w".to_string()]);
    }

    #[test]
    fn merged_seek() {
        let a = series("a", &[(1, 1.0), (5, 5.0), (9, 9.0)]);
        let b = series("a", &[(2, 2.0), (6, 6.0)]);
        let m = MergedSeries {
            labels: a.labels.clone(),
            parts: vec![Box::new(a), Box::new(b)],
        };
        let mut it = m.iterator();
        assert_eq!(it.seek(3), ValueKind::Float);
        assert_eq!(it.at(), (5, 5.0));
        assert_eq!(it.next(), ValueKind::Float);
        assert_eq!(it.at(), (6, 6.0));
        assert_eq!(it.seek(2), ValueKind::Float);
        assert_eq!(it.at(), (6, 6.0));
        assert_eq!(it.next(), ValueKind::Float);
        assert_eq!(it.at(), (9, 9.0));
        assert_eq!(it.next(), ValueKind::None);
    }
}
