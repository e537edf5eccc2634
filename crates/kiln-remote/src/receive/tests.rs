use kiln_storage::mem::MemStorage;
use kiln_storage::{Appendable, Queryable, ValueKind};

use super::*;
use crate::proto::{Label, Sample, TimeSeries};

fn series(labels: &[(&str, &str)], samples: &[(i64, f64)]) -> TimeSeries {
    TimeSeries {
        labels: labels
            .iter()
            .map(|(n, v)| Label {
                name: n.to_string(),
                value: v.to_string(),
            })
            .collect(),
        samples: samples
            .iter()
            .map(|&(timestamp, value)| Sample { value, timestamp })
            .collect(),
        exemplars: Vec::new(),
        histograms: Vec::new(),
    }
}

fn body(req: &WriteRequest) -> Vec<u8> {
    snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .expect("snappy")
}

fn stored(storage: &MemStorage) -> Vec<(String, Vec<(i64, f64)>)> {
    let q = storage
        .querier(i64::MIN / 2, i64::MAX / 2)
        .expect("querier");
    let m =
        kiln_model::Matcher::new(kiln_model::MatchType::Regex, "__name__", ".+").expect("matcher");
    let mut set = q.select(true, None, &[m]);
    let mut out = Vec::new();
    while let Some(s) = set.next() {
        let mut it = s.iterator();
        let mut samples = Vec::new();
        while it.next() == ValueKind::Float {
            samples.push(it.at());
        }
        out.push((s.labels().to_string(), samples));
    }
    out
}

#[test]
fn a_request_is_stored_as_one_transaction() {
    let storage = MemStorage::new();
    let req = WriteRequest {
        timeseries: vec![
            series(
                &[("__name__", "gpu_util"), ("gpu", "0")],
                &[(1000, 0.5), (2000, 0.7)],
            ),
            series(&[("__name__", "up"), ("job", "a")], &[(1000, 1.0)]),
        ],
        metadata: Vec::new(),
    };
    let stats = receive(
        storage.appender().as_mut(),
        Protocol::V1,
        &body(&req),
        &ReceiveLimits::default(),
        &SeriesCache::default(),
    )
    .expect("stored");
    assert_eq!(
        stats,
        WriteStats {
            series: 2,
            samples: 3,
            exemplars_ignored: 0
        }
    );
    assert_eq!(
        stored(&storage),
        vec![
            (
                "{__name__=\"gpu_util\", gpu=\"0\"}".to_string(),
                vec![(1000, 0.5), (2000, 0.7)]
            ),
            (
                "{__name__=\"up\", job=\"a\"}".to_string(),
                vec![(1000, 1.0)]
            ),
        ]
    );
}

#[test]
fn bad_series_are_400_and_store_nothing() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("__name__", "x"), ("b", "1"), ("a", "2")], "out of order"),
        (
            &[("__name__", "x"), ("a", "1"), ("a", "2")],
            "duplicate label name",
        ),
        (&[("job", "a")], "no metric name"),
        (&[("__name__", "x"), ("", "1")], "empty label name"),
        (&[("__name__", "x"), ("a", "")], "empty value"),
    ];
    for (labels, want) in cases {
        let storage = MemStorage::new();
        let req = WriteRequest {
            timeseries: vec![
                series(&[("__name__", "ok")], &[(1000, 1.0)]),
                series(labels, &[(1000, 1.0)]),
            ],
            metadata: Vec::new(),
        };
        let e = receive(
            storage.appender().as_mut(),
            Protocol::V1,
            &body(&req),
            &ReceiveLimits::default(),
            &SeriesCache::default(),
        )
        .expect_err("refused");
        assert_eq!(e.status(), 400, "{e}");
        assert!(e.to_string().contains(want), "{labels:?}: {e}");
        assert!(
            stored(&storage).is_empty(),
            "nothing of the request is stored"
        );
    }
}

#[test]
fn out_of_order_samples_are_400_and_roll_back() {
    let storage = MemStorage::new();
    let first = WriteRequest {
        timeseries: vec![series(&[("__name__", "x")], &[(5000, 1.0)])],
        metadata: Vec::new(),
    };
    receive(
        storage.appender().as_mut(),
        Protocol::V1,
        &body(&first),
        &ReceiveLimits::default(),
        &SeriesCache::default(),
    )
    .expect("stored");
    let late = WriteRequest {
        timeseries: vec![
            series(&[("__name__", "y")], &[(6000, 1.0)]),
            series(&[("__name__", "x")], &[(4000, 2.0)]),
        ],
        metadata: Vec::new(),
    };
    let e = receive(
        storage.appender().as_mut(),
        Protocol::V1,
        &body(&late),
        &ReceiveLimits::default(),
        &SeriesCache::default(),
    )
    .expect_err("out of order");
    assert_eq!(e.status(), 400, "{e}");
    assert_eq!(
        stored(&storage).len(),
        1,
        "y was rolled back with the request"
    );
}

