//! End-to-end checks of the engine over the in-memory storage.

use kiln_model::Labels;
use kiln_promql::{Engine, Value};
use kiln_storage::mem::MemStorage;
use kiln_storage::{Appendable, SampleValue};

fn storage() -> MemStorage {
    let st = MemStorage::new();
    let mut app = st.appender();
    for i in 0..=60i64 {
        let t = i * 15_000;
        for (job, inst, mult) in [("api", "a", 1.0), ("api", "b", 2.0), ("db", "c", 3.0)] {
            let l = Labels::from_pairs(&[
                ("__name__", "http_requests_total"),
                ("job", job),
                ("instance", inst),
            ]);
            app.append(0, &l, t, SampleValue::Float(i as f64 * 10.0 * mult))
                .expect("append");
        }
        let g = Labels::from_pairs(&[("__name__", "gpu_util"), ("gpu", "0")]);
        app.append(0, &g, t, SampleValue::Float(0.5))
            .expect("append");
    }
    app.commit().expect("commit");
    drop(app);
    st
}

fn instant(q: &str, t: i64) -> Value {
    Engine::default()
        .instant_query(&storage(), q, t)
        .unwrap_or_else(|e| panic!("{q}: {e}"))
        .value
}

fn vector(q: &str, t: i64) -> Vec<(String, f64)> {
    match instant(q, t) {
        Value::Vector(v) => {
            let mut out: Vec<(String, f64)> =
                v.into_iter().map(|s| (s.labels.to_string(), s.v)).collect();
            out.sort_by(|a, b| a.0.cmp(&b.0));
            out
        }
        other => panic!("{q}: not a vector: {other:?}"),
    }
}

