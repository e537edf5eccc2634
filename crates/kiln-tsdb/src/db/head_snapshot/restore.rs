//! Restoring a head from its snapshot (see the parent module for the format).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::{BATCH, Cursor, Snapshot, put_uvarint};
use crate::head::chunk_disk::ChunkFingerprint;
use crate::head::series::MemSeries;
use crate::head::{Head, MemPostings};

/// One series of a batch as stored, its label pairs (numbers in the pair table) and
/// chunk entries `(mint, maxt, ref)` decoded.
struct StoredSeries<'a> {
    id: u64,
    /// The hash of its labels, which the restore checks the rebuilt labels against.
    hash: u64,
    pairs: &'a [u32],
    chunks: &'a [(i64, i64, u64)],
    last: (i64, f64),
}

/// Scratch space for [`for_each_series`], reused from series to series.
#[derive(Default)]
struct SeriesScratch {
    pairs: Vec<u32>,
    entries: Vec<(i64, i64, u64)>,
}

/// Walks one batch: calls `f` with each series, in order. Differences are taken and
/// added back wrapping, so every value comes back exactly; damaged ones are caught by
/// the chunk fingerprint, the pair table's bounds and the label hash.
fn for_each_series(
    batch: &[u8],
    scratch: &mut SeriesScratch,
    mut f: impl FnMut(StoredSeries<'_>) -> Result<(), &'static str>,
) -> Result<(), &'static str> {
    let mut c = Cursor { rest: batch };
    // At least an id, a hash, a pair count and a chunk count each.
    let n = c.count(11)?;
    let mut id = 0u64;
    for i in 0..n {
        let gap = c.uvarint()?;
        if i > 0 && gap == 0 {
            return Err("series not in increasing id order");
        }
        id = id.checked_add(gap).ok_or("series id out of range")?;
        let hash = c.u64()?;
        let k = c.uvarint()?;
        if k > c.rest.len() as u64 {
            return Err("count past the end");
        }
        scratch.pairs.clear();
        let mut pair = 0u32;
        for j in 0..k {
            let gap = c.uvarint()?;
            if j > 0 && gap == 0 {
                return Err("label pairs not in increasing order");
            }
            pair = u32::try_from(gap)
                .ok()
                .and_then(|g| pair.checked_add(g))
                .ok_or("label pair out of range")?;
            scratch.pairs.push(pair);
        }
        // At least three bytes an entry.
        let k = c.uvarint()?;
        if k > c.rest.len() as u64 / 3 {
            return Err("count past the end");
        }
        scratch.entries.clear();
        let (mut maxt, mut chunk_ref) = (0i64, 0u64);
        for _ in 0..k {
            let mint = maxt.wrapping_add(c.varint()?);
            maxt = mint.wrapping_add(c.uvarint()? as i64);
            chunk_ref = chunk_ref.wrapping_add(c.varint()? as u64);
            scratch.entries.push((mint, maxt, chunk_ref));
        }
        let last = if k > 0 {
            (maxt.wrapping_add(c.varint()?), f64::from_bits(c.u64()?))
        } else {
            (i64::MIN, f64::NAN)
        };
        f(StoredSeries {
            id,
            hash,
            pairs: &scratch.pairs,
            chunks: &scratch.entries,
            last,
        })?;
    }
    if !c.rest.is_empty() {
        return Err("trailing bytes in a batch");
    }
    Ok(())
}

/// What the building of a snapshot's series found, for the head's counters.
#[derive(Default)]
struct Decoded {
    series: u64,
    chunks: u64,
    /// Oldest and newest sample time of the kept chunks (`None`: no chunk kept).
    range: Option<(i64, i64)>,
    /// Of every chunk the snapshot names (kept or not), to hold against the files.
    files: ChunkFingerprint,
}

/// What [`restore`] restored.
pub(in crate::db) struct Restored {
    pub(in crate::db) series: u64,
    pub(in crate::db) chunks: u64,
    /// Of every chunk the snapshot names: the caller holds it against the one
    /// [`ChunkDiskMapper::open_trusted`](crate::head::chunk_disk::ChunkDiskMapper::open_trusted)
    /// took of the files, and throws the restore away if they differ.
    pub(in crate::db) files: ChunkFingerprint,
}

