//! Downsampling raw float samples into aggregate chunks ([`crate::aggr`]), by Thanos's
//! rules, so that a Kiln compactor writes the same downsampled data as Thanos's.
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

use crate::aggr::{SubChunk, encode_aggr_chunk};
use crate::{Encoding, XorEncoder};

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

/// One batch (non-empty, NaN-free) as one aggregate chunk.
fn downsample_batch(batch: &[(i64, f64)], resolution: i64) -> AggrChunkData {
    let mut enc: [XorEncoder; 5] = std::array::from_fn(|_| XorEncoder::new());
    let (count, sum, min, max, counter) = (0, 1, 2, 3, 4);
    enc[counter].append(batch[0].0, batch[0].1);
    let last_t = batch[batch.len() - 1].0;
    let mut a = Aggregator {
        total: 0,
        count: 0,
        sum: 0.0,
        min: f64::MAX,
        max: -f64::MAX,
        counter: 0.0,
        last: 0.0,
    };
    let (mut mint, mut maxt) = (i64::MAX, i64::MIN);
    let mut emit = |t: i64, a: &Aggregator, enc: &mut [XorEncoder; 5]| {
        mint = mint.min(t);
        maxt = maxt.max(t);
        enc[sum].append(t, a.sum);
        enc[min].append(t, a.min);
        enc[max].append(t, a.max);
        enc[count].append(t, a.count as f64);
        enc[counter].append(t, a.counter);
    };
    let mut next_t: Option<i64> = None;
    for &(t, v) in batch {
        if next_t.is_none_or(|n| t > n) {
            if let Some(n) = next_t {
                emit(n, &a, &mut enc);
            }
            a.reset_window();
            next_t = Some(window_end(t, resolution).min(last_t));
        }
        a.add(v);
    }
    let window_t = next_t.unwrap_or(last_t);
    emit(window_t, &a, &mut enc);
    enc[counter].append(window_t, batch[batch.len() - 1].1);
    let xor = Encoding::Xor.as_u8();
    let data = encode_aggr_chunk(std::array::from_fn(|i| {
        Some(SubChunk {
            encoding: xor,
            data: enc[i].bytes(),
        })
    }));
    AggrChunkData {
        min_time: mint,
        max_time: maxt,
        data,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::XorIterator;
    use crate::aggr::{AggrType, decode_aggr_chunk};

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
}
