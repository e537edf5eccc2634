//! Arbitrary bytes as an index file (format v2/v3): opening, `check`, label names and
//! values, postings lookups and series entries must give data or `Err`, never panic.
//! Work per input is bounded (`LIMIT` items per loop).
//! Each input runs as is and with its checksums recomputed (see `common.rs`).
#![no_main]

use kiln_tsdb::block::IndexReader;
use libfuzzer_sys::fuzz_target;

mod common;

use common::LIMIT;

fuzz_target!(|data: &[u8]| {
    for input in common::variants(data, common::fix_index) {
        run(&input);
    }
});

fn run(data: &[u8]) {
    let Ok(ix) = IndexReader::from_bytes(data.to_vec()) else {
        return;
    };
    let _ = ix.check();
    let _ = ix.version();
    let _ = ix.toc();
    let _ = ix.size();

    for id in 0..ix.symbol_count().min(LIMIT as u32) {
        let _ = ix.symbol(id);
    }
    let _ = ix.symbol(ix.symbol_count());
    let _ = ix.symbol(u32::MAX);

    let names = ix.label_names();
    let mut items = 0usize;
    'names: for name in names.iter().take(LIMIT) {
        let Ok(values) = ix.label_values(name) else {
            continue;
        };
        for value in &values {
            items += 1;
            if items > LIMIT {
                break 'names;
            }
            if let Ok(p) = ix.postings(name, value) {
                for id in p.take(16) {
                    let _ = ix.series(id);
                }
            }
        }
        // A value that sorts after every value, and one before.
        let _ = ix.postings(name, "\u{10FFFF}");
        let _ = ix.postings(name, "");
        if let Ok(p) = ix.postings_for_values(name, |v| v.len() % 2 == 0) {
            let _ = p.take(LIMIT).count();
        }
    }
    let _ = ix.postings("", "");
    let _ = ix.label_values("");
    let _ = ix.postings("no-such-name", "x");

    if let Ok(all) = ix.all_postings() {
        for id in all.take(LIMIT) {
            let _ = ix.series(id);
        }
    }
    // Ids that are not in any postings list (random offsets into the series section).
    for id in [0u32, 1, 2, u32::MAX] {
        let _ = ix.series(id);
    }
}
