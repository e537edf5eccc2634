//! Arbitrary bytes as a file_sd / http_sd target-group document, as JSON and as YAML:
//! parsing must give groups or an error, never panic. Every group has the meta label;
//! an empty target string gives a target without address, which target population
//! rejects later (as Prometheus does).
#![no_main]

use kiln_discovery::{GroupFormat, parse_groups};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for format in [GroupFormat::Json, GroupFormat::Yaml] {
        let Ok(groups) = parse_groups(data, format, "fuzz", ("__meta_filepath", "fuzz")) else {
            continue;
        };
        for g in &groups {
            assert_eq!(g.labels.get("__meta_filepath"), Some("fuzz"));
            assert!(g.targets.len() <= data.len());
        }
    }
});
