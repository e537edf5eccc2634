//! The bucket store against the data it was made from: the same series and samples as
//! the local TSDB that wrote the blocks, through every kind of matcher, over a
//! directory bucket, memory and (interop) moto's S3 server; the filters of a sync; the
//! limits; bad bucket contents.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

#[path = "../../kiln-objstore/tests/common/mod.rs"]
mod common;

use bytes::Bytes;
use kiln_bucketstore::{BucketStore, Limits, StoreConfig, SyncOptions};
use kiln_model::{Labels, MatchType, Matcher};
use kiln_objstore::{Bucket, UploadOptions, upload_block};
use kiln_storage::{
    Appender, ChunkQueryable, DecodedChunks, Queryable, SampleValue, SelectHints, ValueKind,
};
use kiln_tsdb::db::{Db, DbOptions};

const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;
/// Samples are written from here on (ms).
const T0: i64 = 1_700_000_000_000 / (2 * HOUR) * (2 * HOUR);

/// Writes `hours` of one sample a minute for a few GPU and job series into `dir`,
/// compacted into 2h blocks, and returns the open database.
fn local_db(dir: &Path, hours: i64, seed: i64) -> Db {
    let db = Db::open(
        dir,
        DbOptions {
            chunk_range: 2 * HOUR,
            max_block_duration: 2 * HOUR,
            retention_time: None,
            ..DbOptions::default()
        },
    )
    .unwrap();
    let mut series: Vec<Labels> = (0..6)
        .map(|g| {
            Labels::from_pairs(&[
                ("__name__", "gpu_util"),
                ("gpu", &g.to_string()),
                ("node", if g < 3 { "a" } else { "b" }),
            ])
        })
        .collect();
    series.push(Labels::from_pairs(&[
        ("__name__", "up"),
        ("job", "trainer"),
    ]));
    // A series with a label the external labels override.
    series.push(Labels::from_pairs(&[
        ("__name__", "up"),
        ("job", "x"),
        ("cluster", "inner"),
    ]));
    for step in 0..hours * 60 {
        let mut app = db.appender();
        for (i, l) in series.iter().enumerate() {
            let v = ((step * 7 + i as i64 * 13 + seed) % 101) as f64 / 3.0;
            app.append(
                0,
                l,
                T0 + step * MIN + i as i64 * 1000,
                SampleValue::Float(v),
            )
            .unwrap();
        }
        app.commit().unwrap();
    }
    db.compact().unwrap();
    db.flush_head().unwrap();
    db
}

/// Uploads every block of `db` with external labels `labels`.
async fn upload_all(bucket: &Bucket, db: &Db, labels: &[(&str, &str)]) {
    let opts = UploadOptions {
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        source: "sidecar".to_owned(),
        require_labels: true,
    };
    for b in db.blocks() {
        upload_block(bucket, b.dir(), &opts).await.unwrap();
    }
}

fn m(kind: MatchType, name: &str, value: &str) -> Matcher {
    Matcher::new(kind, name, value).unwrap()
}

type Answer = Vec<(Labels, Vec<(i64, f64)>)>;

/// Every series and sample a selection gives, through the samples contract.
fn read_all(q: &dyn Queryable, mint: i64, maxt: i64, matchers: &[Matcher]) -> Answer {
    let querier = q.querier(mint, maxt).unwrap();
    let mut set = querier.select(true, None, matchers);
    let mut out = Vec::new();
    while let Some(s) = set.next() {
        let mut it = s.iterator();
        let mut samples = Vec::new();
        while it.next() == ValueKind::Float {
            samples.push(it.at());
        }
        assert!(it.err().is_none());
        out.push((s.labels().clone(), samples));
    }
    assert!(set.err().is_none(), "{:?}", set.err());
    out
}

