//! The `--storage.tsdb.*` flags of `kiln server`, under Prometheus 3's names and with
//! its defaults:
//! - retention: `--storage.tsdb.retention.time` defaults to 15d only when neither it nor
//!   `--storage.tsdb.retention.size` is set, so a size limit alone turns the time limit
//!   off (and `retention.time=0` alone means the default, as in Prometheus);
//! - block durations: `--storage.tsdb.min-block-duration` (2h) is the width of blocks cut
//!   from the head; `--storage.tsdb.max-block-duration` defaults to 10% of the retention
//!   time, at most 31d, and is raised to the minimum when below it; equal values turn off
//!   compaction into larger blocks (the Thanos sidecar setting);
//! - `--storage.tsdb.wal-segment-size` (10MB to 256MB) and
//!   `--storage.tsdb.allow-overlapping-compaction` are honoured;
//! - `--storage.tsdb.max-future` (Kiln's own flag, default 10m; Prometheus has no such
//!   bound) refuses samples further ahead of the clock than that, wherever they enter
//!   (remote write, scrapes with their own timestamps, rules), and drops them from a WAL
//!   replay; 0 turns it off;
//! - the other Prometheus storage flags are accepted so that a Prometheus command line
//!   starts Kiln, and each one given is named in a start-up warning saying what Kiln
//!   does instead ([`StorageFlags::ignored`]).
//!
//! [`warn_about_aged_blocks`] says at start-up when time retention is about to delete
//! old blocks (backfilled example data, say).

use std::path::PathBuf;

use anyhow::bail;
use kiln_tsdb::db::{Db, DbOptions};
use kiln_tsdb::wal::Compression;
use tracing::warn;

use crate::{parse_duration_ms, parse_size};

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;
/// Prometheus's default retention time, used when no retention flag is set.
const DEFAULT_RETENTION_MS: i64 = 15 * DAY_MS;
/// Prometheus's default `--storage.tsdb.min-block-duration`.
const DEFAULT_MIN_BLOCK_MS: i64 = 2 * HOUR_MS;
/// The largest default maximum block duration (31d).
const MAX_DEFAULT_MAX_BLOCK_MS: i64 = 31 * DAY_MS;
/// Default `--storage.tsdb.max-future`: Mimir's `-validation.create-grace-period`.
const DEFAULT_MAX_FUTURE: &str = "10m";

