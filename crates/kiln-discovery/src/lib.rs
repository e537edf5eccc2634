//! Service discovery, Prometheus's way: where the targets of a scrape config come from.
//!
//! Every discovery mechanism is a *provider*: a task that publishes the complete list of
//! target groups it currently knows, again whenever it learns something new. The
//! [`DiscoveryManager`] runs the providers of each job, keeps the latest list of each,
//! and tells its user when something changed; the user (the scrape manager) then reads
//! all groups of all jobs and reconciles its targets. Publishing whole lists instead of
//! deltas keeps providers simple and makes a lost update harmless.
//!
//! Module map:
//! - [`group`]: [`TargetGroup`] and the JSON/YAML target-group format.
//! - [`manager`]: [`DiscoveryManager`] and the [`Publisher`] handed to providers.
//! - [`file`]: `file_sd_configs` (files polled for changes, re-read periodically).
//! - [`http`](crate::http): `http_sd_configs`.
//! - [`dns`]: `dns_sd_configs` (SRV, A, AAAA, MX, NS) with a small DNS client of its own.
//! - [`kubernetes`]: `kubernetes_sd_configs` (node, pod, service, endpoints,
//!   endpointslice, ingress) by listing and watching the API server.
//!
//! A provider that fails (an unreachable URL, a file that does not parse) logs the error
//! and keeps publishing what it last knew, as Prometheus does: a discovery hiccup never
//! removes healthy targets.

pub mod dns;
pub mod file;
pub mod group;
pub mod http;
pub mod kubernetes;
pub mod manager;

pub use group::{GroupFormat, TargetGroup, parse_groups};
pub use manager::{ChangeWatcher, DiscoveryConfigs, DiscoveryManager, Publisher};
