//! Arbitrary bytes as XOR chunk data: decoding must never panic, must stop within the
//! header's sample count, and a chunk that decodes must accept further appends and
//! still decode. The same bytes as an aggregate chunk (downsampled blocks): what
//! decodes re-encodes to a chunk with the same sub-chunks.
#![no_main]

use kiln_chunkenc::{XorEncoder, XorIterator, num_samples};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(subchunks) = kiln_chunkenc::aggr::decode_aggr_chunk(data) {
        // Lengths may come as non-minimal varints: compare what the bytes say.
        let again = kiln_chunkenc::aggr::encode_aggr_chunk(subchunks);
        assert_eq!(
            kiln_chunkenc::aggr::decode_aggr_chunk(&again).expect("re-encoded chunk decodes"),
            subchunks
        );
        for s in subchunks.into_iter().flatten() {
            let mut it = XorIterator::new(s.data);
            while it.next() {}
        }
    }
    let total = num_samples(data).unwrap_or(0);
    let mut it = XorIterator::new(data);
    let mut n = 0u32;
    let mut last = (0i64, 0f64);
    while it.next() {
        n += 1;
        last = it.at();
    }
    assert!(n <= u32::from(total));
    let clean = it.err().is_none();

    let mut it = XorIterator::new(data);
    let _ = it.seek(last.0);

    match XorEncoder::from_bytes(data.to_vec()) {
        Ok(mut enc) => {
            assert!(clean);
            if enc.is_full() {
                return;
            }
            enc.append(last.0.wrapping_add(15_000), last.1 + 1.0);
            let mut it = XorIterator::new(enc.bytes());
            let mut m = 0u32;
            while it.next() {
                m += 1;
            }
            assert!(it.err().is_none());
            assert_eq!(m, n + 1);
        }
        Err(_) => assert!(!clean),
    }
});