/// The `--storage.tsdb.*` flags of `kiln server`.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct StorageFlags {
    /// Base path for metrics storage.
    #[arg(long = "storage.tsdb.path", default_value = "data/")]
    pub(crate) path: PathBuf,
    /// How long to retain samples in storage, measured back from the newest block (e.g.
    /// 15d, 1y). If neither this flag nor --storage.tsdb.retention.size is set, 15d.
    #[arg(long = "storage.tsdb.retention.time", value_parser = parse_duration_ms)]
    retention_time: Option<i64>,
    /// Maximum bytes of blocks, WAL and head chunks to retain (e.g. 512MB, 10GB; units
    /// are powers of 1024). Set alone, there is no time limit.
    #[arg(long = "storage.tsdb.retention.size", value_parser = parse_size)]
    retention_size: Option<u64>,
    /// Width of the blocks cut from the head (e.g. 2h).
    #[arg(long = "storage.tsdb.min-block-duration", value_parser = parse_duration_ms, default_value = "2h")]
    min_block_duration: i64,
    /// Largest block compaction may build (default 10% of the retention time, at most
    /// 31d). Equal to --storage.tsdb.min-block-duration, blocks are never merged into
    /// larger ones (the Thanos sidecar setting).
    #[arg(long = "storage.tsdb.max-block-duration", value_parser = parse_duration_ms)]
    max_block_duration: Option<i64>,
    /// Size at which to split WAL segment files (10MB to 256MB; default 128MB).
    #[arg(long = "storage.tsdb.wal-segment-size", value_parser = parse_size)]
    wal_segment_size: Option<u64>,
    /// Merge blocks whose time ranges overlap (default true); false leaves them as they
    /// are (queries still merge them).
    #[arg(
        long = "storage.tsdb.allow-overlapping-compaction",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    allow_overlapping_compaction: Option<bool>,
    /// Same as --storage.tsdb.allow-overlapping-compaction=false.
    #[arg(long = "no-storage.tsdb.allow-overlapping-compaction")]
    no_overlapping_compaction: bool,
    /// Kiln's flag (Prometheus has none): refuse samples whose timestamp is more than
    /// this ahead of the server's clock (remote write answers 400 with the reason;
    /// scrapes count them as out of bounds), and drop them when replaying the WAL. A
    /// sample half the block duration (1h by default) or more in the future would make
    /// every current sample out of bounds. 0 turns the check off.
    #[arg(long = "storage.tsdb.max-future", value_parser = parse_duration_ms, default_value = DEFAULT_MAX_FUTURE)]
    max_future: i64,
    /// Accepted for compatibility with Prometheus and ignored (a start-up warning says
    /// so).
    #[arg(long = "storage.tsdb.max-block-chunk-segment-size", value_parser = parse_size)]
    max_block_chunk_segment_size: Option<u64>,
    /// Accepted for compatibility with Prometheus and ignored: Kiln creates no lock file.
    #[arg(long = "storage.tsdb.no-lockfile")]
    no_lockfile: bool,
    /// Compress WAL records (default true, as Prometheus 3). Replay reads compressed
    /// and plain records whatever this says, so it can change between restarts.
    #[arg(
        long = "storage.tsdb.wal-compression",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    wal_compression: Option<bool>,
    /// Same as --storage.tsdb.wal-compression=false.
    #[arg(long = "no-storage.tsdb.wal-compression")]
    no_wal_compression: bool,
    /// How WAL records are compressed: snappy (default; every Prometheus since 2.11
    /// reads it) or zstd (smaller, more CPU; Prometheus 2.52 or newer reads it).
    #[arg(long = "storage.tsdb.wal-compression-type", value_parser = ["snappy", "zstd"])]
    wal_compression_type: Option<String>,
    /// Accepted for compatibility with Prometheus and ignored.
    #[arg(long = "storage.tsdb.head-chunks-write-queue-size")]
    head_chunks_write_queue_size: Option<i64>,
    /// Accepted for compatibility with Prometheus and ignored: Kiln cuts chunks at 120
    /// samples.
    #[arg(long = "storage.tsdb.samples-per-chunk")]
    samples_per_chunk: Option<i64>,
    /// Accepted for compatibility with Prometheus and ignored: Kiln compacts without a
    /// random delay.
    #[arg(long = "storage.tsdb.delayed-compaction.max-percent")]
    delayed_compaction_max_percent: Option<i64>,
    /// Accepted for compatibility with Prometheus and ignored: Prometheus compacts only
    /// blocks such a file lists as uploaded; a Kiln server shipping blocks itself
    /// (--objstore.config-file) keeps every block at 2h instead.
    #[arg(long = "storage.tsdb.delay-compact-file.path")]
    delay_compact_file_path: Option<PathBuf>,
    /// Accepted for compatibility with Prometheus and ignored: Kiln looks for blocks
    /// added to its data directory every 5 seconds.
    #[arg(long = "storage.tsdb.block-reload-interval", value_parser = parse_duration_ms)]
    block_reload_interval: Option<i64>,
}

/// A flag Kiln accepts but does not act on: `(flag, value given, what Kiln does)`.
pub(crate) type IgnoredFlag = (&'static str, String, &'static str);

impl StorageFlags {
    /// The retention time in effect, ms (0: no time limit).
    fn effective_retention_time(&self) -> i64 {
        let time = self.retention_time.unwrap_or(0);
        if time == 0 && self.retention_size.unwrap_or(0) == 0 {
            DEFAULT_RETENTION_MS
        } else {
            time
        }
    }

    /// The retention size in effect, bytes (0: no size limit).
    fn effective_retention_size(&self) -> u64 {
        self.retention_size.unwrap_or(0)
    }

    /// The width of blocks cut from the head, ms (0 means the default, as Prometheus).
    fn effective_min_block(&self) -> i64 {
        if self.min_block_duration <= 0 {
            DEFAULT_MIN_BLOCK_MS
        } else {
            self.min_block_duration
        }
    }

