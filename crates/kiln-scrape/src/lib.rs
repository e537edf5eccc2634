//! Scraping, Prometheus's way.
//!
//! Module map:
//! - [`target`]: turning discovered target groups into scrape targets: the
//!   `__address__`/`__scheme__`/`__metrics_path__`/`__param_*` labels, target relabeling,
//!   the `instance` default, the scrape URL.
//! - [`append`]: one scrape's body into storage: target labels and `honor_labels`,
//!   metric relabeling, limits, timestamps, staleness markers and the report series
//!   (`up`, `scrape_duration_seconds`, ...).
//!
//! The scrape loops (HTTP fetch, schedule) and the service discoveries build on these.

pub mod append;
pub mod target;

pub use append::{ScrapeCache, ScrapeError, ScrapeReport, store_scrape};

pub use target::{
    PopulatedTargets, Target, TargetError, TargetGroup, TargetOutcome, populate_target,
    populate_targets,
};
