//! The head: the in-memory part of the TSDB that receives every append.
//!
//! Write path: an [`HeadAppender`] checks each sample's time against the head's bounds
//! (not older than the minimum valid time; with [`HeadOptions::max_future`], not further
//! ahead of the clock than that), looks series up (or creates them) and checks the
//! sample against the series' newest sample; at commit it logs new series and the
//! samples to the WAL (when the head has one) and only then applies the samples to the
//! series, so a sample visible to a reader is always in the WAL.
//!
//! Read path: a [`HeadQuerier`] resolves matchers through the postings index, then
//! snapshots the chunks of each matching series (cheap `Arc` clones of closed chunks and
//! a copy of the open chunk's bytes) so iteration holds no lock.
//!
//! Lock order, outermost first: a stripe lock, then the postings lock, then one series'
//! data lock; the WAL lock is taken before series locks at commit. No code holds two
//! stripe locks or two series locks at once.

mod appender;
mod cardinality;
pub(crate) mod chunk_disk;
mod id_index;
mod postings;
mod querier;
pub(crate) mod series;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use kiln_model::{Labels, Timestamp};
use parking_lot::{Mutex, RwLock};

pub use appender::HeadAppender;
pub use cardinality::{HeadCardinality, Stat};
pub use querier::HeadQuerier;

use crate::block::tombstones::Interval;
use crate::wal::Wal;
use chunk_disk::{ChunkDiskMapper, EncodedChunks};
use id_index::IdIndex;
pub(crate) use postings::MemPostings;
use series::{ChunkLocation, ClosedChunk, MemSeries};

/// Default chunk range: the span of one block cut from the head (2 h).
pub const DEFAULT_CHUNK_RANGE: i64 = 2 * 60 * 60 * 1000;

/// Options of the head.
#[derive(Debug, Clone)]
pub struct HeadOptions {
    /// Width of the block ranges the head is cut into, ms. Chunks never cross a multiple
    /// of it.
    pub chunk_range: i64,
    /// Number of lock stripes for the series maps (a power of two).
    pub stripes: usize,
    /// Refuse samples more than this many ms ahead of the clock
    /// ([`StorageError::TooFarInFuture`](kiln_storage::StorageError::TooFarInFuture)).
    /// `None` accepts any timestamp: tools that write historic or synthetic data
    /// (backfill, test loaders) leave it off; the server turns it on
    /// (`--storage.tsdb.max-future`), because a sample half a chunk range or more in
    /// the future makes every current sample out of bounds.
    pub max_future: Option<i64>,
}

impl Default for HeadOptions {
    fn default() -> Self {
        HeadOptions {
            chunk_range: DEFAULT_CHUNK_RANGE,
            stripes: 256,
            max_future: None,
        }
    }
}

/// A hasher for keys that are already well-spread integers (label-set hashes) or small
/// sequential ids: one multiply instead of SipHash on the append path.
#[derive(Default, Clone, Copy)]
pub(crate) struct IntHasher(u64);

