//! Deleting data: tombstones now, physical removal at the next compaction.

use std::sync::Arc;
use std::time::Instant;

use kiln_model::{Matcher, Timestamp};
use tracing::info;

use super::querier::BlockQuerier;
use super::{Db, DbError};
use crate::block::meta::{read_meta, write_meta};
use crate::block::tombstones::write_tombstones;
use crate::block::{BlockReader, Interval};
use crate::wal::record::{self, Stone};

impl Db {
    /// Deletes the samples in `[mint, maxt]` of every series matching `matchers`, like
    /// Prometheus's `POST /api/v1/admin/tsdb/delete_series`.
    ///
    /// Blocks get a new `tombstones` file (and `meta.json` count); the head records the
    /// intervals in memory and in the WAL, so deletes survive a restart. Deleted samples
    /// are hidden from queriers at once and dropped physically when the block is next
    /// compacted or [`clean_tombstones`](Db::clean_tombstones) runs.
    pub fn delete(
        &self,
        mint: Timestamp,
        maxt: Timestamp,
        matchers: &[Matcher],
    ) -> Result<(), DbError> {
        if self.opts.read_only {
            return Err(DbError::ReadOnly);
        }
        let _m = self.maintenance.lock();
        let interval = Interval { mint, maxt };
        let blocks = self.blocks();
        let mut blocks_touched = 0usize;
        for b in blocks
            .iter()
            .filter(|b| b.meta().min_time <= maxt && b.meta().max_time > mint)
        {
            let ids = BlockQuerier::new(b.clone(), mint, maxt).matching_ids(matchers)?;
            if ids.is_empty() {
                continue;
            }
            let mut stones = b.tombstones().clone();
            for id in ids {
                stones.add_interval(u64::from(id), interval);
            }
            write_tombstones(b.dir(), &stones)?;
            blocks_touched += 1;
            let mut meta = read_meta(b.dir())?;
            meta.stats.num_tombstones = stones.total();
            write_meta(b.dir(), &meta)?;
            let reopened = Arc::new(BlockReader::open(b.dir())?);
            let mut list = self.blocks.write();
            for slot in list.iter_mut().filter(|x| Arc::ptr_eq(x, b)) {
                *slot = reopened.clone();
            }
        }
        let head_ids = self.head.querier(mint, maxt).matching_ids(matchers);
        let selector: Vec<String> = matchers.iter().map(ToString::to_string).collect();
        info!(
            matchers = %format!("{{{}}}", selector.join(",")),
            mint,
            maxt,
            blocks = blocks_touched,
            head_series = head_ids.len(),
            "Series deleted: tombstones written"
        );
        if head_ids.is_empty() {
            return Ok(());
        }
        if let Some(wal) = self.head.wal.as_ref() {
            let stones: Vec<Stone> = head_ids
                .iter()
                .map(|&id| Stone { id, mint, maxt })
                .collect();
            let mut buf = Vec::new();
            record::encode_tombstones(&stones, &mut buf);
            wal.lock().log(&[&buf])?;
        }
        for id in head_ids {
            self.head.add_tombstone(id, mint, maxt);
        }
        Ok(())
    }

    /// Rewrites every block that has tombstones without the deleted samples.
    pub fn clean_tombstones(&self) -> Result<usize, DbError> {
        if self.opts.read_only {
            return Err(DbError::ReadOnly);
        }
        let _m = self.maintenance.lock();
        let started = std::time::Instant::now();
        let mut rewritten = 0;
        for b in self.blocks() {
            if b.tombstones().is_empty() {
                continue;
            }
            let started = Instant::now();
            self.merge_blocks(std::slice::from_ref(&b))?;
            info!(
                block = %b.meta().ulid,
                tombstones = b.tombstones().total(),
                duration = ?started.elapsed(),
                "Block rewritten without its deleted samples"
            );
            rewritten += 1;
        }
        self.metrics
            .tombstone_cleanup
            .observe(started.elapsed().as_secs_f64());
        Ok(rewritten)
    }
}

impl BlockQuerier {
    /// Ids of the block's series matching `matchers` with chunks overlapping the
    /// querier's range.
    pub(crate) fn matching_ids(&self, matchers: &[Matcher]) -> Result<Vec<u32>, DbError> {
        let to_db = |source| DbError::Read {
            context: format!(
                "finding series to delete in block {}",
                self.block().dir().display()
            ),
            source,
        };
        let mut out = Vec::new();
        for id in self.postings_for(matchers).map_err(to_db)? {
            let (_, chunks) = self.block().index().series(id)?;
            if chunks
                .iter()
                .any(|c| c.max_time >= self.mint() && c.min_time <= self.maxt())
            {
                out.push(id);
            }
        }
        Ok(out)
    }
}
