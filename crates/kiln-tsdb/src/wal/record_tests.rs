use super::*;
use proptest::prelude::*;

const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

fn lbls(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_pairs(pairs)
}

/// Encodes, decodes (twice, with the same buffers, to catch leaked state) and compares.
fn check_samples(samples: &[RefSample]) {
    let mut buf = Vec::new();
    encode_samples(samples, &mut buf);
    let mut out = vec![RefSample {
        id: 99,
        t: 99,
        v: 99.0,
    }];
    for _ in 0..2 {
        decode_samples(&buf, &mut out).unwrap();
        assert_eq!(out.len(), samples.len());
        for (a, b) in out.iter().zip(samples) {
            assert_eq!((a.id, a.t, a.v.to_bits()), (b.id, b.t, b.v.to_bits()));
        }
    }
}

fn check_series(series: &[RefSeries]) {
    let mut buf = Vec::new();
    encode_series(series, &mut buf);
    let mut dec = RecordDecoder::new();
    let mut out = Vec::new();
    for _ in 0..2 {
        dec.series(&buf, &mut out).unwrap();
        assert_eq!(out, series);
    }
}

fn check_stones(stones: &[Stone]) {
    let mut buf = Vec::new();
    encode_tombstones(stones, &mut buf);
    let mut out = vec![Stone {
        id: 1,
        mint: 2,
        maxt: 3,
    }];
    for _ in 0..2 {
        decode_tombstones(&buf, &mut out).unwrap();
        assert_eq!(out, stones);
    }
}

fn s(id: u64, t: i64, v: f64) -> RefSample {
    RefSample { id, t, v }
}

#[test]
fn samples_round_trip() {
    let cases: Vec<Vec<RefSample>> = vec![
        vec![],
        vec![s(1, 0, 0.0)],
        vec![s(5, 1000, 1.0), s(3, 1500, -2.5)],
        // Negative id and time deltas against the first sample.
        vec![
            s(100, 10_000, 1.0),
            s(1, -5, 2.0),
            s(0, i64::MIN, 3.0),
            s(u64::MAX, i64::MAX, 4.0),
        ],
        vec![s(u64::MAX, i64::MIN, 0.0), s(0, i64::MAX, -0.0)],
        // Special floats keep their exact bits.
        vec![
            s(1, 1, f64::NAN),
            s(1, 2, f64::from_bits(STALE_NAN_BITS)),
            s(1, 3, f64::INFINITY),
            s(1, 4, f64::NEG_INFINITY),
            s(1, 5, f64::from_bits(0x7ff8_0000_0000_0001)),
            s(1, 6, f64::MIN_POSITIVE / 2.0),
        ],
    ];
    for c in &cases {
        check_samples(c);
    }
}

#[test]
fn series_round_trip() {
    let long = "x".repeat(300);
    let cases: Vec<Vec<RefSeries>> = vec![
        vec![],
        vec![RefSeries {
            id: 0,
            labels: Labels::empty(),
        }],
        vec![
            RefSeries {
                id: 1,
                labels: lbls(&[("__name__", "up"), ("job", "a")]),
            },
            RefSeries {
                id: u64::MAX,
                labels: lbls(&[("a", long.as_str()), ("ü", "☃")]),
            },
        ],
    ];
    for c in &cases {
        check_series(c);
    }
}

#[test]
fn tombstones_round_trip() {
    let cases: Vec<Vec<Stone>> = vec![
        vec![],
        vec![Stone {
            id: 7,
            mint: -100,
            maxt: 100,
        }],
        vec![
            Stone {
                id: 0,
                mint: i64::MIN,
                maxt: i64::MAX,
            },
            Stone {
                id: u64::MAX,
                mint: 0,
                maxt: 0,
            },
        ],
    ];
    for c in &cases {
        check_stones(c);
    }
}

