//! Criterion benches: the lecture's queries (the Advanced PromQL and Recording Rules
//! sections, as the shared bench harness runs them) as range queries over 2 h at a 60 s
//! step, on ~10k series x 2 h at 15 s in the real TSDB head.
//!
//! `cargo bench -p kiln-promql --bench lecture`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use kiln_model::Labels;
use kiln_promql::Engine;
use kiln_storage::{Appender, SampleValue};
use kiln_tsdb::head::{Head, HeadOptions};

const STEP_MS: i64 = 15_000;
const SPAN_MS: i64 = 2 * 3_600_000;

const QUERIES: &[(&str, &str)] = &[
    (
        "q01_gpu_util_by_job",
        "avg(rate(nvidia_gpu_duty_cycle[5m])) by (job_name, gpu_id)",
    ),
    (
        "q02_gpu_util_1h",
        "avg by (gpu_id) (avg_over_time(nvidia_gpu_duty_cycle[1h]))",
    ),
    (
        "q03_gpu_mem_pct",
        "100 * (nvidia_gpu_memory_used_bytes / nvidia_gpu_memory_total_bytes)",
    ),
    (
        "q04_underutilized",
        "count by (node) (avg_over_time(nvidia_gpu_duty_cycle[5m]) < 0.5)",
    ),
    (
        "q05_p95_latency",
        "histogram_quantile(0.95, sum(rate(model_inference_duration_seconds_bucket[5m])) by (model_name, version, le))",
    ),
    (
        "q06_slo_100ms",
        "100 * sum(rate(model_inference_duration_seconds_bucket{le=\"0.1\"}[5m])) by (model_name) / sum(rate(model_inference_duration_seconds_count[5m])) by (model_name)",
    ),
    (
        "q07_error_ratio",
        "sum(rate(model_errors_total[5m])) by (model_name) / sum(rate(model_predictions_total[5m])) by (model_name)",
    ),
    (
        "q08_pipeline_topk",
        "topk(5, rate(data_stage_duration_seconds_sum[5m]) / rate(data_stage_duration_seconds_count[5m]))",
    ),
    (
        "q09_training_eta",
        "(training_total_steps - training_current_step) / rate(training_current_step[10m])",
    ),
    (
        "q10_zscore_subquery",
        "abs((rate(data_records_processed_total[5m]) - avg_over_time(rate(data_records_processed_total[5m])[1h:5m])) / stddev_over_time(rate(data_records_processed_total[5m])[1h:5m])) > 3",
    ),
    (
        "q11_predict_linear",
        "predict_linear(nvidia_gpu_memory_used_bytes[1h], 4 * 3600) > nvidia_gpu_memory_total_bytes",
    ),
    (
        "q12_train_per_gpu",
        "rate(training_samples_processed_total[5m]) / on(job_id) group_left() training_gpu_count",
    ),
    (
        "q13_deriv_subquery",
        "deriv(rate(model_errors_total[5m])[10m:])",
    ),
];

