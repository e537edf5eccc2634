//! Errors of the WAL: I/O failures, corruption (repairable with [`super::repair()`]),
//! unsupported features and invalid arguments.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use super::record::RecordError;

/// What kind of failure a [`WalError`] is, so the caller can decide what to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalErrorKind {
    /// The operating system failed a read, write, fsync, rename or directory listing.
    /// Nothing on disk is known to be bad; retrying or freeing disk space may help.
    Io,
    /// Bytes on disk are not a valid WAL (bad CRC, torn tail, bad fragment sequence,
    /// undecodable record). [`super::repair::repair`] makes the WAL usable again by
    /// dropping everything from the damaged record on.
    Corruption,
    /// Valid data this build cannot read (a compressed record, a reserved header bit).
    /// Not repairable: repairing would delete good data.
    Unsupported,
    /// The caller asked for something impossible (bad options, a segment range that does
    /// not exist, a directory that is not a WAL). A bug or a misconfiguration.
    Invalid,
}

/// Where a WAL byte range lives: a segment of a directory, or an in-memory buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentLocation {
    /// The directory holding the segment (the WAL directory or a checkpoint directory);
    /// `None` for a segment read from memory ([`super::WalReader::from_bytes`]).
    pub dir: Option<PathBuf>,
    /// The segment's index (its file name as a number).
    pub segment: u64,
}

impl fmt::Display for SegmentLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.dir {
            Some(d) => write!(f, "segment {} in {}", self.segment, d.display()),
            None => write!(f, "in-memory segment {}", self.segment),
        }
    }
}

/// Why bytes were judged corrupt.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CorruptionReason {
    #[error("checksum mismatch: header says {expected:#010x}, data has {actual:#010x}")]
    Checksum { expected: u32, actual: u32 },
    #[error("invalid fragment type {0}")]
    FragmentType(u8),
    #[error("fragment header starts {0} bytes before the page end (less than a header)")]
    HeaderCrossesPage(usize),
    #[error("fragment of {len} bytes at page offset {page_offset} crosses the page end")]
    FragmentCrossesPage { len: usize, page_offset: usize },
    #[error("segment ends inside a fragment (torn write)")]
    TruncatedFragment,
    #[error(
        "segment ends inside a record whose first fragment is at offset {record_start} (torn write)"
    )]
    TornRecord { record_start: u64 },
    #[error("unexpected {got} fragment {context}")]
    FragmentSequence {
        got: &'static str,
        context: &'static str,
    },
    #[error("fragments of one record disagree on compression")]
    MixedCompression,
    #[error("non-zero byte in page padding")]
    NonZeroPadding,
    #[error("snappy-compressed record does not decompress: {0}")]
    Snappy(String),
    #[error("zstd-compressed record does not decompress: {0}")]
    Zstd(String),
    #[error("compressed record claims {claimed} bytes, more than the {limit}-byte limit")]
    DecompressedTooLarge { claimed: usize, limit: usize },
    #[error("record does not decode: {0}")]
    Record(#[from] RecordError),
}

/// A corruption found at a byte offset of a segment.
///
/// `offset` is the byte offset inside the segment where the bad bytes begin (the damaged
/// fragment's header, the first non-zero padding byte, or the segment end for a torn
/// tail; for an undecodable record, the record's first fragment). Every record that ends
/// at or before `offset` is intact.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("WAL corruption in {location} at byte offset {offset}: {reason}")]
pub struct CorruptionError {
    pub location: SegmentLocation,
    pub offset: u64,
    pub reason: CorruptionReason,
}

/// The compression a record's fragments are flagged with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Snappy,
    Zstd,
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Compression::None => "none",
            Compression::Snappy => "snappy",
            Compression::Zstd => "zstd",
        })
    }
}

/// Errors of the WAL. [`WalError::kind`] says which kind each is.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("the WAL in {} stopped accepting writes after a failed write; reopen it to repair", dir.display())]
    Poisoned { dir: PathBuf },
    #[error("WAL I/O: {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Corruption(#[from] CorruptionError),
    #[error(
        "WAL fragment header at byte offset {offset} of {location} sets reserved bits: {byte:#04x}"
    )]
    ReservedBits {
        location: SegmentLocation,
        offset: u64,
        byte: u8,
    },
    #[error("invalid WAL options: {0}")]
    InvalidOptions(&'static str),
    #[error("WAL segments in {} are not sequential: {prev} is followed by {next}", dir.display())]
    NotSequential { dir: PathBuf, prev: u64, next: u64 },
    #[error("WAL segment {segment} does not exist in {}", dir.display())]
    MissingSegment { dir: PathBuf, segment: u64 },
    #[error("cannot truncate WAL {} before segment {before}: segment {active} is being written", dir.display())]
    TruncateActive {
        dir: PathBuf,
        before: u64,
        active: u64,
    },
    #[error("checkpoint {} is not a directory", path.display())]
    CheckpointNotDir { path: PathBuf },
    #[error("checkpoint of {} from segment {from}: last checkpoint is {last}, so segments {} to {} would be lost", dir.display(), last + 1, from - 1)]
    CheckpointGap { dir: PathBuf, from: u64, last: u64 },
    #[error("checkpoint of {} up to segment {to}: checkpoint {last} already covers it", dir.display())]
    CheckpointStale { dir: PathBuf, to: u64, last: u64 },
    #[error("cannot repair {}: {reason} ({corruption})", dir.display())]
    NotRepairable {
        dir: PathBuf,
        reason: &'static str,
        corruption: Box<CorruptionError>,
    },
}

impl WalError {
    /// The kind of this error.
    pub fn kind(&self) -> WalErrorKind {
        match self {
            WalError::Io { .. } | WalError::Poisoned { .. } => WalErrorKind::Io,
            WalError::Corruption(_) => WalErrorKind::Corruption,
            WalError::ReservedBits { .. } => WalErrorKind::Unsupported,
            WalError::InvalidOptions(_)
            | WalError::NotSequential { .. }
            | WalError::MissingSegment { .. }
            | WalError::TruncateActive { .. }
            | WalError::CheckpointNotDir { .. }
            | WalError::CheckpointGap { .. }
            | WalError::CheckpointStale { .. }
            | WalError::NotRepairable { .. } => WalErrorKind::Invalid,
        }
    }

    /// True for corruption that [`super::repair::repair`] can fix.
    pub fn is_corruption(&self) -> bool {
        self.kind() == WalErrorKind::Corruption
    }

    /// The corruption details, if this is a corruption error.
    pub fn as_corruption(&self) -> Option<&CorruptionError> {
        match self {
            WalError::Corruption(c) => Some(c),
            _ => None,
        }
    }

    pub(crate) fn io(op: &'static str, path: &Path, source: io::Error) -> WalError {
        WalError::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Shorthand for the WAL's results.
pub type Result<T, E = WalError> = std::result::Result<T, E>;
