//! Downsampled chunks read as samples: which aggregate a query gets.
//!
//! A downsampled series keeps, per window (5m or 1h), the count, sum, min, max and a
//! counter of its raw samples (see `kiln_chunkenc::aggr`). A query reading it as plain
//! samples gets the aggregate its function needs, chosen from the select hints as
//! Thanos's querier chooses it:
//!
//! | enclosing function | samples read |
//! |---|---|
//! | `min`, `min_over_time` (any `min_` function) | min |
//! | `max`, `max_over_time` (any `max_`) | max |
//! | `count`, `count_over_time` (any `count_`) | count |
//! | `sum_over_time` (any `sum_`) | sum |
//! | `rate`, `increase`, `irate`, `resets` | counter, resets applied across chunks |
//! | anything else (`avg_over_time`, `sum`, plain selectors) | sum / count: the window's mean |
//!
//! Raw (XOR) chunks of the same series pass through unchanged, so a series whose older
//! part is downsampled and newer part raw reads as one.

use kiln_chunkenc::aggr::{AGGR_ENCODING, AggrType, decode_aggr_chunk};
use kiln_chunkenc::downsample::apply_counter_resets;
use kiln_chunkenc::{ChunkError, Encoding, XorEncoder, XorIterator};

use crate::EncodedChunk;

/// Samples per XOR chunk written for derived aggregates (Prometheus's chunk size).
const SAMPLES_PER_CHUNK: usize = 120;

/// What a function reads from downsampled data (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggregateRead {
    One(AggrType),
    /// The counter with resets applied across the series' chunks.
    Counter,
    /// Sum divided by count, per window.
    Mean,
}

impl AggregateRead {
    /// The aggregate for the function `func` encloses the selector with.
    pub fn for_function(func: Option<&str>) -> AggregateRead {
        let f = func.unwrap_or("");
        if f == "min" || f.starts_with("min_") {
            AggregateRead::One(AggrType::Min)
        } else if f == "max" || f.starts_with("max_") {
            AggregateRead::One(AggrType::Max)
        } else if f == "count" || f.starts_with("count_") {
            AggregateRead::One(AggrType::Count)
        } else if f.starts_with("sum_") {
            AggregateRead::One(AggrType::Sum)
        } else if matches!(f, "rate" | "increase" | "irate" | "resets") {
            AggregateRead::Counter
        } else {
            AggregateRead::Mean
        }
    }
}

/// A series' chunks (sorted by time) with its aggregate chunks replaced by XOR chunks of
/// what `read` wants; XOR chunks pass through. A series without aggregate chunks comes
/// back as it was.
pub fn read_aggregates(
    chunks: Vec<EncodedChunk>,
    read: AggregateRead,
) -> Result<Vec<EncodedChunk>, ChunkError> {
    if !chunks.iter().any(|c| c.encoding == AGGR_ENCODING) {
        return Ok(chunks);
    }
    let xor = Encoding::Xor.as_u8();
    let mut out = Vec::with_capacity(chunks.len());
    if read == AggregateRead::Counter {
        // Resets are applied across all the series' aggregate chunks at once.
        let mut counters: Vec<&[u8]> = Vec::new();
        for c in chunks.iter().filter(|c| c.encoding == AGGR_ENCODING) {
            if let Some(sub) = decode_aggr_chunk(&c.data)?[AggrType::Counter as usize] {
                counters.push(sub.data);
            }
        }
        let applied = apply_counter_resets(&counters)?;
        encode(&applied.samples, &mut out);
        out.extend(chunks.into_iter().filter(|c| c.encoding != AGGR_ENCODING));
        out.sort_by_key(|c| (c.min_time, c.max_time));
        return Ok(out);
    }
    for c in chunks {
        if c.encoding != AGGR_ENCODING {
            out.push(c);
            continue;
        }
        let subs = decode_aggr_chunk(&c.data)?;
        match read {
            AggregateRead::One(t) => {
                if let Some(sub) = subs[t as usize].filter(|s| s.encoding == xor) {
                    out.push(EncodedChunk {
                        min_time: c.min_time,
                        max_time: c.max_time,
                        encoding: xor,
                        data: sub.data.to_vec(),
                    });
                }
            }
            AggregateRead::Mean | AggregateRead::Counter => {
                let (Some(sum), Some(count)) =
                    (subs[AggrType::Sum as usize], subs[AggrType::Count as usize])
                else {
                    continue;
                };
                let (sums, counts) = (decode(sum.data)?, decode(count.data)?);
                let mut means = Vec::with_capacity(sums.len());
                let mut j = 0;
                for (t, s) in sums {
                    while j < counts.len() && counts[j].0 < t {
                        j += 1;
                    }
                    if let Some(&(ct, n)) = counts.get(j)
                        && ct == t
                        && n > 0.0
                    {
                        means.push((t, s / n));
                    }
                }
                encode(&means, &mut out);
            }
        }
    }
    Ok(out)
}

fn decode(data: &[u8]) -> Result<Vec<(i64, f64)>, ChunkError> {
    let mut it = XorIterator::new(data);
    let mut out = Vec::new();
    while it.next() {
        out.push(it.at());
    }
    match it.err() {
        Some(e) => Err(e.clone()),
        None => Ok(out),
    }
}

