//! Rule unit tests: `kiln test rules FILE...`, the `promtool test rules` format
//! (unit_testing_rules.md) with promtool's semantics and output.
//!
//! Each test group loads its `input_series` (expanding notation, one sample per
//! `interval`) into a fresh in-memory storage, then evaluates every rule group at
//! 0, `evaluation_interval`, 2×... up to the largest `eval_time`, in file order (or
//! `group_eval_order`). An `alert_rule_test` at `eval_time` compares the firing alerts
//! of the evaluation at or just before it; a `promql_expr_test` queries the storage,
//! recorded series included, after all evaluations.

mod schema;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kiln_model::{Labels, STALE_NAN};
use kiln_promql::promqltest::series::{SeqValue, parse_labels, parse_series_line};
use kiln_promql::{Engine, EngineOptions, Value};
use kiln_storage::mem::MemStorage;
use kiln_storage::{Appendable, Queryable, SampleValue};

use crate::alerting::AlertState;
use crate::eval::EvalEnv;
use crate::file::{expand_rule_files, load_rule_file};
use crate::group::{Group, RestoreOptions, Rule};
use schema::{TestFile, TestGroup};

/// Default `evaluation_interval` of a test file.
const DEFAULT_EVAL_INTERVAL_MS: i64 = 60_000;

/// The outcome of one test file.
#[derive(Debug, Clone, PartialEq)]
pub struct FileOutcome {
    pub path: String,
    /// Failure messages (promtool's wording); empty when every test passed.
    pub failures: Vec<String>,
}

impl FileOutcome {
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }

    /// The report `promtool test rules` prints for the file.
    pub fn report(&self) -> String {
        let mut out = format!("Unit Testing:  {}\n", self.path);
        if self.passed() {
            out.push_str("  SUCCESS\n");
        } else {
            out.push_str("  FAILED:\n");
            for f in &self.failures {
                out.push_str(f);
                out.push('\n');
            }
        }
        out
    }
}

/// Runs the tests of one file.
pub fn run_test_file(path: &Path) -> FileOutcome {
    let name = path.display().to_string();
    let failures = match run(path) {
        Ok(f) => f,
        Err(e) => vec![format!("  {e}")],
    };
    FileOutcome {
        path: name,
        failures,
    }
}

fn run(path: &Path) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let file: TestFile = kiln_config::yaml::from_str(
        &text,
        "a rule test file is a mapping with `rule_files:` and `tests:`",
    )
    .map_err(|e| format!("{}:{e}", path.display()))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let patterns: Vec<String> = file
        .rule_files
        .iter()
        .map(|p| resolve(dir, p).display().to_string())
        .collect();
    let eval_interval = file
        .evaluation_interval
        .map_or(DEFAULT_EVAL_INTERVAL_MS, |d| d.as_millis())
        .max(1);
    let mut specs = Vec::new();
    for f in expand_rule_files(&patterns).map_err(|e| e.to_string())? {
        specs.extend(load_rule_file(&f).map_err(|e| e.to_string())?);
    }
    for name in &file.group_eval_order {
        if !specs.iter().any(|g| &g.name == name) {
            return Err(format!(
                "group name {name:?} in group_eval_order not present in any rule file"
            ));
        }
    }
    // Listed groups first, in the given order; the rest in file order (stable sort).
    let rank = |name: &str| {
        file.group_eval_order
            .iter()
            .position(|n| n == name)
            .unwrap_or(usize::MAX)
    };
    specs.sort_by_key(|g| rank(&g.name));
    let mut failures = Vec::new();
    for tg in &file.tests {
        let groups: Vec<Group> = specs
            .iter()
            .map(|s| Group::new(s, eval_interval, 0))
            .collect();
        failures.extend(run_group(tg, groups, eval_interval, file.fuzzy_compare)?);
    }
    Ok(failures)
}

fn resolve(dir: &Path, p: &str) -> PathBuf {
    let path = Path::new(p);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        dir.join(path)
    }
}

/// A label set the way promtool prints it: `{a="1", b="2"}`.
fn fmt_labels(l: &BTreeMap<String, String>) -> String {
    let mut out = String::from("{");
    for (i, (k, v)) in l.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(k);
        out.push('=');
        kiln_model::labels::go_quote_into(&mut out, v);
    }
    out.push('}');
    out
}

