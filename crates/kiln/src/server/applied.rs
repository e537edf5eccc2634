//! The log lines of loading and reloading the configuration: what is running after a
//! load, and what a reload changed, one line per part that changed.

use std::time::Duration;

use kiln_config::{Config, ConfigChanges, NamedChanges};
use kiln_rules::GroupChanges;
use tracing::info;

/// What applying a configuration did.
pub(super) struct Applied {
    /// The differences from the configuration that ran before (everything is "added"
    /// at start-up).
    pub(super) config: ConfigChanges,
    /// The rule groups' differences, from the rule files as read now.
    pub(super) groups: GroupChanges,
}

/// A list field: `[a b]`, like Prometheus prints lists.
fn list(names: &[String]) -> String {
    format!("[{}]", names.join(" "))
}

/// How many entries of a section were added, removed or changed.
fn count(c: &NamedChanges) -> usize {
    c.added.len() + c.removed.len() + c.changed.len()
}

/// The start-up line of a loaded configuration (Prometheus's wording).
pub(super) fn log_loaded(file: &str, config: &Config, applied: &Applied, took: Duration) {
    info!(
        filename = file,
        scrape_pools = config.scrape_configs.len(),
        rule_files = applied.groups.files,
        rule_groups = applied.groups.groups,
        rules = applied.groups.rules,
        remote_write = config.remote_write.len(),
        remote_read = config.remote_read.len(),
        alertmanagers = config.alerting.alertmanagers.len(),
        duration = ?took,
        "Completed loading of configuration file"
    );
}

/// One line per part a reload changed, then the summary; or one line saying nothing
/// changed.
pub(super) fn log_reloaded(file: &str, trigger: &str, applied: &Applied, took: Duration) {
    let c = &applied.config;
    let g = &applied.groups;
    if c.is_empty() && g.is_empty() {
        info!(filename = file, trigger, duration = ?took, "Configuration reloaded: configuration unchanged");
        return;
    }
    let parts: [(&str, &str, &NamedChanges); 4] = [
        ("scrape", "Scrape pools changed", &c.scrape_pools),
        ("remote", "Remote write queues changed", &c.remote_write),
        ("remote", "Remote read endpoints changed", &c.remote_read),
        ("notifier", "Alertmanagers changed", &c.alertmanagers),
    ];
    for (component, msg, changes) in parts {
        if changes.is_empty() {
            continue;
        }
        // `msg` varies, so it goes through the `message` field of one call site.
        info!(
            component,
            added = %list(&changes.added),
            removed = %list(&changes.removed),
            changed = %list(&changes.changed),
            "{msg}"
        );
    }
    if !g.is_empty() {
        info!(
            component = "rules",
            added = %list(&g.added),
            removed = %list(&g.removed),
            changed = %list(&g.changed),
            "Rule groups changed"
        );
    }
    if c.external_labels {
        info!("External labels changed");
    }
    info!(
        filename = file,
        trigger,
        scrape_pools = count(&c.scrape_pools),
        rule_groups = g.added.len() + g.removed.len() + g.changed.len(),
        remote_write = count(&c.remote_write),
        remote_read = count(&c.remote_read),
        alertmanagers = count(&c.alertmanagers),
        external_labels = c.external_labels,
        duration = ?took,
        "Configuration reloaded"
    );
}
