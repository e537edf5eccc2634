//! Prometheus-compatible chunk encodings. Pure: no I/O, no threads, no globals.
//!
//! A chunk is a compressed run of samples of one series. This crate produces and reads
//! the exact bytes Prometheus's TSDB stores for `EncXOR` chunks (the Gorilla float
//! encoding), so chunks written by Prometheus decode here and chunks written here are
//! read by Prometheus and `promtool`. The chunk *file* framing (length, encoding byte,
//! CRC-32C) belongs to the TSDB crate; this crate sees only a chunk's data bytes.
//!
//! Module map:
//! - [`xor`]: [`XorEncoder`] (appends samples into the `Vec<u8>` it owns) and
//!   [`XorIterator`] (a cursor over borrowed bytes). Layout: `docs/format/xor.md`.
//! - [`aggr`]: aggregate chunks of downsampled blocks (Thanos's encoding 0xff: count,
//!   sum, min, max and counter sub-chunks). Layout: `docs/format/aggr.md`.
//! - [`downsample`]: raw float samples to aggregate chunks at 5m or 1h, by Thanos's
//!   rules.
//! - `bstream` (private): the MSB-first bit writer/reader and Go-compatible varints.
//! - [`ChunkError`]: what went wrong decoding, with the bit offset.
//!
//! Write path: `XorEncoder::append` -> bit writer -> `bytes()` (always a complete chunk,
//! the 2-byte sample count updated on every append).
//! Read path: `XorIterator::new(bytes)` -> `next`/`seek` -> `at`, then `err` to tell a
//! clean end from corrupt data.
//!
//! Allocation behaviour of the hot paths:
//! - `XorEncoder::append` allocates only when its buffer grows (amortized doubling; a new
//!   encoder reserves 128 bytes, as Prometheus does). `reset` keeps the buffer, so a
//!   reused encoder stops allocating once it has seen its largest chunk.
//! - `XorIterator::{new, reset, next, seek, at}` never allocate; one iterator can be
//!   reset onto chunk after chunk.
//!
//! Bad input never panics: every decoder returns or records a [`ChunkError`] for
//! arbitrary bytes, and bounds no allocation by a length read from the data.

pub mod aggr;
mod bstream;
pub mod downsample;
mod error;
pub mod xor;

pub use error::ChunkError;
pub use xor::{XorEncoder, XorIterator};

/// Target number of samples per chunk, as in Prometheus: the head cuts a new chunk when
/// one reaches this many.
pub const SAMPLES_PER_CHUNK: usize = 120;

/// Bytes of the sample-count header at the start of every chunk's data.
const HEADER_LEN: usize = 2;

/// A chunk encoding, with the byte values Prometheus uses in chunk files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Encoding {
    None = 0,
    Xor = 1,
    Histogram = 2,
    FloatHistogram = 3,
}

impl Encoding {
    /// The encoding for a chunk file's encoding byte, `None` if unknown.
    pub fn from_u8(b: u8) -> Option<Encoding> {
        match b {
            0 => Some(Encoding::None),
            1 => Some(Encoding::Xor),
            2 => Some(Encoding::Histogram),
            3 => Some(Encoding::FloatHistogram),
            _ => None,
        }
    }

    /// The encoding byte.
    pub fn as_u8(self) -> u8 {
        self as u8
    }
}

impl std::fmt::Display for Encoding {
    /// The names Prometheus prints (`none`, `XOR`, `histogram`, `floathistogram`).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Encoding::None => "none",
            Encoding::Xor => "XOR",
            Encoding::Histogram => "histogram",
            Encoding::FloatHistogram => "floathistogram",
        })
    }
}

/// The sample count from a chunk's 2-byte big-endian header (the same header for every
/// encoding). Does not validate the rest of the data.
pub fn num_samples(bytes: &[u8]) -> Result<u16, ChunkError> {
    match bytes {
        [hi, lo, ..] => Ok(u16::from_be_bytes([*hi, *lo])),
        _ => Err(ChunkError::BadHeader { len: bytes.len() }),
    }
}
