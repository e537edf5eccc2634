//! Arbitrary parameters to the query endpoints of the HTTP API (`/api/v1/query`,
//! `query_range`, `format_query`, `series`, `labels`, `label/<name>/values`,
//! `/federate`), sent as a form body through the real router over a small data set:
//! every input gets an HTTP answer (2xx, or 4xx/5xx with an error), never a panic or a
//! hang, within the engine's time and sample limits.
#![no_main]

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, header};
use kiln_model::Labels;
use kiln_promql::EngineOptions;
use kiln_server::ApiState;
use kiln_storage::mem::MemStorage;
use kiln_storage::{Appendable, SampleValue};
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;

const ENDPOINTS: &[&str] = &[
    "/api/v1/query",
    "/api/v1/query_range",
    "/api/v1/format_query",
    "/api/v1/series",
    "/api/v1/labels",
    "/api/v1/label/job/values",
    "/federate",
];

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    })
}

fn state() -> Arc<ApiState> {
    static STATE: OnceLock<Arc<ApiState>> = OnceLock::new();
    STATE
        .get_or_init(|| {
            let st = MemStorage::new();
            let mut app = st.appender();
            for i in 0..40i64 {
                for (name, job) in [("up", "a"), ("http_requests_total", "b")] {
                    let l = Labels::from_pairs(&[("__name__", name), ("job", job)]);
                    let _ = app.append(0, &l, i * 15_000, SampleValue::Float(i as f64));
                }
            }
            let _ = app.commit();
            drop(app);
            Arc::new(ApiState::new(
                Arc::new(st),
                EngineOptions {
                    max_samples: 100_000,
                    timeout: Some(Duration::from_millis(200)),
                    ..EngineOptions::default()
                },
            ))
        })
        .clone()
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, params)) = data.split_first() else {
        return;
    };
    if params.len() > 4096 {
        return;
    }
    let path = ENDPOINTS[usize::from(which) % ENDPOINTS.len()];
    let request = Request::post(path)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(params.to_vec()))
        .expect("request");
    let router = kiln_server::router(state());
    let response = runtime()
        .block_on(router.oneshot(request))
        .expect("the router always answers");
    let status = response.status().as_u16();
    assert!(
        (200..600).contains(&status),
        "{path}: status {status} for {params:?}"
    );
});
