//! The compactor over a bucket holding two replicas' worth of 2h blocks: groups,
//! Thanos's ranges, replica deduplication, downsampling, deletion, retention, an
//! interrupted step, a corrupt block; the data read back through the store gateway
//! equals what the TSDB wrote. Against memory, a directory and (interop) moto's S3.

#![allow(clippy::unwrap_used)]

use std::sync::atomic::AtomicBool;

#[path = "../../kiln-objstore/tests/common/mod.rs"]
mod common;

use bytes::Bytes;
use kiln_bucketstore::{BucketStore, Limits, StoreConfig, SyncOptions};
use kiln_compact::{Compactor, CompactorOptions, PassReport};
use kiln_model::{Labels, MatchType, Matcher};
use kiln_objstore::{Bucket, UploadOptions, list_blocks, upload_block};
use kiln_storage::{Appender, DecodedChunks, Queryable, SampleValue, ValueKind};
use kiln_tsdb::db::{Db, DbOptions};

const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;
/// Data starts on a 14-day boundary, so windows line up with the data.
const T0: i64 = 1_700_000_000_000 / (14 * 24 * HOUR) * (14 * 24 * HOUR);

/// `hours` of one sample a minute for 3 series, in 2h blocks.
fn replica_db(dir: &std::path::Path, hours: i64) -> Db {
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
    let series: Vec<Labels> = (0..3)
        .map(|g| Labels::from_pairs(&[("__name__", "gpu_util"), ("gpu", &g.to_string())]))
        .collect();
    for step in 0..hours * 60 {
        let mut app = db.appender();
        for (g, l) in series.iter().enumerate() {
            let v = ((step * 3 + g as i64 * 11) % 97) as f64;
            app.append(0, l, T0 + step * MIN, SampleValue::Float(v))
                .unwrap();
        }
        app.commit().unwrap();
    }
    db.compact().unwrap();
    db.flush_head().unwrap();
    db
}

