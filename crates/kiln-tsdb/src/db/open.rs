//! Opening a data directory: loading blocks and replaying the WAL into the head.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use kiln_chunkenc::{Encoding, XorIterator};
use parking_lot::{Mutex, RwLock};
use tracing::{debug, info, warn};

use super::{Db, DbError, DbOptions, SkippedBlock};
use crate::block::BlockReader;
use crate::head::chunk_disk::{ChunkDiskMapper, HeadChunksError};
use crate::head::series::{Appended, MemSeries};
use crate::head::{Head, HeadOptions, IntMap};
use crate::wal::record::{self, RecordType, RefSample, RefSeries, Stone};
use crate::wal::segment::segment_range;
use crate::wal::{Wal, WalOptions, WalReader, checkpoint, repair};

/// Suffixes of directories left behind by an interrupted block write or delete.
const TMP_SUFFIXES: [&str; 2] = [".tmp-for-creation", ".tmp-for-deletion"];

impl Db {
    /// Opens (creating if needed) the data directory `dir`: loads its blocks, skipping
    /// and reporting unreadable ones, replays the WAL into the head (repairing a torn or
    /// corrupt tail unless read-only) and opens the WAL for writing.
    ///
    /// Head chunk files (`chunks_head/`) only spare the replay re-encoding samples: damaged
    /// ones are dropped with a warning (see `ChunkDiskMapper::open_with_options`) and
    /// their samples come from the WAL. After a clean shutdown the head is restored from
    /// its snapshot instead (see `head_snapshot`), reading neither the WAL nor the chunk
    /// files, when both are still exactly as the shutdown left them.
    ///
    /// With [`DbOptions::max_future`], samples further ahead than that of the replay's
    /// clock are dropped, with one warning, as the appender would refuse them now: a
    /// directory written by a Kiln without the bound must not open with a head whose
    /// newest time is years ahead (every current sample would be out of bounds). The
    /// replay's clock is the later of the system clock and the newest modification time
    /// of the WAL and head chunk files, so a clock set back since the samples were
    /// written (a machine that booted with a wrong clock) drops nothing they held.
    pub fn open(dir: impl AsRef<Path>, opts: DbOptions) -> Result<Db, DbError> {
        let dir = dir.as_ref().to_owned();
        if !opts.read_only {
            std::fs::create_dir_all(&dir).map_err(|e| DbError::io("creating", &dir, e))?;
        }
        let started = Instant::now();
        let (blocks, skipped) = load_blocks(&dir, opts.read_only)?;
        let mint = blocks.iter().map(|b| b.meta().min_time).min();
        let maxt = blocks.iter().map(|b| b.meta().max_time).max();
        if let (Some(mint), Some(maxt)) = (mint, maxt) {
            info!(blocks = blocks.len(), mint, maxt, skipped = skipped.len(), duration = ?started.elapsed(), "Blocks loaded");
        } else {
            info!(blocks = 0, skipped = skipped.len(), duration = ?started.elapsed(), "Blocks loaded");
        }
        let head_opts = HeadOptions {
            chunk_range: opts.chunk_range,
            max_future: opts.max_future,
            ..HeadOptions::default()
        };
        let replay_max = opts
            .max_future
            .map(|ahead| replay_clock(&dir).saturating_add(ahead));
        let wal_dir = dir.join("wal");

        let mut replay_head = Head::new(head_opts.clone());
        let min_valid = blocks.iter().map(|b| b.meta().max_time).max();
        if let Some(t) = min_valid {
            replay_head.set_min_valid_time(t);
        }
        // Only a read-write open adopts chunk files or restores a snapshot.
        let snapshot = if opts.read_only {
            None
        } else {
            super::head_snapshot::take(&dir, false)?
                .filter(|s| s.within(replay_max.unwrap_or(i64::MAX)))
        };
        let chunks_dir = dir.join("chunks_head");
        let restored = match snapshot {
            Some(snapshot) => {
                let started = Instant::now();
                // The chunk files are checked (read and summed) while the head is
                // restored from the snapshot; a restore whose files do not check out
                // is thrown away.
                let (disk, restore) = std::thread::scope(|scope| {
                    let files = &snapshot.files;
                    let chunks_dir = &chunks_dir;
                    let from = snapshot.chunks_from;
                    let checker =
                        scope.spawn(move || ChunkDiskMapper::open_trusted(chunks_dir, files, from));
                    let restore = super::head_snapshot::restore(
                        &replay_head,
                        &snapshot,
                        min_valid.unwrap_or(i64::MIN),
                    );
                    let disk = checker.join().unwrap_or_else(|_| {
                        Err(HeadChunksError::Io {
                            op: "checking",
                            path: chunks_dir.clone(),
                            source: std::io::Error::other("the checking thread panicked"),
                        })
                    });
                    (disk, restore)
                });
                match (
                    disk.map_err(|e| DbError::HeadChunkFiles(Box::new(e)))?,
                    restore,
                ) {
                    (Some((disk, files)), Ok(restored)) if files == restored.files => {
                        replay_head.attach_chunk_disk(disk);
                        info!(series = restored.series, chunks = restored.chunks, duration = ?started.elapsed(), "Head restored from the snapshot of the last clean shutdown; no WAL replay");
                        true
                    }
                    (disk, restore) => {
                        match (disk, restore) {
                            (_, Err(problem)) => warn!(
                                problem,
                                "the head snapshot does not decode; replaying the WAL"
                            ),
                            (None, Ok(_)) => info!(
                                "The last shutdown was clean, but the head chunk files changed since; replaying the WAL"
                            ),
                            (Some(_), Ok(_)) => warn!(
                                "the head snapshot does not name exactly the chunks in the chunk files; replaying the WAL"
                            ),
                        }
                        // Start over with an empty head and a full replay.
                        replay_head = Head::new(head_opts.clone());
                        if let Some(t) = min_valid {
                            replay_head.set_min_valid_time(t);
                        }
                        false
                    }
                }
            }
            None => false,
        };
        let mut disk_chunks = DiskChunks::default();
        if !opts.read_only && !restored {
            let chunks_started = Instant::now();
            let disk = ChunkDiskMapper::open(&chunks_dir)
                .map_err(|e| DbError::HeadChunkFiles(Box::new(e)))?;
            disk_chunks = load_disk_chunks(
                &disk,
                min_valid.unwrap_or(i64::MIN),
                replay_max.unwrap_or(i64::MAX),
            )?;
            // Whether open dropped damaged chunks (the WAL replay restores their samples).
            let lost_chunks = disk.lost_chunks();
            replay_head.attach_chunk_disk(disk);
            info!(
                lost_chunks,
                series = disk_chunks.len(),
                chunks = disk_chunks.values().map(|(c, _)| c.len()).sum::<usize>(),
                duration = ?chunks_started.elapsed(),
                "On-disk memory mappable chunks replay completed"
            );
        }
        if wal_dir.is_dir() && !restored {
            info!("Replaying WAL, this may take a while");
            let wal_started = Instant::now();
            let stats = replay_wal(
                &replay_head,
                &wal_dir,
                opts.read_only,
                disk_chunks,
                replay_max.unwrap_or(i64::MAX),
            )?;
            info!(
                segments = stats.segments,
                series = stats.series,
                samples = stats.samples,
                duration = ?wal_started.elapsed(),
                "WAL replay completed"
            );
            info!(
                series = stats.adopted_series,
                chunks = stats.adopted_chunks,
                "Head chunks adopted from chunks_head"
            );
        }
        let head = if opts.read_only {
            replay_head
        } else {
            let wal = Wal::open(
                &wal_dir,
                WalOptions {
                    segment_size: opts.wal_segment_size,
                    compression: opts.wal_compression,
                },
            )?;
            replay_head.attach_wal(wal);
            replay_head
        };
        debug!(dir = %dir.display(), blocks = blocks.len(), series = head.num_series(), duration = ?started.elapsed(), "TSDB opened");
        // Loading the blocks is the first reload of the block set.
        let metrics = super::DbMetrics::default();
        super::DbMetrics::inc(&metrics.reloads);
        Ok(Db {
            dir,
            opts,
            head,
            blocks: RwLock::new(blocks),
            skipped: Mutex::new(skipped),
            failed_merges: Mutex::new(Default::default()),
            retention_hold: RwLock::new(None),
            maintenance: Mutex::new(()),
            metrics,
        })
    }
}

