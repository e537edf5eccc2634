//! `kiln compact`: the bucket compactor, with Thanos compact's flags. One per bucket:
//! it holds the bucket's compactor lock (`kiln_objstore::lock`) while it works, so a
//! second one started by mistake stops with an error naming the holder.
//!
//! Without `--wait` it makes one pass and exits (a cron job); with it, a pass every
//! `--wait-interval`, `/metrics` served on `--http-address` all along. Progress shows as
//! a bar when stderr is a terminal, as log lines otherwise.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use kiln_compact::{Compactor, CompactorError, CompactorOptions, Progress};
use kiln_objstore::lock::BucketLock;
use tracing::{error, info, warn};

use crate::objstore_flags::ObjstoreFlags;
use crate::parse_duration_ms;

/// How long the lock holds without renewal; it is renewed every third of it.
const LOCK_TTL: Duration = Duration::from_secs(5 * 60);

#[derive(clap::Args)]
pub(crate) struct CompactArgs {
    #[command(flatten)]
    objstore: ObjstoreFlags,
    /// Scratch space for the blocks of the step at hand.
    #[arg(long = "data-dir", default_value = "./data")]
    data_dir: PathBuf,
    /// Listen address for `/metrics` and the health endpoints (with --wait).
    #[arg(long = "http-address", default_value = "0.0.0.0:10902")]
    http_address: String,
    /// Keep running: a pass every --wait-interval instead of one pass and exit.
    #[arg(short = 'w', long = "wait")]
    wait: bool,
    #[arg(long = "wait-interval", value_parser = parse_duration_ms, default_value = "5m")]
    wait_interval: i64,
    /// How long raw blocks are kept (0d: for ever).
    #[arg(long = "retention.resolution-raw", value_parser = parse_duration_ms, default_value = "0d")]
    retention_raw: i64,
    /// How long 5m blocks are kept (0d: for ever).
    #[arg(long = "retention.resolution-5m", value_parser = parse_duration_ms, default_value = "0d")]
    retention_5m: i64,
    /// How long 1h blocks are kept (0d: for ever).
    #[arg(long = "retention.resolution-1h", value_parser = parse_duration_ms, default_value = "0d")]
    retention_1h: i64,
    /// How long a block marked for deletion stays before it is deleted (stores stop
    /// serving it after their --ignore-deletion-marks-delay, which must be shorter).
    #[arg(long = "delete-delay", value_parser = parse_duration_ms, default_value = "48h")]
    delete_delay: i64,
    /// External label telling replicas apart (repeatable): blocks differing only in it
    /// are merged into one, samples at equal timestamps kept once. Irreversible.
    #[arg(long = "deduplication.replica-label")]
    replica_labels: Vec<String>,
    /// Groups compacted at once.
    #[arg(long = "compact.concurrency", default_value_t = 1)]
    concurrency: usize,
    /// Blocks younger than this that a compactor did not write are left alone.
    #[arg(long = "consistency-delay", value_parser = parse_duration_ms, default_value = "30m")]
    consistency_delay: i64,
    /// Do not downsample.
    #[arg(long = "downsampling.disable")]
    downsampling_disable: bool,
}

pub(crate) fn run(args: CompactArgs) -> anyhow::Result<()> {
    let bucket = args.objstore.bucket()?;
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating the data directory {}", args.data_dir.display()))?;
    if args.retention_raw > 0 && args.retention_raw < 40 * 3_600_000 && !args.downsampling_disable {
        warn!(
            "--retention.resolution-raw is shorter than 40h: raw blocks go before they can be downsampled"
        );
    }
    let compactor = Arc::new(Compactor::new(
        bucket.clone(),
        CompactorOptions {
            data_dir: args.data_dir.clone(),
            replica_labels: args.replica_labels.clone(),
            retention_raw: args.retention_raw,
            retention_5m: args.retention_5m,
            retention_1h: args.retention_1h,
            delete_delay: args.delete_delay,
            downsampling: !args.downsampling_disable,
            concurrency: args.concurrency.max(1),
            consistency_delay: args.consistency_delay,
            ..CompactorOptions::default()
        },
    ));
    info!(
        mode = "compact",
        version = env!("CARGO_PKG_VERSION"),
        bucket = bucket.name(),
        wait = args.wait,
        "Starting Kiln compact"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async move {
        let owner = format!("kiln compact on {} (pid {})", hostname(), std::process::id());
        let lock = BucketLock::acquire(&bucket, &owner, LOCK_TTL)
            .await
            .context("taking the bucket's compactor lock (is another compactor running?)")?;
        let stop = Arc::new(AtomicBool::new(false));
        // Renews the lock until told to release it; losing it stops the passes at the
        // next step.
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let lost = stop.clone();
        let renewer = tokio::spawn(async move {
            let mut lock = lock;
            let mut released = released;
            loop {
                tokio::select! {
                    () = tokio::time::sleep(LOCK_TTL / 3) => {
                        if let Err(e) = lock.renew().await {
                            error!(err = %e, "the bucket's compactor lock is lost; stopping");
                            lost.store(true, Ordering::Relaxed);
                            return;
                        }
                    }
                    _ = &mut released => {
                        if let Err(e) = lock.release().await {
                            warn!(err = %e, "releasing the bucket's compactor lock (it expires on its own)");
                        }
                        return;
                    }
                }
            }
        });
        let result = passes(&args, compactor, bucket, stop.clone()).await;
        let _ = release.send(());
        let _ = renewer.await;
        result
    })
}

