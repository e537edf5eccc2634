//! [`Bucket`]: the object store as Thanos's components use it: objects by name
//! (`<block ULID>/meta.json`), directory-style listing, whole and ranged reads, uploads
//! that are never visible half-written, and every operation counted in the bucket's
//! metrics.

use std::ops::Range;
use std::path::Path as FsPath;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures_util::TryStreamExt;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{
    Attributes, ObjectStore, ObjectStoreExt, PutMode, PutMultipartOptions, PutOptions, PutPayload,
    UpdateVersion,
};
use tokio::io::AsyncReadExt;

use crate::config::BucketConfig;
use crate::metrics::{BucketMetrics, Operation, Outcome};
use crate::provider::{BuildError, build};

/// An object store bucket (under the configuration's prefix). Cheap to clone: clones
/// share the client and the metrics.
#[derive(Clone)]
pub struct Bucket {
    store: Arc<dyn ObjectStore>,
    name: Arc<str>,
    metrics: Arc<BucketMetrics>,
    put_attributes: Attributes,
    part_size: Option<usize>,
    /// The directory holding the objects, for a FILESYSTEM bucket (prefix included).
    local_dir: Option<std::path::PathBuf>,
}

/// The version of an object a conditional update expects (its ETag and version id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version(UpdateVersion);

/// What [`Bucket::attributes`] tells about an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectAttributes {
    pub size: u64,
    /// Last modification, Unix milliseconds.
    pub last_modified_ms: i64,
}

/// A failed bucket operation: what was done, on which object, and the store's error.
#[derive(Debug, thiserror::Error)]
#[error("bucket {bucket}: {} {key}", op.name())]
pub struct BucketError {
    pub bucket: String,
    pub op: Operation,
    pub key: String,
    #[source]
    pub source: BucketErrorSource,
}

/// The cause of a [`BucketError`].
#[derive(Debug, thiserror::Error)]
pub enum BucketErrorSource {
    /// Boxed: the store's error is large, and errors travel up through several layers.
    #[error(transparent)]
    Store(Box<object_store::Error>),
    #[error("reading the local file")]
    LocalFile(#[from] std::io::Error),
}

impl From<object_store::Error> for BucketErrorSource {
    fn from(e: object_store::Error) -> Self {
        BucketErrorSource::Store(Box::new(e))
    }
}

impl BucketError {
    /// Whether the object does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(&self.source, BucketErrorSource::Store(e) if matches!(**e, object_store::Error::NotFound { .. }))
    }
}

impl Bucket {
    /// The bucket a configuration describes. Builds the client only: nothing is asked of
    /// the store until the first operation.
    pub fn from_config(config: &BucketConfig) -> Result<Bucket, BuildError> {
        let built = build(config)?;
        let store: Arc<dyn ObjectStore> = if config.prefix.is_empty() {
            built.store
        } else {
            Arc::new(PrefixStore::new(built.store, config.prefix.as_str()))
        };
        let local_dir = match &config.provider {
            crate::config::Provider::Filesystem(c) => {
                Some(std::path::Path::new(&c.directory).join(&config.prefix))
            }
            _ => None,
        };
        Ok(Bucket {
            store,
            metrics: Arc::new(BucketMetrics::new(&built.name)),
            name: built.name.into(),
            put_attributes: built.put_attributes,
            part_size: built.part_size,
            local_dir,
        })
    }

    /// An empty bucket in memory, for tests.
    pub fn in_memory(name: &str) -> Bucket {
        Bucket {
            store: Arc::new(InMemory::new()),
            name: name.into(),
            metrics: Arc::new(BucketMetrics::new(name)),
            put_attributes: Attributes::new(),
            part_size: Some(5 << 20),
            local_dir: None,
        }
    }

    /// The local directory holding the objects of a FILESYSTEM bucket.
    pub fn local_dir(&self) -> Option<&std::path::Path> {
        self.local_dir.as_deref()
    }