#[test]
fn limits_and_formats() {
    let req = WriteRequest {
        timeseries: vec![series(&[("__name__", "x")], &[(1, 1.0)]); 3],
        metadata: Vec::new(),
    };
    let b = body(&req);
    let tight = |max_body_bytes, max_decompressed_bytes, max_series| ReceiveLimits {
        max_body_bytes,
        max_decompressed_bytes,
        max_series,
    };
    let status =
        |r: Result<WriteRequest, ReceiveError>| r.map(|_| 0).unwrap_or_else(|e| e.status());
    assert_eq!(status(decode(&b, &tight(b.len() - 1, 1 << 20, 10))), 413);
    assert_eq!(status(decode(&b, &tight(1 << 20, 4, 10))), 413);
    assert_eq!(status(decode(&b, &tight(1 << 20, 1 << 20, 2))), 413);
    assert_eq!(status(decode(&b, &tight(1 << 20, 1 << 20, 3))), 0);
    // A header announcing 4 GiB is refused before any allocation.
    let bomb = [0xff, 0xff, 0xff, 0xff, 0x0f, 0x00];
    assert_eq!(status(decode(&bomb, &ReceiveLimits::default())), 413);
    // 4 GiB and more is past what the snappy format holds: over the limit as well.
    for bomb in [
        &[0x80, 0x80, 0x80, 0x80, 0x10, 0x00][..],
        &[0xff, 0xff, 0xff, 0xff, 0x1f, 0x00][..],
    ] {
        let e = decode(bomb, &ReceiveLimits::default()).expect_err("refused");
        assert_eq!(e.status(), 413, "{e}");
        assert!(e.to_string().contains("over the limit"), "{e}");
    }
    assert_eq!(
        status(decode(b"not snappy", &ReceiveLimits::default())),
        400
    );
    let junk = snap::raw::Encoder::new()
        .compress_vec(&[0xff; 16])
        .expect("snappy");
    assert_eq!(status(decode(&junk, &ReceiveLimits::default())), 400);

    assert!(check_headers(Some("application/x-protobuf"), Some("snappy")).is_ok());
    assert!(
        check_headers(
            Some("application/x-protobuf;proto=prometheus.WriteRequest"),
            None
        )
        .is_ok()
    );
    let v2 = check_headers(
        Some("application/x-protobuf;proto=io.prometheus.write.v2.Request"),
        Some("snappy"),
    );
    assert_eq!(v2.ok(), Some(Protocol::V2));
    let other = check_headers(Some("application/x-protobuf;proto=other.Request"), None);
    assert_eq!(other.map(|_| 0).unwrap_or_else(|e| e.status()), 415);
    let json = check_headers(Some("application/json"), None);
    assert_eq!(json.map(|_| 0).unwrap_or_else(|e| e.status()), 415);
    let none = check_headers(None, Some("snappy"));
    assert_eq!(none.map(|_| 0).unwrap_or_else(|e| e.status()), 415);
    let gzip = check_headers(Some("application/x-protobuf"), Some("gzip"));
    assert_eq!(gzip.map(|_| 0).unwrap_or_else(|e| e.status()), 415);
}

#[test]
fn native_histograms_are_refused_clearly() {
    let storage = MemStorage::new();
    let mut ts = series(&[("__name__", "h")], &[]);
    ts.histograms.push(vec![0x08, 0x01]);
    let req = WriteRequest {
        timeseries: vec![ts],
        metadata: Vec::new(),
    };
    let e = receive(
        storage.appender().as_mut(),
        Protocol::V1,
        &body(&req),
        &ReceiveLimits::default(),
        &SeriesCache::default(),
    )
    .expect_err("refused");
    assert_eq!(e.status(), 400);
    assert!(e.to_string().contains("native histograms"), "{e}");
}

fn v2_body(req: &v2::Request) -> Vec<u8> {
    snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .expect("snappy")
}

fn v2_series(refs: &[u32], samples: &[(i64, f64)]) -> v2::TimeSeries {
    v2::TimeSeries {
        labels_refs: refs.to_vec(),
        samples: samples
            .iter()
            .map(|&(timestamp, value)| v2::Sample {
                value,
                timestamp,
                start_timestamp: 0,
            })
            .collect(),
        histograms: Vec::new(),
        exemplars: Vec::new(),
        metadata: Some(v2::Metadata {
            r#type: 2,
            help_ref: 4,
            unit_ref: 0,
        }),
    }
}

