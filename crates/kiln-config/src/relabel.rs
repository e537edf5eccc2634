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
