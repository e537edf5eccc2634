//! Aggregate chunks: the byte layout, round trips of any set of aggregates, and bad
//! bytes refused without a panic.

use kiln_chunkenc::aggr::{
    AGGR_ENCODING, AggrType, SubChunk, decode_aggr_chunk, encode_aggr_chunk,
};
use kiln_chunkenc::{Encoding, XorEncoder, XorIterator};
use proptest::prelude::*;

fn xor(samples: &[(i64, f64)]) -> Vec<u8> {
    let mut e = XorEncoder::new();
    for &(t, v) in samples {
        e.append(t, v);
    }
    e.into_bytes()
}

#[test]
fn layout_as_thanos_writes_it() {
    let count = xor(&[(0, 2.0)]);
    let sum = xor(&[(0, 7.5)]);
    let chunk = encode_aggr_chunk([
        Some(SubChunk {
            encoding: Encoding::Xor.as_u8(),
            data: &count,
        }),
        Some(SubChunk {
            encoding: Encoding::Xor.as_u8(),
            data: &sum,
        }),
        None,
        None,
        None,
    ]);
    let mut want = vec![count.len() as u8, 1];
    want.extend_from_slice(&count);
    want.push(sum.len() as u8);
    want.push(1);
    want.extend_from_slice(&sum);
    want.extend_from_slice(&[0, 0, 0]);
    assert_eq!(chunk, want);
    assert_eq!(AGGR_ENCODING, 0xff);
    let back = decode_aggr_chunk(&chunk).expect("decodes");
    assert_eq!(back[AggrType::Sum as usize].map(|s| s.data), Some(&sum[..]));
    assert!(back[AggrType::Counter as usize].is_none());
    assert_eq!(AggrType::Counter.name(), "counter");
}

#[test]
fn bad_bytes_are_errors() {
    for bad in [
        &[][..],
        &[5, 1, 0],
        &[0, 0, 0, 0],
        &[0, 0, 0, 0, 0, 9],
        &[0xff; 12],
    ] {
        let err = decode_aggr_chunk(bad).expect_err("not an aggregate chunk");
        assert!(
            err.to_string().starts_with("invalid aggregate chunk"),
            "{err}"
        );
    }
}

proptest! {
    #[test]
    fn any_set_of_aggregates_round_trips(
        present in prop::array::uniform5(any::<bool>()),
        samples in prop::collection::vec((0i64..1_000_000, -1e9f64..1e9), 1..200),
    ) {
        let mut ts: Vec<(i64, f64)> = samples;
        ts.sort_by_key(|s| s.0);
        ts.dedup_by_key(|s| s.0);
        let datas: Vec<Vec<u8>> = (0..5)
            .map(|i| xor(&ts.iter().map(|&(t, v)| (t, v + i as f64)).collect::<Vec<_>>()))
            .collect();
        let subs: [Option<SubChunk<'_>>; 5] = std::array::from_fn(|i| {
            present[i].then(|| SubChunk { encoding: 1, data: &datas[i] })
        });
        let chunk = encode_aggr_chunk(subs);
        let back = decode_aggr_chunk(&chunk).expect("decodes");
        prop_assert_eq!(back, subs);
        for (i, s) in back.iter().enumerate() {
            let Some(s) = s else { continue };
            let mut it = XorIterator::new(s.data);
            let mut n = 0;
            while it.next() {
                prop_assert_eq!(it.at(), (ts[n].0, ts[n].1 + i as f64));
                n += 1;
            }
            prop_assert_eq!(n, ts.len());
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        let _ = decode_aggr_chunk(&bytes);
    }
}
