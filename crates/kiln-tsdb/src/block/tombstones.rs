//! The `tombstones` file of a block: deleted time ranges per series (spec:
//! `docs/format/tombstones.md`), and [`Tombstones`], its in-memory form.
//!
//! File: `magic <4b> | version=1 <1b> | entries | CRC32C <4b>`, each entry
//! `series ref <uvarint> | mint <varint> | maxt <varint>`; the checksum covers the entries
//! only (not the version byte), as in Prometheus. Every block has this file; a block
//! without deletions has the 9-byte empty one.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::Path;

use super::enc::{Decoder, crc, put_be32, put_uvarint, put_varint};
use super::error::{BlockError, Corruption, DecodeError, Result};
use super::meta::write_atomically;
use super::sync_dir;

/// The file name.
pub const TOMBSTONES_FILENAME: &str = "tombstones";
/// First four bytes of the file.
pub const TOMBSTONES_MAGIC: u32 = 0x0130_BA30;
/// The format version.
pub const TOMBSTONES_VERSION: u8 = 1;

/// A closed time range `[mint, maxt]` of deleted samples, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Interval {
    pub mint: i64,
    pub maxt: i64,
}

impl Interval {
    pub fn new(mint: i64, maxt: i64) -> Interval {
        Interval { mint, maxt }
    }

    /// Whether `t` lies in the interval.
    pub fn contains(&self, t: i64) -> bool {
        self.mint <= t && t <= self.maxt
    }
}

/// Adds `iv` to a sorted list of disjoint intervals, merging it with the ones it overlaps
/// or touches (`[1,2]` and `[3,4]` become `[1,4]`: timestamps are integers). An interval
/// with `mint > maxt` deletes nothing and is ignored.
pub fn add_interval(list: &mut Vec<Interval>, mut iv: Interval) {
    if iv.mint > iv.maxt {
        return;
    }
    let lo = list.partition_point(|x| x.maxt < iv.mint.saturating_sub(1));
    let hi = lo + list[lo..].partition_point(|x| x.mint <= iv.maxt.saturating_add(1));
    if lo < hi {
        iv.mint = iv.mint.min(list[lo].mint);
        iv.maxt = iv.maxt.max(list[hi - 1].maxt);
    }
    list.splice(lo..hi, [iv]);
}

/// Whether `t` lies in one of the sorted, disjoint `intervals`. O(log n).
pub fn is_deleted(intervals: &[Interval], t: i64) -> bool {
    let i = intervals.partition_point(|x| x.maxt < t);
    intervals.get(i).is_some_and(|x| x.mint <= t)
}

/// Deleted intervals per series reference (the series ids of the block's index).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tombstones {
    map: BTreeMap<u64, Vec<Interval>>,
}

impl Tombstones {
    pub fn new() -> Tombstones {
        Tombstones::default()
    }

    /// Marks `iv` deleted for `series_ref`, merging with what is there.
    pub fn add_interval(&mut self, series_ref: u64, iv: Interval) {
        if iv.mint > iv.maxt {
            return;
        }
        add_interval(self.map.entry(series_ref).or_default(), iv);
    }

    /// The sorted, disjoint deleted intervals of `series_ref` (empty if none).
    pub fn get(&self, series_ref: u64) -> &[Interval] {
        self.map.get(&series_ref).map_or(&[], Vec::as_slice)
    }

    /// Whether the sample of `series_ref` at `t` is deleted.
    pub fn is_deleted(&self, series_ref: u64, t: i64) -> bool {
        is_deleted(self.get(series_ref), t)
    }

    /// Series with deletions, in reference order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &[Interval])> {
        self.map.iter().map(|(r, ivs)| (*r, ivs.as_slice()))
    }

    /// Number of series with deletions.
    pub fn num_series(&self) -> usize {
        self.map.len()
    }

    /// Number of intervals: what `meta.json` calls `numTombstones`.
    pub fn total(&self) -> u64 {
        self.map.values().map(|v| v.len() as u64).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The whole file: header, entries in series order, checksum.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(9 + self.map.len() * 8);
        put_be32(&mut out, TOMBSTONES_MAGIC);
        out.push(TOMBSTONES_VERSION);
        for (r, ivs) in &self.map {
            for iv in ivs {
                put_uvarint(&mut out, *r);
                put_varint(&mut out, iv.mint);
                put_varint(&mut out, iv.maxt);
            }
        }
        let sum = crc(&out[5..]);
        out.extend_from_slice(&sum.to_be_bytes());
        out
    }

    /// Parses a whole file (fuzzing entry point too); `path` names it in errors.
    pub fn decode(bytes: &[u8], path: &Path) -> Result<Tombstones> {
        let run = || -> Result<Tombstones, DecodeError> {
            let mut d = Decoder::new(bytes, 0);
            if bytes.len() < 9 {
                return Err(d.err(Corruption::Truncated {
                    need: 9,
                    available: bytes.len() as u64,
                }));
            }
            let magic = d.be32()?;
            if magic != TOMBSTONES_MAGIC {
                return Err(DecodeError::new(
                    0,
                    Corruption::BadMagic {
                        found: magic,
                        want: TOMBSTONES_MAGIC,
                    },
                ));
            }
            let body = &bytes[5..bytes.len() - 4];
            let mut tail = Decoder::new(&bytes[bytes.len() - 4..], (bytes.len() - 4) as u64);
            let stored = tail.be32()?;
            let computed = crc(body);
            if stored != computed {
                return Err(DecodeError::new(
                    5,
                    Corruption::Checksum { stored, computed },
                ));
            }
            let version = d.u8()?;
            if version != TOMBSTONES_VERSION {
                return Err(DecodeError::new(
                    4,
                    Corruption::OutOfRange {
                        what: "tombstones version",
                        value: version.into(),
                        limit: TOMBSTONES_VERSION.into(),
                    },
                ));
            }
            let mut d = Decoder::new(body, 5);
            let mut t = Tombstones::new();
            while !d.is_empty() {
                let r = d.uvarint()?;
                let mint = d.varint()?;
                let maxt = d.varint()?;
                t.add_interval(r, Interval { mint, maxt });
            }
            Ok(t)
        };
        run().map_err(|e| match e.problem {
            Corruption::OutOfRange {
                value,
                what: "tombstones version",
                ..
            } => BlockError::UnsupportedVersion {
                path: path.to_path_buf(),
                what: "tombstones",
                version: value,
            },
            _ => e.at(path, "tombstones"),
        })
    }
}

