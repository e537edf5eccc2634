//! Uploading one TSDB block directory as Thanos lays blocks out in a bucket (and
//! [`download_block`], the way back):
//! `<ULID>/chunks/000001...`, `<ULID>/index`, then `<ULID>/meta.json` with its `thanos`
//! section.
//!
//! `meta.json` goes last: a block directory in the bucket without it is an upload in
//! progress (or an interrupted one) that every reader skips, so a block is never seen
//! half-written; the next upload of the same block writes every file again.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use kiln_tsdb::block::meta::{META_FILENAME, read_meta};
use kiln_tsdb::block::{BlockError, BlockMeta, BlockReader};
use ulid::Ulid;

use crate::bucket::{Bucket, BucketError};
use crate::thanos_meta::{BlockFile, IndexStats, THANOS_META_VERSION, ThanosMeta};

/// Why a block could not be uploaded.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("{} is not a block directory (its name is not a ULID)", .0.display())]
    NotABlockDir(PathBuf),
    #[error("reading the block {}", dir.display())]
    Block {
        dir: PathBuf,
        #[source]
        source: BlockError,
    },
    #[error("the thanos section of {}/meta.json", dir.display())]
    ThanosSection {
        dir: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("block {0} has no external labels: a block in a bucket needs them to say who made it")]
    NoExternalLabels(Ulid),
    #[error("listing {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("uploading block {block}")]
    Bucket {
        block: Ulid,
        #[source]
        source: BucketError,
    },
}

/// How a block is labelled in the bucket.
#[derive(Debug, Clone, Default)]
pub struct UploadOptions {
    /// External labels set on the block (added to those it has).
    pub labels: std::collections::BTreeMap<String, String>,
    /// `thanos.source` ([`crate::thanos_meta::source`]).
    pub source: String,
    /// Refuse a block that ends up without any external label (Thanos refuses those).
    pub require_labels: bool,
}

/// Uploads the block in `dir` (a directory named by the block's ULID) and returns the
/// `meta.json` written to the bucket.
pub async fn upload_block(
    bucket: &Bucket,
    dir: &Path,
    opts: &UploadOptions,
) -> Result<BlockMeta, UploadError> {
    let id = dir
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| Ulid::from_string(n).ok())
        .ok_or_else(|| UploadError::NotABlockDir(dir.to_path_buf()))?;
    let block_err = |source| UploadError::Block {
        dir: dir.to_path_buf(),
        source,
    };
    let mut meta = read_meta(dir).map_err(block_err)?;
    let mut thanos = ThanosMeta::of(&meta).map_err(|source| UploadError::ThanosSection {
        dir: dir.to_path_buf(),
        source,
    })?;
    thanos.labels.extend(opts.labels.clone());
    if opts.require_labels && thanos.labels.is_empty() {
        return Err(UploadError::NoExternalLabels(id));
    }
    thanos.version = THANOS_META_VERSION;
    thanos.source.clone_from(&opts.source);

    let chunk_files = chunk_files(dir)?;
    thanos.segment_files = chunk_files.iter().map(|(name, _)| name.clone()).collect();
    let index_size = file_size(&dir.join("index"))?;
    let mut files: Vec<BlockFile> = chunk_files
        .iter()
        .map(|(name, size)| BlockFile {
            rel_path: format!("chunks/{name}"),
            size_bytes: i64::try_from(*size).unwrap_or(i64::MAX),
            hash: None,
        })
        .collect();
    files.push(BlockFile {
        rel_path: "index".to_owned(),
        size_bytes: i64::try_from(index_size).unwrap_or(i64::MAX),
        hash: None,
    });
    files.push(BlockFile {
        rel_path: META_FILENAME.to_owned(),
        size_bytes: 0,
        hash: None,
    });
    files.sort_by(|a, b| a.rel_path.cmp(&b.rel_path));
    thanos.files = files;
    thanos.index_stats = index_stats(dir).map_err(block_err)?;

    let bucket_err = |source| UploadError::Bucket { block: id, source };
    for (name, _) in &chunk_files {
        let key = format!("{id}/chunks/{name}");
        bucket
            .upload_file(&key, &dir.join("chunks").join(name))
            .await
            .map_err(bucket_err)?;
    }
    bucket
        .upload_file(&format!("{id}/index"), &dir.join("index"))
        .await
        .map_err(bucket_err)?;
    thanos.upload_time = kiln_model::calendar::rfc3339_nanos_utc(now_nanos());
    meta.thanos = Some(thanos.to_value());
    bucket
        .upload(
            &format!("{id}/{META_FILENAME}"),
            Bytes::from(meta.to_json()),
        )
        .await
        .map_err(bucket_err)?;
    Ok(meta)
}

