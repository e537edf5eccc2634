//! Errors of the head chunk store.

use super::*;

#[derive(Debug, thiserror::Error)]
pub(crate) enum HeadChunksError {
    /// The operating system refused an operation.
    #[error("I/O error: {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// A file does not follow the format. `offset` is where the bad header or record
    /// starts.
    #[error("corrupt head chunk file {} at offset {offset}: {problem}", path.display())]
    Corrupt {
        path: PathBuf,
        offset: u64,
        problem: Corruption,
    },

    /// A file's sequence number does not fit in the upper 32 bits of a chunk ref.
    #[error("limit exceeded: head chunk file {} has sequence {seq}, at most {} allowed", path.display(), u32::MAX)]
    SequenceOverflow { path: PathBuf, seq: u64 },

    /// A chunk ref names a file that does not exist (deleted by truncation, or never
    /// written).
    #[error("not found: chunk ref {chunk_ref:#018x}: head chunk file {} does not exist", path.display())]
    RefNotFound { chunk_ref: u64, path: PathBuf },

    /// An earlier write failed; the store accepts no more chunks in this run.
    #[error("unavailable: head chunk writes to {} are disabled after an earlier write failed", dir.display())]
    WritesDisabled { dir: PathBuf },

    /// A chunk ref does not point at a whole record inside its file's data.
    #[error("bad chunk ref {chunk_ref:#018x} into {} at offset {offset}: {problem}", path.display())]
    BadRef {
        chunk_ref: u64,
        path: PathBuf,
        offset: u64,
        problem: Corruption,
    },

    /// `write_chunk` got a chunk it cannot store.
    #[error("bad input: chunk of series {series_ref} with {len} data bytes: {reason}")]
    InvalidChunk {
        series_ref: u64,
        len: usize,
        reason: &'static str,
    },

    /// An option is out of range.
    #[error("bad input: head chunk option {what} is {value}, allowed {min}..={max}")]
    InvalidOption {
        what: &'static str,
        value: u64,
        min: u64,
        max: u64,
    },
}

/// What exactly is wrong with stored bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Corruption {
    #[error("bad magic number {found:#010x}, want {MAGIC:#010x}")]
    BadMagic { found: u32 },
    #[error("unsupported format version {0}")]
    UnsupportedVersion(u8),
    #[error("truncated: need {need} bytes, {available} available")]
    Truncated { need: u64, available: u64 },
    #[error("chunk length field is longer than 5 bytes or above 2^32-1")]
    BadLength,
    #[error("checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Checksum { stored: u32, computed: u32 },
    #[error("non-zero bytes after the zero padding that marks the end of data")]
    DataAfterPadding,
    #[error("record starts past offset 2^32-1, which a chunk ref cannot address")]
    OffsetOverflow,
    /// The file before this one in the sequence is missing.
    #[error("out of sequence: follows {}, the file before it is missing", previous.display())]
    MissingFile { previous: PathBuf },
}

impl Corruption {
    pub(crate) fn is_missing_file(&self) -> bool {
        matches!(self, Corruption::MissingFile { .. })
    }
}

impl HeadChunksError {
    /// The kind of failure, for mapping to API error types and retry decisions.
    pub(crate) fn kind(&self) -> ErrorKind {
        match self {
            HeadChunksError::Io { source, .. } => match source.kind() {
                io::ErrorKind::NotFound => ErrorKind::NotFound,
                _ => ErrorKind::Unavailable,
            },
            HeadChunksError::RefNotFound { .. } => ErrorKind::NotFound,
            HeadChunksError::WritesDisabled { .. } => ErrorKind::Unavailable,
            HeadChunksError::Corrupt { .. }
            | HeadChunksError::SequenceOverflow { .. }
            | HeadChunksError::BadRef { .. } => ErrorKind::Internal,
            HeadChunksError::InvalidChunk { .. } | HeadChunksError::InvalidOption { .. } => {
                ErrorKind::BadData
            }
        }
    }

    pub(super) fn io(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> HeadChunksError {
        let path = path.to_path_buf();
        move |source| HeadChunksError::Io { op, path, source }
    }
}
