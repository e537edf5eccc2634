//! Byte-level encoding shared by the block formats: Go-compatible varints, big-endian
//! integers, length-prefixed strings and CRC32-Castagnoli sections.
//!
//! Encoders append to a `&mut Vec<u8>` and never fail. [`Decoder`] reads a `&[u8]` that
//! starts at a known absolute file offset, so every failure reports where in the file it
//! happened. Decoders never panic and never allocate based on a length read from input.

use super::error::{Corruption, DecodeError};

/// Appends `v` as an unsigned LEB128 varint (Go's `binary.PutUvarint`).
pub(crate) fn put_uvarint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

/// Appends `v` zig-zag encoded as a varint (Go's `binary.PutVarint`).
pub(crate) fn put_varint(buf: &mut Vec<u8>, v: i64) {
    put_uvarint(buf, ((v << 1) ^ (v >> 63)) as u64);
}

/// The number of bytes [`put_uvarint`] writes for `v`.
#[cfg(test)]
pub(crate) fn uvarint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

/// Appends `uvarint(len(s)) s`.
pub(crate) fn put_uvarint_str(buf: &mut Vec<u8>, s: &str) {
    put_uvarint(buf, s.len() as u64);
    buf.extend_from_slice(s.as_bytes());
}

pub(crate) fn put_be32(buf: &mut Vec<u8>, v: u32) {
    buf.extend_from_slice(&v.to_be_bytes());
}

pub(crate) fn put_be64(buf: &mut Vec<u8>, v: u64) {
    buf.extend_from_slice(&v.to_be_bytes());
}

/// CRC32-Castagnoli, the checksum of every Prometheus TSDB file.
pub(crate) fn crc(data: &[u8]) -> u32 {
    crc32c::crc32c(data)
}

/// A cursor over a byte slice that begins at absolute file offset `base`.
#[derive(Debug, Clone)]
pub(crate) struct Decoder<'a> {
    buf: &'a [u8],
    pos: usize,
    base: u64,
}

impl<'a> Decoder<'a> {
    pub(crate) fn new(buf: &'a [u8], base: u64) -> Decoder<'a> {
        Decoder { buf, pos: 0, base }
    }

    /// Absolute file offset of the next byte.
    pub(crate) fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }

    /// Position relative to the start of the slice.
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    pub(crate) fn err(&self, problem: Corruption) -> DecodeError {
        DecodeError::new(self.offset(), problem)
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let avail = self.remaining();
        if n > avail {
            return Err(self.err(Corruption::Truncated {
                need: n as u64,
                available: avail as u64,
            }));
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    pub(crate) fn skip(&mut self, n: usize) -> Result<(), DecodeError> {
        self.bytes(n).map(|_| ())
    }

    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.bytes(1)?[0])
    }

    pub(crate) fn be32(&mut self) -> Result<u32, DecodeError> {
        let b = self.bytes(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(crate) fn be64(&mut self) -> Result<u64, DecodeError> {
        let b = self.bytes(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    /// Reads a Go `binary.Uvarint`: at most 10 bytes, the 10th at most 1.
    pub(crate) fn uvarint(&mut self) -> Result<u64, DecodeError> {
        let start = self.pos;
        let mut v: u64 = 0;
        let mut shift = 0u32;
        loop {
            let Some(&b) = self.buf.get(self.pos) else {
                self.pos = start;
                return Err(self.err(Corruption::Truncated {
                    need: (self.pos - start + 1) as u64,
                    available: self.remaining() as u64,
                }));
            };
            if shift == 63 && b > 1 {
                self.pos = start;
                return Err(self.err(Corruption::VarintOverflow));
            }
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
            shift += 7;
        }
    }

    /// Reads a zig-zag varint (Go's `binary.Varint`).
    pub(crate) fn varint(&mut self) -> Result<i64, DecodeError> {
        let u = self.uvarint()?;
        Ok(((u >> 1) as i64) ^ -((u & 1) as i64))
    }

    /// Reads a uvarint that must fit in `u32`.
    pub(crate) fn uvarint32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        let at = self.offset();
        let v = self.uvarint()?;
        u32::try_from(v).map_err(|_| {
            DecodeError::new(
                at,
                Corruption::OutOfRange {
                    what,
                    value: v,
                    limit: u64::from(u32::MAX),
                },
            )
        })
    }

    /// Reads a uvarint that is used as a length within this buffer.
    pub(crate) fn uvarint_len(&mut self) -> Result<usize, DecodeError> {
        let at = self.offset();
        let v = self.uvarint()?;
        let avail = self.remaining();
        if v > avail as u64 {
            return Err(DecodeError::new(
                at,
                Corruption::Truncated {
                    need: v,
                    available: avail as u64,
                },
            ));
        }
        Ok(v as usize)
    }

    /// Reads `uvarint(len) bytes`.
    pub(crate) fn uvarint_bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.uvarint_len()?;
        self.bytes(n)
    }

    /// Reads `uvarint(len) bytes` and checks the bytes are UTF-8.
    pub(crate) fn uvarint_str(&mut self) -> Result<&'a str, DecodeError> {
        let at = self.offset();
        let b = self.uvarint_bytes()?;
        std::str::from_utf8(b).map_err(|_| DecodeError::new(at, Corruption::InvalidUtf8))
    }
}

/// Converts bytes read from a file into a `&str`, reporting `offset` on failure.
pub(crate) fn utf8_at(b: &[u8], offset: u64) -> Result<&str, DecodeError> {
    std::str::from_utf8(b).map_err(|_| DecodeError::new(offset, Corruption::InvalidUtf8))
}

/// Reads the section at absolute offset `off` of `file`: `len <4b> | body <len> | CRC32 <4b>`,
/// verifies the checksum over the body and returns a decoder over the body.
pub(crate) fn be32_section(file: &[u8], off: u64) -> Result<Decoder<'_>, DecodeError> {
    let start = checked_start(file, off)?;
    let mut d = Decoder::new(&file[start..], off);
    let len = d.be32()? as usize;
    section_body(d, len)
}

