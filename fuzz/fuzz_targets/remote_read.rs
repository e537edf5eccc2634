//! Arbitrary bytes as a remote-read request body (served from a small in-memory store,
//! both answer types, chunks included) and as a remote-read answer (streamed frames or
//! snappy samples, decoded by the client): an error or a result, never a panic.
#![no_main]

use std::collections::BTreeMap;
use std::sync::OnceLock;

use kiln_model::Labels;
use kiln_remote::read::{ReadLimits, decode_answer, serve};
use kiln_storage::mem::MemStorage;
use kiln_storage::{Appendable, SampleValue};
use libfuzzer_sys::fuzz_target;

/// Samples and XOR chunks from memory.
fn store() -> &'static MemStorage {
    static STORE: OnceLock<MemStorage> = OnceLock::new();
    STORE.get_or_init(|| {
        let mem = MemStorage::new();
        {
            let mut app = mem.appender();
            let l = Labels::from_pairs(&[("__name__", "up"), ("job", "a")]);
            for t in 0..100 {
                let _ = app.append(0, &l, t * 1000, SampleValue::Float(t as f64));
            }
            let _ = app.commit();
        }
        mem
    })
}

fuzz_target!(|data: &[u8]| {
    let limits = ReadLimits {
        max_samples: 10_000,
        max_bytes_in_frame: 1024,
    };
    let framed = snap::raw::Encoder::new()
        .compress_vec(data)
        .unwrap_or_default();
    let external = BTreeMap::from([("cluster".to_owned(), "a".to_owned())]);
    for body in [data, framed.as_slice()] {
        let _ = serve(body, store(), &external, &limits);
        for ct in [
            "application/x-protobuf",
            "application/x-streamed-protobuf; proto=prometheus.ChunkedReadResponse",
        ] {
            let _ = decode_answer(ct, body, i64::MIN, i64::MAX, &external);
        }
    }
});
