//! The flags of `kiln server` that bound what HTTP clients can hold (connections, read
//! time, remote-write decoding), and raising the open-files limit those connections
//! count against.

use std::time::Duration;

use tracing::{info, warn};

/// Connection and remote-write flags. Prometheus's names and defaults where Prometheus
/// has the flag; the remote-write concurrency flags are Kiln's.
#[derive(clap::Args)]
pub(crate) struct WebFlags {
    /// Maximum duration before timing out read of the request, and closing idle
    /// connections: a request's headers must arrive within it (on a new connection and
    /// after each answer on a kept-alive one), and its body within it of the headers
    /// (408 otherwise).
    #[arg(long = "web.read-timeout", value_parser = crate::parse_duration_ms, default_value = "5m")]
    read_timeout: i64,
    /// Maximum number of simultaneous connections. Beyond it, 8 more connections are
    /// accepted that answer only /-/healthy and /-/ready (Kiln's addition); further
    /// ones wait to be accepted.
    #[arg(long = "web.max-connections", default_value_t = 512)]
    max_connections: usize,
    /// Enable the remote-write receiver (`POST /api/v1/write`), as Prometheus's flag;
    /// off by default, and then the endpoint answers 404.
    #[arg(long = "web.enable-remote-write-receiver")]
    enable_remote_write_receiver: bool,
    /// Kiln's flag: remote-write requests read and decoded at once (at least 1); each
    /// holds at most 32 MiB of body and 256 MiB decompressed. Others wait.
    #[arg(long = "storage.remote.write-concurrent-limit", default_value_t = 10)]
    remote_write_concurrent_limit: usize,
    /// Kiln's flag: how long a remote-write request waits for a decoding slot before it
    /// is answered 503 with Retry-After (senders retry it).
    #[arg(long = "storage.remote.write-queue-wait", value_parser = crate::parse_duration_ms, default_value = "5s")]
    remote_write_queue_wait: i64,
}

fn duration(ms: i64) -> Duration {
    Duration::from_millis(ms.max(0) as u64)
}

impl WebFlags {
    /// The connection limits of the HTTP server.
    pub(crate) fn connection_limits(&self) -> kiln_server::ConnectionLimits {
        kiln_server::ConnectionLimits {
            read_timeout: duration(self.read_timeout),
            max_connections: self.max_connections.max(1),
        }
    }

    /// The remote-write receiver's limits; `None` when it is not enabled.
    pub(crate) fn remote_write(&self) -> Option<kiln_server::RemoteWriteLimits> {
        self.enable_remote_write_receiver
            .then(|| kiln_server::RemoteWriteLimits {
                concurrency: self.remote_write_concurrent_limit.max(1),
                queue_wait: duration(self.remote_write_queue_wait),
            })
    }

    /// Every flag with its value, as `/api/v1/status/flags` shows them.
    pub(crate) fn flag_values(&self) -> Vec<(&'static str, String)> {
        let d = |ms: i64| kiln_config::Duration(ms).to_string();
        vec![
            ("web.read-timeout", d(self.read_timeout)),
            ("web.max-connections", self.max_connections.to_string()),
            (
                "web.enable-remote-write-receiver",
                self.enable_remote_write_receiver.to_string(),
            ),
            (
                "storage.remote.write-concurrent-limit",
                self.remote_write_concurrent_limit.to_string(),
            ),
            (
                "storage.remote.write-queue-wait",
                d(self.remote_write_queue_wait),
            ),
        ]
    }
}

/// Raises the soft open-files limit to the hard limit (as Go programs, Prometheus
/// among them, do at start): every connection is a file descriptor, and the usual soft
/// limit of 1024 is below `--web.max-connections`' default plus the TSDB's files.
/// Logs the limits; warns when connections could still exhaust them.
pub(crate) fn raise_open_files_limit(max_connections: usize) {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let show = |v: Option<u64>| v.map_or_else(|| "unlimited".to_owned(), |n| n.to_string());
    let before = getrlimit(Resource::Nofile);
    let mut soft = before.current;
    if before.current != before.maximum {
        let raised = Rlimit {
            current: before.maximum,
            maximum: before.maximum,
        };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => soft = before.maximum,
            Err(e) => warn!(
                soft = %show(before.current),
                hard = %show(before.maximum),
                err = %e,
                "Cannot raise the open files limit"
            ),
        }
    }
    info!(
        fd_limits = %format!("(soft={}, hard={})", show(soft), show(before.maximum)),
        previous_soft = %show(before.current),
        "Open files limit"
    );
    // Connections (with the health reserve) and a margin for the TSDB, the WAL and
    // outgoing connections.
    let needed = (max_connections + kiln_server::connections::HEALTH_RESERVE + 256) as u64;
    if let Some(limit) = soft
        && limit < needed
    {
        warn!(
            fd_limit = limit,
            max_connections,
            "The open files limit is low for --web.max-connections: at the limit, new connections and files fail with 'too many open files'"
        );
    }
}
