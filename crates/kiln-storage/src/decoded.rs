//! Samples from chunks: a [`Queryable`] over any [`ChunkQueryable`], so that a source
//! that only hands out encoded chunks (a bucket, a StoreAPI endpoint) answers the PromQL
//! engine and the HTTP API too.
//!
//! Series come as the chunk source streams them; each series' chunks are decoded only as
//! its iterator is read, one chunk at a time, and clipped to the querier's range (chunks
//! come whole from their source). A sample at or before the previous one of the series
//! is skipped, so that chunks that overlap despite the contract cannot make time go
//! backwards. Downsampled (aggregate) chunks read as the aggregate the selector's
//! enclosing function wants (see [`crate::downsampled`]). Chunks in other encodings
//! (native histograms) are left out, with a warning.

use kiln_chunkenc::{Encoding, XorIterator};
use kiln_model::{Labels, Matcher, Timestamp};

use crate::downsampled::{AggregateRead, read_aggregates};
use crate::{
    ChunkQuerier, ChunkQueryable, ChunkSeriesSet, EncodedChunk, ErrorKind, Querier, Queryable,
    SampleIterator, SelectHints, Series, SeriesSet, StorageError, ValueKind,
};

/// A [`Queryable`] reading a [`ChunkQueryable`]. See the module docs.
pub struct DecodedChunks<Q>(pub Q);

impl<Q: ChunkQueryable> Queryable for DecodedChunks<Q> {
    fn querier(
        &self,
        mint: Timestamp,
        maxt: Timestamp,
    ) -> Result<Box<dyn Querier + '_>, StorageError> {
        Ok(Box::new(DecodedQuerier {
            inner: self.0.chunk_querier(mint, maxt)?,
            mint,
            maxt,
        }))
    }
}

struct DecodedQuerier<'q> {
    inner: Box<dyn ChunkQuerier + 'q>,
    mint: Timestamp,
    maxt: Timestamp,
}

impl Querier for DecodedQuerier<'_> {
    fn select<'a>(
        &'a self,
        sorted: bool,
        hints: Option<&SelectHints>,
        matchers: &[Matcher],
    ) -> Box<dyn SeriesSet<'a> + 'a> {
        Box::new(DecodedSeriesSet {
            inner: self.inner.select_chunks(sorted, hints, matchers),
            mint: self.mint,
            maxt: self.maxt,
            skipped_chunks: 0,
            aggregate: AggregateRead::for_function(hints.and_then(|h| h.func.as_deref())),
            err: None,
        })
    }

    fn label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
    ) -> Result<(Vec<String>, Vec<String>), StorageError> {
        self.inner.label_values(name, matchers)
    }

    fn label_names(
        &self,
        matchers: &[Matcher],
    ) -> Result<(Vec<String>, Vec<String>), StorageError> {
        self.inner.label_names(matchers)
    }
}

struct DecodedSeriesSet<'a> {
    inner: Box<dyn ChunkSeriesSet + 'a>,
    mint: Timestamp,
    maxt: Timestamp,
    skipped_chunks: usize,
    /// What downsampled chunks read as.
    aggregate: AggregateRead,
    /// A downsampled chunk that did not decode.
    err: Option<StorageError>,
}

impl<'a> SeriesSet<'a> for DecodedSeriesSet<'a> {
    fn next(&mut self) -> Option<Box<dyn Series + 'a>> {
        loop {
            if self.err.is_some() {
                return None;
            }
            let s = self.inner.next()?;
            let chunks: Vec<EncodedChunk> = s
                .chunks
                .into_iter()
                .filter(|c| c.max_time >= self.mint && c.min_time <= self.maxt)
                .collect();
            let mut chunks = match read_aggregates(chunks, self.aggregate) {
                Ok(c) => c,
                Err(e) => {
                    self.err = Some(StorageError::backend(
                        ErrorKind::Internal,
                        format!("decoding a downsampled chunk of {}", s.labels),
                        e,
                    ));
                    return None;
                }
            };
            let in_range = chunks.len();
            chunks.retain(|c| c.encoding == Encoding::Xor.as_u8());
            self.skipped_chunks += in_range - chunks.len();
            if chunks.is_empty() {
                continue;
            }
            return Some(Box::new(DecodedSeries {
                labels: s.labels,
                chunks,
                mint: self.mint,
                maxt: self.maxt,
            }));
        }
    }

    fn err(&self) -> Option<&StorageError> {
        self.err.as_ref().or_else(|| self.inner.err())
    }

    fn warnings(&self) -> Vec<String> {
        let mut w = self.inner.warnings();
        if self.skipped_chunks > 0 {
            w.push(format!(
                "{} chunk(s) in encodings Kiln does not decode yet (native histograms) were left out",
                self.skipped_chunks
            ));
        }
        w
    }
}

struct DecodedSeries {
    labels: Labels,
    chunks: Vec<EncodedChunk>,
    mint: Timestamp,
    maxt: Timestamp,
}

impl Series for DecodedSeries {
    fn labels(&self) -> &Labels {
        &self.labels
    }

    fn iterator(&self) -> Box<dyn SampleIterator + '_> {
        Box::new(ChunkSamples {
            series: self,
            next_chunk: 0,
            open: None,
            cur: None,
            err: None,
        })
    }
}

