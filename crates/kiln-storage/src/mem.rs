//! An in-memory storage for tests of code that sits above the contracts (PromQL, rules,
//! scraping, remote read). Simple rather than fast: a sorted map of series under one lock;
//! its chunk querier encodes the samples in range as XOR chunks of 120 samples.

use std::collections::BTreeMap;

use kiln_chunkenc::{Encoding, SAMPLES_PER_CHUNK, XorEncoder};
use kiln_model::{Labels, Matcher, Timestamp};
use parking_lot::RwLock;

use crate::query::{
    VecSeries, VecSeriesSet, labels_match, sorted_label_names, sorted_label_values,
};
use crate::{
    Appendable, Appender, ChunkQuerier, ChunkQueryable, ChunkSeries, ChunkSeriesSet, EncodedChunk,
    Querier, Queryable, SampleValue, SelectHints, SeriesRef, SeriesSet, StorageError,
    VecChunkSeriesSet,
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

/// A series' samples as XOR chunks of up to [`SAMPLES_PER_CHUNK`] samples.
fn encode_chunks(s: &VecSeries) -> Vec<EncodedChunk> {
    s.ts.chunks(SAMPLES_PER_CHUNK)
        .zip(s.vals.chunks(SAMPLES_PER_CHUNK))
        .map(|(ts, vals)| {
            let mut enc = XorEncoder::new();
            for (&t, &v) in ts.iter().zip(vals) {
                enc.append(t, v);
            }
            EncodedChunk {
                min_time: ts[0],
                max_time: ts[ts.len() - 1],
                encoding: Encoding::Xor.as_u8(),
                data: enc.into_bytes(),
            }
        })
        .collect()
}

impl ChunkQuerier for MemQuerier<'_> {
    fn select_chunks<'a>(
        &'a self,
        _sorted: bool,
        _hints: Option<&SelectHints>,
        matchers: &[Matcher],
    ) -> Box<dyn ChunkSeriesSet + 'a> {
        let series = self
            .matching(matchers)
            .iter()
            .map(|s| ChunkSeries {
                labels: s.labels.clone(),
                chunks: encode_chunks(s),
            })
            .collect();
        Box::new(VecChunkSeriesSet::new(series, Vec::new()))
    }

    fn label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
    ) -> Result<(Vec<String>, Vec<String>), StorageError> {
        Querier::label_values(self, name, matchers)
    }

    fn label_names(
        &self,
        matchers: &[Matcher],
    ) -> Result<(Vec<String>, Vec<String>), StorageError> {
        Querier::label_names(self, matchers)
    }
}

impl ChunkQueryable for MemStorage {
    fn chunk_querier(
        &self,
        mint: Timestamp,
        maxt: Timestamp,
    ) -> Result<Box<dyn ChunkQuerier + '_>, StorageError> {
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

    #[test]
    fn chunk_querier_encodes_the_samples_in_range() {
        let st = MemStorage::new();
        let a = Labels::from_pairs(&[("__name__", "a")]);
        let b = Labels::from_pairs(&[("__name__", "b")]);
        let mut app = st.appender();
        for i in 0..300i64 {
            app.append(0, &b, i * 10, SampleValue::Float(i as f64))
                .expect("append");
            app.append(0, &a, i * 10, SampleValue::Float(-(i as f64)))
                .expect("append");
        }
        app.commit().expect("commit");

        let q = st.chunk_querier(100, 2_500).expect("chunk querier");
        let mut set = q.select_chunks(true, None, &[]);
        let first = set.next().expect("series a");
        let second = set.next().expect("series b");
        assert!(set.next().is_none() && set.err().is_none());
        assert_eq!((first.labels, second.labels.clone()), (a, b));
        // 241 samples in [100, 2500]: chunks of 120, 120 and 1.
        let sizes: Vec<u16> = second
            .chunks
            .iter()
            .map(|c| kiln_chunkenc::num_samples(&c.data).expect("chunk header"))
            .collect();
        assert_eq!(sizes, vec![120, 120, 1]);
        assert_eq!(
            (second.chunks[0].min_time, second.chunks[2].max_time),
            (100, 2_500)
        );
        let mut it = kiln_chunkenc::XorIterator::new(&second.chunks[1].data);
        assert!(it.next());
        assert_eq!(it.at(), (1_300, 130.0));
        assert_eq!(
            q.label_names(&[]).expect("names").0,
            vec!["__name__".to_string()]
        );
    }
}
