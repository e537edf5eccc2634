//! The shipper and block uploads: what lands in the bucket, what is recorded, what
//! happens after a restart or an interrupted upload.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;

mod common;

use bytes::Bytes;
use kiln_model::Labels;
use kiln_objstore::shipper::SHIPPER_FILE;
use kiln_objstore::{Bucket, Shipper, ThanosMeta, UploadError, UploadOptions, parse, upload_block};
use kiln_storage::{Appender, SampleValue};
use kiln_tsdb::block::BlockMeta;
use kiln_tsdb::db::{Db, DbOptions};

const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;

/// A data directory with level-1 blocks: 7 hours of one sample a minute for 3 series,
/// compacted without merging (as while shipping).
fn data_dir(dir: &Path) -> Vec<BlockMeta> {
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
    for step in 0..7 * 60 {
        let mut app = db.appender();
        for (g, l) in series.iter().enumerate() {
            app.append(
                0,
                l,
                step * MIN,
                SampleValue::Float((step + g as i64) as f64),
            )
            .unwrap();
        }
        app.commit().unwrap();
    }
    db.compact().unwrap();
    let metas: Vec<BlockMeta> = db.blocks().iter().map(|b| b.meta().clone()).collect();
    db.close().unwrap();
    assert!(metas.len() >= 2, "{metas:?}");
    metas
}

fn labels() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("cluster".to_owned(), "eu-1".to_owned()),
        ("replica".to_owned(), "0".to_owned()),
    ])
}

async fn ships_blocks_and_resumes(bucket: Bucket) {
    let tmp = tempfile::tempdir().unwrap();
    let blocks = data_dir(tmp.path());
    let shipper = Shipper::new(bucket.clone(), tmp.path(), labels(), false);
    assert!(blocks.iter().all(|b| shipper.is_pending(b)));

    let report = shipper.sync().await.unwrap();
    assert_eq!(report.uploaded, blocks.len());
    assert!(
        !blocks.iter().any(|b| shipper.is_pending(b)),
        "shipped blocks are no longer held from retention"
    );
    for local in &blocks {
        let id = local.ulid;
        let raw = bucket.get(&format!("{id}/meta.json")).await.unwrap();
        let remote = BlockMeta::from_json(&raw, Path::new("meta.json")).unwrap();
        assert_eq!(
            (remote.min_time, remote.max_time, remote.stats.num_samples),
            (local.min_time, local.max_time, local.stats.num_samples)
        );
        let thanos = ThanosMeta::of(&remote).unwrap();
        assert_eq!(thanos.labels, labels());
        assert_eq!(thanos.source, "sidecar");
        assert_eq!(thanos.version, 1);
        assert_eq!(thanos.downsample.resolution, 0);
        assert_eq!(thanos.segment_files, vec!["000001".to_owned()]);
        let paths: Vec<&str> = thanos.files.iter().map(|f| f.rel_path.as_str()).collect();
        assert_eq!(paths, ["chunks/000001", "index", "meta.json"]);
        let local_dir = tmp.path().join(id.to_string());
        for f in &thanos.files[..2] {
            let size = std::fs::metadata(local_dir.join(&f.rel_path))
                .unwrap()
                .len();
            assert_eq!(f.size_bytes as u64, size, "{}", f.rel_path);
            let object = bucket.get(&format!("{id}/{}", f.rel_path)).await.unwrap();
            assert_eq!(
                object.as_ref(),
                std::fs::read(local_dir.join(&f.rel_path)).unwrap()
            );
        }
        assert!(thanos.index_stats.series_max_size >= 16, "{thanos:?}");
        assert!(thanos.index_stats.chunk_max_size > 5, "{thanos:?}");
        assert!(
            thanos.upload_time.starts_with("20"),
            "{}",
            thanos.upload_time
        );
        // The local meta.json is left as it was.
        assert!(
            kiln_tsdb::block::meta::read_meta(&local_dir)
                .unwrap()
                .thanos
                .is_none()
        );
    }
    assert!(
        !tmp.path()
            .join("thanos/upload")
            .read_dir()
            .unwrap()
            .any(|_| true)
    );

    // Recorded: the next sync uploads nothing.
    let mut recorded = shipper.uploaded();
    recorded.sort();
    let mut want: Vec<_> = blocks.iter().map(|b| b.ulid).collect();
    want.sort();
    assert_eq!(recorded, want);
    assert_eq!(shipper.sync().await.unwrap().uploaded, 0);

    // A lost record costs existence checks only (a restarted server).
    std::fs::remove_file(tmp.path().join(SHIPPER_FILE)).unwrap();
    let restarted = Shipper::new(bucket.clone(), tmp.path(), labels(), false);
    let report = restarted.sync().await.unwrap();
    assert_eq!((report.uploaded, report.already_there), (0, blocks.len()));

    // An interrupted upload (files without meta.json) is not a block: it is uploaded
    // again whole.
    let first = blocks[0].ulid;
    bucket.delete(&format!("{first}/meta.json")).await.unwrap();
    bucket
        .upload(&format!("{first}/index"), Bytes::from_static(b"partial"))
        .await
        .unwrap();
    std::fs::remove_file(tmp.path().join(SHIPPER_FILE)).unwrap();
    let report = restarted.sync().await.unwrap();
    assert_eq!(report.uploaded, 1);
    let index = bucket.get(&format!("{first}/index")).await.unwrap();
    assert_eq!(
        index.as_ref(),
        std::fs::read(tmp.path().join(first.to_string()).join("index")).unwrap()
    );

    let mut text = Vec::new();
    restarted.metrics().write_metrics(&mut text);
    let text = String::from_utf8(text).unwrap();
    assert!(text.contains("thanos_shipper_uploads_total 1\n"), "{text}");
    assert!(
        text.contains("thanos_shipper_dir_syncs_total 2\n"),
        "{text}"
    );
}

