//! The lecture's claim, measured: a dashboard panel over the last 24 hours, drawn from
//! raw histogram buckets versus from the series a recording rule wrote.
//!
//! Data: 24 h at a 15 s scrape interval of an inference fleet in the real TSDB head —
//! 20 models x 3 versions x 4 replicas, each with a 12-bucket latency histogram (3,360
//! series, 19 M samples). The lecture's `ml_inference_metrics` group is then evaluated
//! by `kiln-rules` every 30 s over the whole day (2,880 evaluations), writing
//! `model:latency_p99:rate5m` and friends into the same head, as `kiln server` would
//! have done. The benches are the dashboard's range query (24 h, one point a minute)
//! both ways, and one rule-group evaluation.
//!
//! `cargo bench -p kiln-rules --bench recorded`

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use kiln_model::Labels;
use kiln_promql::{Engine, EngineOptions};
use kiln_rules::{EvalEnv, Group, RestoreOptions, parse_rule_file};
use kiln_storage::{Appendable, Appender, Queryable, SampleValue};
use kiln_tsdb::head::{Head, HeadOptions};

const SCRAPE_MS: i64 = 15_000;
const EVAL_MS: i64 = 30_000;
const DAY_MS: i64 = 24 * 3_600_000;
const STEP_MS: i64 = 60_000;

const RAW: &str = "histogram_quantile(0.99, sum(rate(model_inference_duration_seconds_bucket[5m])) by (model_name, model_version, le))";
const RECORDED: &str = "model:latency_p99:rate5m";

const RULES: &str = r#"
groups:
  - name: ml_inference_metrics
    interval: 30s
    rules:
      - record: model:request_rate:rate5m
        expr: sum(rate(model_predictions_total[5m])) by (model_name, model_version)
      - record: model:latency_p50:rate5m
        expr: histogram_quantile(0.50, sum(rate(model_inference_duration_seconds_bucket[5m])) by (model_name, model_version, le))
      - record: model:latency_p95:rate5m
        expr: histogram_quantile(0.95, sum(rate(model_inference_duration_seconds_bucket[5m])) by (model_name, model_version, le))
      - record: model:latency_p99:rate5m
        expr: histogram_quantile(0.99, sum(rate(model_inference_duration_seconds_bucket[5m])) by (model_name, model_version, le))
"#;

/// The fleet's series: labels and each one's share of the model's requests.
fn fleet_series() -> Vec<(Labels, f64)> {
    let les = [
        "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf",
    ];
    let mut series = Vec::new();
    for model in 0..20 {
        for version in 0..3 {
            for replica in 0..4 {
                let (m, v, r) = (
                    format!("model-{model}"),
                    format!("v{version}"),
                    format!("replica-{replica}"),
                );
                let base = [
                    ("job", "inference-server"),
                    ("model_name", m.as_str()),
                    ("model_version", v.as_str()),
                    ("instance", r.as_str()),
                ];
                let mut add = |name: &str, le: Option<&str>, share: f64| {
                    let mut p: Vec<(&str, &str)> = base.to_vec();
                    p.push(("__name__", name));
                    p.extend(le.map(|le| ("le", le)));
                    series.push((Labels::from_pairs(&p), share));
                };
                for (b, le) in les.iter().enumerate() {
                    let share = ((b + 1) as f64 / les.len() as f64).sqrt();
                    add("model_inference_duration_seconds_bucket", Some(le), share);
                }
                add("model_inference_duration_seconds_count", None, 1.0);
                add("model_predictions_total", None, 1.0);
            }
        }
    }
    series
}

fn bench(c: &mut Criterion) {
    let head = Arc::new(Head::new(HeadOptions::default()));
    let queryable: Arc<dyn Queryable> = head.clone();
    let engine = Engine::new(EngineOptions::default());
    let external = BTreeMap::new();
    let env = EvalEnv {
        engine: &engine,
        queryable: &queryable,
        appendable: head.as_ref() as &dyn Appendable,
        external_labels: &external,
        external_url: "",
    };
    let spec = &parse_rule_file(RULES, "ml.yml").expect("rules")[0];
    let mut group = Group::new(spec, EVAL_MS, 0);
    // The day as a server lives it: scrapes, and the group evaluated every 30 s.
    let series = fleet_series();
    for i in 0..=DAY_MS / SCRAPE_MS {
        let t = i * SCRAPE_MS;
        let mut app = head.appender();
        for (n, (labels, share)) in series.iter().enumerate() {
            // Traffic varies over the day; buckets keep their shares.
            let rate = 20.0 + 10.0 * ((i as f64 / 400.0) + n as f64 / 50.0).sin();
            let v = (i as f64 * rate * share).floor();
            app.append(0, labels, t, SampleValue::Float(v))
                .expect("append");
        }
        app.commit().expect("commit");
        if t % EVAL_MS == 0 {
            let report = group.eval(&env, t, &RestoreOptions::default());
            assert_eq!(report.rules_failed, 0, "{:?}", group.status);
        }
    }
    let (start, end) = (STEP_MS * 5, DAY_MS);
    // Both ways draw the same panel.
    let raw = engine
        .range_query(queryable.as_ref(), RAW, start, end, STEP_MS)
        .expect("raw");
    let recorded = engine
        .range_query(queryable.as_ref(), RECORDED, start, end, STEP_MS)
        .expect("recorded");
    let points = |v: &kiln_promql::Value| match v {
        kiln_promql::Value::Matrix(m) => m.iter().map(|s| s.points.len()).sum::<usize>(),
        _ => 0,
    };
    assert_eq!(points(&raw.value), points(&recorded.value));

    let mut g = c.benchmark_group("dashboard_24h_p99");
    g.sample_size(10);
    g.bench_function("raw_buckets", |b| {
        b.iter(|| {
            black_box(
                engine
                    .range_query(queryable.as_ref(), RAW, start, end, STEP_MS)
                    .expect("raw"),
            )
        })
    });
    g.bench_function("recorded_series", |b| {
        b.iter(|| {
            black_box(
                engine
                    .range_query(queryable.as_ref(), RECORDED, start, end, STEP_MS)
                    .expect("recorded"),
            )
        })
    });
    g.finish();
    let mut g = c.benchmark_group("rule_group");
    g.sample_size(20);
    // Re-evaluating inside the day: the work is the same, the storage refuses the
    // (already written) results.
    let mut k = 0;
    g.bench_function("ml_inference_metrics_eval", |b| {
        b.iter(|| {
            k += 1;
            let t = 10 * EVAL_MS + (k % 2000) * EVAL_MS;
            black_box(group.eval(&env, t, &RestoreOptions::default()))
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
