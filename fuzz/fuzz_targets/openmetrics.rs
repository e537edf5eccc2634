//! Arbitrary bytes through both text parsers: never panic, stop after the first error,
//! and report 1-based positions.
#![no_main]

use kiln_exposition::{Format, Parser};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for format in [Format::OpenMetrics, Format::Text004] {
        let mut p = Parser::new(data, format);
        let mut n = 0usize;
        while let Some(r) = p.next() {
            n += 1;
            assert!(n <= data.len() + 1);
            if let Err(e) = r {
                assert!(e.line >= 1 && e.column >= 1);
                assert!(p.next().is_none());
                break;
            }
        }
    }
});