async fn upload(bucket: &Bucket, db: &Db, replica: &str) {
    let opts = UploadOptions {
        labels: [("cluster", "eu-1"), ("replica", replica)]
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

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

type Answer = Vec<(Labels, Vec<(i64, f64)>)>;

fn read_all(q: &dyn Queryable, mint: i64, maxt: i64) -> Answer {
    let m = Matcher::new(MatchType::Equal, "__name__", "gpu_util").unwrap();
    let querier = q.querier(mint, maxt).unwrap();
    let mut set = querier.select(true, None, &[m]);
    let mut out = Vec::new();
    while let Some(s) = set.next() {
        let mut it = s.iterator();
        let mut samples = Vec::new();
        while it.next() == ValueKind::Float {
            samples.push(it.at());
        }
        out.push((s.labels().clone(), samples));
    }
    assert!(set.err().is_none(), "{:?}", set.err());
    out
}

/// What the bucket serves at raw resolution, through the store gateway.
fn served(rt: &tokio::runtime::Runtime, bucket: &Bucket, tmp: &std::path::Path) -> Answer {
    let dir = tempfile::tempdir_in(tmp).unwrap();
    let store = BucketStore::new(
        bucket.clone(),
        dir.path(),
        StoreConfig {
            sync: SyncOptions::default(),
            index_cache_bytes: 1 << 20,
            limits: Limits::default(),
        },
        rt.handle().clone(),
    );
    rt.block_on(store.sync(kiln_model::calendar::now_ms()))
        .unwrap();
    read_all(&DecodedChunks(&store), T0 - HOUR, T0 + 100 * HOUR)
}

fn options(data: &std::path::Path) -> CompactorOptions {
    CompactorOptions {
        data_dir: data.to_path_buf(),
        replica_labels: vec!["replica".to_owned()],
        delete_delay: 0,
        consistency_delay: 0,
        ..CompactorOptions::default()
    }
}

fn pass(rt: &tokio::runtime::Runtime, c: &Compactor) -> PassReport {
    let stop = AtomicBool::new(false);
    rt.block_on(c.run_once(kiln_model::calendar::now_ms(), &stop, &|_| {}))
        .unwrap()
}

fn compacts_dedups_and_downsamples(bucket: Bucket) {
    let rt = runtime();
    let tmp = tempfile::tempdir().unwrap();
    // 50 hours: the first 2d window (48h) fills and is passed by newer data.
    let r0 = replica_db(&tmp.path().join("r0"), 50);
    let r1 = replica_db(&tmp.path().join("r1"), 50);
    rt.block_on(upload(&bucket, &r0, "0"));
    rt.block_on(upload(&bucket, &r1, "1"));
    let uploaded = r0.blocks().len() * 2;
    assert_eq!(uploaded, 50);

    // The raw data, as one replica holds it, with the group's labels.
    let want: Answer = read_all(&r0, T0 - HOUR, T0 + 100 * HOUR)
        .into_iter()
        .map(|(l, s)| {
            let mut b = l.to_builder();
            b.set("cluster", "eu-1");
            (b.build(), s)
        })
        .collect();
    assert_eq!(want.len(), 3);

    let c = Compactor::new(bucket.clone(), options(&tmp.path().join("work")));
    let first = pass(&rt, &c);
    assert_eq!(first.groups, 1, "the replicas are one group: {first:?}");
    assert!(first.vertical_compactions >= 1, "{first:?}");
    assert!(first.marked_no_compact.is_empty(), "{first:?}");
    assert_eq!(first.downsampled.len(), 1, "{first:?}");
    assert!(first.deleted >= uploaded, "{first:?}");

    let catalog = rt.block_on(list_blocks(&bucket)).unwrap();
    let raw: Vec<_> = catalog
        .blocks
        .iter()
        .filter(|b| b.thanos.downsample.resolution == 0)
        .collect();
    // One 48h block and the last 2h block; replicas merged, the replica label gone.
    let spans: Vec<i64> = raw
        .iter()
        .map(|b| (b.meta.max_time - b.meta.min_time) / HOUR)
        .collect();
    assert!(spans.contains(&48), "{spans:?}");
    assert!(raw.iter().all(|b| !b.thanos.labels.contains_key("replica")));
    assert!(raw.iter().all(|b| b.thanos.source == "compactor"));
    let five: Vec<_> = catalog
        .blocks
        .iter()
        .filter(|b| b.thanos.downsample.resolution == 300_000)
        .collect();
    assert_eq!(five.len(), 1);
    assert!(catalog.partial.is_empty(), "deleted blocks are gone whole");

    // Every sample once, as one replica had it.
    assert_eq!(served(&rt, &bucket, tmp.path()), want);

    // Nothing left to do.
    let again = pass(&rt, &c);
    assert_eq!(
        (again.compactions, again.downsampled.len(), again.deleted),
        (0, 0, 0),
        "{again:?}"
    );

    // Retention of raw data: the blocks ending over 1h ago go (the 5m one stays).
    let keep_raw = Compactor::new(
        bucket.clone(),
        CompactorOptions {
            retention_raw: kiln_model::calendar::now_ms() - (T0 + 49 * HOUR),
            ..options(&tmp.path().join("work"))
        },
    );
    let r = pass(&rt, &keep_raw);
    assert_eq!(r.marked_for_deletion, 1, "{r:?}");
    let left = rt.block_on(list_blocks(&bucket)).unwrap();
    assert_eq!(left.blocks.len(), 2, "the last raw block and the 5m block");
    let mut metrics = Vec::new();
    c.metrics().write_metrics(&mut metrics);
    let text = String::from_utf8(metrics).unwrap();
    assert!(text.contains("thanos_compact_halted 0"), "{text}");
    assert!(text.contains("thanos_compact_iterations_total 2"), "{text}");
}

#[test]
fn compacts_memory() {
    compacts_dedups_and_downsamples(Bucket::in_memory("compact"));
}

#[test]
fn compacts_a_directory_bucket() {
    let dir = tempfile::tempdir().unwrap();
    let config = kiln_objstore::parse(&format!(
        "type: FILESYSTEM\nconfig:\n  directory: {}\n",
        dir.path().display()
    ))
    .unwrap();
    compacts_dedups_and_downsamples(Bucket::from_config(&config).unwrap());
}

#[test]
#[cfg_attr(
    not(kiln_interop),
    ignore = "interop: needs KILN_INTEROP=1 and Python's moto server (scripts/test installs it)"
)]
fn compacts_s3_against_moto() {
    let (_moto, bucket) = common::moto_bucket("kiln-compact", "");
    compacts_dedups_and_downsamples(bucket);
}