impl std::hash::Hasher for IntHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
    }

    fn write_u64(&mut self, n: u64) {
        // Fibonacci hashing spreads sequential ids over the table's high bits.
        self.0 = n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

pub(crate) type IntMap<V> = HashMap<u64, V, std::hash::BuildHasherDefault<IntHasher>>;

/// One lock stripe of the series maps.
///
/// `by_hash` holds bare series pointers keyed by their label set's hash, which each
/// series keeps ([`MemSeries::hash`]): 8 bytes an entry, where a map from hash to a
/// vector of series took 32. Series whose label sets hash alike are separate entries
/// told apart by their labels.
struct Stripe {
    by_hash: hashbrown::HashTable<Arc<MemSeries>>,
    by_id: IdIndex,
}

impl Stripe {
    /// A stripe of a head with `stripes` stripes.
    fn new(stripes: usize) -> Stripe {
        Stripe {
            by_hash: hashbrown::HashTable::new(),
            by_id: IdIndex::new(stripes),
        }
    }
}

/// Counters the head keeps about itself, exported by the server under Prometheus's
/// `prometheus_tsdb_head_*` names.
#[derive(Debug, Default)]
pub struct HeadStats {
    pub samples_appended: AtomicU64,
    pub out_of_order_rejected: AtomicU64,
    pub duplicate_rejected: AtomicU64,
    pub out_of_bounds_rejected: AtomicU64,
    pub series_created: AtomicU64,
    pub series_removed: AtomicU64,
    /// Chunks started (including those adopted from `chunks_head/` at open) and chunks
    /// dropped by truncation; their difference is the number of chunks in the head.
    pub chunks_created: AtomicU64,
    pub chunks_removed: AtomicU64,
    /// Truncations of the head after a block was cut (`prometheus_tsdb_head_truncations_total`).
    pub truncations: AtomicU64,
    /// Seconds per truncation's garbage collection of chunks and series
    /// (`prometheus_tsdb_head_gc_duration_seconds`).
    pub gc_duration: crate::stats::Summary,
}

impl HeadStats {
    /// Chunks in the head now: open chunks and full ones, in memory or in `chunks_head/`.
    pub fn chunks(&self) -> u64 {
        let created = self.chunks_created.load(Ordering::Relaxed);
        created.saturating_sub(self.chunks_removed.load(Ordering::Relaxed))
    }
}

/// The in-memory head. See the module docs.
pub struct Head {
    opts: HeadOptions,
    stripes: Box<[RwLock<Stripe>]>,
    postings: RwLock<MemPostings>,
    next_id: AtomicU64,
    /// Oldest and newest sample times; `i64::MAX` / `i64::MIN` while empty.
    min_time: AtomicI64,
    max_time: AtomicI64,
    /// Samples before this time are rejected (already persisted in blocks).
    min_valid_time: AtomicI64,
    pub(crate) wal: Option<Mutex<Wal>>,
    /// Where full chunks go (`chunks_head/`); `None` keeps them in memory.
    pub(crate) chunk_disk: Option<ChunkDiskMapper>,
    /// Serializes log-then-apply of commits when there is a WAL.
    commit_order: Mutex<()>,
    /// WAL series ids that replay mapped onto another id with the same labels.
    wal_aliases: Mutex<HashMap<u64, u64>>,
    /// In-flight markers of live appenders (oldest uncommitted timestamp each).
    appenders: Mutex<Vec<std::sync::Weak<AtomicI64>>>,
    /// Buffers of dropped appenders, for the next ones.
    appender_buffers: Mutex<Vec<appender::AppenderBuffers>>,
    /// Deleted time ranges per series id, hidden from queriers.
    tombstones: RwLock<HashMap<u64, Vec<Interval>>>,
    pub stats: HeadStats,
}

impl Head {
    /// A head without a WAL (used by backfill and tests).
    pub fn new(opts: HeadOptions) -> Head {
        Head::with_wal(opts, None)
    }

    /// A head that logs every commit to `wal`.
    pub fn with_wal(opts: HeadOptions, wal: Option<Wal>) -> Head {
        let n = opts.stripes.max(1).next_power_of_two();
        Head {
            stripes: (0..n).map(|_| RwLock::new(Stripe::new(n))).collect(),
            opts,
            postings: RwLock::new(MemPostings::default()),
            next_id: AtomicU64::new(1),
            min_time: AtomicI64::new(i64::MAX),
            max_time: AtomicI64::new(i64::MIN),
            min_valid_time: AtomicI64::new(i64::MIN),
            wal: wal.map(Mutex::new),
            chunk_disk: None,
            commit_order: Mutex::new(()),
            wal_aliases: Mutex::new(HashMap::new()),
            appenders: Mutex::new(Vec::new()),
            appender_buffers: Mutex::new(Vec::new()),
            tombstones: RwLock::new(HashMap::new()),
            stats: HeadStats::default(),
        }
    }

    /// Registers a new appender's in-flight marker (see [`HeadAppender`]).
    pub(crate) fn register_appender(&self) -> Arc<AtomicI64> {
        let marker = Arc::new(AtomicI64::new(i64::MAX));
        let mut live = self.appenders.lock();
        live.retain(|w| w.strong_count() > 0);
        live.push(Arc::downgrade(&marker));
        marker
    }

    /// Blocks until no appender holds an uncommitted sample older than `t`. Callers first
    /// raise the minimum valid time to at least `t`, so no new such sample can appear;
    /// then the head's data before `t` can be persisted and dropped safely.
    pub(crate) fn wait_for_appenders_below(&self, t: Timestamp) {
        loop {
            let busy = {
                let mut live = self.appenders.lock();
                live.retain(|w| w.strong_count() > 0);
                live.iter()
                    .filter_map(std::sync::Weak::upgrade)
                    .any(|m| m.load(Ordering::SeqCst) < t)
            };
            if !busy {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    /// Gives the head a store for full chunks; chunks cut from now on go there.
    pub(crate) fn attach_chunk_disk(&mut self, disk: ChunkDiskMapper) {
        self.chunk_disk = Some(disk);
    }

    /// Gives the head its WAL once replay is done.
    pub(crate) fn attach_wal(&mut self, wal: Wal) {
        self.wal = Some(Mutex::new(wal));
    }

    /// Hides samples of series `id` in `[mint, maxt]` from queriers.
    pub(crate) fn add_tombstone(&self, id: u64, mint: Timestamp, maxt: Timestamp) {
        let mut ts = self.tombstones.write();
        let list = ts.entry(id).or_default();
        crate::block::tombstones::add_interval(list, Interval { mint, maxt });
    }

    /// Deleted intervals of series `id`.
    pub(crate) fn tombstones_for(&self, id: u64) -> Vec<Interval> {
        self.tombstones.read().get(&id).cloned().unwrap_or_default()
    }

    pub fn options(&self) -> &HeadOptions {
        &self.opts
    }

    /// Opens a write transaction.
    pub fn appender(&self) -> HeadAppender<'_> {
        HeadAppender::new(self)
    }

    /// A querier over `[mint, maxt]`.
    pub fn querier(&self, mint: Timestamp, maxt: Timestamp) -> HeadQuerier<'_> {
        HeadQuerier::new(self, mint, maxt)
    }

    /// A lower bound of the oldest sample time (exact until the head is first
    /// truncated), `None` when nothing was ever appended.
    pub fn min_time(&self) -> Option<Timestamp> {
        let t = self.min_time.load(Ordering::Acquire);
        (t != i64::MAX).then_some(t)
    }

    /// Newest sample time, `None` when empty.
    pub fn max_time(&self) -> Option<Timestamp> {
        let t = self.max_time.load(Ordering::Acquire);
        (t != i64::MIN).then_some(t)
    }

    /// Samples before this are rejected as out of bounds.
    pub fn min_valid_time(&self) -> Timestamp {
        self.min_valid_time.load(Ordering::SeqCst)
    }

    pub(crate) fn set_min_valid_time(&self, t: Timestamp) {
        self.min_valid_time.fetch_max(t, Ordering::SeqCst);
    }

    /// Number of series in memory.
    pub fn num_series(&self) -> usize {
        self.stripes.iter().map(|s| s.read().by_id.len()).sum()
    }

    /// The stripe whose `by_hash` holds label-set hash `hash`: chosen by bits 32 and
    /// up, which the stripe's table uses for neither its bucket (the low bits) nor its
    /// control byte (the top seven). Choosing by the low bits, as this once did, gave
    /// every series of a stripe the same low bucket bits: a 256th of the buckets were
    /// probe starts, probes ran long, and each control-byte match on the way read
    /// another series's labels from memory (half of a scale-16 restore's inserting).
    fn stripe_for(&self, hash: u64) -> &RwLock<Stripe> {
        &self.stripes[((hash >> 32) as usize) & (self.stripes.len() - 1)]
    }

    /// The stripe whose `by_id` holds series `id` (see [`id_index`] for why ids are
    /// striped in blocks).
    fn id_stripe(&self, id: u64) -> &RwLock<Stripe> {
        &self.stripes[id_index::id_stripe(id, self.stripes.len())]
    }

    /// The series with these labels, creating it when absent. Returns whether it was
    /// created by this call.
    pub(crate) fn get_or_create(&self, labels: &Labels) -> (Arc<MemSeries>, bool) {
        let hash = labels.hash();
        if let Some(s) = self.lookup(hash, labels) {
            return (s, false);
        }
        let id = self.next_id.fetch_add(1, Ordering::AcqRel);
        self.insert(hash, id, labels.clone())
    }

    fn lookup(&self, hash: u64, labels: &Labels) -> Option<Arc<MemSeries>> {
        let stripe = self.stripe_for(hash).read();
        stripe.by_hash.find(hash, |s| s.labels == *labels).cloned()
    }

    /// Inserts a series with a known id (WAL replay) or a fresh one. If another thread
    /// created the same labels first, that series wins.
    fn insert(&self, hash: u64, id: u64, labels: Labels) -> (Arc<MemSeries>, bool) {
        let series = {
            let mut stripe = self.stripe_for(hash).write();
            if let Some(s) = stripe.by_hash.find(hash, |s| {
                s.labels == labels && !s.removed.load(Ordering::Acquire)
            }) {
                return (s.clone(), false);
            }
            let s = Arc::new(MemSeries::new(id, hash, labels));
            stripe.by_hash.insert_unique(hash, s.clone(), |s| s.hash);
            s
        };
        self.id_stripe(id).write().by_id.insert(id, series.clone());
        // Postings need increasing ids: take the lock and add in id order. Ids from
        // concurrent creators may arrive out of order, so insert sorted.
        self.postings.write().add(id, &series.labels);
        self.stats.series_created.fetch_add(1, Ordering::Relaxed);
        (series, true)
    }

    /// Makes room in the series tables for `n` more series spread evenly over the
    /// stripes (a restore knows how many it brings: the tables then never rehash).
    pub(crate) fn reserve_series(&self, n: usize) {
        let per_stripe = n / self.stripes.len() + n / self.stripes.len() / 16 + 1;
        for stripe in self.stripes.iter() {
            let mut st = stripe.write();
            st.by_hash.reserve(per_stripe, |s| s.hash);
            st.by_id.reserve(per_stripe);
        }
    }

    /// Adds a series restored from a head snapshot to the series tables, leaving the
    /// postings to [`install_postings`](Self::install_postings): a restore builds those
    /// on another thread. Returns `false`, adding nothing, when the head already has a
    /// series with its labels (a snapshot written from a head never holds a label set
    /// twice). The caller restores into an empty head, in increasing id order (so no id
    /// can be there already; checked in debug builds).
    pub(crate) fn insert_restored(&self, series: &Arc<MemSeries>) -> bool {
        debug_assert!(
            !self.series_exists(series.id),
            "id {} restored twice",
            series.id
        );
        // One stripe lock at a time: the id's and the hash's stripe may be the same.
        // Nothing else writes to the head while it is restored.
        {
            let mut stripe = self.stripe_for(series.hash).write();
            // One probe finds a duplicate or the free slot.
            match stripe
                .by_hash
                .entry(series.hash, |s| s.labels == series.labels, |s| s.hash)
            {
                hashbrown::hash_table::Entry::Occupied(_) => return false,
                hashbrown::hash_table::Entry::Vacant(slot) => {
                    slot.insert(series.clone());
                }
            }
        }
        self.id_stripe(series.id)
            .write()
            .by_id
            .insert(series.id, series.clone());
        series.logged.store(true, Ordering::Release);
        self.next_id.fetch_max(series.id + 1, Ordering::AcqRel);
        self.stats.series_created.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// The postings index, read-locked (writers of new series wait).
    pub(crate) fn postings(&self) -> parking_lot::RwLockReadGuard<'_, MemPostings> {
        self.postings.read()
    }

    /// Replaces the postings with `postings`, built from the series a restore inserted
    /// with [`insert_restored`](Self::insert_restored).
    pub(crate) fn install_postings(&self, postings: MemPostings) {
        *self.postings.write() = postings;
    }

    /// Creates a series with the id recorded in the WAL. Keeps `next_id` above it.
    pub(crate) fn create_with_id(&self, id: u64, labels: Labels) -> Arc<MemSeries> {
        self.next_id.fetch_max(id + 1, Ordering::AcqRel);
        let hash = labels.hash();
        // `insert` returns the series already there with these labels, if any: one
        // look into the stripe instead of a lookup and then an insert (replay and a
        // snapshot restore do this for every series).
        let s = self.insert(hash, id, labels).0;
        if s.id != id {
            // The WAL holds this label set under two ids (a series that went away and
            // came back): remember the alias so that checkpoints keep its records.
            self.wal_aliases.lock().insert(id, s.id);
        }
        s.logged.store(true, Ordering::Release);
        s
    }

    /// Whether series `id` is in the head.
    pub(crate) fn series_exists(&self, id: u64) -> bool {
        self.id_stripe(id).read().by_id.contains(id)
    }

    /// Whether the WAL's series id `id` still refers to a series in the head, directly
    /// or as an alias found during replay. WAL checkpoints keep exactly those.
    pub(crate) fn wal_id_live(&self, id: u64) -> bool {
        if self.series_exists(id) {
            return true;
        }
        let alias = self.wal_aliases.lock().get(&id).copied();
        alias.is_some_and(|head_id| self.series_exists(head_id))
    }

    /// The series with this id.
    pub(crate) fn series_by_id(&self, id: u64) -> Option<Arc<MemSeries>> {
        self.id_stripe(id).read().by_id.get(id).cloned()
    }

    pub(crate) fn note_sample_time(&self, t: Timestamp) {
        self.min_time.fetch_min(t, Ordering::AcqRel);
        self.max_time.fetch_max(t, Ordering::AcqRel);
    }

    /// Drops every chunk older than `mint` and the series left empty; returns the ids of
    /// the removed series. Called after a block covering everything before `mint` has
    /// been persisted.
    pub(crate) fn truncate_before(&self, mint: Timestamp) -> HashSet<u64> {
        let started = std::time::Instant::now();
        self.stats.truncations.fetch_add(1, Ordering::Relaxed);
        self.set_min_valid_time(mint);
        let mut dead = HashSet::new();
        let mut chunks_dropped = 0u64;
        for stripe in self.stripes.iter() {
            let all: Vec<Arc<MemSeries>> = stripe.read().by_id.values().cloned().collect();
            for s in all {
                let mut d = s.data.lock();
                let (dropped, empty) = d.truncate_before(mint);
                chunks_dropped += dropped as u64;
                // A series with uncommitted samples stays, even if empty: its appender
                // is about to fill it.
                if empty && d.pending_commits == 0 {
                    s.removed.store(true, Ordering::Release);
                    dead.insert(s.id);
                }
            }
        }
        self.stats
            .chunks_removed
            .fetch_add(chunks_dropped, Ordering::Relaxed);
        for stripe in self.stripes.iter() {
            let mut st = stripe.write();
            st.by_id.retain(|id| !dead.contains(&id));
            st.by_hash.retain(|s| !dead.contains(&s.id));
        }
        self.postings.write().remove(&dead);
        self.tombstones.write().retain(|id, _| !dead.contains(id));
        if let Some(disk) = &self.chunk_disk
            && let Err(e) = disk.truncate(mint)
        {
            tracing::warn!(err = %e, "deleting old head chunk files");
        }
        self.stats
            .series_removed
            .fetch_add(dead.len() as u64, Ordering::Relaxed);
        // Everything before `mint` is gone, and concurrent commits only add samples at or
        // after it (it is now the minimum valid time): `mint` is a safe lower bound.
        self.min_time.fetch_max(mint, Ordering::AcqRel);
        self.stats
            .gc_duration
            .observe(started.elapsed().as_secs_f64());
        dead
    }

    /// Time of the oldest sample in the head, from a look at every series; `None` when
    /// no series holds a sample.
    fn oldest_sample(&self) -> Option<Timestamp> {
        let mut oldest: Option<Timestamp> = None;
        for stripe in self.stripes.iter() {
            for s in stripe.read().by_id.values() {
                if let Some(t) = s.data.lock().oldest_time() {
                    oldest = Some(oldest.map_or(t, |o| o.min(t)));
                }
            }
        }
        oldest
    }

    /// Moves the head's oldest-time bound ([`min_time`](Self::min_time)) forward to its
    /// oldest sample when whole chunk ranges lie between the two, so compaction jumps
    /// over empty ranges instead of cutting them one at a time (after a gap in the data,
    /// or with a sample far ahead of the rest, that would be thousands of rounds, each
    /// with a WAL checkpoint). Returns whether the bound moved into a later range.
    ///
    /// Never past the start of the appendable window (half a chunk range behind the
    /// newest sample, or the minimum valid time if later), as Prometheus's head
    /// truncation: the minimum valid time is raised to the new bound first, appenders
    /// still holding older samples are waited for, and the oldest sample is looked up
    /// again, so no sample can ever be older than the bound. Samples between the old
    /// and the new bound are refused as out of bounds from then on; none is in the head,
    /// and all of them are older than an appender of now accepts anyway.
    pub(crate) fn skip_empty_ranges(&self) -> bool {
        let (Some(min), Some(max)) = (self.min_time(), self.max_time()) else {
            return false;
        };
        let range = self.opts.chunk_range.max(1);
        let appendable = self
            .min_valid_time()
            .max(max.saturating_sub(self.opts.chunk_range / 2));
        let bound = self
            .oldest_sample()
            .map_or(appendable, |t| t.min(appendable));
        if bound.div_euclid(range) <= min.div_euclid(range) {
            return false;
        }
        self.set_min_valid_time(bound);
        self.wait_for_appenders_below(bound);
        let bound = self.oldest_sample().map_or(bound, |t| t.min(bound));
        self.min_time.fetch_max(bound, Ordering::AcqRel);
        bound.div_euclid(range) > min.div_euclid(range)
    }

    /// Calls `f` with every series, by id, without cloning them: the stripes stay
    /// read-locked while `f` runs, so `f` must not create or remove series (a shutdown
    /// lists them this way to write their open chunks and the snapshot).
    pub(crate) fn with_series_by_id<R>(&self, f: impl FnOnce(&[&MemSeries]) -> R) -> R {
        let stripes: Vec<_> = self.stripes.iter().map(|s| s.read()).collect();
        let mut by_id: Vec<(u64, &MemSeries)> =
            Vec::with_capacity(stripes.iter().map(|s| s.by_id.len()).sum());
        for s in &stripes {
            by_id.extend(s.by_id.entries().map(|(id, series)| (id, &**series)));
        }
        // Sorted by the id beside each series, not read through it: no cache miss a
        // comparison.
        by_id.sort_unstable_by_key(|(id, _)| *id);
        let series: Vec<&MemSeries> = by_id.into_iter().map(|(_, s)| s).collect();
        f(&series)
    }

    /// The id the next new series gets.
    pub(crate) fn next_series_id(&self) -> u64 {
        self.next_id.load(Ordering::Acquire)
    }

    /// Keeps the next new series' id at `id` or above.
    pub(crate) fn raise_next_series_id(&self, id: u64) {
        self.next_id.fetch_max(id, Ordering::AcqRel);
    }

    /// WAL ids replay mapped onto another series with the same labels, as
    /// `(wal id, head id)`.
    pub(crate) fn wal_aliases(&self) -> Vec<(u64, u64)> {
        self.wal_aliases
            .lock()
            .iter()
            .map(|(&w, &h)| (w, h))
            .collect()
    }

    /// Records that WAL id `wal_id` names head series `head_id`.
    pub(crate) fn add_wal_alias(&self, wal_id: u64, head_id: u64) {
        self.wal_aliases.lock().insert(wal_id, head_id);
    }

    /// Every deleted interval, as `(series id, interval)`.
    pub(crate) fn all_tombstones(&self) -> Vec<(u64, Interval)> {
        let ts = self.tombstones.read();
        ts.iter()
            .flat_map(|(&id, list)| list.iter().map(move |&iv| (id, iv)))
            .collect()
    }

    /// Every series, in no particular order.
    pub(crate) fn all_series(&self) -> Vec<Arc<MemSeries>> {
        let mut out = Vec::new();
        for stripe in self.stripes.iter() {
            out.extend(stripe.read().by_id.values().cloned());
        }
        out
    }
}

impl kiln_storage::Appendable for Head {
    fn appender(&self) -> Box<dyn kiln_storage::Appender + '_> {
        Box::new(Head::appender(self))
    }
}

impl kiln_storage::Queryable for Head {
    fn querier(
        &self,
        mint: Timestamp,
        maxt: Timestamp,
    ) -> Result<Box<dyn kiln_storage::Querier + '_>, kiln_storage::StorageError> {
        Ok(Box::new(Head::querier(self, mint, maxt)))
    }
}

