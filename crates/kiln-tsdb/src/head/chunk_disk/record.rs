//! Encoding and decoding one chunk record.

use super::*;

/// One record's fields and where its parts lie in the buffer it was parsed from.
pub(super) struct Record {
    pub(super) series_ref: u64,
    pub(super) mint: i64,
    pub(super) maxt: i64,
    pub(super) encoding: u8,
    pub(super) data: Range<usize>,
    /// Offset just past the CRC.
    pub(super) end: usize,
}

pub(super) fn be_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    if let Some(s) = b.get(at..at + 8) {
        a.copy_from_slice(s);
    }
    u64::from_be_bytes(a)
}

pub(super) fn be_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    if let Some(s) = b.get(at..at + 4) {
        a.copy_from_slice(s);
    }
    u32::from_be_bytes(a)
}

/// Adds `base` to the offsets of a `Truncated` problem (for records parsed out of the
/// write buffer, whose offsets are relative to the flushed length).
pub(super) fn shift(p: Corruption, base: usize) -> Corruption {
    match p {
        Corruption::Truncated { need, available } => Corruption::Truncated {
            need: need + base as u64,
            available: available + base as u64,
        },
        other => other,
    }
}

/// Parses the record at `off` in `buf` without checking its CRC: only that every part
/// lies inside `buf`.
pub(super) fn read_header(buf: &[u8], off: usize) -> Result<Record, Corruption> {
    let truncated = |need: usize| Corruption::Truncated {
        need: need as u64,
        available: buf.len() as u64,
    };
    let rest = buf.get(off..).ok_or_else(|| truncated(off))?;
    if rest.len() < FIXED_META_SIZE + 1 {
        return Err(truncated(off + FIXED_META_SIZE + 1));
    }
    let series_ref = be_u64(rest, 0);
    let mint = be_u64(rest, 8) as i64;
    let maxt = be_u64(rest, 16) as i64;
    let encoding = rest[24];
    let mut len: u64 = 0;
    let mut len_size = 0;
    loop {
        if len_size == MAX_LEN_FIELD_SIZE {
            return Err(Corruption::BadLength);
        }
        let Some(&byte) = rest.get(FIXED_META_SIZE + len_size) else {
            return Err(truncated(off + FIXED_META_SIZE + len_size + 1));
        };
        len |= u64::from(byte & 0x7F) << (7 * len_size);
        len_size += 1;
        if byte < 0x80 {
            break;
        }
    }
    if len > u64::from(u32::MAX) {
        return Err(Corruption::BadLength);
    }
    let data_start = FIXED_META_SIZE + len_size;
    let data_end = data_start + len as usize;
    let end = data_end + CRC_SIZE;
    if end > rest.len() {
        return Err(truncated(off + end));
    }
    Ok(Record {
        series_ref,
        mint,
        maxt,
        encoding,
        data: off + data_start..off + data_end,
        end: off + end,
    })
}

/// The next record of a file's bytes at `off` with its CRC checked, or `None` at the
/// end of the data: the end of `buf`, or zero padding up to it (Prometheus pre-allocates
/// its files, and a record whose series ref, mint and maxt are all zero marks the end).
pub(super) fn next_record(buf: &[u8], off: usize) -> Result<Option<Record>, Corruption> {
    let rest = buf.get(off..).unwrap_or_default();
    if rest.is_empty() {
        return Ok(None);
    }
    let head = rest.get(..24).unwrap_or(rest);
    if head.len() < 24 || head.iter().all(|&b| b == 0) {
        if rest.iter().all(|&b| b == 0) {
            return Ok(None);
        }
        if head.len() < 24 {
            return Err(Corruption::Truncated {
                need: (off + MAX_META_SIZE) as u64,
                available: buf.len() as u64,
            });
        }
        return Err(Corruption::DataAfterPadding);
    }
    if off > u32::MAX as usize {
        return Err(Corruption::OffsetOverflow);
    }
    let rec = read_header(buf, off)?;
    let crc_at = rec.data.end;
    let stored = be_u32(buf, crc_at);
    let computed = crc32c::crc32c(buf.get(off..crc_at).unwrap_or_default());
    if stored != computed {
        return Err(Corruption::Checksum { stored, computed });
    }
    Ok(Some(rec))
}

pub(super) fn uvarint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

/// Appends one record to `buf`. Allocates only when `buf` must grow.
/// Chunk records encoded apart from the mapper, in order: the bytes, and where each
/// record ends with its newest timestamp (see `ChunkDiskMapper::encode_chunk`).
#[derive(Debug, Default)]
pub(crate) struct EncodedChunks {
    pub(super) bytes: Vec<u8>,
    pub(super) records: Vec<(usize, i64)>,
}

impl EncodedChunks {
    /// Forgets every record, keeping the room.
    pub(crate) fn clear(&mut self) {
        self.bytes.clear();
        self.records.clear();
    }
}

pub(super) fn encode_record(
    buf: &mut Vec<u8>,
    series_ref: u64,
    mint: i64,
    maxt: i64,
    encoding: u8,
    data: &[u8],
) {
    let start = buf.len();
    buf.extend_from_slice(&series_ref.to_be_bytes());
    buf.extend_from_slice(&mint.to_be_bytes());
    buf.extend_from_slice(&maxt.to_be_bytes());
    buf.push(encoding);
    let mut len = data.len() as u64;
    while len >= 0x80 {
        buf.push((len as u8) | 0x80);
        len >>= 7;
    }
    buf.push(len as u8);
    buf.extend_from_slice(data);
    let crc = crc32c::crc32c(buf.get(start..).unwrap_or_default());
    buf.extend_from_slice(&crc.to_be_bytes());
}