/// Like [`be32_section`] but with a uvarint length field (series entries).
pub(crate) fn uvarint_section(file: &[u8], off: u64) -> Result<Decoder<'_>, DecodeError> {
    let start = checked_start(file, off)?;
    let mut d = Decoder::new(&file[start..], off);
    let at = d.offset();
    let len = d.uvarint()?;
    let len = usize::try_from(len).map_err(|_| {
        DecodeError::new(
            at,
            Corruption::OutOfRange {
                what: "section length",
                value: len,
                limit: usize::MAX as u64,
            },
        )
    })?;
    section_body(d, len)
}

fn checked_start(file: &[u8], off: u64) -> Result<usize, DecodeError> {
    match usize::try_from(off) {
        Ok(s) if s <= file.len() => Ok(s),
        _ => Err(DecodeError::new(
            off,
            Corruption::OutOfRange {
                what: "section offset",
                value: off,
                limit: file.len() as u64,
            },
        )),
    }
}

fn section_body(mut d: Decoder<'_>, len: usize) -> Result<Decoder<'_>, DecodeError> {
    let body_off = d.offset();
    if len.checked_add(4).is_none_or(|n| n > d.remaining()) {
        return Err(d.err(Corruption::Truncated {
            need: (len as u64).saturating_add(4),
            available: d.remaining() as u64,
        }));
    }
    let body = d.bytes(len)?;
    let stored = d.be32()?;
    let computed = crc(body);
    if stored != computed {
        return Err(DecodeError::new(
            body_off,
            Corruption::Checksum { stored, computed },
        ));
    }
    Ok(Decoder::new(body, body_off))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn uvarint_round_trip() {
        for v in [
            0u64,
            1,
            127,
            128,
            300,
            16_383,
            16_384,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            let mut b = Vec::new();
            put_uvarint(&mut b, v);
            assert_eq!(b.len(), uvarint_len(v));
            let mut d = Decoder::new(&b, 0);
            assert_eq!(d.uvarint().unwrap(), v);
            assert!(d.is_empty());
        }
    }

    #[test]
    fn varint_matches_go() {
        // Go: binary.PutVarint(-1) = 0x01, 1 = 0x02, -64 = 0x7f, 64 = 0x80 0x01.
        let cases: [(i64, &[u8]); 5] = [
            (0, &[0]),
            (-1, &[1]),
            (1, &[2]),
            (-64, &[0x7f]),
            (64, &[0x80, 0x01]),
        ];
        for (v, want) in cases {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            assert_eq!(b, want, "{v}");
            assert_eq!(Decoder::new(&b, 0).varint().unwrap(), v);
        }
        for v in [i64::MIN, i64::MAX] {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            assert_eq!(Decoder::new(&b, 0).varint().unwrap(), v);
        }
    }

    #[test]
    fn bad_varints_are_errors() {
        let mut d = Decoder::new(&[0x80, 0x80], 10);
        let e = d.uvarint().unwrap_err();
        assert_eq!(e.offset, 10);
        assert!(matches!(e.problem, Corruption::Truncated { .. }));
        let over = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02];
        assert_eq!(
            Decoder::new(&over, 0).uvarint().unwrap_err().problem,
            Corruption::VarintOverflow
        );
    }

    #[test]
    fn sections_check_crc_and_bounds() {
        let mut f = vec![0xAA];
        put_be32(&mut f, 3);
        f.extend_from_slice(b"abc");
        put_be32(&mut f, crc(b"abc"));
        let mut d = be32_section(&f, 1).unwrap();
        assert_eq!(d.bytes(3).unwrap(), b"abc");
        assert_eq!(d.offset(), 8);
        f[6] ^= 1;
        assert!(matches!(
            be32_section(&f, 1).unwrap_err().problem,
            Corruption::Checksum { .. }
        ));
        assert!(matches!(
            be32_section(&f, 100).unwrap_err().problem,
            Corruption::OutOfRange { .. }
        ));
        assert!(matches!(
            be32_section(&f[..9], 1).unwrap_err().problem,
            Corruption::Truncated { .. }
        ));
    }
}
