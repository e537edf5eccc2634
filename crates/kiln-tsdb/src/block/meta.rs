//! `meta.json`: a block's identity, time range, statistics and compaction history
//! (spec: `docs/format/meta.md`).
//!
//! Field names, order and omission rules follow Prometheus's `BlockMeta`, and the file is
//! written as Go's `json.MarshalIndent(meta, "", "\t")` writes it (tab indent, no trailing
//! newline, `<`, `>`, `&`, U+2028 and U+2029 escaped), so Prometheus, Thanos and promtool
//! read it and a Prometheus-written file round-trips byte for byte. A Thanos `"thanos"`
//! section is kept as it is.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use ulid::Ulid;

use super::error::{BlockError, Result};
use super::sync_dir;

/// The file name.
pub const META_FILENAME: &str = "meta.json";
/// The only `version` Prometheus accepts.
pub const META_VERSION: u32 = 1;

/// The contents of `meta.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlockMeta {
    #[serde(with = "ulid_text")]
    pub ulid: Ulid,
    /// First timestamp of the block (inclusive), milliseconds.
    #[serde(rename = "minTime")]
    pub min_time: i64,
    /// End of the block (exclusive): the last sample's timestamp + 1 at most.
    #[serde(rename = "maxTime")]
    pub max_time: i64,
    #[serde(default)]
    pub stats: BlockStats,
    #[serde(default)]
    pub compaction: BlockMetaCompaction,
    pub version: u32,
    /// Thanos's external labels, downsampling and source info, preserved as is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thanos: Option<serde_json::Value>,
}

/// Counts of the block's contents. Zero counts are omitted from the file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockStats {
    #[serde(default, skip_serializing_if = "is_zero")]
    pub num_samples: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub num_float_samples: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub num_histogram_samples: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub num_series: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub num_chunks: u64,
    /// Number of deletion intervals in the tombstones file.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub num_tombstones: u64,
}

/// How the block came to be.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockMetaCompaction {
    /// 1 for a block cut from the head, +1 per compaction.
    #[serde(default)]
    pub level: u32,
    /// ULIDs of the level-1 blocks whose data this block holds.
    #[serde(default, skip_serializing_if = "Vec::is_empty", with = "ulid_list")]
    pub sources: Vec<Ulid>,
    /// Compaction produced no samples; the block should be deleted.
    #[serde(default, skip_serializing_if = "is_false")]
    pub deletable: bool,
    /// The blocks compacted directly into this one.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_empty"
    )]
    pub parents: Vec<BlockDesc>,
    /// A compaction of this block failed.
    #[serde(default, skip_serializing_if = "is_false")]
    pub failed: bool,
    /// For example `"from-out-of-order"`.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_empty"
    )]
    pub hints: Vec<String>,
}

/// A parent block: its ULID and time range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockDesc {
    #[serde(with = "ulid_text")]
    pub ulid: Ulid,
    #[serde(rename = "minTime")]
    pub min_time: i64,
    #[serde(rename = "maxTime")]
    pub max_time: i64,
}

/// Go writes `null` for a nil slice when `omitempty` is missing; accept it as empty.
fn null_as_empty<'de, D, T>(d: D) -> std::result::Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

fn is_false(v: &bool) -> bool {
    !*v
}

impl BlockMeta {
    /// Parses `meta.json` bytes and checks the version (fuzzing entry point too).
    pub fn from_json(bytes: &[u8], path: &Path) -> Result<BlockMeta> {
        let meta: BlockMeta =
            serde_json::from_slice(bytes).map_err(|source| BlockError::MetaJson {
                path: path.to_path_buf(),
                source,
            })?;
        if meta.version != META_VERSION {
            return Err(BlockError::UnsupportedVersion {
                path: path.to_path_buf(),
                what: "meta.json",
                version: meta.version.into(),
            });
        }
        Ok(meta)
    }

    /// Encodes like Go's `json.MarshalIndent(meta, "", "\t")`.
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(512);
        let mut ser = serde_json::Serializer::with_formatter(&mut out, GoFormatter::default());
        // Serializing plain structs, strings and numbers into a Vec cannot fail.
        if self.serialize(&mut ser).is_err() {
            out.clear();
        }
        out
    }
}

