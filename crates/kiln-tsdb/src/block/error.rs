//! The error type of the block module.
//!
//! Every error names what went wrong and where: the file, the section of the format and the
//! byte offset for corrupt data, the path and operation for I/O, the series for bad input.
//! [`BlockError::kind`] says what kind of failure it is.

use std::io;
use std::path::{Path, PathBuf};

use kiln_model::Labels;
use kiln_storage::ErrorKind;

/// Result alias for the block module.
pub type Result<T, E = BlockError> = std::result::Result<T, E>;

/// An error reading or writing a block.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    /// The operating system refused an operation.
    #[error("I/O error: {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// Stored data does not follow the format.
    #[error("corrupt block data: {} ({section}) at offset {offset}: {problem}", path.display())]
    Corrupt {
        path: PathBuf,
        section: &'static str,
        offset: u64,
        problem: Corruption,
    },

    /// A file announces a format version this reader does not understand.
    #[error("unsupported format: {} is {what} version {version}", path.display())]
    UnsupportedVersion {
        path: PathBuf,
        what: &'static str,
        version: u64,
    },

    /// `meta.json` is not valid JSON of the expected shape.
    #[error("corrupt block data: {}: {source}", path.display())]
    MetaJson {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },

    /// A writer got series out of label order.
    #[error(
        "bad input: series {labels} added after {previous}; series must be added in label order"
    )]
    SeriesOutOfOrder { labels: Labels, previous: Labels },

    /// A writer got a series without labels.
    #[error("bad input: a series must have at least one label")]
    EmptyLabels,

    /// Symbols given to a writer are not sorted and unique.
    #[error("bad input: symbol {symbol:?} is out of order; symbols must be sorted and unique")]
    SymbolsOutOfOrder { symbol: String },

    /// A series uses a string missing from the symbols given to the writer.
    #[error("bad input: series {labels} uses {symbol:?}, which is not in the symbol table")]
    MissingSymbol { labels: Labels, symbol: String },

    /// The chunk list of a series breaks the format's rules.
    #[error("bad input: chunk {index} of series {labels}: {reason}")]
    InvalidChunks {
        labels: Labels,
        index: usize,
        reason: &'static str,
    },

    /// A writer method was called at the wrong time.
    #[error("bad input: {call} is not allowed {when}")]
    WrongStage {
        call: &'static str,
        when: &'static str,
    },

    /// A block's time range is empty or reversed.
    #[error("bad input: block time range [{min_time}, {max_time}) is invalid")]
    InvalidTimeRange { min_time: i64, max_time: i64 },

    /// The format cannot represent this much data.
    #[error("limit exceeded: {what} is {value}, the format allows at most {limit}")]
    LimitExceeded {
        what: &'static str,
        value: u64,
        limit: u64,
    },
}

/// What exactly is wrong with corrupt data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Corruption {
    #[error("bad magic number {found:#010x}, want {want:#010x}")]
    BadMagic { found: u32, want: u32 },
    #[error("checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Checksum { stored: u32, computed: u32 },
    #[error("truncated: need {need} bytes, {available} available")]
    Truncated { need: u64, available: u64 },
    #[error("varint overflows 64 bits")]
    VarintOverflow,
    #[error("string is not valid UTF-8")]
    InvalidUtf8,
    #[error("{what} {value} is out of range (limit {limit})")]
    OutOfRange {
        what: &'static str,
        value: u64,
        limit: u64,
    },
    #[error("{0}")]
    Malformed(&'static str),
}

impl BlockError {
    /// The kind of failure, for mapping to API error types and retry decisions.
    pub fn kind(&self) -> ErrorKind {
        match self {
            BlockError::Io { source, .. } => match source.kind() {
                io::ErrorKind::NotFound => ErrorKind::NotFound,
                _ => ErrorKind::Unavailable,
            },
            BlockError::Corrupt { .. }
            | BlockError::UnsupportedVersion { .. }
            | BlockError::MetaJson { .. } => ErrorKind::Internal,
            BlockError::SeriesOutOfOrder { .. }
            | BlockError::EmptyLabels
            | BlockError::SymbolsOutOfOrder { .. }
            | BlockError::MissingSymbol { .. }
            | BlockError::InvalidChunks { .. }
            | BlockError::WrongStage { .. }
            | BlockError::InvalidTimeRange { .. }
            | BlockError::LimitExceeded { .. } => ErrorKind::BadData,
        }
    }

    /// True for errors that mean stored data is damaged (as opposed to I/O or bad input).
    pub fn is_corruption(&self) -> bool {
        matches!(
            self,
            BlockError::Corrupt { .. }
                | BlockError::UnsupportedVersion { .. }
                | BlockError::MetaJson { .. }
        )
    }

    pub(crate) fn io(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> BlockError {
        let path = path.to_path_buf();
        move |source| BlockError::Io { op, path, source }
    }
}

/// A decoding failure before it is tied to a file: the absolute offset and the problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DecodeError {
    pub(crate) offset: u64,
    pub(crate) problem: Corruption,
}

impl DecodeError {
    pub(crate) fn new(offset: u64, problem: Corruption) -> DecodeError {
        DecodeError { offset, problem }
    }

    /// Ties the failure to a file and a section of the format.
    pub(crate) fn at(self, path: &Path, section: &'static str) -> BlockError {
        BlockError::Corrupt {
            path: path.to_path_buf(),
            section,
            offset: self.offset,
            problem: self.problem,
        }
    }
}
