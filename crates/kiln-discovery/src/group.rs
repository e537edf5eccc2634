//! Target groups, and the JSON/YAML file format that file and HTTP discovery read.
//!
//! The format is a list of groups:
//! ```yaml
//! - targets: ['host1:9100', 'host2:9100']
//!   labels: {env: prod}
//! ```
//! Both keys may be missing; other keys are errors, as in Prometheus.

use std::collections::BTreeMap;

use kiln_config::StaticConfig;
use kiln_model::Labels;
use serde::Deserialize;

pub const ADDRESS_LABEL: &str = "__address__";

/// Targets that share labels, as one discovery delivers them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetGroup {
    /// Names the group within its discovery (a static config's index, a file path and
    /// index, a DNS name, a Kubernetes object).
    pub source: String,
    /// One label set per target, each with at least `__address__`.
    pub targets: Vec<Labels>,
    /// Labels of every target of the group; a target's own label of a name wins.
    pub labels: Labels,
}

impl TargetGroup {
    /// The group of the `index`th entry of `static_configs`.
    pub fn from_static(index: usize, config: &StaticConfig) -> TargetGroup {
        TargetGroup {
            source: index.to_string(),
            targets: config
                .targets
                .iter()
                .map(|t| Labels::from_pairs(&[(ADDRESS_LABEL, t.as_str())]))
                .collect(),
            labels: labels_from_map(&config.labels),
        }
    }
}

pub(crate) fn labels_from_map(map: &BTreeMap<String, String>) -> Labels {
    Labels::from_pairs(
        &map.iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect::<Vec<_>>(),
    )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    #[serde(default)]
    targets: Vec<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

/// The syntax of a target-group document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupFormat {
    Json,
    Yaml,
}

/// What a target-group document must be, for one of another shape.
const DOCUMENT_SHAPE: &str = "a target group file is a list of target groups \
(`- targets: [...]`, with optional `labels:`)";

/// Parses a list of target groups. Groups are named `{source_prefix}:{index}`, and each
/// gets `extra` (`__meta_filepath`, `__meta_url`) besides its own labels. A syntax
/// error starts with its `<line>:<column>: `, for the caller to put the file in front
/// (`in_file` does that for files).
pub fn parse_groups(
    text: &[u8],
    format: GroupFormat,
    source_prefix: &str,
    extra: (&str, &str),
) -> Result<Vec<TargetGroup>, String> {
    let raw: Vec<Option<RawGroup>> = match format {
        GroupFormat::Json => serde_json::from_slice(text).map_err(|e| {
            // serde_json ends its message with " at line L column C"; lead with it.
            let message = e.to_string();
            let message = message
                .rsplit_once(" at line ")
                .map_or(message.as_str(), |(m, _)| m);
            format!("{}:{}: {message}", e.line(), e.column())
        })?,
        GroupFormat::Yaml => {
            let text = std::str::from_utf8(text).map_err(|e| format!("not UTF-8: {e}"))?;
            if text.trim().is_empty() {
                Vec::new()
            } else {
                kiln_config::yaml::from_str(text, DOCUMENT_SHAPE).map_err(|e| e.to_string())?
            }
        }
    };
    let mut groups = Vec::with_capacity(raw.len());
    for (i, g) in raw.into_iter().enumerate() {
        let Some(g) = g else {
            return Err(format!("target group {i} is null"));
        };
        let mut labels = g.labels;
        for name in labels.keys() {
            if name.is_empty() {
                return Err(format!("target group {i}: empty label name"));
            }
        }
        labels.insert(extra.0.to_owned(), extra.1.to_owned());
        groups.push(TargetGroup {
            source: format!("{source_prefix}:{i}"),
            targets: g
                .targets
                .iter()
                .map(|t| Labels::from_pairs(&[(ADDRESS_LABEL, t.as_str())]))
                .collect(),
            labels: labels_from_map(&labels),
        });
    }
    Ok(groups)
}

/// A [`parse_groups`] error as `<file>:<line>:<column>: <what>` (or `<file>: <what>`
/// when it has no place).
pub(crate) fn in_file(file: &str, error: &str) -> String {
    if error.starts_with(|c: char| c.is_ascii_digit()) {
        format!("{file}:{error}")
    } else {
        format!("{file}: {error}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_yaml_give_the_same_groups() {
        let json = br#"[{"targets":["a:1","b:2"],"labels":{"env":"prod"}},{"targets":["c:3"]}]"#;
        let yaml = b"- targets: ['a:1', 'b:2']\n  labels:\n    env: prod\n- targets: ['c:3']\n";
        let extra = ("__meta_filepath", "/x.json");
        let j = parse_groups(json, GroupFormat::Json, "/x.json", extra).expect("test step");
        let y = parse_groups(yaml, GroupFormat::Yaml, "/x.json", extra).expect("test step");
        assert_eq!(j, y);
        assert_eq!(j.len(), 2);
        assert_eq!(j[0].source, "/x.json:0");
        assert_eq!(j[0].targets.len(), 2);
        assert_eq!(j[0].labels.get("env"), Some("prod"));
        assert_eq!(j[1].labels.get("__meta_filepath"), Some("/x.json"));
    }

    #[test]
    fn bad_documents_are_errors() {
        let extra = ("__meta_url", "u");
        for bad in [
            &br#"[{"targets":["a"],"lables":{}}]"#[..],
            br#"{"targets":["a"]}"#,
            br#"[null]"#,
            br#"[{"targets":"a"}]"#,
            br#"[{"labels":{"":"x"}}]"#,
        ] {
            assert!(
                parse_groups(bad, GroupFormat::Json, "u", extra).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let yaml_err = |text: &[u8]| {
            parse_groups(text, GroupFormat::Yaml, "f", extra).expect_err("bad document")
        };
        assert_eq!(
            yaml_err(b"- targets: [a]\n  foo: 1\n"),
            "2:3: field foo not found (valid fields here: targets, labels)"
        );
        assert_eq!(
            yaml_err(b"targets: [a]\n"),
            "1:1: a target group file is a list of target groups (`- targets: [...]`, with \
             optional `labels:`), not a mapping"
        );
        assert_eq!(
            yaml_err(b"- targets: a:1\n"),
            "1:12: targets must be a list, not \"a:1\""
        );
        let json_err = parse_groups(br#"[{"targets":"a"}]"#, GroupFormat::Json, "u", extra)
            .expect_err("bad document");
        assert!(json_err.starts_with("1:15: invalid type"), "{json_err}");
        assert_eq!(in_file("t.yml", "1:2: x"), "t.yml:1:2: x");
        assert_eq!(
            in_file("t.yml", "target group 0 is null"),
            "t.yml: target group 0 is null"
        );
        assert!(
            parse_groups(b"", GroupFormat::Yaml, "f", extra)
                .expect("test step")
                .is_empty()
        );
    }
}