/// Reads and checks `<dir>/meta.json`.
pub fn read_meta(dir: &Path) -> Result<BlockMeta> {
    let path = dir.join(META_FILENAME);
    let bytes = fs::read(&path).map_err(BlockError::io("read", &path))?;
    BlockMeta::from_json(&bytes, &path)
}

/// Writes `<dir>/meta.json` atomically: to `meta.json.tmp`, fsync, rename, fsync `dir`.
/// Sets `version` to 1. Returns the file size.
pub fn write_meta(dir: &Path, meta: &BlockMeta) -> Result<u64> {
    let mut meta = meta.clone();
    meta.version = META_VERSION;
    let bytes = meta.to_json();
    let path = dir.join(META_FILENAME);
    let tmp: PathBuf = dir.join(format!("{META_FILENAME}.tmp"));
    write_atomically(&tmp, &path, &bytes)?;
    sync_dir(dir)?;
    Ok(bytes.len() as u64)
}

/// Writes `bytes` to `tmp`, fsyncs it and renames it to `path`. Removes `tmp` on failure.
pub(crate) fn write_atomically(tmp: &Path, path: &Path, bytes: &[u8]) -> Result<()> {
    let res = (|| {
        let mut f = File::create(tmp).map_err(BlockError::io("create", tmp))?;
        f.write_all(bytes).map_err(BlockError::io("write", tmp))?;
        f.sync_all().map_err(BlockError::io("fsync", tmp))?;
        drop(f);
        fs::rename(tmp, path).map_err(BlockError::io("rename", tmp))
    })();
    if res.is_err() {
        let _ = fs::remove_file(tmp);
    }
    res
}

/// serde_json's pretty printer with a tab indent, escaping strings as Go's HTML-safe
/// encoder does.
struct GoFormatter {
    pretty: serde_json::ser::PrettyFormatter<'static>,
}

impl Default for GoFormatter {
    fn default() -> Self {
        GoFormatter {
            pretty: serde_json::ser::PrettyFormatter::with_indent(b"\t"),
        }
    }
}

impl serde_json::ser::Formatter for GoFormatter {
    fn begin_array<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.pretty.begin_array(w)
    }

    fn end_array<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.pretty.end_array(w)
    }

    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.pretty.begin_array_value(w, first)
    }

    fn end_array_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.pretty.end_array_value(w)
    }

    fn begin_object<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.pretty.begin_object(w)
    }

    fn end_object<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.pretty.end_object(w)
    }

    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.pretty.begin_object_key(w, first)
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.pretty.begin_object_value(w)
    }

    fn end_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.pretty.end_object_value(w)
    }

    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut rest = fragment;
        while let Some(i) = rest.find(['<', '>', '&', '\u{2028}', '\u{2029}']) {
            w.write_all(&rest.as_bytes()[..i])?;
            let c = rest[i..].chars().next().unwrap_or_default();
            write!(w, "\\u{:04x}", c as u32)?;
            rest = &rest[i + c.len_utf8()..];
        }
        w.write_all(rest.as_bytes())
    }
}

/// A ULID as its 26-character text, like Go's `ulid.ULID` JSON encoding.
mod ulid_text {
    use serde::{Deserialize, Deserializer, Serializer};
    use ulid::Ulid;

    pub(super) fn serialize<S: Serializer>(u: &Ulid, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&u.to_string())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Ulid, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Ulid::from_string(&s)
            .map_err(|e| serde::de::Error::custom(format_args!("invalid ULID {s:?}: {e}")))
    }
}

mod ulid_list {
    use serde::ser::SerializeSeq;
    use serde::{Deserialize, Deserializer, Serializer};
    use ulid::Ulid;

    pub(super) fn serialize<S: Serializer>(list: &[Ulid], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(list.len()))?;
        for u in list {
            seq.serialize_element(&u.to_string())?;
        }
        seq.end()
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Ulid>, D::Error> {
        let raw = <Option<Vec<String>>>::deserialize(d)?.unwrap_or_default();
        raw.iter()
            .map(|s| {
                Ulid::from_string(s)
                    .map_err(|e| serde::de::Error::custom(format_args!("invalid ULID {s:?}: {e}")))
            })
            .collect()
    }
}
