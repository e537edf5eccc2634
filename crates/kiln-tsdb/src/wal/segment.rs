//! The segment layout shared by the writer, the reader and repair: page and header
//! sizes, fragment types, segment file names and directory listing.
//!
//! See `docs/format/wal.md` for the byte layout.

use std::fs;
use std::path::{Path, PathBuf};

use super::error::{Compression, Result, WalError};

/// Segments are written in pages of this many bytes.
pub const PAGE_SIZE: usize = 32 * 1024;

/// Bytes of a fragment header: type (1), length (2, big endian), CRC32-C (4, big endian).
pub const HEADER_SIZE: usize = 7;

/// The largest fragment payload: a page less one header.
pub const MAX_FRAGMENT_LEN: usize = PAGE_SIZE - HEADER_SIZE;

/// Default segment size, as Prometheus's (128 MiB).
pub const DEFAULT_SEGMENT_SIZE: u64 = 128 * 1024 * 1024;

/// Bit of the type byte that flags a snappy-compressed record.
pub(crate) const SNAPPY_FLAG: u8 = 1 << 3;
/// Bit of the type byte that flags a zstd-compressed record.
pub(crate) const ZSTD_FLAG: u8 = 1 << 4;
/// The low three bits of the type byte: the fragment type.
pub(crate) const TYPE_MASK: u8 = 0b111;
/// The high three bits, reserved.
pub(crate) const RESERVED_MASK: u8 = 0b1110_0000;

/// The type of a record fragment (the low three bits of its header's first byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FragmentType {
    /// A zero byte: the rest of the page is zero padding.
    PageTerm = 0,
    /// A whole record in one fragment.
    Full = 1,
    /// The first fragment of a record that continues.
    First = 2,
    /// A middle fragment.
    Middle = 3,
    /// The last fragment.
    Last = 4,
}

impl FragmentType {
    /// The fragment type of a header byte's low three bits; `None` for 5, 6, 7.
    pub fn from_bits(bits: u8) -> Option<FragmentType> {
        match bits & TYPE_MASK {
            0 => Some(FragmentType::PageTerm),
            1 => Some(FragmentType::Full),
            2 => Some(FragmentType::First),
            3 => Some(FragmentType::Middle),
            4 => Some(FragmentType::Last),
            _ => None,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            FragmentType::PageTerm => "page-term",
            FragmentType::Full => "full",
            FragmentType::First => "first",
            FragmentType::Middle => "middle",
            FragmentType::Last => "last",
        }
    }
}

/// The compression flagged in a header byte. No writer sets both flags; if both are set,
/// snappy is reported.
pub(crate) fn compression_of(byte: u8) -> Compression {
    if byte & SNAPPY_FLAG != 0 {
        Compression::Snappy
    } else if byte & ZSTD_FLAG != 0 {
        Compression::Zstd
    } else {
        Compression::None
    }
}

/// Writes the 7-byte header of a fragment carrying `data` into `out[..HEADER_SIZE]`.
/// `compression` sets the type byte's flag (every fragment of a compressed record
/// carries it, as Prometheus writes them).
pub(crate) fn put_header(out: &mut [u8], typ: FragmentType, compression: Compression, data: &[u8]) {
    // The caller never passes more than MAX_FRAGMENT_LEN bytes, so the length fits u16.
    let len = data.len() as u16;
    let flag = match compression {
        Compression::None => 0,
        Compression::Snappy => SNAPPY_FLAG,
        Compression::Zstd => ZSTD_FLAG,
    };
    out[0] = typ as u8 | flag;
    out[1..3].copy_from_slice(&len.to_be_bytes());
    out[3..7].copy_from_slice(&crc32c::crc32c(data).to_be_bytes());
}

/// The file name of segment `index`: eight zero-padded decimal digits, as Prometheus
/// writes them (`00000000`, `00000001`, ...). Larger indexes get more digits.
pub fn segment_name(index: u64) -> String {
    format!("{index:08}")
}

/// The path of segment `index` in `dir`.
pub fn segment_path(dir: &Path, index: u64) -> PathBuf {
    dir.join(segment_name(index))
}

