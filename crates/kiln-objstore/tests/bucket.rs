//! One suite of bucket operations, run against every kind of store the tests can reach:
//! memory, a local directory (with a prefix), and a real S3 API (moto's server on
//! loopback, an interop test).

#![allow(clippy::unwrap_used)]

mod common;

use bytes::Bytes;
use common::{http, start_moto};
use kiln_objstore::{Bucket, Operation, parse};

/// A file of `len` bytes whose content depends on the position (parts that came back in
/// the wrong order would show).
fn patterned(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 4096) as u8).collect()
}

/// The operations Kiln's block shipper, store gateway and tools rely on.
async fn exercise(bucket: &Bucket, big_file_len: usize) {
    let block = "01HZZZZZZZZZZZZZZZZZZZZZZZ";
    assert!(
        bucket.iter("", false).await.unwrap().is_empty(),
        "starts empty"
    );

    let meta = Bytes::from_static(br#"{"ulid":"x","version":1}"#);
    bucket
        .upload(&format!("{block}/meta.json"), meta.clone())
        .await
        .unwrap();
    bucket
        .upload(
            &format!("{block}/chunks/000001"),
            Bytes::from_static(b"0123456789"),
        )
        .await
        .unwrap();
    bucket
        .upload("debug/metas/x.json", Bytes::from_static(b"{}"))
        .await
        .unwrap();

    assert_eq!(
        bucket.get(&format!("{block}/meta.json")).await.unwrap(),
        meta
    );
    assert_eq!(
        bucket
            .get_range(&format!("{block}/chunks/000001"), 2..5)
            .await
            .unwrap(),
        Bytes::from_static(b"234")
    );
    let attrs = bucket
        .attributes(&format!("{block}/chunks/000001"))
        .await
        .unwrap();
    assert_eq!(attrs.size, 10);
    assert!(attrs.last_modified_ms > 1_600_000_000_000, "{attrs:?}");
    assert!(bucket.exists(&format!("{block}/meta.json")).await.unwrap());
    assert!(!bucket.exists(&format!("{block}/index")).await.unwrap());

    // Thanos's Iter: directories with a trailing slash, full names, sorted.
    assert_eq!(
        bucket.iter("", false).await.unwrap(),
        vec![format!("{block}/"), "debug/".to_owned()]
    );
    assert_eq!(
        bucket.iter(block, false).await.unwrap(),
        vec![format!("{block}/chunks/"), format!("{block}/meta.json")]
    );
    assert_eq!(
        bucket.iter(&format!("{block}/"), true).await.unwrap(),
        vec![
            format!("{block}/chunks/000001"),
            format!("{block}/meta.json")
        ]
    );

    // A file larger than a part goes up in parts and comes back whole.
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("index");
    let content = patterned(big_file_len);
    std::fs::write(&local, &content).unwrap();
    let size = bucket
        .upload_file(&format!("{block}/index"), &local)
        .await
        .unwrap();
    assert_eq!(size, content.len() as u64);
    let back = bucket.get(&format!("{block}/index")).await.unwrap();
    assert!(
        back.as_ref() == content.as_slice(),
        "multipart upload changed the bytes"
    );
    let tail = bucket
        .get_range(
            &format!("{block}/index"),
            (big_file_len - 3) as u64..big_file_len as u64,
        )
        .await
        .unwrap();
    assert_eq!(tail.as_ref(), &content[big_file_len - 3..]);

    // Missing objects: an expected answer for reads, a failure for a delete.
    let failures_before = bucket.metrics().failures(Operation::Get);
    let missing = bucket.get(&format!("{block}/nope")).await.unwrap_err();
    assert!(missing.is_not_found(), "{missing}");
    assert_eq!(bucket.metrics().failures(Operation::Get), failures_before);
    assert!(bucket.delete(&format!("{block}/nope")).await.is_err());
    assert_eq!(bucket.metrics().failures(Operation::Delete), 1);

    bucket.delete(&format!("{block}/meta.json")).await.unwrap();
    assert!(!bucket.exists(&format!("{block}/meta.json")).await.unwrap());
    assert!(bucket.metrics().operations(Operation::Upload) >= 4);

    let mut text = Vec::new();
    bucket.metrics().write_metrics(&mut text);
    let text = String::from_utf8(text).unwrap();
    let line = format!(
        "thanos_objstore_bucket_operation_failures_total{{bucket=\"{}\",operation=\"delete\"}} 1\n",
        bucket.name()
    );
    assert!(text.contains(&line), "{text}");
    assert!(
        text.contains("thanos_objstore_bucket_operation_duration_seconds_bucket{"),
        "{text}"
    );
}

#[test]
fn in_memory_bucket() {
    common::runtime().block_on(exercise(&Bucket::in_memory("mem"), 11 << 20));
}

#[test]
fn filesystem_bucket_with_a_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("bucket");
    let config = parse(&format!(
        "type: FILESYSTEM\nconfig:\n  directory: {}\nprefix: tenant-a\n",
        root.display()
    ))
    .unwrap();
    let bucket = Bucket::from_config(&config).unwrap();
    common::runtime().block_on(exercise(&bucket, 3 << 20));
    // The objects live under the prefix, as files.
    let chunk = root.join("tenant-a/01HZZZZZZZZZZZZZZZZZZZZZZZ/chunks/000001");
    assert_eq!(std::fs::read(chunk).unwrap(), b"0123456789");
}

