//! `kiln server --grpc-address`: Thanos's StoreAPI (`thanos.Store`, `thanos.info.Info`)
//! over the server's own data, as a Thanos sidecar serves its Prometheus's, so that a
//! Thanos querier (or `kiln query`) reads the server like any sidecar.

use std::sync::Arc;

use anyhow::Context;
use kiln_storeapi::{StoreOptions, StoreService};
use kiln_tsdb::db::Db;
use tracing::{error, info};

/// The StoreAPI flag, with Thanos sidecar's name.
#[derive(clap::Args)]
pub(crate) struct StoreApiFlags {
    /// Listen address of the StoreAPI (gRPC) for the server's data, e.g. 0.0.0.0:10901
    /// as a Thanos sidecar; off when not given. Series carry the configuration's
    /// external labels.
    #[arg(long = "grpc-address")]
    grpc_address: Option<String>,
}

impl StoreApiFlags {
    pub(crate) fn flag_values(&self) -> Vec<(&'static str, String)> {
        vec![(
            "grpc-address",
            self.grpc_address.clone().unwrap_or_default(),
        )]
    }
}

/// Binds the StoreAPI listener, when the flag asks for one, and serves it on the runtime
/// until `shutdown` fires. Returns the serving task.
pub(crate) async fn start(
    flags: &StoreApiFlags,
    db: Arc<Db>,
    external_labels: &std::collections::BTreeMap<String, String>,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<Option<tokio::task::JoinHandle<()>>> {
    let Some(address) = &flags.grpc_address else {
        return Ok(None);
    };
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("listening on {address} (--grpc-address)"))?;
    let bound = listener.local_addr()?;
    let pairs: Vec<(&str, &str)> = external_labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let range_db = db.clone();
    let service = StoreService::new(
        db,
        kiln_model::Labels::from_pairs(&pairs),
        Arc::new(move || {
            let oldest_block = range_db.blocks().first().map(|b| b.meta().min_time);
            let min = oldest_block.or_else(|| range_db.head().min_time())?;
            Some((min, i64::MAX))
        }),
        StoreOptions::default(),
    );
    info!(component = "grpc", grpc_address = %bound, "StoreAPI (thanos.Store, thanos.info.Info) serving");
    let mut shutdown = shutdown;
    let stopped = async move {
        let _ = shutdown.wait_for(|stop| *stop).await;
    };
    Ok(Some(tokio::spawn(async move {
        if let Err(e) = kiln_storeapi::serve(service, listener, stopped).await {
            error!(component = "grpc", err = %e, "StoreAPI server failed");
        }
    })))
}
