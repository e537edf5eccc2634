//! Executing parsed scripts against an engine and a storage.

use std::panic::{AssertUnwindSafe, catch_unwind};

use kiln_model::{Labels, LabelsBuilder, METRIC_NAME};
use kiln_storage::{Queryable, SampleValue};

use super::compare::{Grid, check_annotations, check_failure, compare_result, fmt_labels, fmt_ms};
use super::query::{RANGE_SENSITIVE, at_modifier_cases, calls_any, selects_any};
use super::script::{Command, Eval, EvalMode, Load, parse_script};
use super::series::SeqValue;
use super::{Failure, FileReport, QueryEngine, RunOptions, Skip, TestStorage};
use crate::value::{QueryResult, Sample, Value};

/// The reason given for evals that need native histograms.
pub const NATIVE_HISTOGRAM_SKIP: &str = "native histograms are not supported yet";

enum Outcome {
    Pass,
    Fail(String),
    Skip(String),
}

struct State<'a> {
    engine: &'a dyn QueryEngine,
    new_storage: &'a dyn Fn() -> Box<dyn TestStorage>,
    opts: &'a RunOptions,
    storage: Box<dyn TestStorage>,
    /// Series of the current data set that hold native histograms (from `{{...}}` values
    /// or `load_with_nhcb`); they are not loaded, so evals that select them are skipped.
    histogram_series: Vec<Labels>,
}

pub(crate) fn run_script(
    name: &str,
    text: &str,
    new_storage: &dyn Fn() -> Box<dyn TestStorage>,
    engine: &dyn QueryEngine,
    opts: &RunOptions,
) -> FileReport {
    let script = parse_script(text);
    let mut report = FileReport {
        name: name.to_owned(),
        ..FileReport::default()
    };
    for e in &script.errors {
        report.failures.push(Failure {
            line: e.line,
            command: None,
            message: format!("parse error: {}", e.message),
        });
    }
    let mut st = State {
        engine,
        new_storage,
        opts,
        storage: new_storage(),
        histogram_series: Vec::new(),
    };
    for cmd in &script.commands {
        match cmd {
            Command::Clear { .. } => {
                st.storage = (st.new_storage)();
                st.histogram_series.clear();
            }
            Command::Load(l) => {
                if let Err(message) = st.load(l) {
                    report.failures.push(Failure {
                        line: l.line,
                        command: Some(format!("load {}", fmt_ms(l.interval))),
                        message,
                    });
                }
            }
            Command::Eval(ev) => match st.eval(ev) {
                Outcome::Pass => report.passed += 1,
                Outcome::Skip(reason) => report.skips.push(Skip {
                    line: ev.line,
                    reason,
                }),
                Outcome::Fail(message) => report.failures.push(Failure {
                    line: ev.line,
                    command: Some(ev.text.clone()),
                    message,
                }),
            },
        }
    }
    report.failures.sort_by_key(|f| f.line);
    report.failed = report.failures.len();
    report.skipped = report.skips.len();
    report
}

