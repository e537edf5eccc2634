//! The bucket's compactor lock: one compactor per bucket, as Thanos requires (Thanos
//! leaves it to the operator; Kiln makes a second compactor see the first).
//!
//! On an object store the lock is the object `kiln-compactor.lock`, created only if it
//! does not exist (a conditional write), holding its owner and an expiry. The holder
//! renews it before it expires (a conditional update on the version it wrote, so a lock
//! taken over meanwhile is noticed as lost); another compactor takes over a lock only
//! once it has expired, again with a conditional update, so two cannot both win. A
//! crashed holder's lock frees itself when it expires.
//!
//! A local directory has no conditional updates, so there the lock is an operating
//! system file lock on `.kiln-compactor.lock` in the directory: held while the process
//! lives (freed by a crash at once), and the lock object is written beside it for
//! anyone listing the bucket.

use std::time::Duration;

use bytes::Bytes;
use kiln_model::calendar::now_ms;
use serde::{Deserialize, Serialize};

use crate::bucket::{Bucket, BucketError, Version};

/// The lock object's name at the bucket's root.
pub const LOCK_OBJECT: &str = "kiln-compactor.lock";
/// The file locked in a local directory bucket.
const LOCK_FILE: &str = ".kiln-compactor.lock";

/// What the lock object holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockRecord {
    /// Who holds it (host and process, or what the caller says).
    pub owner: String,
    /// Unix ms.
    pub acquired_ms: i64,
    /// Unix ms after which another compactor may take the lock over.
    pub expires_ms: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("the bucket's compactor lock is held by {owner} until {expires}")]
    Held { owner: String, expires: String },
    #[error("the bucket's compactor lock was taken over by another compactor")]
    Lost,
    #[error("the lock object {LOCK_OBJECT} does not read: {0}")]
    Unreadable(String),
    #[error("the lock file {path}")]
    LocalFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Bucket(#[from] BucketError),
}

/// A held lock. Renew it before `ttl` passes; release it when done.
pub struct BucketLock {
    bucket: Bucket,
    owner: String,
    ttl: Duration,
    acquired_ms: i64,
    /// The version written last (object stores).
    version: Option<Version>,
    /// The locked file (local directories); the lock holds while it is open.
    file: Option<std::fs::File>,
}

fn record(owner: &str, acquired_ms: i64, ttl: Duration) -> Bytes {
    let now = now_ms();
    let r = LockRecord {
        owner: owner.to_owned(),
        acquired_ms,
        expires_ms: now.saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX)),
    };
    // A struct of strings and numbers always serializes.
    Bytes::from(serde_json::to_vec(&r).unwrap_or_default())
}

fn held_error(bytes: &[u8]) -> LockError {
    match serde_json::from_slice::<LockRecord>(bytes) {
        Ok(r) => LockError::Held {
            owner: r.owner,
            expires: kiln_model::calendar::rfc3339_nanos_utc(i128::from(r.expires_ms) * 1_000_000),
        },
        Err(e) => LockError::Unreadable(e.to_string()),
    }
}

impl BucketLock {
    /// Takes the bucket's lock for `owner`, valid for `ttl` unless renewed; fails with
    /// [`LockError::Held`] while another holder has it.
    pub async fn acquire(
        bucket: &Bucket,
        owner: &str,
        ttl: Duration,
    ) -> Result<BucketLock, LockError> {
        let acquired_ms = now_ms();
        let mut lock = BucketLock {
            bucket: bucket.clone(),
            owner: owner.to_owned(),
            ttl,
            acquired_ms,
            version: None,
            file: None,
        };
        if let Some(dir) = bucket.local_dir() {
            let path = dir.join(LOCK_FILE);
            let local = |source| LockError::LocalFile {
                path: path.display().to_string(),
                source,
            };
            std::fs::create_dir_all(dir).map_err(local)?;
            let file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .map_err(local)?;
            match file.try_lock() {
                Ok(()) => {}
                Err(std::fs::TryLockError::WouldBlock) => {
                    let current = bucket.get(LOCK_OBJECT).await.ok();
                    return Err(current.map_or(
                        LockError::Held {
                            owner: "another process".to_owned(),
                            expires: "it exits".to_owned(),
                        },
                        |b| held_error(&b),
                    ));
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(local(e)),
            }
            lock.file = Some(file);
            bucket
                .upload(LOCK_OBJECT, record(owner, acquired_ms, ttl))
                .await?;
            return Ok(lock);
        }
        if let Some(v) = bucket
            .create(LOCK_OBJECT, record(owner, acquired_ms, ttl))
            .await?
        {
            lock.version = Some(v);
            return Ok(lock);
        }
        let (bytes, version) = bucket.get_versioned(LOCK_OBJECT).await?;
        let current: LockRecord =
            serde_json::from_slice(&bytes).map_err(|e| LockError::Unreadable(e.to_string()))?;
        if current.expires_ms > now_ms() {
            return Err(held_error(&bytes));
        }
        // Expired: take it over, unless someone else does first.
        match bucket
            .update(LOCK_OBJECT, record(owner, acquired_ms, ttl), &version)
            .await?
        {
            Some(v) => {
                lock.version = Some(v);
                Ok(lock)
            }
            None => Err(LockError::Lost),
        }
    }

    /// Extends the lock by its ttl from now; [`LockError::Lost`] when another compactor
    /// took it over (the caller must stop).
    pub async fn renew(&mut self) -> Result<(), LockError> {
        let body = record(&self.owner, self.acquired_ms, self.ttl);
        if self.file.is_some() {
            self.bucket.upload(LOCK_OBJECT, body).await?;
            return Ok(());
        }
        let Some(version) = &self.version else {
            return Err(LockError::Lost);
        };
        match self.bucket.update(LOCK_OBJECT, body, version).await? {
            Some(v) => {
                self.version = Some(v);
                Ok(())
            }
            None => Err(LockError::Lost),
        }
    }

    /// Gives the lock back (deletes the lock object if it is still ours).
    pub async fn release(self) -> Result<(), LockError> {
        if self.file.is_none() {
            let (bytes, _) = self.bucket.get_versioned(LOCK_OBJECT).await?;
            let ours = serde_json::from_slice::<LockRecord>(&bytes)
                .is_ok_and(|r| r.owner == self.owner && r.acquired_ms == self.acquired_ms);
            if !ours {
                return Err(LockError::Lost);
            }
        }
        self.bucket.delete(LOCK_OBJECT).await?;
        // Dropping the file (local directories) unlocks it.
        Ok(())
    }
}