/// The exact bytes Prometheus's `record.Encoder` writes, derived by hand.
#[test]
fn golden_series_record() {
    let series = [RefSeries {
        id: 1,
        labels: lbls(&[("job", "a"), ("__name__", "up")]),
    }];
    let mut buf = Vec::new();
    encode_series(&series, &mut buf);
    #[rustfmt::skip]
    let want: &[u8] = &[
        0x01,                                           // type: series
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, // id = 1, u64 big endian
        0x02,                                           // 2 labels, uvarint
        0x08, b'_', b'_', b'n', b'a', b'm', b'e', b'_', b'_', // uvarint len 8, "__name__"
        0x02, b'u', b'p',                               // "up"
        0x03, b'j', b'o', b'b',                         // "job" (sorted after "__name__":
        0x01, b'a',                                     //  '_' 0x5f < 'j' 0x6a), "a"
    ];
    assert_eq!(buf, want);
}

/// The exact bytes of a samples record, derived by hand from Prometheus's encoder:
/// `PutBE64(first.Ref); PutBE64int64(first.T)`, then per sample (the first included)
/// `PutVarint64(ref - first.Ref); PutVarint64(t - first.T); PutBE64(bits(v))`.
#[test]
fn golden_samples_record() {
    let samples = [s(5, 1000, 1.0), s(3, 1500, f64::from_bits(STALE_NAN_BITS))];
    let mut buf = Vec::new();
    encode_samples(&samples, &mut buf);
    #[rustfmt::skip]
    let want: &[u8] = &[
        0x02,                                           // type: samples
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05, // first id = 5
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, 0xe8, // first t = 1000
        // sample 1: id delta 0 -> zigzag 0; t delta 0 -> 0; 1.0 = 0x3ff0000000000000
        0x00, 0x00, 0x3f, 0xf0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        // sample 2: id delta 3-5 = -2 -> zigzag (-2<<1)^(-2>>63) = 3 -> 0x03;
        // t delta 500 -> zigzag 1000 = 0b111_1101000 -> uvarint 0xe8 0x07;
        // value StaleNaN bits 0x7ff0000000000002
        0x03, 0xe8, 0x07, 0x7f, 0xf0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02,
    ];
    assert_eq!(buf, want);
    // CRC32-C of these 38 bytes (computed independently with a bitwise Castagnoli
    // implementation), as it appears in the fragment header.
    assert_eq!(crc32c::crc32c(&buf), 0xf091_b3dd);
}

#[test]
fn golden_tombstones_record() {
    let mut buf = Vec::new();
    encode_tombstones(
        &[Stone {
            id: 2,
            mint: -1,
            maxt: 64,
        }],
        &mut buf,
    );
    // id BE; mint -1 -> zigzag 1; maxt 64 -> zigzag 128 -> uvarint 0x80 0x01.
    assert_eq!(buf, [3, 0, 0, 0, 0, 0, 0, 0, 2, 0x01, 0x80, 0x01]);
}

#[test]
fn varints_match_go() {
    for (x, want) in [
        (0i64, &[0x00][..]),
        (-1, &[0x01]),
        (1, &[0x02]),
        (-64, &[0x7f]),
        (64, &[0x80, 0x01]),
        (
            i64::MIN,
            &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
        ),
    ] {
        let mut b = Vec::new();
        put_varint(&mut b, x);
        assert_eq!(b, want, "{x}");
        let mut d = Dec { b: &b, pos: 0 };
        assert_eq!(d.varint("x").unwrap(), x);
    }
    // Go rejects an 11th byte and a 10th byte above 1.
    let mut d = Dec {
        b: &[0xff; 11],
        pos: 0,
    };
    assert!(matches!(
        d.uvarint("x"),
        Err(RecordError::VarintOverflow { .. })
    ));
    let mut d = Dec {
        b: &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02],
        pos: 0,
    };
    assert!(matches!(
        d.uvarint("x"),
        Err(RecordError::VarintOverflow { .. })
    ));
    let mut d = Dec { b: &[0x80], pos: 0 };
    assert!(matches!(d.uvarint("x"), Err(RecordError::Truncated { .. })));
}

