//! Sample cursors over encoded chunks, shared by the head and block queriers.

use kiln_chunkenc::XorIterator;
use kiln_model::{Labels, Timestamp};
use kiln_storage::{SampleIterator, Series, StorageError, ValueKind};

use crate::block::tombstones::Interval;

/// One chunk of a series as a querier sees it: bounds and XOR data.
#[derive(Debug, Clone)]
pub(crate) struct ChunkView<D> {
    pub(crate) min_time: Timestamp,
    pub(crate) max_time: Timestamp,
    pub(crate) data: D,
}

/// A series whose samples live in a list of XOR chunks, clipped to `[mint, maxt]` and
/// with deleted intervals (tombstones) hidden.
pub(crate) struct ChunkedSeries<D> {
    pub(crate) labels: Labels,
    pub(crate) chunks: Vec<ChunkView<D>>,
    pub(crate) mint: Timestamp,
    pub(crate) maxt: Timestamp,
    pub(crate) deleted: Vec<Interval>,
}

impl<D: AsRef<[u8]> + Send + Sync> Series for ChunkedSeries<D> {
    fn labels(&self) -> &Labels {
        &self.labels
    }

    fn iterator(&self) -> Box<dyn SampleIterator + '_> {
        Box::new(ChunkedIterator {
            series: self,
            idx: 0,
            it: None,
            cur: (0, 0.0),
            err: None,
        })
    }
}

/// Walks the chunks of a [`ChunkedSeries`] in order. Decoding allocates nothing.
pub(crate) struct ChunkedIterator<'a, D> {
    series: &'a ChunkedSeries<D>,
    /// Index of the next chunk to open.
    idx: usize,
    it: Option<XorIterator<'a>>,
    cur: (Timestamp, f64),
    err: Option<StorageError>,
}

impl<'a, D: AsRef<[u8]>> ChunkedIterator<'a, D> {
    fn visible(&self, t: Timestamp) -> bool {
        t >= self.series.mint
            && t <= self.series.maxt
            && !self
                .series
                .deleted
                .iter()
                .any(|iv| t >= iv.mint && t <= iv.maxt)
    }

    /// Advances the open chunk, opening the next ones as needed, until a visible sample
    /// with `t >= at_least` is found.
    fn advance(&mut self, mut at_least: Option<Timestamp>) -> ValueKind {
        loop {
            if let Some(it) = self.it.as_mut() {
                let found = match at_least {
                    Some(t) => it.seek(t),
                    None => it.next(),
                };
                if found {
                    let (t, v) = it.at();
                    if t > self.series.maxt {
                        self.it = None;
                        self.idx = self.series.chunks.len();
                        return ValueKind::None;
                    }
                    if self.visible(t) {
                        self.cur = (t, v);
                        return ValueKind::Float;
                    }
                    // Hidden (deleted or before mint): step on through this chunk.
                    at_least = None;
                    continue;
                }
                if let Some(e) = it.err() {
                    self.err = Some(StorageError::backend(
                        kiln_storage::ErrorKind::Internal,
                        format!("decoding chunk of series {}", self.series.labels),
                        e.clone(),
                    ));
                    self.idx = self.series.chunks.len();
                    self.it = None;
                    return ValueKind::None;
                }
                self.it = None;
            }
            // Open the next chunk that can hold a wanted sample.
            let floor = at_least.unwrap_or(Timestamp::MIN).max(self.series.mint);
            while self.idx < self.series.chunks.len()
                && self.series.chunks[self.idx].max_time < floor
            {
                self.idx += 1;
            }
            let Some(c) = self.series.chunks.get(self.idx) else {
                return ValueKind::None;
            };
            if c.min_time > self.series.maxt {
                self.idx = self.series.chunks.len();
                return ValueKind::None;
            }
            self.idx += 1;
            self.it = Some(XorIterator::new(c.data.as_ref()));
        }
    }
}

