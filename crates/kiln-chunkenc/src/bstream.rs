//! Bit-level writer and reader, most significant bit first.
//!
//! The writer appends into a `Vec<u8>` that may already hold a byte-aligned prefix (the
//! chunk header); the reader walks a borrowed `&[u8]` from any bit offset. Bits that are
//! not yet written in the last byte are always zero, so a stream is valid chunk data
//! (zero padding) after every write.
//!
//! Go-compatible varints (`binary.PutVarint` / `PutUvarint`) are written and read
//! through the same bit cursor, exactly as Prometheus writes them byte by byte through
//! its bit stream: they are not byte-aligned by themselves (in an XOR chunk they happen
//! to start on a byte boundary).

use crate::ChunkError;

/// The most bytes a Go varint of a 64-bit value takes.
pub(crate) const MAX_VARINT_LEN: usize = 10;

/// Appends bits to a byte vector.
///
/// Byte-exact with Prometheus's `bstream`, including one quirk that shows in the chunk
/// length: writing a whole byte while byte-aligned leaves an extra, empty byte at the end
/// of the buffer (the next bits go there). So a stream whose last write was an aligned
/// whole byte is one zero byte longer than `ceil(bits / 8)`. Chunks on disk carry that
/// byte, so we keep it too.
#[derive(Debug, Clone, Default)]
pub(crate) struct BitWriter {
    buf: Vec<u8>,
    /// Unused low bits in the last byte of `buf`: 0 means the last byte is full (or the
    /// buffer is empty), 8 means the last byte is the empty byte described above.
    free: u8,
}

impl BitWriter {
    /// A writer that continues after `buf`'s last full byte.
    pub(crate) fn from_aligned(buf: Vec<u8>) -> Self {
        BitWriter { buf, free: 0 }
    }

    /// A writer that continues at bit `bit_len` of `buf`: the unused low bits of the last
    /// byte are cleared and bytes past it are dropped, except that at a byte boundary one
    /// following byte, if present, is kept (zeroed) as the empty tail byte a writer in
    /// that state would have.
    pub(crate) fn resume_at(mut buf: Vec<u8>, bit_len: usize) -> Self {
        let used = (bit_len % 8) as u8;
        if used == 0 {
            if buf.len() > bit_len / 8 {
                buf.truncate(bit_len / 8 + 1);
                if let Some(last) = buf.last_mut() {
                    *last = 0;
                }
                return BitWriter { buf, free: 8 };
            }
            buf.truncate(bit_len / 8);
            return BitWriter { buf, free: 0 };
        }
        buf.truncate(bit_len / 8 + 1);
        let free = 8 - used;
        if let Some(last) = buf.last_mut() {
            *last &= 0xff << free;
        }
        BitWriter { buf, free }
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        &self.buf
    }

    pub(crate) fn len(&self) -> usize {
        self.buf.len()
    }

    pub(crate) fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Makes room for at least `additional` more bytes, exactly that much if it grows.
    pub(crate) fn reserve_exact(&mut self, additional: usize) {
        self.buf.reserve_exact(additional);
    }

