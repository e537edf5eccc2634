//! Deduplication of HA replicas: the series of Prometheus pairs (or any replicated
//! producers) that differ only in their replica labels are answered as one.
//!
//! [`DedupSeriesSet`] takes the replica labels off every series of a set whose series
//! come sorted by their labels *without* those labels (what a store sends when asked
//! with `without_replica_labels`), and merges the runs of equal label sets:
//!
//! - **penalty** (Thanos's default, `--deduplication.func=penalty`): one replica is
//!   followed sample by sample; the other takes over only where the followed one has a
//!   gap. After each pick, the replica not picked must show a sample at least twice the
//!   last interval later before it is taken, so switching never doubles the sample rate
//!   (and clock skew between replicas does not produce near-duplicates). The first pick
//!   uses 5 s. More than two replicas are merged pairwise.
//! - **chain** (`--deduplication.func=chain`): every sample of every replica in time
//!   order, a timestamp held by several written once (the first replica's).
//!
//! **Counters.** Replicas of a counter restart at different times and miss different
//! increments, so switching replicas can make the merged counter drop, which `rate`
//! reads as a reset and turns into a spike. When the enclosing function is `rate`,
//! `increase`, `irate` or `resets` (the select hints carry it), the penalty merge keeps
//! the counter from going down across a switch: a replica whose value is below the last
//! value given is raised by the difference from then on (Thanos's fix for its issue
//! 2401). Within one replica, drops (real resets) pass through unchanged.

use kiln_model::{Labels, Timestamp};
use kiln_storage::{SampleIterator, Series, SeriesSet, StorageError, ValueKind};

/// How replicas are merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DedupAlgorithm {
    #[default]
    Penalty,
    Chain,
}

impl DedupAlgorithm {
    /// The flag value (`penalty`, `chain`).
    pub fn parse(s: &str) -> Option<DedupAlgorithm> {
        match s {
            "penalty" | "" => Some(DedupAlgorithm::Penalty),
            "chain" => Some(DedupAlgorithm::Chain),
            _ => None,
        }
    }
}

/// The penalty before the other replica may be taken when no interval is known yet, ms.
const INITIAL_PENALTY: i64 = 5_000;

/// Whether `func` reads its input as a counter.
fn is_counter(func: Option<&str>) -> bool {
    matches!(func, Some("rate" | "increase" | "irate" | "resets"))
}

/// See the module docs.
pub struct DedupSeriesSet<'a> {
    inner: Box<dyn SeriesSet<'a> + 'a>,
    replica_labels: Vec<String>,
    algorithm: DedupAlgorithm,
    counter: bool,
    /// The next series, already read, with its replica labels off.
    peeked: Option<(Labels, Box<dyn Series + 'a>)>,
}

impl<'a> DedupSeriesSet<'a> {
    /// Deduplicates `inner` (sorted by labels without `replica_labels`); `func` is the
    /// function enclosing the selector (from the select hints).
    pub fn new(
        inner: Box<dyn SeriesSet<'a> + 'a>,
        replica_labels: Vec<String>,
        algorithm: DedupAlgorithm,
        func: Option<&str>,
    ) -> Self {
        DedupSeriesSet {
            inner,
            replica_labels,
            algorithm,
            counter: is_counter(func),
            peeked: None,
        }
    }

    fn pull(&mut self) -> Option<(Labels, Box<dyn Series + 'a>)> {
        if let Some(p) = self.peeked.take() {
            return Some(p);
        }
        let s = self.inner.next()?;
        let labels = s
            .labels()
            .retain(|name| !self.replica_labels.iter().any(|r| r == name));
        Some((labels, s))
    }
}

impl<'a> SeriesSet<'a> for DedupSeriesSet<'a> {
    fn next(&mut self) -> Option<Box<dyn Series + 'a>> {
        let (labels, first) = self.pull()?;
        let mut replicas = vec![first];
        while let Some((l, s)) = self.pull() {
            if l == labels {
                replicas.push(s);
            } else {
                self.peeked = Some((l, s));
                break;
            }
        }
        Some(Box::new(DedupSeries {
            labels,
            replicas,
            algorithm: self.algorithm,
            counter: self.counter,
        }))
    }

    fn err(&self) -> Option<&StorageError> {
        self.inner.err()
    }

    fn warnings(&self) -> Vec<String> {
        self.inner.warnings()
    }
}

