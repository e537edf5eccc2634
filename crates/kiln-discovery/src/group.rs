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

/// Parses a list of target groups. Groups are named `{source_prefix}:{index}`, and each
/// gets `extra` (`__meta_filepath`, `__meta_url`) besides its own labels.
pub fn parse_groups(
    text: &[u8],
    format: GroupFormat,
    source_prefix: &str,
    extra: (&str, &str),
) -> Result<Vec<TargetGroup>, String> {
    let raw: Vec<Option<RawGroup>> = match format {
        GroupFormat::Json => serde_json::from_slice(text).map_err(|e| e.to_string())?,
        GroupFormat::Yaml => {
            let text = std::str::from_utf8(text).map_err(|e| format!("not UTF-8: {e}"))?;
            if text.trim().is_empty() {
                Vec::new()
            } else {
                serde_saphyr::from_str(text).map_err(|e| e.to_string())?
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
        assert!(
            parse_groups(b"- targets: [a]\n  foo: 1\n", GroupFormat::Yaml, "f", extra).is_err()
        );
        assert!(
            parse_groups(b"", GroupFormat::Yaml, "f", extra)
                .expect("test step")
                .is_empty()
        );
    }
}