    pub(crate) fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.buf
    }

    pub(crate) fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    /// Drops everything after the first `len` bytes; the writer continues byte-aligned.
    pub(crate) fn truncate_aligned(&mut self, len: usize) {
        self.buf.truncate(len);
        self.free = 0;
    }

    /// Number of bits written so far, including any prefix.
    #[cfg(test)]
    pub(crate) fn bit_len(&self) -> usize {
        self.buf.len() * 8 - self.free as usize
    }

    /// Makes sure the last byte has room and returns how many bits it has free (1..=8).
    #[inline]
    fn ensure_space(&mut self) -> u8 {
        if self.free == 0 || self.buf.is_empty() {
            self.buf.push(0);
            self.free = 8;
        }
        self.free
    }

    #[inline]
    fn or_last(&mut self, bits: u8) {
        if let Some(last) = self.buf.last_mut() {
            *last |= bits;
        }
    }

    #[inline]
    pub(crate) fn write_bit(&mut self, bit: bool) {
        let free = self.ensure_space();
        if bit {
            self.or_last(1 << (free - 1));
        }
        self.free = free - 1;
    }

    /// Writes a whole byte at the current bit position.
    #[inline]
    pub(crate) fn write_byte(&mut self, b: u8) {
        let free = self.ensure_space();
        self.or_last((u16::from(b) >> (8 - free)) as u8);
        // The low bits of `b` that did not fit start the next byte; when aligned this is
        // the (empty) tail byte. `free` stays the same.
        self.buf.push((u16::from(b) << free) as u8);
    }

    /// Writes the low `nbits` bits of `value` (0..=64), most significant first.
    #[inline]
    pub(crate) fn write_bits(&mut self, value: u64, nbits: u8) {
        debug_assert!(nbits <= 64);
        let mut n = nbits.min(64);
        if n == 0 {
            return;
        }
        // Left-align, then emit whole bytes as Prometheus does, then the rest.
        let mut v = value << (64 - n);
        while n >= 8 {
            self.write_byte((v >> 56) as u8);
            v = v.checked_shl(8).unwrap_or(0);
            n -= 8;
        }
        if n > 0 {
            self.write_small((v >> (64 - n)) as u8, n);
        }
    }

    /// Writes the low `n` (1..=7) bits of `bits`; the same bytes as `n` single-bit writes.
    #[inline]
    fn write_small(&mut self, bits: u8, n: u8) {
        let free = self.ensure_space();
        if n <= free {
            self.or_last(bits << (free - n));
            self.free = free - n;
        } else {
            let rest = n - free;
            self.or_last(bits >> rest);
            self.buf.push((u16::from(bits) << (8 - rest)) as u8);
            self.free = 8 - rest;
        }
    }

    /// Writes `x` as Go's `binary.PutUvarint` does, byte by byte through the bit cursor.
    pub(crate) fn write_uvarint(&mut self, mut x: u64) {
        while x >= 0x80 {
            self.write_byte((x as u8) | 0x80);
            x >>= 7;
        }
        self.write_byte(x as u8);
    }

    /// Writes `x` as Go's `binary.PutVarint` does (zigzag, then uvarint).
    pub(crate) fn write_varint(&mut self, x: i64) {
        let zz = ((x as u64) << 1) ^ ((x >> 63) as u64);
        self.write_uvarint(zz);
    }
}

