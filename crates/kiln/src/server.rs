//! `kiln server`: opens the TSDB, runs its maintenance, and serves the Prometheus HTTP
//! API until SIGINT or SIGTERM, then closes the database cleanly.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use kiln_promql::EngineOptions;
use kiln_server::ApiState;
use kiln_tsdb::db::Db;
use tracing::{error, info, warn};

mod applied;
mod shipping;
mod store_api;
mod web;

use applied::Applied;

use crate::parse_duration_ms;

/// Flags of `kiln server`, named as Prometheus names them.
#[derive(clap::Args)]
pub(crate) struct ServerArgs {
    /// Prometheus configuration file (prometheus.yml). Without one, Kiln runs on its
    /// embedded default: scrape itself every 15 s as job `kiln`.
    #[arg(long = "config.file")]
    config_file: Option<PathBuf>,
    #[command(flatten)]
    storage: crate::storage_flags::StorageFlags,
    /// Enable `POST /-/reload` (configuration reload over HTTP), as Prometheus's flag.
    #[arg(long = "web.enable-lifecycle")]
    enable_lifecycle: bool,
    /// Enable the TSDB admin API (`/api/v1/admin/tsdb/snapshot`, `delete_series`,
    /// `clean_tombstones`), as Prometheus's flag.
    #[arg(long = "web.enable-admin-api")]
    enable_admin_api: bool,
    /// Address to listen on for the web interface and API.
    #[arg(long = "web.listen-address", default_value = "127.0.0.1:9090")]
    listen_address: String,
    /// How far back to look for samples of an instant selector.
    #[arg(long = "query.lookback-delta", value_parser = parse_duration_ms, default_value = "5m")]
    lookback_delta: i64,
    /// Maximum time a query may take before being aborted.
    #[arg(long = "query.timeout", value_parser = parse_duration_ms, default_value = "2m")]
    query_timeout: i64,
    /// Maximum number of queries executed concurrently.
    #[arg(long = "query.max-concurrency", default_value_t = 20)]
    max_concurrency: usize,
    /// Maximum number of samples a single query can load into memory.
    #[arg(long = "query.max-samples", default_value_t = 50_000_000)]
    max_samples: usize,
    /// Most bytes one query may hold at once: decoded samples, vectors kept between
    /// steps, step tables and the result (Kiln's flag; 0: no limit). Range queries are
    /// evaluated in time slices, so what a query holds follows its slices, not its whole
    /// range. Beyond it the query fails with 422, like --query.max-samples.
    #[arg(long = "query.max-memory-bytes", value_parser = parse_memory_bytes, default_value = "0")]
    max_memory_bytes: usize,
    /// The URL under which Kiln is reachable from outside (alert templates'
    /// `$externalURL`).
    #[arg(long = "web.external-url", default_value = "")]
    external_url: String,
    /// Max time to tolerate a Kiln outage for restoring alerts' "for" state.
    #[arg(long = "rules.alert.for-outage-tolerance", value_parser = parse_duration_ms, default_value = "1h")]
    for_outage_tolerance: i64,
    /// Minimum duration between an alert and its restored "for" state; only for alerts
    /// with a "for" longer than this.
    #[arg(long = "rules.alert.for-grace-period", value_parser = parse_duration_ms, default_value = "10m")]
    for_grace_period: i64,
    #[command(flatten)]
    web: web::WebFlags,
    #[command(flatten)]
    shipper: shipping::ShipperFlags,
    #[command(flatten)]
    store_api: store_api::StoreApiFlags,
    /// How long shutdown (or a reload that removes a remote_write entry) may spend
    /// delivering samples already queued for remote write.
    #[arg(long = "storage.remote.flush-deadline", value_parser = parse_duration_ms, default_value = "1m")]
    remote_flush_deadline: i64,
    /// Maximum samples one remote-read request may return in all (0: no limit).
    #[arg(
        long = "storage.remote.read-sample-limit",
        default_value_t = 50_000_000
    )]
    remote_read_sample_limit: usize,
    /// Maximum remote-read requests served at once (0: no limit).
    #[arg(long = "storage.remote.read-concurrent-limit", default_value_t = 10)]
    remote_read_concurrent_limit: usize,
    /// Chunk bytes per frame of a streamed remote-read answer.
    #[arg(
        long = "storage.remote.read-max-bytes-in-frame",
        default_value_t = 1_048_576
    )]
    remote_read_max_bytes_in_frame: usize,
    /// Alerts waiting to be sent to Alertmanager at most; the oldest are dropped.
    #[arg(
        long = "alertmanager.notification-queue-capacity",
        default_value_t = 10_000
    )]
    notification_queue_capacity: usize,
}