#[test]
fn selectors_aggregations_and_functions() {
    let t = 600_000;
    assert_eq!(
        vector("http_requests_total{instance=\"a\"}", t),
        vec![(
            r#"{__name__="http_requests_total", instance="a", job="api"}"#.to_string(),
            400.0
        )]
    );
    assert_eq!(
        vector("sum by (job) (http_requests_total)", t),
        vec![
            (r#"{job="api"}"#.to_string(), 1200.0),
            (r#"{job="db"}"#.to_string(), 1200.0)
        ]
    );
    let rate = vector("rate(http_requests_total{instance=\"a\"}[5m])", t);
    assert_eq!(rate.len(), 1);
    assert!((rate[0].1 - 10.0 / 15.0).abs() < 1e-9, "{rate:?}");
    assert_eq!(
        vector("count(http_requests_total > 500)", t),
        vec![("{}".to_string(), 2.0)]
    );
    assert_eq!(vector("http_requests_total{job=\"db\"} / on(job) group_left sum by (job) (http_requests_total)", t).len(), 1);
    assert_eq!(
        instant("scalar(gpu_util) * 2", t),
        Value::Scalar { t, v: 1.0 }
    );
    assert_eq!(
        vector(
            "label_replace(gpu_util, \"card\", \"gpu-$1\", \"gpu\", \"(.*)\")",
            t
        )[0]
        .0,
        r#"{__name__="gpu_util", card="gpu-0", gpu="0"}"#
    );
    assert_eq!(
        vector("absent(nope{job=\"x\"})", t),
        vec![(r#"{job="x"}"#.to_string(), 1.0)]
    );
    // The lookback window is 5 minutes: after 15m of silence nothing is returned.
    assert!(vector("gpu_util", 900_000 + 301_000).is_empty());
}

#[test]
fn range_query_matrix() {
    let v = Engine::default()
        .range_query(
            &storage(),
            "sum(rate(http_requests_total[1m]))",
            60_000,
            600_000,
            60_000,
        )
        .expect("range query")
        .value;
    let Value::Matrix(m) = v else {
        panic!("matrix expected")
    };
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].points.len(), 10);
    for (_, v) in &m[0].points {
        assert!((v - 60.0 / 15.0).abs() < 1e-9, "{v}");
    }
}

#[test]
fn bad_queries_are_errors() {
    let e = Engine::default();
    let st = storage();
    for q in ["sum(", "rate(x)", "x[5m]+1", "unknown_fn(x)", "{}"] {
        assert!(e.instant_query(&st, q, 0).is_err(), "{q} must fail");
    }
}

#[test]
fn limits_cancellation_and_concurrency() {
    use kiln_promql::{CancelToken, EngineOptions, QueryErrorKind};
    use std::time::{Duration, Instant};
    let st = storage();

    let cancel = CancelToken::new();
    cancel.cancel();
    let e = Engine::default()
        .instant_query_cancelable(&st, "sum(http_requests_total)", 0, &cancel)
        .expect_err("canceled");
    assert_eq!(e.kind, QueryErrorKind::Canceled);

    let tight = Engine::new(EngineOptions {
        max_samples: 50,
        ..EngineOptions::default()
    });
    let e = tight
        .instant_query(&st, "count_over_time(http_requests_total[1h])", 900_000)
        .expect_err("too many samples");
    assert!(e.message.contains("too many samples"), "{e}");

    // A hostile subquery (a million inner steps, each with a point) stops at the
    // sample budget, quickly, instead of running away. (Over `http_requests_total`
    // most inner steps find nothing, so that one fits the budget.)
    let guarded = Engine::new(EngineOptions {
        max_samples: 100_000,
        timeout: Some(Duration::from_secs(2)),
        ..EngineOptions::default()
    });
    let started = Instant::now();
    let e = guarded
        .instant_query(&st, "max_over_time(vector(1)[1000000s:1s])", 900_000)
        .expect_err("hostile");
    assert!(
        matches!(e.kind, QueryErrorKind::Execution | QueryErrorKind::Timeout),
        "{e}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));

    // One slot: concurrent queries wait their turn and all succeed.
    let one = Engine::new(EngineOptions {
        max_concurrency: 1,
        ..EngineOptions::default()
    });
    std::thread::scope(|s| {
        for _ in 0..4 {
            let (one, st) = (&one, &st);
            s.spawn(move || {
                one.range_query(
                    st,
                    "sum(rate(http_requests_total[1m]))",
                    60_000,
                    600_000,
                    60_000,
                )
                .expect("query");
            });
        }
    });
}

#[test]
fn step_invariant_subtrees_have_the_same_value_at_every_step() {
    let v = Engine::default()
        .range_query(
            &storage(),
            "sum(http_requests_total @ 600) + vector(time())",
            60_000,
            600_000,
            60_000,
        )
        .expect("range query")
        .value;
    let Value::Matrix(m) = v else {
        panic!("matrix expected")
    };
    // sum(... @ 600) is 2400 at every step; time() still advances.
    let points: Vec<f64> = m[0]
        .points
        .iter()
        .map(|p| p.1 - p.0 as f64 / 1000.0)
        .collect();
    assert_eq!(points.len(), 10);
    assert!(points.iter().all(|&p| p == 2400.0), "{points:?}");
}

#[test]
fn parser_panics_become_errors() {
    // Found by the promql_query fuzz target: the parser panics on this duration.
    let e = Engine::default()
        .instant_query(&storage(), "_9[39222222222222222222222222]", 0)
        .expect_err("invalid");
    assert_eq!(e.kind, kiln_promql::QueryErrorKind::InvalidQuery);
}

#[test]
fn long_range_queries_split_over_threads_match_instant_queries() {
    let st = storage();
    let e = Engine::default();
    let q = "sum by (job) (rate(http_requests_total[1m])) * on() group_left vector(2) or vector(time() > bool 800)";
    let Value::Matrix(m) = e
        .range_query(&st, q, 0, 900_000, 1_000)
        .expect("range query")
        .value
    else {
        panic!("matrix expected")
    };
    for t in (0..=900_000).step_by(37_000) {
        let Value::Vector(v) = e.instant_query(&st, q, t).expect("instant").value else {
            panic!("vector")
        };
        for s in v {
            let series = m
                .iter()
                .find(|x| x.labels == s.labels)
                .expect("series in range result");
            let p = series.points.iter().find(|p| p.0 == t).expect("point at t");
            assert!(
                (p.1 - s.v).abs() < 1e-9 || (p.1.is_nan() && s.v.is_nan()),
                "t={t} {}: {} vs {}",
                s.labels,
                p.1,
                s.v
            );
        }
    }
}

#[test]
fn dropping_names_that_makes_duplicates_is_an_error_at_every_step() {
    let st = MemStorage::new();
    {
        let mut app = st.appender();
        for i in 0..=60i64 {
            for name in ["a_total", "b_total"] {
                let l = Labels::from_pairs(&[("__name__", name), ("x", "1")]);
                app.append(0, &l, i * 15_000, SampleValue::Float(i as f64))
                    .expect("append");
            }
            let l = Labels::from_pairs(&[("__name__", "c_total"), ("x", "2")]);
            app.append(0, &l, i * 15_000, SampleValue::Float(i as f64))
                .expect("append");
        }
        app.commit().expect("commit");
    }
    let e = Engine::default();
    // Two series that differ only by name collide once the name is gone.
    for q in [
        r#"rate({__name__=~"a_total|b_total"}[5m])"#,
        r#"{__name__=~"a_total|b_total"} * 2"#,
    ] {
        let err = e
            .range_query(&st, q, 300_000, 900_000, 15_000)
            .expect_err(q)
            .to_string();
        assert!(err.contains("same labelset"), "{q}: {err}");
        let err = e.instant_query(&st, q, 600_000).expect_err(q).to_string();
        assert!(err.contains("same labelset"), "{q}: {err}");
    }
    // Names that do not collide are fine.
    e.range_query(&st, "rate(c_total[5m])", 300_000, 900_000, 15_000)
        .expect("one name");
}

/// Range functions over plain matrix selectors are computed for all steps at once
/// (step tables); every step must equal an instant query at that time, bit for bit,
/// whatever the data: gaps longer than the range, staleness markers, counter resets,
/// offsets, subqueries over them, functions that keep the name, constant arguments.
#[test]
fn range_functions_over_all_steps_equal_instant_queries() {
    let st = MemStorage::new();
    {
        let mut app = st.appender();
        for i in 0..=200i64 {
            let t = i * 10_000;
            for (inst, k) in [("a", 1.0), ("b", 3.0), ("c", 0.5)] {
                // "b" pauses for 10 minutes, "c" goes stale for a while, all reset.
                if inst == "b" && (60..120).contains(&i) {
                    continue;
                }
                let v = if inst == "c" && (90..100).contains(&i) {
                    kiln_model::STALE_NAN
                } else {
                    ((i % 70) as f64 * k).sin().abs() * 100.0 + (i % 70) as f64 * k
                };
                let l = Labels::from_pairs(&[("__name__", "work_total"), ("instance", inst)]);
                app.append(0, &l, t, SampleValue::Float(v)).expect("append");
            }
        }
        app.commit().expect("commit");
    }
    let e = Engine::default();
    for q in [
        "rate(work_total[1m])",
        "increase(work_total[3m] offset 1m)",
        "avg_over_time(work_total[5m])",
        "max_over_time(work_total[2m])",
        "last_over_time(work_total[1m])",
        "quantile_over_time(0.9, work_total[4m])",
        "predict_linear(work_total[10m], 2 * 3600)",
        "deriv(work_total[5m])",
        "double_exponential_smoothing(work_total[5m], 0.5, (0.1 + 0.2))",
        "sum(irate(work_total[1m]))",
        "deriv(rate(work_total[2m])[10m:])",
        "max_over_time(rate(work_total[1m])[5m:30s] offset 30s)",
        // Windows shorter than some steps: the subquery is evaluated step by step.
        "max_over_time(rate(work_total[1m])[30s:10s])",
        "sum(count_over_time(work_total[1m:15s]))",
        "rate(work_total[1m]) > 1",
        // Operations over tables (see `binary_table`): constants on either side,
        // filters, `bool`, matching modifiers, nested.
        "100 * (rate(work_total[1m]) / work_total)",
        "work_total > 50",
        "50 < work_total",
        "work_total >= bool 80",
        "work_total > rate(work_total[1m])",
        "rate(work_total[1m]) * on(instance) group_left() max_over_time(work_total[2m])",
        "max_over_time(work_total[2m]) - on(instance) group_right() work_total",
        "-work_total + 2 ^ 3",
        "sum(work_total / 2)",
        // The same call in two subqueries: one table, read from storage once.
        "(rate(work_total[1m]) - avg_over_time(rate(work_total[1m])[5m:30s])) / stddev_over_time(rate(work_total[1m])[5m:30s])",
    ] {
        for step in [7_000, 20_000, 60_000] {
            let Value::Matrix(m) = e
                .range_query(&st, q, 100_000, 1_900_000, step)
                .unwrap_or_else(|err| panic!("{q}: {err}"))
                .value
            else {
                panic!("{q}: matrix expected")
            };
            let mut points = 0;
            for t in (100_000..=1_900_000).step_by(step as usize) {
                let Value::Vector(v) = e.instant_query(&st, q, t).expect("instant").value else {
                    panic!("{q}: vector expected")
                };
                for s in &v {
                    let series = m
                        .iter()
                        .find(|x| x.labels == s.labels)
                        .unwrap_or_else(|| panic!("{q} t={t}: {} missing", s.labels));
                    let p = series
                        .points
                        .iter()
                        .find(|p| p.0 == t)
                        .unwrap_or_else(|| panic!("{q} t={t}: {} has no point", s.labels));
                    assert!(
                        p.1.to_bits() == s.v.to_bits() || (p.1.is_nan() && s.v.is_nan()),
                        "{q} step={step} t={t} {}: {} vs {}",
                        s.labels,
                        p.1,
                        s.v
                    );
                }
                points += v.len();
            }
            let range_points: usize = m.iter().map(|s| s.points.len()).sum();
            assert_eq!(range_points, points, "{q} step={step}: extra points");
            assert!(points > 0, "{q} step={step}: no points at all");
        }
    }
}

/// A range function over a selector that appears twice over the same times (inside two
/// subqueries) reads storage once: the whole query reads as many samples as one of the
/// subqueries alone.
#[test]
fn the_same_call_twice_is_read_once() {
    let st = MemStorage::new();
    let mut app = st.appender();
    for i in 0..20i64 {
        let l = Labels::from_pairs(&[("__name__", "x_total"), ("id", &i.to_string())]);
        for k in 0..=720i64 {
            app.append(0, &l, k * 15_000, SampleValue::Float((k * (i + 1)) as f64))
                .expect("append");
        }
    }
    app.commit().expect("commit");
    drop(app);
    let e = Engine::default();
    let read = |q: &str| {
        let r = e
            .range_query(&st, q, 3_600_000, 10_800_000, 60_000)
            .unwrap_or_else(|err| panic!("{q}: {err}"));
        r.stats.total_queryable_samples
    };
    let one = read("avg_over_time(rate(x_total[5m])[1h:5m])");
    let both = read(
        "avg_over_time(rate(x_total[5m])[1h:5m]) - stddev_over_time(rate(x_total[5m])[1h:5m])",
    );
    let different = read(
        "avg_over_time(rate(x_total[5m])[1h:5m]) - stddev_over_time(rate(x_total[10m])[1h:5m])",
    );
    assert!(one > 0);
    assert_eq!(both, one);
    assert!(different > one, "{different} <= {one}");
}

/// A step-invariant subtree (its selectors pinned with `@`) is computed once per query,
/// but what an operation returns carries each step's time, as in Prometheus: only a
/// selector's samples keep their own times. (Checked against Prometheus 2.42.)
#[test]
fn pinned_subtrees_carry_each_steps_time() {
    let st = MemStorage::new();
    let mut app = st.appender();
    let x = Labels::from_pairs(&[("__name__", "x")]);
    for i in 0..9i64 {
        app.append(0, &x, i * 60_000, SampleValue::Float(i as f64 + 1.0))
            .expect("append");
    }
    app.commit().expect("commit");
    drop(app);
    let each_step = vec![0.0, 60.0, 120.0, 180.0, 240.0];
    let pinned = vec![60.0; 5];
    for (q, want) in [
        ("timestamp(abs(x @ 60))", &each_step),
        ("timestamp(sum(x @ 60))", &each_step),
        ("timestamp(-x @ 60)", &each_step),
        ("timestamp(x @ 60 + 1)", &each_step),
        ("timestamp(x @ 60)", &pinned),
        ("timestamp((x @ 60))", &pinned),
    ] {
        let v = Engine::default()
            .range_query(&st, q, 0, 240_000, 60_000)
            .expect(q)
            .value;
        let Value::Matrix(m) = v else {
            panic!("{q}: not a matrix")
        };
        assert_eq!(m.len(), 1, "{q}");
        let got: Vec<f64> = m[0].points.iter().map(|p| p.1).collect();
        assert_eq!(&got, want, "{q}");
    }
}

/// A range query over a long span holds one time slice of decoded data at a time: it
/// answers within a byte budget a quarter of the data it reads over the whole range
/// (what the engine held before range queries were sliced), and gives what instant
/// queries give at the same times.
#[test]
fn long_range_queries_hold_one_slice_at_a_time() {
    let st = MemStorage::new();
    let mut app = st.appender();
    let (series, interval, span) = (60i64, 30_000i64, 2 * 86_400_000i64);
    let mut samples = 0usize;
    for i in 0..series {
        let l = Labels::from_pairs(&[
            ("__name__", "x_total"),
            ("job", if i % 2 == 0 { "a" } else { "b" }),
            ("id", &i.to_string()),
        ]);
        let mut t = 0;
        while t <= span {
            app.append(0, &l, t, SampleValue::Float((t / 1000 * (i + 1)) as f64))
                .expect("append");
            samples += 1;
            t += interval;
        }
    }
    app.commit().expect("commit");
    drop(app);
    let whole_range_bytes = samples * 16;
    let engine = Engine::new(kiln_promql::EngineOptions {
        max_memory_bytes: whole_range_bytes / 4,
        ..kiln_promql::EngineOptions::default()
    });
    let q = "sum by (job) (rate(x_total[5m]))";
    let (start, end, step) = (3_600_000, span, 60_000);
    let r = engine.range_query(&st, q, start, end, step).expect("fits");
    assert!(r.stats.slices >= 4, "{:?}", r.stats);
    assert!(r.stats.peak_bytes <= whole_range_bytes / 4, "{:?}", r.stats);
    assert!(
        r.stats.total_queryable_samples >= samples * 9 / 10,
        "{:?}",
        r.stats
    );
    let Value::Matrix(m) = r.value else {
        panic!("matrix expected")
    };
    assert_eq!(m.len(), 2);
    // Slice edges included: every 37th step against an instant query.
    for k in (0..=((end - start) / step)).step_by(37) {
        let t = start + k * step;
        let Value::Vector(v) = engine.instant_query(&st, q, t).expect("instant").value else {
            panic!("vector expected")
        };
        for s in &m {
            let got = s.points.iter().find(|p| p.0 == t).map(|p| p.1);
            let want = v.iter().find(|x| x.labels == s.labels).map(|x| x.v);
            assert_eq!(got, want, "{} at {t}", s.labels);
        }
    }
    // The old design held the whole range's samples at once: over the budget.
    let all_at_once = Engine::new(kiln_promql::EngineOptions {
        max_memory_bytes: whole_range_bytes / 4,
        ..kiln_promql::EngineOptions::default()
    })
    .range_query(&st, "sum by (job) (rate(x_total[2d]))", span, span, 60_000);
    let e = all_at_once.expect_err("a window of the whole range does not fit");
    assert!(e.message.contains("--query.max-memory-bytes"), "{e}");
}

#[test]
fn selectors_in_a_range_query_hold_their_table_not_their_windows() {
    // 200 series scraped every 15 s for 2 h, a range query at a 5-minute step: each
    // selector's table holds one value per series and step (24 steps), a quarter of
    // what its decoded window (480 samples per series) took.
    let st = MemStorage::new();
    let mut app = st.appender();
    for i in 0..200i64 {
        for metric in ["used", "total"] {
            let l = Labels::from_pairs(&[("__name__", metric), ("gpu", &i.to_string())]);
            for k in 0..480i64 {
                let v = if metric == "used" {
                    (k % 50 + i) as f64
                } else {
                    100.0 + i as f64
                };
                app.append(0, &l, k * 15_000, SampleValue::Float(v))
                    .expect("append");
            }
        }
    }
    app.commit().expect("commit");
    drop(app);
    let decoded_windows = 2 * 200 * 480 * 16;
    let engine = Engine::new(kiln_promql::EngineOptions {
        max_memory_bytes: decoded_windows / 2,
        ..kiln_promql::EngineOptions::default()
    });
    let q = "100 * (used / total)";
    let (start, end, step) = (300_000, 6_900_000, 300_000);
    let r = engine
        .range_query(&st, q, start, end, step)
        .expect("fits the budget");
    assert!(r.stats.peak_bytes < decoded_windows / 2, "{:?}", r.stats);
    let Value::Matrix(m) = r.value else {
        panic!("matrix expected")
    };
    assert_eq!(m.len(), 200);
    // The same answers as instant queries, timestamp() of a selector included.
    for t in [start, 3_600_000, end] {
        for query in [q, "timestamp(used)"] {
            let range = engine
                .range_query(&st, query, start, end, step)
                .expect("range");
            let Value::Matrix(series) = range.value else {
                panic!("matrix expected")
            };
            let Value::Vector(v) = engine.instant_query(&st, query, t).expect("instant").value
            else {
                panic!("vector expected")
            };
            assert_eq!(v.len(), 200, "{query} at {t}");
            for x in &v {
                let s = series
                    .iter()
                    .find(|s| s.labels == x.labels)
                    .expect("series");
                let got = s.points.iter().find(|p| p.0 == t).map(|p| p.1);
                assert_eq!(got, Some(x.v), "{query} {} at {t}", x.labels);
            }
        }
    }
}

/// A select as recorded: metric name, function, range, step.
type Seen = std::sync::Mutex<Vec<(String, Option<String>, i64, i64)>>;

/// Records the select hints each selector is read with.
struct HintsRecorder {
    inner: MemStorage,
    seen: Seen,
}

impl kiln_storage::Queryable for HintsRecorder {
    fn querier(
        &self,
        mint: i64,
        maxt: i64,
    ) -> Result<Box<dyn kiln_storage::Querier + '_>, kiln_storage::StorageError> {
        Ok(Box::new(RecordingQuerier {
            inner: self.inner.querier(mint, maxt)?,
            seen: &self.seen,
        }))
    }
}

struct RecordingQuerier<'a> {
    inner: Box<dyn kiln_storage::Querier + 'a>,
    seen: &'a Seen,
}

impl kiln_storage::Querier for RecordingQuerier<'_> {
    fn select<'a>(
        &'a self,
        sorted: bool,
        hints: Option<&kiln_storage::SelectHints>,
        matchers: &[kiln_model::Matcher],
    ) -> Box<dyn kiln_storage::SeriesSet<'a> + 'a> {
        let name = matchers
            .iter()
            .find(|m| m.name == "__name__")
            .map(|m| m.value.clone())
            .unwrap_or_default();
        let h = hints.cloned().unwrap_or_default();
        if let Ok(mut seen) = self.seen.lock() {
            seen.push((name, h.func, h.range, h.step));
        }
        self.inner.select(sorted, hints, matchers)
    }

    fn label_values(
        &self,
        name: &str,
        matchers: &[kiln_model::Matcher],
    ) -> Result<(Vec<String>, Vec<String>), kiln_storage::StorageError> {
        self.inner.label_values(name, matchers)
    }

    fn label_names(
        &self,
        matchers: &[kiln_model::Matcher],
    ) -> Result<(Vec<String>, Vec<String>), kiln_storage::StorageError> {
        self.inner.label_names(matchers)
    }
}

#[test]
fn selectors_are_read_with_the_function_around_them() {
    let rec = HintsRecorder {
        inner: storage(),
        seen: std::sync::Mutex::new(Vec::new()),
    };
    Engine::default()
        .range_query(
            &rec,
            "rate(http_requests_total[5m]) + on() group_left max_over_time((gpu_util)[10m:1m]) \
             / sum(-gpu_util) + http_requests_total",
            600_000,
            900_000,
            60_000,
        )
        .expect("query");
    let mut seen = rec.seen.lock().expect("lock").clone();
    seen.sort();
    seen.dedup();
    let want = vec![
        (
            "gpu_util".to_owned(),
            Some("max_over_time".to_owned()),
            0,
            60_000,
        ),
        ("gpu_util".to_owned(), Some("sum".to_owned()), 0, 60_000),
        ("http_requests_total".to_owned(), None, 0, 60_000),
        (
            "http_requests_total".to_owned(),
            Some("rate".to_owned()),
            300_000,
            60_000,
        ),
    ];
    assert_eq!(seen, want);
}
