//! Scraping, Prometheus's way.
//!
//! Module map:
//! - [`target`]: turning discovered target groups into scrape targets: the
//!   `__address__`/`__scheme__`/`__metrics_path__`/`__param_*` labels, target relabeling,
//!   the `instance` default, the scrape URL.
//! - [`append`]: one scrape's body into storage: target labels and `honor_labels`,
//!   metric relabeling, limits, timestamps, staleness markers and the report series
//!   (`up`, `scrape_duration_seconds`, ...).
//! - [`scrape_loop`]: one target's loop: schedule, HTTP fetch (Accept, gzip, auth,
//!   timeout, body size limit), storing, staleness when the target goes away.
//! - [`body_pool`]: body buffers lent to the loops for one scrape at a time.
//! - [`manager`]: [`ScrapeManager`], the loops of a whole configuration, kept across
//!   reloads where nothing changed.
//! - [`status`]: targets' health and last scrape, read through a [`TargetsView`].
//!
//! Target groups come from `kiln-discovery`; HTTP clients (TLS, auth) from
//! `kiln-http-client`.

pub mod append;
pub mod body_pool;
pub mod manager;
pub mod scrape_loop;
pub mod status;
pub mod target;

pub use manager::ScrapeManager;
pub use status::{
    ActiveTarget, ScrapeRejections, ScrapeStatus, TargetHealth, TargetsSnapshot, TargetsView,
};

pub use append::{
    FamilyMetadata, ScrapeCache, ScrapeError, ScrapeReport, ScrapeTiming, TargetMetadata,
    store_scrape,
};

pub use target::{
    PopulatedTargets, Target, TargetError, TargetGroup, TargetOutcome, populate_target,
    populate_targets,
};
