//! Chunks written by real promtool (2.42) decode to what `promtool tsdb dump` printed,
//! and re-encoding their samples gives the identical bytes.
//!
//! Fixture: `tests/fixtures/promtool_chunks.bin` (a block's `chunks/000001` segment) and
//! `promtool_dump.txt`, both made by `tests/fixtures/gen_promtool_fixture.py`.

#![allow(clippy::unwrap_used)]

use kiln_chunkenc::{Encoding, XorEncoder, XorIterator};

const SEGMENT: &[u8] = include_bytes!("fixtures/promtool_chunks.bin");
const DUMP: &str = include_str!("fixtures/promtool_dump.txt");

/// Splits a chunk segment file into (encoding, data) pairs.
fn chunks(seg: &[u8]) -> Vec<(u8, &[u8])> {
    assert_eq!(&seg[..4], &[0x85, 0xbd, 0x40, 0xdd], "magic");
    assert_eq!(seg[4], 1, "version");
    let mut rest = &seg[8..];
    let mut out = Vec::new();
    while !rest.is_empty() {
        let (mut len, mut shift, mut i) = (0usize, 0, 0);
        loop {
            let b = rest[i];
            len |= ((b & 0x7f) as usize) << shift;
            shift += 7;
            i += 1;
            if b < 0x80 {
                break;
            }
        }
        let enc = rest[i];
        let data = &rest[i + 1..i + 1 + len];
        let crc = &rest[i + 1 + len..i + 5 + len];
        assert_eq!(crc.len(), 4);
        out.push((enc, data));
        rest = &rest[i + 5 + len..];
    }
    out
}

#[test]
fn promtool_chunks_decode_and_reencode_bit_exact() {
    let chunks = chunks(SEGMENT);
    assert!(chunks.len() >= 5, "{} chunks", chunks.len());

    let mut decoded = Vec::new();
    let mut it = XorIterator::new(&[]);
    for (n, &(enc, data)) in chunks.iter().enumerate() {
        assert_eq!(Encoding::from_u8(enc), Some(Encoding::Xor));
        it.reset(data);
        let mut enc = XorEncoder::new();
        while it.next() {
            let (t, v) = it.at();
            decoded.push((t, v));
            enc.append(t, v);
        }
        assert!(it.err().is_none(), "chunk {n}: {:?}", it.err());
        assert_eq!(
            enc.bytes(),
            data,
            "chunk {n}: re-encoding differs from promtool's bytes"
        );
    }

    let want: Vec<(i64, f64)> = DUMP
        .lines()
        .map(|l| {
            let mut f = l.rsplitn(3, ' ');
            let t: i64 = f.next().unwrap().parse().unwrap();
            let v: f64 = f.next().unwrap().parse().unwrap();
            (t, v)
        })
        .collect();
    assert_eq!(decoded.len(), want.len());
    for (i, (got, want)) in decoded.iter().zip(&want).enumerate() {
        assert_eq!(got.0, want.0, "sample {i}");
        if want.1.is_nan() {
            // Go's math.NaN(), which promtool stores for "NaN".
            assert_eq!(got.1.to_bits(), 0x7ff8_0000_0000_0001, "sample {i}");
        } else {
            assert_eq!(
                got.1.to_bits(),
                want.1.to_bits(),
                "sample {i}: {} vs {}",
                got.1,
                want.1
            );
        }
    }
}