/// One deduplicated series: its replicas, merged as its iterator is read.
struct DedupSeries<'a> {
    labels: Labels,
    replicas: Vec<Box<dyn Series + 'a>>,
    algorithm: DedupAlgorithm,
    counter: bool,
}

impl DedupSeries<'_> {
    /// Replica `i`'s samples, counter-adjustable when the function reads a counter.
    fn leaf(&self, i: usize) -> Box<dyn Adjustable + '_> {
        Box::new(Leaf {
            it: self.replicas[i].iterator(),
            raise: 0.0,
            counter: self.counter,
        })
    }
}

impl Series for DedupSeries<'_> {
    fn labels(&self) -> &Labels {
        &self.labels
    }

    fn iterator(&self) -> Box<dyn SampleIterator + '_> {
        if self.replicas.len() == 1 {
            return self.replicas[0].iterator();
        }
        match self.algorithm {
            DedupAlgorithm::Chain => Box::new(ChainIterator::new(
                self.replicas.iter().map(|r| r.iterator()).collect(),
            )),
            DedupAlgorithm::Penalty => {
                let mut it = self.leaf(0);
                for i in 1..self.replicas.len() {
                    it = Box::new(PenaltyIterator::new(it, self.leaf(i)));
                }
                Box::new(AsSampleIterator(it))
            }
        }
    }
}

/// A sample iterator whose values can be raised so that a counter does not go down
/// across a switch of replicas.
trait Adjustable: SampleIterator {
    /// The last value given was `last`: a counter replica below it is raised to it.
    fn adjust(&mut self, last: f64);
}

/// One replica's samples; for counters, raised by what switches required.
struct Leaf<'a> {
    it: Box<dyn SampleIterator + 'a>,
    raise: f64,
    counter: bool,
}

impl SampleIterator for Leaf<'_> {
    fn next(&mut self) -> ValueKind {
        self.it.next()
    }

    fn seek(&mut self, t: Timestamp) -> ValueKind {
        self.it.seek(t)
    }

    fn at(&self) -> (Timestamp, f64) {
        let (t, v) = self.it.at();
        (t, v + self.raise)
    }

    fn err(&self) -> Option<&StorageError> {
        self.it.err()
    }
}

impl Adjustable for Leaf<'_> {
    fn adjust(&mut self, last: f64) {
        if self.counter {
            let (_, v) = self.at();
            if last > v {
                self.raise += last - v;
            }
        }
    }
}

/// Two (merged) replicas with the penalty algorithm (see the module docs).
struct PenaltyIterator<'a> {
    a: Box<dyn Adjustable + 'a>,
    b: Box<dyn Adjustable + 'a>,
    a_at: ValueKind,
    b_at: ValueKind,
    /// Started: `a_at`/`b_at` hold the replicas' first positions.
    started: bool,
    last_t: Timestamp,
    pen_a: i64,
    pen_b: i64,
    use_a: bool,
}

impl<'a> PenaltyIterator<'a> {
    fn new(a: Box<dyn Adjustable + 'a>, b: Box<dyn Adjustable + 'a>) -> Self {
        PenaltyIterator {
            a,
            b,
            a_at: ValueKind::None,
            b_at: ValueKind::None,
            started: false,
            last_t: Timestamp::MIN,
            pen_a: 0,
            pen_b: 0,
            use_a: true,
        }
    }

    fn current(&self) -> Option<(Timestamp, f64)> {
        match (self.use_a, self.a_at, self.b_at) {
            (true, ValueKind::Float, _) => Some(self.a.at()),
            (false, _, ValueKind::Float) => Some(self.b.at()),
            _ => None,
        }
    }

