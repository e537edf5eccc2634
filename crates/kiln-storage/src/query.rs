//! The read contract.
//!
//! A [`Queryable`] opens a [`Querier`] over a closed time range `[mint, maxt]` (both in
//! milliseconds, inclusive). The querier answers `select` with a [`SeriesSet`] whose
//! series, when `sorted` was asked for, come in [`Labels`] order; each [`Series`] hands
//! out a [`SampleIterator`], a cursor with `next`/`seek`/`at` that yields samples in
//! time order within the querier's range. Warnings (a skipped corrupt block, a partial
//! response) travel beside results instead of failing the query.

use kiln_model::{Labels, Matcher, Timestamp};

use crate::StorageError;

/// What the query engine knows about a selection, so that a storage can read less.
#[derive(Debug, Clone, Default)]
pub struct SelectHints {
    /// Start of the time range the caller needs, ms.
    pub start: Timestamp,
    /// End of the time range the caller needs, ms.
    pub end: Timestamp,
    /// Query resolution step, ms (0 for instant queries).
    pub step: i64,
    /// Range of the surrounding range vector selector, ms (0 when none).
    pub range: i64,
    /// The surrounding function (e.g. `rate`), when there is one.
    pub func: Option<String>,
}

/// What a cursor is positioned on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    /// Exhausted (or failed: see [`SampleIterator::err`]).
    None,
    Float,
}

/// A cursor over one series' samples in time order.
///
/// Before the first `next`/`seek` the cursor is positioned before the first sample.
/// `seek(t)` moves to the first sample with timestamp `>= t` and never moves backwards:
/// if the current sample already satisfies it, the cursor stays.
pub trait SampleIterator {
    fn next(&mut self) -> ValueKind;
    fn seek(&mut self, t: Timestamp) -> ValueKind;
    /// The current sample; only meaningful after `next`/`seek` returned `Float`.
    fn at(&self) -> (Timestamp, f64);
    /// The error that ended iteration early, if any.
    fn err(&self) -> Option<&StorageError>;

    /// Moves over the following float samples, appending them to `ts` and `vals`, up to
    /// the first sample of another kind or the end; returns what stopped it (`None` at
    /// the end or on an error). Iterators over encoded data override it to decode whole
    /// chunks at once.
    fn read_floats(&mut self, ts: &mut Vec<Timestamp>, vals: &mut Vec<f64>) -> ValueKind {
        loop {
            match self.next() {
                ValueKind::Float => {
                    let (t, v) = self.at();
                    ts.push(t);
                    vals.push(v);
                }
                other => return other,
            }
        }
    }
}

/// One series of a [`SeriesSet`].
pub trait Series: Send + Sync {
    fn labels(&self) -> &Labels;
    fn iterator(&self) -> Box<dyn SampleIterator + '_>;
}

/// The result of a `select`: a stream of series.
pub trait SeriesSet<'a> {
    /// The next series, or `None` when done (check [`err`](SeriesSet::err)).
    fn next(&mut self) -> Option<Box<dyn Series + 'a>>;
    fn err(&self) -> Option<&StorageError>;
    /// Non-fatal problems met while answering, e.g. a block that could not be read.
    fn warnings(&self) -> Vec<String>;
}

/// Reads series over one time range.
pub trait Querier {
    /// Series matching all `matchers`. With `sorted`, series come in label order (needed
    /// for merging); unsorted may be faster.
    fn select<'a>(
        &'a self,
        sorted: bool,
        hints: Option<&SelectHints>,
        matchers: &[Matcher],
    ) -> Box<dyn SeriesSet<'a> + 'a>;

    /// Sorted, unique values of label `name` among series matching `matchers` (all series
    /// when empty). Returns warnings beside the values.
    fn label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
    ) -> Result<(Vec<String>, Vec<String>), StorageError>;

    /// Sorted, unique label names among series matching `matchers`.
    fn label_names(&self, matchers: &[Matcher])
    -> Result<(Vec<String>, Vec<String>), StorageError>;
}

/// A source of queriers.
pub trait Queryable: Send + Sync {
    fn querier(
        &self,
        mint: Timestamp,
        maxt: Timestamp,
    ) -> Result<Box<dyn Querier + '_>, StorageError>;
}

/// A series held as plain vectors; used by tests and by in-memory sources.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct VecSeries {
    pub labels: Labels,
    pub ts: Vec<Timestamp>,
    pub vals: Vec<f64>,
}

impl Series for VecSeries {
    fn labels(&self) -> &Labels {
        &self.labels
    }

