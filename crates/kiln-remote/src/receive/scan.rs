//! Reading a remote-write 1.0 `WriteRequest` in place, without building the message.
//!
//! The receiver's hot path: a request holds thousands of series, each usually with one
//! sample, and decoding into owned messages allocated two strings per label. Here each
//! `TimeSeries` is visited as byte slices of the decompressed body; its label messages
//! are kept as one contiguous slice (how every sender encodes them) that
//! [`super::cache::SeriesCache`] recognises, so a series seen before skips label parsing,
//! checking and lookup altogether.
//!
//! Wire format handled (protobuf): varint keys `field << 3 | wire type`; `WriteRequest`
//! field 1 `TimeSeries` (length-delimited), field 3 metadata (skipped); `TimeSeries`
//! field 1 `Label`, 2 `Sample` (1: double value, 2: int64 timestamp), 3 exemplars and 4
//! histograms (counted); `Label` 1 name, 2 value. Unknown fields are skipped by wire
//! type, as protobuf requires. Truncated or malformed input is an error, never a panic.

use super::ReceiveError;

/// One `TimeSeries`, borrowed from the request body.
#[derive(Default)]
pub(crate) struct SeriesView<'a> {
    /// Each `Label` message's bytes, in order.
    pub(crate) labels: Vec<&'a [u8]>,
    /// The label messages as one slice (key bytes included), when they are contiguous;
    /// the cache key of the series.
    pub(crate) labels_block: Option<&'a [u8]>,
    pub(crate) samples: Vec<(i64, f64)>,
    pub(crate) exemplars: usize,
    pub(crate) histograms: usize,
}

fn malformed(what: &str) -> ReceiveError {
    ReceiveError::Protobuf(format!("malformed WriteRequest: {what}"))
}

/// A cursor over protobuf fields.
struct Fields<'a> {
    buf: &'a [u8],
    pos: usize,
}

/// One field: number, and its payload (varint value, fixed64 bits or bytes).
enum Value<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32,
}

impl<'a> Fields<'a> {
    fn new(buf: &'a [u8]) -> Fields<'a> {
        Fields { buf, pos: 0 }
    }

    fn varint(&mut self) -> Result<u64, ReceiveError> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err(malformed("truncated varint"));
            };
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(malformed("varint longer than 10 bytes"))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ReceiveError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| malformed("field runs past the end"))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    /// The next field: (start offset, field number, value); `None` at the end.
    fn next(&mut self) -> Result<Option<(usize, u64, Value<'a>)>, ReceiveError> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let start = self.pos;
        let key = self.varint()?;
        let value = match key & 7 {
            0 => Value::Varint(self.varint()?),
            1 => {
                let b = self.take(8)?;
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                Value::Fixed64(u64::from_le_bytes(a))
            }
            2 => {
                let len =
                    usize::try_from(self.varint()?).map_err(|_| malformed("length too large"))?;
                Value::Bytes(self.take(len)?)
            }
            5 => {
                self.take(4)?;
                Value::Fixed32
            }
            t => return Err(malformed(&format!("unsupported wire type {t}"))),
        };
        Ok(Some((start, key >> 3, value)))
    }
}

/// Calls `on_series` for each `TimeSeries` of the request in `buf`, with a view reused
/// between calls. Returns the number of series.
pub(crate) fn for_each_series<'a>(
    buf: &'a [u8],
    view: &mut SeriesView<'a>,
    mut on_series: impl FnMut(&SeriesView<'a>) -> Result<(), ReceiveError>,
) -> Result<usize, ReceiveError> {
    let mut fields = Fields::new(buf);
    let mut n = 0;
    while let Some((_, field, value)) = fields.next()? {
        match (field, value) {
            (1, Value::Bytes(ts)) => {
                series(ts, view)?;
                on_series(view)?;
                n += 1;
            }
            (1, _) => return Err(malformed("timeseries is not a message")),
            // 2.0's `symbols` and `timeseries`; never fields of a 1.0 request.
            (field @ (4 | 5), Value::Bytes(_)) => {
                return Err(ReceiveError::ProtocolMismatch {
                    declared: "remote write 1.0 prometheus.WriteRequest",
                    found: "remote write 2.0 io.prometheus.write.v2.Request",
                    field,
                });
            }
            _ => {}
        }
    }
    Ok(n)
}

/// Refuses a 2.0 body holding 1.0's top-level fields (1 `timeseries`, 3 `metadata`;
/// reserved in 2.0): decoded as 2.0, such a body would be an empty request.
pub(crate) fn refuse_v1_fields(buf: &[u8]) -> Result<(), ReceiveError> {
    let mut fields = Fields::new(buf);
    while let Some((_, field, _)) = fields.next()? {
        if (1..=3).contains(&field) {
            return Err(ReceiveError::ProtocolMismatch {
                declared: "remote write 2.0 io.prometheus.write.v2.Request",
                found: "remote write 1.0 prometheus.WriteRequest",
                field,
            });
        }
    }
    Ok(())
}