fn map_of(l: &Labels) -> BTreeMap<String, String> {
    l.iter()
        .map(|l| (l.name.to_owned(), l.value.to_owned()))
        .collect()
}

type AlertList = Vec<(BTreeMap<String, String>, BTreeMap<String, String>)>;

fn fmt_alerts(alerts: &AlertList) -> String {
    if alerts.is_empty() {
        return "[]".into();
    }
    let mut out = String::from("[\n");
    for (i, (labels, annotations)) in alerts.iter().enumerate() {
        let _ = writeln!(out, "            {i}:");
        let _ = writeln!(out, "              Labels:{}", fmt_labels(labels));
        let _ = writeln!(out, "              Annotations:{}", fmt_labels(annotations));
    }
    out.push_str("            ]");
    out
}

fn run_group(
    tg: &TestGroup,
    mut groups: Vec<Group>,
    eval_interval: i64,
    fuzzy: bool,
) -> Result<Vec<String>, String> {
    let storage = Arc::new(MemStorage::new());
    let interval = tg.interval.map_or(eval_interval, |d| d.as_millis()).max(1);
    let mint = tg.start_timestamp;
    load_series(storage.as_ref(), tg, mint, interval)?;
    let queryable: Arc<dyn Queryable> = storage.clone();
    let engine = Engine::new(EngineOptions::default());
    let env = EvalEnv {
        engine: &engine,
        queryable: &queryable,
        appendable: storage.as_ref(),
        external_labels: &tg.external_labels,
        external_url: &tg.external_url,
    };
    let test_name = if tg.name.is_empty() {
        String::new()
    } else {
        format!("    name: {},\n", tg.name)
    };
    let mut failures = Vec::new();
    for t in &tg.alert_rule_test {
        if t.alertname.is_empty() {
            return Err("alertname is empty in an alert_rule_test".into());
        }
    }
    let mut alert_times: Vec<i64> = tg
        .alert_rule_test
        .iter()
        .map(|t| t.eval_time.as_millis())
        .collect();
    alert_times.sort_unstable();
    alert_times.dedup();
    let max_eval = alert_times
        .iter()
        .copied()
        .chain(tg.promql_expr_test.iter().map(|t| t.eval_time.as_millis()))
        .max()
        .unwrap_or(0);
    let mut next_alert_time = 0;
    let mut offset = 0;
    while offset <= max_eval {
        let ts = mint + offset;
        let mut eval_errors = Vec::new();
        for g in &mut groups {
            g.eval(&env, ts, &RestoreOptions::default());
            for (rule, status) in g.rules.iter().zip(&g.status) {
                if let Some(e) = &status.last_error {
                    eval_errors.push(format!(
                        "    rule: {}, time: {}, err: {e}",
                        rule.name(),
                        kiln_model::format_duration_ms(offset)
                    ));
                }
            }
        }
        if !eval_errors.is_empty() {
            failures.extend(eval_errors);
            return Ok(failures);
        }
        // Alert tests whose eval_time falls in [offset, offset + interval).
        while next_alert_time < alert_times.len()
            && alert_times[next_alert_time] >= offset
            && alert_times[next_alert_time] < offset + eval_interval
        {
            let at = alert_times[next_alert_time];
            for case in tg
                .alert_rule_test
                .iter()
                .filter(|c| c.eval_time.as_millis() == at)
            {
                let mut got: AlertList = firing_alerts(&groups, &case.alertname);
                let mut exp: AlertList = case
                    .exp_alerts
                    .iter()
                    .map(|a| {
                        let mut labels = a.exp_labels.clone();
                        labels.insert("alertname".into(), case.alertname.clone());
                        (labels, a.exp_annotations.clone())
                    })
                    .collect();
                got.sort();
                exp.sort();
                if got != exp {
                    failures.push(format!(
                        "{test_name}    alertname: {}, time: {}, \n        exp:{}, \n        got:{}",
                        case.alertname,
                        case.eval_time,
                        fmt_alerts(&exp),
                        fmt_alerts(&got)
                    ));
                }
            }
            next_alert_time += 1;
        }
        offset += eval_interval;
    }
    for case in &tg.promql_expr_test {
        let at = mint + case.eval_time.as_millis();
        let got = match engine.instant_query(queryable.as_ref(), &case.expr, at) {
            Ok(r) => match r.value {
                Value::Vector(v) => v.into_iter().map(|s| (s.labels, s.v)).collect(),
                Value::Scalar { v, .. } => vec![(Labels::empty(), v)],
                other => {
                    failures.push(format!(
                        "    expr: {:?}, time: {}, err: query result is a {}, not a vector or scalar",
                        case.expr,
                        case.eval_time,
                        other.type_name()
                    ));
                    continue;
                }
            },
            Err(e) => {
                failures.push(format!(
                    "    expr: {:?}, time: {}, err: {}",
                    case.expr, case.eval_time, e.message
                ));
                continue;
            }
        };
        let mut exp = Vec::new();
        let mut bad = None;
        for s in &case.exp_samples {
            if s.histogram.is_some() {
                bad = Some("native histogram samples are not supported by Kiln yet".to_owned());
                break;
            }
            match parse_labels(s.labels.trim()) {
                Ok((l, rest)) if rest.trim().is_empty() => exp.push((l, s.value)),
                Ok(_) | Err(_) => {
                    bad = Some(format!("labels {:?}: could not parse", s.labels));
                    break;
                }
            }
        }
        if let Some(e) = bad {
            failures.push(format!(
                "    expr: {:?}, time: {}, err: {e}",
                case.expr, case.eval_time
            ));
            continue;
        }
        let mut got: Vec<(Labels, f64)> = got;
        got.sort_by(|a, b| a.0.cmp(&b.0));
        exp.sort_by(|a, b| a.0.cmp(&b.0));
        let same = got.len() == exp.len()
            && got
                .iter()
                .zip(&exp)
                .all(|(g, e)| g.0 == e.0 && floats_match(g.1, e.1, fuzzy));
        if !same {
            failures.push(format!(
                "    expr: {:?}, time: {},\n        exp: {}\n        got: {}",
                case.expr,
                case.eval_time,
                fmt_samples(&exp),
                fmt_samples(&got)
            ));
        }
    }
    Ok(failures)
}

