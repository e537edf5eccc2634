//! Arbitrary bytes as a chunk segment file: opening and reading chunks at references
//! derived from the input must give data or `Err`, never panic. Chunks that read are
//! decoded fully with the XOR decoder.
//! Each input runs as is and with its checksums recomputed (see `common.rs`).
#![no_main]

use kiln_chunkenc::XorIterator;
use kiln_tsdb::block::ChunkReader;
use kiln_tsdb::block::chunks::chunk_ref;
use libfuzzer_sys::fuzz_target;

mod common;

use common::LIMIT;

fn decode(r: &ChunkReader, reference: u64) -> Option<u64> {
    let (_encoding, chunk) = r.chunk(reference).ok()?;
    let mut it = XorIterator::new(chunk);
    let mut n = 0u32;
    while it.next() {
        let _ = it.at();
        n += 1;
        assert!(n <= u32::from(u16::MAX));
    }
    let _ = it.err();
    // uvarint(len) + encoding byte + data + crc32.
    let len = chunk.len() as u64 + 1;
    let varint_len = (64 - len.leading_zeros()).div_ceil(7).max(1) as u64;
    Some(varint_len + len + 4)
}

fn u64_at(data: &[u8], at: usize) -> Option<u64> {
    let b: [u8; 8] = data.get(at..at + 8)?.try_into().ok()?;
    Some(u64::from_be_bytes(b))
}

fuzz_target!(|data: &[u8]| {
    for input in common::variants(data, common::fix_chunk_segment) {
        run(&input);
    }
});

fn run(data: &[u8]) {
    let Ok(r) = ChunkReader::from_segments(vec![data.to_vec()]) else {
        return;
    };
    let _ = r.segment_count();
    let _ = r.size();

    // Walk the segment from the first chunk (offset 8), as a reader of all chunks would.
    let mut off = 8u64;
    for _ in 0..LIMIT {
        let Ok(o) = u32::try_from(off) else { break };
        let Some(step) = decode(&r, chunk_ref(0, o)) else {
            break;
        };
        off += step;
    }

    // References taken from the input: first 8 bytes (header), last 8 bytes, and every
    // 8-byte word after the header (bounded), each as-is and as an offset in segment 0.
    let mut refs = vec![
        u64_at(data, 0),
        data.len().checked_sub(8).and_then(|i| u64_at(data, i)),
    ];
    refs.extend((8..data.len()).step_by(8).take(64).map(|i| u64_at(data, i)));
    for reference in refs.into_iter().flatten() {
        let _ = decode(&r, reference);
        let _ = decode(&r, reference & 0xFFFF_FFFF);
    }
    for reference in [0, 7, 8, u32::MAX as u64, 1 << 32, u64::MAX] {
        let _ = decode(&r, reference);
    }

    // The same bytes as two segments: references into segment index 1.
    if let Ok(r2) = ChunkReader::from_segments(vec![data.to_vec(), data.to_vec()]) {
        let _ = decode(&r2, chunk_ref(1, 8));
        let _ = decode(&r2, chunk_ref(2, 8));
    }
}