impl State<'_> {
    fn queryable(&self) -> &dyn Queryable {
        &*self.storage
    }

    /// Appends the float samples of a load; remembers its native-histogram series.
    fn load(&mut self, l: &Load) -> Result<(), String> {
        // A label set given twice in one block: the later line wins, as in Prometheus.
        let mut series: Vec<&(usize, super::series::SeriesLine)> =
            Vec::with_capacity(l.series.len());
        for s in &l.series {
            series.retain(|p| p.1.labels != s.1.labels);
            series.push(s);
        }
        for (_, s) in &series {
            if s.has_histogram() {
                self.add_histogram_series(s.labels.clone());
            }
            if l.with_nhcb
                && let Some(base) = nhcb_series(&s.labels)
            {
                self.add_histogram_series(base);
            }
        }
        let mut errors = Vec::new();
        let mut app = self.storage.appender();
        for (line, s) in &series {
            let mut series_ref = 0;
            for (i, v) in s.values.iter().enumerate() {
                let SeqValue::Float(f) = v else { continue };
                let t = i as i64 * l.interval;
                match app.append(series_ref, &s.labels, t, SampleValue::Float(*f)) {
                    Ok(r) => series_ref = r,
                    Err(e) => {
                        errors.push(format!(
                            "line {line}: appending {} at t={}: {e}",
                            fmt_labels(&s.labels),
                            fmt_ms(t)
                        ));
                        break;
                    }
                }
            }
        }
        if let Err(e) = app.commit() {
            errors.push(format!("commit: {e}"));
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(format!("load failed: {}", errors.join("; ")))
        }
    }

    fn add_histogram_series(&mut self, l: Labels) {
        if !self.histogram_series.contains(&l) {
            self.histogram_series.push(l);
        }
    }

    fn eval(&self, ev: &Eval) -> Outcome {
        if ev.expects_histograms() || selects_any(&ev.query, &self.histogram_series) {
            return Outcome::Skip(NATIVE_HISTOGRAM_SKIP.to_owned());
        }
        let res = match ev.mode {
            EvalMode::Instant { at } => self.eval_instant(ev, at),
            EvalMode::Range { start, end, step } => self.eval_range(ev, start, end, step),
        };
        match res {
            Ok(()) => Outcome::Pass,
            Err(m) => Outcome::Fail(m),
        }
    }

    fn eval_instant(&self, ev: &Eval, at: i64) -> Result<(), String> {
        let grid = match ev.range_vector {
            Some(rv) => Grid {
                start: rv.start,
                end: rv.end,
                step: rv.step,
            },
            None => Grid {
                start: at,
                end: at,
                step: 0,
            },
        };
        self.instant_case(ev, &ev.query, at, grid)?;
        if self.opts.at_modifier_check {
            for (q, t) in at_modifier_cases(&ev.query, at) {
                self.instant_case(ev, &q, t, grid)
                    .map_err(|e| format!("with @ modifiers, as `{q}` at {}: {e}", fmt_ms(t)))?;
            }
        }
        Ok(())
    }

    fn instant_case(&self, ev: &Eval, query: &str, t: i64, grid: Grid) -> Result<(), String> {
        let engine = self.engine;
        let storage = self.queryable();
        let res = guard(|| engine.instant_query(storage, query, t));
        let Some(r) = self.check_error(ev, res)? else {
            return Ok(());
        };
        check_annotations(&ev.expect, &r.warnings, &r.infos)?;
        compare_result(&ev.expected, ev.expect.ordered, grid, &r.value)?;
        if self.opts.range_mode_check
            && !matches!(r.value, Value::String { .. } | Value::Matrix(_))
            && !calls_any(query, RANGE_SENSITIVE)
        {
            self.range_mode(ev, query, t, grid, &r.value).map_err(|e| {
                format!(
                    "in range mode (from {} to {} step 1m): {e}",
                    fmt_ms(t - 60_000),
                    fmt_ms(t + 60_000)
                )
            })?;
        }
        Ok(())
    }

    /// Prometheus also runs every instant query as a range query from `t-1m` to `t+1m`
    /// and checks the middle step against the same expectation.
    fn range_mode(
        &self,
        ev: &Eval,
        query: &str,
        t: i64,
        grid: Grid,
        instant: &Value,
    ) -> Result<(), String> {
        let engine = self.engine;
        let storage = self.queryable();
        let res = guard(|| engine.range_query(storage, query, t - 60_000, t + 60_000, 60_000))
            .map_err(|e| format!("error evaluating query: {e}"))?;
        if ev.expect.ordered {
            return Ok(());
        }
        let Value::Matrix(m) = res.value else {
            return Err(format!(
                "range query returned a {}, not a matrix",
                res.value.type_name()
            ));
        };
        for w in m.windows(2) {
            if w[0].labels > w[1].labels {
                return Err(format!(
                    "matrix results should always be sorted by labels, but {} comes before {}",
                    fmt_labels(&w[0].labels),
                    fmt_labels(&w[1].labels)
                ));
            }
        }
        let vec: Vec<Sample> = m
            .iter()
            .filter_map(|s| {
                s.points
                    .iter()
                    .find(|p| p.0 == t)
                    .map(|p| Sample::new(s.labels.clone(), t, p.1))
            })
            .collect();
        let value = if matches!(instant, Value::Scalar { .. }) {
            match vec.first() {
                Some(s) => Value::Scalar { t, v: s.v },
                None => return Err(format!("no point at t={} for a scalar result", fmt_ms(t))),
            }
        } else {
            Value::Vector(vec)
        };
        compare_result(&ev.expected, false, grid, &value)
    }

    fn eval_range(&self, ev: &Eval, start: i64, end: i64, step: i64) -> Result<(), String> {
        let engine = self.engine;
        let storage = self.queryable();
        let res = guard(|| engine.range_query(storage, &ev.query, start, end, step));
        let Some(r) = self.check_error(ev, res)? else {
            return Ok(());
        };
        check_annotations(&ev.expect, &r.warnings, &r.infos)?;
        compare_result(
            &ev.expected,
            ev.expect.ordered,
            Grid { start, end, step },
            &r.value,
        )
    }

    /// Applies `expect fail`: `Ok(None)` when the query failed as expected, `Ok(Some)`
    /// with the result when it succeeded as expected.
    fn check_error(
        &self,
        ev: &Eval,
        res: Result<QueryResult, String>,
    ) -> Result<Option<QueryResult>, String> {
        match (res, &ev.expect.fail) {
            (Err(e), Some(want)) => check_failure(want, &e).map(|()| None),
            (Err(e), None) => Err(format!("error evaluating query: {e}")),
            (Ok(r), Some(_)) => Err(format!(
                "expected an error, but the query returned a {}",
                r.value.type_name()
            )),
            (Ok(r), None) => Ok(Some(r)),
        }
    }
}

