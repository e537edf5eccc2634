//! `kiln store`: the store gateway. Serves every block of a bucket, as Thanos's store
//! does, over Thanos's StoreAPI (gRPC, `--grpc-address`) and over Prometheus's query API
//! (`--http-address`: `/api/v1/query`, `query_range`, `series`, `labels`,
//! `label/<name>/values`, and `/metrics`). The flags are Thanos store's.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use kiln_bucketstore::{AtResolution, BucketStore, Limits, StoreConfig, SyncOptions};
use kiln_promql::EngineOptions;
use kiln_server::ApiState;
use kiln_storage::DecodedChunks;
use kiln_storeapi::{StoreOptions, StoreService};
use tracing::{error, info, warn};

use crate::objstore_flags::ObjstoreFlags;
use crate::{parse_duration_ms, parse_size};

#[derive(clap::Args)]
pub(crate) struct StoreArgs {
    #[command(flatten)]
    objstore: ObjstoreFlags,
    /// Local directory for index-headers and copies of `meta.json` (both rebuilt from
    /// the bucket when missing).
    #[arg(long = "data-dir", default_value = "./data")]
    data_dir: PathBuf,
    /// Listen address of the StoreAPI (gRPC).
    #[arg(long = "grpc-address", default_value = "0.0.0.0:10901")]
    grpc_address: String,
    /// Listen address of the query API and `/metrics`.
    #[arg(long = "http-address", default_value = "0.0.0.0:10902")]
    http_address: String,
    /// Serve blocks ending after this time only: RFC 3339, or a duration before now
    /// (`-2w`, as Thanos's `-` form).
    #[arg(long = "min-time", value_parser = parse_time_or_duration, default_value = "0000-01-01T00:00:00Z")]
    min_time: TimeOrDuration,
    /// Serve blocks starting before this time only (same forms as --min-time).
    #[arg(long = "max-time", value_parser = parse_time_or_duration, default_value = "9999-12-31T23:59:59Z")]
    max_time: TimeOrDuration,
    /// File of relabel configs applied to each block's external labels; blocks whose
    /// labels are dropped are not served (shard a bucket between stores with it).
    #[arg(
        long = "selector.relabel-config-file",
        conflicts_with = "relabel_config"
    )]
    relabel_config_file: Option<PathBuf>,
    /// The relabel configs as YAML text, instead of a file.
    #[arg(long = "selector.relabel-config")]
    relabel_config: Option<String>,
    /// How often the bucket is listed for new and deleted blocks.
    #[arg(long = "sync-block-duration", value_parser = parse_duration_ms, default_value = "15m")]
    sync_block_duration: i64,
    /// Blocks younger than this (by their ULID) are not served yet, unless a compactor
    /// wrote them.
    #[arg(long = "consistency-delay", value_parser = parse_duration_ms, default_value = "0s")]
    consistency_delay: i64,
    /// Blocks marked for deletion longer ago than this are no longer served; keep it
    /// below the compactor's --delete-delay.
    #[arg(long = "ignore-deletion-marks-delay", value_parser = parse_duration_ms, default_value = "24h")]
    ignore_deletion_marks_delay: i64,
    /// Bytes of postings lists and series entries kept in memory.
    #[arg(long = "index-cache-size", value_parser = parse_size, default_value = "250MB")]
    index_cache_size: u64,
    /// Most series one request may select (0: no limit).
    #[arg(long = "store.limits.request-series", default_value_t = 0)]
    request_series: u64,
    /// Most samples one request may read (0: no limit).
    #[arg(long = "store.limits.request-samples", default_value_t = 0)]
    request_samples: u64,
    /// Thanos's older name for a per-request sample limit (0: none); the smaller of the
    /// two applies.
    #[arg(long = "store.grpc.series-sample-limit", default_value_t = 0)]
    series_sample_limit: u64,
    /// `Series` calls answered at once; later ones wait.
    #[arg(long = "store.grpc.series-max-concurrency", default_value_t = 20)]
    series_max_concurrency: usize,
    /// Longest a query on the HTTP API may run.
    #[arg(long = "query.timeout", value_parser = parse_duration_ms, default_value = "2m")]
    query_timeout: i64,
}

/// A time flag: absolute (Unix ms), or relative to the start (ms before now).
#[derive(Debug, Clone, Copy)]
pub(crate) enum TimeOrDuration {
    At(i64),
    Ago(i64),
}

