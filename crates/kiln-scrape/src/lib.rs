//! Scraping, Prometheus's way.
//!
//! Module map:
//! - [`target`]: turning discovered target groups into scrape targets: the
//!   `__address__`/`__scheme__`/`__metrics_path__`/`__param_*` labels, target relabeling,
//!   the `instance` default, the scrape URL.
//!
//! The scrape loops (HTTP, parsing, appending, staleness, `up` and the `scrape_*`
//! series) and the service discoveries build on these types.

pub mod target;

pub use target::{
    PopulatedTargets, Target, TargetError, TargetGroup, TargetOutcome, populate_target,
    populate_targets,
};
