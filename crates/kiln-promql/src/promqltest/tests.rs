//! Runner tests over `MemStorage` and a tiny fake engine, so they do not depend on the
//! evaluator.

use kiln_model::{Matcher, is_stale_nan};
use kiln_storage::mem::MemStorage;
use kiln_storage::{Queryable, ValueKind};

use super::*;
use crate::error::QueryError;
use crate::value::{Sample, Series, Value};

/// Understands: a number (scalar), `"str"`, `fail`, `warn` (empty vector with a warning),
/// `info`, `<name>` and `<name> @ <secs>` (latest sample in the last 5m, like a selector).
struct Fake;

const LOOKBACK: i64 = 300_000;

fn select(storage: &dyn Queryable, name: &str, t: i64) -> Result<Vec<Sample>, QueryError> {
    let q = storage.querier(t - LOOKBACK + 1, t)?;
    let mut set = q.select(true, None, &[Matcher::equal("__name__", name)]);
    let mut out = Vec::new();
    while let Some(s) = set.next() {
        let mut it = s.iterator();
        let mut last = None;
        while it.next() == ValueKind::Float {
            let (st, v) = it.at();
            if st > t - LOOKBACK && st <= t {
                last = Some(v);
            }
        }
        if let Some(v) = last.filter(|v| !is_stale_nan(*v)) {
            out.push(Sample::new(s.labels().clone(), t, v));
        }
    }
    Ok(out)
}

impl QueryEngine for Fake {
    fn instant_query(
        &self,
        storage: &dyn Queryable,
        query: &str,
        t: i64,
    ) -> Result<QueryResult, QueryError> {
        let ok = |value| {
            Ok(QueryResult {
                value,
                warnings: vec![],
                infos: vec![],
                stats: Default::default(),
            })
        };
        let q = query.trim();
        if let Ok(v) = q.parse::<f64>() {
            return ok(Value::Scalar { t, v });
        }
        if let Some(s) = q.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
            return ok(Value::String { t, v: s.to_owned() });
        }
        match q {
            "fail" => return Err(QueryError::execution("boom: it failed")),
            "panic" => panic!("fake engine panics"),
            "warn" => {
                return Ok(QueryResult {
                    value: Value::Vector(vec![]),
                    warnings: vec!["PromQL warning: w (1:1)".into()],
                    infos: vec![],
                    stats: Default::default(),
                });
            }
            "info" => {
                return Ok(QueryResult {
                    value: Value::Vector(vec![]),
                    warnings: vec![],
                    infos: vec!["PromQL info: i (1:1)".into()],
                    stats: Default::default(),
                });
            }
            // Right in instant mode only: the range-mode check must catch it.
            "instant_only" => return ok(Value::Vector(vec![])),
            _ => {}
        }
        let (name, at) = match q.split_once(" @ ") {
            Some((n, secs)) => {
                let secs: f64 = secs.parse().map_err(|_| QueryError::bad_data("bad @"))?;
                (n.trim(), (secs * 1000.0).round() as i64)
            }
            None => (q, t),
        };
        if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(QueryError::bad_data(format!(
                "fake engine cannot parse {query:?}"
            )));
        }
        ok(Value::Vector(select(storage, name, at)?))
    }

    fn range_query(
        &self,
        storage: &dyn Queryable,
        query: &str,
        start: i64,
        end: i64,
        step: i64,
    ) -> Result<QueryResult, QueryError> {
        let mut series: Vec<Series> = Vec::new();
        let mut warnings = Vec::new();
        let mut infos = Vec::new();
        let mut t = start;
        while t <= end {
            let q = if query == "instant_only" { "1" } else { query };
            let r = self.instant_query(storage, q, t)?;
            warnings.extend(r.warnings);
            infos.extend(r.infos);
            let samples = match r.value {
                Value::Scalar { v, .. } => vec![Sample::new(kiln_model::Labels::empty(), t, v)],
                Value::Vector(v) => v,
                _ => return Err(QueryError::bad_data("bad range query type")),
            };
            for s in samples {
                match series.iter_mut().find(|x| x.labels == s.labels) {
                    Some(x) => x.points.push((t, s.v)),
                    None => series.push(Series {
                        labels: s.labels,
                        points: vec![(t, s.v)],
                    }),
                }
            }
            t += step;
        }
        series.sort_by(|a, b| a.labels.cmp(&b.labels));
        warnings.dedup();
        infos.dedup();
        Ok(QueryResult {
            value: Value::Matrix(series),
            warnings,
            infos,
            stats: Default::default(),
        })
    }
}

