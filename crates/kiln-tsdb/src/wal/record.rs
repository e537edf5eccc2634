//! Record payloads: series, samples and tombstones, byte-compatible with Prometheus's
//! `tsdb/record` package. See `docs/format/wal.md` for the layouts.
//!
//! Integer encodings (as Prometheus's encoder writes them, not as its format doc's
//! diagrams say):
//! - series: `id` u64 big endian; label count and string lengths unsigned varints;
//! - samples: the first sample's `id` u64 and `t` i64 big endian, then for *every*
//!   sample (the first included, with deltas 0) `id - first.id` and `t - first.t` as
//!   *signed* zig-zag varints (Go's `PutVarint`) and the value's IEEE 754 bits as u64
//!   big endian. Deltas are against the first sample, not the previous one, and may be
//!   negative;
//! - tombstones: `id` u64 big endian, `mint` and `maxt` signed zig-zag varints.
//!
//! Encoders append to a caller's `Vec<u8>`; decoders read a `&[u8]` and refill a
//! caller's `Vec` (cleared first), so buffers are reused across records. Decoders never
//! panic and never allocate more than the input can justify.

use kiln_model::{Labels, LabelsBuilder};

/// The type of a record (its first byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordType {
    Series,
    Samples,
    Tombstones,
    Exemplars,
    /// Memory-mapped chunk markers (only in Prometheus's out-of-order WBL).
    MmapMarkers,
    Metadata,
    HistogramSamples,
    FloatHistogramSamples,
    CustomBucketsHistogramSamples,
    CustomBucketsFloatHistogramSamples,
    /// Any other first byte, or an empty record.
    Unknown(u8),
}

impl RecordType {
    /// The record type of a first byte.
    pub fn from_byte(b: u8) -> RecordType {
        match b {
            1 => RecordType::Series,
            2 => RecordType::Samples,
            3 => RecordType::Tombstones,
            4 => RecordType::Exemplars,
            5 => RecordType::MmapMarkers,
            6 => RecordType::Metadata,
            7 => RecordType::HistogramSamples,
            8 => RecordType::FloatHistogramSamples,
            9 => RecordType::CustomBucketsHistogramSamples,
            10 => RecordType::CustomBucketsFloatHistogramSamples,
            b => RecordType::Unknown(b),
        }
    }

    /// The byte written for this type.
    pub fn to_byte(self) -> u8 {
        match self {
            RecordType::Series => 1,
            RecordType::Samples => 2,
            RecordType::Tombstones => 3,
            RecordType::Exemplars => 4,
            RecordType::MmapMarkers => 5,
            RecordType::Metadata => 6,
            RecordType::HistogramSamples => 7,
            RecordType::FloatHistogramSamples => 8,
            RecordType::CustomBucketsHistogramSamples => 9,
            RecordType::CustomBucketsFloatHistogramSamples => 10,
            RecordType::Unknown(b) => b,
        }
    }

    /// True for the types Kiln decodes (series, samples, tombstones); the others are
    /// skipped on replay.
    pub fn is_decoded(self) -> bool {
        matches!(
            self,
            RecordType::Series | RecordType::Samples | RecordType::Tombstones
        )
    }
}

/// The type of a record; an empty record is `Unknown(255)`, as in Prometheus.
pub fn record_type(rec: &[u8]) -> RecordType {
    rec.first()
        .map_or(RecordType::Unknown(255), |&b| RecordType::from_byte(b))
}

/// A series: its WAL reference and labels.
#[derive(Debug, Clone, PartialEq)]
pub struct RefSeries {
    pub id: u64,
    pub labels: Labels,
}

/// A float sample of the series `id`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RefSample {
    pub id: u64,
    pub t: i64,
    pub v: f64,
}

/// A deletion of the samples of series `id` in `[mint, maxt]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stone {
    pub id: u64,
    pub mint: i64,
    pub maxt: i64,
}

