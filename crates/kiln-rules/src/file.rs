//! Rule files: Prometheus's YAML format, parsed and checked with file:line errors.
//!
//! ```yaml
//! groups:
//!   - name: gpu
//!     interval: 30s          # default: global.evaluation_interval
//!     limit: 0               # max series (recording) / alerts (alerting) per rule
//!     query_offset: 0s       # default: global.rule_query_offset
//!     labels: {team: ml}     # added to every rule's output (Prometheus 3)
//!     rules:
//!       - record: cluster:gpu_util:avg
//!         expr: avg by (cluster) (gpu_util)
//!       - alert: GpuIdle
//!         expr: cluster:gpu_util:avg < 10
//!         for: 15m
//!         keep_firing_for: 5m
//!         labels: {severity: warning}
//!         annotations: {summary: "{{ $labels.cluster }} is idle"}
//! ```
//!
//! What is checked, as `promtool check rules` does: unknown fields, group names present
//! and unique per file, exactly one of `record`/`alert`, a parsable `expr`, no
//! `for`/`keep_firing_for`/`annotations` on recording rules, label names, and that
//! alert label and annotation templates parse. Names follow Prometheus 3, where metric
//! and label names may be any non-empty UTF-8 text (but a recorded name may not hold
//! braces: that is a selector written in the wrong place).
//!
//! Errors read `<path>:<line>:<column>: group "g", rule 2, "name": <what is wrong>`,
//! the place being the value at fault (the expression, the `for:` of a recording rule)
//! or else the rule. [`check_rule_text`] lists every problem of a file, in file order,
//! as `promtool check rules` does; the server's [`load_rule_files`] stops at the first,
//! with the same text. A file that is not YAML, or not of the rule file's shape, has
//! one error: nothing after it can be read reliably.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kiln_config::Duration;
use kiln_config::yaml::{self, Position, YamlError};
use kiln_model::METRIC_NAME;
use serde::Deserialize;
use serde_saphyr::{Location, Spanned};

use crate::template;

/// What a rule file must be, for a file of another shape.
const RULE_FILE_SHAPE: &str = "a rule file is a mapping with `groups:` (a list of rule groups)";

/// A rule file that could not be loaded. Every variant but `Read` and `Pattern`
/// displays as `<path>:<line>:<column>: <what is wrong>`, the path as given.
#[derive(Debug, thiserror::Error)]
pub enum RuleFileError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// The YAML did not parse or did not fit the rule file format.
    #[error("{path}:{source}")]
    Syntax {
        path: String,
        #[source]
        source: YamlError,
    },
    /// A problem with one group or rule; `position` points at it.
    #[error("{path}:{position}: {context}: {message}")]
    Invalid {
        path: String,
        position: Position,
        /// `group "name"` or `group "name", rule 2, "record_or_alert"`.
        context: String,
        message: String,
    },
    #[error("{pattern}: bad rule file pattern: {message}")]
    Pattern { pattern: String, message: String },
}

/// What a rule produces.
#[derive(Debug, Clone, PartialEq)]
pub enum RuleKind {
    /// A recording rule: its result is stored under the metric name `record`.
    Recording { record: String },
    /// An alerting rule.
    Alerting {
        alert: String,
        /// How long the condition must hold before the alert fires, ms.
        hold_ms: i64,
        /// How long a firing alert keeps firing after the condition cleared, ms.
        keep_firing_for_ms: i64,
        /// Annotation templates.
        annotations: BTreeMap<String, String>,
    },
}

/// One rule as written in a rule file.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleSpec {
    pub kind: RuleKind,
    pub expr: String,
    /// Labels to set on the output; templates for alerting rules.
    pub labels: BTreeMap<String, String>,
    /// Line of the rule in its file (1-based).
    pub line: usize,
}

impl RuleSpec {
    /// The rule's name: the recorded metric or the alert name.
    pub fn name(&self) -> &str {
        match &self.kind {
            RuleKind::Recording { record } => record,
            RuleKind::Alerting { alert, .. } => alert,
        }
    }
}

