//! Block markers, as Thanos writes them next to a block in the bucket:
//! `deletion-mark.json` (the compactor deletes the block after its delete delay),
//! `no-compact-mark.json` and `no-downsample-mark.json` (the compactor leaves the block
//! out of compaction or downsampling), each with the time it was set, a reason and
//! details.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use ulid::Ulid;

use crate::bucket::{Bucket, BucketError};

/// The three kinds of marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkerKind {
    Deletion,
    NoCompact,
    NoDownsample,
}

impl MarkerKind {
    pub const ALL: [MarkerKind; 3] = [
        MarkerKind::Deletion,
        MarkerKind::NoCompact,
        MarkerKind::NoDownsample,
    ];

    /// The marker's file name in the block's directory.
    pub fn file_name(self) -> &'static str {
        match self {
            MarkerKind::Deletion => "deletion-mark.json",
            MarkerKind::NoCompact => "no-compact-mark.json",
            MarkerKind::NoDownsample => "no-downsample-mark.json",
        }
    }

    /// The kind a file name names.
    pub fn from_file_name(name: &str) -> Option<MarkerKind> {
        MarkerKind::ALL.into_iter().find(|k| k.file_name() == name)
    }
}

/// A marker's contents; the time field is named after the kind (`deletion_time`,
/// `no_compact_time`, `no_downsample_time`), and deletion marks have no reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marker {
    pub id: String,
    pub version: u32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub details: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_time: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_compact_time: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_downsample_time: Option<i64>,
    /// `manual` for a marker a person set; Thanos's compactor writes others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Marker {
    /// A marker of `kind` for block `id`, set at `unix_seconds`.
    pub fn new(kind: MarkerKind, id: Ulid, details: &str, unix_seconds: i64) -> Marker {
        let mut m = Marker {
            id: id.to_string(),
            version: 1,
            details: details.to_owned(),
            deletion_time: None,
            no_compact_time: None,
            no_downsample_time: None,
            reason: Some("manual".to_owned()),
        };
        match kind {
            MarkerKind::Deletion => {
                m.deletion_time = Some(unix_seconds);
                m.reason = None;
            }
            MarkerKind::NoCompact => m.no_compact_time = Some(unix_seconds),
            MarkerKind::NoDownsample => m.no_downsample_time = Some(unix_seconds),
        }
        m
    }
}

/// Why a marker could not be set or removed.
#[derive(Debug, thiserror::Error)]
pub enum MarkError {
    #[error("block {0} is not in the bucket (no meta.json)")]
    NoSuchBlock(Ulid),
    #[error(transparent)]
    Bucket(#[from] BucketError),
}

/// What [`mark`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marked {
    Set,
    /// The block had the marker already; it was left as it was.
    AlreadyThere,
}

/// Sets a `kind` marker on block `id` with `details`, as a person does (`reason`
/// `manual` on the markers that carry one).
pub async fn mark(
    bucket: &Bucket,
    id: Ulid,
    kind: MarkerKind,
    details: &str,
) -> Result<Marked, MarkError> {
    mark_because(bucket, id, kind, details, "manual").await
}

/// [`mark`] with the `reason` a program gives (the compactor's are Thanos's kind of
/// short names, e.g. `compaction-failed`). Deletion marks carry no reason.
pub async fn mark_because(
    bucket: &Bucket,
    id: Ulid,
    kind: MarkerKind,
    details: &str,
    reason: &str,
) -> Result<Marked, MarkError> {
    if !bucket.exists(&format!("{id}/meta.json")).await? {
        return Err(MarkError::NoSuchBlock(id));
    }
    let key = format!("{id}/{}", kind.file_name());
    if bucket.exists(&key).await? {
        return Ok(Marked::AlreadyThere);
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let mut marker = Marker::new(kind, id, details, now);
    if marker.reason.is_some() {
        marker.reason = Some(reason.to_owned());
    }
    // A struct of strings and numbers always serializes.
    let body = serde_json::to_vec(&marker).unwrap_or_default();
    bucket.upload(&key, Bytes::from(body)).await?;
    Ok(Marked::Set)
}

/// Removes a `kind` marker from block `id`; returns whether there was one.
pub async fn unmark(bucket: &Bucket, id: Ulid, kind: MarkerKind) -> Result<bool, MarkError> {
    let key = format!("{id}/{}", kind.file_name());
    if !bucket.exists(&key).await? {
        return Ok(false);
    }
    bucket.delete(&key).await?;
    Ok(true)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn markers_as_thanos_writes_them() {
        let id = Ulid::from_string("01DN3SK96XDAEKRB1AN30AAW6E").unwrap();
        let d =
            serde_json::to_value(Marker::new(MarkerKind::Deletion, id, "", 1_700_000_000)).unwrap();
        assert_eq!(
            d,
            serde_json::json!({"id": "01DN3SK96XDAEKRB1AN30AAW6E", "version": 1, "deletion_time": 1_700_000_000})
        );
        let n = serde_json::to_value(Marker::new(MarkerKind::NoCompact, id, "broken index", 5))
            .unwrap();
        assert_eq!(
            n,
            serde_json::json!({"id": "01DN3SK96XDAEKRB1AN30AAW6E", "version": 1, "details": "broken index", "no_compact_time": 5, "reason": "manual"})
        );
        assert_eq!(
            MarkerKind::from_file_name("no-downsample-mark.json"),
            Some(MarkerKind::NoDownsample)
        );
    }

    #[test]
    fn mark_and_unmark() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let bucket = Bucket::in_memory("m");
        let id = Ulid::new();
        rt.block_on(async {
            assert!(matches!(
                mark(&bucket, id, MarkerKind::Deletion, "").await,
                Err(MarkError::NoSuchBlock(_))
            ));
            bucket
                .upload(&format!("{id}/meta.json"), Bytes::from_static(b"{}"))
                .await
                .unwrap();
            assert_eq!(
                mark(&bucket, id, MarkerKind::NoCompact, "x").await.unwrap(),
                Marked::Set
            );
            assert_eq!(
                mark(&bucket, id, MarkerKind::NoCompact, "y").await.unwrap(),
                Marked::AlreadyThere
            );
            let raw = bucket
                .get(&format!("{id}/no-compact-mark.json"))
                .await
                .unwrap();
            let m: Marker = serde_json::from_slice(&raw).unwrap();
            assert_eq!(
                (m.details.as_str(), m.reason.as_deref()),
                ("x", Some("manual"))
            );
            assert!(unmark(&bucket, id, MarkerKind::NoCompact).await.unwrap());
            assert!(!unmark(&bucket, id, MarkerKind::NoCompact).await.unwrap());
        });
    }
}
