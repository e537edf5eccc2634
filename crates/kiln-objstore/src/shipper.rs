//! The shipper: uploads a server's new blocks to the bucket, as Thanos's sidecar does.
//!
//! Each [`Shipper::sync`] looks at the data directory's blocks, oldest first, and uploads
//! every level-1 block (a block cut from the head) not uploaded yet, with the server's
//! external labels; with `upload_compacted`, compacted blocks too (how a Prometheus data
//! directory's history moves into a bucket). What has been uploaded is recorded in
//! `thanos.shipper.json` in the data directory, in Thanos's format, so a restarted
//! server (or a Thanos sidecar taking over the directory) goes on where it stopped; a
//! block already in the bucket (its `meta.json` exists) is recorded without uploading it
//! again, so a lost or damaged record only costs one existence check per block.
//!
//! A block is uploaded from hard links to its files under `thanos/upload/<ULID>` in the
//! data directory, so retention or compaction removing the block meanwhile does not cut
//! the upload short. Empty blocks are not uploaded.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use kiln_exposition::{MetricType, encode_text_header, encode_text_sample};
use kiln_model::Labels;
use kiln_tsdb::block::meta::read_meta;
use kiln_tsdb::block::{BlockError, BlockMeta};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};
use ulid::Ulid;

use crate::bucket::{Bucket, BucketError};
use crate::thanos_meta::source;
use crate::upload::{UploadError, UploadOptions, upload_block};

/// The record of uploaded blocks in the data directory.
pub const SHIPPER_FILE: &str = "thanos.shipper.json";

/// `thanos.shipper.json`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ShipperRecord {
    pub version: u32,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub uploaded: Vec<String>,
}

fn null_as_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(d)?.unwrap_or_default())
}

/// Why a sync did not finish.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("listing the data directory {}", path.display())]
    ListDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("checking whether block {block} is in the bucket")]
    Exists {
        block: Ulid,
        #[source]
        source: BucketError,
    },
    #[error("preparing the upload of block {block} in {}", path.display())]
    Prepare {
        block: Ulid,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Upload(#[from] UploadError),
    #[error("{0} block(s) in the data directory could not be read; see the log")]
    Unreadable(usize),
}

/// What one sync did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SyncReport {
    /// Blocks uploaded now.
    pub uploaded: usize,
    /// Blocks found in the bucket already (recorded without an upload).
    pub already_there: usize,
}

/// The shipper's counters, under Thanos's names.
#[derive(Debug, Default)]
pub struct ShipperMetrics {
    pub dir_syncs: AtomicU64,
    pub dir_sync_failures: AtomicU64,
    pub uploads: AtomicU64,
    pub upload_failures: AtomicU64,
    pub corrupted_blocks: AtomicU64,
    /// 1 once every compacted block was uploaded (with `upload_compacted`).
    pub upload_compacted_done: AtomicU64,
}

impl ShipperMetrics {
    /// Appends the metrics in the text exposition format.
    pub fn write_metrics(&self, out: &mut Vec<u8>) {
        let rows: [(&str, &str, MetricType, &AtomicU64); 6] = [
            (
                "thanos_shipper_dir_syncs_total",
                "Syncs of the data directory with the bucket.",
                MetricType::Counter,
                &self.dir_syncs,
            ),
            (
                "thanos_shipper_dir_sync_failures_total",
                "Syncs of the data directory that failed.",
                MetricType::Counter,
                &self.dir_sync_failures,
            ),
            (
                "thanos_shipper_uploads_total",
                "Blocks uploaded.",
                MetricType::Counter,
                &self.uploads,
            ),
            (
                "thanos_shipper_upload_failures_total",
                "Block uploads that failed.",
                MetricType::Counter,
                &self.upload_failures,
            ),
            (
                "thanos_shipper_corrupted_blocks_total",
                "Blocks of the data directory whose meta.json could not be read.",
                MetricType::Counter,
                &self.corrupted_blocks,
            ),
            (
                "thanos_shipper_upload_compacted_done",
                "1 once every compacted block of the data directory was uploaded.",
                MetricType::Gauge,
                &self.upload_compacted_done,
            ),
        ];
        for (name, help, kind, cell) in rows {
            encode_text_header(out, name, help, kind);
            let labels = Labels::from_pairs(&[("__name__", name)]);
            encode_text_sample(out, &labels, cell.load(Ordering::Relaxed) as f64, None);
        }
    }
}

