//! XOR chunk: fixtures, table-driven round trips, seek, bad input, properties.

#![allow(clippy::unwrap_used)]

use kiln_chunkenc::{
    ChunkError, Encoding, SAMPLES_PER_CHUNK, XorEncoder, XorIterator, num_samples,
};
use proptest::prelude::*;

const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

fn encode(samples: &[(i64, u64)]) -> Vec<u8> {
    let mut e = XorEncoder::new();
    for &(t, v) in samples {
        e.append(t, f64::from_bits(v));
    }
    e.into_bytes()
}

/// Decodes all samples as (t, value bits), with the error if any.
fn decode(bytes: &[u8]) -> (Vec<(i64, u64)>, Option<ChunkError>) {
    let mut it = XorIterator::new(bytes);
    let mut out = Vec::new();
    while it.next() {
        let (t, v) = it.at();
        out.push((t, v.to_bits()));
    }
    (out, it.err().cloned())
}

/// Encodes `samples`, checks the decode gives identical bits, and that reused encoders
/// and iterators (run twice, to catch leaked state) and resumed encoders agree.
fn check(name: &str, samples: &[(i64, u64)]) {
    let bytes = encode(samples);
    assert_eq!(
        num_samples(&bytes).unwrap() as usize,
        samples.len(),
        "{name}: header"
    );
    let (got, err) = decode(&bytes);
    assert_eq!(err, None, "{name}");
    assert_eq!(got, samples, "{name}: round trip");

    // A reset encoder and a reset iterator behave like fresh ones, twice over.
    let mut enc = XorEncoder::new();
    let mut outs = Vec::new();
    for round in 0..2 {
        enc.append(-3, 2.0);
        enc.append(9, 7.0);
        enc.reset();
        assert_eq!(enc.num_samples(), 0);
        assert_eq!(enc.bytes(), &[0, 0]);
        for &(t, v) in samples {
            enc.append(t, f64::from_bits(v));
            assert_eq!(num_samples(enc.bytes()).unwrap(), enc.num_samples());
        }
        assert_eq!(
            enc.bytes(),
            &bytes[..],
            "{name}: reused encoder, round {round}"
        );
        outs.push(enc.bytes().to_vec());
    }
    let other = encode(&[(5, 1.5f64.to_bits()), (7, 0), (100, u64::MAX)]);
    let mut it = XorIterator::new(&other);
    for (round, out) in outs.iter().enumerate() {
        while it.next() {}
        it.reset(out);
        let mut n = 0;
        while it.next() {
            let (t, v) = it.at();
            assert_eq!(
                (t, v.to_bits()),
                samples[n],
                "{name}: reused iterator, round {round}"
            );
            n += 1;
        }
        assert_eq!(n, samples.len());
        assert!(it.err().is_none());
    }

    // Resuming at any split point continues with the same bits.
    for split in 0..=samples.len().min(12) {
        let mut e = XorEncoder::from_bytes(encode(&samples[..split])).unwrap();
        assert_eq!(e.num_samples() as usize, split);
        for &(t, v) in &samples[split..] {
            e.append(t, f64::from_bits(v));
        }
        assert_eq!(e.bytes(), &bytes[..], "{name}: resumed after {split}");
    }
}

fn floats(vals: &[f64]) -> Vec<u64> {
    vals.iter().map(|v| v.to_bits()).collect()
}

fn with_times(ts: &[i64], vals: &[u64]) -> Vec<(i64, u64)> {
    ts.iter()
        .zip(vals.iter().cycle())
        .map(|(&t, &v)| (t, v))
        .collect()
}