/// Reads `<dir>/tombstones`. A missing file means no deletions (as in Prometheus).
pub fn read_tombstones(dir: &Path) -> Result<Tombstones> {
    let path = dir.join(TOMBSTONES_FILENAME);
    match fs::read(&path) {
        Ok(bytes) => Tombstones::decode(&bytes, &path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Tombstones::new()),
        Err(e) => Err(BlockError::Io {
            op: "read",
            path,
            source: e,
        }),
    }
}

/// Writes `<dir>/tombstones` atomically (temporary file, fsync, rename, fsync `dir`).
/// Returns the file size.
pub fn write_tombstones(dir: &Path, tombstones: &Tombstones) -> Result<u64> {
    let bytes = tombstones.encode();
    let path = dir.join(TOMBSTONES_FILENAME);
    let tmp = dir.join(format!("{TOMBSTONES_FILENAME}.tmp"));
    write_atomically(&tmp, &path, &bytes)?;
    sync_dir(dir)?;
    Ok(bytes.len() as u64)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_nine_bytes() {
        let b = Tombstones::new().encode();
        assert_eq!(b, [0x01, 0x30, 0xBA, 0x30, 0x01, 0, 0, 0, 0]);
        assert!(Tombstones::decode(&b, Path::new("t")).unwrap().is_empty());
    }

    #[test]
    fn merge_table() {
        type Case = (&'static [(i64, i64)], &'static [(i64, i64)]);
        let cases: &[Case] = &[
            (&[(1, 2)], &[(1, 2)]),
            (&[(1, 2), (3, 4)], &[(1, 4)]),
            (&[(1, 2), (4, 5)], &[(1, 2), (4, 5)]),
            (&[(10, 20), (1, 2), (4, 5)], &[(1, 2), (4, 5), (10, 20)]),
            (&[(1, 2), (4, 5), (10, 20), (3, 11)], &[(1, 20)]),
            (&[(5, 1)], &[]),
            (&[(i64::MIN, 0), (1, i64::MAX)], &[(i64::MIN, i64::MAX)]),
            (&[(0, 10), (2, 3)], &[(0, 10)]),
        ];
        for (input, want) in cases {
            for _ in 0..2 {
                let mut list = Vec::new();
                for &(a, b) in *input {
                    add_interval(&mut list, Interval::new(a, b));
                }
                let got: Vec<(i64, i64)> = list.iter().map(|iv| (iv.mint, iv.maxt)).collect();
                assert_eq!(got, *want, "{input:?}");
            }
        }
    }

    #[test]
    fn is_deleted_checks_bounds() {
        let mut t = Tombstones::new();
        t.add_interval(7, Interval::new(10, 20));
        t.add_interval(7, Interval::new(30, 30));
        for (ts, want) in [
            (9, false),
            (10, true),
            (20, true),
            (21, false),
            (30, true),
            (31, false),
        ] {
            assert_eq!(t.is_deleted(7, ts), want, "{ts}");
        }
        assert!(!t.is_deleted(8, 15));
        assert_eq!(t.total(), 2);
    }

    #[test]
    fn round_trip_and_corruption() {
        let mut t = Tombstones::new();
        t.add_interval(1, Interval::new(-5, 5));
        t.add_interval(300, Interval::new(1_000, 2_000));
        t.add_interval(300, Interval::new(3_000, 4_000));
        let b = t.encode();
        assert_eq!(Tombstones::decode(&b, Path::new("t")).unwrap(), t);
        for i in 0..b.len() {
            let mut bad = b.clone();
            bad[i] ^= 0x10;
            let err = Tombstones::decode(&bad, Path::new("t")).unwrap_err();
            assert!(err.is_corruption(), "{err}");
        }
        for n in 0..b.len() {
            assert!(Tombstones::decode(&b[..n], Path::new("t")).is_err());
        }
    }

    #[test]
    fn file_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read_tombstones(dir.path()).unwrap().is_empty());
        let mut t = Tombstones::new();
        t.add_interval(16, Interval::new(1, 2));
        assert_eq!(write_tombstones(dir.path(), &t).unwrap(), 5 + 3 + 4);
        assert_eq!(read_tombstones(dir.path()).unwrap(), t);
        assert!(!dir.path().join("tombstones.tmp").exists());
    }
}
