//! The XOR ("Gorilla") float chunk, bit-compatible with Prometheus's `EncXOR`.
//!
//! See `docs/format/xor.md` for the layout. In short: a 2-byte big-endian sample count,
//! then sample 0 as `varint(t)` + 64 raw value bits, sample 1 as `uvarint(t - t0)` + an
//! XOR-coded value, and every later sample as a delta-of-delta coded timestamp + an
//! XOR-coded value, zero-padded to a whole byte.

use crate::bstream::{BitReader, BitWriter};
use crate::{ChunkError, HEADER_LEN};

/// Marks "no leading/trailing window chosen yet" in the encoder.
const NO_WINDOW: u8 = 0xff;

/// Initial capacity of a new encoder's buffer, as Prometheus allocates for a chunk.
const INITIAL_CAPACITY: usize = 128;

/// At least the bytes one append can add to the buffer: a sample's bits (at most 145:
/// a 68-bit delta-of-delta and a 77-bit value with a new window, or a 10-byte varint
/// and 64 value bits for the first ones) spread over the partly used last byte, the
/// new ones and the empty tail byte the writer keeps when it ends on a byte boundary.
const MAX_APPEND_BYTES: usize = 24;

/// Appends float samples to an XOR chunk it owns.
///
/// [`bytes`](XorEncoder::bytes) is a complete chunk after every append. Appending never
/// allocates except when the buffer grows (amortized, like `Vec::push`).
#[derive(Debug, Clone)]
pub struct XorEncoder {
    w: BitWriter,
    num: u16,
    t: i64,
    v: u64,
    t_delta: u64,
    leading: u8,
    trailing: u8,
}

impl Default for XorEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl XorEncoder {
    /// An empty chunk (just the zero sample-count header).
    pub fn new() -> Self {
        Self::with_capacity(INITIAL_CAPACITY)
    }

    /// An empty chunk whose buffer has room for `capacity` bytes (at least the header).
    pub fn with_capacity(capacity: usize) -> Self {
        let mut buf = Vec::with_capacity(capacity.max(HEADER_LEN));
        buf.extend_from_slice(&[0; HEADER_LEN]);
        XorEncoder {
            w: BitWriter::from_aligned(buf),
            num: 0,
            t: 0,
            v: 0,
            t_delta: 0,
            leading: NO_WINDOW,
            trailing: 0,
        }
    }