/// One rule group as written in a rule file.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupSpec {
    /// The file the group came from (groups are identified by file and name).
    pub file: String,
    pub name: String,
    /// `interval`, ms; `None`: the global evaluation interval.
    pub interval_ms: Option<i64>,
    /// Max series (or alerts) one rule may produce; 0: no limit.
    pub limit: usize,
    /// `query_offset`, ms; `None`: the global rule query offset.
    pub query_offset_ms: Option<i64>,
    /// Labels added to every rule's output (rule labels win on a clash).
    pub labels: BTreeMap<String, String>,
    pub rules: Vec<RuleSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    groups: Vec<Spanned<RawGroup>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    #[serde(default)]
    name: String,
    interval: Option<Spanned<Duration>>,
    #[serde(default)]
    limit: Option<Spanned<i64>>,
    query_offset: Option<Spanned<Duration>>,
    #[serde(default)]
    labels: Option<Spanned<BTreeMap<String, String>>>,
    #[serde(default)]
    rules: Vec<Spanned<RawRule>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    record: Option<Spanned<String>>,
    alert: Option<Spanned<String>>,
    expr: Option<Spanned<String>>,
    #[serde(rename = "for")]
    hold: Option<Spanned<Duration>>,
    keep_firing_for: Option<Spanned<Duration>>,
    #[serde(default)]
    labels: Option<Spanned<BTreeMap<String, String>>>,
    annotations: Option<Spanned<BTreeMap<String, String>>>,
}

/// Parses and checks the rule file `text`; `path` names it in errors. Stops at the
/// file's first problem (what the server reports); [`check_rule_text`] lists them all
/// with the same text.
pub fn parse_rule_file(text: &str, path: &str) -> Result<Vec<GroupSpec>, RuleFileError> {
    let (groups, errors) = check_all(text, path);
    match errors.into_iter().next() {
        Some(first) => Err(first),
        None => Ok(groups),
    }
}

/// Parses and checks the rule file `text`, reporting every problem of every group and
/// rule in file order, as `promtool check rules` does. `Err` holds at least one error.
pub fn check_rule_text(text: &str, path: &str) -> Result<Vec<GroupSpec>, Vec<RuleFileError>> {
    let (groups, errors) = check_all(text, path);
    if errors.is_empty() {
        Ok(groups)
    } else {
        Err(errors)
    }
}

/// The good groups of the file and every problem found in it. A YAML error stops the
/// check (nothing after it can be read reliably); problems with values do not.
fn check_all(text: &str, path: &str) -> (Vec<GroupSpec>, Vec<RuleFileError>) {
    let only_comments = text.lines().all(|l| {
        let l = l.trim();
        l.is_empty() || l.starts_with('#')
    });
    if only_comments {
        return (Vec::new(), Vec::new());
    }
    let raw: RawFile = match yaml::from_str(text, RULE_FILE_SHAPE) {
        Ok(raw) => raw,
        Err(source) => {
            let error = RuleFileError::Syntax {
                path: path.to_owned(),
                source,
            };
            return (Vec::new(), vec![error]);
        }
    };
    let mut problems = Problems {
        path,
        errors: Vec::new(),
    };
    let mut groups: Vec<GroupSpec> = Vec::new();
    let mut names: Vec<String> = Vec::new();
    for g in raw.groups {
        let name = g.value.name.clone();
        if let Some(group) = check_group(g, &names, path, &mut problems) {
            groups.push(group);
        }
        names.push(name);
    }
    (groups, problems.errors)
}

/// The problems found in one file so far.
struct Problems<'a> {
    path: &'a str,
    errors: Vec<RuleFileError>,
}

impl Problems<'_> {
    fn add(&mut self, at: &Location, context: &str, message: impl Into<String>) {
        self.errors.push(RuleFileError::Invalid {
            path: self.path.to_owned(),
            position: Position::of(at).unwrap_or(Position { line: 1, column: 1 }),
            context: context.to_owned(),
            message: message.into(),
        });
    }
}