fn encode(samples: &[(i64, f64)], out: &mut Vec<EncodedChunk>) {
    for part in samples.chunks(SAMPLES_PER_CHUNK) {
        let mut enc = XorEncoder::new();
        for &(t, v) in part {
            enc.append(t, v);
        }
        out.push(EncodedChunk {
            min_time: part[0].0,
            max_time: part[part.len() - 1].0,
            encoding: Encoding::Xor.as_u8(),
            data: enc.into_bytes(),
        });
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use kiln_chunkenc::downsample::{RES_5M, downsample_raw};

    fn aggr_chunks(raw: &[(i64, f64)]) -> Vec<EncodedChunk> {
        downsample_raw(raw, RES_5M)
            .into_iter()
            .map(|c| EncodedChunk {
                min_time: c.min_time,
                max_time: c.max_time,
                encoding: AGGR_ENCODING,
                data: c.data,
            })
            .collect()
    }

    fn samples(chunks: &[EncodedChunk]) -> Vec<(i64, f64)> {
        chunks
            .iter()
            .flat_map(|c| decode(&c.data).unwrap())
            .collect()
    }

    #[test]
    fn functions_pick_their_aggregate() {
        assert_eq!(
            AggregateRead::for_function(Some("min_over_time")),
            AggregateRead::One(AggrType::Min)
        );
        assert_eq!(
            AggregateRead::for_function(Some("max")),
            AggregateRead::One(AggrType::Max)
        );
        assert_eq!(
            AggregateRead::for_function(Some("count_over_time")),
            AggregateRead::One(AggrType::Count)
        );
        assert_eq!(
            AggregateRead::for_function(Some("sum_over_time")),
            AggregateRead::One(AggrType::Sum)
        );
        assert_eq!(
            AggregateRead::for_function(Some("increase")),
            AggregateRead::Counter
        );
        assert_eq!(
            AggregateRead::for_function(Some("sum")),
            AggregateRead::Mean
        );
        assert_eq!(AggregateRead::for_function(None), AggregateRead::Mean);
    }

    #[test]
    fn aggregates_read_as_the_raw_data_summarised() {
        // A day of 15 s samples: a gauge-like saw with a counter reset every 3 hours.
        let raw: Vec<(i64, f64)> = (0..5760)
            .map(|i| (i * 15_000, (i % 720) as f64 * 2.0 + 1.0))
            .collect();
        let chunks = aggr_chunks(&raw);
        let mins =
            samples(&read_aggregates(chunks.clone(), AggregateRead::One(AggrType::Min)).unwrap());
        let maxs =
            samples(&read_aggregates(chunks.clone(), AggregateRead::One(AggrType::Max)).unwrap());
        let counts =
            samples(&read_aggregates(chunks.clone(), AggregateRead::One(AggrType::Count)).unwrap());
        let means = samples(&read_aggregates(chunks.clone(), AggregateRead::Mean).unwrap());
        assert_eq!(counts.len(), 288, "one value per 5m window");
        assert_eq!(counts.iter().map(|c| c.1).sum::<f64>(), raw.len() as f64);
        let raw_min = raw.iter().map(|r| r.1).fold(f64::INFINITY, f64::min);
        let raw_max = raw.iter().map(|r| r.1).fold(f64::NEG_INFINITY, f64::max);
        assert_eq!(
            mins.iter().map(|m| m.1).fold(f64::INFINITY, f64::min),
            raw_min
        );
        assert_eq!(
            maxs.iter().map(|m| m.1).fold(f64::NEG_INFINITY, f64::max),
            raw_max
        );
        // Window means weighted by their counts give the raw mean.
        let total: f64 = means.iter().zip(&counts).map(|(m, c)| m.1 * c.1).sum();
        let raw_total: f64 = raw.iter().map(|r| r.1).sum();
        assert!((total - raw_total).abs() < 1e-6 * raw_total);
        // The counter only grows, and grows by what the raw counter did across resets.
        let counter = samples(&read_aggregates(chunks, AggregateRead::Counter).unwrap());
        assert!(
            counter
                .windows(2)
                .all(|w| w[1].1 >= w[0].1 && w[1].0 > w[0].0)
        );
        let raw_increase: f64 = raw
            .windows(2)
            .map(|w| {
                if w[1].1 >= w[0].1 {
                    w[1].1 - w[0].1
                } else {
                    w[1].1
                }
            })
            .sum();
        let got = counter[counter.len() - 1].1 - counter[0].1;
        assert!((got - raw_increase).abs() < 1e-9, "{got} vs {raw_increase}");
    }

    #[test]
    fn raw_chunks_pass_through_and_bad_bytes_are_errors() {
        let raw: Vec<(i64, f64)> = (0..10).map(|i| (i * 1000, i as f64)).collect();
        let mut plain = Vec::new();
        encode(&raw, &mut plain);
        assert_eq!(
            read_aggregates(plain.clone(), AggregateRead::Mean).unwrap(),
            plain
        );
        let bad = vec![EncodedChunk {
            min_time: 0,
            max_time: 1,
            encoding: AGGR_ENCODING,
            data: vec![0xff, 0xff, 0xff],
        }];
        assert!(read_aggregates(bad, AggregateRead::Mean).is_err());
    }
}