/// Opens every block directory under `dir`, oldest first. Leftovers of interrupted
/// writes are removed (unless read-only); a block that fails to open is skipped and
/// reported, never fatal.
fn load_blocks(
    dir: &Path,
    read_only: bool,
) -> Result<(Vec<Arc<BlockReader>>, Vec<SkippedBlock>), DbError> {
    let mut blocks = Vec::new();
    let mut skipped = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && read_only => {
            return Err(DbError::io("opening data directory", dir, e));
        }
        Err(e) => return Err(DbError::io("listing", dir, e)),
    };
    let mut paths: Vec<PathBuf> = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| DbError::io("listing", dir, e))?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if TMP_SUFFIXES.iter().any(|s| name.ends_with(s)) {
            if !read_only && let Err(e) = std::fs::remove_dir_all(&path) {
                warn!(path = %path.display(), err = %e, "removing leftover block directory");
            }
            continue;
        }
        if path.is_dir() && ulid::Ulid::from_string(&name).is_ok() {
            paths.push(path);
        }
    }
    for path in paths {
        match BlockReader::open(&path) {
            Ok(b) => blocks.push(Arc::new(b)),
            Err(e) => {
                warn!(block = %path.display(), err = %e, "skipping unreadable block");
                skipped.push(SkippedBlock {
                    dir: path,
                    reason: e.to_string(),
                });
            }
        }
    }
    blocks.sort_by_key(|b| (b.meta().min_time, b.meta().max_time));
    Ok((blocks, skipped))
}