    /// Resumes appending to an existing chunk: decodes it to the end to restore the
    /// encoder state, then continues at the exact bit where the last sample ends (bytes
    /// after that are dropped and padding bits cleared).
    ///
    /// The result appends exactly the bits an encoder that had seen all samples from the
    /// start would append. (Prometheus's own `Appender()` on a decoded chunk differs in
    /// two corner cases: it restarts at the next byte boundary, and if no value window
    /// has been chosen yet it reuses an empty one; both decode the same way.)
    ///
    /// Allocates nothing beyond `bytes`; decoding is `O(samples)`.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, ChunkError> {
        let mut it = XorIterator::new(&bytes);
        while it.next() {}
        if let Some(e) = it.err {
            return Err(e);
        }
        let (num, t, v, t_delta) = (it.read, it.t, it.v, it.t_delta);
        let (leading, trailing) = if it.window_seen {
            (it.leading, it.trailing)
        } else {
            (NO_WINDOW, 0)
        };
        let end = it.r.pos();
        Ok(XorEncoder {
            w: BitWriter::resume_at(bytes, end),
            num,
            t,
            v,
            t_delta,
            leading,
            trailing,
        })
    }

    /// Appends one sample. Timestamps are expected to increase (the format itself also
    /// encodes equal or decreasing ones; it stores wrapping 64-bit differences).
    ///
    /// A chunk holds at most `u16::MAX` samples; appends beyond that are ignored, use
    /// [`try_append`](XorEncoder::try_append) to be told. Allocates only when the buffer
    /// has to grow.
    #[inline]
    pub fn append(&mut self, t: i64, v: f64) {
        let _ = self.try_append(t, v);
    }

    /// Like [`append`](XorEncoder::append), but fails with [`ChunkError::Full`] instead
    /// of ignoring a sample past `u16::MAX`.
    pub fn try_append(&mut self, t: i64, v: f64) -> Result<(), ChunkError> {
        if self.num == u16::MAX {
            return Err(ChunkError::Full { max: u16::MAX });
        }
        let vbits = v.to_bits();
        match self.num {
            0 => {
                self.w.write_varint(t);
                self.w.write_bits(vbits, 64);
            }
            1 => {
                let t_delta = t.wrapping_sub(self.t) as u64;
                self.w.write_uvarint(t_delta);
                self.write_value(vbits);
                self.t_delta = t_delta;
            }
            _ => {
                let t_delta = t.wrapping_sub(self.t) as u64;
                let dod = t_delta.wrapping_sub(self.t_delta) as i64;
                self.write_dod(dod);
                self.write_value(vbits);
                self.t_delta = t_delta;
            }
        }
        self.t = t;
        self.v = vbits;
        self.num += 1;
        let count = self.num.to_be_bytes();
        if let Some(h) = self.w.bytes_mut().get_mut(..HEADER_LEN) {
            h.copy_from_slice(&count);
        }
        Ok(())
    }

    #[inline]
    fn write_dod(&mut self, dod: i64) {
        // Each bucket holds -(2^(n-1) - 1) ..= 2^(n-1): the range is shifted by one
        // against two's complement, matching how the reader sign-extends.
        let fits = |n: u32| -((1i64 << (n - 1)) - 1) <= dod && dod <= 1i64 << (n - 1);
        let w = &mut self.w;
        if dod == 0 {
            w.write_bit(false);
        } else if fits(14) {
            w.write_bits(0b10, 2);
            w.write_bits(dod as u64, 14);
        } else if fits(17) {
            w.write_bits(0b110, 3);
            w.write_bits(dod as u64, 17);
        } else if fits(20) {
            w.write_bits(0b1110, 4);
            w.write_bits(dod as u64, 20);
        } else {
            w.write_bits(0b1111, 4);
            w.write_bits(dod as u64, 64);
        }
    }

    #[inline]
    fn write_value(&mut self, vbits: u64) {
        let delta = vbits ^ self.v;
        let w = &mut self.w;
        if delta == 0 {
            w.write_bit(false);
            return;
        }
        w.write_bit(true);
        // The 5-bit field caps leading zeros at 31.
        let leading = (delta.leading_zeros() as u8).min(31);
        let trailing = delta.trailing_zeros() as u8;
        if self.leading != NO_WINDOW && leading >= self.leading && trailing >= self.trailing {
            w.write_bit(false);
            w.write_bits(delta >> self.trailing, 64 - self.leading - self.trailing);
            return;
        }
        self.leading = leading;
        self.trailing = trailing;
        let sigbits = 64 - leading - trailing;
        w.write_bit(true);
        w.write_bits(u64::from(leading), 5);
        // 64 significant bits do not fit in 6 bits and are written as 0; 0 itself never
        // occurs (that is the unchanged-value case).
        w.write_bits(u64::from(sigbits), 6);
        w.write_bits(delta >> trailing, sigbits);
    }

    /// Number of samples appended.
    pub fn num_samples(&self) -> u16 {
        self.num
    }

    /// Whether the chunk has reached `u16::MAX` samples.
    pub fn is_full(&self) -> bool {
        self.num == u16::MAX
    }

    /// Grows the buffer, when the next append might not fit, by a quarter of what it
    /// holds (at least [`MAX_APPEND_BYTES`]) instead of doubling it.
    ///
    /// For encoders that stay resident, one per series (the head's open chunks): a
    /// doubled buffer is on average a quarter empty and right after a doubling half
    /// empty, memory paid for every series. Called before each append, this keeps the
    /// slack under a quarter at the cost of a few more (small) reallocations per chunk.
    /// Sizes are picked 8 bytes short of a multiple of 16, which is what glibc's malloc
    /// hands out anyway (16-byte granules, one 8-byte header).
    #[inline]
    pub fn reserve_tight(&mut self) {
        let (len, cap) = (self.w.len(), self.w.capacity());
        if cap - len >= MAX_APPEND_BYTES {
            return;
        }
        let want = len + (len / 4).max(MAX_APPEND_BYTES);
        let want = (want + 8).next_multiple_of(16) - 8;
        self.w.reserve_exact(want - len);
    }

    /// Bytes the buffer has allocated (its capacity), for memory accounting.
    pub fn allocated_bytes(&self) -> usize {
        self.w.capacity()
    }

    /// The complete chunk data (header included) as it stands now.
    pub fn bytes(&self) -> &[u8] {
        self.w.bytes()
    }

    /// The chunk data, giving up the encoder.
    pub fn into_bytes(self) -> Vec<u8> {
        self.w.into_bytes()
    }

    /// Empties the chunk, keeping the buffer's allocation.
    pub fn reset(&mut self) {
        self.w.truncate_aligned(HEADER_LEN);
        self.w.bytes_mut().fill(0);
        let w = std::mem::take(&mut self.w);
        *self = XorEncoder {
            w,
            num: 0,
            t: 0,
            v: 0,
            t_delta: 0,
            leading: NO_WINDOW,
            trailing: 0,
        };
    }
}