    fn step(&mut self) -> ValueKind {
        let last = self.current().map(|(_, v)| v);
        let was_a = self.use_a;
        if !self.started {
            self.started = true;
            self.a_at = self.a.next();
            self.b_at = self.b.next();
        } else {
            let from = self.last_t.saturating_add(1);
            if self.a_at != ValueKind::None {
                self.a_at = self.a.seek(from.saturating_add(self.pen_a));
            }
            if self.b_at != ValueKind::None {
                self.b_at = self.b.seek(from.saturating_add(self.pen_b));
            }
        }
        let out = match (self.a_at, self.b_at) {
            (ValueKind::None, ValueKind::None) => {
                self.use_a = true;
                ValueKind::None
            }
            (ValueKind::None, b) => {
                self.use_a = false;
                self.last_t = self.b.at().0;
                self.pen_b = 0;
                b
            }
            (a, ValueKind::None) => {
                self.use_a = true;
                self.last_t = self.a.at().0;
                self.pen_a = 0;
                a
            }
            (a, b) => {
                let (ta, tb) = (self.a.at().0, self.b.at().0);
                self.use_a = ta <= tb;
                let picked = if self.use_a { ta } else { tb };
                let penalty = if self.last_t == Timestamp::MIN {
                    INITIAL_PENALTY
                } else {
                    2 * (picked - self.last_t)
                };
                if self.use_a {
                    self.pen_b = penalty;
                    self.pen_a = 0;
                } else {
                    self.pen_a = penalty;
                    self.pen_b = 0;
                }
                self.last_t = picked;
                if self.use_a { a } else { b }
            }
        };
        if self.use_a != was_a
            && let Some(last) = last
        {
            self.adjust(last);
        }
        out
    }
}

impl SampleIterator for PenaltyIterator<'_> {
    fn next(&mut self) -> ValueKind {
        self.step()
    }

    /// Steps forward rather than seeking each replica, so that a gap in the followed
    /// replica is still filled from the other.
    fn seek(&mut self, t: Timestamp) -> ValueKind {
        if !self.started {
            self.step();
        }
        loop {
            match self.current() {
                Some((ct, _)) if ct >= t => return ValueKind::Float,
                None if self.started
                    && self.a_at == ValueKind::None
                    && self.b_at == ValueKind::None =>
                {
                    return ValueKind::None;
                }
                _ => {}
            }
            if self.step() == ValueKind::None {
                return ValueKind::None;
            }
        }
    }

    fn at(&self) -> (Timestamp, f64) {
        self.current().unwrap_or((0, 0.0))
    }

    fn err(&self) -> Option<&StorageError> {
        self.a.err().or_else(|| self.b.err())
    }
}

impl Adjustable for PenaltyIterator<'_> {
    fn adjust(&mut self, last: f64) {
        if self.a_at == ValueKind::Float {
            self.a.adjust(last);
        }
        if self.b_at == ValueKind::Float {
            self.b.adjust(last);
        }
    }
}

/// A boxed [`Adjustable`] as a plain sample iterator.
struct AsSampleIterator<'a>(Box<dyn Adjustable + 'a>);

impl SampleIterator for AsSampleIterator<'_> {
    fn next(&mut self) -> ValueKind {
        self.0.next()
    }

    fn seek(&mut self, t: Timestamp) -> ValueKind {
        self.0.seek(t)
    }

    fn at(&self) -> (Timestamp, f64) {
        self.0.at()
    }

    fn err(&self) -> Option<&StorageError> {
        self.0.err()
    }
}

/// Every replica's samples in time order, each timestamp once (the first replica
/// holding it wins).
struct ChainIterator<'a> {
    its: Vec<Box<dyn SampleIterator + 'a>>,
    /// Each iterator's current position (`None` when exhausted or not started).
    heads: Vec<Option<(Timestamp, f64)>>,
    started: bool,
    cur: Option<(Timestamp, f64)>,
}

impl<'a> ChainIterator<'a> {
    fn new(its: Vec<Box<dyn SampleIterator + 'a>>) -> Self {
        let n = its.len();
        ChainIterator {
            its,
            heads: vec![None; n],
            started: false,
            cur: None,
        }
    }

    fn start(&mut self) {
        if !self.started {
            self.started = true;
            for (i, it) in self.its.iter_mut().enumerate() {
                self.heads[i] = (it.next() == ValueKind::Float).then(|| it.at());
            }
        }
    }