fn mem() -> Box<dyn TestStorage> {
    Box::new(MemStorage::new())
}

fn run(text: &str, opts: &RunOptions) -> FileReport {
    run_script("t.test", text, &mem, &Fake, opts)
}

const NO_EXTRA: RunOptions = RunOptions {
    range_mode_check: false,
    at_modifier_check: false,
};

/// (script, passed, failed, skipped, substring of the first failure's message)
#[test]
fn scripts() {
    let data = "load 1m\n  m{a=\"1\"} 1 2 3 _ stale 6\n  m{a=\"2\"} 10+10x5\n\n";
    let cases: &[(&str, usize, usize, usize, &str)] = &[
        (
            "eval instant at 1m m\n  m{a=\"1\"} 2\n  m{a=\"2\"} 20\n",
            1,
            0,
            0,
            "",
        ),
        (
            "eval instant at 1m m\n  m{a=\"1\"} 2\n",
            0,
            1,
            0,
            "unexpected series m{a=\"2\"}",
        ),
        (
            "eval instant at 1m m\n  m{a=\"1\"} 2\n  m{a=\"2\"} 20\n  m{a=\"3\"} 1\n",
            0,
            1,
            0,
            "not found",
        ),
        (
            "eval instant at 1m m\n  m{a=\"1\"} 2\n  m{a=\"2\"} 21\n",
            0,
            1,
            0,
            "expected 21 for m{a=\"2\"} but got 20",
        ),
        // 3m has no sample for a=1: the 2m one is found by lookback; at 4m it is stale.
        (
            "eval instant at 3m m\n  m{a=\"1\"} 3\n  m{a=\"2\"} 40\n",
            1,
            0,
            0,
            "",
        ),
        ("eval instant at 4m m\n  m{a=\"2\"} 50\n", 1, 0, 0, ""),
        (
            "eval range from 0 to 5m step 1m m\n  m{a=\"1\"} 1 2 3 3 _ 6\n  m{a=\"2\"} 10+10x5\n",
            1,
            0,
            0,
            "",
        ),
        (
            "eval range from 0 to 5m step 1m m\n  m{a=\"1\"} 1 2 3 _ _ 6\n  m{a=\"2\"} 10+10x5\n",
            0,
            1,
            0,
            "expected 4 points",
        ),
        (
            "eval_ordered instant at 1m m\n  m{a=\"2\"} 20\n  m{a=\"1\"} 2\n",
            0,
            1,
            0,
            "position",
        ),
        (
            "eval instant at 1m m\n  expect ordered\n  m{a=\"1\"} 2\n  m{a=\"2\"} 20\n",
            1,
            0,
            0,
            "",
        ),
        ("eval instant at 0 1.5\n  1.5\n", 1, 0, 0, ""),
        (
            "eval instant at 0 1.5\n  2\n",
            0,
            1,
            0,
            "expected scalar 2 but got 1.5",
        ),
        (
            "eval instant at 0 \"Foo\"\n  expect string \"Foo\"\n",
            1,
            0,
            0,
            "",
        ),
        ("eval instant at 0 fail\n  expect fail\n", 1, 0, 0, ""),
        ("eval_fail instant at 0 fail\n", 1, 0, 0, ""),
        (
            "eval instant at 0 fail\n  expect fail msg: boom: it failed\n",
            1,
            0,
            0,
            "",
        ),
        (
            "eval instant at 0 fail\n  expect fail regex: it fa.led\n",
            1,
            0,
            0,
            "",
        ),
        (
            "eval instant at 0 fail\n  expect fail msg: other\n",
            0,
            1,
            0,
            "expected error \"other\"",
        ),
        (
            "eval instant at 0 fail\n",
            0,
            1,
            0,
            "error evaluating query: boom",
        ),
        (
            "eval instant at 0 m\n  expect fail\n",
            0,
            1,
            0,
            "expected an error",
        ),
        (
            "eval range from 0 to 1m step 1m fail\n  expect fail\n",
            1,
            0,
            0,
            "",
        ),
        (
            "eval instant at 0 panic\n",
            0,
            1,
            0,
            "engine panicked: fake engine panics",
        ),
        ("eval instant at 0 warn\n", 1, 0, 0, ""),
        (
            "eval instant at 0 warn\n  expect no_warn\n",
            0,
            1,
            0,
            "unexpected warnings",
        ),
        (
            "eval instant at 0 warn\n  expect warn msg: PromQL warning: w (1:1)\n",
            1,
            0,
            0,
            "",
        ),
        ("eval_warn instant at 0 warn\n", 1, 0, 0, ""),
        (
            "eval range from 0 to 1m step 1m warn\n  expect warn regex: w \\(1:1\\)\n  expect no_info\n",
            1,
            0,
            0,
            "",
        ),
        ("eval instant at 0 info\n  expect no_warn\n", 1, 0, 0, ""),
        (
            "eval instant at 0 info\n  expect no_info\n",
            0,
            1,
            0,
            "unexpected infos",
        ),
        ("eval_info instant at 0 info\n", 1, 0, 0, ""),
        (
            "eval instant at 0 m\n  expect info\n",
            0,
            1,
            0,
            "expected info annotations but none",
        ),
        // Native histograms: expected values, or selecting a histogram series.
        (
            "eval instant at 1m m\n  m{a=\"1\"} {{count:1}}\n",
            0,
            0,
            1,
            "",
        ),
        (
            "load 1m\n  h 1 {{count:1}} 3\n\neval instant at 0 h\n  h 1\n\neval instant at 0 m\n  m{a=\"1\"} 1\n  m{a=\"2\"} 10\n",
            1,
            0,
            1,
            "",
        ),
        (
            "load_with_nhcb 1m\n  x_bucket{le=\"1\"} 1\n  x_bucket{le=\"+Inf\"} 2\n\neval instant at 0 x_bucket\n  x_bucket{le=\"1\"} 1\n  x_bucket{le=\"+Inf\"} 2\n\neval instant at 0 x\n",
            1,
            0,
            1,
            "",
        ),
        // `clear` drops data and histogram marks.
        (
            "clear\n\neval instant at 1m m\n\nload 1m\n  h {{count:1}}\n\nclear\n\neval instant at 0 h\n",
            2,
            0,
            0,
            "",
        ),
        // Parse errors are failures with their line; the rest still runs.
        (
            "bogus line\n\neval instant at 1m m\n  m{a=\"1\"} 2\n  m{a=\"2\"} 20\n",
            1,
            1,
            0,
            "parse error: invalid command",
        ),
        // Loads that the storage rejects (out of order) are failures.
        ("load 1m\n  m{a=\"1\"} 0\n", 0, 1, 0, "load failed"),
    ];
    for (i, (script, passed, failed, skipped, msg)) in cases.iter().enumerate() {
        let text = format!("{data}{script}");
        // Run twice: a runner must not leak state between runs.
        for _ in 0..2 {
            let r = run(&text, &NO_EXTRA);
            let got = (r.passed, r.failed, r.skipped);
            assert_eq!(
                got,
                (*passed, *failed, *skipped),
                "case {i}: {script}\n{:#?}",
                r.failures
            );
            if !msg.is_empty() {
                assert!(
                    r.failures[0].message.contains(msg),
                    "case {i}: {:?} does not contain {msg:?}",
                    r.failures[0].message
                );
            }
        }
    }
}