/// A cursor over the samples of an XOR chunk.
///
/// Borrows the bytes and never allocates. After [`next`](XorIterator::next) returns
/// `false`, [`err`](XorIterator::err) tells whether the end was reached or the data was
/// bad; samples decoded before an error are still valid.
#[derive(Debug, Clone)]
pub struct XorIterator<'a> {
    r: BitReader<'a>,
    total: u16,
    read: u16,
    t: i64,
    v: u64,
    t_delta: u64,
    leading: u8,
    trailing: u8,
    /// Whether a '11' control block has set `leading`/`trailing`.
    window_seen: bool,
    err: Option<ChunkError>,
}

impl<'a> XorIterator<'a> {
    /// A cursor before the first sample of `bytes` (chunk data, header included).
    pub fn new(bytes: &'a [u8]) -> Self {
        let mut it = XorIterator {
            r: BitReader::new(&[], 0),
            total: 0,
            read: 0,
            t: 0,
            v: 0,
            t_delta: 0,
            leading: 0,
            trailing: 0,
            window_seen: false,
            err: None,
        };
        it.reset(bytes);
        it
    }

    /// Restarts the cursor on other chunk data, without allocating.
    pub fn reset(&mut self, bytes: &'a [u8]) {
        let (total, err) = match crate::num_samples(bytes) {
            Ok(n) => (n, None),
            Err(e) => (0, Some(e)),
        };
        *self = XorIterator {
            r: BitReader::new(bytes, HEADER_LEN * 8),
            total,
            read: 0,
            t: 0,
            v: 0,
            t_delta: 0,
            // A reused window before any '11' block is the full 64 bits, as in
            // Prometheus's reader.
            leading: 0,
            trailing: 0,
            window_seen: false,
            err,
        };
    }

    /// Advances to the next sample. Returns `false` at the end of the chunk or on bad
    /// data (then [`err`](XorIterator::err) is set and stays set).
    // A cursor (`next`/`at`/`err`) rather than `Iterator`, as in every Kiln sample cursor.
    #[allow(clippy::should_implement_trait)]
    #[inline]
    pub fn next(&mut self) -> bool {
        if self.err.is_some() || self.read == self.total {
            return false;
        }
        match self.step() {
            Ok(()) => {
                self.read += 1;
                true
            }
            Err(mut e) => {
                if let ChunkError::Truncated {
                    sample,
                    num_samples,
                    ..
                } = &mut e
                {
                    *sample = self.read;
                    *num_samples = self.total;
                }
                self.err = Some(e);
                false
            }
        }
    }

