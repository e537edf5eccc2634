//! Rewriting a bucket block without some of its series or samples, as `thanos tools
//! bucket rewrite --rewrite.to-delete-config` does: the block is downloaded, the
//! deletions are applied by the TSDB (tombstones, then the block written again without
//! what they cover), and the new block is uploaded under a new ULID with the old one's
//! external labels and resolution, `source: bucket.rewrite` and a `rewrites` entry
//! naming what was deleted. The old block then gets a deletion mark (or is deleted at
//! once), so that it does not come back through a later merge.

use std::path::Path;

use kiln_model::Matcher;
use kiln_tsdb::block::BlockMeta;
use kiln_tsdb::block::meta::{read_meta, write_meta};
use kiln_tsdb::db::{Db, DbError, DbOptions};
use serde::{Deserialize, Serialize};
use ulid::Ulid;

use crate::bucket::{Bucket, BucketError};
use crate::markers::{MarkError, MarkerKind, mark};
use crate::thanos_meta::{ThanosMeta, source};
use crate::upload::{UploadError, UploadOptions, upload_block};

/// One entry of the deletion file, as Thanos's `DeletionRequest`: a series selector and
/// the time ranges to delete (all of it when none).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletionRequest {
    pub matchers: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub intervals: Vec<DeletionInterval>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub request_id: String,
}

/// A closed time range, ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletionInterval {
    pub mint: i64,
    pub maxt: i64,
}

/// What happens to the block rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OldBlock {
    /// Marked for deletion: the compactor deletes it after its delay.
    Mark,
    /// Deleted right away.
    Delete,
}

/// What a rewrite did (or, dry, would do).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RewriteReport {
    pub old: Ulid,
    /// The new block; `None` on a dry run, or when nothing was left to keep.
    pub new: Option<Ulid>,
    pub series_before: u64,
    pub series_after: u64,
    pub samples_before: u64,
    pub samples_after: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum RewriteError {
    #[error("block {0} is not in the bucket (no meta.json)")]
    NoSuchBlock(Ulid),
    #[error("deletion request {index}: {message}")]
    BadRequest { index: usize, message: String },
    #[error("writing {}", path.display())]
    Local {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("applying the deletions to block {block}")]
    Tsdb {
        block: Ulid,
        #[source]
        source: DbError,
    },
    #[error(transparent)]
    Bucket(#[from] BucketError),
    #[error(transparent)]
    Upload(#[from] UploadError),
    #[error(transparent)]
    Mark(#[from] MarkError),
}

/// A deletion request with its selector parsed.
type ParsedRequest = (Vec<Matcher>, Vec<DeletionInterval>);

/// Parses the requests' selectors.
fn parse_requests(requests: &[DeletionRequest]) -> Result<Vec<ParsedRequest>, RewriteError> {
    requests
        .iter()
        .enumerate()
        .map(|(index, r)| {
            let matchers =
                kiln_model::parse_selector(&r.matchers).map_err(|e| RewriteError::BadRequest {
                    index,
                    message: format!("matchers {:?}: {e}", r.matchers),
                })?;
            if let Some(bad) = r.intervals.iter().find(|i| i.mint > i.maxt) {
                return Err(RewriteError::BadRequest {
                    index,
                    message: format!(
                        "interval [{}, {}] ends before it starts",
                        bad.mint, bad.maxt
                    ),
                });
            }
            Ok((matchers, r.intervals.clone()))
        })
        .collect()
}

/// Rewrites block `id` without what `requests` delete, working in `work_dir` (which
/// must be empty or absent; it is left for the caller to remove). With `dry_run`, only
/// reports what would change.
pub async fn rewrite_block(
    bucket: &Bucket,
    id: Ulid,
    requests: &[DeletionRequest],
    work_dir: &Path,
    dry_run: bool,
    old_block: OldBlock,
) -> Result<RewriteReport, RewriteError> {
    let parsed = parse_requests(requests)?;
    if !bucket.exists(&format!("{id}/meta.json")).await? {
        return Err(RewriteError::NoSuchBlock(id));
    }
    // Download the block into a data directory of its own.
    let block_dir = crate::upload::download_block(bucket, id, work_dir)
        .await
        .map_err(|e| match e {
            crate::upload::DownloadError::Bucket(b) => RewriteError::Bucket(b),
            crate::upload::DownloadError::Local { path, source } => {
                RewriteError::Local { path, source }
            }
        })?;
    let old_meta = read_meta(&block_dir).map_err(|e| RewriteError::Tsdb {
        block: id,
        source: DbError::Block(e),
    })?;
    let tsdb_err = |source| RewriteError::Tsdb { block: id, source };
    let db = Db::open(
        work_dir,
        DbOptions {
            retention_time: None,
            max_block_duration: i64::MAX / 4,
            ..DbOptions::default()
        },
    )
    .map_err(tsdb_err)?;
    for (matchers, intervals) in &parsed {
        if intervals.is_empty() {
            db.delete(i64::MIN, i64::MAX, matchers).map_err(tsdb_err)?;
        }
        for i in intervals {
            db.delete(i.mint, i.maxt, matchers).map_err(tsdb_err)?;
        }
    }
    db.clean_tombstones().map_err(tsdb_err)?;
    let new_meta: Option<BlockMeta> = db.blocks().first().map(|b| b.meta().clone());
    db.close().map_err(tsdb_err)?;
    let mut report = RewriteReport {
        old: id,
        new: None,
        series_before: old_meta.stats.num_series,
        series_after: new_meta.as_ref().map_or(0, |m| m.stats.num_series),
        samples_before: old_meta.stats.num_samples,
        samples_after: new_meta.as_ref().map_or(0, |m| m.stats.num_samples),
    };
    let unchanged = new_meta.as_ref().is_some_and(|m| m.ulid == id);
    if dry_run || unchanged {
        return Ok(report);
    }
    if let Some(meta) = new_meta {
        let new_dir = work_dir.join(meta.ulid.to_string());
        let mut thanos = ThanosMeta::of(&old_meta).unwrap_or_default();
        let mut rewrites = match thanos.rewrites.take() {
            Some(serde_json::Value::Array(v)) => v,
            _ => Vec::new(),
        };
        rewrites.push(serde_json::json!({
            "sources": old_meta.compaction.sources.iter().map(Ulid::to_string).collect::<Vec<_>>(),
            "deletions_applied": requests,
        }));
        thanos.rewrites = Some(serde_json::Value::Array(rewrites));
        let mut local = meta.clone();
        local.thanos = Some(thanos.to_value());
        write_meta(&new_dir, &local).map_err(|e| RewriteError::Tsdb {
            block: meta.ulid,
            source: DbError::Block(e),
        })?;
        let opts = UploadOptions {
            labels: thanos.labels.clone(),
            source: source::BUCKET_REWRITE.to_owned(),
            require_labels: false,
        };
        upload_block(bucket, &new_dir, &opts).await?;
        report.new = Some(meta.ulid);
    }
    match old_block {
        OldBlock::Mark => {
            let details = match report.new {
                Some(new) => format!("rewritten as {new}"),
                None => "every sample deleted by a rewrite".to_owned(),
            };
            mark(bucket, id, MarkerKind::Deletion, &details).await?;
        }
        OldBlock::Delete => {
            // meta.json first: without it the rest is no longer a block.
            bucket.delete(&format!("{id}/meta.json")).await?;
            for (name, _) in bucket.list_sizes(&id.to_string()).await? {
                bucket.delete(&name).await?;
            }
        }
    }
    Ok(report)
}