/// Fills `view` from one `TimeSeries` message.
fn series<'a>(buf: &'a [u8], view: &mut SeriesView<'a>) -> Result<(), ReceiveError> {
    view.labels.clear();
    view.samples.clear();
    view.exemplars = 0;
    view.histograms = 0;
    // Where the contiguous run of label fields starts and ends; broken by anything
    // between two labels.
    let mut block: Option<(usize, usize)> = None;
    let mut contiguous = true;
    let mut fields = Fields::new(buf);
    while let Some((start, field, value)) = fields.next()? {
        match (field, value) {
            (1, Value::Bytes(label)) => {
                view.labels.push(label);
                block = match block {
                    None => Some((start, fields.pos)),
                    Some((s, e)) if e == start => Some((s, fields.pos)),
                    Some(b) => {
                        contiguous = false;
                        Some(b)
                    }
                };
            }
            (2, Value::Bytes(sample)) => view.samples.push(parse_sample(sample)?),
            (3, Value::Bytes(_)) => view.exemplars += 1,
            (4, Value::Bytes(_)) => view.histograms += 1,
            (1..=4, _) => return Err(malformed("timeseries field of the wrong type")),
            _ => {}
        }
    }
    view.labels_block = match block {
        Some((s, e)) if contiguous => Some(&buf[s..e]),
        _ => None,
    };
    Ok(())
}

fn parse_sample(buf: &[u8]) -> Result<(i64, f64), ReceiveError> {
    let (mut t, mut v) = (0i64, 0f64);
    let mut fields = Fields::new(buf);
    while let Some((_, field, value)) = fields.next()? {
        match (field, value) {
            (1, Value::Fixed64(bits)) => v = f64::from_bits(bits),
            // int64 is sent as its two's complement in a varint.
            (2, Value::Varint(x)) => t = x as i64,
            (1 | 2, _) => return Err(malformed("sample field of the wrong type")),
            _ => {}
        }
    }
    Ok((t, v))
}

/// A `Label` message's name and value.
pub(crate) fn label(buf: &[u8]) -> Result<(&str, &str), ReceiveError> {
    let (mut name, mut value): (&[u8], &[u8]) = (b"", b"");
    let mut fields = Fields::new(buf);
    while let Some((_, field, v)) = fields.next()? {
        match (field, v) {
            (1, Value::Bytes(b)) => name = b,
            (2, Value::Bytes(b)) => value = b,
            (1 | 2, _) => return Err(malformed("label field of the wrong type")),
            _ => {}
        }
    }
    Ok((utf8(name)?, utf8(value)?))
}

fn utf8(b: &[u8]) -> Result<&str, ReceiveError> {
    std::str::from_utf8(b).map_err(|_| ReceiveError::Protobuf("label is not valid UTF-8".into()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use prost::Message;

    use super::*;
    use crate::proto::{Label, Sample, TimeSeries, WriteRequest};

    #[test]
    fn scans_what_prost_encodes() {
        let req = WriteRequest {
            timeseries: vec![
                TimeSeries {
                    labels: vec![
                        Label {
                            name: "__name__".into(),
                            value: "up".into(),
                        },
                        Label {
                            name: "job".into(),
                            value: "é".into(),
                        },
                    ],
                    samples: vec![
                        Sample {
                            value: -1.5,
                            timestamp: -1000,
                        },
                        Sample {
                            value: f64::NAN,
                            timestamp: 5,
                        },
                    ],
                    exemplars: vec![vec![]],
                    histograms: vec![],
                },
                TimeSeries::default(),
            ],
            metadata: vec![],
        };
        let buf = req.encode_to_vec();
        let mut view = SeriesView::default();
        let mut seen = Vec::new();
        let n = for_each_series(&buf, &mut view, |v| {
            let labels: Vec<(String, String)> = v
                .labels
                .iter()
                .map(|l| {
                    let (n, v) = label(l).unwrap();
                    (n.to_owned(), v.to_owned())
                })
                .collect();
            seen.push((
                labels,
                v.samples.clone(),
                v.exemplars,
                v.labels_block.is_some(),
            ));
            Ok(())
        })
        .unwrap();
        assert_eq!(n, 2);
        assert_eq!(seen[0].0[1], ("job".into(), "é".into()));
        assert_eq!(seen[0].1[0], (-1000, -1.5));
        assert!(seen[0].1[1].1.is_nan());
        assert_eq!(seen[0].2, 1);
        assert!(seen[0].3, "labels are contiguous");
        assert!(seen[1].0.is_empty());
        // Every truncation is an error or fewer series, never a panic.
        for cut in 0..buf.len() {
            let _ = for_each_series(&buf[..cut], &mut SeriesView::default(), |_| Ok(()));
        }
    }
}