fn now_nanos() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i128::try_from(d.as_nanos()).unwrap_or(0))
}

fn file_size(path: &Path) -> Result<u64, UploadError> {
    std::fs::metadata(path)
        .map(|m| m.len())
        .map_err(|source| UploadError::Io {
            path: path.to_path_buf(),
            source,
        })
}

/// The files of `<dir>/chunks` with their sizes, sorted by name.
fn chunk_files(dir: &Path) -> Result<Vec<(String, u64)>, UploadError> {
    let chunks = dir.join("chunks");
    let io = |source| UploadError::Io {
        path: chunks.clone(),
        source,
    };
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&chunks).map_err(io)? {
        let entry = entry.map_err(io)?;
        let meta = entry.metadata().map_err(io)?;
        if !meta.is_file() {
            continue;
        }
        if let Some(name) = entry.file_name().to_str() {
            out.push((name.to_owned(), meta.len()));
        }
    }
    out.sort();
    Ok(out)
}

/// The largest series entry of the index and the largest chunk record, in bytes.
fn index_stats(dir: &Path) -> Result<IndexStats, BlockError> {
    let block = BlockReader::open(dir)?;
    let index = block.index();
    let chunks = block.chunks();
    let mut stats = IndexStats::default();
    let mut prev: Option<u32> = None;
    for id in index.all_postings()?.into_vec() {
        // Series entries are 16-byte aligned and their references are offsets / 16, so
        // an entry spans to the next one.
        if let Some(p) = prev {
            stats.series_max_size = stats.series_max_size.max(i64::from(id - p) * 16);
        }
        prev = Some(id);
        let (_, metas) = index.series(id)?;
        for m in metas {
            let (_, data) = chunks.chunk(m.chunk_ref)?;
            // A record: uvarint length, encoding byte, data, CRC32.
            let len = data.len() as u64;
            let varint = (64 - len.max(1).leading_zeros()).div_ceil(7);
            let record = i64::from(varint) + 1 + data.len() as i64 + 4;
            stats.chunk_max_size = stats.chunk_max_size.max(record);
        }
    }
    Ok(stats)
}

/// Why a block could not be downloaded.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error(transparent)]
    Bucket(#[from] BucketError),
    #[error("writing {}", path.display())]
    Local {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Downloads block `id` (every object under `<id>/` but its markers) into
/// `<parent>/<id>`, a block directory the TSDB opens; returns it. Objects are read in
/// ranges of [`DOWNLOAD_PIECE`] bytes, so memory stays bounded whatever their size.
pub async fn download_block(
    bucket: &Bucket,
    id: Ulid,
    parent: &Path,
) -> Result<PathBuf, DownloadError> {
    use std::io::Write;
    let block_dir = parent.join(id.to_string());
    let local = |path: &Path| {
        let path = path.to_path_buf();
        move |source| DownloadError::Local { path, source }
    };
    for (name, size) in bucket.list_sizes(&id.to_string()).await? {
        let Some(rel) = name.strip_prefix(&format!("{id}/")) else {
            continue;
        };
        if rel.ends_with("-mark.json") {
            continue;
        }
        let path = block_dir.join(rel);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(local(dir))?;
        }
        let mut file = std::fs::File::create(&path).map_err(local(&path))?;
        let mut at = 0;
        while at < size {
            let end = (at + DOWNLOAD_PIECE).min(size);
            let data = bucket.get_range(&name, at..end).await?;
            file.write_all(&data).map_err(local(&path))?;
            at = end;
        }
        file.sync_all().map_err(local(&path))?;
    }
    Ok(block_dir)
}

/// Bytes of an object read at once by [`download_block`].
pub const DOWNLOAD_PIECE: u64 = 16 << 20;
