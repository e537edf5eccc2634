//! [`WalFollower`]: reads the WAL while it is being written, the way Prometheus's WAL
//! watcher feeds remote write.
//!
//! The follower keeps a [`WalPosition`] (segment and byte offset of the next record)
//! and, on every [`WalFollower::poll`], reads what was appended since and hands each
//! decoded record to the caller. It never writes to the WAL and takes no lock: the writer
//! appends whole records with `write(2)`, so the only unfinished data a reader can see is
//! at the end of the newest segment, where a torn record means "not yet", and reading
//! resumes from the last whole record next time.
//!
//! Series references in sample records point at series records read before them; a
//! checkpoint holds the series of the segments it replaced. So the follower reads the
//! newest checkpoint's series first, and again whenever the writer checkpoints past the
//! follower's segments ([`WalEvent::Checkpoint`] tells the caller to forget series only
//! seen in older segments).
//!
//! Resuming ([`WalFollower::resume`]): the records before the saved position are read
//! for their series only, so a restarted sender knows every reference without sending
//! old samples again. A position whose segment was deleted meanwhile resumes at the
//! oldest remaining segment; what was in between is reported as lost.

use std::path::{Path, PathBuf};

use tracing::warn;

use super::checkpoint::last_checkpoint;
use super::error::{CorruptionReason, Result, WalError};
use super::reader::WalReader;
use super::record::{DecodedRecord, RecordDecoder, RecordType, RefSample, RefSeries};
use super::segment::{SegmentRef, list_segments, segment_path};

/// Where the next record to read starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct WalPosition {
    pub segment: u64,
    pub offset: u64,
}

/// One thing the follower read, in WAL order.
#[derive(Debug)]
pub enum WalEvent<'a> {
    /// Series definitions, from `segment` (a checkpoint's series carry its index).
    Series {
        series: &'a [RefSeries],
        segment: u64,
    },
    /// Samples of series defined earlier; `end` is the position after their record.
    Samples {
        samples: &'a [RefSample],
        end: WalPosition,
    },
    /// A checkpoint covering segments up to `segment` was read; series not seen in it or
    /// in a later segment no longer exist.
    Checkpoint { segment: u64 },
    /// Segments `from..=to` were deleted before the follower read them (their samples
    /// will never be delivered).
    Lost { from: u64, to: u64 },
}

/// Follows a WAL directory. See the module docs.
pub struct WalFollower {
    dir: PathBuf,
    pos: WalPosition,
    /// Index of the last checkpoint whose series were read.
    checkpoint: Option<u64>,
    decoder: RecordDecoder,
    decoded: DecodedRecord,
}

