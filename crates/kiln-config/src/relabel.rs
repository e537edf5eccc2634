//! `<relabel_config>` as written in YAML, turned into [`kiln_model::relabel::RelabelConfig`]
//! and validated with Prometheus's rules and messages.

use kiln_model::relabel::{Action, RelabelConfig, RelabelRegex};
use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::yaml::Problem;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRelabelConfig {
    #[serde(default)]
    source_labels: Option<Vec<String>>,
    #[serde(default)]
    separator: Option<String>,
    #[serde(default)]
    target_label: Option<String>,
    #[serde(default)]
    regex: Option<String>,
    #[serde(default)]
    modulus: Option<u64>,
    #[serde(default)]
    replacement: Option<String>,
    #[serde(default)]
    action: Option<String>,
}

impl RawRelabelConfig {
    fn resolve(self) -> Result<RelabelConfig, String> {
        let mut rc = RelabelConfig::default();
        if let Some(v) = self.source_labels {
            rc.source_labels = v;
        }
        if let Some(v) = self.separator {
            rc.separator = v;
        }
        if let Some(v) = self.target_label {
            rc.target_label = v;
        }
        if let Some(v) = self.regex {
            rc.regex = RelabelRegex::new(&v).map_err(|e| one_line(&e.to_string()))?;
        }
        if let Some(v) = self.modulus {
            rc.modulus = v;
        }
        if let Some(v) = self.replacement {
            rc.replacement = v;
        }
        if let Some(v) = self.action {
            rc.action = v.parse::<Action>().map_err(|e| e.to_string())?;
        }
        rc.validate().map_err(|e| e.to_string())?;
        Ok(rc)
    }
}

/// The regex crate explains a syntax error over several lines (the pattern, a caret,
/// the reason); a config error is one line: what was wrong, then the reason.
fn one_line(message: &str) -> String {
    let mut lines = message.lines().filter(|l| !l.trim().is_empty());
    let (Some(first), Some(last)) = (lines.next(), lines.next_back()) else {
        return message.trim().to_owned();
    };
    let first = first
        .trim_end()
        .trim_end_matches("regex parse error:")
        .trim_end();
    let reason = last.trim().trim_start_matches("error: ");
    format!("{}: {reason}", first.trim_end_matches(':'))
}

/// Resolves a list of relabel configs; `field` names the list in errors, which point at
/// the failing entry.
pub(crate) fn resolve_all(
    raw: Option<Vec<Spanned<RawRelabelConfig>>>,
    field: &str,
) -> Result<Vec<RelabelConfig>, Problem> {
    raw.unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            r.value
                .resolve()
                .map_err(|e| Problem::at(&r.referenced, e).within(format!("{field}[{i}]")))
        })
        .collect()
}

/// Parses a file holding only a list of relabel configs, as Thanos's
/// `--selector.relabel-config` takes (`- action: keep ...`); `path` names the file in
/// errors. An empty file is an empty list.
pub fn parse_relabel_configs(
    text: &str,
    path: &str,
) -> Result<Vec<RelabelConfig>, crate::ConfigError> {
    if text.lines().all(|l| {
        let l = l.trim();
        l.is_empty() || l.starts_with('#')
    }) {
        return Ok(Vec::new());
    }
    let raw: Vec<Spanned<RawRelabelConfig>> = crate::yaml::from_str(
        text,
        "a relabel configuration is a list of relabel configs (- action: ...)",
    )
    .map_err(|source| crate::ConfigError::Syntax {
        path: path.to_owned(),
        source,
    })?;
    resolve_all(Some(raw), "relabel_configs").map_err(|p| crate::ConfigError::Invalid {
        path: path.to_owned(),
        position: p
            .position
            .unwrap_or(crate::yaml::Position { line: 1, column: 1 }),
        message: p.message,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod list_tests {
    use super::*;

    #[test]
    fn parses_a_list_and_points_at_a_bad_entry() {
        let ok = parse_relabel_configs(
            "- action: keep\n  source_labels: [cluster]\n  regex: eu-.*\n",
            "sel.yml",
        )
        .unwrap();
        assert_eq!(ok.len(), 1);
        assert!(
            parse_relabel_configs("# nothing\n", "sel.yml")
                .unwrap()
                .is_empty()
        );
        let bad = parse_relabel_configs("- action: keep\n  regex: '('\n", "sel.yml")
            .unwrap_err()
            .to_string();
        assert!(bad.contains("sel.yml"), "{bad}");
        let not_list = parse_relabel_configs("action: keep\n", "sel.yml")
            .unwrap_err()
            .to_string();
        assert!(not_list.contains("list of relabel configs"), "{not_list}");
    }
}