/// Full chunks of an earlier run found in `chunks_head/`, by series id: `(min, max, ref)`
/// in time order, and the newest sample they hold.
type DiskChunks = IntMap<(Vec<(i64, i64, u64)>, (i64, f64))>;

/// Reads the chunk files' index: every XOR chunk not older than `min_valid`, grouped by
/// series, up to the first chunk that ends after `max_valid` (the replay's future
/// bound). The WAL still holds these samples; adopting the chunks only saves
/// re-encoding them on start.
fn load_disk_chunks(
    disk: &ChunkDiskMapper,
    min_valid: i64,
    max_valid: i64,
) -> Result<DiskChunks, DbError> {
    let mut metas: IntMap<Vec<(i64, i64, u64)>> = IntMap::default();
    disk.iterate(|m| -> Result<(), HeadChunksError> {
        // Only in-order XOR chunks; Prometheus marks out-of-order chunks with the high bit.
        if m.encoding == Encoding::Xor.as_u8() && m.maxt >= min_valid && m.num_samples > 0 {
            metas
                .entry(m.series_ref)
                .or_default()
                .push((m.mint, m.maxt, m.chunk_ref));
        }
        Ok(())
    })
    .map_err(|e| DbError::HeadChunkFiles(Box::new(e)))?;
    let mut out = DiskChunks::with_capacity_and_hasher(metas.len(), Default::default());
    for (series, mut chunks) in metas {
        chunks.sort_unstable();
        // Chunks must not overlap; keep an ordered run from the oldest.
        let mut kept: Vec<(i64, i64, u64)> = Vec::with_capacity(chunks.len());
        for c in chunks {
            if c.1 > max_valid {
                // This chunk and every later one reach past the future bound: the WAL
                // replay keeps what of them is within it.
                break;
            }
            if kept.last().is_none_or(|l| c.0 > l.1) {
                kept.push(c);
            }
        }
        let Some(&(_, _, last_ref)) = kept.last() else {
            continue;
        };
        let bytes = disk
            .chunk(last_ref)
            .map_err(|e| DbError::HeadChunkFiles(Box::new(e)))?;
        let mut it = XorIterator::new(bytes.as_ref());
        let mut last = None;
        while it.next() {
            last = Some(it.at());
        }
        if it.err().is_some() {
            warn!(
                series,
                "undecodable chunk in chunks_head; replaying this series from the WAL only"
            );
            continue;
        }
        if let Some(last) = last {
            out.insert(series, (kept, last));
        }
    }
    Ok(out)
}