/// Uploads a data directory's blocks to a bucket. See the module docs.
pub struct Shipper {
    bucket: Bucket,
    dir: PathBuf,
    labels: BTreeMap<String, String>,
    upload_compacted: bool,
    /// `thanos.source` of the blocks uploaded.
    source: &'static str,
    metrics: ShipperMetrics,
}

impl Shipper {
    /// A shipper of the blocks in `dir` labelled with `external_labels` (which must not be
    /// empty: the caller refuses to ship without them).
    pub fn new(
        bucket: Bucket,
        dir: impl Into<PathBuf>,
        external_labels: BTreeMap<String, String>,
        upload_compacted: bool,
    ) -> Shipper {
        Shipper {
            bucket,
            dir: dir.into(),
            labels: external_labels,
            upload_compacted,
            source: source::SIDECAR,
            metrics: ShipperMetrics::default(),
        }
    }

    /// Labels the uploaded blocks as coming from `source` instead of a sidecar
    /// ([`crate::thanos_meta::source`]).
    pub fn with_source(mut self, source: &'static str) -> Shipper {
        self.source = source;
        self
    }

    pub fn metrics(&self) -> &ShipperMetrics {
        &self.metrics
    }

    pub fn bucket(&self) -> &Bucket {
        &self.bucket
    }

    /// The blocks recorded as uploaded (empty when there is no record yet).
    pub fn uploaded(&self) -> Vec<Ulid> {
        read_record(&self.dir.join(SHIPPER_FILE))
            .uploaded
            .iter()
            .filter_map(|s| Ulid::from_string(s).ok())
            .collect()
    }

    /// Whether a local block is still to be uploaded: it has samples, the shipper ships
    /// its level, and the record does not list it. A server holds such blocks back from
    /// time retention (see `Db::hold_for_time_retention`).
    pub fn is_pending(&self, meta: &BlockMeta) -> bool {
        meta.stats.num_samples > 0
            && (meta.compaction.level <= 1 || self.upload_compacted)
            && !read_record(&self.dir.join(SHIPPER_FILE))
                .uploaded
                .contains(&meta.ulid.to_string())
    }

    /// One pass over the data directory. See the module docs. Calls must not overlap.
    pub async fn sync(&self) -> Result<SyncReport, SyncError> {
        let result = self.sync_once().await;
        let counter = if result.is_ok() {
            &self.metrics.dir_syncs
        } else {
            &self.metrics.dir_sync_failures
        };
        counter.fetch_add(1, Ordering::Relaxed);
        result
    }

    async fn sync_once(&self) -> Result<SyncReport, SyncError> {
        let record_path = self.dir.join(SHIPPER_FILE);
        let before = read_record(&record_path);
        let mut uploaded_now: Vec<String> = Vec::new();
        let mut report = SyncReport::default();
        let (metas, unreadable) = self.local_blocks()?;
        self.metrics
            .corrupted_blocks
            .fetch_add(unreadable as u64, Ordering::Relaxed);
        let mut result = Ok(());
        for meta in metas {
            let id = meta.ulid.to_string();
            if before.uploaded.contains(&id) {
                uploaded_now.push(id);
                continue;
            }
            // After a failure, blocks go up oldest first at the next sync: only the
            // record of those already uploaded is kept.
            if result.is_err() || meta.stats.num_samples == 0 {
                continue;
            }
            if meta.compaction.level > 1 && !self.upload_compacted {
                continue;
            }
            match self.bucket.exists(&format!("{id}/meta.json")).await {
                Ok(true) => {
                    report.already_there += 1;
                    uploaded_now.push(id);
                    continue;
                }
                Ok(false) => {}
                Err(source) => {
                    result = Err(SyncError::Exists {
                        block: meta.ulid,
                        source,
                    });
                    continue;
                }
            }
            match self.upload(&meta).await {
                Ok(()) => {
                    info!(block = %meta.ulid, bucket = self.bucket.name(), "uploaded block");
                    self.metrics.uploads.fetch_add(1, Ordering::Relaxed);
                    report.uploaded += 1;
                    uploaded_now.push(id);
                }
                Err(e) => {
                    self.metrics.upload_failures.fetch_add(1, Ordering::Relaxed);
                    result = Err(e);
                }
            }
        }
        // Blocks no longer in the directory drop out of the record, as with Thanos.
        let record = ShipperRecord {
            version: 1,
            uploaded: uploaded_now,
        };
        if record != before
            && let Err(e) = write_record(&self.dir, &record)
        {
            warn!(err = %e, path = %record_path.display(), "updating the shipper's record failed");
        }
        result?;
        if unreadable > 0 {
            return Err(SyncError::Unreadable(unreadable));
        }
        if self.upload_compacted {
            self.metrics
                .upload_compacted_done
                .store(1, Ordering::Relaxed);
        }
        Ok(report)
    }

