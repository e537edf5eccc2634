//! Arbitrary text as a PromQL query: parsing and evaluation (instant and range) over a
//! small data set must end in a result or an error, never a panic, and within the
//! engine's time and sample limits.
#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use kiln_model::Labels;
use kiln_promql::{Engine, EngineOptions};
use kiln_storage::mem::MemStorage;
use kiln_storage::{Appendable, SampleValue};
use libfuzzer_sys::fuzz_target;

fn storage() -> &'static MemStorage {
    static STORAGE: OnceLock<MemStorage> = OnceLock::new();
    STORAGE.get_or_init(|| {
        let st = MemStorage::new();
        let mut app = st.appender();
        for i in 0..40i64 {
            for (name, job, le) in [
                ("up", "a", ""),
                ("http_requests_total", "b", ""),
                ("latency_bucket", "c", "0.5"),
                ("latency_bucket", "c", "+Inf"),
            ] {
                let l = Labels::from_pairs(&[("__name__", name), ("job", job), ("le", le)]);
                let _ = app.append(0, &l, i * 15_000, SampleValue::Float((i * 3) as f64));
            }
        }
        let _ = app.commit();
        drop(app);
        st
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(query) = std::str::from_utf8(data) else {
        return;
    };
    if query.len() > 2048 {
        return;
    }
    let engine = Engine::new(EngineOptions {
        max_samples: 100_000,
        timeout: Some(Duration::from_millis(200)),
        ..EngineOptions::default()
    });
    let _ = engine.instant_query(storage(), query, 300_000);
    let _ = engine.range_query(storage(), query, 0, 600_000, 60_000);
});
