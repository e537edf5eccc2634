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
//! and label names may be any non-empty UTF-8 text.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kiln_config::Duration;
use kiln_model::METRIC_NAME;
use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::template;

/// A rule file that could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum RuleFileError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Syntax { path: String, message: String },
    /// A problem with one group or rule; `line:column` point at it.
    #[error("{path}:{line}:{column}: {context}: {message}")]
    Invalid {
        path: String,
        line: usize,
        column: usize,
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
    interval: Option<Duration>,
    #[serde(default)]
    limit: i64,
    query_offset: Option<Duration>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    rules: Vec<Spanned<RawRule>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    record: Option<String>,
    alert: Option<String>,
    expr: Option<Spanned<String>>,
    #[serde(rename = "for")]
    hold: Option<Duration>,
    keep_firing_for: Option<Duration>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    annotations: Option<BTreeMap<String, String>>,
}

/// Parses and checks the rule file `text`; `path` names it in errors.
pub fn parse_rule_file(text: &str, path: &str) -> Result<Vec<GroupSpec>, RuleFileError> {
    let only_comments = text.lines().all(|l| {
        let l = l.trim();
        l.is_empty() || l.starts_with('#')
    });
    if only_comments {
        return Ok(Vec::new());
    }
    let raw: RawFile = serde_saphyr::from_str(text).map_err(|e| RuleFileError::Syntax {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    let mut groups: Vec<GroupSpec> = Vec::new();
    for g in raw.groups {
        let (line, column) = (g.referenced.line() as usize, g.referenced.column() as usize);
        let g = g.value;
        let invalid = |context: String, message: String| RuleFileError::Invalid {
            path: path.to_owned(),
            line,
            column,
            context,
            message,
        };
        let group_ctx = format!("group {:?}", g.name);
        if g.name.is_empty() {
            return Err(invalid(group_ctx, "group name must not be empty".into()));
        }
        if groups.iter().any(|prev| prev.name == g.name) {
            return Err(invalid(
                group_ctx,
                format!("groupname: {:?} is repeated in the same file", g.name),
            ));
        }
        if g.limit < 0 {
            return Err(invalid(group_ctx, format!("limit {} is negative", g.limit)));
        }
        if g.interval.is_some_and(|d| d.as_millis() <= 0) {
            return Err(invalid(group_ctx, "interval must be positive".into()));
        }
        if g.query_offset.is_some_and(|d| d.as_millis() < 0) {
            return Err(invalid(
                group_ctx,
                "query_offset must not be negative".into(),
            ));
        }
        check_labels(&g.labels).map_err(|m| invalid(group_ctx.clone(), m))?;
        let mut rules = Vec::with_capacity(g.rules.len());
        for (i, r) in g.rules.into_iter().enumerate() {
            let (line, column) = (r.referenced.line() as usize, r.referenced.column() as usize);
            let r = r.value;
            // Problems with the expression point at it, as promtool does.
            let expr_at = r
                .expr
                .as_ref()
                .map(|e| (e.referenced.line() as usize, e.referenced.column() as usize));
            let name = r.record.as_deref().or(r.alert.as_deref()).unwrap_or("");
            let context = format!("group {:?}, rule {}, {:?}", g.name, i + 1, name);
            let rule = check_rule(r).map_err(|(message, in_expr)| {
                let (line, column) = match expr_at {
                    Some(at) if in_expr => at,
                    _ => (line, column),
                };
                RuleFileError::Invalid {
                    path: path.to_owned(),
                    line,
                    column,
                    context,
                    message,
                }
            })?;
            rules.push(RuleSpec { line, ..rule });
        }
        groups.push(GroupSpec {
            file: path.to_owned(),
            name: g.name,
            interval_ms: g.interval.map(Duration::as_millis),
            limit: g.limit as usize,
            query_offset_ms: g.query_offset.map(Duration::as_millis),
            labels: g.labels,
            rules,
        });
    }
    Ok(groups)
}

/// Checks one rule. An error says whether it is about the expression.
fn check_rule(mut r: RawRule) -> Result<RuleSpec, (String, bool)> {
    let expr = r.expr.take().map(|e| e.value).unwrap_or_default();
    check_rule_fields(&r.record, &r.alert, &expr)?;
    rule_spec(r, expr).map_err(|m| (m, false))
}

fn check_rule_fields(
    record: &Option<String>,
    alert: &Option<String>,
    expr: &str,
) -> Result<(), (String, bool)> {
    if record.is_some() && alert.is_some() {
        return Err(("only one of 'record' and 'alert' must be set".into(), false));
    }
    if record.is_none() && alert.is_none() {
        return Err(("one of 'record' or 'alert' must be set".into(), false));
    }
    if expr.trim().is_empty() {
        return Err(("field 'expr' must be set in rule".into(), false));
    }
    kiln_promql::validate_query(expr)
        .map_err(|e| (format!("could not parse expression: {}", e.message), true))
}

fn rule_spec(r: RawRule, expr: String) -> Result<RuleSpec, String> {
    let kind = match (r.record, r.alert) {
        (Some(_), Some(_)) | (None, None) => {
            return Err("exactly one of 'record' and 'alert' must be set".into());
        }
        (Some(record), None) => {
            if record.is_empty() {
                return Err("field 'record' must not be empty".into());
            }
            if r.annotations.is_some() {
                return Err("invalid field 'annotations' in recording rule".into());
            }
            if r.hold.is_some() {
                return Err("invalid field 'for' in recording rule".into());
            }
            if r.keep_firing_for.is_some() {
                return Err("invalid field 'keep_firing_for' in recording rule".into());
            }
            RuleKind::Recording { record }
        }
        (None, Some(alert)) => {
            if alert.is_empty() {
                return Err("field 'alert' must not be empty".into());
            }
            let annotations = r.annotations.unwrap_or_default();
            for (k, v) in r.labels.iter().chain(&annotations) {
                template::check(v).map_err(|e| format!("template {k:?}: {e}"))?;
            }
            for k in annotations.keys() {
                if k.is_empty() {
                    return Err("invalid annotation name: \"\"".into());
                }
            }
            let ms = |d: Option<Duration>, field: &str| {
                let ms = d.map_or(0, Duration::as_millis);
                if ms < 0 {
                    Err(format!("field '{field}' must not be negative"))
                } else {
                    Ok(ms)
                }
            };
            RuleKind::Alerting {
                alert,
                hold_ms: ms(r.hold, "for")?,
                keep_firing_for_ms: ms(r.keep_firing_for, "keep_firing_for")?,
                annotations,
            }
        }
    };
    check_labels(&r.labels)?;
    Ok(RuleSpec {
        kind,
        expr,
        labels: r.labels,
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

/// Reads and checks one rule file.
pub fn load_rule_file(path: &Path) -> Result<Vec<GroupSpec>, RuleFileError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| RuleFileError::Read {
        path: name.clone(),
        source,
    })?;
    parse_rule_file(&text, &name)
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
                "template \"s\"",
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
        assert!(e.starts_with("r.yml: "), "{e}");
        let e = err("groups:\n  - name: g\n    interval: 5x\n");
        assert!(e.contains("5x"), "{e}");
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
