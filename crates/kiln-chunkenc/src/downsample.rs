//! Downsampling into aggregate chunks ([`crate::aggr`]), by Thanos's rules, so that a
//! Kiln compactor writes the same downsampled data as Thanos's: raw float samples to 5m
//! ([`downsample_raw`]), 5m aggregate chunks to 1h ([`downsample_aggr`]), and the
//! counter values with resets applied across chunks ([`apply_counter_resets`]) that
//! `rate` and `increase` read.
//!
//! The samples of a series are cut into batches, each becoming one aggregate chunk:
//! about as many batches as keep a chunk under ~140 aggregated samples (counting on a
//! raw scrape interval of one minute), each batch extended to the end of the window its
//! last sample falls in, so that windows never straddle two chunks. NaN samples (stale
//! markers included) are left out.
//!
//! Within a batch, each window `[k*r, (k+1)*r)` of the resolution `r` gives one sample
//! per aggregate, at the window's last millisecond (`(k+1)*r - 1`), or at the batch's
//! last sample for its last window: the count, sum, min and max of the window's
//! samples, and the counter: a running total of the batch's increases, where a drop is
//! a counter reset that adds the new value (as `rate` counts it). The counter
//! sub-chunk also starts with the batch's first raw sample and ends with its last raw
//! sample (at the last window's timestamp), so that a reader can tell where the raw
//! series started and ended and apply resets across chunks.

use crate::aggr::{AggrType, SubChunk, decode_aggr_chunk, encode_aggr_chunk};
use crate::{ChunkError, Encoding, XorEncoder, XorIterator};

/// 5 minutes, ms: the resolution of the first downsampling (from raw blocks spanning
/// at least 40 hours).
pub const RES_5M: i64 = 5 * 60 * 1000;
/// 1 hour, ms: the resolution of the second downsampling (from 5m blocks spanning at
/// least 10 days).
pub const RES_1H: i64 = 60 * 60 * 1000;

/// One aggregate chunk with its time range (both ends inclusive).
#[derive(Debug, Clone, PartialEq)]
pub struct AggrChunkData {
    pub min_time: i64,
    pub max_time: i64,
    /// The chunk's bytes ([`crate::aggr`]; encoding byte [`crate::aggr::AGGR_ENCODING`]).
    pub data: Vec<u8>,
}

/// The last millisecond of the window of resolution `r` that `t` falls in.
fn window_end(t: i64, r: i64) -> i64 {
    t - t.rem_euclid(r) + r - 1
}

/// How many chunks a series of `count` samples over `[mint, maxt]` becomes.
fn target_chunk_count(mint: i64, maxt: i64, in_res: i64, out_res: i64, count: usize) -> usize {
    let span = (maxt - mint) as f64;
    let max_samples = ((maxt - mint) / out_res) as f64;
    let fullness = if span <= 0.0 {
        1.0
    } else {
        (count as f64 / (span / in_res as f64)).min(1.0)
    };
    let expected = (max_samples * fullness) as usize + 1;
    let mut x = 1;
    while expected / x > 140 {
        x += 1;
    }
    x
}

/// Downsamples raw float samples (in time order) to `resolution`. See the module docs.
pub fn downsample_raw(samples: &[(i64, f64)], resolution: i64) -> Vec<AggrChunkData> {
    let (Some(first), Some(last)) = (samples.first(), samples.last()) else {
        return Vec::new();
    };
    let chunks = target_chunk_count(first.0, last.0, 60_000, resolution, samples.len());
    let batch_size = samples.len() / chunks + 1;
    let mut out = Vec::with_capacity(chunks);
    let mut rest = samples;
    while !rest.is_empty() {
        let mut j = batch_size.min(rest.len());
        let end = window_end(rest[j - 1].0, resolution);
        while j < rest.len() && rest[j].0 <= end {
            j += 1;
        }
        let batch: Vec<(i64, f64)> = rest[..j]
            .iter()
            .copied()
            .filter(|s| !s.1.is_nan())
            .collect();
        rest = &rest[j..];
        if !batch.is_empty() {
            out.push(downsample_batch(&batch, resolution));
        }
    }
    out
}

