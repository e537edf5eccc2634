//! Shipping blocks to object storage: `kiln server --objstore.config-file` uploads every
//! block it cuts to a bucket, as Prometheus with a Thanos sidecar does.
//!
//! While shipping, local compaction stops at level 1 (blocks are not merged locally:
//! the bucket's compactor does that, and a merged block would duplicate uploaded data),
//! as Thanos requires of the Prometheus beside its sidecar, and time retention keeps the
//! blocks not uploaded yet (the size limit still applies). The server refuses to start
//! without `global.external_labels`, which say in the bucket whose blocks they are.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use kiln_objstore::{Bucket, Shipper};
use tracing::{error, info};

/// The flags of the shipper, with Thanos sidecar's names.
#[derive(clap::Args)]
pub(crate) struct ShipperFlags {
    /// With a bucket, every new block is uploaded to it.
    #[command(flatten)]
    objstore: crate::objstore_flags::ObjstoreFlags,
    /// Also upload blocks compacted before shipping was turned on (level 2 and up): how
    /// an existing Prometheus or Kiln data directory's history moves into the bucket.
    #[arg(long = "shipper.upload-compacted")]
    upload_compacted: bool,
    /// Kiln's flag: how often the data directory is checked for blocks to upload.
    #[arg(long = "shipper.sync-interval", value_parser = crate::parse_duration_ms, default_value = "30s")]
    sync_interval: i64,
}

impl ShipperFlags {
    pub(crate) fn flag_values(&self) -> Vec<(&'static str, String)> {
        let mut v = self.objstore.flag_values();
        v.push((
            "shipper.upload-compacted",
            self.upload_compacted.to_string(),
        ));
        v.push((
            "shipper.sync-interval",
            kiln_config::Duration(self.sync_interval).to_string(),
        ));
        v
    }
}

/// A configured shipper, before it runs.
pub(crate) struct Shipping {
    pub(crate) shipper: Arc<Shipper>,
    interval: Duration,
}

impl Shipping {
    /// The shipper for `data_dir` when the flags turn shipping on. `external_labels`
    /// come from the configuration; shipping without them is refused.
    pub(crate) fn from_flags(
        flags: &ShipperFlags,
        data_dir: &Path,
        external_labels: &BTreeMap<String, String>,
    ) -> anyhow::Result<Option<Shipping>> {
        let Some(config) = flags.objstore.bucket_config()? else {
            return Ok(None);
        };
        if external_labels.is_empty() {
            anyhow::bail!(
                "shipping blocks to a bucket needs external labels (global.external_labels in \
                 the configuration file): they say in the bucket whose blocks these are"
            );
        }
        let bucket = Bucket::from_config(&config).context("setting up the bucket")?;
        info!(
            component = "shipper",
            bucket = bucket.name(),
            provider = config.provider.type_name(),
            prefix = %config.prefix,
            upload_compacted = flags.upload_compacted,
            "Shipping blocks to the bucket; local compaction stops at 2h blocks"
        );
        Ok(Some(Shipping {
            shipper: Arc::new(Shipper::new(
                bucket,
                data_dir,
                external_labels.clone(),
                flags.upload_compacted,
            )),
            interval: Duration::from_millis(flags.sync_interval.max(1) as u64),
        }))
    }

    /// Runs the shipper on its own thread (uploads read block files and indexes, which
    /// must not hold up the server's runtime): a sync at once, then one every interval,
    /// until [`ShippingHandle::stop`].
    pub(crate) fn start(self) -> anyhow::Result<ShippingHandle> {
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the shipper's runtime")?;
        let thread = std::thread::Builder::new()
            .name("shipper".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let mut tick = tokio::time::interval(self.interval);
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    loop {
                        tokio::select! {
                            _ = &mut stopped => return,
                            _ = tick.tick() => {}
                        }
                        // Stopping cuts an upload short: it leaves no block in the
                        // bucket (meta.json goes last) and is done again at the next start.
                        let result = tokio::select! {
                            _ = &mut stopped => return,
                            r = self.shipper.sync() => r,
                        };
                        match result {
                            Ok(r) if r.uploaded > 0 => {
                                info!(
                                    component = "shipper",
                                    uploaded = r.uploaded,
                                    "Shipped blocks"
                                );
                            }
                            Ok(_) => {}
                            Err(e) => error!(
                                component = "shipper",
                                err = %format!("{:#}", anyhow::Error::new(e)),
                                "Shipping blocks failed; retrying at the next sync"
                            ),
                        }
                    }
                });
            })
            .context("starting the shipper's thread")?;
        Ok(ShippingHandle {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

/// The running shipper.
pub(crate) struct ShippingHandle {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ShippingHandle {
    /// Stops the shipper (an upload in flight is abandoned) and waits for its thread.
    pub(crate) fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            error!(component = "shipper", "The shipper's thread panicked");
        }
        info!(component = "shipper", "Shipper stopped");
    }
}
