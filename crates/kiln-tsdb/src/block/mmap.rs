//! Read-only file contents for the readers: memory-mapped files, or owned bytes (tests and
//! fuzzing). The one `unsafe` call of the block module lives here.

use std::fs::File;
use std::ops::Deref;
use std::path::Path;

use memmap2::{Mmap, MmapOptions};

use super::error::{BlockError, Result};

/// The bytes of one immutable file.
#[derive(Debug)]
pub(crate) enum FileBytes {
    Mapped(Mmap),
    Owned(Vec<u8>),
}

impl Deref for FileBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            FileBytes::Mapped(m) => m,
            FileBytes::Owned(v) => v,
        }
    }
}

impl FileBytes {
    /// Maps the file at `path` read-only. Empty files are not mapped (mapping zero bytes
    /// fails on some platforms).
    pub(crate) fn map(path: &Path) -> Result<FileBytes> {
        let file = File::open(path).map_err(BlockError::io("open", path))?;
        let len = file.metadata().map_err(BlockError::io("stat", path))?.len();
        if len == 0 {
            return Ok(FileBytes::Owned(Vec::new()));
        }
        map_readonly(&file, false)
            .map(FileBytes::Mapped)
            .map_err(BlockError::io("mmap", path))
    }

    /// Maps an open file read-only and faults all of it in at once, for a file that is
    /// read whole right away: the head snapshot, as immutable as a block file (written
    /// to a temporary name, renamed into place, unlinked by the open that maps it).
    pub(crate) fn map_whole(file: &File) -> std::io::Result<FileBytes> {
        if file.metadata()?.len() == 0 {
            return Ok(FileBytes::Owned(Vec::new()));
        }
        map_readonly(file, true).map(FileBytes::Mapped)
    }
}

/// `populate`: fault every page in with the mapping (one call instead of a fault a page).
#[allow(unsafe_code)]
fn map_readonly(file: &File, populate: bool) -> std::io::Result<Mmap> {
    // SAFETY: `Mmap::map` is unsafe because the mapping aliases the file: if another process
    // truncated or rewrote it while mapped, reads could fault or see changing bytes. Block
    // files (index, chunk segments) and the head snapshot are immutable once renamed into
    // place, and Kiln never truncates or rewrites them while they are open. They are
    // deleted (retention, merges; the snapshot as soon as it is read) while mapped:
    // deleting only unlinks the files, and on Unix an existing mapping stays valid until
    // it is dropped.
    unsafe {
        let mut options = MmapOptions::new();
        if populate {
            options.populate();
        }
        options.map(file)
    }
}