/// The local answer as the store gives it: external labels set.
fn with_external(answer: Answer, ext: &[(&str, &str)]) -> Answer {
    let mut out: Answer = answer
        .into_iter()
        .map(|(l, s)| {
            let mut b = l.to_builder();
            for (k, v) in ext {
                b.set(k, v);
            }
            (b.build(), s)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn store_config() -> StoreConfig {
    StoreConfig {
        sync: SyncOptions::default(),
        index_cache_bytes: 1 << 20,
        limits: Limits::default(),
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The whole comparison over one bucket.
fn serves_what_the_tsdb_wrote(bucket: Bucket) {
    let rt = runtime();
    let tmp = tempfile::tempdir().unwrap();
    let eu = local_db(&tmp.path().join("eu"), 7, 0);
    let us = local_db(&tmp.path().join("us"), 5, 50);
    let eu_ext = [("cluster", "eu-1"), ("replica", "0")];
    let us_ext = [("cluster", "us-1"), ("replica", "0")];
    rt.block_on(upload_all(&bucket, &eu, &eu_ext));
    rt.block_on(upload_all(&bucket, &us, &us_ext));

    let data = tmp.path().join("store");
    let store = BucketStore::new(bucket.clone(), &data, store_config(), rt.handle().clone());
    let report = rt.block_on(store.sync(now_ms())).unwrap();
    let n_blocks = eu.blocks().len() + us.blocks().len();
    assert_eq!(report.loaded, n_blocks);
    assert_eq!(report.added, n_blocks);
    assert_eq!(
        store.label_sets(),
        vec![Labels::from_pairs(&eu_ext), Labels::from_pairs(&us_ext)]
    );
    let (min, max) = store.time_range().unwrap();
    assert_eq!(min, T0);
    assert!(max >= T0 + 7 * HOUR - MIN);
    // Nothing is read of a block before a query needs it.
    assert!(store.blocks().iter().all(|b| !b.header_loaded()));
    assert!(
        !data
            .join(store.blocks()[0].id().to_string())
            .join("index-header")
            .exists()
    );

    let bucket_view = DecodedChunks(&store);
    let cases: Vec<Vec<Matcher>> = vec![
        vec![m(MatchType::Equal, "__name__", "gpu_util")],
        vec![m(MatchType::Regex, "gpu", "1|4|9")],
        vec![
            m(MatchType::Regex, "gpu", "[0-2]"),
            m(MatchType::NotEqual, "node", "b"),
        ],
        vec![
            m(MatchType::Equal, "__name__", "gpu_util"),
            m(MatchType::NotRegex, "gpu", "0|5"),
        ],
        vec![m(MatchType::Regex, "job", ".+")],
        vec![
            m(MatchType::Equal, "__name__", "up"),
            m(MatchType::Equal, "missing", ""),
        ],
        vec![m(MatchType::Equal, "__name__", "nope")],
    ];
    // Off-grid ranges: inside one block, across block boundaries, all of it.
    let ranges = [
        (T0 + 37 * MIN + 500, T0 + 95 * MIN),
        (T0 + HOUR + 1, T0 + 5 * HOUR + 30 * MIN + 7),
        (T0 - HOUR, T0 + 10 * HOUR),
    ];
    for matchers in &cases {
        for &(mint, maxt) in &ranges {
            let mut want = with_external(read_all(&eu, mint, maxt, matchers), &eu_ext);
            want.extend(with_external(read_all(&us, mint, maxt, matchers), &us_ext));
            want.sort_by(|a, b| a.0.cmp(&b.0));
            let got = read_all(&bucket_view, mint, maxt, matchers);
            assert_eq!(got, want, "{matchers:?} over [{mint}, {maxt}]");
        }
    }
    // Matchers on external labels pick blocks; an external label wins over a stored one.
    let eu_only = vec![
        m(MatchType::Equal, "cluster", "eu-1"),
        m(MatchType::Equal, "__name__", "up"),
    ];
    let got = read_all(&bucket_view, T0, T0 + 10 * HOUR, &eu_only);
    assert_eq!(got.len(), 2);
    assert!(got.iter().all(|(l, _)| l.get("cluster") == Some("eu-1")));
    let none = vec![
        m(MatchType::Equal, "cluster", "ap-1"),
        m(MatchType::Equal, "__name__", "up"),
    ];
    assert!(read_all(&bucket_view, T0, T0 + 10 * HOUR, &none).is_empty());

    // Labels.
    let q = store.chunk_querier(T0, T0 + 10 * HOUR).unwrap();
    let (names, _) = q.label_names(&[]).unwrap();
    assert_eq!(
        names,
        ["__name__", "cluster", "gpu", "job", "node", "replica"]
    );
    let (values, _) = q.label_values("cluster", &[]).unwrap();
    assert_eq!(
        values,
        ["eu-1", "us-1"],
        "the blocks' labels hide the stored `inner`"
    );
    let (values, _) = q
        .label_values("gpu", &[m(MatchType::Equal, "node", "b")])
        .unwrap();
    assert_eq!(values, ["3", "4", "5"]);
    let (values, _) = q
        .label_values("cluster", &[m(MatchType::Equal, "job", "x")])
        .unwrap();
    assert_eq!(values, ["eu-1", "us-1"]);
    let (names, _) = q
        .label_names(&[m(MatchType::Equal, "job", "trainer")])
        .unwrap();
    assert_eq!(names, ["__name__", "cluster", "job", "replica"]);

    // Labels only: no chunk.
    let hints = SelectHints {
        func: Some("series".to_owned()),
        ..SelectHints::default()
    };
    let mut set = q.select_chunks(true, Some(&hints), &[m(MatchType::Equal, "__name__", "up")]);
    let mut n = 0;
    while let Some(s) = set.next() {
        assert!(s.chunks.is_empty());
        n += 1;
    }
    assert_eq!(n, 4);
    drop(set);
    drop(q);

    // Index-headers were built on use and are reused by a new store over the same data
    // directory (as after a restart): no block's header is read from the bucket again.
    let header = data
        .join(store.blocks()[0].id().to_string())
        .join("index-header");
    assert!(header.exists());
    let written = std::fs::metadata(&header).unwrap().modified().unwrap();
    let restarted = BucketStore::new(bucket.clone(), &data, store_config(), rt.handle().clone());
    rt.block_on(restarted.sync(now_ms())).unwrap();
    let again = read_all(&DecodedChunks(&restarted), T0, T0 + 10 * HOUR, &cases[0]);
    assert_eq!(again.len(), 12);
    assert_eq!(
        std::fs::metadata(&header).unwrap().modified().unwrap(),
        written
    );

    // Limits: series and samples.
    // The error a selection of every gpu_util series gets under `limits`.
    let limited_error = |limits: Limits| {
        let limited = BucketStore::new(
            bucket.clone(),
            &data,
            StoreConfig {
                limits,
                ..store_config()
            },
            rt.handle().clone(),
        );
        rt.block_on(limited.sync(now_ms())).unwrap();
        let q = limited.chunk_querier(T0, T0 + 10 * HOUR).unwrap();
        let mut set = q.select_chunks(true, None, &cases[0]);
        while set.next().is_some() {}
        set.err().unwrap().to_string()
    };
    let err = limited_error(Limits {
        series: 5,
        samples: 0,
    });
    assert!(err.contains("series limit of 5 exceeded"), "{err}");
    let err = limited_error(Limits {
        series: 0,
        samples: 1000,
    });
    assert!(err.contains("samples limit of 1000 exceeded"), "{err}");

    let mut metrics = Vec::new();
    store.write_metrics(&mut metrics);
    let text = String::from_utf8(metrics).unwrap();
    assert!(
        text.contains(&format!("thanos_bucket_store_blocks_loaded {n_blocks}")),
        "{text}"
    );
    assert!(text.contains("thanos_store_index_cache_hits_total{item_type=\"Postings\"}"));
    eu.close().unwrap();
    us.close().unwrap();
}

#[test]
fn serves_a_directory_bucket() {
    let dir = tempfile::tempdir().unwrap();
    let config = kiln_objstore::parse(&format!(
        "type: FILESYSTEM\nconfig:\n  directory: {}\nprefix: lts\n",
        dir.path().display()
    ))
    .unwrap();
    serves_what_the_tsdb_wrote(Bucket::from_config(&config).unwrap());
}

#[test]
fn serves_memory() {
    serves_what_the_tsdb_wrote(Bucket::in_memory("mem"));
}

#[test]
#[cfg_attr(
    not(kiln_interop),
    ignore = "interop: needs KILN_INTEROP=1 and Python's moto server (scripts/test installs it)"
)]
fn serves_s3_against_moto() {
    let (_moto, bucket) = common::moto_bucket("kiln-store", "");
    serves_what_the_tsdb_wrote(bucket);
}

/// The sync's filters and what it does with bad bucket contents.
#[test]
fn sync_filters_and_bad_blocks() {
    let rt = runtime();
    let tmp = tempfile::tempdir().unwrap();
    let bucket = Bucket::in_memory("filters");
    let db = local_db(&tmp.path().join("db"), 7, 0);
    rt.block_on(upload_all(&bucket, &db, &[("cluster", "eu-1")]));
    let ids: Vec<_> = db.blocks().iter().map(|b| b.meta().ulid).collect();
    let n = ids.len();
    assert!(n >= 3);
    let data = tmp.path().join("store");
    let sync = |opts: SyncOptions, now: i64| {
        let store = BucketStore::new(
            bucket.clone(),
            &data,
            StoreConfig {
                sync: opts,
                ..store_config()
            },
            rt.handle().clone(),
        );
        let report = rt.block_on(store.sync(now)).unwrap();
        (store, report)
    };
    let (_, all) = sync(SyncOptions::default(), now_ms());
    assert_eq!(all.loaded, n);

    // Time range.
    let (_, r) = sync(
        SyncOptions {
            min_time: T0 + 4 * HOUR,
            ..SyncOptions::default()
        },
        now_ms(),
    );
    assert!(r.loaded < n && r.loaded > 0, "{r:?}");
    assert_eq!(r.filtered.get("time"), Some(&(n - r.loaded)));

    // Relabelling of external labels.
    let drop_eu = kiln_config::parse_relabel_configs(
        "- action: drop\n  source_labels: [cluster]\n  regex: eu-.*\n",
        "sel.yml",
    )
    .unwrap();
    let (_, r) = sync(
        SyncOptions {
            relabel: drop_eu,
            ..SyncOptions::default()
        },
        now_ms(),
    );
    assert_eq!((r.loaded, r.filtered.get("relabel")), (0, Some(&n)));

    // Consistency delay: the blocks were just made (their ULIDs are young).
    let (_, r) = sync(
        SyncOptions {
            consistency_delay: Duration::from_secs(3600),
            ..SyncOptions::default()
        },
        now_ms(),
    );
    assert_eq!(r.loaded, 0, "{r:?}");
    let (_, r) = sync(
        SyncOptions {
            consistency_delay: Duration::from_secs(3600),
            ..SyncOptions::default()
        },
        now_ms() + 2 * 3_600_000,
    );
    assert_eq!(r.loaded, n);

    // Deletion marks: served until the mark is older than the delay.
    let marked_at = now_ms() / 1000;
    rt.block_on(bucket.upload(
        &format!("{}/deletion-mark.json", ids[0]),
        Bytes::from(format!(
            "{{\"id\":\"{}\",\"version\":1,\"deletion_time\":{marked_at}}}",
            ids[0]
        )),
    ))
    .unwrap();
    let (_, r) = sync(SyncOptions::default(), now_ms());
    assert_eq!(r.loaded, n);
    let (store, r) = sync(SyncOptions::default(), now_ms() + 25 * 3_600_000);
    assert_eq!(
        (r.loaded, r.filtered.get("deletion-mark")),
        (n - 1, Some(&1))
    );
    assert!(store.blocks().iter().all(|b| b.id() != ids[0]));

    // A partial upload (no meta.json) is skipped; a bad meta.json is reported.
    let partial = ulid::Ulid::new();
    rt.block_on(bucket.upload(&format!("{partial}/index"), Bytes::from_static(b"x")))
        .unwrap();
    let bad = ulid::Ulid::new();
    rt.block_on(bucket.upload(
        &format!("{bad}/meta.json"),
        Bytes::from_static(b"{not json"),
    ))
    .unwrap();
    let (store, r) = sync(SyncOptions::default(), now_ms());
    assert_eq!(r.partial, 1);
    assert_eq!(r.corrupt.len(), 1);
    assert_eq!(r.corrupt[0].0, bad);
    assert_eq!(r.loaded, n);

    // A block whose index is garbage fails the queries that read it, with the block
    // named, and never panics; the other blocks still answer queries outside it.
    let victim = store.blocks()[1].clone();
    rt.block_on(bucket.upload(
        &format!("{}/index", victim.id()),
        Bytes::from(vec![0xAB; 4096]),
    ))
    .unwrap();
    let fresh = tmp.path().join("fresh");
    let store = BucketStore::new(bucket.clone(), &fresh, store_config(), rt.handle().clone());
    rt.block_on(store.sync(now_ms())).unwrap();
    let q = store
        .chunk_querier(victim.meta().min_time, victim.meta().max_time - 1)
        .unwrap();
    let mut set = q.select_chunks(true, None, &[m(MatchType::Equal, "__name__", "up")]);
    while set.next().is_some() {}
    let err = format!("{:?}", set.err().unwrap());
    assert!(err.contains(&victim.id().to_string()), "{err}");
    drop(set);
    drop(q);
    let first = &store.blocks()[0];
    let ok = read_all(
        &DecodedChunks(&store),
        first.meta().min_time,
        first.meta().min_time + HOUR,
        &[m(MatchType::Equal, "__name__", "up")],
    );
    assert_eq!(ok.len(), 2);

    // A truncated chunk file is an error too.
    let other = store.blocks()[2].clone();
    rt.block_on(bucket.upload(
        &format!("{}/chunks/000001", other.id()),
        Bytes::from_static(b"\x85\xbd\x40\xdd\x01\x00\x00\x00\x10"),
    ))
    .unwrap();
    let store = BucketStore::new(
        bucket.clone(),
        &tmp.path().join("fresh2"),
        store_config(),
        rt.handle().clone(),
    );
    rt.block_on(store.sync(now_ms())).unwrap();
    let q = store
        .chunk_querier(other.meta().min_time, other.meta().max_time - 1)
        .unwrap();
    let mut set = q.select_chunks(true, None, &[m(MatchType::Equal, "__name__", "up")]);
    while set.next().is_some() {}
    assert!(set.err().is_some());
    drop(set);
    drop(q);
    db.close().unwrap();
}

/// The series and samples a bucket serves are the union of its blocks': keys listed
/// here are exactly the blocks the store loaded.
#[test]
fn store_reads_little_of_the_bucket_at_start() {
    let rt = runtime();
    let tmp = tempfile::tempdir().unwrap();
    let bucket = Bucket::in_memory("start");
    let db = local_db(&tmp.path().join("db"), 9, 0);
    rt.block_on(upload_all(&bucket, &db, &[("cluster", "eu-1")]));
    let n = db.blocks().len() as u64;
    let before = BTreeMap::from([
        (
            "get",
            bucket.metrics().operations(kiln_objstore::Operation::Get),
        ),
        (
            "get_range",
            bucket
                .metrics()
                .operations(kiln_objstore::Operation::GetRange),
        ),
        (
            "iter",
            bucket.metrics().operations(kiln_objstore::Operation::Iter),
        ),
    ]);
    let data = tmp.path().join("store");
    let store = BucketStore::new(bucket.clone(), &data, store_config(), rt.handle().clone());
    rt.block_on(store.sync(now_ms())).unwrap();
    let ops = |op| bucket.metrics().operations(op);
    use kiln_objstore::Operation::{Get, GetRange, Iter};
    // One listing, one meta.json per block, nothing else.
    assert_eq!(ops(Iter) - before["iter"], 1);
    assert_eq!(ops(Get) - before["get"], n);
    assert_eq!(ops(GetRange) - before["get_range"], 0);
    // A second start over the same data directory reads no meta.json.
    let store = BucketStore::new(bucket.clone(), &data, store_config(), rt.handle().clone());
    rt.block_on(store.sync(now_ms())).unwrap();
    assert_eq!(ops(Get) - before["get"], n);
    assert_eq!(ops(Iter) - before["iter"], 2);
    db.close().unwrap();
}