/// Writes every open chunk of `series` to `disk`, for a clean shutdown (see
/// `Db::close`): the records are encoded on up to four threads, each storing a few
/// thousand at a time under the files' lock. Returns, for each of `series` in
/// order, the chunk its open chunk became (`None` for a series without one), or
/// `None` when a write failed (the next start then replays the WAL). The series are
/// left as they are.
pub(crate) fn persist_open_chunks(
    series: &[&MemSeries],
    disk: &ChunkDiskMapper,
) -> Option<Vec<Option<ClosedChunk>>> {
    if disk.has_failed() {
        return None;
    }
    const PIECE: usize = 4096;
    let mut out: Vec<Option<ClosedChunk>> = vec![None; series.len()];
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 4);
    let per_thread = series.len().div_ceil(threads).max(1);
    let persist = |series: &[&MemSeries], out: &mut [Option<ClosedChunk>]| {
        let mut encoded = EncodedChunks::default();
        let mut ranges = Vec::with_capacity(PIECE);
        for (series, out) in series.chunks(PIECE).zip(out.chunks_mut(PIECE)) {
            encoded.clear();
            ranges.clear();
            for (i, s) in series.iter().enumerate() {
                match s.data.lock().encode_open(s.id, disk, &mut encoded) {
                    Ok(Some(range)) => ranges.push((i, range)),
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(series = s.id, err = %e, "writing an open chunk at shutdown failed; the next start replays the WAL");
                        return false;
                    }
                }
            }
            let refs = match disk.write_encoded(&encoded) {
                Ok(refs) => refs,
                Err(e) => {
                    tracing::warn!(err = %e, "writing the open chunks at shutdown failed; the next start replays the WAL");
                    return false;
                }
            };
            for ((i, (min_time, max_time)), r) in ranges.iter().zip(refs) {
                out[*i] = Some(ClosedChunk {
                    min_time: *min_time,
                    max_time: *max_time,
                    loc: ChunkLocation::Disk(r),
                });
            }
        }
        true
    };
    let all = std::thread::scope(|scope| {
        let workers: Vec<_> = series
            .chunks(per_thread)
            .zip(out.chunks_mut(per_thread))
            .map(|(series, out)| scope.spawn(move || persist(series, out)))
            .collect();
        // Every worker is joined (one not joined that panicked would panic the scope);
        // a panicking worker counts as a failed write.
        let mut all = true;
        for w in workers {
            all &= w.join().unwrap_or(false);
        }
        all
    });
    all.then_some(out)
}
