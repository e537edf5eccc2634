//! The lecture the product comes from (`shared/seed/advanced-prometheus-lecture.md`,
//! beside the repository, never copied into it) works on Kiln:
//! - every scrape config in it loads as a `prometheus.yml`;
//! - every PromQL query in it evaluates, or is rejected with a parse error exactly where
//!   Prometheus rejects it too (a few lecture snippets put `by (...)` after a function
//!   call, which is not PromQL);
//! - its `objstore.yml` loads, with its `${VAR}` references, into a bucket client.
//!
//! Without the lecture (decided when the tests are built, see build.rs) both tests are
//! reported as ignored with that reason.

use kiln_config::{Config, KubernetesRole};
use kiln_model::Labels;
use kiln_promql::{Engine, QueryErrorKind};
use kiln_storage::mem::MemStorage;
use kiln_storage::{Appendable, SampleValue};

/// The lecture's text; only called by tests that run when it exists.
fn lecture() -> String {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/seed/advanced-prometheus-lecture.md"
    );
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

/// The YAML blocks of the lecture that are Prometheus configs.
fn lecture_configs(text: &str) -> Vec<String> {
    yaml_blocks(text, "scrape_configs:")
}

/// The YAML blocks of the lecture that hold `marker`.
fn yaml_blocks(text: &str, marker: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        match &mut current {
            None if line.trim_start().starts_with("```yaml") || line.trim() == "```yml" => {
                current = Some(String::new());
            }
            Some(block) if line.trim_start().starts_with("```") => {
                if block.contains(marker) {
                    out.push(std::mem::take(block));
                }
                current = None;
            }
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
            None => {}
        }
    }
    out
}

#[test]
#[cfg_attr(
    not(kiln_lecture),
    ignore = "lecture: needs ../shared/seed/advanced-prometheus-lecture.md beside the repository"
)]
fn lecture_objstore_config_loads() {
    let blocks = yaml_blocks(&lecture(), "# objstore.yml");
    assert_eq!(blocks.len(), 1, "{blocks:?}");
    let env = |name: &str| match name {
        "AWS_ACCESS_KEY_ID" => Some("AKIAEXAMPLE".to_owned()),
        "AWS_SECRET_ACCESS_KEY" => Some("secret".to_owned()),
        _ => None,
    };
    let config = kiln_objstore::config::parse_with_env(&blocks[0], env)
        .unwrap_or_else(|e| panic!("{e}\n{}", blocks[0]));
    let kiln_objstore::Provider::S3(s3) = &config.provider else {
        panic!("{config:?}")
    };
    assert_eq!(s3.bucket, "ai-metrics-long-term-storage");
    assert_eq!(s3.access_key, "AKIAEXAMPLE");
    assert_eq!(s3.sse_config.kind, "SSE-S3");
    // The client builds (nothing is asked of AWS until the first operation).
    let bucket = kiln_objstore::Bucket::from_config(&config).expect("bucket client");
    assert_eq!(bucket.name(), "ai-metrics-long-term-storage");
    // Without the variables set, the reference is an error naming the variable.
    let err = kiln_objstore::config::parse_with_env(&blocks[0], |_| None).expect_err("unset");
    assert!(err.to_string().contains("AWS_ACCESS_KEY_ID"), "{err}");
}

#[test]
#[cfg_attr(
    not(kiln_lecture),
    ignore = "lecture: needs ../shared/seed/advanced-prometheus-lecture.md beside the repository"
)]
fn lecture_scrape_configs_load() {
    let configs = lecture_configs(&lecture());
    assert!(configs.len() >= 3, "found {} configs", configs.len());
    for yaml in &configs {
        let c = Config::parse(yaml, "prometheus.yml")
            .unwrap_or_else(|e| panic!("lecture config failed: {e}\n{yaml}"));
        assert!(!c.scrape_configs.is_empty());
        for s in &c.scrape_configs {
            assert!(s.scrape_timeout <= s.scrape_interval);
        }
    }
    let regional = configs
        .iter()
        .find(|y| y.contains("regional-prometheus.yml"))
        .expect("regional config");
    let c = Config::parse(regional, "prometheus.yml").expect("regional config");
    assert_eq!(c.rule_files, vec!["/etc/prometheus/rules/*.yml".to_owned()]);
    let jobs = c.scrape_config("ml-training-jobs").expect("training job");
    assert_eq!(jobs.kubernetes_sd_configs[0].role, KubernetesRole::Pod);
    assert_eq!(jobs.relabel_configs.len(), 4);
    assert_eq!(jobs.relabel_configs[3].replacement, "$1:$2");
}

/// Queries of the lecture that Prometheus itself refuses to parse: `by` after a function.
const INVALID_IN_PROMETHEUS: &[&str] = &[
    "avg_over_time(\n  nvidia_gpu_duty_cycle[1h]\n) by (gpu_id)",
    "histogram_quantile(0.95,\n  rate(model_inference_duration_seconds_bucket[5m])\n) by (model_name, version)",
    "histogram_quantile(0.99,\n  rate(model_inference_duration_seconds_bucket[5m])\n) by (model_name, version)",
    "rate(training_samples_processed_total[5m]) by (job_id)",
    "rate(data_records_processed_total[5m]) by (pipeline_stage)",
];

/// The PromQL snippets of the lecture: ```promql blocks split at comment lines.
fn lecture_queries(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_block = false;
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("```") {
            in_block = !in_block && trimmed == "```promql";
            if !current.trim().is_empty() {
                out.push(current.trim().to_owned());
            }
            current.clear();
            continue;
        }
        if !in_block {
            continue;
        }
        if trimmed.starts_with('#') || trimmed.is_empty() {
            if !current.trim().is_empty() {
                out.push(current.trim().to_owned());
            }
            current.clear();
            continue;
        }
        current.push_str(line);
        current.push('\n');
    }
    out
}

#[test]
#[cfg_attr(
    not(kiln_lecture),
    ignore = "lecture: needs ../shared/seed/advanced-prometheus-lecture.md beside the repository"
)]
fn lecture_queries_evaluate_like_prometheus() {
    let queries = lecture_queries(&lecture());
    assert!(queries.len() >= 15, "found {} queries", queries.len());
    let st = MemStorage::new();
    let mut app = st.appender();
    let l = Labels::from_pairs(&[
        ("__name__", "nvidia_gpu_duty_cycle"),
        ("gpu_id", "0"),
        ("job_name", "llm"),
    ]);
    for i in 0..100 {
        app.append(0, &l, i * 15_000, SampleValue::Float(0.5))
            .expect("append");
    }
    app.commit().expect("commit");
    drop(app);
    let engine = Engine::default();
    for q in &queries {
        let invalid = INVALID_IN_PROMETHEUS.contains(&q.as_str());
        match engine.range_query(&st, q, 0, 1_500_000, 60_000) {
            Ok(_) => assert!(!invalid, "{q:?} parses in Kiln but not in Prometheus"),
            Err(e) => {
                assert!(invalid, "{q:?} failed: {e}");
                assert_eq!(e.kind, QueryErrorKind::InvalidQuery, "{q:?}: {e}");
                assert!(
                    e.message.contains("parse error: unexpected <by>"),
                    "{q:?}: {e}"
                );
            }
        }
    }
}