/// Walks a series' chunks in order, one decoder at a time.
struct ChunkSamples<'a> {
    series: &'a DecodedSeries,
    next_chunk: usize,
    open: Option<XorIterator<'a>>,
    /// The sample the cursor is on.
    cur: Option<(Timestamp, f64)>,
    err: Option<StorageError>,
}

impl ChunkSamples<'_> {
    /// Moves to the next sample with a timestamp `>= at_least` (and after the current
    /// one), inside the range.
    fn advance(&mut self, at_least: Timestamp) -> ValueKind {
        let floor = self.cur.map_or(at_least, |(t, _)| at_least.max(t + 1));
        loop {
            let Some(it) = self.open.as_mut() else {
                // Chunks that end before the floor are not opened at all.
                while self
                    .series
                    .chunks
                    .get(self.next_chunk)
                    .is_some_and(|c| c.max_time < floor)
                {
                    self.next_chunk += 1;
                }
                let Some(c) = self.series.chunks.get(self.next_chunk) else {
                    return self.exhaust();
                };
                self.next_chunk += 1;
                self.open = Some(XorIterator::new(&c.data));
                continue;
            };
            if it.next() {
                let (t, v) = it.at();
                if t < floor {
                    continue;
                }
                if t > self.series.maxt {
                    return self.exhaust();
                }
                self.cur = Some((t, v));
                return ValueKind::Float;
            }
            if let Some(e) = it.err() {
                self.err = Some(StorageError::backend(
                    ErrorKind::Internal,
                    format!("decoding a chunk of {}", self.series.labels),
                    e.clone(),
                ));
                return self.exhaust();
            }
            self.open = None;
        }
    }

    fn exhaust(&mut self) -> ValueKind {
        self.open = None;
        self.next_chunk = self.series.chunks.len();
        self.cur = Some((Timestamp::MAX, 0.0));
        ValueKind::None
    }
}

impl SampleIterator for ChunkSamples<'_> {
    fn next(&mut self) -> ValueKind {
        if self.cur.is_some_and(|(t, _)| t == Timestamp::MAX) {
            return ValueKind::None;
        }
        self.advance(self.series.mint)
    }

    fn seek(&mut self, t: Timestamp) -> ValueKind {
        match self.cur {
            Some((Timestamp::MAX, _)) => ValueKind::None,
            Some((c, _)) if c >= t => ValueKind::Float,
            _ => self.advance(t.max(self.series.mint)),
        }
    }

    fn at(&self) -> (Timestamp, f64) {
        self.cur.unwrap_or((0, 0.0))
    }

    fn err(&self) -> Option<&StorageError> {
        self.err.as_ref()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::mem::MemStorage;
    use crate::{Appendable, SampleValue};

    /// Every sample of every series, through a querier.
    fn read(q: &dyn Querier, matchers: &[Matcher]) -> Vec<(String, Vec<(Timestamp, f64)>)> {
        let mut set = q.select(true, None, matchers);
        let mut out = Vec::new();
        while let Some(s) = set.next() {
            let mut it = s.iterator();
            let mut v = Vec::new();
            while it.next() == ValueKind::Float {
                v.push(it.at());
            }
            assert!(it.err().is_none());
            out.push((s.labels().to_string(), v));
        }
        out
    }

    #[test]
    fn the_same_samples_as_the_source_reads() {
        let st = MemStorage::new();
        let mut app = st.appender();
        for s in 0..5 {
            let l = Labels::from_pairs(&[("__name__", "m"), ("s", &s.to_string())]);
            // Series of different lengths and steps: chunk edges fall everywhere.
            for i in 0..(100 + s * 70) {
                let t = i64::from(i) * (7 + i64::from(s));
                app.append(0, &l, t, SampleValue::Float(f64::from(i) * 0.5))
                    .unwrap();
            }
        }
        app.commit().unwrap();
        drop(app);
        let decoded = DecodedChunks(&st);
        for (mint, maxt) in [
            (i64::MIN, i64::MAX),
            (100, 2_000),
            (1_500, 1_500),
            (900, 905),
        ] {
            let want = read(&*Queryable::querier(&st, mint, maxt).unwrap(), &[]);
            let got = read(&*decoded.querier(mint, maxt).unwrap(), &[]);
            assert_eq!(got, want, "[{mint}, {maxt}]");
        }
    }

    #[test]
    fn seek_within_and_across_chunks() {
        let st = MemStorage::new();
        let l = Labels::from_pairs(&[("__name__", "m")]);
        let mut app = st.appender();
        for i in 0..300 {
            app.append(0, &l, i * 10, SampleValue::Float(i as f64))
                .unwrap();
        }
        app.commit().unwrap();
        drop(app);
        let decoded = DecodedChunks(&st);
        let q = decoded.querier(0, 2_995).unwrap();
        let mut set = q.select(true, None, &[]);
        let s = set.next().unwrap();
        let mut it = s.iterator();
        assert_eq!(it.seek(15), ValueKind::Float);
        assert_eq!(it.at(), (20, 2.0));
        assert_eq!(it.seek(5), ValueKind::Float, "never backwards");
        assert_eq!(it.at(), (20, 2.0));
        assert_eq!(it.seek(1_995), ValueKind::Float, "into the second chunk");
        assert_eq!(it.at(), (2_000, 200.0));
        assert_eq!(it.next(), ValueKind::Float);
        assert_eq!(it.at(), (2_010, 201.0));
        assert_eq!(it.seek(2_991), ValueKind::None, "past the range's end");
        assert_eq!(it.next(), ValueKind::None);
    }
}