impl ServerArgs {
    /// Every flag with its value, as `/api/v1/status/flags` shows them.
    fn flag_values(&self) -> Vec<(String, String)> {
        let d = |ms: i64| kiln_config::Duration(ms).to_string();
        [
            (
                "config.file",
                self.config_file
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
            ),
            ("web.enable-lifecycle", self.enable_lifecycle.to_string()),
            ("web.enable-admin-api", self.enable_admin_api.to_string()),
            ("web.listen-address", self.listen_address.clone()),
            (
                "storage.remote.flush-deadline",
                d(self.remote_flush_deadline),
            ),
            (
                "storage.remote.read-sample-limit",
                self.remote_read_sample_limit.to_string(),
            ),
            (
                "storage.remote.read-concurrent-limit",
                self.remote_read_concurrent_limit.to_string(),
            ),
            (
                "storage.remote.read-max-bytes-in-frame",
                self.remote_read_max_bytes_in_frame.to_string(),
            ),
            ("query.lookback-delta", d(self.lookback_delta)),
            ("query.timeout", d(self.query_timeout)),
            ("query.max-concurrency", self.max_concurrency.to_string()),
            ("query.max-samples", self.max_samples.to_string()),
            ("query.max-memory-bytes", self.max_memory_bytes.to_string()),
            ("web.external-url", self.external_url.clone()),
            (
                "rules.alert.for-outage-tolerance",
                d(self.for_outage_tolerance),
            ),
            ("rules.alert.for-grace-period", d(self.for_grace_period)),
            (
                "alertmanager.notification-queue-capacity",
                self.notification_queue_capacity.to_string(),
            ),
        ]
        .into_iter()
        .chain(self.web.flag_values())
        .chain(self.shipper.flag_values())
        .chain(self.store_api.flag_values())
        .chain(self.storage.flag_values())
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }
}

/// Seconds between looks for blocks that others wrote into the data directory.
const BLOCK_SCAN_SECONDS: u32 = 5;

/// A byte size as Prometheus writes one (`512MB`, `1GiB`, a plain number of bytes).
fn parse_memory_bytes(s: &str) -> Result<usize, String> {
    let bytes = crate::parse_size(s)?;
    usize::try_from(bytes).map_err(|_| format!("{s:?} is too large"))
}

/// The embedded default configuration: scrape this server every 15 s.
fn embedded_config(listen: std::net::SocketAddr) -> anyhow::Result<kiln_config::Config> {
    let yaml = format!(
        "global:\n  scrape_interval: 15s\n  evaluation_interval: 15s\n\
         scrape_configs:\n  - job_name: kiln\n    static_configs:\n      - targets: ['{listen}']\n"
    );
    Ok(kiln_config::Config::parse(&yaml, "embedded default")?)
}

/// Loads `--config.file`, saying loudly what in it Kiln does not act on yet. `None`
/// without a file: the embedded default is made once the listen address is known.
fn load_config(path: Option<&std::path::Path>) -> anyhow::Result<Option<kiln_config::Config>> {
    let Some(path) = path else {
        return Ok(None);
    };
    info!(filename = %path.display(), "Loading configuration file");
    let config = kiln_config::Config::load_file(path)?;
    for section in config.unapplied_sections() {
        warn!(
            section,
            "configuration section accepted but not applied yet"
        );
    }
    Ok(Some(config))
}