    fn iterator(&self) -> Box<dyn SampleIterator + '_> {
        Box::new(SliceIterator {
            ts: &self.ts,
            vals: &self.vals,
            pos: None,
        })
    }
}

/// A cursor over borrowed timestamp and value columns.
pub struct SliceIterator<'a> {
    ts: &'a [Timestamp],
    vals: &'a [f64],
    pos: Option<usize>,
}

impl<'a> SliceIterator<'a> {
    pub fn new(ts: &'a [Timestamp], vals: &'a [f64]) -> Self {
        SliceIterator {
            ts,
            vals,
            pos: None,
        }
    }
}

impl SampleIterator for SliceIterator<'_> {
    fn next(&mut self) -> ValueKind {
        let p = self.pos.map_or(0, |p| p + 1);
        self.pos = Some(p.min(self.ts.len()));
        if p < self.ts.len() {
            ValueKind::Float
        } else {
            ValueKind::None
        }
    }

    fn seek(&mut self, t: Timestamp) -> ValueKind {
        let start = self.pos.unwrap_or(0);
        if start >= self.ts.len() {
            self.pos = Some(self.ts.len());
            return ValueKind::None;
        }
        if self.pos.is_some() && self.ts[start] >= t {
            return ValueKind::Float;
        }
        let p = start + self.ts[start..].partition_point(|&x| x < t);
        self.pos = Some(p);
        if p < self.ts.len() {
            ValueKind::Float
        } else {
            ValueKind::None
        }
    }

    fn at(&self) -> (Timestamp, f64) {
        match self.pos {
            Some(p) if p < self.ts.len() => (self.ts[p], self.vals[p]),
            _ => (0, 0.0),
        }
    }

    fn err(&self) -> Option<&StorageError> {
        None
    }
}

/// A series set over an owned list of series (given in the order they should come).
pub struct VecSeriesSet<S = VecSeries> {
    series: std::vec::IntoIter<S>,
    warnings: Vec<String>,
}

impl<S> VecSeriesSet<S> {
    pub fn new(series: Vec<S>, warnings: Vec<String>) -> Self {
        VecSeriesSet {
            series: series.into_iter(),
            warnings,
        }
    }
}

impl<'a, S: Series + 'a> SeriesSet<'a> for VecSeriesSet<S> {
    fn next(&mut self) -> Option<Box<dyn Series + 'a>> {
        self.series
            .next()
            .map(|s| Box::new(s) as Box<dyn Series + 'a>)
    }

    fn err(&self) -> Option<&StorageError> {
        None
    }

    fn warnings(&self) -> Vec<String> {
        self.warnings.clone()
    }
}

/// A series set that failed before yielding anything.
pub struct ErrorSeriesSet(pub StorageError);

impl<'a> SeriesSet<'a> for ErrorSeriesSet {
    fn next(&mut self) -> Option<Box<dyn Series + 'a>> {
        None
    }

    fn err(&self) -> Option<&StorageError> {
        Some(&self.0)
    }

    fn warnings(&self) -> Vec<String> {
        Vec::new()
    }
}

/// Sorted, unique values of label `name` among `labels`.
pub fn sorted_label_values<'l>(
    labels: impl IntoIterator<Item = &'l Labels>,
    name: &str,
) -> Vec<String> {
    let mut v: Vec<String> = labels
        .into_iter()
        .filter_map(|l| l.get(name).map(str::to_owned))
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// Sorted, unique label names among `labels`.
pub fn sorted_label_names<'l>(labels: impl IntoIterator<Item = &'l Labels>) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    for l in labels {
        v.extend(l.iter().map(|p| p.name.to_owned()));
    }
    v.sort_unstable();
    v.dedup();
    v
}

/// Whether a series with `labels` satisfies every matcher (absent labels match as `""`).
pub fn labels_match(labels: &Labels, matchers: &[Matcher]) -> bool {
    matchers
        .iter()
        .all(|m| m.matches(labels.get(&m.name).unwrap_or("")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slice_iterator_next_and_seek() {
        let ts = [10, 20, 30, 40];
        let vals = [1.0, 2.0, 3.0, 4.0];
        let mut it = SliceIterator::new(&ts, &vals);
        assert_eq!(it.seek(15), ValueKind::Float);
        assert_eq!(it.at(), (20, 2.0));
        assert_eq!(it.seek(5), ValueKind::Float, "seek never moves backwards");
        assert_eq!(it.at(), (20, 2.0));
        assert_eq!(it.next(), ValueKind::Float);
        assert_eq!(it.at(), (30, 3.0));
        assert_eq!(it.seek(41), ValueKind::None);
        assert_eq!(it.next(), ValueKind::None);
    }
}