impl TimeOrDuration {
    fn resolve(self, now_ms: i64) -> i64 {
        match self {
            TimeOrDuration::At(t) => t,
            TimeOrDuration::Ago(d) => now_ms.saturating_sub(d),
        }
    }
}

fn parse_time_or_duration(s: &str) -> Result<TimeOrDuration, String> {
    if let Some(t) = kiln_model::calendar::parse_rfc3339_ms(s) {
        return Ok(TimeOrDuration::At(t));
    }
    // A duration means "that long before now", with or without Thanos's `-`.
    let d = s.strip_prefix('-').unwrap_or(s);
    let ms = kiln_model::parse_duration_ms(d)
        .map_err(|_| format!("{s:?} is neither an RFC 3339 time nor a duration like -2w"))?;
    Ok(TimeOrDuration::Ago(ms))
}

fn duration(ms: i64) -> Duration {
    Duration::from_millis(ms.max(0) as u64)
}

impl StoreArgs {
    fn relabel(&self) -> anyhow::Result<Vec<kiln_model::relabel::RelabelConfig>> {
        let (text, origin) = match (&self.relabel_config_file, &self.relabel_config) {
            (Some(path), _) => (
                std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?,
                path.display().to_string(),
            ),
            (None, Some(text)) => (text.clone(), "--selector.relabel-config".to_owned()),
            (None, None) => return Ok(Vec::new()),
        };
        kiln_config::parse_relabel_configs(&text, &origin).map_err(Into::into)
    }

    fn limits(&self) -> Limits {
        let samples = [self.request_samples, self.series_sample_limit]
            .into_iter()
            .filter(|&l| l > 0)
            .min()
            .unwrap_or(0);
        Limits {
            series: self.request_series,
            samples,
        }
    }

    fn flag_values(&self) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = self
            .objstore
            .flag_values()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        v.extend([
            ("data-dir".to_owned(), self.data_dir.display().to_string()),
            ("grpc-address".to_owned(), self.grpc_address.clone()),
            ("http-address".to_owned(), self.http_address.clone()),
            (
                "index-cache-size".to_owned(),
                self.index_cache_size.to_string(),
            ),
            (
                "store.limits.request-series".to_owned(),
                self.request_series.to_string(),
            ),
            (
                "store.limits.request-samples".to_owned(),
                self.request_samples.to_string(),
            ),
            (
                "store.grpc.series-max-concurrency".to_owned(),
                self.series_max_concurrency.to_string(),
            ),
        ]);
        v
    }
}