/// Restores `snapshot` into `head` (whose chunk files were opened from its extents):
/// creates every series with its chunks, the aliases and the tombstones. Chunks ending
/// before `min_valid` (covered by blocks since) are left out, as a replay would. Returns
/// the number of series and chunks restored and the fingerprint of the chunks named.
///
/// Three threads at once: one builds the series batch by batch (labels from the pair
/// table, checked against their stored hash; chunk list; newest sample), this one adds
/// them to the head's series tables, and a third files each series' id under its pairs
/// into a postings index, which is installed at the end. A batch or pair table that
/// does not decode, labels that are not the ones written, or a series whose id or
/// labels the head already has (the checksum held, so only a bug writes any of these)
/// is an error: the head is then partly restored and the caller must not use it.
pub(in crate::db) fn restore(
    head: &Head,
    snapshot: &Snapshot,
    min_valid: i64,
) -> Result<Restored, &'static str> {
    head.raise_next_series_id(snapshot.next_series_id);
    let bytes = &snapshot.bytes;
    let batches = &snapshot.batches;
    let pairs = decode_pairs(&bytes[snapshot.pairs.clone()])?;
    // Every batch but the last holds BATCH series.
    let at_most = batches.len() * BATCH;
    head.reserve_series(at_most);
    let (to_insert, inserts) = std::sync::mpsc::sync_channel::<Vec<Arc<MemSeries>>>(4);
    let (to_index, indexes) = std::sync::mpsc::sync_channel::<Vec<(u32, u64)>>(4);
    let decoded = std::thread::scope(|scope| -> Result<Decoded, &'static str> {
        let pairs = &pairs;
        let builder = scope
            .spawn(move || build_series(bytes, batches, pairs, min_valid, to_insert, to_index));
        let indexer = scope.spawn(move || index_series(pairs, indexes));
        let mut inserted_all = true;
        let mut ids_increase = true;
        let mut all: Vec<u64> = Vec::with_capacity(at_most);
        // Leaving the loop drops the receiver, which stops the builder if this stopped early.
        for batch in inserts {
            // Ids strictly increasing: none is restored twice (the head starts empty).
            for s in &batch {
                ids_increase &= all.last().is_none_or(|&last| last < s.id);
                if !ids_increase {
                    break;
                }
                all.push(s.id);
            }
            inserted_all = ids_increase && batch.iter().all(|s| head.insert_restored(s));
            if !inserted_all {
                break;
            }
        }
        let decoded = builder
            .join()
            .unwrap_or(Err("the building thread panicked"));
        let postings = indexer
            .join()
            .unwrap_or(Err("the indexing thread panicked"));
        let (decoded, mut postings) = (decoded?, postings?);
        if !ids_increase {
            return Err("series not in increasing id order");
        }
        if !inserted_all {
            return Err("a label set is in the snapshot twice");
        }
        postings.set_all(all);
        head.install_postings(postings);
        Ok(decoded)
    })?;
    if let Some((mint, maxt)) = decoded.range {
        head.note_sample_time(mint);
        head.note_sample_time(maxt);
    }
    head.stats
        .chunks_created
        .fetch_add(decoded.chunks, Ordering::Relaxed);
    for &(wal_id, head_id) in &snapshot.aliases {
        head.add_wal_alias(wal_id, head_id);
    }
    for &(id, mint, maxt) in &snapshot.tombstones {
        head.add_tombstone(id, mint, maxt);
    }
    Ok(Restored {
        series: decoded.series,
        chunks: decoded.chunks,
        files: decoded.files,
    })
}

/// The pair table read back: `(name, value)` by number, names in byte order.
fn decode_pairs(section: &[u8]) -> Result<Vec<(&str, &str)>, &'static str> {
    let mut c = Cursor { rest: section };
    let mut pairs = Vec::new();
    let mut previous: Option<&str> = None;
    for _ in 0..c.count(8)? {
        let name = c.str()?;
        if previous.is_some_and(|p| p >= name) {
            return Err("label names out of order in the pair table");
        }
        previous = Some(name);
        for _ in 0..c.count(4)? {
            let value = c.str()?;
            if value.is_empty() {
                return Err("an empty label value in the pair table");
            }
            pairs.push((name, value));
        }
    }
    if !c.rest.is_empty() {
        return Err("trailing bytes after the pair table");
    }
    u32::try_from(pairs.len()).map_err(|_| "too many label pairs")?;
    Ok(pairs)
}

/// Files the `(pair, series id)` entries coming from `entries` (ids increasing from
/// batch to batch) into a postings index (without its list of all ids).
fn index_series(
    pairs: &[(&str, &str)],
    entries: std::sync::mpsc::Receiver<Vec<(u32, u64)>>,
) -> Result<MemPostings, &'static str> {
    let mut lists: Vec<Vec<u64>> = vec![Vec::new(); pairs.len()];
    for batch in entries {
        for (pair, id) in batch {
            // The builder checked every number against the table.
            if let Some(list) = lists.get_mut(pair as usize) {
                list.push(id);
            }
        }
    }
    let mut postings = MemPostings::default();
    let mut rest = pairs.iter().zip(lists).peekable();
    while let Some(&((name, _), _)) = rest.peek() {
        let mut values = Vec::new();
        while let Some(((_, value), mut ids)) = rest.next_if(|((n, _), _)| *n == *name) {
            if !ids.is_empty() {
                // Grown by pushes: give the slack back, as lists read whole had none.
                ids.shrink_to_fit();
                values.push((Box::from(*value), ids));
            }
        }
        if !values.is_empty() && !postings.insert_name(name, values) {
            return Err("a label name or value twice in the pair table");
        }
    }
    Ok(postings)
}