#[test]
fn decode_errors() {
    let mut samples = Vec::new();
    let mut series = Vec::new();
    let mut stones = Vec::new();
    assert_eq!(decode_samples(&[], &mut samples), Err(RecordError::Empty));
    assert!(matches!(
        decode_samples(&[1], &mut samples),
        Err(RecordError::WrongType { got: 1, .. })
    ));
    // Header shorter than 16 bytes.
    assert!(matches!(
        decode_samples(&[2, 0, 0], &mut samples),
        Err(RecordError::Truncated { .. })
    ));
    // A sample missing its value.
    let mut buf = Vec::new();
    encode_samples(&[s(1, 1, 1.0)], &mut buf);
    buf.truncate(buf.len() - 1);
    assert!(matches!(
        decode_samples(&buf, &mut samples),
        Err(RecordError::Truncated {
            what: "sample value",
            ..
        })
    ));
    assert!(samples.is_empty());
    // A label length past the end; a huge label count.
    let bad = [1, 0, 0, 0, 0, 0, 0, 0, 1, 1, 9, b'a'];
    assert!(matches!(
        decode_series(&bad, &mut series),
        Err(RecordError::Truncated { .. })
    ));
    let huge = [1, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, 0x0f];
    assert!(decode_series(&huge, &mut series).is_err());
    // Invalid UTF-8 in a label value.
    let bad = [1, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, b'a', 1, 0xff];
    assert!(matches!(
        decode_series(&bad, &mut series),
        Err(RecordError::InvalidUtf8 { .. })
    ));
    assert!(decode_tombstones(&[3, 0, 0], &mut stones).is_err());
}

#[test]
fn unknown_types_are_skipped() {
    let mut dec = RecordDecoder::new();
    let mut out = DecodedRecord::default();
    out.samples.push(s(1, 1, 1.0));
    for (rec, want) in [
        (&[4u8, 1, 2, 3][..], RecordType::Exemplars),
        (&[5], RecordType::MmapMarkers),
        (&[6, 0xff], RecordType::Metadata),
        (&[7, 0, 0], RecordType::HistogramSamples),
        (&[8], RecordType::FloatHistogramSamples),
        (&[9], RecordType::CustomBucketsHistogramSamples),
        (&[10], RecordType::CustomBucketsFloatHistogramSamples),
        (&[200, 1], RecordType::Unknown(200)),
        (&[], RecordType::Unknown(255)),
    ] {
        assert_eq!(dec.decode(rec, &mut out), Ok(want));
        assert!(out.series.is_empty() && out.samples.is_empty() && out.tombstones.is_empty());
        assert!(!want.is_decoded());
    }
    let mut buf = Vec::new();
    encode_samples(&[s(1, 2, 3.0)], &mut buf);
    assert_eq!(dec.decode(&buf, &mut out), Ok(RecordType::Samples));
    assert_eq!(out.samples, vec![s(1, 2, 3.0)]);
}

fn arb_labels() -> impl Strategy<Value = Labels> {
    proptest::collection::vec(("[a-zA-Z_][a-zA-Z0-9_]{0,8}", "\\PC{0,12}"), 0..6)
        .prop_map(|pairs| Labels::from_pairs(&pairs))
}

proptest! {
    #[test]
    fn prop_samples_round_trip(v in proptest::collection::vec((any::<u64>(), any::<i64>(), any::<u64>()), 0..50)) {
        let samples: Vec<RefSample> = v.iter().map(|&(id, t, bits)| s(id, t, f64::from_bits(bits))).collect();
        check_samples(&samples);
    }

    #[test]
    fn prop_series_round_trip(v in proptest::collection::vec((any::<u64>(), arb_labels()), 0..10)) {
        let series: Vec<RefSeries> = v.into_iter().map(|(id, labels)| RefSeries { id, labels }).collect();
        check_series(&series);
    }

    #[test]
    fn prop_tombstones_round_trip(v in proptest::collection::vec((any::<u64>(), any::<i64>(), any::<i64>()), 0..20)) {
        let stones: Vec<Stone> = v.into_iter().map(|(id, mint, maxt)| Stone { id, mint, maxt }).collect();
        check_stones(&stones);
    }

    #[test]
    fn prop_decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200), typ in 0u8..12) {
        let mut rec = bytes;
        if let Some(b) = rec.first_mut() { *b = typ; }
        let mut dec = RecordDecoder::new();
        let mut out = DecodedRecord::default();
        let _ = dec.decode(&rec, &mut out);
        let mut series = Vec::new();
        let _ = decode_series(&rec, &mut series);
    }
}
