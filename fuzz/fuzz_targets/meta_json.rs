//! Arbitrary bytes as `meta.json`: parsing gives a `BlockMeta` or `Err`, never a panic;
//! what parses re-encodes (Go's indented style) to JSON that parses to the same meta.
#![no_main]

use std::path::Path;

use kiln_tsdb::block::BlockMeta;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(meta) = BlockMeta::from_json(data, Path::new("fuzz")) else {
        return;
    };
    let json = meta.to_json();
    let again =
        BlockMeta::from_json(&json, Path::new("fuzz")).expect("re-encoded meta.json parses");
    assert_eq!(again, meta);
});
