//! An in-memory storage for tests of code that sits above the contracts (PromQL, rules,
//! scraping). Simple rather than fast: a sorted map of series under one lock.

use std::collections::BTreeMap;

use kiln_model::{Labels, Matcher, Timestamp};
use parking_lot::RwLock;

use crate::query::{
    VecSeries, VecSeriesSet, labels_match, sorted_label_names, sorted_label_values,
};
use crate::{
    Appendable, Appender, Querier, Queryable, SampleValue, SelectHints, SeriesRef, SeriesSet,
    StorageError,
};

/// Series in a sorted map; samples appended in time order per series.
#[derive(Default)]
pub struct MemStorage {
    series: RwLock<BTreeMap<Labels, VecSeries>>,
}

impl MemStorage {
    pub fn new() -> Self {
        MemStorage::default()
    }
}

struct MemAppender<'s> {
    storage: &'s MemStorage,
    pending: Vec<(Labels, Timestamp, f64)>,
}

impl Appender for MemAppender<'_> {
    fn append(
        &mut self,
        _series_ref: SeriesRef,
        labels: &Labels,
        t: Timestamp,
        v: SampleValue,
    ) -> Result<SeriesRef, StorageError> {
        if labels.is_empty() {
            return Err(StorageError::InvalidLabels {
                labels: labels.clone(),
                reason: "empty label set",
            });
        }
        let SampleValue::Float(v) = v;
        if let Some(s) = self.storage.series.read().get(labels)
            && let Some(&last) = s.ts.last()
        {
            if t < last {
                return Err(StorageError::OutOfOrderSample {
                    labels: labels.clone(),
                    t,
                });
            }
            if t == last && s.vals.last().map(|x| x.to_bits()) != Some(v.to_bits()) {
                return Err(StorageError::DuplicateSampleForTimestamp {
                    labels: labels.clone(),
                    t,
                });
            }
        }
        self.pending.push((labels.clone(), t, v));
        Ok(0)
    }

    fn commit(&mut self) -> Result<(), StorageError> {
        let mut map = self.storage.series.write();
        for (labels, t, v) in self.pending.drain(..) {
            let s = map.entry(labels.clone()).or_insert_with(|| VecSeries {
                labels,
                ts: Vec::new(),
                vals: Vec::new(),
            });
            if s.ts.last().is_some_and(|&last| t <= last) {
                continue;
            }
            s.ts.push(t);
            s.vals.push(v);
        }
        Ok(())
    }

    fn rollback(&mut self) -> Result<(), StorageError> {
        self.pending.clear();
        Ok(())
    }
}

impl Appendable for MemStorage {
    fn appender(&self) -> Box<dyn Appender + '_> {
        Box::new(MemAppender {
            storage: self,
            pending: Vec::new(),
        })
    }
}

struct MemQuerier<'s> {
    storage: &'s MemStorage,
    mint: Timestamp,
    maxt: Timestamp,
}

impl MemQuerier<'_> {
    fn matching(&self, matchers: &[Matcher]) -> Vec<VecSeries> {
        let map = self.storage.series.read();
        map.values()
            .filter(|s| labels_match(&s.labels, matchers))
            .filter_map(|s| {
                let lo = s.ts.partition_point(|&t| t < self.mint);
                let hi = s.ts.partition_point(|&t| t <= self.maxt);
                (lo < hi).then(|| VecSeries {
                    labels: s.labels.clone(),
                    ts: s.ts[lo..hi].to_vec(),
                    vals: s.vals[lo..hi].to_vec(),
                })
            })
            .collect()
    }
}

impl Querier for MemQuerier<'_> {
    fn select<'a>(
        &'a self,
        _sorted: bool,
        _hints: Option<&SelectHints>,
        matchers: &[Matcher],
    ) -> Box<dyn SeriesSet<'a> + 'a> {
        Box::new(VecSeriesSet::new(self.matching(matchers), Vec::new()))
    }

    fn label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
    ) -> Result<(Vec<String>, Vec<String>), StorageError> {
        let series = self.matching(matchers);
        Ok((
            sorted_label_values(series.iter().map(|s| &s.labels), name),
            Vec::new(),
        ))
    }

    fn label_names(
        &self,
        matchers: &[Matcher],
    ) -> Result<(Vec<String>, Vec<String>), StorageError> {
        let series = self.matching(matchers);
        Ok((
            sorted_label_names(series.iter().map(|s| &s.labels)),
            Vec::new(),
        ))
    }
}

impl Queryable for MemStorage {
    fn querier(
        &self,
        mint: Timestamp,
        maxt: Timestamp,
    ) -> Result<Box<dyn Querier + '_>, StorageError> {
        Ok(Box::new(MemQuerier {
            storage: self,
            mint,
            maxt,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ValueKind;

    #[test]
    fn append_commit_query() {
        let st = MemStorage::new();
        let up = Labels::from_pairs(&[("__name__", "up"), ("job", "a")]);
        let mut app = st.appender();
        app.append(0, &up, 10, SampleValue::Float(1.0))
            .expect("append");
        app.append(0, &up, 20, SampleValue::Float(2.0))
            .expect("append");
        {
            let q = st.querier(0, 100).expect("querier");
            assert!(
                q.select(true, None, &[]).next().is_none(),
                "uncommitted samples are invisible"
            );
        }
        app.commit().expect("commit");
        let err = app
            .append(0, &up, 5, SampleValue::Float(0.0))
            .expect_err("out of order");
        assert!(err.to_string().starts_with("out of order sample"), "{err}");

        let q = st.querier(15, 100).expect("querier");
        let mut set = q.select(true, None, &[Matcher::equal("job", "a")]);
        let s = set.next().expect("one series");
        let mut it = s.iterator();
        assert_eq!(it.next(), ValueKind::Float);
        assert_eq!(it.at(), (20, 2.0));
        assert_eq!(it.next(), ValueKind::None);
        assert_eq!(
            q.label_values("job", &[]).expect("values").0,
            vec!["a".to_string()]
        );
    }
}