impl WalFollower {
    /// A follower that starts at the current end of the WAL: existing samples are not
    /// delivered, existing series are (through `on_event` now).
    pub fn at_end(dir: &Path, on_event: impl FnMut(WalEvent<'_>)) -> Result<WalFollower> {
        Self::resume(
            dir,
            WalPosition {
                segment: u64::MAX,
                offset: 0,
            },
            on_event,
        )
    }

    /// A follower that delivers samples from `from` on. Series of everything before are
    /// delivered now through `on_event` (samples before `from` are not).
    pub fn resume(
        dir: &Path,
        from: WalPosition,
        mut on_event: impl FnMut(WalEvent<'_>),
    ) -> Result<WalFollower> {
        let mut f = WalFollower {
            dir: dir.to_path_buf(),
            pos: WalPosition::default(),
            checkpoint: None,
            decoder: RecordDecoder::new(),
            decoded: DecodedRecord::default(),
        };
        f.read_checkpoint(&mut on_event)?;
        let segments = list_segments(dir)?;
        let after_checkpoint = f.checkpoint.map_or(0, |c| c + 1);
        let first = segments
            .iter()
            .map(|s| s.index)
            .find(|&i| i >= after_checkpoint)
            .unwrap_or(after_checkpoint);
        let last = segments.last().map_or(first, |s| s.index).max(first);
        let to_end = from.segment == u64::MAX;
        if !to_end && from.segment < first {
            // The saved position's segment is gone: resume at the oldest one left.
            on_event(WalEvent::Lost {
                from: from.segment,
                to: first - 1,
            });
            f.pos = WalPosition {
                segment: first,
                offset: 0,
            };
            return Ok(f);
        }
        let stop = if to_end { last } else { from.segment };
        f.pos = WalPosition {
            segment: first,
            offset: 0,
        };
        for index in first..=stop {
            let limit = if !to_end && index == from.segment {
                from.offset
            } else {
                u64::MAX
            };
            let end = f.read_segment_series(index, limit, &mut on_event)?;
            f.pos = WalPosition {
                segment: index,
                offset: end,
            };
        }
        if !to_end {
            f.pos = from;
        }
        Ok(f)
    }

    /// The position of the next record to read.
    pub fn position(&self) -> WalPosition {
        self.pos
    }

    /// Reads everything appended since the last call, handing each record to `on_event`;
    /// returns the number of records read. A newer checkpoint is read first.
    pub fn poll(&mut self, mut on_event: impl FnMut(WalEvent<'_>)) -> Result<usize> {
        if let Some((_, idx)) = last_checkpoint(&self.dir)?
            && self.checkpoint.is_none_or(|c| idx > c)
        {
            self.read_checkpoint(&mut on_event)?;
        }
        let mut read = 0;
        loop {
            let path = segment_path(&self.dir, self.pos.segment);
            if !path.exists() {
                let segments = list_segments(&self.dir)?;
                match segments.iter().find(|s| s.index > self.pos.segment) {
                    Some(next) if self.pos.segment < segments[0].index => {
                        // Deleted under us (the writer checkpointed past us).
                        on_event(WalEvent::Lost {
                            from: self.pos.segment,
                            to: next.index - 1,
                        });
                        self.pos = WalPosition {
                            segment: next.index,
                            offset: 0,
                        };
                        continue;
                    }
                    Some(next) => {
                        // A gap in numbering cannot happen with one writer; move on.
                        self.pos = WalPosition {
                            segment: next.index,
                            offset: 0,
                        };
                        continue;
                    }
                    None => return Ok(read),
                }
            }
            let newer_exists = segment_path(&self.dir, self.pos.segment + 1).exists();
            let (n, outcome) = self.read_from(&path, &mut on_event)?;
            read += n;
            match outcome {
                SegmentEnd::Clean if newer_exists => {
                    // The writer moved on before we looked: this segment is final. One
                    // more read catches what was written between our read and the check.
                    let (n, _) = self.read_from(&path, &mut on_event)?;
                    read += n;
                    self.pos = WalPosition {
                        segment: self.pos.segment + 1,
                        offset: 0,
                    };
                }
                SegmentEnd::Clean => return Ok(read),
                SegmentEnd::Unfinished if newer_exists => {
                    // Not being written any more, yet ends inside a record: skip the rest.
                    let (n, end) = self.read_from(&path, &mut on_event)?;
                    read += n;
                    if matches!(end, SegmentEnd::Unfinished) {
                        warn!(
                            segment = self.pos.segment,
                            offset = self.pos.offset,
                            "WAL segment ends inside a record; following from the next segment"
                        );
                        self.pos = WalPosition {
                            segment: self.pos.segment + 1,
                            offset: 0,
                        };
                    }
                }
                SegmentEnd::Unfinished => return Ok(read),
            }
        }
    }

    /// Reads the newest checkpoint's series, if there is a checkpoint not read yet.
    fn read_checkpoint(&mut self, on_event: &mut impl FnMut(WalEvent<'_>)) -> Result<()> {
        let Some((dir, idx)) = last_checkpoint(&self.dir)? else {
            return Ok(());
        };
        if self.checkpoint.is_some_and(|c| c >= idx) {
            return Ok(());
        }
        let mut reader = WalReader::open(&dir)?;
        while let Some(rec) = reader.next_record()? {
            if super::record::record_type(rec) != RecordType::Series {
                continue;
            }
            match self.decoder.series(rec, &mut self.decoded.series) {
                Ok(()) => on_event(WalEvent::Series {
                    series: &self.decoded.series,
                    segment: idx,
                }),
                Err(e) => warn!(err = %e, "skipping an undecodable WAL record"),
            }
        }
        self.checkpoint = Some(idx);
        on_event(WalEvent::Checkpoint { segment: idx });
        Ok(())
    }

    /// Reads series records of segment `index` up to byte `limit`; returns where reading
    /// stopped (a record boundary).
    fn read_segment_series(
        &mut self,
        index: u64,
        limit: u64,
        on_event: &mut impl FnMut(WalEvent<'_>),
    ) -> Result<u64> {
        let path = segment_path(&self.dir, index);
        if !path.exists() {
            return Ok(0);
        }
        let mut reader = WalReader::segment_from(SegmentRef { index, path }, 0);
        let mut end = 0;
        loop {
            let rec = match reader.next_record() {
                Ok(Some(rec)) => rec,
                Ok(None) => break,
                Err(e) if is_unfinished(&e) => break,
                Err(e) => return Err(e),
            };
            let is_series = super::record::record_type(rec) == RecordType::Series;
            if is_series {
                match self.decoder.series(rec, &mut self.decoded.series) {
                    Ok(()) => on_event(WalEvent::Series {
                        series: &self.decoded.series,
                        segment: index,
                    }),
                    Err(e) => warn!(err = %e, "skipping an undecodable WAL record"),
                }
            }
            end = reader.last_position().map_or(end, |p| p.end);
            if end >= limit {
                break;
            }
        }
        Ok(end)
    }

    /// Reads the current segment from the current offset to its end.
    fn read_from(
        &mut self,
        path: &Path,
        on_event: &mut impl FnMut(WalEvent<'_>),
    ) -> Result<(usize, SegmentEnd)> {
        let segment = self.pos.segment;
        let mut reader = WalReader::segment_from(
            SegmentRef {
                index: segment,
                path: path.to_path_buf(),
            },
            self.pos.offset,
        );
        let mut n = 0;
        loop {
            let rec = match reader.next_record() {
                Ok(Some(rec)) => rec,
                Ok(None) => return Ok((n, SegmentEnd::Clean)),
                Err(e) if is_unfinished(&e) => return Ok((n, SegmentEnd::Unfinished)),
                Err(e) => return Err(e),
            };
            let decoded = self.decoder.decode(rec, &mut self.decoded);
            let end = WalPosition {
                segment,
                offset: reader.last_position().map_or(self.pos.offset, |p| p.end),
            };
            n += 1;
            match decoded {
                Ok(RecordType::Series) => {
                    on_event(WalEvent::Series {
                        series: &self.decoded.series,
                        segment,
                    });
                }
                Ok(RecordType::Samples) => {
                    on_event(WalEvent::Samples {
                        samples: &self.decoded.samples,
                        end,
                    });
                }
                Ok(_) => {}
                Err(e) => warn!(err = %e, "skipping an undecodable WAL record"),
            }
            self.pos = end;
        }
    }
}

/// How reading a segment stopped.
enum SegmentEnd {
    /// At the end of the last whole record.
    Clean,
    /// Inside a record (still being written, if this is the newest segment).
    Unfinished,
}

/// Whether a read error is what a reader sees at the end of a segment being written:
/// a record or fragment cut short, or a page whose bytes are not all there yet.
fn is_unfinished(e: &WalError) -> bool {
    match e {
        WalError::Corruption(c) => matches!(
            c.reason,
            CorruptionReason::TornRecord { .. }
                | CorruptionReason::TruncatedFragment
                | CorruptionReason::Checksum { .. }
        ),
        _ => false,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use kiln_model::Labels;

    use super::*;
    use crate::wal::record::{encode_samples, encode_series};
    use crate::wal::{Compression, Wal, WalOptions, checkpoint};

    /// What a test follower saw: series ids, samples as (id, t), checkpoints, losses.
    #[derive(Default, Debug)]
    struct Seen {
        series: Vec<u64>,
        samples: Vec<(u64, i64)>,
        checkpoints: Vec<u64>,
        lost: Vec<(u64, u64)>,
        last_end: Option<WalPosition>,
    }

    impl Seen {
        fn take(&mut self, e: WalEvent<'_>) {
            match e {
                WalEvent::Series { series, .. } => self.series.extend(series.iter().map(|s| s.id)),
                WalEvent::Samples { samples, end } => {
                    self.samples.extend(samples.iter().map(|s| (s.id, s.t)));
                    self.last_end = Some(end);
                }
                WalEvent::Checkpoint { segment } => self.checkpoints.push(segment),
                WalEvent::Lost { from, to } => self.lost.push((from, to)),
            }
        }
    }

    fn log_series(w: &mut Wal, id: u64) {
        let mut buf = Vec::new();
        let labels = Labels::from_pairs(&[("__name__", "m"), ("id", &id.to_string())]);
        encode_series(&[RefSeries { id, labels }], &mut buf);
        w.log_record(&buf).unwrap();
    }

    fn log_sample(w: &mut Wal, id: u64, t: i64) {
        let mut buf = Vec::new();
        encode_samples(&[RefSample { id, t, v: t as f64 }], &mut buf);
        w.log_record(&buf).unwrap();
    }

    #[test]
    fn follows_appends_across_segments() {
        let tmp = tempfile::tempdir().unwrap();
        let mut w = Wal::open(tmp.path(), WalOptions::default()).unwrap();
        log_series(&mut w, 1);
        log_sample(&mut w, 1, 10);
        let mut seen = Seen::default();
        let mut f = WalFollower::at_end(tmp.path(), |e| seen.take(e)).unwrap();
        // Existing series are known, existing samples are not sent.
        assert_eq!(seen.series, vec![1]);
        assert!(seen.samples.is_empty());
        assert_eq!(f.poll(|e| seen.take(e)).unwrap(), 0);

        log_sample(&mut w, 1, 20);
        log_series(&mut w, 2);
        log_sample(&mut w, 2, 20);
        assert_eq!(f.poll(|e| seen.take(e)).unwrap(), 3);
        assert_eq!(seen.samples, vec![(1, 20), (2, 20)]);
        assert_eq!(seen.series, vec![1, 2]);

        w.next_segment().unwrap();
        log_sample(&mut w, 2, 30);
        w.next_segment().unwrap();
        log_sample(&mut w, 1, 40);
        f.poll(|e| seen.take(e)).unwrap();
        assert_eq!(seen.samples, vec![(1, 20), (2, 20), (2, 30), (1, 40)]);
        assert_eq!(f.position().segment, 2);
        assert_eq!(seen.last_end, Some(f.position()));
    }

    #[test]
    fn resumes_after_the_saved_position_with_every_series_known() {
        let tmp = tempfile::tempdir().unwrap();
        let mut w = Wal::open(tmp.path(), WalOptions::default()).unwrap();
        log_series(&mut w, 1);
        log_sample(&mut w, 1, 10);
        w.next_segment().unwrap();
        log_series(&mut w, 2);
        log_sample(&mut w, 2, 20);
        let mut seen = Seen::default();
        let mut f =
            WalFollower::resume(tmp.path(), WalPosition::default(), |e| seen.take(e)).unwrap();
        f.poll(|e| seen.take(e)).unwrap();
        assert_eq!(seen.samples, vec![(1, 10), (2, 20)]);
        // Suppose only the first sample record was acknowledged: find where it ends.
        let mut probe = WalFollower::resume(tmp.path(), WalPosition::default(), |_| {}).unwrap();
        let mut upto = None;
        probe
            .poll(|e| {
                if let WalEvent::Samples { end, .. } = &e
                    && upto.is_none()
                {
                    upto = Some(*end);
                }
            })
            .unwrap();
        let upto = upto.unwrap();

        log_sample(&mut w, 1, 30);
        let mut again = Seen::default();
        let mut g = WalFollower::resume(tmp.path(), upto, |e| again.take(e)).unwrap();
        assert_eq!(
            again.series,
            vec![1],
            "series before the position are known"
        );
        g.poll(|e| again.take(e)).unwrap();
        assert_eq!(
            again.samples,
            vec![(2, 20), (1, 30)],
            "nothing before the position again"
        );
        assert_eq!(again.series, vec![1, 2]);
    }

    #[test]
    fn reports_segments_deleted_before_they_were_read_and_rereads_the_checkpoint() {
        let tmp = tempfile::tempdir().unwrap();
        let mut w = Wal::open(tmp.path(), WalOptions::default()).unwrap();
        log_series(&mut w, 1);
        log_sample(&mut w, 1, 10);
        let mut seen = Seen::default();
        let mut f = WalFollower::at_end(tmp.path(), |e| seen.take(e)).unwrap();
        log_sample(&mut w, 1, 20);
        w.next_segment().unwrap();
        log_sample(&mut w, 1, 30);
        w.next_segment().unwrap();
        log_sample(&mut w, 1, 40);
        // The writer checkpoints segments 0 and 1 and deletes them before the follower
        // read them.
        checkpoint::checkpoint(tmp.path(), 0, 1, |_| true, 0, Compression::Snappy).unwrap();
        w.truncate(2).unwrap();
        f.poll(|e| seen.take(e)).unwrap();
        assert_eq!(seen.checkpoints, vec![1]);
        assert_eq!(seen.lost, vec![(0, 1)]);
        assert_eq!(seen.samples, vec![(1, 40)]);
        assert!(seen.series.len() >= 2, "series re-read from the checkpoint");
    }

    #[test]
    fn a_record_still_being_written_is_read_once_complete() {
        let tmp = tempfile::tempdir().unwrap();
        let full = tempfile::tempdir().unwrap();
        let mut w = Wal::open(full.path(), WalOptions::default()).unwrap();
        log_series(&mut w, 1);
        log_sample(&mut w, 1, 10);
        // A large record spanning pages.
        let mut buf = Vec::new();
        let samples: Vec<RefSample> = (0..20_000)
            .map(|i| RefSample {
                id: 1,
                t: 100 + i,
                v: 0.5,
            })
            .collect();
        encode_samples(&samples, &mut buf);
        w.log_record(&buf).unwrap();
        w.flush().unwrap();
        let bytes = std::fs::read(segment_path(full.path(), 0)).unwrap();
        // The follower's copy ends in the middle of the big record.
        let seg = segment_path(tmp.path(), 0);
        std::fs::write(&seg, &bytes[..bytes.len() - 1000]).unwrap();
        let mut seen = Seen::default();
        let mut f =
            WalFollower::resume(tmp.path(), WalPosition::default(), |e| seen.take(e)).unwrap();
        f.poll(|e| seen.take(e)).unwrap();
        assert_eq!(seen.samples, vec![(1, 10)]);
        let at = f.position();
        std::fs::write(&seg, &bytes).unwrap();
        f.poll(|e| seen.take(e)).unwrap();
        assert_eq!(seen.samples.len(), 20_001);
        assert!(f.position() > at);
    }
}