#[test]
fn known_fixture_three_samples() {
    // (1000, 1.0), (2000, 2.0), (3000, 3.0). Derivation:
    //   00 03                    sample count 3, big endian
    //   d0 0f                    varint(1000): zigzag 2000 = 0b1111_1010000 -> d0 0f
    //   3f f0 00 00 00 00 00 00  bits of 1.0
    //   e8 07                    uvarint(1000) = 0b111_1101000 -> e8 07
    //   2.0 ^ 1.0 = 0x7ff0_0000_0000_0000: 1 leading zero, 52 trailing, 11 significant:
    //     1 1 00001 001011 11111111111            -> c2 5f ff
    //   t delta unchanged: dod 0 -> 0
    //   3.0 ^ 2.0 = 0x0008_0000_0000_0000: 12 leading, 51 trailing; 51 < 52, so a new
    //     window: 1 1 01100 000001 1
    //   0 11 01100 000001 1 + 1 padding bit 0      -> 6c 06
    // promtool 2.42 `tsdb create-blocks-from openmetrics` wrote exactly these 19 bytes.
    let want: &[u8] = &[
        0x00, 0x03, 0xd0, 0x0f, 0x3f, 0xf0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xe8, 0x07, 0xc2,
        0x5f, 0xff, 0x6c, 0x06,
    ];
    let mut e = XorEncoder::new();
    e.append(1000, 1.0);
    e.append(2000, 2.0);
    e.append(3000, 3.0);
    assert_eq!(e.bytes(), want);
    let (got, err) = decode(want);
    assert_eq!(err, None);
    assert_eq!(
        got,
        [
            (1000, 1f64.to_bits()),
            (2000, 2f64.to_bits()),
            (3000, 3f64.to_bits())
        ]
    );
}

#[test]
fn empty_chunk() {
    let e = XorEncoder::new();
    assert_eq!(e.bytes(), &[0, 0]);
    let (got, err) = decode(e.bytes());
    assert!(got.is_empty() && err.is_none());
    let e = XorEncoder::from_bytes(vec![0, 0]).unwrap();
    assert_eq!(e.num_samples(), 0);
}

#[test]
fn round_trip_table() {
    let special = floats(&[
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        0.0,
        -0.0,
        f64::MIN_POSITIVE,
        f64::MAX,
        f64::MIN,
        5e-324,
        1.0,
    ]);
    let odd_nans = vec![
        STALE_NAN_BITS,
        0x7ff8_0000_0000_0001,
        STALE_NAN_BITS,
        0xfff8_0000_0000_0000,
        0x7ff0_0000_0000_0001,
    ];
    let regular: Vec<i64> = (0..SAMPLES_PER_CHUNK as i64)
        .map(|i| 1_700_000_000_000 + i * 15_000)
        .collect();
    let gpu: Vec<u64> = (0..SAMPLES_PER_CHUNK)
        .map(|i| (((i * 37) % 101) as f64 * 0.25 + 40.0).to_bits())
        .collect();
    let counter: Vec<u64> = (0..SAMPLES_PER_CHUNK)
        .map(|i| ((i * i * 3) as f64).to_bits())
        .collect();

    let cases: Vec<(&str, Vec<(i64, u64)>)> = vec![
        ("one sample", vec![(1000, 1f64.to_bits())]),
        ("one sample, negative t", vec![(-1, STALE_NAN_BITS)]),
        ("two samples", vec![(0, 0), (1, u64::MAX)]),
        ("120 regular gauge", with_times(&regular, &gpu)),
        ("120 counter", with_times(&regular, &counter)),
        ("120 constant", with_times(&regular, &floats(&[42.0]))),
        ("special values", with_times(&regular[..30], &special)),
        (
            "nan payloads and stale marker",
            with_times(&regular[..10], &odd_nans),
        ),
        (
            "stale after value",
            with_times(
                &[10, 20, 30, 40],
                &[
                    1f64.to_bits(),
                    STALE_NAN_BITS,
                    STALE_NAN_BITS,
                    2f64.to_bits(),
                ],
            ),
        ),
        (
            "i64 extremes",
            with_times(
                &[i64::MIN, i64::MIN + 1, 0, i64::MAX - 1, i64::MAX],
                &special,
            ),
        ),
        (
            "max then min (wrapping)",
            with_times(&[i64::MAX, i64::MIN, i64::MAX, i64::MIN], &special),
        ),
        (
            "decreasing timestamps",
            with_times(&[100, 50, -50, -1000, -1001, -1001, 7], &special),
        ),
        ("equal timestamps", with_times(&[5, 5, 5, 5], &special)),
        (
            "dod bucket edges",
            with_times(
                &dod_series(&[
                    0,
                    1,
                    -1,
                    8191,
                    -8191,
                    8192,
                    -8192,
                    8193,
                    65535,
                    -65535,
                    65536,
                    -65536,
                    65537,
                    524287,
                    -524287,
                    524288,
                    -524288,
                    524289,
                    1 << 40,
                    -(1 << 40),
                    i64::MAX / 4,
                ]),
                &special,
            ),
        ),
        (
            "value windows",
            with_times(
                &regular[..12],
                &[
                    0,
                    1,
                    3,
                    1 << 63,
                    (1 << 63) | 1,
                    u64::MAX,
                    0x00ff_ff00_0000_0000,
                    0x0000_0000_ffff_0000,
                    0x0001_0000_0000_0000,
                    0x8000_0000_0000_0001,
                    0,
                    0,
                ],
            ),
        ),
    ];
    for (name, samples) in &cases {
        check(name, samples);
    }
}

