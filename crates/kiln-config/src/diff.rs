//! What differs between two configurations, section by section and named the way a
//! user names things in the file: what a reload changed, for its log line.
//!
//! Scrape pools are named by `job_name`, remote-write and remote-read endpoints by their
//! `name` (written, or Prometheus's hash of the entry: an unnamed entry that changes
//! therefore shows as one removed and one added), Alertmanager sets by their place in
//! the file (`alerting.alertmanagers[0]`). Rule files are not read here (the crate reads
//! only the main file): their groups' changes come from the rule manager.

use crate::Config;

/// Entries of one section that were added, removed or changed, in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NamedChanges {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
}

impl NamedChanges {
    /// Whether the section is the same.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }

    /// Compares two lists of entries keyed by `name`.
    fn between<T: PartialEq>(old: &[T], new: &[T], name: impl Fn(usize, &T) -> String) -> Self {
        let old_named: Vec<(String, &T)> = old
            .iter()
            .enumerate()
            .map(|(i, t)| (name(i, t), t))
            .collect();
        let new_named: Vec<(String, &T)> = new
            .iter()
            .enumerate()
            .map(|(i, t)| (name(i, t), t))
            .collect();
        let mut out = NamedChanges::default();
        for (n, t) in &new_named {
            match old_named.iter().find(|(o, _)| o == n) {
                None => out.added.push(n.clone()),
                Some((_, before)) if *before != *t => out.changed.push(n.clone()),
                Some(_) => {}
            }
        }
        for (n, _) in &old_named {
            if !new_named.iter().any(|(m, _)| m == n) {
                out.removed.push(n.clone());
            }
        }
        out
    }
}

/// What differs between a running configuration and a new one. See the module docs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigChanges {
    pub scrape_pools: NamedChanges,
    pub remote_write: NamedChanges,
    pub remote_read: NamedChanges,
    /// `alerting.alertmanagers` entries; `alert_relabel_configs` changing counts as a
    /// change of `alerting.alert_relabel_configs`.
    pub alertmanagers: NamedChanges,
    /// Whether `global.external_labels` differ (they reach every remote-write queue,
    /// rule group and alert).
    pub external_labels: bool,
}

impl ConfigChanges {
    /// Whether nothing a running server acts on differs.
    pub fn is_empty(&self) -> bool {
        self.scrape_pools.is_empty()
            && self.remote_write.is_empty()
            && self.remote_read.is_empty()
            && self.alertmanagers.is_empty()
            && !self.external_labels
    }
}

impl Config {
    /// What differs in `self` from `previous`, the configuration it replaces.
    pub fn changes_since(&self, previous: &Config) -> ConfigChanges {
        let mut alertmanagers = NamedChanges::between(
            &previous.alerting.alertmanagers,
            &self.alerting.alertmanagers,
            |i, _| format!("alerting.alertmanagers[{i}]"),
        );
        if previous.alerting.alert_relabel_configs != self.alerting.alert_relabel_configs {
            alertmanagers
                .changed
                .push("alerting.alert_relabel_configs".to_owned());
        }
        ConfigChanges {
            scrape_pools: NamedChanges::between(
                &previous.scrape_configs,
                &self.scrape_configs,
                |_, sc| sc.job_name.clone(),
            ),
            remote_write: NamedChanges::between(
                &previous.remote_write,
                &self.remote_write,
                |_, rw| rw.name.clone(),
            ),
            remote_read: NamedChanges::between(
                &previous.remote_read,
                &self.remote_read,
                |_, rr| rr.name.clone(),
            ),
            alertmanagers,
            external_labels: previous.global.external_labels != self.global.external_labels,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(yaml: &str) -> Config {
        Config::parse(yaml, "test.yml").expect("valid config")
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    /// `(added, removed, changed)` of a section.
    type Want<'a> = (&'a [&'a str], &'a [&'a str], &'a [&'a str]);

    fn check(
        before: &str,
        after: &str,
        section: fn(&ConfigChanges) -> &NamedChanges,
        want: Want<'_>,
    ) {
        let changes = config(after).changes_since(&config(before));
        let got = section(&changes);
        assert_eq!(got.added, names(want.0), "added: {changes:?}");
        assert_eq!(got.removed, names(want.1), "removed: {changes:?}");
        assert_eq!(got.changed, names(want.2), "changed: {changes:?}");
    }

    const BASE: &str = "\
scrape_configs:
  - job_name: a
    static_configs: [{targets: ['a:1']}]
  - job_name: b
    static_configs: [{targets: ['b:1']}]
remote_write:
  - url: http://rw/1
    name: one
alerting:
  alertmanagers:
    - static_configs: [{targets: ['am:9093']}]
";

    #[test]
    fn sections_by_name() {
        let scrape: fn(&ConfigChanges) -> &NamedChanges = |c| &c.scrape_pools;
        let rw: fn(&ConfigChanges) -> &NamedChanges = |c| &c.remote_write;
        let am: fn(&ConfigChanges) -> &NamedChanges = |c| &c.alertmanagers;
        check(BASE, BASE, scrape, (&[], &[], &[]));
        assert!(config(BASE).changes_since(&config(BASE)).is_empty());
        check(
            BASE,
            &BASE
                .replace(
                    "- job_name: b\n    static_configs: [{targets: ['b:1']}]",
                    "- job_name: c\n    static_configs: [{targets: ['c:1']}]",
                )
                .replace("'a:1'", "'a:2'"),
            scrape,
            (&["c"], &["b"], &["a"]),
        );
        // A global default that flows into every scrape config changes them all.
        check(
            BASE,
            &format!("global:\n  scrape_interval: 7s\n{BASE}"),
            scrape,
            (&[], &[], &["a", "b"]),
        );
        check(
            BASE,
            &BASE.replace("name: one", "name: two"),
            rw,
            (&["two"], &["one"], &[]),
        );
        check(
            BASE,
            &BASE.replace("http://rw/1", "http://rw/2"),
            rw,
            (&[], &[], &["one"]),
        );
        check(
            BASE,
            &BASE.replace("am:9093", "am:9094"),
            am,
            (&[], &[], &["alerting.alertmanagers[0]"]),
        );
        let no_am = BASE
            .split("alerting:")
            .next()
            .unwrap_or_default()
            .to_owned();
        check(BASE, &no_am, am, (&[], &["alerting.alertmanagers[0]"], &[]));
    }

    #[test]
    fn external_labels() {
        let changes = config(&format!("global:\n  external_labels: {{dc: x}}\n{BASE}"))
            .changes_since(&config(BASE));
        assert!(changes.external_labels);
        assert!(!changes.is_empty());
    }
}
