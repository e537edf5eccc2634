//! The `thanos` section of a block's `meta.json`: who made the block (external labels,
//! source), at which resolution, and its files, as Thanos's `metadata.Thanos` holds it.
//!
//! Field names and what is written when empty follow Go's encoding of that struct:
//! `labels`, `downsample`, `source`, `index_stats` and `upload_time` are always written
//! (Go never omits a struct, and a zero time is `0001-01-01T00:00:00Z`); `version`,
//! `segment_files`, `files`, `rewrites` and `extensions` only when set. Sections Kiln
//! does not interpret (`rewrites`, `extensions`, a file's `hash`) are kept as read.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Where a block came from (`thanos.source`).
pub mod source {
    /// A server shipping its own blocks (Thanos's sidecar role).
    pub const SIDECAR: &str = "sidecar";
    /// `kiln tools bucket upload-blocks`.
    pub const BUCKET_UPLOAD: &str = "bucket.upload";
    /// `kiln tools bucket rewrite`.
    pub const BUCKET_REWRITE: &str = "bucket.rewrite";
    pub const COMPACTOR: &str = "compactor";
}

/// The section's only version.
pub const THANOS_META_VERSION: u32 = 1;

/// A Go zero `time.Time`, as `encoding/json` writes it.
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// `thanos` in `meta.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThanosMeta {
    #[serde(default, skip_serializing_if = "is_zero")]
    pub version: u32,
    /// External labels of the block's producer.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub downsample: Downsample,
    #[serde(default)]
    pub source: String,
    /// Names of the files in `chunks/`, sorted (deprecated by Thanos for `files`, still
    /// written by its sidecar).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub segment_files: Vec<String>,
    /// Every file of the block with its size (`meta.json` without one), sorted by path.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<BlockFile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewrites: Option<serde_json::Value>,
    #[serde(default)]
    pub index_stats: IndexStats,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extensions: Option<serde_json::Value>,
    /// When `meta.json` was uploaded, RFC 3339 with nanoseconds, UTC.
    #[serde(default = "zero_time")]
    pub upload_time: String,
}

impl Default for ThanosMeta {
    fn default() -> Self {
        ThanosMeta {
            version: 0,
            labels: BTreeMap::new(),
            downsample: Downsample::default(),
            source: String::new(),
            segment_files: Vec::new(),
            files: Vec::new(),
            rewrites: None,
            index_stats: IndexStats::default(),
            extensions: None,
            upload_time: zero_time(),
        }
    }
}

/// `thanos.downsample`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Downsample {
    /// Milliseconds per aggregated sample: 0 (raw), 300000 (5m) or 3600000 (1h).
    #[serde(default)]
    pub resolution: i64,
}

/// One entry of `thanos.files`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlockFile {
    pub rel_path: String,
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub size_bytes: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<serde_json::Value>,
}

/// `thanos.index_stats`: sizes a store gateway uses to size its ranged reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct IndexStats {
    /// Bytes of the largest series entry in the index.
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub series_max_size: i64,
    /// Bytes of the largest chunk record in the chunk files.
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub chunk_max_size: i64,
}

impl ThanosMeta {
    /// The section of a block's meta (a block written by Prometheus or Kiln has none).
    pub fn of(meta: &kiln_tsdb::block::BlockMeta) -> Result<ThanosMeta, serde_json::Error> {
        match &meta.thanos {
            None => Ok(ThanosMeta::default()),
            Some(v) => serde_json::from_value(v.clone()),
        }
    }

    /// The section as `meta.json` holds it.
    pub fn to_value(&self) -> serde_json::Value {
        // A struct of strings, numbers, maps and JSON values always serializes.
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

fn zero_time() -> String {
    ZERO_TIME.to_owned()
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

fn is_zero_i64(v: &i64) -> bool {
    *v == 0
}

/// Go writes a nil map as `null`.
fn null_as_empty<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    Ok(Option::<BTreeMap<String, String>>::deserialize(d)?.unwrap_or_default())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn written_as_go_writes_it() {
        let mut m = ThanosMeta {
            version: THANOS_META_VERSION,
            source: source::SIDECAR.to_owned(),
            files: vec![
                BlockFile {
                    rel_path: "chunks/000001".to_owned(),
                    size_bytes: 1234,
                    hash: None,
                },
                BlockFile {
                    rel_path: "meta.json".to_owned(),
                    size_bytes: 0,
                    hash: None,
                },
            ],
            ..ThanosMeta::default()
        };
        m.labels.insert("cluster".to_owned(), "a".to_owned());
        let v = m.to_value();
        let want = serde_json::json!({
            "version": 1,
            "labels": {"cluster": "a"},
            "downsample": {"resolution": 0},
            "source": "sidecar",
            "files": [{"rel_path": "chunks/000001", "size_bytes": 1234}, {"rel_path": "meta.json"}],
            "index_stats": {},
            "upload_time": "0001-01-01T00:00:00Z",
        });
        assert_eq!(v, want);
        assert_eq!(serde_json::from_value::<ThanosMeta>(v).unwrap(), m);
    }

    #[test]
    fn reads_what_thanos_components_write() {
        // A compactor-written section with fields Kiln keeps without reading them.
        let v = serde_json::json!({
            "labels": null,
            "downsample": {"resolution": 300000},
            "source": "compactor",
            "rewrites": [{"sources": ["01DN3SK96XDAEKRB1AN30AAW6E"]}],
            "extensions": {"x": 1},
            "files": [{"rel_path": "index", "size_bytes": 9, "hash": {"func": "SHA256", "value": "ab"}}],
            "index_stats": {"series_max_size": 64, "chunk_max_size": 300},
            "upload_time": "2024-01-02T03:04:05.123Z"
        });
        let m: ThanosMeta = serde_json::from_value(v.clone()).unwrap();
        assert!(m.labels.is_empty());
        assert_eq!(m.downsample.resolution, 300_000);
        assert_eq!(m.index_stats.chunk_max_size, 300);
        let back = m.to_value();
        assert_eq!(back["rewrites"], v["rewrites"]);
        assert_eq!(back["files"], v["files"]);
        assert_eq!(back["labels"], serde_json::json!({}));
    }
}