/// Checks one group; `None` when it (or one of its rules) has a problem.
fn check_group(
    g: Spanned<RawGroup>,
    earlier: &[String],
    path: &str,
    problems: &mut Problems<'_>,
) -> Option<GroupSpec> {
    let at = g.referenced;
    let g = g.value;
    let before = problems.errors.len();
    let ctx = format!("group {:?}", g.name);
    if g.name.is_empty() {
        problems.add(&at, &ctx, "group name must not be empty");
    }
    if earlier.contains(&g.name) {
        problems.add(
            &at,
            &ctx,
            format!("groupname: {:?} is repeated in the same file", g.name),
        );
    }
    let limit = match &g.limit {
        Some(l) if l.value < 0 => {
            problems.add(
                &l.referenced,
                &ctx,
                format!("limit {} is negative", l.value),
            );
            0
        }
        Some(l) => usize::try_from(l.value).unwrap_or(usize::MAX),
        None => 0,
    };
    if let Some(i) = &g.interval
        && i.value.as_millis() <= 0
    {
        problems.add(&i.referenced, &ctx, "interval must be positive");
    }
    if let Some(o) = &g.query_offset
        && o.value.as_millis() < 0
    {
        problems.add(&o.referenced, &ctx, "query_offset must not be negative");
    }
    let labels = g.labels.map(|l| {
        if let Err(m) = check_labels(&l.value) {
            problems.add(&l.referenced, &ctx, m);
        }
        l.value
    });
    let mut rules = Vec::with_capacity(g.rules.len());
    for (i, r) in g.rules.into_iter().enumerate() {
        // Prometheus names a rule by its alert, else its record.
        let name = r
            .value
            .alert
            .as_ref()
            .or(r.value.record.as_ref())
            .map(|n| n.value.as_str())
            .unwrap_or("");
        let context = format!("group {:?}, rule {}, {:?}", g.name, i + 1, name);
        let line = usize::try_from(r.referenced.line()).unwrap_or(0);
        let found = check_rule(r.value, &r.referenced);
        // A rule with problems has no spec.
        if let Some(rule) = found.rule {
            rules.push(RuleSpec { line, ..rule });
        }
        for (at, message) in found.problems {
            problems.add(&at, &context, message);
        }
    }
    (problems.errors.len() == before).then(|| GroupSpec {
        file: path.to_owned(),
        name: g.name,
        interval_ms: g.interval.map(|i| i.value.as_millis()),
        limit,
        query_offset_ms: g.query_offset.map(|o| o.value.as_millis()),
        labels: labels.unwrap_or_default(),
        rules,
    })
}

/// A rule checked: the rule when it is good, and every problem found, each with the
/// place it is about.
struct CheckedRule {
    rule: Option<RuleSpec>,
    problems: Vec<(Location, String)>,
}