/// Timestamps whose deltas-of-deltas from the third sample on are `dods`.
fn dod_series(dods: &[i64]) -> Vec<i64> {
    let mut ts = vec![1_000_000_000, 1_000_010_000];
    let mut delta = 10_000i64;
    for &d in dods {
        delta += d;
        let last = ts[ts.len() - 1];
        ts.push(last + delta);
    }
    ts
}

#[test]
fn seek() {
    let samples: Vec<(i64, u64)> = (0..10).map(|i| (i * 10, (i as f64).to_bits())).collect();
    let bytes = encode(&samples);
    let mut it = XorIterator::new(&bytes);
    // A fresh cursor lands on the first sample even when t is earlier.
    assert!(it.seek(-100));
    assert_eq!(it.at().0, 0);
    assert!(it.seek(0));
    assert_eq!(it.at().0, 0);
    assert!(it.seek(35));
    assert_eq!(it.at(), (40, 4.0));
    // Never backwards.
    assert!(it.seek(10));
    assert_eq!(it.at().0, 40);
    assert!(it.seek(40));
    assert_eq!(it.at().0, 40);
    assert!(it.next());
    assert_eq!(it.at().0, 50);
    assert!(it.seek(90));
    assert_eq!(it.at(), (90, 9.0));
    assert!(!it.seek(91));
    assert!(it.err().is_none());
    assert!(!it.next());

    let mut it = XorIterator::new(&bytes);
    assert!(!it.seek(1000));
    let mut it = XorIterator::new(&[0, 0]);
    assert!(!it.seek(i64::MIN));
}

#[test]
fn truncated_chunks_error_with_offset() {
    let samples: Vec<(i64, u64)> = (0..40)
        .map(|i| (i * 1000 + (i % 3) * 7, ((i * 13) as f64 / 7.0).to_bits()))
        .collect();
    let bytes = encode(&samples);
    for cut in 0..bytes.len() {
        let short = &bytes[..cut];
        let (got, err) = decode(short);
        assert!(
            samples.starts_with(&got),
            "cut {cut}: decoded samples must be a prefix"
        );
        if cut < 2 {
            assert_eq!(err, Some(ChunkError::BadHeader { len: cut }));
        } else if got.len() < samples.len() {
            match err {
                Some(ChunkError::Truncated {
                    offset_bits,
                    sample,
                    num_samples,
                }) => {
                    assert!(
                        offset_bits <= cut as u64 * 8,
                        "cut {cut}: offset {offset_bits}"
                    );
                    assert_eq!(sample as usize, got.len());
                    assert_eq!(num_samples, 40);
                }
                other => panic!("cut {cut}: want Truncated, got {other:?}"),
            }
            assert!(XorEncoder::from_bytes(short.to_vec()).is_err());
        }
    }
    let e = ChunkError::Truncated {
        offset_bits: 77,
        sample: 3,
        num_samples: 40,
    };
    assert!(e.to_string().contains("bit offset 77"), "{e}");
}

#[test]
fn corrupt_window_is_an_error() {
    // One sample, then a second whose value block says 31 leading zeros and 40 bits.
    let mut bytes = encode(&[(0, 0)]);
    // Drop the empty tail byte left by the aligned value write.
    assert_eq!(bytes.len(), 12);
    bytes.truncate(11);
    bytes[1] = 2;
    // uvarint delta 1, then 1 1 11111 101000 ...
    bytes.extend_from_slice(&[0x01, 0b1111_1111, 0b0100_0000, 0, 0, 0, 0, 0, 0]);
    let (got, err) = decode(&bytes);
    assert_eq!(got.len(), 1);
    assert!(
        matches!(
            err,
            Some(ChunkError::BadXorWindow {
                leading: 31,
                sigbits: 40,
                offset_bits: 98
            })
        ),
        "{err:?}"
    );
}

