//! Snapshots: a copy of the database as blocks in a directory of its own, for backups
//! (Prometheus's `POST /api/v1/admin/tsdb/snapshot`).

use std::path::Path;

use super::{Db, DbError, write_head_block};

/// What [`Db::snapshot`] wrote.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SnapshotStats {
    /// Persisted blocks linked (or copied) into the snapshot.
    pub blocks: usize,
    /// Whether the head was written as a block of its own.
    pub head_block: bool,
}

impl Db {
    /// Writes every persisted block into `dir` (created; hard links where the file
    /// system allows, copies otherwise), and unless `skip_head`, the head's samples as
    /// one more block spanning the head's whole time range. The head is left as it is:
    /// a snapshot changes nothing in the live database.
    pub fn snapshot(&self, dir: &Path, skip_head: bool) -> Result<SnapshotStats, DbError> {
        std::fs::create_dir_all(dir).map_err(|e| DbError::io("creating snapshot dir", dir, e))?;
        let mut stats = SnapshotStats::default();
        // Holding the maintenance lock keeps compaction and retention from deleting a
        // block while it is being linked.
        let _m = self.maintenance.lock();
        for block in self.blocks() {
            let name = block
                .dir()
                .file_name()
                .ok_or_else(|| DbError::io("naming block", block.dir(), bad_name()))?;
            link_tree(block.dir(), &dir.join(name))?;
            stats.blocks += 1;
        }
        if !skip_head
            && let (Some(min), Some(max)) = (self.head.min_time(), self.head.max_time())
            && min <= max
        {
            stats.head_block =
                write_head_block(&self.head, dir, min, max.saturating_add(1), None)?.is_some();
        }
        Ok(stats)
    }
}

fn bad_name() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidInput, "block dir has no name")
}

/// Recreates the directory tree `from` at `to`, hard-linking files (copying where a
/// link is refused, e.g. across file systems). Block files are immutable once written,
/// so a link is as good as a copy.
fn link_tree(from: &Path, to: &Path) -> Result<(), DbError> {
    std::fs::create_dir_all(to).map_err(|e| DbError::io("creating snapshot dir", to, e))?;
    let entries = std::fs::read_dir(from).map_err(|e| DbError::io("listing block", from, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| DbError::io("listing block", from, e))?;
        let src = entry.path();
        let dst = to.join(entry.file_name());
        let kind = entry
            .file_type()
            .map_err(|e| DbError::io("reading file type", &src, e))?;
        if kind.is_dir() {
            link_tree(&src, &dst)?;
        } else if std::fs::hard_link(&src, &dst).is_err() {
            std::fs::copy(&src, &dst).map_err(|e| DbError::io("copying block file", &src, e))?;
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use kiln_model::Labels;
    use kiln_storage::{Appender, SampleValue};

    use crate::block::BlockReader;
    use crate::db::{Db, DbOptions};

    #[test]
    fn snapshot_holds_blocks_and_head_and_leaves_the_db_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let db = Db::open(tmp.path().join("data"), DbOptions::default()).unwrap();
        let hour = 3_600_000;
        let mut app = db.appender();
        let a = Labels::from_pairs(&[("__name__", "a")]);
        for i in 0..8 {
            app.append(0, &a, i * hour, SampleValue::Float(i as f64))
                .unwrap();
        }
        app.commit().unwrap();
        // Cut the oldest ranges into blocks, keep the rest in the head.
        db.compact().unwrap();
        let persisted = db.blocks().len();
        assert!(persisted >= 1);

        let snap = tmp.path().join("snap");
        let stats = db.snapshot(&snap, false).unwrap();
        assert_eq!(stats.blocks, persisted);
        assert!(stats.head_block);
        let mut samples = 0;
        let mut dirs = 0;
        for entry in std::fs::read_dir(&snap).unwrap() {
            let block = BlockReader::open(entry.unwrap().path()).unwrap();
            samples += block.meta().stats.num_samples;
            dirs += 1;
        }
        assert_eq!(dirs, persisted + 1);
        assert_eq!(samples, 8, "every sample is in the snapshot exactly once");
        // The live database still has its head and blocks.
        assert_eq!(db.blocks().len(), persisted);
        assert!(db.head().max_time().is_some());

        let no_head = tmp.path().join("snap2");
        let stats = db.snapshot(&no_head, true).unwrap();
        assert!(!stats.head_block);
        assert_eq!(std::fs::read_dir(&no_head).unwrap().count(), persisted);
    }
}