impl<D: AsRef<[u8]>> SampleIterator for ChunkedIterator<'_, D> {
    fn next(&mut self) -> ValueKind {
        if self.err.is_some() {
            return ValueKind::None;
        }
        let floor = if self.it.is_none() && self.idx == 0 {
            Some(self.series.mint)
        } else {
            None
        };
        self.advance(floor)
    }

    fn seek(&mut self, t: Timestamp) -> ValueKind {
        if self.err.is_some() {
            return ValueKind::None;
        }
        if self.it.is_some() && self.cur.0 >= t {
            return ValueKind::Float;
        }
        self.advance(Some(t.max(self.series.mint)))
    }

    fn at(&self) -> (Timestamp, f64) {
        self.cur
    }

    fn err(&self) -> Option<&StorageError> {
        self.err.as_ref()
    }

    /// Chunks wholly inside `[mint, maxt]` that no deleted interval touches are decoded
    /// straight into the vectors; others go sample by sample through `next`.
    fn read_floats(&mut self, ts: &mut Vec<Timestamp>, vals: &mut Vec<f64>) -> ValueKind {
        let s = self.series;
        loop {
            if self.err.is_some() {
                return ValueKind::None;
            }
            if self.it.is_none()
                && let Some(c) = s.chunks.get(self.idx)
                && c.min_time >= s.mint
                && c.max_time <= s.maxt
                && !s
                    .deleted
                    .iter()
                    .any(|iv| iv.mint <= c.max_time && iv.maxt >= c.min_time)
            {
                self.idx += 1;
                let data = c.data.as_ref();
                // Room for the chunk's samples at once (a bad header is reported by
                // the iterator below).
                if let Ok(n) = kiln_chunkenc::num_samples(data) {
                    ts.reserve(usize::from(n));
                    vals.reserve(usize::from(n));
                }
                let mut it = XorIterator::new(data);
                while it.next() {
                    let (t, v) = it.at();
                    // The bounds are the chunk's as recorded; its data is checked too.
                    if t > s.maxt {
                        self.idx = s.chunks.len();
                        return ValueKind::None;
                    }
                    ts.push(t);
                    vals.push(v);
                }
                if let Some(e) = it.err() {
                    self.err = Some(StorageError::backend(
                        kiln_storage::ErrorKind::Internal,
                        format!("decoding chunk of series {}", s.labels),
                        e.clone(),
                    ));
                    return ValueKind::None;
                }
                continue;
            }
            match self.next() {
                ValueKind::Float => {
                    ts.push(self.cur.0);
                    vals.push(self.cur.1);
                }
                other => return other,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_chunkenc::XorEncoder;

    fn chunk(samples: &[(i64, f64)]) -> ChunkView<Vec<u8>> {
        let mut e = XorEncoder::new();
        for &(t, v) in samples {
            e.append(t, v);
        }
        ChunkView {
            min_time: samples[0].0,
            max_time: samples[samples.len() - 1].0,
            data: e.into_bytes(),
        }
    }

    fn collect(s: &ChunkedSeries<Vec<u8>>) -> Vec<i64> {
        let mut it = s.iterator();
        let mut out = Vec::new();
        while it.next() == ValueKind::Float {
            out.push(it.at().0);
        }
        out
    }

    #[test]
    fn clips_range_and_hides_deleted() {
        let mut s = ChunkedSeries {
            labels: Labels::from_pairs(&[("__name__", "x")]),
            chunks: vec![
                chunk(&[(1, 1.0), (2, 2.0), (3, 3.0)]),
                chunk(&[(4, 4.0), (5, 5.0), (6, 6.0)]),
            ],
            mint: 2,
            maxt: 5,
            deleted: vec![],
        };
        assert_eq!(collect(&s), vec![2, 3, 4, 5]);
        s.deleted = vec![Interval { mint: 3, maxt: 4 }];
        assert_eq!(collect(&s), vec![2, 5]);
        let mut it = s.iterator();
        assert_eq!(it.seek(4), ValueKind::Float);
        assert_eq!(it.at().0, 5);
        assert_eq!(it.next(), ValueKind::None);
    }

    /// Bulk reading gives what `next` gives: whole chunks where they are wholly
    /// visible, sample by sample where clipped or deleted.
    #[test]
    fn read_floats_matches_next() {
        let chunks = || {
            vec![
                chunk(&[(1, 1.0), (2, 2.0), (3, 3.0)]),
                chunk(&[(4, 4.0), (5, 5.0), (6, 6.0)]),
                chunk(&[(7, 7.0), (8, 8.0), (9, 9.0)]),
            ]
        };
        for (mint, maxt, deleted) in [
            (0, 100, vec![]),
            (2, 8, vec![]),
            (0, 100, vec![Interval { mint: 5, maxt: 5 }]),
            (4, 6, vec![Interval { mint: 7, maxt: 9 }]),
            (10, 20, vec![]),
        ] {
            let s = ChunkedSeries {
                labels: Labels::from_pairs(&[("__name__", "x")]),
                chunks: chunks(),
                mint,
                maxt,
                deleted,
            };
            let (mut ts, mut vals) = (Vec::new(), Vec::new());
            assert_eq!(
                s.iterator().read_floats(&mut ts, &mut vals),
                ValueKind::None
            );
            assert_eq!(ts, collect(&s), "[{mint}, {maxt}]");
            assert!(ts.iter().zip(&vals).all(|(&t, &v)| t as f64 == v));
        }
    }

    #[test]
    fn seek_across_chunks() {
        let s = ChunkedSeries {
            labels: Labels::from_pairs(&[("__name__", "x")]),
            chunks: vec![
                chunk(&[(1, 1.0), (2, 2.0)]),
                chunk(&[(10, 10.0), (20, 20.0)]),
            ],
            mint: i64::MIN,
            maxt: i64::MAX,
            deleted: vec![],
        };
        let mut it = s.iterator();
        assert_eq!(it.seek(5), ValueKind::Float);
        assert_eq!(it.at(), (10, 10.0));
        assert_eq!(it.seek(3), ValueKind::Float);
        assert_eq!(it.at(), (10, 10.0));
        assert_eq!(it.next(), ValueKind::Float);
        assert_eq!(it.at(), (20, 20.0));
        assert_eq!(it.next(), ValueKind::None);
    }
}
