//! The compactor lock on a local directory (an operating-system file lock) and on a real
//! S3 API (conditional writes, against moto's server).

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use kiln_objstore::lock::{BucketLock, LOCK_OBJECT, LockError};
use kiln_objstore::{Bucket, parse};

#[test]
fn one_holder_at_a_time_on_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    let config = parse(&format!(
        "type: FILESYSTEM\nconfig:\n  directory: {}\n",
        dir.path().display()
    ))
    .unwrap();
    let bucket = Bucket::from_config(&config).unwrap();
    common::runtime().block_on(async {
        let mut first = BucketLock::acquire(&bucket, "compactor-a", Duration::from_secs(60))
            .await
            .unwrap();
        let err = BucketLock::acquire(&bucket, "compactor-b", Duration::from_secs(60))
            .await
            .err()
            .expect("held");
        match err {
            LockError::Held { owner, .. } => assert_eq!(owner, "compactor-a"),
            other => panic!("{other}"),
        }
        first.renew().await.unwrap();
        assert!(bucket.exists(LOCK_OBJECT).await.unwrap());
        first.release().await.unwrap();
        assert!(!bucket.exists(LOCK_OBJECT).await.unwrap());
        let second = BucketLock::acquire(&bucket, "compactor-b", Duration::from_secs(60))
            .await
            .unwrap();
        second.release().await.unwrap();
    });
}

#[test]
#[cfg_attr(
    not(kiln_interop),
    ignore = "interop: needs KILN_INTEROP=1 and Python's moto server (scripts/test installs it)"
)]
fn conditional_writes_on_s3_hold_renew_and_expire() {
    let (_moto, bucket) = common::moto_bucket("kiln-lock", "");
    common::runtime().block_on(async {
        let mut a = BucketLock::acquire(&bucket, "compactor-a", Duration::from_secs(60))
            .await
            .unwrap();
        let err = BucketLock::acquire(&bucket, "compactor-b", Duration::from_secs(60))
            .await
            .err()
            .expect("held");
        assert!(
            err.to_string()
                .starts_with("the bucket's compactor lock is held by compactor-a"),
            "{err}"
        );
        a.renew().await.unwrap();
        a.release().await.unwrap();

        // A lock left to expire is taken over, and its old holder learns it at renewal.
        let mut stale = BucketLock::acquire(&bucket, "compactor-c", Duration::from_millis(1))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        let d = BucketLock::acquire(&bucket, "compactor-d", Duration::from_secs(60))
            .await
            .unwrap();
        assert!(matches!(stale.renew().await, Err(LockError::Lost)));
        d.release().await.unwrap();
        assert!(!bucket.exists(LOCK_OBJECT).await.unwrap());
    });
}
