//! Arbitrary text as `objstore.yml` (with every environment variable set) and as a block's
//! `meta.json` seen in a bucket (its `thanos` section): a configuration or an error, a
//! section or an error, never a panic; a parsed section re-encodes to one that parses the
//! same.
#![no_main]

use std::path::Path;

use kiln_objstore::ThanosMeta;
use kiln_objstore::config::parse_with_env;
use kiln_tsdb::block::BlockMeta;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = parse_with_env(text, |name| Some(format!("value-of-{name}")));
    let Ok(meta) = BlockMeta::from_json(data, Path::new("fuzz")) else {
        return;
    };
    let Ok(thanos) = ThanosMeta::of(&meta) else {
        return;
    };
    let again: ThanosMeta =
        serde_json::from_value(thanos.to_value()).expect("re-encoded section parses");
    assert_eq!(again, thanos);
});