/// Checks one rule with Prometheus's rules, in promtool's order: name fields, the
/// expression, fields a recording rule may not have, labels, annotations, templates.
fn check_rule(r: RawRule, at: &Location) -> CheckedRule {
    let mut problems: Vec<(Location, String)> = Vec::new();
    let mut problem = |at: &Location, m: String| problems.push((*at, m));
    match (&r.record, &r.alert) {
        (Some(_), Some(alert)) => problem(
            &alert.referenced,
            "only one of 'record' and 'alert' must be set".into(),
        ),
        (None, None) => problem(at, "one of 'record' or 'alert' must be set".into()),
        _ => {}
    }
    let expr = r.expr.as_ref().map(|e| e.value.as_str()).unwrap_or("");
    match &r.expr {
        Some(e) if !e.value.trim().is_empty() => {
            if let Err(err) = kiln_promql::validate_query(expr) {
                // The parser's message is passed through as it words it.
                problem(&e.referenced, format!("could not parse expression: {err}"));
            }
        }
        _ => problem(at, "field 'expr' must be set in rule".into()),
    }
    if let (Some(record), None) = (&r.record, &r.alert) {
        let rat = &record.referenced;
        if record.value.is_empty() {
            problem(rat, "field 'record' must not be empty".into());
        }
        if record.value.contains(['{', '}']) {
            problem(
                rat,
                format!(
                    "braces present in the recording rule name; should it be in expr?: {}",
                    record.value
                ),
            );
        }
        if let Some(a) = &r.annotations {
            problem(
                &a.referenced,
                "invalid field 'annotations' in recording rule".into(),
            );
        }
        if let Some(f) = &r.hold {
            problem(
                &f.referenced,
                "invalid field 'for' in recording rule".into(),
            );
        }
        if let Some(k) = &r.keep_firing_for {
            problem(
                &k.referenced,
                "invalid field 'keep_firing_for' in recording rule".into(),
            );
        }
    }
    if let Some(l) = &r.labels
        && let Err(m) = check_labels(&l.value)
    {
        problem(&l.referenced, m);
    }
    if let Some(a) = &r.annotations
        && a.value.keys().any(String::is_empty)
    {
        problem(&a.referenced, "invalid annotation name: \"\"".into());
    }
    if let (None, Some(alert)) = (&r.record, &r.alert) {
        if alert.value.is_empty() {
            problem(&alert.referenced, "field 'alert' must not be empty".into());
        }
        for (field, d) in [("for", &r.hold), ("keep_firing_for", &r.keep_firing_for)] {
            if let Some(d) = d
                && d.value.as_millis() < 0
            {
                problem(
                    &d.referenced,
                    format!("field '{field}' must not be negative"),
                );
            }
        }
        let templates = [("label", &r.labels), ("annotation", &r.annotations)];
        for (kind, map) in templates {
            let Some(map) = map else { continue };
            for (k, v) in &map.value {
                if let Err(e) = template::check(v, &alert.value) {
                    problem(&map.referenced, format!("{kind} {k:?}: {e}"));
                }
            }
        }
    }
    let rule = if problems.is_empty() {
        rule_spec(r)
    } else {
        None
    };
    CheckedRule { rule, problems }
}

/// The spec of a rule that passed every check.
fn rule_spec(r: RawRule) -> Option<RuleSpec> {
    let kind = match (r.record, r.alert) {
        (Some(record), None) => RuleKind::Recording {
            record: record.value,
        },
        (None, Some(alert)) => RuleKind::Alerting {
            alert: alert.value,
            hold_ms: r.hold.map_or(0, |d| d.value.as_millis()),
            keep_firing_for_ms: r.keep_firing_for.map_or(0, |d| d.value.as_millis()),
            annotations: r.annotations.map(|a| a.value).unwrap_or_default(),
        },
        _ => return None,
    };
    Some(RuleSpec {
        kind,
        expr: r.expr.map(|e| e.value).unwrap_or_default(),
        labels: r.labels.map(|l| l.value).unwrap_or_default(),
        line: 0,
    })
}

fn check_labels(labels: &BTreeMap<String, String>) -> Result<(), String> {
    for name in labels.keys() {
        if name.is_empty() || name == METRIC_NAME {
            return Err(format!("invalid label name: {name:?}"));
        }
    }
    Ok(())
}

/// Reads and checks one rule file, stopping at its first problem.
pub fn load_rule_file(path: &Path) -> Result<Vec<GroupSpec>, RuleFileError> {
    let name = path.display().to_string();
    parse_rule_file(&read(path)?, &name)
}

/// Reads and checks one rule file, reporting every problem (`kiln check rules`).
pub fn check_rule_file(path: &Path) -> Result<Vec<GroupSpec>, Vec<RuleFileError>> {
    let name = path.display().to_string();
    check_rule_text(&read(path).map_err(|e| vec![e])?, &name)
}