    /// Uploads one block from hard links to its files (see the module docs).
    async fn upload(&self, meta: &BlockMeta) -> Result<(), SyncError> {
        let id = meta.ulid;
        let staging = self.dir.join("thanos").join("upload").join(id.to_string());
        let prepare = |source| SyncError::Prepare {
            block: id,
            path: staging.clone(),
            source,
        };
        if staging.exists() {
            std::fs::remove_dir_all(&staging).map_err(prepare)?;
        }
        link_block(&self.dir.join(id.to_string()), &staging).map_err(prepare)?;
        let opts = UploadOptions {
            labels: self.labels.clone(),
            source: self.source.to_owned(),
            require_labels: true,
        };
        let result = upload_block(&self.bucket, &staging, &opts).await;
        if let Err(e) = std::fs::remove_dir_all(&staging) {
            warn!(err = %e, path = %staging.display(), "removing the upload staging directory failed");
        }
        result?;
        Ok(())
    }

    /// The readable block metas of the data directory, oldest first, and how many block
    /// directories could not be read.
    fn local_blocks(&self) -> Result<(Vec<BlockMeta>, usize), SyncError> {
        let list_err = |source| SyncError::ListDir {
            path: self.dir.clone(),
            source,
        };
        let mut metas = Vec::new();
        let mut unreadable = 0;
        for entry in std::fs::read_dir(&self.dir).map_err(list_err)? {
            let entry = entry.map_err(list_err)?;
            let name = entry.file_name();
            let Some(id) = name.to_str().and_then(|n| Ulid::from_string(n).ok()) else {
                continue;
            };
            if !entry.path().is_dir() {
                continue;
            }
            match read_meta(&entry.path()) {
                Ok(m) => metas.push(m),
                // A block being written has no meta.json yet: not an error.
                Err(BlockError::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    warn!(block = %id, err = %e, "cannot read the block's meta.json; not shipping it");
                    unreadable += 1;
                }
            }
        }
        metas.sort_by_key(|m| (m.min_time, m.ulid));
        Ok((metas, unreadable))
    }
}

/// `<dir>/thanos.shipper.json`, or an empty record when it is missing or unreadable (it
/// only saves existence checks).
fn read_record(path: &Path) -> ShipperRecord {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            warn!(path = %path.display(), err = %e, "the shipper's record is unreadable; starting a new one");
            ShipperRecord::default()
        }),
        Err(_) => ShipperRecord::default(),
    }
}

/// Writes the record atomically (temporary file, fsync, rename).
fn write_record(dir: &Path, record: &ShipperRecord) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = dir.join(format!("{SHIPPER_FILE}.tmp"));
    let mut bytes = serde_json::to_vec_pretty(record).map_err(std::io::Error::other)?;
    bytes.push(b'\n');
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join(SHIPPER_FILE))
}

/// Hard-links a block's `chunks/*`, `index` and `meta.json` into `dst`.
fn link_block(src: &Path, dst: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dst.join("chunks"))?;
    for entry in std::fs::read_dir(src.join("chunks"))? {
        let entry = entry?;
        std::fs::hard_link(entry.path(), dst.join("chunks").join(entry.file_name()))?;
    }
    for name in ["index", "meta.json"] {
        std::fs::hard_link(src.join(name), dst.join(name))?;
    }
    Ok(())
}
