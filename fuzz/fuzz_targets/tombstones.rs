//! Arbitrary bytes as a `tombstones` file: decoding gives tombstones or `Err`, never a
//! panic; what decodes re-encodes to bytes that decode to the same tombstones.
//! Each input runs as is and with its checksums recomputed (see `common.rs`).
#![no_main]

use std::path::Path;

use kiln_tsdb::block::Tombstones;
use libfuzzer_sys::fuzz_target;

mod common;

fuzz_target!(|data: &[u8]| {
    for input in common::variants(data, common::fix_tombstones) {
        run(&input);
    }
});

fn run(data: &[u8]) {
    let Ok(t) = Tombstones::decode(data, Path::new("fuzz")) else {
        return;
    };
    let mut total = 0u64;
    for (r, ivs) in t.iter() {
        assert!(!ivs.is_empty());
        for w in ivs.windows(2) {
            // Sorted, disjoint and not touching.
            assert!(w[0].maxt.checked_add(1).is_some_and(|m| m < w[1].mint));
        }
        for iv in ivs {
            assert!(iv.mint <= iv.maxt);
            assert!(t.is_deleted(r, iv.mint) && t.is_deleted(r, iv.maxt));
        }
        total += ivs.len() as u64;
    }
    assert_eq!(total, t.total());
    let again =
        Tombstones::decode(&t.encode(), Path::new("fuzz")).expect("re-encoded tombstones decode");
    assert_eq!(again, t);
}