#[test]
fn failure_lines_and_display() {
    let r = run(
        "load 1m\n  m 1\n\n# c\neval instant at 0 m\n  m 2\n",
        &NO_EXTRA,
    );
    assert_eq!(r.failures.len(), 1);
    assert_eq!(r.failures[0].line, 5);
    let shown = DisplayFailure {
        file: "x.test",
        failure: &r.failures[0],
    }
    .to_string();
    assert!(
        shown.starts_with("x.test:5: eval instant at 0 m\n    expected 2 for m but got 1"),
        "{shown}"
    );
    assert_eq!(r.summary_line(), "t.test: 0 passed, 1 failed, 0 skipped");
    let mut t = Totals::default();
    t.add(&r);
    t.add(&r);
    assert_eq!(t.to_string(), "0 passed, 2 failed, 0 skipped");
}

#[test]
fn extra_checks() {
    let data = "load 1m\n  m 1+1x10\n\n";
    let all = RunOptions::default();
    // The fake handles `@`, so the @-modified copies agree.
    let r = run(&format!("{data}eval instant at 2m m\n  m 3\n"), &all);
    assert_eq!((r.passed, r.failed), (1, 0), "{:#?}", r.failures);
    // Range mode disagrees with instant mode.
    let r = run("eval instant at 2m instant_only\n", &all);
    assert_eq!(r.failed, 1);
    assert!(
        r.failures[0].message.contains("in range mode"),
        "{}",
        r.failures[0].message
    );
    let r = run(
        "eval instant at 2m instant_only\n",
        &RunOptions {
            range_mode_check: false,
            ..all.clone()
        },
    );
    assert_eq!(r.failed, 0, "{:#?}", r.failures);
    // Selector @-copies: a fake engine without @ support fails them.
    struct NoAt;
    impl QueryEngine for NoAt {
        fn instant_query(
            &self,
            s: &dyn Queryable,
            q: &str,
            t: i64,
        ) -> Result<QueryResult, QueryError> {
            if q.contains('@') {
                return Err(QueryError::bad_data("no @"));
            }
            Fake.instant_query(s, q, t)
        }
        fn range_query(
            &self,
            s: &dyn Queryable,
            q: &str,
            a: i64,
            b: i64,
            c: i64,
        ) -> Result<QueryResult, QueryError> {
            Fake.range_query(s, q, a, b, c)
        }
    }
    let text = format!("{data}eval instant at 2m m\n  m 3\n");
    let r = run_script("t.test", &text, &mem, &NoAt, &all);
    assert_eq!(r.failed, 1);
    assert!(
        r.failures[0].message.contains("with @ modifiers"),
        "{}",
        r.failures[0].message
    );
    let r = run_script(
        "t.test",
        &text,
        &mem,
        &NoAt,
        &RunOptions {
            at_modifier_check: false,
            ..all
        },
    );
    assert_eq!(r.failed, 0, "{:#?}", r.failures);
}

