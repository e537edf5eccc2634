//! The `kiln tsdb` tools, in the spirit of `promtool tsdb`: list, analyze, dump and
//! backfill (create-blocks-from). Output formats match promtool's so that scripts and
//! diffs keep working.

pub mod analyze;
pub mod backfill;
pub mod dump;
pub mod format;
pub mod list;

/// Opens a data directory for reading only (it may belong to a running server) and
/// reports unreadable blocks on stderr.
fn open_read_only(dir: &std::path::Path) -> Result<crate::db::Db, ToolError> {
    let db = crate::db::Db::open(
        dir,
        crate::db::DbOptions {
            read_only: true,
            ..Default::default()
        },
    )?;
    for s in db.skipped_blocks() {
        eprintln!("warning: skipped block {}: {}", s.dir.display(), s.reason);
    }
    Ok(db)
}

/// Errors of the tools.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
    #[error(transparent)]
    Block(#[from] crate::block::BlockError),
    #[error("writing output")]
    Output(#[from] std::io::Error),
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
