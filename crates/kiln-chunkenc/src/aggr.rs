//! Aggregate chunks: the chunks of downsampled blocks, in Thanos's encoding, so that
//! Kiln's and Thanos's downsampled blocks are interchangeable. Specification:
//! `crates/kiln-chunkenc/docs/format/aggr.md`; in short:
//!
//! A downsampled series keeps, per window of its resolution (5m, 1h), five aggregates
//! of the raw samples: their count, sum, min, max, and a "counter" series from which
//! `rate` and `increase` are exact across counter resets. One aggregate chunk holds one
//! sub-chunk per aggregate (each an ordinary chunk, XOR for floats), any of which may be
//! absent (gauges have no counter aggregate), in the order of [`AggrType`]:
//!
//! ```text
//! for each aggregate in count, sum, min, max, counter:
//!   uvarint length      0: the aggregate is absent (nothing follows for it)
//!   encoding byte       present only when length > 0 (1: XOR)
//!   length bytes        the sub-chunk's data (its own 2-byte sample count first)
//! ```
//!
//! The chunk's encoding byte in a block's chunk file is [`AGGR_ENCODING`] (0xff).

use crate::ChunkError;

/// The encoding byte of an aggregate chunk in a chunk file (Thanos's `ChunkEncAggr`).
pub const AGGR_ENCODING: u8 = 0xff;

/// The aggregates of a downsampled series, in their order in the chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum AggrType {
    Count = 0,
    Sum = 1,
    Min = 2,
    Max = 3,
    Counter = 4,
}

impl AggrType {
    pub const ALL: [AggrType; 5] = [
        AggrType::Count,
        AggrType::Sum,
        AggrType::Min,
        AggrType::Max,
        AggrType::Counter,
    ];

    /// The name Thanos prints.
    pub fn name(self) -> &'static str {
        match self {
            AggrType::Count => "count",
            AggrType::Sum => "sum",
            AggrType::Min => "min",
            AggrType::Max => "max",
            AggrType::Counter => "counter",
        }
    }
}

/// One aggregate's sub-chunk: its encoding byte and data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubChunk<'a> {
    pub encoding: u8,
    pub data: &'a [u8],
}

/// Encodes an aggregate chunk from its sub-chunks, indexed by [`AggrType`] (`None`: the
/// aggregate is absent).
pub fn encode_aggr_chunk(subchunks: [Option<SubChunk<'_>>; 5]) -> Vec<u8> {
    let mut out = Vec::new();
    for s in subchunks {
        match s {
            None => put_uvarint(&mut out, 0),
            Some(s) => {
                put_uvarint(&mut out, s.data.len() as u64);
                out.push(s.encoding);
                out.extend_from_slice(s.data);
            }
        }
    }
    out
}

/// Reads the sub-chunks of an aggregate chunk (indexed by [`AggrType`]). Fails on bytes
/// that are not an aggregate chunk: a length past the end, a bad varint, or bytes left
/// over after the fifth aggregate.
pub fn decode_aggr_chunk(bytes: &[u8]) -> Result<[Option<SubChunk<'_>>; 5], ChunkError> {
    let mut out = [None; 5];
    let mut rest = bytes;
    for slot in &mut out {
        let offset = bytes.len() - rest.len();
        let (len, n) = get_uvarint(rest).ok_or(ChunkError::BadAggregate {
            offset,
            reason: "unreadable length",
        })?;
        rest = &rest[n..];
        if len == 0 {
            continue;
        }
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        if rest.len() <= len {
            return Err(ChunkError::BadAggregate {
                offset,
                reason: "a sub-chunk runs past the end",
            });
        }
        *slot = Some(SubChunk {
            encoding: rest[0],
            data: &rest[1..=len],
        });
        rest = &rest[len + 1..];
    }
    if !rest.is_empty() {
        return Err(ChunkError::BadAggregate {
            offset: bytes.len() - rest.len(),
            reason: "bytes after the last aggregate",
        });
    }
    Ok(out)
}

fn put_uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A uvarint and its length in bytes; `None` when truncated or longer than 10 bytes.
fn get_uvarint(b: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, &byte) in b.iter().enumerate().take(10) {
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte < 0x80 {
            return Some((v, i + 1));
        }
    }
    None
}