#[test]
fn ships_to_a_directory_bucket() {
    let root = tempfile::tempdir().unwrap();
    let config = parse(&format!(
        "type: FILESYSTEM\nconfig:\n  directory: {}\n",
        root.path().display()
    ))
    .unwrap();
    common::runtime().block_on(ships_blocks_and_resumes(
        Bucket::from_config(&config).unwrap(),
    ));
}

#[test]
fn ships_to_memory() {
    common::runtime().block_on(ships_blocks_and_resumes(Bucket::in_memory("mem")));
}

#[test]
fn a_block_without_external_labels_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let blocks = data_dir(tmp.path());
    let bucket = Bucket::in_memory("mem");
    let opts = UploadOptions {
        labels: BTreeMap::new(),
        source: "bucket.upload".to_owned(),
        require_labels: true,
    };
    let dir = tmp.path().join(blocks[0].ulid.to_string());
    let err = common::runtime()
        .block_on(upload_block(&bucket, &dir, &opts))
        .unwrap_err();
    assert!(matches!(err, UploadError::NoExternalLabels(id) if id == blocks[0].ulid));
    assert!(
        common::runtime()
            .block_on(bucket.iter("", false))
            .unwrap()
            .is_empty(),
        "nothing uploaded"
    );
    let not_block = common::runtime()
        .block_on(upload_block(&bucket, tmp.path(), &opts))
        .unwrap_err();
    assert!(
        not_block.to_string().contains("is not a block directory"),
        "{not_block}"
    );
}

#[test]
#[cfg_attr(
    not(kiln_interop),
    ignore = "interop: needs KILN_INTEROP=1 and Python's moto server (scripts/test installs it)"
)]
fn ships_to_s3_against_moto() {
    let (_moto, bucket) = common::moto_bucket("kiln-ship", "prefix: eu-1\n");
    common::runtime().block_on(ships_blocks_and_resumes(bucket));
}

#[test]
fn a_failing_bucket_keeps_the_record_and_counts_the_failure() {
    let tmp = tempfile::tempdir().unwrap();
    let blocks = data_dir(tmp.path());
    // A record from before: the newest block is uploaded already.
    let newest = blocks.iter().max_by_key(|b| b.min_time).unwrap().ulid;
    std::fs::write(
        tmp.path().join(SHIPPER_FILE),
        format!("{{\"version\": 1, \"uploaded\": [\"{newest}\"]}}"),
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = parse(&format!(
        "type: S3\nconfig:\n  bucket: b\n  endpoint: 127.0.0.1:{port}\n  insecure: true\n  \
         access_key: a\n  secret_key: b\n  max_retries: 1\n"
    ))
    .unwrap();
    let shipper = Shipper::new(
        Bucket::from_config(&config).unwrap(),
        tmp.path(),
        labels(),
        false,
    );
    let err = common::runtime().block_on(shipper.sync()).unwrap_err();
    assert!(err.to_string().contains("checking whether block"), "{err}");
    assert_eq!(
        shipper.uploaded(),
        vec![newest],
        "the record keeps what it had"
    );
    let mut text = Vec::new();
    shipper.metrics().write_metrics(&mut text);
    let text = String::from_utf8(text).unwrap();
    assert!(
        text.contains("thanos_shipper_dir_sync_failures_total 1\n"),
        "{text}"
    );
}