    /// Takes the smallest head and moves every iterator at that timestamp on.
    fn take(&mut self) -> ValueKind {
        let Some((i, &(t, _))) = self
            .heads
            .iter()
            .enumerate()
            .filter_map(|(i, h)| h.as_ref().map(|h| (i, h)))
            .min_by_key(|(i, h)| (h.0, *i))
        else {
            self.cur = None;
            return ValueKind::None;
        };
        self.cur = self.heads[i];
        for (j, it) in self.its.iter_mut().enumerate() {
            if self.heads[j].is_some_and(|h| h.0 == t) {
                self.heads[j] = (it.next() == ValueKind::Float).then(|| it.at());
            }
        }
        ValueKind::Float
    }
}

impl SampleIterator for ChainIterator<'_> {
    fn next(&mut self) -> ValueKind {
        self.start();
        self.take()
    }

    fn seek(&mut self, t: Timestamp) -> ValueKind {
        self.start();
        if self.cur.is_some_and(|(ct, _)| ct >= t) {
            return ValueKind::Float;
        }
        for (j, it) in self.its.iter_mut().enumerate() {
            if self.heads[j].is_some_and(|h| h.0 < t) {
                self.heads[j] = (it.seek(t) == ValueKind::Float).then(|| it.at());
            }
        }
        self.take()
    }

    fn at(&self) -> (Timestamp, f64) {
        self.cur.unwrap_or((0, 0.0))
    }

    fn err(&self) -> Option<&StorageError> {
        self.its.iter().find_map(|it| it.err())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use kiln_storage::{VecSeries, VecSeriesSet};

    fn series(replica: &str, samples: &[(i64, f64)]) -> VecSeries {
        VecSeries {
            labels: Labels::from_pairs(&[("__name__", "up"), ("replica", replica)]),
            ts: samples.iter().map(|s| s.0).collect(),
            vals: samples.iter().map(|s| s.1).collect(),
        }
    }

    fn dedup(
        replicas: Vec<VecSeries>,
        algorithm: DedupAlgorithm,
        func: Option<&str>,
    ) -> (Labels, Vec<(i64, f64)>) {
        let set: Box<dyn SeriesSet<'static>> = Box::new(VecSeriesSet::new(replicas, Vec::new()));
        let mut d = DedupSeriesSet::new(set, vec!["replica".into()], algorithm, func);
        let s = d.next().unwrap();
        assert!(d.next().is_none(), "one series");
        let mut it = s.iterator();
        let mut out = Vec::new();
        while it.next() == ValueKind::Float {
            out.push(it.at());
        }
        (s.labels().clone(), out)
    }

    /// Samples every 15 s from `from` to `to` (ms), value `f(t)`.
    fn scrape(from: i64, to: i64, offset: i64, f: impl Fn(i64) -> f64) -> Vec<(i64, f64)> {
        (from..=to)
            .step_by(15_000)
            .map(|t| (t + offset, f(t + offset)))
            .collect()
    }

    #[test]
    fn replicas_merge_without_doubling_the_sample_rate() {
        let a = scrape(0, 600_000, 0, |t| t as f64);
        let b = scrape(0, 600_000, 4_000, |t| t as f64);
        let (labels, out) = dedup(
            vec![series("0", &a), series("1", &b)],
            DedupAlgorithm::Penalty,
            None,
        );
        assert_eq!(labels, Labels::from_pairs(&[("__name__", "up")]));
        assert_eq!(out, a, "replica 0 followed throughout");
    }

    #[test]
    fn a_gap_in_one_replica_is_filled_from_the_other() {
        // Replica 0 is down from 2 to 5 minutes.
        let a: Vec<(i64, f64)> = scrape(0, 600_000, 0, |t| t as f64)
            .into_iter()
            .filter(|(t, _)| !(120_000..300_000).contains(t))
            .collect();
        let b = scrape(0, 600_000, 7_000, |t| t as f64);
        let (_, out) = dedup(
            vec![series("0", &a), series("1", &b)],
            DedupAlgorithm::Penalty,
            None,
        );
        // No gap longer than about two intervals, no two samples closer than half one.
        let gaps: Vec<i64> = out.windows(2).map(|w| w[1].0 - w[0].0).collect();
        assert!(gaps.iter().all(|&g| g <= 30_000 + 7_000), "{gaps:?}");
        assert!(gaps.iter().all(|&g| g >= 7_000), "{gaps:?}");
        assert!(
            out.iter().any(|(t, _)| (120_000..300_000).contains(t)),
            "filled"
        );
        assert!(out.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn a_switch_of_replicas_does_not_make_a_counter_drop() {
        // Replica 1 restarted and counts from a lower base (it missed increments);
        // replica 0 goes away after 5 minutes (Thanos issue 2401's shape).
        let a = scrape(0, 300_000, 0, |t| 100.0 + t as f64 / 1000.0);
        let b = scrape(0, 600_000, 3_000, |t| 50.0 + t as f64 / 1000.0);
        let (_, out) = dedup(
            vec![series("0", &a), series("1", &b)],
            DedupAlgorithm::Penalty,
            Some("rate"),
        );
        assert!(
            out.windows(2).all(|w| w[1].1 >= w[0].1),
            "no drop, so rate sees no reset: {out:?}"
        );
        assert!(out.last().unwrap().0 > 500_000, "replica 1 carries on");
        // Without the counter hint the values are given as stored.
        let (_, raw) = dedup(
            vec![series("0", &a), series("1", &b)],
            DedupAlgorithm::Penalty,
            None,
        );
        assert!(raw.windows(2).any(|w| w[1].1 < w[0].1));
        // A real reset within the followed replica passes through.
        let reset: Vec<(i64, f64)> = scrape(0, 300_000, 0, |t| ((t / 1000) % 100) as f64);
        let (_, out) = dedup(
            vec![series("0", &reset), series("1", &reset)],
            DedupAlgorithm::Penalty,
            Some("rate"),
        );
        assert_eq!(out, reset);
    }

    #[test]
    fn three_replicas_and_seek() {
        let a = scrape(0, 120_000, 0, |_| 1.0);
        let b = scrape(150_000, 300_000, 1_000, |_| 2.0);
        let c = scrape(330_000, 450_000, 2_000, |_| 3.0);
        let set: Box<dyn SeriesSet<'static>> = Box::new(VecSeriesSet::new(
            vec![series("0", &a), series("1", &b), series("2", &c)],
            Vec::new(),
        ));
        let mut d = DedupSeriesSet::new(set, vec!["replica".into()], DedupAlgorithm::Penalty, None);
        let s = d.next().unwrap();
        let mut it = s.iterator();
        assert_eq!(it.seek(200_000), ValueKind::Float);
        assert_eq!(it.at(), (211_000, 2.0));
        assert_eq!(it.seek(100_000), ValueKind::Float, "never backwards");
        assert_eq!(it.at().0, 211_000);
        assert_eq!(it.seek(440_000), ValueKind::Float);
        assert_eq!(it.at(), (452_000, 3.0));
        assert_eq!(it.next(), ValueKind::None);
    }

    #[test]
    fn chain_merges_every_sample_once() {
        let a = vec![(0, 1.0), (10, 1.0), (20, 1.0)];
        let b = vec![(5, 2.0), (10, 2.0), (30, 2.0)];
        let (_, out) = dedup(
            vec![series("0", &a), series("1", &b)],
            DedupAlgorithm::Chain,
            None,
        );
        assert_eq!(
            out,
            vec![(0, 1.0), (5, 2.0), (10, 1.0), (20, 1.0), (30, 2.0)]
        );
    }

    #[test]
    fn different_series_stay_apart_and_single_ones_pass() {
        let mk = |name: &str, replica: &str| VecSeries {
            labels: Labels::from_pairs(&[("__name__", name), ("replica", replica)]),
            ts: vec![1],
            vals: vec![1.0],
        };
        let set: Box<dyn SeriesSet<'static>> = Box::new(VecSeriesSet::new(
            vec![mk("a", "0"), mk("a", "1"), mk("b", "0"), mk("c", "1")],
            Vec::new(),
        ));
        let mut d = DedupSeriesSet::new(set, vec!["replica".into()], DedupAlgorithm::Penalty, None);
        let mut names = Vec::new();
        while let Some(s) = d.next() {
            names.push(s.labels().to_string());
        }
        assert_eq!(
            names,
            ["{__name__=\"a\"}", "{__name__=\"b\"}", "{__name__=\"c\"}"]
        );
        assert_eq!(DedupAlgorithm::parse("chain"), Some(DedupAlgorithm::Chain));
        assert_eq!(DedupAlgorithm::parse("nope"), None);
    }
}