/// The clock a replay judges samples "too far in the future" by: the system clock, or
/// the newest modification time of the WAL and head chunk files when that is later.
/// Every sample was accepted by the clock of when it was written, which is at most the
/// time its file was last written; a clock set back since must not make those samples
/// look like they came from the future.
fn replay_clock(dir: &Path) -> i64 {
    let mut newest = kiln_model::calendar::now_ms();
    for sub in ["wal", "chunks_head"] {
        let Ok(entries) = std::fs::read_dir(dir.join(sub)) else {
            continue;
        };
        for modified in entries
            .flatten()
            .filter_map(|e| e.metadata().ok()?.modified().ok())
        {
            if let Ok(since) = modified.duration_since(std::time::UNIX_EPOCH) {
                newest = newest.max(i64::try_from(since.as_millis()).unwrap_or(i64::MAX));
            }
        }
    }
    newest
}

/// What a WAL replay read, for its log line.
#[derive(Debug, Default)]
struct ReplayStats {
    /// Segments read after it.
    segments: u64,
    /// Series records' series.
    series: u64,
    /// Samples appended to the head.
    samples: u64,
    /// Series that took over full chunks from `chunks_head/`, and those chunks.
    adopted_series: u64,
    adopted_chunks: u64,
    /// Samples dropped for being past the future bound, and the newest of them.
    future_dropped: u64,
    future_newest: i64,
}

/// Replays the newest checkpoint and the segments after it into `head`, adopting the
/// full chunks found on disk as each series is created.
fn replay_wal(
    head: &Head,
    wal_dir: &Path,
    read_only: bool,
    disk_chunks: DiskChunks,
    max_valid: i64,
) -> Result<ReplayStats, DbError> {
    let mut state = Replay {
        max_valid,
        head,
        by_wal_id: SeriesById::default(),
        disk_chunks,
        series: Vec::new(),
        samples: Vec::new(),
        stones: Vec::new(),
        unknown_refs: 0,
        stats: ReplayStats {
            future_newest: i64::MIN,
            ..ReplayStats::default()
        },
    };
    let mut first_segment = 0;
    if let Some((cp_dir, cp_index)) = checkpoint::last_checkpoint(wal_dir)? {
        let cp_started = Instant::now();
        let mut reader = WalReader::open(&cp_dir)?;
        // A corrupt checkpoint is not repairable by truncation: fail loudly.
        while let Some(rec) = reader.next_record()? {
            state.apply(rec);
        }
        first_segment = cp_index + 1;
        info!(checkpoint = cp_index, duration = ?cp_started.elapsed(), "WAL checkpoint loaded");
    }
    while let Some((lo, hi)) = segment_range(wal_dir)? {
        let start = first_segment.max(lo);
        if start > hi {
            break;
        }
        state.stats.segments = hi - start + 1;
        let mut reader = WalReader::open_range(wal_dir, Some(start), None)?;
        let err = loop {
            match reader.next_record() {
                Ok(Some(rec)) => state.apply(rec),
                Ok(None) => break None,
                Err(e) => break Some(e),
            }
        };
        match err {
            None => break,
            Some(e) if e.as_corruption().is_some() && !read_only => {
                warn!(err = %e, "WAL corruption; repairing by dropping everything after it");
                if let Some(c) = e.as_corruption() {
                    repair::repair(wal_dir, c)?;
                }
                // Re-read from the start: records before the damage are replayed again,
                // which is harmless (appends of known samples are ignored).
            }
            Some(e) if e.is_corruption() => {
                warn!(err = %e, "WAL corruption; read-only open stops replay here");
                break;
            }
            Some(e) => return Err(e.into()),
        }
    }
    if state.unknown_refs > 0 {
        warn!(
            samples = state.unknown_refs,
            "WAL samples for unknown series were dropped"
        );
    }
    if state.stats.future_dropped > 0 {
        warn!(
            samples = state.stats.future_dropped,
            newest = state.stats.future_newest,
            newest_accepted = max_valid,
            "WAL samples too far in the future were dropped (more than the max-future bound ahead of the clock)"
        );
    }
    Ok(state.stats)
}

/// Series by WAL reference during replay. References written by Kiln (and by
/// Prometheus) are small and dense, so they index a vector; a sparse outlier goes to a
/// map. Looking a series up for every replayed sample is the hot loop of a restart.
#[derive(Default)]
struct SeriesById {
    dense: Vec<Option<Arc<MemSeries>>>,
    sparse: IntMap<Arc<MemSeries>>,
}