#[test]
fn remote_write_2_uses_the_symbol_table() {
    let symbols: Vec<String> = [
        "",
        "__name__",
        "gpu_util",
        "gpu",
        "GPU utilisation",
        "0",
        "1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let storage = MemStorage::new();
    let req = v2::Request {
        symbols: symbols.clone(),
        timeseries: vec![
            v2_series(&[1, 2, 3, 5], &[(1000, 0.5)]),
            v2_series(&[1, 2, 3, 6], &[(1000, 0.9), (2000, 0.8)]),
        ],
    };
    let stats = receive(
        storage.appender().as_mut(),
        Protocol::V2,
        &v2_body(&req),
        &ReceiveLimits::default(),
        &SeriesCache::default(),
    )
    .expect("stored");
    assert_eq!((stats.series, stats.samples), (2, 3));
    assert_eq!(
        stored(&storage),
        vec![
            (
                "{__name__=\"gpu_util\", gpu=\"0\"}".to_string(),
                vec![(1000, 0.5)]
            ),
            (
                "{__name__=\"gpu_util\", gpu=\"1\"}".to_string(),
                vec![(1000, 0.9), (2000, 0.8)]
            ),
        ]
    );
    // Broken tables: 400 and nothing stored.
    let cases = [
        (
            symbols.clone(),
            vec![v2_series(&[1, 2, 3, 99], &[(3000, 1.0)])],
            "outside the table",
        ),
        (
            symbols.clone(),
            vec![v2_series(&[1, 2, 3], &[(3000, 1.0)])],
            "pairs",
        ),
        (
            ["x", "__name__", "m"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            vec![v2_series(&[1, 2], &[(3000, 1.0)])],
            "first symbol",
        ),
        (
            symbols.clone(),
            vec![v2_series(&[3, 5], &[(3000, 1.0)])],
            "no metric name",
        ),
    ];
    for (symbols, timeseries, want) in cases {
        let storage = MemStorage::new();
        let req = v2::Request {
            symbols,
            timeseries,
        };
        let e = receive(
            storage.appender().as_mut(),
            Protocol::V2,
            &v2_body(&req),
            &ReceiveLimits::default(),
            &SeriesCache::default(),
        )
        .expect_err("refused");
        assert_eq!(e.status(), 400, "{e}");
        assert!(e.to_string().contains(want), "{want}: {e}");
        assert!(stored(&storage).is_empty());
    }
}

/// A storage that hands out references as the TSDB does: a ref per label set, usable
/// with empty labels until [`forget`](RefStorage::forget) makes them stale (garbage
/// collection). Counts the appends that came by reference alone.
#[derive(Default)]
struct RefStorage {
    inner: MemStorage,
    refs: parking_lot::Mutex<(u64, std::collections::HashMap<u64, Labels>)>,
    by_ref_alone: std::sync::atomic::AtomicUsize,
}

impl RefStorage {
    fn forget(&self) {
        self.refs.lock().1.clear();
    }
}

struct RefAppender<'s> {
    storage: &'s RefStorage,
    inner: Box<dyn Appender + 's>,
}

impl Appender for RefAppender<'_> {
    fn append(
        &mut self,
        series_ref: SeriesRef,
        labels: &Labels,
        t: kiln_model::Timestamp,
        v: SampleValue,
    ) -> Result<SeriesRef, StorageError> {
        let mut refs = self.storage.refs.lock();
        let labels = if labels.is_empty() {
            let Some(known) = refs.1.get(&series_ref) else {
                return Err(StorageError::UnknownSeriesRef { series_ref });
            };
            self.storage
                .by_ref_alone
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            known.clone()
        } else {
            labels.clone()
        };
        let existing = refs.1.iter().find(|(_, l)| **l == labels).map(|(r, _)| *r);
        let r = existing.unwrap_or_else(|| {
            refs.0 += 1;
            let r = refs.0;
            refs.1.insert(r, labels.clone());
            r
        });
        drop(refs);
        self.inner.append(0, &labels, t, v)?;
        Ok(r)
    }

    fn commit(&mut self) -> Result<(), StorageError> {
        self.inner.commit()
    }

    fn rollback(&mut self) -> Result<(), StorageError> {
        self.inner.rollback()
    }
}

