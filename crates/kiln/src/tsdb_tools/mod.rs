//! The `kiln tsdb` tools, in the spirit of `promtool tsdb`: list, analyze, dump and
//! backfill (create-blocks-from). Output formats match promtool's so that scripts and
//! diffs keep working.
//!
//! They live in the binary crate, beside the other command-line faces, and use only the
//! storage engine's public API: the engine itself never prints and does not know the
//! exposition formats.

pub(crate) mod analyze;
pub(crate) mod backfill;
pub(crate) mod dump;
pub(crate) mod format;
pub(crate) mod list;

/// Opens a data directory for reading only (it may belong to a running server) and
/// reports unreadable blocks on stderr.
fn open_read_only(dir: &std::path::Path) -> Result<kiln_tsdb::db::Db, ToolError> {
    let db = kiln_tsdb::db::Db::open(
        dir,
        kiln_tsdb::db::DbOptions {
            read_only: true,
            ..Default::default()
        },
    )?;
    for s in db.skipped_blocks() {
        eprintln!("warning: skipped block {}: {}", s.dir.display(), s.reason);
    }
    Ok(db)
}

impl ToolError {
    /// A failed file operation (`what`: "creating", "listing", ...) on `path`.
    fn io(what: &'static str, path: &std::path::Path, source: std::io::Error) -> ToolError {
        ToolError::Io {
            what,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Errors of the tools.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ToolError {
    #[error(transparent)]
    Db(#[from] kiln_tsdb::db::DbError),
    #[error(transparent)]
    Block(#[from] kiln_tsdb::block::BlockError),
    #[error("writing output")]
    Output(#[from] std::io::Error),
    #[error("{what} {}", path.display())]
    Io {
        what: &'static str,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no blocks found in {}", .0.display())]
    NoBlocks(std::path::PathBuf),
    #[error("block {0} not found")]
    BlockNotFound(String),
    #[error("reading {what}")]
    Read {
        what: String,
        #[source]
        source: kiln_storage::StorageError,
    },
    #[error(transparent)]
    Parse(#[from] kiln_exposition::ParseError),
    #[error("line {line}: {message}")]
    Input { line: usize, message: String },
    #[error("adding samples of {series}: {source}")]
    Append {
        series: String,
        #[source]
        source: kiln_storage::StorageError,
    },
}