    /// Advances to the first sample with timestamp `>= t`; returns whether there is one.
    /// Never moves backwards: if the current sample already qualifies it stays (but a
    /// fresh cursor always advances onto its first sample).
    pub fn seek(&mut self, t: i64) -> bool {
        if self.err.is_some() {
            return false;
        }
        while self.read == 0 || self.t < t {
            if !self.next() {
                return false;
            }
        }
        true
    }

    /// The current sample. Only meaningful after `next` or `seek` returned `true`.
    #[inline]
    pub fn at(&self) -> (i64, f64) {
        (self.t, f64::from_bits(self.v))
    }

    /// The decoding error, if the data was truncated or corrupt.
    pub fn err(&self) -> Option<&ChunkError> {
        self.err.as_ref()
    }

    /// Decodes the next sample into the cursor state; on error the state is unchanged.
    #[inline]
    fn step(&mut self) -> Result<(), ChunkError> {
        if self.read >= 2 && self.r.bytes_ahead() >= FAST_LOOKAHEAD {
            self.step_ahead()
        } else {
            self.step_bitwise()
        }
    }

    /// [`step`](Self::step) field by field and bit by bit, every read bounds-checked.
    fn step_bitwise(&mut self) -> Result<(), ChunkError> {
        let r = &mut self.r;
        if self.read == 0 {
            let t = r.read_varint()?;
            let v = r.read_bits(64)?;
            self.t = t;
            self.v = v;
            return Ok(());
        }
        let t_delta = if self.read == 1 {
            r.read_uvarint()?
        } else {
            let dod = read_dod(r)?;
            (self.t_delta as i64).wrapping_add(dod) as u64
        };
        self.read_value()?;
        self.t_delta = t_delta;
        self.t = self.t.wrapping_add(t_delta as i64);
        Ok(())
    }

    /// [`step`](Self::step) for the third and later samples when [`FAST_LOOKAHEAD`]
    /// bytes lie ahead, so no field can run past the data: each field's control bits
    /// are read from one look at the next 64 bits instead of bit by bit, and no read
    /// checks bounds. The same fields, decoded to the same values; a bad value window
    /// is the one error left, reported at the same offset. (Choosing widths by
    /// selects instead of branches measured no faster: what is left is the chain of
    /// loads and shifts that each field's position depends on.)
    #[inline]
    fn step_ahead(&mut self) -> Result<(), ChunkError> {
        let r = &mut self.r;
        // Delta of delta: '0', '10' + 14 bits, '110' + 17, '1110' + 20, '1111' + 64.
        let p = r.peek();
        let ones = (!p).leading_zeros().min(4) as usize;
        let dod = match ones {
            0 => {
                r.skip(1);
                0
            }
            4 => {
                r.skip(4);
                r.read_bits_ahead(64) as i64
            }
            _ => {
                let size = [0, 14, 17, 20][ones];
                let bits = (p << (ones + 1)) >> (64 - size);
                r.skip(ones + 1 + size);
                dod_from_bits(bits, size as u8)
            }
        };
        let t_delta = (self.t_delta as i64).wrapping_add(dod) as u64;

        // Value: '0' unchanged, '10' + the last window's bits, '11' + 5 bits of leading
        // zeros + 6 of length (0 meaning 64) + the bits.
        let p = r.peek();
        if p >> 63 == 0 {
            r.skip(1);
        } else {
            let new_window = p & (1 << 62) != 0;
            let (leading, sigbits) = if !new_window {
                r.skip(2);
                (self.leading, 64 - self.leading - self.trailing)
            } else {
                let leading = ((p >> 57) & 0x1f) as u8;
                let sigbits = match ((p >> 51) & 0x3f) as u8 {
                    0 => 64,
                    n => n,
                };
                if u16::from(leading) + u16::from(sigbits) > 64 {
                    return Err(ChunkError::BadXorWindow {
                        offset_bits: r.pos() as u64 + 2,
                        leading,
                        sigbits,
                    });
                }
                r.skip(13);
                (leading, sigbits)
            };
            let bits = r.read_bits_ahead(sigbits);
            let trailing = 64 - leading - sigbits;
            self.v ^= bits.checked_shl(u32::from(trailing)).unwrap_or(0);
            self.leading = leading;
            self.trailing = trailing;
            self.window_seen |= new_window;
        }
        self.t_delta = t_delta;
        self.t = self.t.wrapping_add(t_delta as i64);
        Ok(())
    }