    /// The maximum block duration before it is raised to the minimum.
    fn requested_max_block(&self) -> i64 {
        match self.max_block_duration {
            Some(ms) if ms > 0 => ms,
            _ => {
                let time = self.effective_retention_time();
                if time != 0 && time / 10 < MAX_DEFAULT_MAX_BLOCK_MS {
                    time / 10
                } else {
                    MAX_DEFAULT_MAX_BLOCK_MS
                }
            }
        }
    }

    /// The database options these flags ask for, validated as Prometheus validates them.
    pub(crate) fn db_options(&self) -> anyhow::Result<DbOptions> {
        let mut opts = DbOptions::default();
        if let Some(size) = self.wal_segment_size.filter(|s| *s != 0) {
            if !(10 << 20..=256 << 20).contains(&size) {
                bail!("flag 'storage.tsdb.wal-segment-size' must be set between 10MB and 256MB");
            }
            if size % (32 << 10) != 0 {
                bail!(
                    "flag 'storage.tsdb.wal-segment-size' must be a multiple of 32KiB (a WAL page)"
                );
            }
            opts.wal_segment_size = size;
        }
        if self
            .max_block_chunk_segment_size
            .is_some_and(|s| s != 0 && s < 1 << 20)
        {
            bail!("flag 'storage.tsdb.max-block-chunk-segment-size' must be set over 1MB");
        }
        let time = self.effective_retention_time();
        let size = self.effective_retention_size();
        opts.retention_time = (time > 0).then_some(time);
        opts.retention_size = (size > 0).then_some(size);
        opts.chunk_range = self.effective_min_block();
        opts.max_block_duration = self.requested_max_block().max(opts.chunk_range);
        opts.allow_overlapping_compaction =
            !self.no_overlapping_compaction && self.allow_overlapping_compaction.unwrap_or(true);
        opts.max_future = (self.max_future > 0).then_some(self.max_future);
        opts.wal_compression = self.wal_compression();
        Ok(opts)
    }

    /// The WAL record compression the flags ask for.
    fn wal_compression(&self) -> Compression {
        if self.no_wal_compression || !self.wal_compression.unwrap_or(true) {
            Compression::None
        } else if self.wal_compression_type.as_deref() == Some("zstd") {
            Compression::Zstd
        } else {
            Compression::Snappy
        }
    }

    /// Whether `--storage.tsdb.max-block-duration` was raised to the minimum block
    /// duration (Prometheus does so silently; Kiln says so).
    pub(crate) fn max_block_raised(&self) -> Option<(i64, i64)> {
        let (min, max) = (self.effective_min_block(), self.requested_max_block());
        (max < min).then_some((max, min))
    }

    /// Every flag given that Kiln accepts for compatibility but does not act on.
    pub(crate) fn ignored(&self) -> Vec<IgnoredFlag> {
        let mut out: Vec<IgnoredFlag> = Vec::new();
        if let Some(v) = self.max_block_chunk_segment_size {
            out.push((
                "--storage.tsdb.max-block-chunk-segment-size",
                v.to_string(),
                "block chunk segments are cut at 512MiB",
            ));
        }
        if self.no_lockfile {
            out.push((
                "--storage.tsdb.no-lockfile",
                "true".into(),
                "Kiln creates no lock file in the data directory",
            ));
        }
        if let Some(v) = self.head_chunks_write_queue_size {
            out.push((
                "--storage.tsdb.head-chunks-write-queue-size",
                v.to_string(),
                "head chunks are written to chunks_head/ as they are cut",
            ));
        }
        if let Some(v) = self.samples_per_chunk {
            out.push((
                "--storage.tsdb.samples-per-chunk",
                v.to_string(),
                "chunks are cut at 120 samples",
            ));
        }
        if let Some(v) = self.delayed_compaction_max_percent {
            out.push((
                "--storage.tsdb.delayed-compaction.max-percent",
                v.to_string(),
                "compaction runs without a random delay",
            ));
        }
        if let Some(v) = &self.delay_compact_file_path {
            out.push((
                "--storage.tsdb.delay-compact-file.path",
                v.display().to_string(),
                "compaction does not wait for blocks to be uploaded; ship with --objstore.config-file, or set --storage.tsdb.min-block-duration equal to --storage.tsdb.max-block-duration to keep blocks uncompacted",
            ));
        }
        if let Some(v) = self.block_reload_interval {
            out.push((
                "--storage.tsdb.block-reload-interval",
                kiln_model::format_duration_ms(v),
                "blocks added to the data directory are loaded within 5 seconds",
            ));
        }
        out
    }