/// Builds every batch's series whole (labels, hash, chunk list, newest sample), sends
/// each batch to `out` and its `(pair, id)` entries to `index`; stops early, without an
/// error, when a receiver has gone.
fn build_series(
    bytes: &[u8],
    batches: &[std::ops::Range<usize>],
    pairs: &[(&str, &str)],
    min_valid: i64,
    out: std::sync::mpsc::SyncSender<Vec<Arc<MemSeries>>>,
    index: std::sync::mpsc::SyncSender<Vec<(u32, u64)>>,
) -> Result<Decoded, &'static str> {
    let mut d = Decoded::default();
    let mut scratch = SeriesScratch::default();
    let mut kept: Vec<(i64, i64, u64)> = Vec::new();
    let mut packed = Vec::new();
    for range in batches {
        let mut batch = Vec::with_capacity(BATCH);
        let mut entries = Vec::with_capacity(BATCH * 8);
        for_each_series(&bytes[range.clone()], &mut scratch, |s| {
            packed.clear();
            for &p in s.pairs {
                let (name, value) = pairs.get(p as usize).ok_or("label pair out of range")?;
                for part in [name, value] {
                    put_uvarint(&mut packed, part.len() as u64);
                    packed.extend_from_slice(part.as_bytes());
                }
                entries.push((p, s.id));
            }
            let labels = kiln_model::Labels::from_packed(&packed).ok_or("malformed labels")?;
            if labels.hash() != s.hash {
                return Err("a series' labels are not the ones it was written with");
            }
            let mut series = MemSeries::new(s.id, s.hash, labels);
            kept.clear();
            for &(mint, maxt, chunk_ref) in s.chunks {
                d.files.add(chunk_ref, s.id, mint, maxt);
                if maxt >= min_valid {
                    kept.push((mint, maxt, chunk_ref));
                }
            }
            if let (Some(first), Some(newest)) = (kept.first(), kept.last()) {
                let (lo, hi) = d.range.unwrap_or((first.0, newest.1));
                d.range = Some((lo.min(first.0), hi.max(newest.1)));
                d.chunks += series.data.get_mut().adopt_disk_chunks(&kept, s.last) as u64;
            }
            d.series += 1;
            batch.push(Arc::new(series));
            Ok(())
        })?;
        if out.send(batch).is_err() || index.send(entries).is_err() {
            break;
        }
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::super::{put_bytes, put_len};
    use super::*;

    #[test]
    fn the_pair_table_reads_back_in_order_and_refuses_disorder() {
        let section = |names: &[(&str, &[&str])]| {
            let mut b = Vec::new();
            put_len(&mut b, names.len());
            for (name, values) in names {
                put_bytes(&mut b, name.as_bytes());
                put_len(&mut b, values.len());
                for v in *values {
                    put_bytes(&mut b, v.as_bytes());
                }
            }
            b
        };
        let good = section(&[("a", &["x", "y"]), ("b", &["z"])]);
        assert_eq!(
            decode_pairs(&good),
            Ok(vec![("a", "x"), ("a", "y"), ("b", "z")])
        );
        for bad in [
            section(&[("b", &["x"]), ("a", &["y"])]),
            section(&[("a", &["x"]), ("a", &["y"])]),
            section(&[("a", &[""])]),
        ] {
            assert!(decode_pairs(&bad).is_err());
        }
        // Ids filed under their pairs; a pair no series has is left out.
        let (tx, rx) = std::sync::mpsc::sync_channel(2);
        tx.send(vec![(0, 7), (2, 7)]).expect("send");
        tx.send(vec![(0, 9), (2, 9)]).expect("send");
        drop(tx);
        let pairs = decode_pairs(&good).expect("pairs");
        let postings = index_series(&pairs, rx).expect("postings");
        type Index = Vec<(String, Vec<(String, Vec<u64>)>)>;
        let got: Index = postings
            .by_name()
            .map(|(n, values)| {
                (
                    n.to_string(),
                    values
                        .map(|(v, ids)| (v.to_string(), ids.clone()))
                        .collect(),
                )
            })
            .collect::<std::collections::BTreeMap<_, _>>()
            .into_iter()
            .collect();
        assert_eq!(
            got,
            vec![
                ("a".to_string(), vec![("x".to_string(), vec![7, 9])]),
                ("b".to_string(), vec![("z".to_string(), vec![7, 9])]),
            ]
        );
    }
}