    #[inline]
    fn read_value(&mut self) -> Result<(), ChunkError> {
        let r = &mut self.r;
        if !r.read_bit()? {
            return Ok(());
        }
        let new_window = r.read_bit()?;
        let (leading, sigbits) = if !new_window {
            (self.leading, 64 - self.leading - self.trailing)
        } else {
            let at = r.pos() as u64;
            let leading = r.read_bits(5)? as u8;
            let sigbits = match r.read_bits(6)? as u8 {
                0 => 64,
                n => n,
            };
            if u16::from(leading) + u16::from(sigbits) > 64 {
                return Err(ChunkError::BadXorWindow {
                    offset_bits: at,
                    leading,
                    sigbits,
                });
            }
            (leading, sigbits)
        };
        let bits = r.read_bits(sigbits)?;
        let trailing = 64 - leading - sigbits;
        self.v ^= bits.checked_shl(u32::from(trailing)).unwrap_or(0);
        self.leading = leading;
        self.trailing = trailing;
        self.window_seen |= new_window;
        Ok(())
    }
}

/// Reads a delta-of-delta timestamp field (see `XorEncoder::write_dod`).
#[inline]
fn read_dod(r: &mut BitReader<'_>) -> Result<i64, ChunkError> {
    let mut prefix = 0u8;
    while prefix < 4 && r.read_bit()? {
        prefix += 1;
    }
    let size: u8 = match prefix {
        0 => return Ok(0),
        1 => 14,
        2 => 17,
        3 => 20,
        _ => return Ok(r.read_bits(64)? as i64),
    };
    let bits = r.read_bits(size)?;
    Ok(dod_from_bits(bits, size))
}

/// A `size`-bit delta-of-delta field's value: values above 2^(size-1) are negative
/// (see the writer's bucket ranges).
#[inline]
fn dod_from_bits(bits: u64, size: u8) -> i64 {
    if bits > 1 << (size - 1) {
        bits as i64 - (1i64 << size)
    } else {
        bits as i64
    }
}