/// A step cut short after its upload (as by `kill -9`) leaves the sources beside the
/// result; the next pass deletes the sources instead of merging the data twice. A
/// block whose index is broken is marked no-compact and the rest goes on. An aborted
/// upload older than two days is cleaned up.
#[test]
fn interrupted_steps_and_bad_blocks() {
    let rt = runtime();
    let tmp = tempfile::tempdir().unwrap();
    let bucket = Bucket::in_memory("crash");
    let db = replica_db(&tmp.path().join("db"), 10);
    rt.block_on(upload(&bucket, &db, "0"));
    let blocks = db.blocks();
    assert_eq!(blocks.len(), 5);

    // The first 8h window merged and uploaded, its sources not yet marked.
    let out = tmp.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let first4: Vec<_> = blocks[..4].to_vec();
    let thanos = serde_json::json!({"version": 1, "labels": {"cluster": "eu-1", "replica": "0"},
        "downsample": {"resolution": 0}, "source": "compactor"});
    let new = kiln_compact::compact_blocks(&first4, &out, thanos)
        .unwrap()
        .unwrap();
    let opts = UploadOptions {
        labels: [
            ("cluster".to_owned(), "eu-1".to_owned()),
            ("replica".to_owned(), "0".to_owned()),
        ]
        .into_iter()
        .collect(),
        source: "compactor".to_owned(),
        require_labels: true,
    };
    rt.block_on(upload_block(&bucket, &out.join(new.to_string()), &opts))
        .unwrap();

    // An aborted upload from three days ago.
    let old = ulid::Ulid::from_parts((kiln_model::calendar::now_ms() - 3 * 24 * HOUR) as u64, 7);
    rt.block_on(bucket.upload(&format!("{old}/index"), Bytes::from_static(b"half")))
        .unwrap();

    let c = Compactor::new(
        bucket.clone(),
        CompactorOptions {
            replica_labels: Vec::new(),
            ..options(&tmp.path().join("work"))
        },
    );
    let r = pass(&rt, &c);
    assert_eq!(r.compactions, 0, "nothing to merge twice: {r:?}");
    // The 4 sources and the aborted upload.
    assert_eq!(r.marked_for_deletion, 5, "{r:?}");
    let catalog = rt.block_on(list_blocks(&bucket)).unwrap();
    assert_eq!(catalog.blocks.len(), 2);
    assert!(catalog.partial.is_empty());
    let want: Answer = read_all(&db, T0, T0 + 10 * HOUR)
        .into_iter()
        .map(|(l, s)| {
            let mut b = l.to_builder();
            b.set("cluster", "eu-1");
            b.set("replica", "0");
            (b.build(), s)
        })
        .collect();
    assert_eq!(served(&rt, &bucket, tmp.path()), want);

    // A broken index: marked no-compact with the reason; the pass completes.
    let more = replica_db(&tmp.path().join("more"), 20);
    let opts_more = UploadOptions {
        labels: [("cluster".to_owned(), "us-1".to_owned())]
            .into_iter()
            .collect(),
        source: "sidecar".to_owned(),
        require_labels: true,
    };
    for b in more.blocks() {
        rt.block_on(upload_block(&bucket, b.dir(), &opts_more))
            .unwrap();
    }
    let victim = more.blocks()[1].meta().ulid;
    rt.block_on(bucket.upload(&format!("{victim}/index"), Bytes::from(vec![0xAB; 2048])))
        .unwrap();
    let r = pass(&rt, &c);
    assert_eq!(r.marked_no_compact.len(), 1, "{r:?}");
    assert_eq!(r.marked_no_compact[0].0, victim);
    assert!(r.marked_no_compact[0].1.contains("does not read"), "{r:?}");
    assert!(
        r.compactions >= 1,
        "the other us-1 blocks still compact: {r:?}"
    );
    assert!(
        rt.block_on(bucket.exists(&format!("{victim}/no-compact-mark.json")))
            .unwrap()
    );
    more.close().unwrap();
    db.close().unwrap();
}