/// Reads bits from a borrowed byte slice. Positions are absolute bit offsets into the
/// slice, so errors can name where the data went wrong.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BitReader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> BitReader<'a> {
    /// A reader over `data` starting at bit `pos`.
    pub(crate) fn new(data: &'a [u8], pos: usize) -> Self {
        BitReader { data, pos }
    }

    /// The next bit offset to be read.
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    /// Whole bytes from the one holding the next bit to the end of the data.
    #[inline]
    pub(crate) fn bytes_ahead(&self) -> usize {
        self.data.len().saturating_sub(self.pos / 8)
    }

    /// The next 64 bits, first bit highest, without moving; the low `pos % 8` bits are
    /// zero, so at least 57 are data. Only when [`bytes_ahead`](Self::bytes_ahead) is
    /// at least 8 (else the missing bytes read as zero).
    #[inline]
    pub(crate) fn peek(&self) -> u64 {
        let start = self.pos / 8;
        let mut a = [0u8; 8];
        if let Some(s) = self.data.get(start..start + 8) {
            a.copy_from_slice(s);
        }
        u64::from_be_bytes(a) << (self.pos % 8)
    }

    /// Moves past `n` bits already looked at with [`peek`](Self::peek).
    #[inline]
    pub(crate) fn skip(&mut self, n: usize) {
        self.pos += n;
    }

    /// [`read_bits`](Self::read_bits) for a caller that knows at least 16 bytes lie
    /// ahead (see [`bytes_ahead`](Self::bytes_ahead)), so no bound is checked: up to
    /// 57 bits come from one 8-byte load.
    #[inline]
    pub(crate) fn read_bits_ahead(&mut self, nbits: u8) -> u64 {
        let n = u32::from(nbits.min(64));
        if n == 0 {
            return 0;
        }
        let v = if n <= 57 {
            self.peek() >> (64 - n)
        } else {
            let start = self.pos / 8;
            let mut a = [0u8; 16];
            if let Some(s) = self.data.get(start..start + 16) {
                a.copy_from_slice(s);
            }
            ((u128::from_be_bytes(a) << (self.pos % 8)) >> (128 - n)) as u64
        };
        self.pos += n as usize;
        v
    }

    /// The sample fields are filled in by the caller, which knows them.
    fn truncated(&self) -> ChunkError {
        ChunkError::Truncated {
            offset_bits: self.pos as u64,
            sample: 0,
            num_samples: 0,
        }
    }

    #[inline]
    pub(crate) fn read_bit(&mut self) -> Result<bool, ChunkError> {
        let Some(&byte) = self.data.get(self.pos / 8) else {
            return Err(self.truncated());
        };
        let bit = byte & (0x80 >> (self.pos % 8)) != 0;
        self.pos += 1;
        Ok(bit)
    }

    /// Reads `nbits` bits (0..=64) as the low bits of the result.
    #[inline]
    pub(crate) fn read_bits(&mut self, nbits: u8) -> Result<u64, ChunkError> {
        debug_assert!(nbits <= 64);
        let n = usize::from(nbits.min(64));
        if n == 0 {
            return Ok(0);
        }
        if self.pos + n > self.data.len() * 8 {
            return Err(self.truncated());
        }
        let start = self.pos / 8;
        let shift = (self.pos % 8) as u32;
        // At most 7 + 64 = 71 bits are involved: they lie within 9 bytes, which a u128
        // loaded from 16 bytes (zero-filled past the end) covers.
        let window = match self.data.get(start..start + 16) {
            Some(s) => {
                let mut a = [0u8; 16];
                a.copy_from_slice(s);
                u128::from_be_bytes(a)
            }
            None => {
                let mut a = [0u8; 16];
                let rest = self.data.get(start..).unwrap_or(&[]);
                let k = rest.len().min(16);
                a[..k].copy_from_slice(&rest[..k]);
                u128::from_be_bytes(a)
            }
        };
        let v = ((window << shift) >> (128 - n as u32)) as u64;
        self.pos += n;
        Ok(v)
    }

    #[inline]
    fn read_byte(&mut self) -> Result<u8, ChunkError> {
        Ok(self.read_bits(8)? as u8)
    }

    /// Reads a Go uvarint; fails on truncation or on a value that overflows 64 bits,
    /// like Go's `binary.ReadUvarint`.
    pub(crate) fn read_uvarint(&mut self) -> Result<u64, ChunkError> {
        let start = self.pos as u64;
        let mut x = 0u64;
        let mut s = 0u32;
        for i in 0..MAX_VARINT_LEN {
            let b = self.read_byte()?;
            if b < 0x80 {
                if i == MAX_VARINT_LEN - 1 && b > 1 {
                    return Err(ChunkError::VarintOverflow { offset_bits: start });
                }
                return Ok(x | (u64::from(b) << s));
            }
            x |= u64::from(b & 0x7f) << s;
            s += 7;
        }
        Err(ChunkError::VarintOverflow { offset_bits: start })
    }

    /// Reads a Go (zigzag) varint.
    pub(crate) fn read_varint(&mut self) -> Result<i64, ChunkError> {
        let ux = self.read_uvarint()?;
        let x = (ux >> 1) as i64;
        Ok(if ux & 1 != 0 { !x } else { x })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn bits_round_trip_at_every_alignment() {
        for lead in 0..8u8 {
            let mut w = BitWriter::default();
            w.write_bits(0, lead);
            let fields: &[(u64, u8)] = &[
                (1, 1),
                (0b101, 3),
                (u64::MAX, 64),
                (0x1234, 14),
                (0, 0),
                (0xabcdef, 24),
                (1 << 63, 64),
            ];
            for &(v, n) in fields {
                w.write_bits(v, n);
            }
            w.write_varint(-300);
            w.write_uvarint(u64::MAX);
            w.write_varint(i64::MIN);
            let bytes = w.bytes().to_vec();
            let mut r = BitReader::new(&bytes, lead as usize);
            for &(v, n) in fields {
                let want = if n == 64 { v } else { v & ((1u64 << n) - 1) };
                assert_eq!(r.read_bits(n).unwrap(), want, "lead {lead} n {n}");
            }
            assert_eq!(r.read_varint().unwrap(), -300);
            assert_eq!(r.read_uvarint().unwrap(), u64::MAX);
            assert_eq!(r.read_varint().unwrap(), i64::MIN);
            assert_eq!(r.pos(), w.bit_len());
        }
    }

    #[test]
    fn go_varint_bytes() {
        // Values and encodings as Go's binary.PutVarint/PutUvarint produce them.
        let cases: &[(i64, &[u8])] = &[
            (0, &[0x00]),
            (-1, &[0x01]),
            (1, &[0x02]),
            (63, &[0x7e]),
            (-64, &[0x7f]),
            (64, &[0x80, 0x01]),
            (1000, &[0xd0, 0x0f]),
            (
                i64::MAX,
                &[0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
            ),
            (
                i64::MIN,
                &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
            ),
        ];
        for &(x, want) in cases {
            let mut w = BitWriter::default();
            w.write_varint(x);
            // Plus the empty tail byte of an aligned byte write.
            assert_eq!(&w.bytes()[..want.len()], want, "varint {x}");
            assert_eq!(&w.bytes()[want.len()..], &[0], "varint {x}");
        }
    }

    #[test]
    fn truncated_and_overflowing_reads_fail() {
        let mut r = BitReader::new(&[0xff], 3);
        assert!(matches!(
            r.read_bits(6),
            Err(ChunkError::Truncated { offset_bits: 3, .. })
        ));
        assert_eq!(r.read_bits(5).unwrap(), 0b11111);
        assert!(r.read_bit().is_err());

        let eleven = [0x80u8; 11];
        let mut r = BitReader::new(&eleven, 0);
        assert!(matches!(
            r.read_uvarint(),
            Err(ChunkError::VarintOverflow { offset_bits: 0 })
        ));
        let tenth_too_big = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02];
        let mut r = BitReader::new(&tenth_too_big, 0);
        assert!(matches!(
            r.read_uvarint(),
            Err(ChunkError::VarintOverflow { .. })
        ));
        let mut r = BitReader::new(&[0x80, 0x80], 0);
        assert!(matches!(
            r.read_uvarint(),
            Err(ChunkError::Truncated {
                offset_bits: 16,
                ..
            })
        ));
    }

    #[test]
    fn resume_clears_padding() {
        let w = BitWriter::resume_at(vec![0xff, 0xff, 0xff], 12);
        assert_eq!(w.bytes(), &[0xff, 0xf0]);
        assert_eq!(w.bit_len(), 12);
        let w = BitWriter::resume_at(vec![0xff, 0xff, 0xff, 0xff], 16);
        assert_eq!(w.bytes(), &[0xff, 0xff, 0x00]);
        assert_eq!(w.bit_len(), 16);
        let w = BitWriter::resume_at(vec![0xff, 0xff], 16);
        assert_eq!(w.bytes(), &[0xff, 0xff]);
        assert_eq!(w.bit_len(), 16);
    }

    #[test]
    fn aligned_byte_writes_leave_an_empty_tail_byte() {
        // Prometheus's bstream: an aligned whole-byte write leaves a trailing empty byte.
        let mut w = BitWriter::default();
        w.write_byte(0xab);
        assert_eq!(w.bytes(), &[0xab, 0x00]);
        w.write_bits(0b101, 3);
        assert_eq!(w.bytes(), &[0xab, 0b1010_0000]);
        w.write_byte(0xff);
        assert_eq!(w.bytes(), &[0xab, 0b1011_1111, 0b1110_0000]);
        let mut w = BitWriter::default();
        w.write_bits(0x1234, 16);
        assert_eq!(w.bytes(), &[0x12, 0x34, 0x00]);
        let mut w = BitWriter::default();
        w.write_bits(0x1234, 14);
        assert_eq!(w.bytes(), &[0x48, 0xd0]);
        let mut w = BitWriter::default();
        w.write_bit(true);
        w.write_bits(0xff, 7);
        assert_eq!(w.bytes(), &[0xff]);
    }

    #[test]
    fn small_writes_match_single_bits() {
        for lead in 0..16u8 {
            for n in 1..8u8 {
                for bits in [0u8, 0x7f, 0x55, 0x2a] {
                    let mut a = BitWriter::default();
                    let mut b = BitWriter::default();
                    for w in [&mut a, &mut b] {
                        if lead >= 8 {
                            w.write_byte(0x5a);
                        }
                        w.write_bits(0b1011011, lead % 8);
                    }
                    a.write_bits(u64::from(bits), n);
                    for i in (0..n).rev() {
                        b.write_bit(bits >> i & 1 == 1);
                    }
                    assert_eq!(a.bytes(), b.bytes(), "lead {lead} n {n} bits {bits:#x}");
                    assert_eq!(a.bit_len(), b.bit_len());
                }
            }
        }
    }
}