/// Bytes that must lie ahead of the read position for [`XorIterator::step_ahead`]: a
/// sample takes at most 68 bits of timestamp and 13 of value header before its value
/// bits start (within 11 bytes), and the value is read with a 16-byte load.
const FAST_LOOKAHEAD: usize = 32;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Bits the third sample's timestamp field takes for a given delta-of-delta.
    fn dod_bits(dod: i64) -> usize {
        let mut e = XorEncoder::new();
        e.append(0, 1.0);
        e.append(1000, 1.0);
        let before = e.w.bit_len();
        e.append(2000 + dod, 1.0);
        e.w.bit_len() - before - 1 // minus the unchanged-value bit
    }

    #[test]
    fn dod_buckets_and_their_edges() {
        let cases: &[(i64, usize)] = &[
            (0, 1),
            (1, 16),
            (-1, 16),
            (8191, 16),
            (-8191, 16),
            (8192, 16), // the positive edge is one further than two's complement allows
            (-8192, 20),
            (8193, 20),
            (65536, 20),
            (-65535, 20),
            (-65536, 24),
            (65537, 24),
            (524288, 24),
            (-524287, 24),
            (-524288, 68),
            (524289, 68),
            (i64::MAX / 4, 68),
        ];
        for &(dod, bits) in cases {
            assert_eq!(dod_bits(dod), bits, "dod {dod}");
            let mut e = XorEncoder::new();
            for t in [0, 1000, 2000 + dod, 3000 + 2 * dod] {
                e.append(t, 1.0);
            }
            let mut it = XorIterator::new(e.bytes());
            let mut ts = Vec::new();
            while it.next() {
                ts.push(it.at().0);
            }
            assert_eq!(ts, [0, 1000, 2000 + dod, 3000 + 2 * dod], "dod {dod}");
        }
    }

    /// Steps through `bytes` bit by bit only, as `next` would without the look-ahead.
    fn decode_bitwise(bytes: &[u8]) -> (Vec<(i64, u64)>, Option<ChunkError>) {
        let mut it = XorIterator::new(bytes);
        let mut out = Vec::new();
        while it.err.is_none() && it.read < it.total {
            match it.step_bitwise() {
                Ok(()) => {
                    it.read += 1;
                    out.push((it.t, it.v));
                }
                Err(e) => it.err = Some(e),
            }
        }
        (out, it.err)
    }

    fn decode(bytes: &[u8]) -> (Vec<(i64, u64)>, Option<ChunkError>) {
        let mut it = XorIterator::new(bytes);
        let mut out = Vec::new();
        while it.next() {
            out.push((it.t, it.v));
        }
        (out, it.err)
    }

    #[test]
    fn look_ahead_decodes_what_bitwise_reading_does() {
        // Every timestamp bucket and every kind of value field, many samples long so
        // most go through the look-ahead path.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let dods = [0, 1, -8192, 8192, 65536, -65536, 524288, -524288, 1 << 40];
        let mut e = XorEncoder::new();
        let (mut t, mut delta, mut v) = (0i64, 15_000i64, 1.0f64);
        for i in 0..2000 {
            let dod = dods[(next() % dods.len() as u64) as usize];
            delta = (delta + dod).max(1);
            t += delta;
            v = match i % 5 {
                0 => v,
                1 => v + 1.0,
                2 => f64::from_bits(next()),
                3 => f64::from_bits(v.to_bits() ^ (next() & 0xffff)),
                _ => f64::from_bits(v.to_bits() ^ 1),
            };
            e.append(t, v);
        }
        let want = decode_bitwise(e.bytes());
        assert_eq!(want.0.len(), 2000);
        assert_eq!(decode(e.bytes()), want);

        // A bad value window past the first samples, with plenty of bytes after it: the
        // same error at the same offset either way.
        let mut w = BitWriter::default();
        w.write_bits(3, 16);
        w.write_varint(1_000);
        w.write_bits(1.5f64.to_bits(), 64);
        w.write_uvarint(15);
        w.write_bit(false);
        w.write_bit(false); // dod 0
        w.write_bits(0b11, 2);
        let at = w.bit_len() as u64;
        w.write_bits(31, 5);
        w.write_bits(40, 6);
        w.write_bits(0, 64);
        for _ in 0..8 {
            w.write_bits(u64::MAX, 64);
        }
        let bytes = w.into_bytes();
        let want = decode_bitwise(&bytes);
        assert_eq!(want.0.len(), 2);
        assert_eq!(
            want.1,
            Some(ChunkError::BadXorWindow {
                offset_bits: at,
                leading: 31,
                sigbits: 40
            })
        );
        assert_eq!(decode(&bytes), want);
    }

    #[test]
    fn leading_zeros_are_capped_at_31() {
        let mut e = XorEncoder::new();
        e.append(0, f64::from_bits(0));
        e.append(1, f64::from_bits(1)); // 63 leading zeros -> written as 31, 33 sigbits
        assert_eq!((e.leading, e.trailing), (31, 0));
        let mut it = XorIterator::new(e.bytes());
        assert!(it.next() && it.next());
        assert_eq!(it.at().1.to_bits(), 1);
    }
}