#[test]
#[cfg_attr(
    not(kiln_interop),
    ignore = "interop: needs KILN_INTEROP=1 and Python's moto server (scripts/test installs it)"
)]
fn s3_bucket_against_moto() {
    let moto = start_moto();
    let status = http(moto.port, "PUT", "/kiln-test").unwrap();
    assert!(status.contains(" 200"), "creating the bucket: {status}");
    // The file as a user writes it, credentials from the environment.
    let text = format!(
        "type: s3\nconfig:\n  bucket: kiln-test\n  endpoint: 127.0.0.1:{}\n  insecure: true\n  \
         access_key: $(KILN_TEST_KEY)\n  secret_key: ${{KILN_TEST_KEY}}\n  part_size: 5242880\n  \
         put_user_metadata:\n    X-Amz-Meta-Origin: kiln\nprefix: cluster-a\n",
        moto.port
    );
    let config = kiln_objstore::config::parse_with_env(&text, |v| {
        (v == "KILN_TEST_KEY").then(|| "testing".to_owned())
    })
    .unwrap();
    let bucket = Bucket::from_config(&config).unwrap();
    assert_eq!(bucket.name(), "kiln-test");
    // 11 MiB at 5 MiB a part: a three-part upload.
    common::runtime().block_on(exercise(&bucket, 11 << 20));
}

#[test]
#[cfg_attr(
    not(kiln_interop),
    ignore = "interop: needs KILN_INTEROP=1 and Python's moto server (scripts/test installs it)"
)]
fn s3_errors_name_the_bucket_and_the_object() {
    let moto = start_moto();
    let text = format!(
        "type: S3\nconfig:\n  bucket: no-such-bucket\n  endpoint: 127.0.0.1:{}\n  insecure: true\n  \
         access_key: a\n  secret_key: b\n  max_retries: 1\n",
        moto.port
    );
    let bucket = Bucket::from_config(&parse(&text).unwrap()).unwrap();
    let err = common::runtime()
        .block_on(bucket.upload("x/meta.json", Bytes::from_static(b"{}")))
        .unwrap_err();
    assert_eq!(err.to_string(), "bucket no-such-bucket: upload x/meta.json");
    // The chain carries the store's answer.
    let mut chain = String::new();
    let mut source = std::error::Error::source(&err);
    while let Some(s) = source {
        chain.push_str(&format!("{s}\n"));
        source = s.source();
    }
    assert!(chain.contains("NoSuchBucket"), "{chain}");
    assert_eq!(bucket.metrics().failures(Operation::Upload), 1);
}

/// A server that accepts connections and never answers: requests stall, time out, are
/// retried and fail within the configured bounds; no call hangs.
#[test]
fn a_stalled_or_absent_s3_endpoint_fails_in_bounded_time() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let held = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let keep = held.clone();
    std::thread::spawn(move || {
        for conn in silent.incoming().flatten() {
            keep.lock().unwrap().push(conn);
        }
    });
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    for (port, what) in [(silent_port, "stalled"), (closed_port, "refused")] {
        let text = format!(
            "type: S3\nconfig:\n  bucket: b\n  endpoint: 127.0.0.1:{port}\n  insecure: true\n  \
             access_key: a\n  secret_key: b\n  max_retries: 2\n  http_config:\n    \
             response_header_timeout: 500ms\n    tls_handshake_timeout: 500ms\n"
        );
        let bucket = Bucket::from_config(&parse(&text).unwrap()).unwrap();
        let started = std::time::Instant::now();
        let err = common::runtime()
            .block_on(bucket.get("x/meta.json"))
            .unwrap_err();
        let took = started.elapsed();
        assert!(!err.is_not_found(), "{what}: {err}");
        assert!(
            took < std::time::Duration::from_secs(15),
            "{what}: failing took {took:?}"
        );
        assert_eq!(bucket.metrics().failures(Operation::Get), 1, "{what}");
    }
    assert!(
        !held.lock().unwrap().is_empty(),
        "the silent server was reached"
    );
}
