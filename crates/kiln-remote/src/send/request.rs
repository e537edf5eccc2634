//! Building request bodies: a batch of queued samples as a snappy-compressed
//! `prometheus.WriteRequest` (1.0) or `io.prometheus.write.v2.Request` (2.0).
//!
//! Samples of one series in a batch share one `TimeSeries` entry (in time order, as the
//! specification allows), so a backlog of one busy series does not repeat its labels.

use std::collections::HashMap;
use std::sync::Arc;

use prost::Message;

use crate::proto::{self, v2};

/// The labels a queued sample is sent with (external labels added, write relabelling
/// applied). Shared by every sample of the series.
#[derive(Debug)]
pub(crate) struct SeriesLabels {
    pub(crate) labels: kiln_model::Labels,
}

/// One sample waiting in a shard.
#[derive(Debug, Clone)]
pub(crate) struct QueuedSample {
    pub(crate) series: Arc<SeriesLabels>,
    pub(crate) t: i64,
    pub(crate) v: f64,
    /// The WAL record it came from (see `progress`).
    pub(crate) seq: u64,
}

/// Metadata of one metric family, sent with 1.0 metadata requests and attached to 2.0
/// series.
#[derive(Debug, Clone, PartialEq)]
pub struct FamilyMetadata {
    pub family: String,
    /// `MetricMetadata.MetricType` numbering: 0 unknown, 1 counter, 2 gauge,
    /// 3 histogram, 4 gaugehistogram, 5 summary, 6 info, 7 stateset.
    pub kind: i32,
    pub help: String,
    pub unit: String,
}

/// Groups `batch` by series, keeping first-seen order: indexes into `batch`.
fn by_series(batch: &[QueuedSample]) -> Vec<Vec<usize>> {
    let mut index: HashMap<*const SeriesLabels, usize> = HashMap::new();
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for (i, s) in batch.iter().enumerate() {
        let g = *index.entry(Arc::as_ptr(&s.series)).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[g].push(i);
    }
    groups
}

/// A 1.0 request for `batch`, snappy-compressed.
pub(crate) fn encode_v1(batch: &[QueuedSample]) -> Vec<u8> {
    let timeseries = by_series(batch)
        .into_iter()
        .map(|idx| proto::TimeSeries {
            labels: batch[idx[0]]
                .series
                .labels
                .iter()
                .map(|l| proto::Label {
                    name: l.name.to_owned(),
                    value: l.value.to_owned(),
                })
                .collect(),
            samples: idx
                .iter()
                .map(|&i| proto::Sample {
                    value: batch[i].v,
                    timestamp: batch[i].t,
                })
                .collect(),
            exemplars: Vec::new(),
            histograms: Vec::new(),
        })
        .collect();
    compress(&proto::WriteRequest {
        timeseries,
        metadata: Vec::new(),
    })
}

/// A 1.0 request carrying only metadata, snappy-compressed.
pub(crate) fn encode_metadata_v1(metadata: &[FamilyMetadata]) -> Vec<u8> {
    compress(&proto::WriteRequest {
        timeseries: Vec::new(),
        metadata: metadata
            .iter()
            .map(|m| proto::MetricMetadata {
                r#type: m.kind,
                metric_family_name: m.family.clone(),
                help: m.help.clone(),
                unit: m.unit.clone(),
            })
            .collect(),
    })
}

/// A 2.0 request for `batch`, with each series' metadata from `metadata` (by family
/// name), snappy-compressed.
pub(crate) fn encode_v2(
    batch: &[QueuedSample],
    metadata: &HashMap<String, FamilyMetadata>,
) -> Vec<u8> {
    let mut symbols = Symbols::default();
    let timeseries = by_series(batch)
        .into_iter()
        .map(|idx| {
            let labels = &batch[idx[0]].series.labels;
            let mut labels_refs = Vec::with_capacity(labels.len() * 2);
            for l in labels.iter() {
                labels_refs.push(symbols.get(l.name));
                labels_refs.push(symbols.get(l.value));
            }
            let meta = labels
                .metric_name()
                .and_then(|n| metadata.get(n).or_else(|| metadata.get(family_of(n))))
                .map(|m| v2::Metadata {
                    // 1.0 and 2.0 number metric types alike.
                    r#type: m.kind,
                    help_ref: symbols.get(&m.help),
                    unit_ref: symbols.get(&m.unit),
                });
            v2::TimeSeries {
                labels_refs,
                samples: idx
                    .iter()
                    .map(|&i| v2::Sample {
                        value: batch[i].v,
                        timestamp: batch[i].t,
                        start_timestamp: 0,
                    })
                    .collect(),
                histograms: Vec::new(),
                exemplars: Vec::new(),
                metadata: meta,
            }
        })
        .collect();
    compress(&v2::Request {
        symbols: symbols.table,
        timeseries,
    })
}