pub(crate) fn run(args: StoreArgs) -> anyhow::Result<()> {
    let bucket = args.objstore.bucket()?;
    let now = kiln_model::calendar::now_ms();
    let sync = SyncOptions {
        min_time: args.min_time.resolve(now),
        max_time: args.max_time.resolve(now),
        relabel: args.relabel()?,
        consistency_delay: duration(args.consistency_delay),
        ignore_deletion_marks_delay: duration(args.ignore_deletion_marks_delay),
    };
    if sync.min_time > sync.max_time {
        anyhow::bail!("--min-time is after --max-time");
    }
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating the data directory {}", args.data_dir.display()))?;
    info!(
        mode = "store",
        version = env!("CARGO_PKG_VERSION"),
        bucket = bucket.name(),
        data_dir = %args.data_dir.display(),
        "Starting Kiln store"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let store = Arc::new(BucketStore::new(
        bucket.clone(),
        &args.data_dir,
        StoreConfig {
            sync,
            index_cache_bytes: args.index_cache_size,
            limits: args.limits(),
        },
        runtime.handle().clone(),
    ));
    runtime.block_on(serve(args, store, bucket))
}

async fn serve(
    args: StoreArgs,
    store: Arc<BucketStore>,
    bucket: kiln_objstore::Bucket,
) -> anyhow::Result<()> {
    // The first sync before answering: a store that says it is ready serves the bucket.
    let started = std::time::Instant::now();
    let report = store
        .sync(kiln_model::calendar::now_ms())
        .await
        .context("listing the bucket's blocks")?;
    info!(
        blocks = report.loaded,
        partial = report.partial,
        corrupt = report.corrupt.len(),
        duration = ?started.elapsed(),
        "Bucket synced"
    );
    for (id, reason) in &report.corrupt {
        warn!(block = %id, %reason, "skipping a block whose meta.json does not read");
    }

    let grpc = tokio::net::TcpListener::bind(&args.grpc_address)
        .await
        .with_context(|| format!("listening on {} (--grpc-address)", args.grpc_address))?;
    let http = tokio::net::TcpListener::bind(&args.http_address)
        .await
        .with_context(|| format!("listening on {} (--http-address)", args.http_address))?;

    let (range_store, sets_store, res_store) = (store.clone(), store.clone(), store.clone());
    let service = StoreService::self_labelled(
        store.clone(),
        Arc::new(move || sets_store.label_sets()),
        Arc::new(move || range_store.time_range()),
        StoreOptions {
            component_type: "store",
            max_concurrent_series: args.series_max_concurrency,
            ..StoreOptions::default()
        },
    )
    .with_resolutions(Arc::new(move |max_resolution| {
        Arc::new(AtResolution {
            store: res_store.clone(),
            max_resolution,
        })
    }));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut grpc_stopped = stopped.clone();
    let grpc_address = grpc.local_addr()?;
    let grpc_task = tokio::spawn(async move {
        let until = async move {
            let _ = grpc_stopped.wait_for(|s| *s).await;
        };
        if let Err(e) = kiln_storeapi::serve(service, grpc, until).await {
            error!(component = "grpc", err = %e, "StoreAPI server failed");
        }
    });
    info!(component = "grpc", grpc_address = %grpc_address, "StoreAPI (thanos.Store, thanos.info.Info) serving");

    let sync_store = store.clone();
    let mut sync_stopped = stopped.clone();
    let interval = duration(args.sync_block_duration).max(Duration::from_secs(1));
    let syncer = tokio::spawn(async move {
        loop {
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                _ = sync_stopped.wait_for(|s| *s) => return,
            }
            match sync_store.sync(kiln_model::calendar::now_ms()).await {
                Ok(r) if r.added > 0 || r.dropped > 0 => {
                    info!(
                        blocks = r.loaded,
                        added = r.added,
                        dropped = r.dropped,
                        "Bucket synced"
                    )
                }
                Ok(_) => {}
                Err(e) => {
                    error!(err = %e, "Syncing the bucket failed; serving the blocks known before")
                }
            }
        }
    });

    let metrics_store = store.clone();
    let self_metrics: kiln_server::SelfMetricsWriter = Arc::new(move |out: &mut Vec<u8>| {
        metrics_store.write_metrics(out);
        bucket.metrics().write_metrics(out);
    });
    let engine = EngineOptions {
        timeout: Some(duration(args.query_timeout)),
        ..EngineOptions::default()
    };
    let api_store = store.clone();
    let state = Arc::new(
        ApiState::new(Arc::new(DecodedChunks(store.clone())), engine)
            .with_self_metrics(self_metrics)
            .with_flags(args.flag_values())
            .with_resolutions(Arc::new(move |max_resolution| {
                Arc::new(DecodedChunks(AtResolution {
                    store: api_store.clone(),
                    max_resolution,
                }))
            })),
    );
    let address = http.local_addr()?;
    info!(component = "web", address = %address, "Listening on");
    let served = kiln_server::serve(
        http,
        state,
        kiln_server::ConnectionLimits::default(),
        crate::server::shutdown_signal(),
    )
    .await
    .context("serving HTTP");
    let _ = stop.send(true);
    let _ = grpc_task.await;
    let _ = syncer.await;
    info!("Store stopped");
    served
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn time_flags_take_rfc3339_and_durations_before_now() {
        let now = 1_700_000_000_000;
        let at = parse_time_or_duration("2023-11-14T22:13:20Z").unwrap();
        assert_eq!(at.resolve(now), now);
        let ago = parse_time_or_duration("-2w").unwrap();
        assert_eq!(ago.resolve(now), now - 14 * 86_400_000);
        assert_eq!(
            parse_time_or_duration("2h").unwrap().resolve(now),
            now - 7_200_000
        );
        let far = parse_time_or_duration("9999-12-31T23:59:59Z").unwrap();
        assert!(far.resolve(now) > now);
        let early = parse_time_or_duration("0000-01-01T00:00:00Z").unwrap();
        assert!(early.resolve(now) < 0);
        assert!(parse_time_or_duration("yesterday").is_err());
    }
}