/// Why a record did not decode. `offset` is a byte offset inside the record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("expected a {expected:?} record, got type byte {got}")]
    WrongType { expected: RecordType, got: u8 },
    #[error("record is empty")]
    Empty,
    #[error("record ends inside {what} at byte {offset}")]
    Truncated { what: &'static str, offset: usize },
    #[error("varint for {what} at byte {offset} overflows 64 bits")]
    VarintOverflow { what: &'static str, offset: usize },
    #[error("label {what} at byte {offset} is not valid UTF-8")]
    InvalidUtf8 { what: &'static str, offset: usize },
}

// ---- integer encodings (Go's encoding/binary) ----

/// Appends `x` as an unsigned LEB128 varint (Go's `binary.PutUvarint`).
pub fn put_uvarint(buf: &mut Vec<u8>, mut x: u64) {
    while x >= 0x80 {
        buf.push((x as u8) | 0x80);
        x >>= 7;
    }
    buf.push(x as u8);
}

/// Appends `x` zig-zag encoded as an unsigned varint (Go's `binary.PutVarint`).
pub fn put_varint(buf: &mut Vec<u8>, x: i64) {
    put_uvarint(buf, ((x as u64) << 1) ^ ((x >> 63) as u64));
}

/// A cursor over a record's bytes, decoding Go's encodings.
struct Dec<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Dec<'a> {
    fn remaining(&self) -> usize {
        self.b.len() - self.pos
    }

    fn be64(&mut self, what: &'static str) -> Result<u64, RecordError> {
        match self.b.get(self.pos..self.pos + 8) {
            Some(s) => {
                let mut a = [0u8; 8];
                a.copy_from_slice(s);
                self.pos += 8;
                Ok(u64::from_be_bytes(a))
            }
            None => Err(RecordError::Truncated {
                what,
                offset: self.pos,
            }),
        }
    }

    /// Go's `binary.Uvarint`: at most 10 bytes, the 10th at most 1.
    fn uvarint(&mut self, what: &'static str) -> Result<u64, RecordError> {
        let start = self.pos;
        let mut x = 0u64;
        let mut shift = 0u32;
        for i in 0..10 {
            let Some(&b) = self.b.get(start + i) else {
                return Err(RecordError::Truncated {
                    what,
                    offset: start,
                });
            };
            if b < 0x80 {
                if i == 9 && b > 1 {
                    return Err(RecordError::VarintOverflow {
                        what,
                        offset: start,
                    });
                }
                self.pos = start + i + 1;
                return Ok(x | (u64::from(b) << shift));
            }
            x |= u64::from(b & 0x7f) << shift;
            shift += 7;
        }
        Err(RecordError::VarintOverflow {
            what,
            offset: start,
        })
    }

    fn varint(&mut self, what: &'static str) -> Result<i64, RecordError> {
        let u = self.uvarint(what)?;
        Ok(((u >> 1) as i64) ^ -((u & 1) as i64))
    }

    fn str(&mut self, what: &'static str) -> Result<&'a str, RecordError> {
        let start = self.pos;
        let len = self.uvarint(what)?;
        if len > self.remaining() as u64 {
            return Err(RecordError::Truncated {
                what,
                offset: start,
            });
        }
        let s = &self.b[self.pos..self.pos + len as usize];
        self.pos += len as usize;
        std::str::from_utf8(s).map_err(|_| RecordError::InvalidUtf8 {
            what,
            offset: start,
        })
    }
}

fn check_type(rec: &[u8], expected: RecordType) -> Result<Dec<'_>, RecordError> {
    match rec.first() {
        None => Err(RecordError::Empty),
        Some(&b) if b == expected.to_byte() => Ok(Dec { b: rec, pos: 1 }),
        Some(&b) => Err(RecordError::WrongType { expected, got: b }),
    }
}

// ---- encoders ----

/// Appends a series record. Labels are written in their (sorted) order.
pub fn encode_series(series: &[RefSeries], buf: &mut Vec<u8>) {
    buf.push(RecordType::Series.to_byte());
    for s in series {
        buf.extend_from_slice(&s.id.to_be_bytes());
        put_uvarint(buf, s.labels.len() as u64);
        for l in s.labels.iter() {
            put_uvarint(buf, l.name.len() as u64);
            buf.extend_from_slice(l.name.as_bytes());
            put_uvarint(buf, l.value.len() as u64);
            buf.extend_from_slice(l.value.as_bytes());
        }
    }
}

/// Appends a samples record. An empty slice gives the one type byte, as in Prometheus.
pub fn encode_samples(samples: &[RefSample], buf: &mut Vec<u8>) {
    buf.push(RecordType::Samples.to_byte());
    let Some(first) = samples.first() else {
        return;
    };
    buf.extend_from_slice(&first.id.to_be_bytes());
    buf.extend_from_slice(&first.t.to_be_bytes());
    for s in samples {
        // Go computes int64(ref) - int64(first.Ref) and s.T - first.T, wrapping.
        put_varint(buf, (s.id as i64).wrapping_sub(first.id as i64));
        put_varint(buf, s.t.wrapping_sub(first.t));
        buf.extend_from_slice(&s.v.to_bits().to_be_bytes());
    }
}

/// Appends a tombstones record.
pub fn encode_tombstones(stones: &[Stone], buf: &mut Vec<u8>) {
    buf.push(RecordType::Tombstones.to_byte());
    for s in stones {
        buf.extend_from_slice(&s.id.to_be_bytes());
        put_varint(buf, s.mint);
        put_varint(buf, s.maxt);
    }
}

// ---- decoders ----

/// Decodes records, reusing a label builder between series. Holds no other state.
#[derive(Debug, Default)]
pub struct RecordDecoder {
    builder: LabelsBuilder,
}

/// Reusable output buffers for [`RecordDecoder::decode`].
#[derive(Debug, Default)]
pub struct DecodedRecord {
    pub series: Vec<RefSeries>,
    pub samples: Vec<RefSample>,
    pub tombstones: Vec<Stone>,
}

impl DecodedRecord {
    /// Empties all buffers, keeping their capacity.
    pub fn clear(&mut self) {
        self.series.clear();
        self.samples.clear();
        self.tombstones.clear();
    }
}

impl RecordDecoder {
    pub fn new() -> RecordDecoder {
        RecordDecoder::default()
    }

    /// Decodes a record of any type into `out` (all buffers cleared first) and returns its
    /// type. Types Kiln does not decode (exemplars, metadata, histograms, unknown) are
    /// skipped: `Ok` with every buffer empty. Fuzzing entry point.
    pub fn decode(
        &mut self,
        rec: &[u8],
        out: &mut DecodedRecord,
    ) -> Result<RecordType, RecordError> {
        out.clear();
        let typ = record_type(rec);
        match typ {
            RecordType::Series => self.series(rec, &mut out.series)?,
            RecordType::Samples => decode_samples(rec, &mut out.samples)?,
            RecordType::Tombstones => decode_tombstones(rec, &mut out.tombstones)?,
            _ => {}
        }
        Ok(typ)
    }

    /// Decodes a series record into `out` (cleared first; left empty on error).
    ///
    /// Allocates one [`Labels`] per series (plus the builder's per-pair strings). Pairs
    /// need not be sorted; duplicate names keep the last value and empty values are
    /// dropped, as [`LabelsBuilder`] does.
    pub fn series(&mut self, rec: &[u8], out: &mut Vec<RefSeries>) -> Result<(), RecordError> {
        out.clear();
        let r = self.series_inner(rec, out);
        if r.is_err() {
            out.clear();
        }
        r
    }

    fn series_inner(&mut self, rec: &[u8], out: &mut Vec<RefSeries>) -> Result<(), RecordError> {
        let mut d = check_type(rec, RecordType::Series)?;
        while d.remaining() > 0 {
            let id = d.be64("series id")?;
            let n = d.uvarint("label count")?;
            self.builder.reset();
            // Each pair takes at least two bytes, so a huge count fails on the data.
            for _ in 0..n {
                let name = d.str("label name")?;
                let value = d.str("label value")?;
                self.builder.set(name, value);
            }
            out.push(RefSeries {
                id,
                labels: self.builder.build(),
            });
        }
        Ok(())
    }
}

/// Decodes a series record into `out` (cleared first). Fuzzing entry point. Use a
/// [`RecordDecoder`] to reuse its label builder across records.
pub fn decode_series(rec: &[u8], out: &mut Vec<RefSeries>) -> Result<(), RecordError> {
    RecordDecoder::new().series(rec, out)
}

/// Decodes a samples record into `out` (cleared first; left empty on error). Fuzzing
/// entry point. Does not allocate beyond growing `out`.
pub fn decode_samples(rec: &[u8], out: &mut Vec<RefSample>) -> Result<(), RecordError> {
    out.clear();
    let r = decode_samples_inner(rec, out);
    if r.is_err() {
        out.clear();
    }
    r
}

fn decode_samples_inner(rec: &[u8], out: &mut Vec<RefSample>) -> Result<(), RecordError> {
    let mut d = check_type(rec, RecordType::Samples)?;
    if d.remaining() == 0 {
        return Ok(());
    }
    let base_id = d.be64("first sample id")?;
    let base_t = d.be64("first sample timestamp")? as i64;
    // Each sample takes at least 1 + 1 + 8 bytes.
    out.reserve(d.remaining() / 10);
    while d.remaining() > 0 {
        let did = d.varint("sample id delta")?;
        let dt = d.varint("sample timestamp delta")?;
        let v = d.be64("sample value")?;
        out.push(RefSample {
            id: (base_id as i64).wrapping_add(did) as u64,
            t: base_t.wrapping_add(dt),
            v: f64::from_bits(v),
        });
    }
    Ok(())
}

/// Decodes a tombstones record into `out` (cleared first; left empty on error). Fuzzing
/// entry point.
pub fn decode_tombstones(rec: &[u8], out: &mut Vec<Stone>) -> Result<(), RecordError> {
    out.clear();
    let r = decode_tombstones_inner(rec, out);
    if r.is_err() {
        out.clear();
    }
    r
}

fn decode_tombstones_inner(rec: &[u8], out: &mut Vec<Stone>) -> Result<(), RecordError> {
    let mut d = check_type(rec, RecordType::Tombstones)?;
    while d.remaining() > 0 {
        let id = d.be64("tombstone series id")?;
        let mint = d.varint("tombstone mint")?;
        let maxt = d.varint("tombstone maxt")?;
        out.push(Stone { id, mint, maxt });
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
#[path = "record_tests.rs"]
mod tests;