/// The family a sample name belongs to (`x_bucket`, `x_sum`, `x_count`, `x_total` ->
/// `x`), for finding its metadata.
fn family_of(name: &str) -> &str {
    for suffix in ["_bucket", "_sum", "_count", "_total", "_created", "_info"] {
        if let Some(f) = name.strip_suffix(suffix) {
            return f;
        }
    }
    name
}

/// The symbol table of one 2.0 request: `table[0]` is the empty string.
struct Symbols {
    table: Vec<String>,
    index: HashMap<String, u32>,
}

impl Default for Symbols {
    fn default() -> Symbols {
        Symbols {
            table: vec![String::new()],
            index: HashMap::from([(String::new(), 0)]),
        }
    }
}

impl Symbols {
    fn get(&mut self, s: &str) -> u32 {
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        let i = u32::try_from(self.table.len()).unwrap_or(u32::MAX);
        self.table.push(s.to_owned());
        self.index.insert(s.to_owned(), i);
        i
    }
}

fn compress(msg: &impl Message) -> Vec<u8> {
    let raw = msg.encode_to_vec();
    snap::raw::Encoder::new()
        .compress_vec(&raw)
        .unwrap_or_default()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::receive::{ReceiveLimits, decode, decode_v2};

    fn sample(series: &Arc<SeriesLabels>, t: i64, v: f64) -> QueuedSample {
        QueuedSample {
            series: series.clone(),
            t,
            v,
            seq: 0,
        }
    }

    #[test]
    fn batches_decode_with_samples_grouped_by_series() {
        let a = Arc::new(SeriesLabels {
            labels: kiln_model::Labels::from_pairs(&[("__name__", "up_total"), ("job", "a")]),
        });
        let b = Arc::new(SeriesLabels {
            labels: kiln_model::Labels::from_pairs(&[("__name__", "temp"), ("job", "b")]),
        });
        let batch = vec![sample(&a, 1, 1.0), sample(&b, 1, 20.5), sample(&a, 2, 2.0)];
        let req = decode(&encode_v1(&batch), &ReceiveLimits::default()).unwrap();
        assert_eq!(req.timeseries.len(), 2);
        assert_eq!(req.timeseries[0].samples.len(), 2);
        assert_eq!(req.timeseries[0].labels[1].value, "a");
        assert_eq!(req.timeseries[1].samples[0].value, 20.5);

        let md = HashMap::from([(
            "up".to_owned(),
            FamilyMetadata {
                family: "up".into(),
                kind: 1,
                help: "Ups.".into(),
                unit: String::new(),
            },
        )]);
        let req = decode_v2(&encode_v2(&batch, &md), &ReceiveLimits::default()).unwrap();
        assert_eq!(req.symbols[0], "");
        assert_eq!(req.timeseries.len(), 2);
        let m = req.timeseries[0].metadata.as_ref().unwrap();
        assert_eq!(m.r#type, 1);
        assert_eq!(req.symbols[m.help_ref as usize], "Ups.");
        assert!(req.timeseries[1].metadata.is_none());
        let names: Vec<&str> = req.timeseries[1]
            .labels_refs
            .iter()
            .map(|&r| req.symbols[r as usize].as_str())
            .collect();
        assert_eq!(names, ["__name__", "temp", "job", "b"]);

        let meta = decode(
            &encode_metadata_v1(&[md["up"].clone()]),
            &ReceiveLimits::default(),
        )
        .unwrap();
        assert_eq!(meta.metadata[0].metric_family_name, "up");
    }
}