    /// Logs a warning for every flag accepted but not acted on, and for a maximum block
    /// duration raised to the minimum.
    pub(crate) fn warn_ignored(&self) {
        for (flag, value, instead) in self.ignored() {
            warn!(
                flag,
                value = %value,
                instead,
                "flag accepted for compatibility with Prometheus and ignored"
            );
        }
        let min_block = self.effective_min_block();
        if self.max_future >= min_block / 2 {
            warn!(
                max_future = %kiln_model::format_duration_ms(self.max_future),
                min_block_duration = %kiln_model::format_duration_ms(min_block),
                "--storage.tsdb.max-future is half the block duration or more: one sample that far ahead makes current samples out of bounds until the clock catches up"
            );
        }
        if let Some((max, min)) = self.max_block_raised() {
            warn!(
                max_block_duration = %kiln_model::format_duration_ms(max),
                min_block_duration = %kiln_model::format_duration_ms(min),
                "--storage.tsdb.max-block-duration is below --storage.tsdb.min-block-duration; using the minimum for both, as Prometheus does"
            );
        }
    }

    /// The retention as Prometheus's runtime information words it (`15d`, `1GiB`, `15d
    /// or 1GiB`).
    pub(crate) fn retention_description(&self) -> String {
        let time = self.effective_retention_time();
        let size = self.effective_retention_size();
        let time = (time > 0).then(|| kiln_model::format_duration_ms(time));
        let size = (size > 0).then(|| crate::tsdb_tools::format::go_base2_bytes(size));
        match (time, size) {
            (Some(t), Some(s)) => format!("{t} or {s}"),
            (Some(t), None) => t,
            (None, Some(s)) => s,
            (None, None) => String::new(),
        }
    }

    /// The storage flags with their values, as `/api/v1/status/flags` lists them (the
    /// retention and block durations as in effect).
    pub(crate) fn flag_values(&self) -> Vec<(&'static str, String)> {
        let d = kiln_model::format_duration_ms;
        let Ok(opts) = self.db_options() else {
            return Vec::new();
        };
        let compression = self.wal_compression() != Compression::None;
        vec![
            ("storage.tsdb.path", self.path.display().to_string()),
            (
                "storage.tsdb.retention.time",
                d(self.effective_retention_time()),
            ),
            (
                "storage.tsdb.retention.size",
                self.effective_retention_size().to_string(),
            ),
            ("storage.tsdb.min-block-duration", d(opts.chunk_range)),
            (
                "storage.tsdb.max-block-duration",
                d(opts.max_block_duration),
            ),
            (
                "storage.tsdb.wal-segment-size",
                self.wal_segment_size.unwrap_or(0).to_string(),
            ),
            (
                "storage.tsdb.allow-overlapping-compaction",
                opts.allow_overlapping_compaction.to_string(),
            ),
            ("storage.tsdb.max-future", d(self.max_future)),
            (
                "storage.tsdb.max-block-chunk-segment-size",
                self.max_block_chunk_segment_size.unwrap_or(0).to_string(),
            ),
            ("storage.tsdb.no-lockfile", self.no_lockfile.to_string()),
            ("storage.tsdb.wal-compression", compression.to_string()),
            (
                "storage.tsdb.wal-compression-type",
                self.wal_compression_type
                    .clone()
                    .unwrap_or_else(|| "snappy".into()),
            ),
            (
                "storage.tsdb.head-chunks-write-queue-size",
                self.head_chunks_write_queue_size.unwrap_or(0).to_string(),
            ),
            (
                "storage.tsdb.samples-per-chunk",
                self.samples_per_chunk.unwrap_or(120).to_string(),
            ),
            (
                "storage.tsdb.delayed-compaction.max-percent",
                self.delayed_compaction_max_percent
                    .unwrap_or(10)
                    .to_string(),
            ),
            (
                "storage.tsdb.delay-compact-file.path",
                self.delay_compact_file_path
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
            ),
            (
                "storage.tsdb.block-reload-interval",
                d(self.block_reload_interval.unwrap_or(60_000)),
            ),
        ]
    }
}