impl Appendable for RefStorage {
    fn appender(&self) -> Box<dyn Appender + '_> {
        Box::new(RefAppender {
            storage: self,
            inner: self.inner.appender(),
        })
    }
}

#[test]
fn known_series_come_from_the_cache_and_bad_ones_never_enter_it() {
    let storage = RefStorage::default();
    let cache = SeriesCache::new(1000);
    let send = |t: i64, labels: &[(&str, &str)]| {
        let req = WriteRequest {
            timeseries: vec![series(labels, &[(t, t as f64), (t + 1, t as f64)])],
            metadata: Vec::new(),
        };
        receive(
            storage.appender().as_mut(),
            Protocol::V1,
            &body(&req),
            &ReceiveLimits::default(),
            &cache,
        )
    };
    let by_ref_alone = || {
        storage
            .by_ref_alone
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    let gpu = [("__name__", "gpu_util"), ("gpu", "0")];
    send(1000, &gpu).expect("first");
    assert_eq!((cache.len(), by_ref_alone()), (1, 0));
    send(2000, &gpu).expect("second, from the cache");
    send(3000, &gpu).expect("third");
    assert_eq!((cache.len(), by_ref_alone()), (1, 4));
    // The storage dropped the series (a stale ref): the labels come from the request
    // again, nothing is lost, and the new ref is cached.
    storage.forget();
    let stats = send(4000, &gpu).expect("after the ref went stale");
    assert_eq!((stats.series, stats.samples), (1, 2));
    send(5000, &gpu).expect("the new ref");
    assert_eq!((cache.len(), by_ref_alone()), (1, 6));
    assert_eq!(
        stored(&storage.inner),
        vec![(
            r#"{__name__="gpu_util", gpu="0"}"#.to_owned(),
            [1000, 2000, 3000, 4000, 5000]
                .iter()
                .flat_map(|&t| [(t, t as f64), (t + 1, t as f64)])
                .collect()
        )]
    );
    // A sample the storage refuses on the cached path is refused as it would be
    // uncached, naming the series.
    let e = send(500, &gpu).expect_err("out of order");
    assert_eq!(e.status(), 400);
    assert!(e.to_string().contains("gpu_util"), "{e}");
    // A refused series is not cached: it is refused again next time.
    for _ in 0..2 {
        let e = send(4000, &[("gpu", "0")]).expect_err("no metric name");
        assert_eq!(e.status(), 400);
    }
    assert_eq!(cache.len(), 1);
    // A storage that hands out no references (0) leaves the cache empty.
    let plain = MemStorage::new();
    let fresh = SeriesCache::new(1000);
    let req = WriteRequest {
        timeseries: vec![series(&gpu, &[(1000, 1.0)])],
        metadata: Vec::new(),
    };
    for _ in 0..2 {
        receive(
            plain.appender().as_mut(),
            Protocol::V1,
            &body(&req),
            &ReceiveLimits::default(),
            &fresh,
        )
        .expect("stored");
    }
    assert!(fresh.is_empty());
    // A full cache starts over rather than growing.
    let small = SeriesCache::new(16);
    for i in 0..100 {
        small.put(SeriesCache::key(format!("series {i}").as_bytes()), i);
    }
    assert!(small.len() <= 16 * 2, "{}", small.len());
}

/// A body of one protocol under the other's content type is refused with the reason,
/// never decoded as an empty request of the announced one.
#[test]
fn a_body_of_the_other_protocol_is_400() {
    let check = |protocol: Protocol, body: &[u8], want: &str| {
        let storage = MemStorage::new();
        let e = receive(
            storage.appender().as_mut(),
            protocol,
            body,
            &ReceiveLimits::default(),
            &SeriesCache::default(),
        )
        .expect_err("refused");
        assert_eq!(e.status(), 400, "{e}");
        assert!(e.to_string().contains(want), "{e}");
        assert!(stored(&storage).is_empty());
    };
    let v1 = body(&WriteRequest {
        timeseries: vec![series(&[("__name__", "up")], &[(1000, 1.0)])],
        metadata: Vec::new(),
    });
    check(
        Protocol::V2,
        &v1,
        "not a remote write 2.0 io.prometheus.write.v2.Request message: it holds field 1 of remote write 1.0",
    );
    let v2 = v2_body(&v2::Request {
        symbols: vec![String::new(), "__name__".into(), "up".into()],
        timeseries: vec![v2_series(&[1, 2], &[(1000, 1.0)])],
    });
    check(
        Protocol::V1,
        &v2,
        "not a remote write 1.0 prometheus.WriteRequest message: it holds field 4 of remote write 2.0",
    );
}
