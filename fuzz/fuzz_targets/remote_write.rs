//! Arbitrary bytes as a remote-write 1.0 and 2.0 request body (snappy + protobuf), decoded and
//! stored into an in-memory storage: an error or stored samples, never a panic, and
//! never an allocation beyond the limits (the snappy header is checked first).
#![no_main]

use kiln_remote::{Protocol, ReceiveLimits, SeriesCache, receive};
use kiln_storage::Appendable;
use kiln_storage::mem::MemStorage;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = ReceiveLimits {
        max_body_bytes: 1 << 20,
        max_decompressed_bytes: 4 << 20,
        max_series: 10_000,
    };
    let storage = MemStorage::new();
    let cache = SeriesCache::new(64);
    let framed = snap::raw::Encoder::new()
        .compress_vec(data)
        .unwrap_or_default();
    // As sent, and as protobuf behind a valid snappy header; in both protocols.
    for body in [data, framed.as_slice()] {
        // Twice: the second time known series come from the cache.
        for protocol in [Protocol::V1, Protocol::V2, Protocol::V1] {
            let mut app = storage.appender();
            if let Ok(stats) = receive(app.as_mut(), protocol, body, &limits, &cache) {
                assert!(stats.series <= limits.max_series);
            }
        }
    }
});