/// The running aggregates of a batch.
struct Aggregator {
    total: usize,
    count: usize,
    sum: f64,
    min: f64,
    max: f64,
    counter: f64,
    last: f64,
}

impl Aggregator {
    fn reset_window(&mut self) {
        self.count = 0;
        self.sum = 0.0;
        self.min = f64::MAX;
        self.max = -f64::MAX;
    }

    fn add(&mut self, v: f64) {
        if self.total == 0 {
            self.counter = v;
        } else if v < self.last {
            // A counter reset: the new value is all increase.
            self.counter += v;
        } else {
            self.counter += v - self.last;
        }
        self.last = v;
        self.sum += v;
        self.count += 1;
        self.total += 1;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
    }
}

impl Aggregator {
    fn new() -> Aggregator {
        Aggregator {
            total: 0,
            count: 0,
            sum: 0.0,
            min: f64::MAX,
            max: -f64::MAX,
            counter: 0.0,
            last: 0.0,
        }
    }
}

/// Runs an aggregator over `samples` (non-empty, in time order) window by window,
/// calling `emit(t, aggregator)` at the end of each window (its last millisecond, or the
/// last sample's time for the last window). Returns the last window's time.
fn for_each_window(samples: &[(i64, f64)], r: i64, mut emit: impl FnMut(i64, &Aggregator)) -> i64 {
    let last_t = samples[samples.len() - 1].0;
    let mut a = Aggregator::new();
    let mut next_t: Option<i64> = None;
    for &(t, v) in samples {
        if next_t.is_none_or(|n| t > n) {
            if let Some(n) = next_t {
                emit(n, &a);
            }
            a.reset_window();
            next_t = Some(window_end(t, r).min(last_t));
        }
        a.add(v);
    }
    let window_t = next_t.unwrap_or(last_t);
    emit(window_t, &a);
    window_t
}

/// The five sub-chunks being written, and the time range of what they hold.
struct Builder {
    enc: [Option<XorEncoder>; 5],
    mint: i64,
    maxt: i64,
}

impl Builder {
    fn new() -> Builder {
        Builder {
            enc: std::array::from_fn(|_| None),
            mint: i64::MAX,
            maxt: i64::MIN,
        }
    }

    fn append(&mut self, aggr: AggrType, t: i64, v: f64) {
        self.enc[aggr as usize]
            .get_or_insert_with(XorEncoder::new)
            .append(t, v);
    }

    /// Appends a window's value, which counts in the chunk's time range.
    fn window(&mut self, aggr: AggrType, t: i64, v: f64) {
        self.mint = self.mint.min(t);
        self.maxt = self.maxt.max(t);
        self.append(aggr, t, v);
    }

    fn finish(self) -> AggrChunkData {
        let xor = Encoding::Xor.as_u8();
        let data = encode_aggr_chunk(std::array::from_fn(|i| {
            self.enc[i].as_ref().map(|e| SubChunk {
                encoding: xor,
                data: e.bytes(),
            })
        }));
        AggrChunkData {
            min_time: self.mint,
            max_time: self.maxt,
            data,
        }
    }
}

/// One batch (non-empty, NaN-free) as one aggregate chunk.
fn downsample_batch(batch: &[(i64, f64)], resolution: i64) -> AggrChunkData {
    let mut b = Builder::new();
    b.append(AggrType::Counter, batch[0].0, batch[0].1);
    let last_t = for_each_window(batch, resolution, |t, a| {
        b.window(AggrType::Count, t, a.count as f64);
        b.window(AggrType::Sum, t, a.sum);
        b.window(AggrType::Min, t, a.min);
        b.window(AggrType::Max, t, a.max);
        b.window(AggrType::Counter, t, a.counter);
    });
    b.append(AggrType::Counter, last_t, batch[batch.len() - 1].1);
    b.finish()
}