#[test]
fn files_and_dirs() {
    let dir = std::env::temp_dir().join(format!("kiln-promqltest-{}", std::process::id()));
    let sub = dir.join("sub");
    std::fs::create_dir_all(&sub).expect("mkdir");
    std::fs::write(dir.join("b.test"), "eval instant at 0 1\n  1\n").expect("write");
    std::fs::write(dir.join("a.test"), "eval instant at 0 1\n  2\n").expect("write");
    std::fs::write(dir.join("notes.md"), "x").expect("write");
    std::fs::write(sub.join("c.test"), "").expect("write");
    let files = collect_test_files(std::slice::from_ref(&dir)).expect("collect");
    let names: Vec<_> = files
        .iter()
        .map(|p| p.strip_prefix(&dir).expect("prefix").to_path_buf())
        .collect();
    assert_eq!(
        names,
        vec![
            PathBuf::from("a.test"),
            PathBuf::from("b.test"),
            PathBuf::from("sub/c.test")
        ]
    );
    let r = run_file(&files[0], &mem, &Fake, &NO_EXTRA);
    assert_eq!((r.passed, r.failed), (0, 1));
    let r = run_file(&dir.join("missing.test"), &mem, &Fake, &NO_EXTRA);
    assert_eq!((r.failed, r.failures[0].line), (1, 0));
    assert!(collect_test_files(&[dir.join("missing.test")]).is_err());
    std::fs::remove_dir_all(&dir).expect("cleanup");
}