    /// The bucket's name (bucket, container or directory), as its metrics label it.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn metrics(&self) -> &BucketMetrics {
        &self.metrics
    }

    /// Runs one operation on `key`, counting it.
    async fn counted<T>(
        &self,
        op: Operation,
        key: &str,
        f: impl Future<Output = Result<T, BucketErrorSource>>,
    ) -> Result<T, BucketError> {
        let start = Instant::now();
        let result = f.await;
        let seconds = start.elapsed().as_secs_f64();
        match result {
            Ok(v) => {
                self.metrics.record(op, seconds, Outcome::Succeeded);
                Ok(v)
            }
            Err(source) => {
                let e = BucketError {
                    bucket: self.name.to_string(),
                    op,
                    key: key.to_owned(),
                    source,
                };
                let expected = e.is_not_found()
                    && matches!(
                        op,
                        Operation::Get
                            | Operation::GetRange
                            | Operation::Exists
                            | Operation::Attributes
                    );
                let outcome = if expected {
                    Outcome::Expected
                } else {
                    Outcome::Failed
                };
                self.metrics.record(op, seconds, outcome);
                Err(e)
            }
        }
    }

    /// The whole object.
    pub async fn get(&self, key: &str) -> Result<Bytes, BucketError> {
        let path = Path::from(key);
        self.counted(Operation::Get, key, async {
            Ok(self.store.get(&path).await?.bytes().await?)
        })
        .await
    }

    /// Bytes `range` of the object (the range is clipped to the object's end by the
    /// store; a range starting past the end is an error).
    pub async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, BucketError> {
        let path = Path::from(key);
        self.counted(Operation::GetRange, key, async {
            Ok(self.store.get_range(&path, range).await?)
        })
        .await
    }

    /// Whether the object exists.
    pub async fn exists(&self, key: &str) -> Result<bool, BucketError> {
        match self.attributes_op(Operation::Exists, key).await {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The object's size and modification time.
    pub async fn attributes(&self, key: &str) -> Result<ObjectAttributes, BucketError> {
        self.attributes_op(Operation::Attributes, key).await
    }

    async fn attributes_op(
        &self,
        op: Operation,
        key: &str,
    ) -> Result<ObjectAttributes, BucketError> {
        let path = Path::from(key);
        self.counted(op, key, async {
            let meta = self.store.head(&path).await?;
            Ok(ObjectAttributes {
                size: meta.size,
                last_modified_ms: meta.last_modified.timestamp_millis(),
            })
        })
        .await
    }

    /// Writes `data` as the object `key`, replacing it. Readers see the old object or
    /// the new one, never a part.
    pub async fn upload(&self, key: &str, data: Bytes) -> Result<(), BucketError> {
        let path = Path::from(key);
        self.counted(Operation::Upload, key, async {
            let opts = PutOptions {
                attributes: self.put_attributes.clone(),
                ..PutOptions::default()
            };
            self.store
                .put_opts(&path, PutPayload::from_bytes(data), opts)
                .await?;
            Ok(())
        })
        .await
    }

    /// Uploads the local file `file` as the object `key` and returns its size. A file
    /// larger than the part size goes up in parts, one part in memory at a time; the
    /// object appears only when every part is in (an interrupted upload leaves no
    /// object, and the store discards its parts).
    pub async fn upload_file(&self, key: &str, file: &FsPath) -> Result<u64, BucketError> {
        let path = Path::from(key);
        self.counted(Operation::Upload, key, async {
            let mut f = tokio::fs::File::open(file).await?;
            let size = f.metadata().await?.len();
            let part_size = match self.part_size {
                Some(p) if size > p as u64 => p,
                _ => {
                    let mut data = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
                    f.read_to_end(&mut data).await?;
                    let opts = PutOptions {
                        attributes: self.put_attributes.clone(),
                        ..PutOptions::default()
                    };
                    self.store
                        .put_opts(&path, PutPayload::from(data), opts)
                        .await?;
                    return Ok(size);
                }
            };
            let opts = PutMultipartOptions {
                attributes: self.put_attributes.clone(),
                ..PutMultipartOptions::default()
            };
            let mut upload = self.store.put_multipart_opts(&path, opts).await?;
            let sent: Result<(), BucketErrorSource> = async {
                loop {
                    let mut part = Vec::with_capacity(part_size);
                    (&mut f)
                        .take(part_size as u64)
                        .read_to_end(&mut part)
                        .await?;
                    if part.is_empty() {
                        break;
                    }
                    upload.put_part(PutPayload::from(part)).await?;
                }
                upload.complete().await?;
                Ok(())
            }
            .await;
            if let Err(e) = sent {
                // Best effort: the store also expires abandoned uploads itself.
                let _ = upload.abort().await;
                return Err(e);
            }
            Ok(size)
        })
        .await
    }

    /// Writes `data` as `key` only if no object has that name; `Ok(None)` when one has.
    /// Returns the new object's version (for [`update`](Self::update)).
    pub async fn create(&self, key: &str, data: Bytes) -> Result<Option<Version>, BucketError> {
        self.put_if(key, data, PutMode::Create).await
    }

    /// Replaces `key` with `data` only if it is still at `version`; `Ok(None)` when it
    /// changed since. Returns the new version. Stores without conditional updates (a
    /// local directory) refuse with an error.
    pub async fn update(
        &self,
        key: &str,
        data: Bytes,
        version: &Version,
    ) -> Result<Option<Version>, BucketError> {
        self.put_if(key, data, PutMode::Update(version.0.clone()))
            .await
    }

    /// A conditional write: `Ok(None)` when its condition does not hold.
    async fn put_if(
        &self,
        key: &str,
        data: Bytes,
        mode: PutMode,
    ) -> Result<Option<Version>, BucketError> {
        let path = Path::from(key);
        let opts = PutOptions {
            mode,
            attributes: self.put_attributes.clone(),
            ..PutOptions::default()
        };
        let put = self
            .store
            .put_opts(&path, PutPayload::from_bytes(data), opts);
        self.counted(Operation::Upload, key, async {
            match put.await {
                Ok(r) => Ok(Some(Version(UpdateVersion {
                    e_tag: r.e_tag,
                    version: r.version,
                }))),
                Err(
                    object_store::Error::AlreadyExists { .. }
                    | object_store::Error::Precondition { .. },
                ) => Ok(None),
                Err(e) => Err(e.into()),
            }
        })
        .await
    }

    /// The whole object and its version.
    pub async fn get_versioned(&self, key: &str) -> Result<(Bytes, Version), BucketError> {
        let path = Path::from(key);
        self.counted(Operation::Get, key, async {
            let r = self.store.get(&path).await?;
            let version = Version(UpdateVersion {
                e_tag: r.meta.e_tag.clone(),
                version: r.meta.version.clone(),
            });
            Ok((r.bytes().await?, version))
        })
        .await
    }

    /// Deletes the object. Deleting a missing object is an error, as in Thanos.
    pub async fn delete(&self, key: &str) -> Result<(), BucketError> {
        let path = Path::from(key);
        self.counted(Operation::Delete, key, async {
            // Some stores (S3) answer a delete of a missing key with success.
            self.store.head(&path).await?;
            self.store.delete(&path).await?;
            Ok(())
        })
        .await
    }

    /// Every object below directory `dir` with its size, sorted by name.
    pub async fn list_sizes(&self, dir: &str) -> Result<Vec<(String, u64)>, BucketError> {
        let dir = dir.trim_matches('/');
        let prefix = (!dir.is_empty()).then(|| Path::from(dir));
        self.counted(Operation::Iter, dir, async {
            let mut out = Vec::new();
            let mut stream = self.store.list(prefix.as_ref());
            while let Some(meta) = stream.try_next().await? {
                out.push((meta.location.to_string(), meta.size));
            }
            out.sort_unstable();
            Ok(out)
        })
        .await
    }

    /// The names under directory `dir` ("" for the root), as Thanos's `Iter` gives
    /// them: full names from the bucket's root, directories with a trailing `/`, sorted.
    /// With `recursive`, every object below `dir` instead (no directories).
    pub async fn iter(&self, dir: &str, recursive: bool) -> Result<Vec<String>, BucketError> {
        let dir = dir.trim_matches('/');
        let prefix = (!dir.is_empty()).then(|| Path::from(dir));
        self.counted(Operation::Iter, dir, async {
            let mut names = Vec::new();
            if recursive {
                let mut stream = self.store.list(prefix.as_ref());
                while let Some(meta) = stream.try_next().await? {
                    names.push(meta.location.to_string());
                }
            } else {
                let listed = self.store.list_with_delimiter(prefix.as_ref()).await?;
                names.extend(listed.common_prefixes.iter().map(|p| format!("{p}/")));
                names.extend(listed.objects.iter().map(|o| o.location.to_string()));
            }
            names.sort_unstable();
            Ok(names)
        })
        .await
    }
}