pub(crate) fn run(args: ServerArgs) -> anyhow::Result<()> {
    info!(
        mode = "server",
        version = env!("CARGO_PKG_VERSION"),
        storage_path = %args.storage.path.display(),
        retention = %args.storage.retention_description(),
        listen_address = %args.listen_address,
        "Starting Kiln server"
    );
    web::raise_open_files_limit(args.web.connection_limits().max_connections);
    let config_started = Instant::now();
    let config = load_config(args.config_file.as_deref())?;
    let mut opts = args.storage.db_options()?;
    args.storage.warn_ignored();
    let storage_path = args.storage.path.clone();
    let no_labels = std::collections::BTreeMap::new();
    let external_labels = config
        .as_ref()
        .map_or(&no_labels, |c| &c.global.external_labels);
    let shipping = shipping::Shipping::from_flags(&args.shipper, &storage_path, external_labels)?;
    if shipping.is_some() {
        // Blocks are merged in the bucket, not here (see server/shipping.rs).
        opts.max_block_duration = opts.chunk_range;
    }
    info!(component = "tsdb", "Starting TSDB ...");
    let tsdb_started = Instant::now();
    let db = Arc::new(
        Db::open(&storage_path, opts)
            .with_context(|| format!("opening storage at {}", storage_path.display()))?,
    );
    info!(
        component = "tsdb",
        blocks = db.blocks().len(),
        head_series = db.head().num_series(),
        duration = ?tsdb_started.elapsed(),
        "TSDB started"
    );
    for s in db.skipped_blocks() {
        error!(block = %s.dir.display(), reason = %s.reason, "skipped unreadable block");
    }
    crate::storage_flags::warn_about_aged_blocks(&db, kiln_model::calendar::now_ms());
    if let Some(s) = &shipping {
        let shipper = s.shipper.clone();
        db.hold_for_time_retention(Arc::new(move |meta| shipper.is_pending(meta)));
    }
    let engine = EngineOptions {
        lookback_delta: args.lookback_delta,
        timeout: Some(Duration::from_millis(args.query_timeout.max(0) as u64)),
        max_concurrency: args.max_concurrency,
        max_samples: args.max_samples,
        max_memory_bytes: args.max_memory_bytes,
        ..EngineOptions::default()
    };
    let process = kiln_server::self_metrics::ProcessInfo {
        start_time_seconds: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64()),
    };
    #[cfg(all(
        target_os = "linux",
        target_env = "gnu",
        not(feature = "mimalloc"),
        not(feature = "jemalloc")
    ))]
    crate::malloc_tuning::spawn_trimmer().context("starting the memory trimmer")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let scrape_manager = kiln_scrape::ScrapeManager::new(db.clone());
    let remote_write = Arc::new(kiln_remote::send::RemoteWriteSender::new(
        &storage_path.join("wal"),
        &storage_path.join("remote_write"),
        Duration::from_millis(args.remote_flush_deadline.max(0) as u64),
        Some(scraped_metadata(scrape_manager.view())),
        runtime.handle().clone(),
    ));
    // What PromQL reads: local storage with the `remote_read` endpoints merged in.
    let start_db = db.clone();
    let fanout = Arc::new(kiln_remote::read::FanoutQueryable::new(
        db.clone(),
        Arc::new(move || {
            let oldest_block = start_db.blocks().first().map(|b| b.meta().min_time);
            oldest_block.or_else(|| start_db.head().min_time())
        }),
    ));
    let metrics_db = db.clone();
    let metrics_rw = remote_write.clone();
    let metrics_shipper = shipping.as_ref().map(|s| s.shipper.clone());
    let self_metrics: kiln_server::SelfMetricsWriter = Arc::new(move |out: &mut Vec<u8>| {
        kiln_server::self_metrics::write_self_metrics(&metrics_db, &process, out);
        metrics_rw.write_metrics(metrics_db.head().max_time(), out);
        if let Some(s) = &metrics_shipper {
            s.metrics().write_metrics(out);
            s.bucket().metrics().write_metrics(out);
        }
    });
    let (reload_tx, reload_rx) = tokio::sync::mpsc::channel(4);
    let notifier = kiln_rules::notify::Notifier::new(args.notification_queue_capacity);
    let mut scrapes = ScrapeService {
        remote_write,
        remote_read: fanout.clone(),
        running: None,
        runtime: runtime.handle().clone(),
        alert_discovery: kiln_discovery::DiscoveryManager::new(),
        notifier: notifier.clone(),
        discovery: kiln_discovery::DiscoveryManager::new(),
        scrapes: scrape_manager,
        rules: kiln_rules::RuleManager::new(kiln_rules::RuleManagerOptions {
            engine: kiln_promql::Engine::new(engine.clone()),
            queryable: fanout.clone(),
            appendable: db.clone(),
            restore: kiln_rules::RestoreOptions {
                outage_tolerance_ms: args.for_outage_tolerance,
                grace_ms: args.for_grace_period,
            },
            external_url: args.external_url.clone(),
            notifier: Some(notifier.clone()),
        }),
    };
    let mut api = ApiState::new(fanout, engine)
        .with_self_metrics(self_metrics)
        .with_targets(scrapes.scrapes.view())
        .with_rules(scrapes.rules.view())
        .with_notifier(notifier.clone())
        .with_remote_read(kiln_server::RemoteReadServer::new(
            db.clone(),
            kiln_remote::read::ReadLimits {
                max_samples: args.remote_read_sample_limit,
                max_bytes_in_frame: args.remote_read_max_bytes_in_frame.max(1),
            },
            args.remote_read_concurrent_limit,
        ))
        .with_flags(args.flag_values())
        .with_tsdb(db.clone())
        .with_runtime(kiln_server::RuntimeInfo::new(
            args.storage.retention_description(),
        ));
    if args.enable_lifecycle {
        api = api.with_reload(reload_tx);
    }
    if args.enable_admin_api {
        api = api.with_admin_api();
    }
    if let Some(limits) = args.web.remote_write() {
        api = api.with_remote_write(db.clone(), limits);
    }
    let state = Arc::new(api);

    // Maintenance (head compaction, merges, retention) on its own thread, once a minute
    // as in Prometheus; in between, every few seconds, a look for blocks written into
    // the data directory by a backfill (one directory listing when there are none), so
    // that backfilled data is queryable within seconds rather than a minute.
    let stop = Arc::new(AtomicBool::new(false));
    // Dropped at shutdown: the thread's wait between rounds ends at once, so SIGTERM
    // does not wait out a sleep.
    let (wake, woken) = std::sync::mpsc::channel::<()>();
    let maintenance = {
        let (db, stop) = (db.clone(), stop.clone());
        std::thread::Builder::new()
            .name("tsdb-maintenance".into())
            .spawn(move || {
                while !stop.load(Ordering::Acquire) {
                    // Stops between steps at shutdown, so SIGTERM never waits for a
                    // whole round.
                    if let Err(e) = db.compact_until(&stop) {
                        error!(component = "tsdb", err = %e, "Compaction failed");
                    }
                    for second in 1..=60 {
                        match woken.recv_timeout(Duration::from_secs(1)) {
                            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                            _ => return,
                        }
                        if second % BLOCK_SCAN_SECONDS == 0
                            && second < 60
                            && let Err(e) = db.reload_blocks()
                        {
                            error!(component = "tsdb", err = %e, "Reloading blocks failed");
                        }
                    }
                }
            })?
    };

    let shipper = shipping.map(shipping::Shipping::start).transpose()?;

    let served = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(&args.listen_address)
            .await
            .with_context(|| format!("listening on {}", args.listen_address))?;
        let address = listener.local_addr()?;
        let config = match config {
            Some(c) => c,
            None => embedded_config(address)?,
        };
        let applied = scrapes.apply(&config).await?;
        let file = args.config_file.as_ref().map_or_else(
            || "embedded default".to_owned(),
            |p| p.display().to_string(),
        );
        applied::log_loaded(&file, &config, &applied, config_started.elapsed());
        state.set_config(&config);
        let watcher = scrapes.discovery.watcher();
        let alert_watcher = scrapes.alert_discovery.watcher();
        let (notifier_stop, notifier_stop_rx) = tokio::sync::watch::channel(false);
        let sender = tokio::spawn(notifier.clone().run(notifier_stop_rx));
        let scrapes = Arc::new(tokio::sync::Mutex::new(scrapes));
        // Listening for SIGHUP starts here, before readiness is announced: a SIGHUP's
        // default action ends the process, so one sent right after the ready line must
        // find the handler in place.
        let hangup = listen_for(tokio::signal::unix::SignalKind::hangup(), "SIGHUP");
        let reloader = tokio::spawn(reload_loop(
            args.config_file.clone(),
            scrapes.clone(),
            state.clone(),
            reload_rx,
            hangup,
        ));
        let (grpc_stop, grpc_stopped) = tokio::sync::watch::channel(false);
        let grpc = store_api::start(
            &args.store_api,
            db.clone(),
            &config.global.external_labels,
            grpc_stopped,
        )
        .await?;
        let discovered = tokio::spawn(discovery_updates(scrapes.clone(), watcher));
        let alertmanagers_discovered =
            tokio::spawn(alertmanager_updates(scrapes.clone(), alert_watcher));
        // Tests and scripts read the bound address (useful with port 0) from here.
        info!(component = "web", address = %address, "Listening on");
        info!("Server is ready to receive web requests.");
        let served = kiln_server::serve(
            listener,
            state,
            args.web.connection_limits(),
            shutdown_signal(),
        )
        .await
        .context("serving HTTP");
        info!(component = "web", "Web handler stopped");
        let _ = grpc_stop.send(true);
        if let Some(grpc) = grpc {
            let _ = grpc.await;
            info!(component = "grpc", "StoreAPI stopped");
        }
        reloader.abort();
        let _ = reloader.await;
        discovered.abort();
        let _ = discovered.await;
        alertmanagers_discovered.abort();
        let _ = alertmanagers_discovered.await;
        // Loops and groups stop before storage closes; series get no staleness markers
        // at shutdown (as in Prometheus), so they continue after a restart.
        {
            let mut scrapes = scrapes.lock().await;
            scrapes.discovery.stop_all();
            info!(component = "discovery", "Scrape discovery manager stopped");
            scrapes.scrapes.stop_all().await;
            info!(component = "scrape", "Scrape manager stopped");
            scrapes.rules.stop_all().await;
            info!(component = "rules", "Rule manager stopped");
            scrapes.alert_discovery.stop_all();
            info!(component = "discovery", "Notify discovery manager stopped");
            // Last: what the scrapes and rules wrote still goes out.
            scrapes.remote_write.stop().await;
            info!(component = "remote", "Remote storage stopped");
        }
        // Alerts queued by the last evaluations still go out.
        let _ = notifier_stop.send(true);
        let _ = sender.await;
        info!(component = "notifier", "Notifier manager stopped");
        drop(scrapes);
        served
    });
    if let Some(shipper) = shipper {
        shipper.stop();
    }
    stop.store(true, Ordering::Release);
    drop(wake);
    if maintenance.join().is_err() {
        error!(component = "tsdb", "The TSDB maintenance thread panicked");
    }
    runtime.shutdown_timeout(Duration::from_secs(5));
    served?;
    let db =
        Arc::try_unwrap(db).map_err(|_| anyhow::anyhow!("storage still in use at shutdown"))?;
    db.close_before_exit().context("closing storage")?;
    info!(component = "tsdb", "TSDB stopped");
    info!("See you next time!");
    Ok(())
}