fn read(path: &Path) -> Result<String, RuleFileError> {
    std::fs::read_to_string(path).map_err(|source| RuleFileError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// Expands `rule_files` patterns (shell globs such as `rules/*.yml`, as Prometheus
/// accepts) into the files they match, sorted within each pattern. A pattern without
/// wildcards names a file that must exist; a pattern that matches nothing is allowed,
/// as in Prometheus.
pub fn expand_rule_files(patterns: &[String]) -> Result<Vec<PathBuf>, RuleFileError> {
    let mut files = Vec::new();
    for pattern in patterns {
        if !pattern.contains(['*', '?', '[']) {
            files.push(PathBuf::from(pattern));
            continue;
        }
        let matches = glob::glob(pattern).map_err(|e| RuleFileError::Pattern {
            pattern: pattern.clone(),
            message: e.to_string(),
        })?;
        let mut found: Vec<PathBuf> = matches.filter_map(Result::ok).collect();
        found.sort();
        files.extend(found);
    }
    files.dedup();
    Ok(files)
}

/// Loads every group of the files `patterns` name. Group names must be unique per file.
pub fn load_rule_files(patterns: &[String]) -> Result<Vec<GroupSpec>, RuleFileError> {
    let mut groups = Vec::new();
    for path in expand_rule_files(patterns)? {
        groups.extend(load_rule_file(&path)?);
    }
    Ok(groups)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        parse_rule_file(text, "r.yml")
            .expect_err("should fail")
            .to_string()
    }

    #[test]
    fn parses_groups_and_rules() {
        let text = r#"
groups:
  - name: gpu
    interval: 30s
    limit: 10
    query_offset: 1m
    labels: {team: ml}
    rules:
      - record: cluster:gpu_util:avg
        expr: avg by (cluster) (gpu_util)
      - alert: GpuIdle
        expr: cluster:gpu_util:avg < 10
        for: 15m
        keep_firing_for: 5m
        labels:
          severity: warning
        annotations:
          summary: "{{ $labels.cluster }} is idle ({{ $value | humanize }}%)"
  - name: empty
"#;
        let groups = parse_rule_file(text, "r.yml").expect("parses");
        assert_eq!(groups.len(), 2);
        let g = &groups[0];
        assert_eq!(
            (g.name.as_str(), g.interval_ms, g.limit, g.query_offset_ms),
            ("gpu", Some(30_000), 10, Some(60_000))
        );
        assert_eq!(g.labels.get("team").map(String::as_str), Some("ml"));
        assert_eq!(g.rules.len(), 2);
        assert_eq!(g.rules[0].name(), "cluster:gpu_util:avg");
        assert_eq!(g.rules[0].line, 9);
        let RuleKind::Alerting {
            hold_ms,
            keep_firing_for_ms,
            annotations,
            ..
        } = &g.rules[1].kind
        else {
            panic!("alerting rule expected");
        };
        assert_eq!((*hold_ms, *keep_firing_for_ms), (900_000, 300_000));
        assert!(annotations["summary"].contains("humanize"));
        assert_eq!(g.rules[1].line, 11);
        assert_eq!(groups[1].interval_ms, None);
        assert!(groups[1].rules.is_empty());
        assert!(
            parse_rule_file("# nothing\n", "r.yml")
                .expect("empty")
                .is_empty()
        );
    }

    #[test]
    fn errors_name_file_line_group_and_rule() {
        let e = err("groups:\n  - name: g\n    rules:\n      - record: x\n        expr: sum(\n");
        assert!(
            e.starts_with("r.yml:5:15:"),
            "the expression's line and column: {e}"
        );
        assert!(
            e.contains(r#"group "g", rule 1, "x": could not parse expression"#),
            "{e}"
        );

        let cases = [
            (
                "groups:\n  - name: g\n    rules:\n      - expr: up\n",
                "one of 'record' or 'alert' must be set",
            ),
            (
                "groups:\n  - name: g\n    rules:\n      - record: a\n        alert: b\n        expr: up\n",
                "only one of 'record' and 'alert'",
            ),
            (
                "groups:\n  - name: g\n    rules:\n      - record: a\n",
                "field 'expr' must be set",
            ),
            (
                "groups:\n  - name: g\n    rules:\n      - record: a\n        expr: up\n        for: 1m\n",
                "invalid field 'for' in recording rule",
            ),
            (
                "groups:\n  - name: g\n    rules:\n      - record: a\n        expr: up\n        annotations: {a: b}\n",
                "invalid field 'annotations' in recording rule",
            ),
            (
                "groups:\n  - name: g\n    rules:\n      - record: a\n        expr: up\n        labels: {__name__: b}\n",
                "invalid label name",
            ),
            (
                "groups:\n  - name: g\n    rules:\n      - alert: a\n        expr: up\n        annotations: {s: '{{ .Labels.x '}\n",
                "annotation \"s\": template: __alert_a:1: unclosed action",
            ),
            (
                "groups:\n  - name: g\n  - name: g\n",
                "is repeated in the same file",
            ),
            ("groups:\n  - rules: []\n", "group name must not be empty"),
            ("groups:\n  - name: g\n    limit: -1\n", "negative"),
        ];
        for (text, want) in cases {
            let e = err(text);
            assert!(e.contains(want), "{text:?}: {e}");
            assert!(e.starts_with("r.yml:"), "{e}");
        }
    }

    #[test]
    fn unknown_fields_and_bad_yaml_are_syntax_errors() {
        let e = err("groups:\n  - name: g\n    rulez: []\n");
        assert!(e.contains("rulez") && e.contains("r.yml"), "{e}");
        let e = err(
            "groups:\n  - name: g\n    rules:\n      - record: a\n        expr: up\n        fo: 1m\n",
        );
        assert!(e.contains("fo"), "{e}");
        let e = err("groups: [\n");
        assert_eq!(e, "r.yml:1:9: unclosed bracket '['");
        let e = err("groups:\n  - name: g\n    interval: 5x\n");
        assert!(e.contains("5x"), "{e}");
    }

    #[test]
    fn every_problem_of_a_file_is_reported_in_order() {
        let text = "groups:
  - name: g
    rules:
      - record: x
        expr: sum(
      - record: y
        alert: Y
        expr: up
      - expr: up
      - record: z
      - record: 'a{b}'
        expr: up
        for: 1m
  - name: g
    rules:
      - alert: A
        expr: up
        labels: {sev: '{{ .x '}
  - name: ok
    rules:
      - record: fine
        expr: up
";
        let errors = check_rule_text(text, "r.yml").expect_err("bad file");
        let got: Vec<String> = errors.iter().map(ToString::to_string).collect();
        let parse_error = kiln_promql::validate_query("sum(").expect_err("bad expr");
        let want = [
            format!(
                "r.yml:5:15: group \"g\", rule 1, \"x\": could not parse expression: {parse_error}"
            ),
            "r.yml:7:16: group \"g\", rule 2, \"Y\": only one of 'record' and 'alert' must be set"
                .to_owned(),
            "r.yml:9:9: group \"g\", rule 3, \"\": one of 'record' or 'alert' must be set"
                .to_owned(),
            "r.yml:10:9: group \"g\", rule 4, \"z\": field 'expr' must be set in rule".to_owned(),
            "r.yml:11:17: group \"g\", rule 5, \"a{b}\": braces present in the recording rule \
             name; should it be in expr?: a{b}"
                .to_owned(),
            "r.yml:13:14: group \"g\", rule 5, \"a{b}\": invalid field 'for' in recording rule"
                .to_owned(),
            "r.yml:14:5: group \"g\": groupname: \"g\" is repeated in the same file".to_owned(),
            "r.yml:18:17: group \"g\", rule 1, \"A\": label \"sev\": template: __alert_A:1: \
             unclosed action"
                .to_owned(),
        ];
        assert_eq!(got, want);
        // The server's path stops at the first problem, with the same text.
        let first = parse_rule_file(text, "r.yml").expect_err("bad file");
        assert_eq!(first.to_string(), want[0]);
    }

    #[test]
    fn rule_file_patterns_expand_sorted() {
        let dir = tempfile::tempdir().expect("tempdir");
        for name in ["b.yml", "a.yml", "c.txt"] {
            std::fs::write(dir.path().join(name), "groups: []\n").expect("write");
        }
        let pattern = dir.path().join("*.yml").display().to_string();
        let files = expand_rule_files(&[pattern]).expect("glob");
        let names: Vec<_> = files
            .iter()
            .filter_map(|p| p.file_name()?.to_str())
            .collect();
        assert_eq!(names, ["a.yml", "b.yml"]);
        let missing = dir.path().join("none.yml").display().to_string();
        let e = load_rule_files(&[missing]).expect_err("missing file");
        assert!(matches!(e, RuleFileError::Read { .. }), "{e}");
    }
}