impl SeriesById {
    /// References below this index the vector (8 bytes each).
    const DENSE_LIMIT: u64 = 1 << 26;

    fn insert(&mut self, id: u64, series: Arc<MemSeries>) {
        if id < Self::DENSE_LIMIT {
            let i = id as usize;
            if i >= self.dense.len() {
                self.dense.resize(i + 1, None);
            }
            self.dense[i] = Some(series);
        } else {
            self.sparse.insert(id, series);
        }
    }

    fn get(&self, id: u64) -> Option<&Arc<MemSeries>> {
        if id < Self::DENSE_LIMIT {
            self.dense.get(id as usize).and_then(Option::as_ref)
        } else {
            self.sparse.get(&id)
        }
    }
}

struct Replay<'h> {
    head: &'h Head,
    /// Samples after this are dropped (the future bound; `i64::MAX` for none).
    max_valid: i64,
    by_wal_id: SeriesById,
    disk_chunks: DiskChunks,
    series: Vec<RefSeries>,
    samples: Vec<RefSample>,
    stones: Vec<Stone>,
    unknown_refs: u64,
    stats: ReplayStats,
}

impl Replay<'_> {
    fn apply(&mut self, rec: &[u8]) {
        let range = self.head.options().chunk_range;
        let min_valid = self.head.min_valid_time();
        match record::record_type(rec) {
            RecordType::Series => {
                self.series.clear();
                if let Err(e) = record::decode_series(rec, &mut self.series) {
                    warn!(err = %e, "skipping undecodable WAL series record");
                    return;
                }
                self.stats.series += self.series.len() as u64;
                for s in self.series.drain(..) {
                    let series = self.head.create_with_id(s.id, s.labels);
                    if let Some((chunks, last)) = self.disk_chunks.remove(&s.id) {
                        self.stats.adopted_series += 1;
                        self.stats.adopted_chunks += chunks.len() as u64;
                        if let (Some(first), Some(newest)) = (chunks.first(), chunks.last()) {
                            self.head.note_sample_time(first.0);
                            self.head.note_sample_time(newest.1);
                        }
                        let adopted = series.data.lock().adopt_disk_chunks(&chunks, last);
                        self.head
                            .stats
                            .chunks_created
                            .fetch_add(adopted as u64, Ordering::Relaxed);
                    }
                    self.by_wal_id.insert(s.id, series);
                }
            }
            RecordType::Samples => {
                self.samples.clear();
                if let Err(e) = record::decode_samples(rec, &mut self.samples) {
                    warn!(err = %e, "skipping undecodable WAL samples record");
                    return;
                }
                let (mut lo, mut hi) = (i64::MAX, i64::MIN);
                let mut new_chunks = 0u64;
                for s in &self.samples {
                    if s.t < min_valid {
                        continue;
                    }
                    if s.t > self.max_valid {
                        self.stats.future_dropped += 1;
                        self.stats.future_newest = self.stats.future_newest.max(s.t);
                        continue;
                    }
                    let Some(series) = self.by_wal_id.get(s.id) else {
                        self.unknown_refs += 1;
                        continue;
                    };
                    let done = series.data.lock().append(
                        series.id,
                        s.t,
                        s.v,
                        range,
                        self.head.chunk_disk.as_ref(),
                    );
                    if done.stored() {
                        lo = lo.min(s.t);
                        hi = hi.max(s.t);
                        self.stats.samples += 1;
                    }
                    if done == Appended::NewChunk {
                        new_chunks += 1;
                    }
                }
                self.head
                    .stats
                    .chunks_created
                    .fetch_add(new_chunks, Ordering::Relaxed);
                if lo <= hi {
                    self.head.note_sample_time(lo);
                    self.head.note_sample_time(hi);
                }
            }
            RecordType::Tombstones => {
                self.stones.clear();
                if let Err(e) = record::decode_tombstones(rec, &mut self.stones) {
                    warn!(err = %e, "skipping undecodable WAL tombstones record");
                    return;
                }
                for st in self.stones.drain(..) {
                    if let Some(series) = self.by_wal_id.get(st.id) {
                        self.head.add_tombstone(series.id, st.mint, st.maxt);
                    }
                }
            }
            _ => {}
        }
    }
}