/// Service discovery and the scrape loops it feeds, the rule groups, and the
/// Alertmanagers alerts go to: what a configuration (re)load changes, together.
struct ScrapeService {
    discovery: kiln_discovery::DiscoveryManager,
    scrapes: kiln_scrape::ScrapeManager,
    rules: kiln_rules::RuleManager,
    /// Finds the Alertmanagers of `alerting.alertmanagers` (keys `config-N`).
    alert_discovery: kiln_discovery::DiscoveryManager,
    notifier: Arc<kiln_rules::notify::Notifier>,
    /// The `remote_write` queues.
    remote_write: Arc<kiln_remote::send::RemoteWriteSender>,
    /// Where the `remote_read` endpoints go.
    remote_read: Arc<kiln_remote::read::FanoutQueryable>,
    runtime: tokio::runtime::Handle,
    /// The configuration applied last, to tell what a reload changes.
    running: Option<kiln_config::Config>,
}

impl ScrapeService {
    /// Loads the rule files of `config` first (if one is invalid, nothing changes), then
    /// runs the discoveries of `config` (unchanged ones keep running) and brings the
    /// scrape loops in line with it and the groups known now. Says what changed since
    /// the configuration applied before.
    async fn apply(&mut self, config: &kiln_config::Config) -> anyhow::Result<Applied> {
        let sets = config
            .alerting
            .alertmanagers
            .iter()
            .enumerate()
            .map(|(i, am)| {
                kiln_rules::notify::AlertmanagerSet::new(am.clone())
                    .map(Arc::new)
                    .map_err(|e| anyhow::anyhow!("alerting.alertmanagers[{i}]: {e}"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let readers = config
            .remote_read
            .iter()
            .map(|rr| {
                kiln_remote::read::RemoteReadClient::new(
                    rr.clone(),
                    config.global.external_labels.clone(),
                    self.runtime.clone(),
                )
                .map_err(anyhow::Error::msg)
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        self.remote_write
            .apply(&config.remote_write, &config.global.external_labels)
            .await
            .map_err(anyhow::Error::msg)?;
        self.remote_read.set_remotes(readers);
        let groups = self
            .rules
            .apply(&kiln_rules::RuleSettings::of_config(config))
            .await
            .context("loading rule files")?;
        self.notifier.configure(
            kiln_rules::notify::AlertShaping {
                external_labels: config.global.external_labels.clone(),
                alert_relabel_configs: config.alerting.alert_relabel_configs.clone(),
            },
            sets,
        );
        self.alert_discovery.apply(
            config
                .alerting
                .alertmanagers
                .iter()
                .enumerate()
                .map(|(i, am)| {
                    let d = kiln_discovery::DiscoveryConfigs::of_alertmanager_config(am);
                    (format!("config-{i}"), d)
                })
                .collect(),
        );
        self.update_alertmanagers();
        self.discovery.apply(
            config
                .scrape_configs
                .iter()
                .map(|sc| {
                    let d = kiln_discovery::DiscoveryConfigs::of_scrape_config(sc);
                    (sc.job_name.clone(), d)
                })
                .collect(),
        );
        let targets = self.discovery.groups();
        self.scrapes.apply(config, &targets).await;
        let before = self.running.replace(config.clone()).unwrap_or_default();
        Ok(Applied {
            config: config.changes_since(&before),
            groups,
        })
    }
}

impl ScrapeService {
    /// Hands the Alertmanagers discovered now to the notifier's sets.
    fn update_alertmanagers(&self) {
        let groups = self.alert_discovery.groups();
        for (i, set) in self.notifier.sets().iter().enumerate() {
            let found = groups.get(&format!("config-{i}"));
            set.update(found.map(Vec::as_slice).unwrap_or_default());
        }
    }
}

/// The metadata remote write sends: every family the scrape targets exposed, once.
fn scraped_metadata(targets: kiln_scrape::TargetsView) -> kiln_remote::send::MetadataSource {
    use kiln_exposition::MetricType;
    Arc::new(move || {
        let snapshot = targets.snapshot();
        let mut seen = std::collections::BTreeMap::new();
        for target in &snapshot.active {
            for (name, m) in target.status.metadata.iter() {
                seen.entry(name.clone())
                    .or_insert_with(|| kiln_remote::send::FamilyMetadata {
                        family: name.clone(),
                        kind: match m.kind {
                            MetricType::Counter => 1,
                            MetricType::Gauge => 2,
                            MetricType::Histogram => 3,
                            MetricType::GaugeHistogram => 4,
                            MetricType::Summary => 5,
                            MetricType::Info => 6,
                            MetricType::StateSet => 7,
                            MetricType::Unknown => 0,
                        },
                        help: m.help.clone(),
                        unit: m.unit.clone(),
                    });
            }
        }
        seen.into_values().collect()
    })
}

/// Hands Alertmanager discovery's changes to the notifier.
async fn alertmanager_updates(
    service: Arc<tokio::sync::Mutex<ScrapeService>>,
    watcher: kiln_discovery::ChangeWatcher,
) {
    loop {
        watcher.changed().await;
        service.lock().await.update_alertmanagers();
    }
}

/// Hands discovery's changes to the scrape manager: at once, then at most every 5 s,
/// as Prometheus does, so a flapping discovery does not churn the scrape loops.
async fn discovery_updates(
    service: Arc<tokio::sync::Mutex<ScrapeService>>,
    watcher: kiln_discovery::ChangeWatcher,
) {
    loop {
        watcher.changed().await;
        {
            let mut service = service.lock().await;
            let groups = service.discovery.groups();
            service.scrapes.apply_groups(&groups).await;
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

/// Reloads the configuration on SIGHUP and on `/-/reload` requests: a valid file
/// replaces the scrape targets (unchanged ones keep running) and the external labels; an
/// invalid one is reported and the running configuration stays. Without a config file
/// there is nothing to reload.
async fn reload_loop(
    path: Option<PathBuf>,
    scrapes: Arc<tokio::sync::Mutex<ScrapeService>>,
    state: Arc<ApiState>,
    mut requests: tokio::sync::mpsc::Receiver<tokio::sync::oneshot::Sender<Result<(), String>>>,
    mut hangup: Option<tokio::signal::unix::Signal>,
) {
    loop {
        let reply = tokio::select! {
            Some(reply) = requests.recv() => Some(reply),
            Some(()) = async {
                match hangup.as_mut() {
                    Some(h) => h.recv().await,
                    None => std::future::pending().await,
                }
            } => None,
            else => return,
        };
        let trigger = if reply.is_some() { "web" } else { "SIGHUP" };
        let Some(p) = &path else {
            info!(
                trigger,
                "No configuration file to reload; the embedded default keeps running"
            );
            if let Some(reply) = reply {
                let _ = reply.send(Ok(()));
            }
            continue;
        };
        let started = Instant::now();
        let reloaded = async {
            let Some(config) = load_config(Some(p))? else {
                anyhow::bail!("no configuration file");
            };
            let applied = scrapes.lock().await.apply(&config).await?;
            state.set_config(&config);
            anyhow::Ok(applied)
        }
        .await;
        state.runtime.record_reload(reloaded.is_ok());
        let file = p.display().to_string();
        let outcome = match reloaded {
            Ok(applied) => {
                applied::log_reloaded(&file, trigger, &applied, started.elapsed());
                Ok(())
            }
            Err(e) => {
                // The chain without repeats: a config error's text already holds its
                // cause's.
                let message = crate::render_error(&e);
                error!(
                    filename = file,
                    trigger,
                    err = %message,
                    "Error reloading config; the running configuration stays"
                );
                Err(message)
            }
        };
        if let Some(reply) = reply {
            let _ = reply.send(outcome);
        }
    }
}

/// Completes on SIGINT or SIGTERM.
/// A listener for signal `kind` from now on; `None`, logged, when it cannot be had.
fn listen_for(
    kind: tokio::signal::unix::SignalKind,
    name: &str,
) -> Option<tokio::signal::unix::Signal> {
    match tokio::signal::unix::signal(kind) {
        Ok(s) => Some(s),
        Err(e) => {
            error!(err = %e, "Cannot listen for {name}");
            None
        }
    }
}

/// The next delivery of signal `s`; never without a listener.
async fn received(s: &mut Option<tokio::signal::unix::Signal>) {
    match s {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending::<()>().await,
    }
}

pub(crate) fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::SignalKind;
    // Listening starts now, when the server is set up, not at the first poll: a signal
    // sent right after the ready line must stop the server cleanly, not by the
    // signal's default action.
    let mut interrupt = listen_for(SignalKind::interrupt(), "SIGINT");
    let mut terminate = listen_for(SignalKind::terminate(), "SIGTERM");
    async move {
        let signal = tokio::select! {
            () = received(&mut interrupt) => "interrupt",
            () = received(&mut terminate) => "terminated",
        };
        // Prometheus's wording and level; the signal named as Go names it.
        warn!(signal, "Received an OS signal, exiting gracefully...");
    }
}