fn floats_match(a: f64, b: f64, fuzzy: bool) -> bool {
    a.to_bits() == b.to_bits()
        || a == b
        || (a.is_nan() && b.is_nan())
        || (fuzzy && kiln_promql::promqltest::almost_equal(a, b, 1e-15))
}

/// Samples the way promtool prints them: `{__name__="x", a="b"} 5E+01, ...`, `nil`
/// when there are none.
fn fmt_samples(samples: &[(Labels, f64)]) -> String {
    if samples.is_empty() {
        return "nil".into();
    }
    let items: Vec<String> = samples
        .iter()
        .map(|(l, v)| format!("{l} {}", kiln_model::format_go_float_exp(*v, true)))
        .collect();
    items.join(", ")
}

fn firing_alerts(groups: &[Group], alertname: &str) -> AlertList {
    let mut out = Vec::new();
    for g in groups {
        for rule in &g.rules {
            let Rule::Alerting(a) = rule else { continue };
            if a.name != alertname {
                continue;
            }
            for alert in a.alerts() {
                if alert.state == AlertState::Firing {
                    out.push((map_of(&alert.labels), alert.annotations.clone()));
                }
            }
        }
    }
    out
}

fn load_series(
    storage: &dyn Appendable,
    tg: &TestGroup,
    mint: i64,
    interval: i64,
) -> Result<(), String> {
    let mut app = storage.appender();
    for s in &tg.input_series {
        let line = format!("{} {}", s.series.trim(), s.values.trim());
        let parsed =
            parse_series_line(&line).map_err(|e| format!("input series {:?}: {e}", s.series))?;
        if parsed.has_histogram() {
            return Err(format!(
                "input series {:?}: native histograms are not supported by Kiln yet",
                s.series
            ));
        }
        for (i, v) in parsed.values.iter().enumerate() {
            let t = mint + i as i64 * interval;
            let v = match v {
                SeqValue::Float(f) => *f,
                SeqValue::Omitted => continue,
                SeqValue::Histogram => STALE_NAN,
            };
            app.append(0, &parsed.labels, t, SampleValue::Float(v))
                .map_err(|e| format!("input series {:?}: {e}", s.series))?;
        }
    }
    app.commit().map_err(|e| e.to_string())
}