#[test]
fn header_helpers() {
    assert_eq!(num_samples(&[0x01, 0x02, 0xff]).unwrap(), 258);
    assert_eq!(num_samples(&[7]), Err(ChunkError::BadHeader { len: 1 }));
    assert!(XorEncoder::from_bytes(vec![]).is_err());
    let (got, err) = decode(&[]);
    assert!(got.is_empty() && err == Some(ChunkError::BadHeader { len: 0 }));
    for e in [
        Encoding::None,
        Encoding::Xor,
        Encoding::Histogram,
        Encoding::FloatHistogram,
    ] {
        assert_eq!(Encoding::from_u8(e.as_u8()), Some(e));
    }
    assert_eq!(Encoding::Xor.as_u8(), 1);
    assert_eq!(Encoding::from_u8(4), None);
    assert_eq!(Encoding::Xor.to_string(), "XOR");
}

#[test]
fn full_chunk_refuses_more() {
    let mut e = XorEncoder::new();
    for i in 0..u16::MAX as i64 {
        e.append(i, 1.0);
    }
    assert!(e.is_full());
    let before = e.bytes().to_vec();
    assert_eq!(
        e.try_append(1 << 20, 2.0),
        Err(ChunkError::Full { max: u16::MAX })
    );
    e.append(1 << 20, 2.0);
    assert_eq!(e.bytes(), &before[..]);
    let (got, err) = decode(&before);
    assert_eq!((got.len(), err), (u16::MAX as usize, None));
}

fn increasing_samples() -> impl Strategy<Value = Vec<(i64, u64)>> {
    (
        any::<i64>(),
        prop::collection::vec(
            (
                prop_oneof![
                    0i64..3,
                    0i64..100_000,
                    0i64..(1 << 40),
                    0i64..i64::MAX / 512
                ],
                prop_oneof![
                    any::<u64>(),
                    (0u32..200).prop_map(|x| (x as f64 * 0.5).to_bits()),
                    Just(STALE_NAN_BITS)
                ],
            ),
            0..300,
        ),
    )
        .prop_map(|(start, steps)| {
            let mut t = start / 2;
            steps
                .into_iter()
                .map(|(d, v)| {
                    t = t.saturating_add(d);
                    (t, v)
                })
                .collect()
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn prop_round_trip(samples in increasing_samples()) {
        let bytes = encode(&samples);
        let (got, err) = decode(&bytes);
        prop_assert_eq!(err, None);
        prop_assert_eq!(got, samples);
    }

    #[test]
    fn prop_resume_matches_one_shot(samples in increasing_samples(), split in any::<prop::sample::Index>()) {
        let k = split.index(samples.len() + 1);
        let mut e = XorEncoder::from_bytes(encode(&samples[..k])).unwrap();
        for &(t, v) in &samples[k..] {
            e.append(t, f64::from_bits(v));
        }
        prop_assert_eq!(e.into_bytes(), encode(&samples));
    }

    #[test]
    fn prop_arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let mut it = XorIterator::new(&bytes);
        let total = num_samples(&bytes).unwrap_or(0);
        let mut n = 0u32;
        while it.next() {
            n += 1;
            let _ = it.at();
        }
        prop_assert!(n <= u32::from(total));
        let mut it = XorIterator::new(&bytes);
        let _ = it.seek(0);
        if let Ok(mut e) = XorEncoder::from_bytes(bytes.clone()) {
            // Whatever decoded must keep decoding after more appends.
            let before = e.num_samples();
            let (t, _) = { let mut it = XorIterator::new(&bytes); while it.next() {} it.at() };
            e.append(t.wrapping_add(1), 1.0);
            let (got, err) = decode(e.bytes());
            prop_assert_eq!(err, None);
            prop_assert_eq!(got.len(), before as usize + 1);
        }
    }
}