/// A series' counter values across the counter sub-chunks of its aggregate chunks (or
/// raw chunks), with counter resets applied: a drop adds the new value, a drop between
/// chunks is seen by comparing a chunk's last raw value (its duplicated last timestamp)
/// with the next chunk's first; samples that go back in time (overlapping chunks) and
/// NaN are skipped. The result only grows, so `rate` and `increase` over it are exact.
pub fn apply_counter_resets(counter_chunks: &[&[u8]]) -> Result<CounterSamples, ChunkError> {
    let mut out = CounterSamples {
        samples: Vec::new(),
        last_raw: 0.0,
    };
    let (mut total, mut last_t, mut last_v) = (0.0f64, i64::MIN, 0.0f64);
    for data in counter_chunks {
        let mut it = XorIterator::new(data);
        while it.next() {
            let (t, v) = it.at();
            if v.is_nan() {
                continue;
            }
            if out.samples.is_empty() {
                total = v;
            } else if t > last_t {
                total += if v >= last_v { v - last_v } else { v };
            } else {
                if t == last_t {
                    // The chunk's true last raw value, for the next chunk's comparison.
                    last_v = v;
                }
                continue;
            }
            last_t = t;
            last_v = v;
            out.samples.push((t, total));
        }
        if let Some(e) = it.err() {
            return Err(e.clone());
        }
    }
    out.last_raw = last_v;
    Ok(out)
}

/// What [`apply_counter_resets`] gives.
#[derive(Debug, Clone, PartialEq)]
pub struct CounterSamples {
    /// Reset-applied counter values, in time order.
    pub samples: Vec<(i64, f64)>,
    /// The series' last raw value.
    pub last_raw: f64,
}

/// Downsamples a series' aggregate chunks (in time order, covering `[mint, maxt]` at
/// resolution `in_res`) again to `out_res`, as Thanos goes from 5m to 1h: along chunk
/// boundaries only (a chunk's first and last raw counter values must survive), count as
/// the sum of counts, sum as the sum of sums, min of mins, max of maxes, and the counter
/// from its reset-applied values.
pub fn downsample_aggr(
    chunks: &[&[u8]],
    mint: i64,
    maxt: i64,
    in_res: i64,
    out_res: i64,
) -> Result<Vec<AggrChunkData>, ChunkError> {
    let decoded = chunks
        .iter()
        .map(|c| decode_aggr_chunk(c))
        .collect::<Result<Vec<_>, _>>()?;
    let samples: usize = decoded
        .iter()
        .filter_map(|subs| subs[AggrType::Count as usize])
        .map(|s| usize::from(crate::num_samples(s.data).unwrap_or(0)))
        .sum();
    let count = target_chunk_count(mint, maxt, in_res, out_res, samples);
    let batch = (decoded.len() / count).max(1);
    let mut out = Vec::new();
    for part in decoded.chunks(batch) {
        out.push(downsample_aggr_batch(part, out_res)?);
    }
    Ok(out)
}

/// What a window of an aggregate becomes, from the window's aggregator.
type WindowValue = fn(&Aggregator) -> f64;

