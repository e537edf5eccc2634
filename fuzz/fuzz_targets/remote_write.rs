//! Arbitrary bytes as a remote-write request body (snappy + protobuf), decoded and
//! stored into an in-memory storage: an error or stored samples, never a panic, and
//! never an allocation beyond the limits (the snappy header is checked first).
#![no_main]

use kiln_remote::{ReceiveLimits, receive};
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
    let mut app = storage.appender();
    if let Ok(stats) = receive(app.as_mut(), data, &limits) {
        assert!(stats.series <= limits.max_series);
    }
    // The same payload without snappy framing, as protobuf behind a valid header.
    let framed = snap::raw::Encoder::new().compress_vec(data);
    if let Ok(body) = framed {
        let _ = receive(storage.appender().as_mut(), &body, &limits);
    }
});