/// Runs an engine call, turning an error or a panic into a message.
fn guard(
    f: impl FnOnce() -> Result<QueryResult, crate::error::QueryError>,
) -> Result<QueryResult, String> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(e)) => Err(e.to_string()),
        Err(payload) => {
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_owned());
            Err(format!("engine panicked: {msg}"))
        }
    }
}

/// The native histogram with custom buckets that `load_with_nhcb` derives from a classic
/// histogram series: `foo_bucket{le=..., l}` (and `foo_count{l}`, `foo_sum{l}`) become
/// `foo{l}`.
fn nhcb_series(l: &Labels) -> Option<Labels> {
    let name = l.metric_name()?;
    let base = name
        .strip_suffix("_bucket")
        .filter(|_| l.get("le").is_some())
        .or_else(|| name.strip_suffix("_count"))
        .or_else(|| name.strip_suffix("_sum"))?;
    let mut b = LabelsBuilder::new();
    for p in l.iter() {
        if p.name != "le" && p.name != METRIC_NAME {
            b.set(p.name, p.value);
        }
    }
    b.set(METRIC_NAME, base);
    Some(b.build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nhcb_names() {
        let l = |p: &[(&str, &str)]| Labels::from_pairs(p);
        for (input, want) in [
            (
                l(&[("__name__", "h_bucket"), ("le", "1"), ("a", "b")]),
                Some(l(&[("__name__", "h"), ("a", "b")])),
            ),
            (
                l(&[("__name__", "h_count"), ("a", "b")]),
                Some(l(&[("__name__", "h"), ("a", "b")])),
            ),
            (l(&[("__name__", "h_sum")]), Some(l(&[("__name__", "h")]))),
            (l(&[("__name__", "h_bucket")]), None),
            (l(&[("__name__", "h")]), None),
        ] {
            assert_eq!(nhcb_series(&input), want, "{input:?}");
        }
    }
}