/// Warns once, loudly, when time retention will delete blocks as soon as a block of
/// current data is cut: blocks whose data ends at least the retention time before
/// `now`. Retention measures from the newest block, not the clock, so a directory of old
/// backfilled blocks looks fine until the server has scraped for about 1.5 block
/// durations; then those blocks are deleted.
pub(crate) fn warn_about_aged_blocks(db: &Db, now_ms: i64) {
    let Some(aged) = db.aged_blocks(now_ms) else {
        return;
    };
    let d = kiln_model::format_duration_ms;
    let time = |ms: i64| crate::tsdb_tools::format::go_time_utc(ms);
    // The head is cut once it spans 1.5 block durations of new samples.
    let after = d(db.options().chunk_range / 2 * 3);
    let age = d(now_ms.saturating_sub(aged.min_time) / DAY_MS * DAY_MS + DAY_MS);
    warn!(
        blocks = aged.blocks,
        oldest = %time(aged.min_time),
        newest = %time(aged.max_time),
        retention = %d(aged.retention),
        to_keep = %format!(
            "restart with --storage.tsdb.retention.time longer than their age ({age}), or with only --storage.tsdb.retention.size=<limit, e.g. 10GB> (no time limit)"
        ),
        "blocks hold data older than the retention time: they will be deleted once a block of current data is cut, after about {after} of new samples (retention measures from the newest block, not the clock)"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        storage: StorageFlags,
    }

    fn flags(args: &[&str]) -> Result<StorageFlags, String> {
        let argv = std::iter::once("kiln").chain(args.iter().copied());
        Cli::try_parse_from(argv)
            .map(|c| c.storage)
            .map_err(|e| e.to_string())
    }

    /// (retention time, retention size, min block, max block, overlapping compaction)
    type Resolved = (Option<i64>, Option<u64>, i64, i64, bool);

    fn check(args: &[&str], want: Result<Resolved, &str>) {
        let got = flags(args).and_then(|f| f.db_options().map_err(|e| e.to_string()));
        match (got, want) {
            (Ok(o), Ok(w)) => assert_eq!(
                (
                    o.retention_time,
                    o.retention_size,
                    o.chunk_range,
                    o.max_block_duration,
                    o.allow_overlapping_compaction
                ),
                w,
                "{args:?}"
            ),
            (Err(e), Err(w)) => assert!(e.contains(w), "{args:?}: {e}"),
            (got, want) => panic!("{args:?}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn defaults_and_validation_follow_prometheus() {
        let h = HOUR_MS;
        let d = DAY_MS;
        check(&[], Ok((Some(15 * d), None, 2 * h, 36 * h, true)));
        // A size limit alone turns the time limit off; the max block is then 31d.
        check(
            &["--storage.tsdb.retention.size=1GB"],
            Ok((None, Some(1 << 30), 2 * h, 31 * d, true)),
        );
        check(
            &["--storage.tsdb.retention.time=0"],
            Ok((Some(15 * d), None, 2 * h, 36 * h, true)),
        );
        check(
            &[
                "--storage.tsdb.retention.time=30d",
                "--storage.tsdb.retention.size=512MB",
            ],
            Ok((Some(30 * d), Some(512 << 20), 2 * h, 3 * d, true)),
        );
        check(
            &["--storage.tsdb.retention.time=1y"],
            Ok((Some(365 * d), None, 2 * h, 31 * d, true)),
        );
        // Thanos sidecar: min == max.
        check(
            &[
                "--storage.tsdb.min-block-duration=2h",
                "--storage.tsdb.max-block-duration=2h",
            ],
            Ok((Some(15 * d), None, 2 * h, 2 * h, true)),
        );
        check(
            &["--storage.tsdb.min-block-duration=30m"],
            Ok((Some(15 * d), None, 30 * 60_000, 36 * h, true)),
        );
        // A maximum below the minimum is raised to it (and warned about).
        check(
            &[
                "--storage.tsdb.min-block-duration=4h",
                "--storage.tsdb.max-block-duration=2h",
            ],
            Ok((Some(15 * d), None, 4 * h, 4 * h, true)),
        );
        // Short retention: 10% of it, raised to the minimum block.
        check(
            &["--storage.tsdb.retention.time=6h"],
            Ok((Some(6 * h), None, 2 * h, 2 * h, true)),
        );
        check(
            &["--no-storage.tsdb.allow-overlapping-compaction"],
            Ok((Some(15 * d), None, 2 * h, 36 * h, false)),
        );
        check(
            &["--storage.tsdb.allow-overlapping-compaction=false"],
            Ok((Some(15 * d), None, 2 * h, 36 * h, false)),
        );
        check(&["--storage.tsdb.min-block-duration=2x"], Err("2x"));
        check(&["--storage.tsdb.max-block-duration=-1h"], Err("-1h"));
        check(
            &["--storage.tsdb.retention.size=12 GB"],
            Err("invalid size"),
        );
        check(
            &["--storage.tsdb.wal-segment-size=1MB"],
            Err("between 10MB and 256MB"),
        );
        check(
            &["--storage.tsdb.max-block-chunk-segment-size=512KB"],
            Err("over 1MB"),
        );
        check(
            &["--storage.tsdb.wal-compression-type=lz4"],
            Err("invalid value 'lz4'"),
        );
    }

    #[test]
    fn ignored_flags_are_named_and_honoured_ones_are_not() {
        let f = flags(&[
            "--storage.tsdb.no-lockfile",
            "--storage.tsdb.wal-compression-type=zstd",
            "--storage.tsdb.samples-per-chunk=240",
            "--storage.tsdb.block-reload-interval=30s",
            "--storage.tsdb.wal-segment-size=64MB",
            "--storage.tsdb.min-block-duration=2h",
        ])
        .expect("parse");
        let names: Vec<(&str, String)> = f.ignored().into_iter().map(|i| (i.0, i.1)).collect();
        assert_eq!(
            names,
            vec![
                ("--storage.tsdb.no-lockfile", "true".to_string()),
                ("--storage.tsdb.samples-per-chunk", "240".to_string()),
                ("--storage.tsdb.block-reload-interval", "30s".to_string()),
            ]
        );
        assert_eq!(f.db_options().expect("options").wal_segment_size, 64 << 20);
        assert!(flags(&[]).expect("parse").ignored().is_empty());
    }

    #[test]
    fn wal_compression_is_snappy_unless_told_otherwise() {
        let check = |args: &[&str], want: Compression| {
            let opts = flags(args).expect("parse").db_options().expect("options");
            assert_eq!(opts.wal_compression, want, "{args:?}");
        };
        check(&[], Compression::Snappy);
        check(&["--storage.tsdb.wal-compression"], Compression::Snappy);
        check(
            &["--storage.tsdb.wal-compression-type=zstd"],
            Compression::Zstd,
        );
        check(&["--storage.tsdb.wal-compression=false"], Compression::None);
        check(
            &[
                "--no-storage.tsdb.wal-compression",
                "--storage.tsdb.wal-compression-type=zstd",
            ],
            Compression::None,
        );
    }

    #[test]
    fn max_future_defaults_to_10m_and_0_turns_it_off() {
        let check = |args: &[&str], want: Option<i64>, listed: &str| {
            let f = flags(args).expect("parse");
            assert_eq!(
                f.db_options().expect("options").max_future,
                want,
                "{args:?}"
            );
            assert!(
                f.flag_values()
                    .contains(&("storage.tsdb.max-future", listed.to_string())),
                "{args:?}"
            );
        };
        check(&[], Some(10 * 60_000), "10m");
        check(&["--storage.tsdb.max-future=1h"], Some(3_600_000), "1h");
        check(&["--storage.tsdb.max-future=0"], None, "0s");
        assert!(flags(&["--storage.tsdb.max-future=soon"]).is_err());
    }

    #[test]
    fn retention_is_described_like_prometheus() {
        let describe = |args: &[&str]| flags(args).expect("parse").retention_description();
        assert_eq!(describe(&[]), "15d");
        assert_eq!(describe(&["--storage.tsdb.retention.size=1GB"]), "1GiB");
        assert_eq!(
            describe(&[
                "--storage.tsdb.retention.time=30d",
                "--storage.tsdb.retention.size=1536MB"
            ]),
            "30d or 1GiB512MiB"
        );
    }
}
