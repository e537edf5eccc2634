//! The crate's error type.

/// Why chunk bytes could not be decoded (or, for [`ChunkError::Full`], appended to).
///
/// Every variant except `Full` means the bytes are not a valid chunk (bad data or
/// on-disk corruption); bit offsets count from the first byte of the chunk data, header
/// included, so offset 16 is the first bit after the sample count.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    /// Fewer bytes than the 2-byte sample-count header.
    #[error("chunk too short: {len} bytes, the header alone needs 2")]
    BadHeader { len: usize },
    /// The header promises more samples than the bit stream holds.
    #[error(
        "chunk data truncated: needed more bits at bit offset {offset_bits} while reading sample {sample} of {num_samples}"
    )]
    Truncated {
        offset_bits: u64,
        sample: u16,
        num_samples: u16,
    },
    /// A varint runs past 10 bytes or overflows 64 bits.
    #[error("varint at bit offset {offset_bits} overflows 64 bits")]
    VarintOverflow { offset_bits: u64 },
    /// An XOR value control block describes more than 64 bits.
    #[error(
        "invalid XOR value window at bit offset {offset_bits}: {leading} leading zeros + {sigbits} significant bits exceed 64"
    )]
    BadXorWindow {
        offset_bits: u64,
        leading: u8,
        sigbits: u8,
    },
    /// Bytes that are not an aggregate chunk (see [`crate::aggr`]).
    #[error("invalid aggregate chunk at byte {offset}: {reason}")]
    BadAggregate { offset: usize, reason: &'static str },
    /// The chunk already holds `u16::MAX` samples, the most its header can count.
    #[error("chunk is full: it already holds {max} samples")]
    Full { max: u16 },
}

impl ChunkError {
    /// Whether the error means the input bytes are corrupt (as opposed to a full chunk,
    /// which is a caller's mistake).
    pub fn is_corruption(&self) -> bool {
        !matches!(self, ChunkError::Full { .. })
    }
}
