//! How far into the WAL a remote-write queue has delivered, kept on disk so a restart
//! resumes there instead of resending everything (or skipping what was never sent).
//!
//! Every sample record read from the WAL is opened here with the number of its samples
//! handed to the shards; shards report samples done (sent, or dropped for good) per
//! record. The committed position is the end of the newest record such that it and every
//! record before it are done. Shards finish out of order, so records wait in a queue
//! until the ones before them are done.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use kiln_tsdb::wal::WalPosition;
use parking_lot::Mutex;

/// The delivery state of one queue. See the module docs.
pub(crate) struct Progress {
    path: PathBuf,
    /// The endpoint the saved position belongs to, its password redacted (the file is
    /// not a place for secrets): another URL starts afresh, a new password for the same
    /// endpoint keeps the position. Files written before redaction hold the password;
    /// they are compared redacted too.
    url: String,
    inner: Mutex<Open>,
}

#[derive(Default)]
struct Open {
    /// Sequence number of `records[0]`.
    first_seq: u64,
    /// Records handed out and not yet all done: where each ends, samples outstanding.
    records: VecDeque<(WalPosition, usize)>,
    /// End of the newest record done along with all before it.
    committed: Option<WalPosition>,
    /// What the file holds now.
    saved: Option<WalPosition>,
}

impl Progress {
    pub(crate) fn new(path: PathBuf, url: &str) -> Progress {
        Progress {
            path,
            url: url.to_owned(),
            inner: Mutex::new(Open::default()),
        }
    }

    /// The position saved by an earlier run for the same URL, if any. An unreadable
    /// file is treated as absent (the queue then starts at the WAL's end).
    pub(crate) fn load(&self) -> Option<WalPosition> {
        let text = std::fs::read_to_string(&self.path).ok()?;
        let mut lines = text.lines();
        let url = lines.next()?;
        let mut nums = lines.next()?.split_whitespace();
        let segment = nums.next()?.parse().ok()?;
        let offset = nums.next()?.parse().ok()?;
        let pos = WalPosition { segment, offset };
        let mut inner = self.inner.lock();
        inner.saved = Some(pos);
        (kiln_config::redact_url(url) == self.url).then_some(pos)
    }

    /// Marks everything before `pos` done (where the follower starts).
    pub(crate) fn start_at(&self, pos: WalPosition) {
        let mut inner = self.inner.lock();
        inner.committed = Some(pos);
    }

    /// Opens a record ending at `end` with `samples` samples handed to shards; returns
    /// its sequence number for [`Progress::done`].
    pub(crate) fn open(&self, end: WalPosition, samples: usize) -> u64 {
        let mut inner = self.inner.lock();
        let seq = inner.first_seq + inner.records.len() as u64;
        inner.records.push_back((end, samples));
        inner.advance();
        seq
    }

    /// Reports `count` samples of record `seq` done, for each `(seq, count)`.
    pub(crate) fn done(&self, runs: &[(u64, usize)]) {
        let mut inner = self.inner.lock();
        for &(seq, count) in runs {
            let Some(i) = seq.checked_sub(inner.first_seq) else {
                continue;
            };
            if let Some(rec) = usize::try_from(i)
                .ok()
                .and_then(|i| inner.records.get_mut(i))
            {
                rec.1 = rec.1.saturating_sub(count);
            }
        }
        inner.advance();
    }

    /// Samples handed out and not done yet.
    pub(crate) fn outstanding(&self) -> usize {
        self.inner.lock().records.iter().map(|r| r.1).sum()
    }

    /// The committed position now.
    #[cfg(test)]
    pub(crate) fn committed(&self) -> Option<WalPosition> {
        self.inner.lock().committed
    }

    /// Writes the committed position if it moved (to a temporary file, then renamed, so
    /// a crash leaves the old or the new position, never half of one).
    pub(crate) fn save(&self) -> std::io::Result<()> {
        let pos = {
            let inner = self.inner.lock();
            match inner.committed {
                Some(p) if inner.saved != Some(p) => p,
                _ => return Ok(()),
            }
        };
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = tmp_path(&self.path);
        std::fs::write(
            &tmp,
            format!("{}\n{} {}\n", self.url, pos.segment, pos.offset),
        )?;
        std::fs::rename(&tmp, &self.path)?;
        self.inner.lock().saved = Some(pos);
        Ok(())
    }
}

impl Open {
    /// Pops the records at the front that are done, committing their ends.
    fn advance(&mut self) {
        while let Some(&(end, 0)) = self.records.front() {
            self.records.pop_front();
            self.first_seq += 1;
            self.committed = Some(end);
        }
    }
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".tmp");
    PathBuf::from(p)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn pos(offset: u64) -> WalPosition {
        WalPosition { segment: 3, offset }
    }

    #[test]
    fn commits_only_a_prefix_of_done_records_and_survives_a_restart() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("q.position");
        let p = Progress::new(path.clone(), "http://a");
        assert_eq!(p.load(), None);
        p.start_at(pos(0));
        let a = p.open(pos(10), 2);
        let b = p.open(pos(20), 1);
        let c = p.open(pos(30), 0); // every sample dropped by relabelling
        assert_eq!(p.outstanding(), 3);
        // The later record finishes first: nothing moves past the first.
        p.done(&[(b, 1)]);
        assert_eq!(p.committed(), Some(pos(0)));
        p.done(&[(a, 1)]);
        assert_eq!(p.committed(), Some(pos(0)));
        p.done(&[(a, 1)]);
        assert_eq!(p.committed(), Some(pos(30)), "c had nothing to send");
        let _ = c;
        p.save().unwrap();

        let again = Progress::new(path.clone(), "http://a");
        assert_eq!(again.load(), Some(pos(30)));
        let other = Progress::new(path, "http://b");
        assert_eq!(other.load(), None, "another endpoint starts afresh");
    }

    #[test]
    fn the_url_is_kept_redacted_and_files_with_a_password_still_match() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("q.position");
        let p = Progress::new(path.clone(), "http://u:xxxxx@a/w");
        p.start_at(pos(7));
        p.save().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("http://u:xxxxx@a/w\n"), "{text}");
        // Written by a Kiln that stored the URL as configured.
        std::fs::write(&path, "http://u:pw@a/w\n3 9\n").unwrap();
        assert_eq!(
            Progress::new(path, "http://u:xxxxx@a/w").load(),
            Some(pos(9))
        );
    }
}
