//! Between the StoreAPI's wire types and Kiln's model: matchers, label sets, chunk
//! encodings, and the external labels a store adds to what it serves.

use kiln_model::{Labels, MatchType, Matcher};

use crate::proto::thanos::{Label, LabelMatcher, chunk, label_matcher};

/// A wire matcher as a Kiln matcher; the error says what is wrong with it.
pub fn to_matcher(m: &LabelMatcher) -> Result<Matcher, String> {
    let kind = match label_matcher::Type::try_from(m.r#type) {
        Ok(label_matcher::Type::Eq) => MatchType::Equal,
        Ok(label_matcher::Type::Neq) => MatchType::NotEqual,
        Ok(label_matcher::Type::Re) => MatchType::Regex,
        Ok(label_matcher::Type::Nre) => MatchType::NotRegex,
        Err(_) => return Err(format!("unknown matcher type {}", m.r#type)),
    };
    Matcher::new(kind, &m.name, &m.value).map_err(|e| e.to_string())
}

/// A Kiln matcher on the wire.
pub fn from_matcher(m: &Matcher) -> LabelMatcher {
    let kind = match m.kind {
        MatchType::Equal => label_matcher::Type::Eq,
        MatchType::NotEqual => label_matcher::Type::Neq,
        MatchType::Regex => label_matcher::Type::Re,
        MatchType::NotRegex => label_matcher::Type::Nre,
    };
    LabelMatcher {
        r#type: kind as i32,
        name: m.name.clone(),
        value: m.value.clone(),
    }
}

/// A label set on the wire (sorted, as Kiln keeps it).
pub fn to_wire_labels(labels: &Labels) -> Vec<Label> {
    labels
        .iter()
        .map(|l| Label {
            name: l.name.to_owned(),
            value: l.value.to_owned(),
        })
        .collect()
}

/// A wire label set as Kiln's (sorted; a later duplicate name wins).
pub fn from_wire_labels(labels: &[Label]) -> Labels {
    let pairs: Vec<(&str, &str)> = labels
        .iter()
        .map(|l| (l.name.as_str(), l.value.as_str()))
        .collect();
    Labels::from_pairs(&pairs)
}

/// The wire encoding of a TSDB chunk encoding byte (one less: XOR is 1 on disk, 0 on
/// the wire); `None` for an encoding the StoreAPI does not carry.
pub fn wire_encoding(tsdb_encoding: u8) -> Option<chunk::Encoding> {
    match tsdb_encoding {
        1 => Some(chunk::Encoding::Xor),
        2 => Some(chunk::Encoding::Histogram),
        3 => Some(chunk::Encoding::FloatHistogram),
        _ => None,
    }
}

/// How a store with external labels answers a request: which matchers go to its storage,
/// and how a stored series' labels become the answer's.
#[derive(Debug, Clone)]
pub struct ExternalLabelsPlan {
    /// The request's matchers without those on external labels.
    pub matchers: Vec<Matcher>,
    /// The external labels the answer carries (the replica labels asked away removed).
    pub external: Labels,
    /// Label names removed from every series (`without_replica_labels`).
    pub removed: Vec<String>,
}

impl ExternalLabelsPlan {
    /// Checks the request's matchers against the store's external labels, as Thanos
    /// does: a matcher on an external label is decided here (the store has nothing when
    /// it fails: `Ok(None)`) and not passed on; the others go to the storage.
    pub fn new(
        matchers: &[LabelMatcher],
        external: &Labels,
        without_replica_labels: &[String],
    ) -> Result<Option<ExternalLabelsPlan>, String> {
        let mut kept = Vec::with_capacity(matchers.len());
        for m in matchers {
            let m = to_matcher(m)?;
            match external.get(&m.name) {
                Some(value) if !m.matches(value) => return Ok(None),
                Some(_) => {}
                None => kept.push(m),
            }
        }
        let removed: Vec<String> = without_replica_labels.to_vec();
        let external = external.retain(|name| !removed.iter().any(|r| r == name));
        Ok(Some(ExternalLabelsPlan {
            matchers: kept,
            external,
            removed,
        }))
    }

    /// A stored series' labels as the answer gives them: the removed names taken out,
    /// the external labels set (replacing a series label of the same name).
    pub fn answer_labels(&self, stored: &Labels) -> Labels {
        if self.external.is_empty() && self.removed.is_empty() {
            return stored.clone();
        }
        let mut b = stored.to_builder();
        for name in &self.removed {
            b.del(name);
        }
        for l in self.external.iter() {
            b.set(l.name, l.value);
        }
        b.build()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn m(kind: label_matcher::Type, name: &str, value: &str) -> LabelMatcher {
        LabelMatcher {
            r#type: kind as i32,
            name: name.into(),
            value: value.into(),
        }
    }

    #[test]
    fn matchers_on_external_labels_are_decided_by_the_store() {
        let ext = Labels::from_pairs(&[("cluster", "eu-1"), ("replica", "0")]);
        use label_matcher::Type::*;
        let plan = ExternalLabelsPlan::new(
            &[m(Eq, "__name__", "up"), m(Re, "cluster", "eu-.*")],
            &ext,
            &["replica".to_owned()],
        )
        .unwrap()
        .unwrap();
        assert_eq!(plan.matchers.len(), 1);
        assert_eq!(plan.matchers[0].name, "__name__");
        assert_eq!(plan.external, Labels::from_pairs(&[("cluster", "eu-1")]));
        let stored = Labels::from_pairs(&[("__name__", "up"), ("cluster", "x"), ("replica", "1")]);
        assert_eq!(
            plan.answer_labels(&stored),
            Labels::from_pairs(&[("__name__", "up"), ("cluster", "eu-1")])
        );
        assert!(
            ExternalLabelsPlan::new(&[m(Eq, "cluster", "us-1")], &ext, &[])
                .unwrap()
                .is_none()
        );
        assert!(ExternalLabelsPlan::new(&[m(Re, "a", "(")], &ext, &[]).is_err());
        let bad = LabelMatcher {
            r#type: 9,
            name: "a".into(),
            value: "b".into(),
        };
        assert_eq!(
            ExternalLabelsPlan::new(&[bad], &ext, &[]).unwrap_err(),
            "unknown matcher type 9"
        );
    }

    #[test]
    fn matchers_round_trip() {
        for kind in [
            MatchType::Equal,
            MatchType::NotEqual,
            MatchType::Regex,
            MatchType::NotRegex,
        ] {
            let k = Matcher::new(kind, "job", "a.*").unwrap();
            let back = to_matcher(&from_matcher(&k)).unwrap();
            assert_eq!(
                (back.kind, back.name, back.value),
                (k.kind, k.name, k.value)
            );
        }
        assert_eq!(wire_encoding(1), Some(chunk::Encoding::Xor));
        assert_eq!(wire_encoding(0), None);
    }
}