async fn passes(
    args: &CompactArgs,
    compactor: Arc<Compactor>,
    bucket: kiln_objstore::Bucket,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<()> {
    let shutdown = {
        let stop = stop.clone();
        let signal = crate::server::shutdown_signal();
        tokio::spawn(async move {
            signal.await;
            stop.store(true, Ordering::Relaxed);
        })
    };
    let metrics = if args.wait {
        let listener = tokio::net::TcpListener::bind(&args.http_address)
            .await
            .with_context(|| format!("listening on {} (--http-address)", args.http_address))?;
        info!(component = "web", address = %listener.local_addr()?, "Listening on");
        let m = compactor.metrics();
        let writer: kiln_server::SelfMetricsWriter = Arc::new(move |out: &mut Vec<u8>| {
            m.write_metrics(out);
            bucket.metrics().write_metrics(out);
        });
        let stop = stop.clone();
        let until = async move {
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        };
        Some(tokio::spawn(kiln_server::serve_metrics_only(
            listener, writer, until,
        )))
    } else {
        None
    };
    let tty = std::io::stderr().is_terminal();
    let progress = move |p: &Progress| report_progress(p, tty);
    let result = loop {
        let started = std::time::Instant::now();
        match compactor
            .run_once(kiln_model::calendar::now_ms(), &stop, &progress)
            .await
        {
            Ok(r) => {
                if tty {
                    eprintln!();
                }
                info!(
                    groups = r.groups,
                    compactions = r.compactions,
                    vertical = r.vertical_compactions,
                    downsampled = r.downsampled.len(),
                    marked_for_deletion = r.marked_for_deletion,
                    marked_no_compact = r.marked_no_compact.len(),
                    deleted = r.deleted,
                    duration = ?started.elapsed(),
                    "Compaction pass done"
                );
                for (id, reason) in &r.marked_no_compact {
                    error!(block = %id, %reason, "block marked no-compact: repair or delete it, then remove the mark");
                }
            }
            Err(CompactorError::Stopped) => break Ok(()),
            Err(e) if args.wait => {
                error!(err = %crate::render_error(&anyhow::Error::new(e)), "Compaction pass failed (thanos_compact_halted is 1); retrying after --wait-interval");
            }
            Err(e) => break Err(anyhow::Error::new(e).context("compaction pass")),
        }
        if !args.wait {
            break Ok(());
        }
        let wait_until =
            std::time::Instant::now() + Duration::from_millis(args.wait_interval.max(1000) as u64);
        while std::time::Instant::now() < wait_until && !stop.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        if stop.load(Ordering::Relaxed) {
            break Ok(());
        }
    };
    stop.store(true, Ordering::Relaxed);
    shutdown.abort();
    if let Some(m) = metrics {
        let _ = m.await;
    }
    result
}

/// A progress bar on a terminal; a log line per step otherwise.
fn report_progress(p: &Progress, tty: bool) {
    if tty {
        let width = 30;
        let filled = (p.done * width)
            .checked_div(p.total)
            .unwrap_or(width)
            .min(width);
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r\x1b[2K{:<12} [{}{}] {}/{} {}",
            p.phase,
            "#".repeat(filled),
            "-".repeat(width - filled),
            p.done,
            p.total,
            p.detail
        );
        let _ = err.flush();
    } else {
        info!(phase = p.phase, done = p.done, total = p.total, detail = %p.detail, "progress");
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "unknown host".to_owned())
}