/// A deterministic pseudo-random number in [0, 1).
fn unit(seed: u64) -> f64 {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    x ^= x >> 31;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// A series' value at scrape number `i`.
type ValueAt = Box<dyn Fn(i64) -> f64>;

/// ~10k series of the lecture's ML fleet.
fn build() -> Head {
    let head = Head::new(HeadOptions::default());
    let mut series: Vec<(Labels, ValueAt)> = Vec::new();
    for node in 0..250 {
        for gpu in 0..8 {
            let node_s = format!("gpu-node-{node:05}");
            let gpu_s = gpu.to_string();
            let job = format!("train-{}", node % 20);
            let base = [
                ("cluster", "c1"),
                ("gpu_id", gpu_s.as_str()),
                ("job", "gpu-exporter"),
                ("job_name", job.as_str()),
                ("node", node_s.as_str()),
            ];
            let with = |name: &str| {
                let mut p: Vec<(&str, &str)> = base.to_vec();
                p.push(("__name__", name));
                Labels::from_pairs(&p)
            };
            let seed = (node * 8 + gpu) as u64;
            series.push((
                with("nvidia_gpu_duty_cycle"),
                Box::new(move |i| {
                    ((0.6 + 0.3 * ((i as f64) / 40.0 + seed as f64).sin()) * 100.0).round() / 100.0
                }),
            ));
            series.push((
                with("nvidia_gpu_memory_used_bytes"),
                Box::new(move |i| {
                    (40_000.0 + 10.0 * i as f64 + 500.0 * unit(seed)).round() * 1_048_576.0
                }),
            ));
            series.push((
                with("nvidia_gpu_memory_total_bytes"),
                Box::new(|_| 85_899_345_920.0),
            ));
        }
    }
    let les = [
        "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf",
    ];
    for model in 0..20 {
        for version in 0..3 {
            let m = format!("model-{model}");
            let v = format!("v{version}");
            let base = [
                ("job", "inference-server"),
                ("model_name", m.as_str()),
                ("version", v.as_str()),
            ];
            let with = |name: &str, extra: Option<(&str, &str)>| {
                let mut p: Vec<(&str, &str)> = base.to_vec();
                p.push(("__name__", name));
                p.extend(extra);
                Labels::from_pairs(&p)
            };
            for (b, le) in les.iter().enumerate() {
                let share = (b + 1) as f64 / les.len() as f64;
                series.push((
                    with("model_inference_duration_seconds_bucket", Some(("le", le))),
                    Box::new(move |i| (i as f64 * 20.0 * share).floor()),
                ));
            }
            series.push((
                with("model_inference_duration_seconds_count", None),
                Box::new(|i| i as f64 * 20.0),
            ));
            series.push((
                with("model_predictions_total", None),
                Box::new(|i| i as f64 * 20.0),
            ));
            series.push((
                with("model_errors_total", None),
                Box::new(move |i| (i as f64 * 0.2 * (1.0 + model as f64 / 10.0)).floor()),
            ));
        }
    }
    for p in 0..100 {
        for stage in 0..6 {
            let pn = format!("pipeline-{p}");
            let st = format!("stage-{stage}");
            let base = [("pipeline_name", pn.as_str()), ("stage", st.as_str())];
            let with = |name: &str| {
                let mut v: Vec<(&str, &str)> = base.to_vec();
                v.push(("__name__", name));
                Labels::from_pairs(&v)
            };
            let seed = (p * 6 + stage) as u64;
            series.push((
                with("data_records_processed_total"),
                Box::new(move |i| (i as f64 * (100.0 + 50.0 * unit(seed + i as u64))).floor()),
            ));
            series.push((
                with("data_stage_duration_seconds_sum"),
                Box::new(move |i| i as f64 * 1.5),
            ));
            series.push((
                with("data_stage_duration_seconds_count"),
                Box::new(move |i| i as f64 * 3.0),
            ));
        }
    }
    for j in 0..200 {
        let id = format!("job-{j:04}");
        let base = [("job", "training-exporter"), ("job_id", id.as_str())];
        let with = |name: &str| {
            let mut v: Vec<(&str, &str)> = base.to_vec();
            v.push(("__name__", name));
            Labels::from_pairs(&v)
        };
        series.push((
            with("training_samples_processed_total"),
            Box::new(|i| i as f64 * 512.0),
        ));
        series.push((with("training_current_step"), Box::new(|i| i as f64 * 4.0)));
        series.push((with("training_total_steps"), Box::new(|_| 100_000.0)));
        series.push((
            with("training_gpu_count"),
            Box::new(move |_| (8 * (1 + j % 4)) as f64),
        ));
    }
    let mut app = head.appender();
    for step in 0..=(SPAN_MS / STEP_MS) {
        for (l, f) in &series {
            app.append(0, l, step * STEP_MS, SampleValue::Float(f(step)))
                .expect("append");
        }
        app.commit().expect("commit");
    }
    drop(app);
    head
}

fn bench(c: &mut Criterion) {
    let head = build();
    let engine = Engine::default();
    let mut g = c.benchmark_group("lecture_range_2h_step60s");
    g.sample_size(10);
    for (id, q) in QUERIES {
        g.bench_function(*id, |b| {
            b.iter(|| {
                black_box(
                    engine
                        .range_query(&head, q, 0, SPAN_MS, 60_000)
                        .expect("query"),
                )
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