/// The samples of one aggregate across chunks.
fn expand(
    part: &[[Option<SubChunk<'_>>; 5]],
    aggr: AggrType,
) -> Result<Vec<(i64, f64)>, ChunkError> {
    let mut out = Vec::new();
    for subs in part {
        let Some(s) = subs[aggr as usize] else {
            continue;
        };
        let mut it = XorIterator::new(s.data);
        while it.next() {
            out.push(it.at());
        }
        if let Some(e) = it.err() {
            return Err(e.clone());
        }
    }
    Ok(out)
}

fn downsample_aggr_batch(
    part: &[[Option<SubChunk<'_>>; 5]],
    resolution: i64,
) -> Result<AggrChunkData, ChunkError> {
    let mut b = Builder::new();
    let generic: [(AggrType, WindowValue); 4] = [
        (AggrType::Count, |a| a.sum),
        (AggrType::Sum, |a| a.sum),
        (AggrType::Min, |a| a.min),
        (AggrType::Max, |a| a.max),
    ];
    for (aggr, value) in generic {
        let samples = expand(part, aggr)?;
        if !samples.is_empty() {
            for_each_window(&samples, resolution, |t, a| b.window(aggr, t, value(a)));
        }
    }
    let counters: Vec<&[u8]> = part
        .iter()
        .filter_map(|subs| subs[AggrType::Counter as usize].map(|s| s.data))
        .collect();
    let counter = apply_counter_resets(&counters)?;
    if let Some(&(t0, v0)) = counter.samples.first() {
        b.append(AggrType::Counter, t0, v0);
        let last_t = for_each_window(&counter.samples, resolution, |t, a| {
            b.window(AggrType::Counter, t, a.counter);
        });
        b.append(AggrType::Counter, last_t, counter.last_raw);
    }
    Ok(b.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples_of(chunk: &AggrChunkData, aggr: AggrType) -> Vec<(i64, f64)> {
        let subs = decode_aggr_chunk(&chunk.data).expect("aggregate chunk");
        let s = subs[aggr as usize].expect("present");
        let mut it = XorIterator::new(s.data);
        let mut out = Vec::new();
        while it.next() {
            out.push(it.at());
        }
        out
    }

    #[test]
    fn windows_of_a_counter_with_a_reset() {
        // A counter every minute for 12 minutes, reset after the 7th sample.
        let raw: Vec<(i64, f64)> = (0..12i64)
            .map(|i| {
                (
                    i * 60_000,
                    if i < 7 {
                        (i * 10) as f64
                    } else {
                        ((i - 7) * 10) as f64
                    },
                )
            })
            .collect();
        let chunks = downsample_raw(&raw, RES_5M);
        assert_eq!(chunks.len(), 1);
        let c = &chunks[0];
        // Windows [0,5m), [5m,10m), [10m,12m): ends at 5m-1, 10m-1, and the last sample.
        let ends = [RES_5M - 1, 2 * RES_5M - 1, 11 * 60_000];
        assert_eq!((c.min_time, c.max_time), (ends[0], ends[2]));
        let at = |v: &[f64]| {
            ends.iter()
                .copied()
                .zip(v.iter().copied())
                .collect::<Vec<_>>()
        };
        assert_eq!(samples_of(c, AggrType::Count), at(&[5.0, 5.0, 2.0]));
        assert_eq!(
            samples_of(c, AggrType::Sum),
            at(&[100.0, 50.0 + 60.0 + 0.0 + 10.0 + 20.0, 30.0 + 40.0])
        );
        assert_eq!(samples_of(c, AggrType::Min), at(&[0.0, 0.0, 30.0]));
        assert_eq!(samples_of(c, AggrType::Max), at(&[40.0, 60.0, 40.0]));
        // The counter: first raw sample, the running totals (60 before the reset, the
        // reset's 0 added, then +10 a minute), the last raw sample.
        let counter = samples_of(c, AggrType::Counter);
        assert_eq!(
            counter,
            vec![
                (0, 0.0),
                (ends[0], 40.0),
                (ends[1], 60.0 + 0.0 + 10.0 + 10.0),
                (ends[2], 60.0 + 40.0),
                (ends[2], 40.0),
            ]
        );
    }

    #[test]
    fn long_series_become_several_chunks_on_window_edges_and_nan_is_dropped() {
        // Two days at 15 s: far more than 140 5m windows.
        let raw: Vec<(i64, f64)> = (0..2 * 24 * 240i64)
            .map(|i| (i * 15_000, if i == 100 { f64::NAN } else { i as f64 }))
            .collect();
        let chunks = downsample_raw(&raw, RES_5M);
        assert!(chunks.len() >= 4, "{}", chunks.len());
        let mut total = 0.0;
        let mut prev_max = i64::MIN;
        for c in &chunks {
            assert!(c.min_time > prev_max, "chunks in order, not overlapping");
            prev_max = c.max_time;
            let counts = samples_of(c, AggrType::Count);
            assert!(counts.len() <= 150, "{}", counts.len());
            total += counts.iter().map(|s| s.1).sum::<f64>();
            // Every window but possibly the last ends on a window edge.
            for (t, _) in &counts[..counts.len() - 1] {
                assert_eq!((t + 1) % RES_5M, 0, "{t}");
            }
        }
        assert_eq!(
            total,
            (raw.len() - 1) as f64,
            "every sample but the NaN counted once"
        );
    }

    #[test]
    fn empty_input_gives_nothing() {
        assert!(downsample_raw(&[], RES_5M).is_empty());
        let one = downsample_raw(&[(7, 1.5)], RES_1H);
        assert_eq!(one.len(), 1);
        assert_eq!((one[0].min_time, one[0].max_time), (7, 7));
    }

    /// A counter every 15 s for two days that resets every 7 hours.
    fn resetting_counter() -> Vec<(i64, f64)> {
        (0..2 * 24 * 240i64)
            .map(|i| {
                let since_reset = i % (7 * 240);
                (i * 15_000, (since_reset * 3) as f64)
            })
            .collect()
    }

    /// The increase of a raw counter, resets counted as Prometheus does.
    fn raw_increase(raw: &[(i64, f64)]) -> f64 {
        raw.windows(2)
            .map(|w| {
                if w[1].1 >= w[0].1 {
                    w[1].1 - w[0].1
                } else {
                    w[1].1
                }
            })
            .sum()
    }

    fn counters(chunks: &[AggrChunkData]) -> Vec<Vec<u8>> {
        chunks
            .iter()
            .map(|c| {
                let subs = decode_aggr_chunk(&c.data).expect("aggregate chunk");
                subs[AggrType::Counter as usize]
                    .expect("counter")
                    .data
                    .to_vec()
            })
            .collect()
    }

    #[test]
    fn counter_resets_apply_across_chunks() {
        let raw = resetting_counter();
        let five = downsample_raw(&raw, RES_5M);
        assert!(five.len() > 2);
        let data = counters(&five);
        let views: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
        let c = apply_counter_resets(&views).expect("decodes");
        assert!(
            c.samples
                .windows(2)
                .all(|w| w[1].1 >= w[0].1 && w[1].0 > w[0].0)
        );
        let (_, last) = c.samples[c.samples.len() - 1];
        assert_eq!(last - raw[0].1, raw_increase(&raw));
        assert_eq!(c.last_raw, raw[raw.len() - 1].1);
    }

    #[test]
    fn five_minutes_to_one_hour_agrees_with_raw_to_one_hour() {
        let raw = resetting_counter();
        let five = downsample_raw(&raw, RES_5M);
        let views: Vec<&[u8]> = five.iter().map(|c| c.data.as_slice()).collect();
        let (mint, maxt) = (five[0].min_time, five[five.len() - 1].max_time);
        let hour = downsample_aggr(&views, mint, maxt, RES_5M, RES_1H).expect("downsamples");
        let direct = downsample_raw(&raw, RES_1H);
        let total = |chunks: &[AggrChunkData], aggr: AggrType| -> Vec<(i64, f64)> {
            chunks.iter().flat_map(|c| samples_of(c, aggr)).collect()
        };
        for aggr in [AggrType::Count, AggrType::Sum, AggrType::Min, AggrType::Max] {
            let a = total(&hour, aggr);
            let b = total(&direct, aggr);
            assert_eq!(a.len(), b.len(), "{aggr:?}");
            for (x, y) in a.iter().zip(&b) {
                assert_eq!(x.0, y.0, "{aggr:?} window end");
                assert!((x.1 - y.1).abs() < 1e-6, "{aggr:?}: {x:?} vs {y:?}");
            }
        }
        // The counters agree on the increase over the whole series.
        let increase = |chunks: &[AggrChunkData]| {
            let data = counters(chunks);
            let views: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
            let c = apply_counter_resets(&views).expect("decodes");
            c.samples[c.samples.len() - 1].1 - c.samples[0].1
        };
        assert_eq!(increase(&hour), raw_increase(&raw));
        assert_eq!(increase(&direct), raw_increase(&raw));
    }
}