/// One segment file found in a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentRef {
    pub index: u64,
    pub path: PathBuf,
}

/// Parses a segment file name: all ASCII digits (any count, like Prometheus's
/// `strconv.Atoi`, so six-digit names from old tools also load).
pub(crate) fn parse_segment_name(name: &str) -> Option<u64> {
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    name.parse().ok()
}

/// Lists the segments of `dir` in index order. Other entries (checkpoints, `*.tmp`,
/// `*.repair`) are ignored. Fails if the indexes have a gap, as Prometheus does.
/// A missing directory has no segments.
pub fn list_segments(dir: &Path) -> Result<Vec<SegmentRef>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(WalError::io("list directory", dir, e)),
    };
    let mut segs = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| WalError::io("list directory", dir, e))?;
        let name = entry.file_name();
        let Some(index) = name.to_str().and_then(parse_segment_name) else {
            continue;
        };
        segs.push(SegmentRef {
            index,
            path: entry.path(),
        });
    }
    segs.sort_by_key(|s| s.index);
    for w in segs.windows(2) {
        if w[1].index != w[0].index + 1 {
            return Err(WalError::NotSequential {
                dir: dir.to_path_buf(),
                prev: w[0].index,
                next: w[1].index,
            });
        }
    }
    Ok(segs)
}

/// The first and last segment index in `dir`, or `None` if it has no segments.
pub fn segment_range(dir: &Path) -> Result<Option<(u64, u64)>> {
    let segs = list_segments(dir)?;
    Ok(match (segs.first(), segs.last()) {
        (Some(f), Some(l)) => Some((f.index, l.index)),
        _ => None,
    })
}

/// Fsyncs a directory so that creations, renames and removals in it survive power loss.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    let f = fs::File::open(dir).map_err(|e| WalError::io("open directory", dir, e))?;
    f.sync_all()
        .map_err(|e| WalError::io("fsync directory", dir, e))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names_are_eight_digits() {
        assert_eq!(segment_name(0), "00000000");
        assert_eq!(segment_name(42), "00000042");
        assert_eq!(segment_name(123_456_789), "123456789");
    }

    #[test]
    fn parse_names() {
        for (name, want) in [
            ("00000000", Some(0)),
            ("00000017", Some(17)),
            ("000003", Some(3)),
            ("checkpoint.00000001", None),
            ("00000001.tmp", None),
            ("00000001.repair", None),
            ("", None),
            ("+1", None),
            ("99999999999999999999999", None),
        ] {
            assert_eq!(parse_segment_name(name), want, "{name}");
        }
    }

    #[test]
    fn listing_sorts_skips_and_checks_gaps() {
        let dir = tempfile::tempdir().unwrap();
        assert!(
            list_segments(&dir.path().join("missing"))
                .unwrap()
                .is_empty()
        );
        for n in [
            "00000003",
            "00000002",
            "checkpoint.00000001",
            "00000004.tmp",
        ] {
            fs::write(dir.path().join(n), b"").unwrap();
        }
        let segs = list_segments(dir.path()).unwrap();
        assert_eq!(segs.iter().map(|s| s.index).collect::<Vec<_>>(), vec![2, 3]);
        assert_eq!(segment_range(dir.path()).unwrap(), Some((2, 3)));
        fs::write(dir.path().join("00000005"), b"").unwrap();
        let err = list_segments(dir.path()).unwrap_err();
        assert!(
            matches!(
                err,
                WalError::NotSequential {
                    prev: 3,
                    next: 5,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn header_bytes() {
        let mut h = [0u8; HEADER_SIZE];
        put_header(&mut h, FragmentType::First, Compression::None, b"123456789");
        // CRC32-C check value of "123456789" is 0xE3069283.
        assert_eq!(h, [2, 0, 9, 0xe3, 0x06, 0x92, 0x83]);
        // The compression flags ride in the type byte.
        put_header(&mut h, FragmentType::Last, Compression::Snappy, b"1");
        assert_eq!(h[0], 4 | SNAPPY_FLAG);
        put_header(&mut h, FragmentType::Full, Compression::Zstd, b"1");
        assert_eq!(h[0], 1 | ZSTD_FLAG);
    }
}
