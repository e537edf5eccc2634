//! Cardinality statistics of the head, for the TSDB status API: the same figures
//! Prometheus computes from its head index.

use super::Head;

/// A name and a count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    pub name: String,
    pub value: u64,
}

/// The head's size and its largest contributors.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeadCardinality {
    pub num_series: u64,
    /// Chunks in memory or memory-mapped, the open ones included.
    pub chunk_count: u64,
    pub min_time: Option<i64>,
    pub max_time: Option<i64>,
    /// Series per metric name.
    pub series_count_by_metric_name: Vec<Stat>,
    /// Distinct values per label name.
    pub label_value_count_by_label_name: Vec<Stat>,
    /// Per label name, the bytes of its values summed over the series that have them.
    pub memory_in_bytes_by_label_name: Vec<Stat>,
    /// Series per `name=value` pair.
    pub series_count_by_label_value_pair: Vec<Stat>,
}

/// The `limit` largest, largest first (ties by name).
fn top(mut stats: Vec<Stat>, limit: usize) -> Vec<Stat> {
    stats.sort_by(|a, b| b.value.cmp(&a.value).then_with(|| a.name.cmp(&b.name)));
    stats.truncate(limit);
    stats
}

impl Head {
    /// The head's statistics, each list cut to its `limit` largest entries.
    pub fn cardinality(&self, limit: usize) -> HeadCardinality {
        let (mut by_metric, mut value_counts, mut bytes, mut pairs) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        {
            let postings = self.postings.read();
            for (name, values) in postings.by_name() {
                let distinct = values.len() as u64;
                let mut size = 0u64;
                for (value, ids) in values {
                    let series = ids.len() as u64;
                    if name == kiln_model::METRIC_NAME {
                        by_metric.push(Stat {
                            name: value.to_owned(),
                            value: series,
                        });
                    }
                    pairs.push(Stat {
                        name: format!("{name}={value}"),
                        value: series,
                    });
                    size += value.len() as u64 * series;
                }
                bytes.push(Stat {
                    name: name.to_owned(),
                    value: size,
                });
                value_counts.push(Stat {
                    name: name.to_owned(),
                    value: distinct,
                });
            }
        }
        let mut chunk_count = 0u64;
        for stripe in self.stripes.iter() {
            for series in stripe.read().by_id.values() {
                let data = series.data.lock();
                chunk_count += data.closed.len() as u64 + u64::from(data.open.num_samples() > 0);
            }
        }
        HeadCardinality {
            num_series: self.num_series() as u64,
            chunk_count,
            min_time: self.min_time(),
            max_time: self.max_time(),
            series_count_by_metric_name: top(by_metric, limit),
            label_value_count_by_label_name: top(value_counts, limit),
            memory_in_bytes_by_label_name: top(bytes, limit),
            series_count_by_label_value_pair: top(pairs, limit),
        }
    }
}

#[cfg(test)]
mod tests {
    use kiln_model::Labels;
    use kiln_storage::SampleValue;

    use crate::head::{Head, HeadOptions};

    #[test]
    fn cardinality() {
        let head = Head::new(HeadOptions::default());
        let mut app = head.appender();
        for (name, gpu) in [("a", "0"), ("a", "1"), ("a", "2"), ("b", "0")] {
            let l = Labels::from_pairs(&[("__name__", name), ("gpu", gpu)]);
            kiln_storage::Appender::append(&mut app, 0, &l, 1000, SampleValue::Float(1.0))
                .expect("append");
        }
        kiln_storage::Appender::commit(&mut app).expect("commit");
        drop(app);
        let s = head.cardinality(2);
        assert_eq!((s.num_series, s.chunk_count), (4, 4));
        assert_eq!((s.min_time, s.max_time), (Some(1000), Some(1000)));
        let names = |v: &[super::Stat]| -> Vec<(String, u64)> {
            v.iter().map(|s| (s.name.clone(), s.value)).collect()
        };
        assert_eq!(
            names(&s.series_count_by_metric_name),
            [("a".to_owned(), 3), ("b".to_owned(), 1)]
        );
        assert_eq!(
            names(&s.label_value_count_by_label_name),
            [("gpu".to_owned(), 3), ("__name__".to_owned(), 2)]
        );
        // __name__: "a" x3 + "b" x1 = 4 bytes; gpu: 1 byte x 4 series.
        assert_eq!(
            names(&s.memory_in_bytes_by_label_name),
            [("__name__".to_owned(), 4), ("gpu".to_owned(), 4)]
        );
        assert_eq!(
            names(&s.series_count_by_label_value_pair),
            [("__name__=a".to_owned(), 3), ("gpu=0".to_owned(), 2)]
        );
    }
}
