//! From discovered target groups to scrape targets, as Prometheus 3 does it.
//!
//! For each discovered target:
//! 1. Its own labels, then its group's labels where it has none of that name, then the
//!    scrape config's defaults where still unset: `job`, `__scrape_interval__`,
//!    `__scrape_timeout__`, `__metrics_path__`, `__scheme__`, and `__param_<name>` for the
//!    first value of each `params` entry. This is the *discovered* label set.
//! 2. `relabel_configs` run on it; a dropped set is a dropped target (kept for the
//!    targets page, not scraped).
//! 3. The result must have a non-empty `__address__` without `/`, and an interval and
//!    timeout that parse, are not zero, and timeout <= interval (relabeling can change
//!    them).
//! 4. `__meta_*` labels are removed and `instance` defaults to `__address__`.
//!
//! Prometheus 3 no longer adds a default port to an address without one; neither does
//! Kiln. Labels starting with `__` stay on the target (they define its URL) but never
//! reach the scraped series: see [`Target::series_labels`].

use std::collections::HashSet;

use kiln_config::{Duration, ScrapeConfig};
pub use kiln_discovery::TargetGroup;
use kiln_model::relabel::relabel;
use kiln_model::{Labels, LabelsBuilder};

pub const ADDRESS_LABEL: &str = "__address__";
pub const SCHEME_LABEL: &str = "__scheme__";
pub const METRICS_PATH_LABEL: &str = "__metrics_path__";
pub const SCRAPE_INTERVAL_LABEL: &str = "__scrape_interval__";
pub const SCRAPE_TIMEOUT_LABEL: &str = "__scrape_timeout__";
pub const PARAM_LABEL_PREFIX: &str = "__param_";
pub const META_LABEL_PREFIX: &str = "__meta_";
pub const JOB_LABEL: &str = "job";
pub const INSTANCE_LABEL: &str = "instance";

/// A target to scrape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// After relabeling, without `__meta_*`, with `instance`: includes the `__` labels
    /// that define the URL and schedule.
    labels: Labels,
    /// Before relabeling (step 1 of the module documentation).
    discovered: Labels,
    url: String,
    interval: Duration,
    timeout: Duration,
}

impl Target {
    /// All labels, including the `__` ones.
    pub fn labels(&self) -> &Labels {
        &self.labels
    }

    /// The labels before relabeling, for the targets API.
    pub fn discovered_labels(&self) -> &Labels {
        &self.discovered
    }

    /// The labels every scraped series of this target gets: those not starting
    /// with `__`.
    pub fn series_labels(&self) -> Labels {
        self.labels.retain(|name| !name.starts_with("__"))
    }

    /// The scrape URL: `scheme://address/path?params`, the params from the config with
    /// `__param_<name>` labels replacing the first value of `<name>`.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn interval(&self) -> Duration {
        self.interval
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

/// What became of one discovered target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetOutcome {
    Active(Target),
    /// Relabeling dropped it; the discovered labels are kept for the targets API.
    Dropped {
        discovered: Labels,
    },
}

/// Why a discovered target cannot be scraped. Like Prometheus, the target is skipped and
/// the error reported; the other targets are unaffected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("no address")]
    NoAddress,
    #[error("{0:?} is not a valid hostname")]
    InvalidAddress(String),
    #[error("error parsing scrape {what}: not a valid duration string: {value:?}")]
    BadDuration { what: &'static str, value: String },
    #[error("scrape {what} cannot be 0")]
    ZeroDuration { what: &'static str },
    #[error("scrape timeout cannot be greater than scrape interval ({timeout:?} > {interval:?})")]
    TimeoutAboveInterval { timeout: String, interval: String },
    #[error("invalid scheme {0:?}: want http or https")]
    InvalidScheme(String),
}

/// Turns one discovered target (its labels and its group's) into a target of `config`.
pub fn populate_target(
    config: &ScrapeConfig,
    target: &Labels,
    group: &Labels,
) -> Result<TargetOutcome, TargetError> {
    let mut b = LabelsBuilder::new();
    for l in group.iter() {
        b.set(l.name, l.value);
    }
    // The target's own labels win over the group's (the builder's last set wins).
    for l in target.iter() {
        b.set(l.name, l.value);
    }
    let merged = b.build();
    let interval = config.scrape_interval.to_string();
    let timeout = config.scrape_timeout.to_string();
    let defaults = [
        (JOB_LABEL, config.job_name.as_str()),
        (SCRAPE_INTERVAL_LABEL, interval.as_str()),
        (SCRAPE_TIMEOUT_LABEL, timeout.as_str()),
        (METRICS_PATH_LABEL, config.metrics_path.as_str()),
        (SCHEME_LABEL, config.scheme.as_str()),
    ];
    for (name, value) in defaults {
        if merged.get(name).is_none() {
            b.set(name, value);
        }
    }
    let mut param_names = Vec::new();
    for (name, values) in &config.params {
        let label = format!("{PARAM_LABEL_PREFIX}{name}");
        if let Some(first) = values.first()
            && merged.get(&label).is_none()
        {
            param_names.push((label, first.as_str()));
        }
    }
    for (label, value) in &param_names {
        b.set(label, value);
    }
    let discovered = b.build();

    let Some(relabeled) = relabel(&discovered, &config.relabel_configs) else {
        return Ok(TargetOutcome::Dropped { discovered });
    };
    let address = relabeled.get(ADDRESS_LABEL).unwrap_or_default();
    if address.is_empty() {
        return Err(TargetError::NoAddress);
    }
    if address.contains('/') {
        return Err(TargetError::InvalidAddress(address.to_owned()));
    }
    let scheme = relabeled.get(SCHEME_LABEL).unwrap_or_default();
    if scheme != "http" && scheme != "https" {
        return Err(TargetError::InvalidScheme(scheme.to_owned()));
    }
    let interval = parse_schedule(&relabeled, SCRAPE_INTERVAL_LABEL, "interval")?;
    let timeout = parse_schedule(&relabeled, SCRAPE_TIMEOUT_LABEL, "timeout")?;
    if timeout > interval {
        return Err(TargetError::TimeoutAboveInterval {
            timeout: relabeled
                .get(SCRAPE_TIMEOUT_LABEL)
                .unwrap_or_default()
                .to_owned(),
            interval: relabeled
                .get(SCRAPE_INTERVAL_LABEL)
                .unwrap_or_default()
                .to_owned(),
        });
    }
    let mut labels = relabeled.retain(|name| !name.starts_with(META_LABEL_PREFIX));
    if labels.get(INSTANCE_LABEL).is_none() {
        let mut b = labels.to_builder();
        b.set(INSTANCE_LABEL, address);
        labels = b.build();
    }
    let url = scrape_url(&labels, config);
    Ok(TargetOutcome::Active(Target {
        labels,
        discovered,
        url,
        interval,
        timeout,
    }))
}

fn parse_schedule(
    labels: &Labels,
    name: &str,
    what: &'static str,
) -> Result<Duration, TargetError> {
    let value = labels.get(name).unwrap_or_default();
    let ms = kiln_model::parse_duration_ms(value).map_err(|_| TargetError::BadDuration {
        what,
        value: value.to_owned(),
    })?;
    if ms == 0 {
        return Err(TargetError::ZeroDuration { what });
    }
    Ok(Duration(ms))
}

/// `scheme://address/path?query`, the query encoded like Go's `url.Values.Encode`: keys
/// sorted, `key=value` pairs joined by `&`, both query-escaped.
fn scrape_url(labels: &Labels, config: &ScrapeConfig) -> String {
    let mut params: Vec<(String, Vec<String>)> = config
        .params
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for l in labels.iter() {
        let Some(name) = l.name.strip_prefix(PARAM_LABEL_PREFIX) else {
            continue;
        };
        match params.iter_mut().find(|(k, _)| k == name) {
            Some((_, values)) if !values.is_empty() => values[0] = l.value.to_owned(),
            Some((_, values)) => values.push(l.value.to_owned()),
            None => params.push((name.to_owned(), vec![l.value.to_owned()])),
        }
    }
    params.sort_by(|a, b| a.0.cmp(&b.0));
    let mut url = format!(
        "{}://{}{}",
        labels.get(SCHEME_LABEL).unwrap_or("http"),
        labels.get(ADDRESS_LABEL).unwrap_or_default(),
        labels.get(METRICS_PATH_LABEL).unwrap_or_default()
    );
    let mut first = true;
    for (k, values) in &params {
        for v in values {
            url.push(if first { '?' } else { '&' });
            first = false;
            query_escape_into(&mut url, k);
            url.push('=');
            query_escape_into(&mut url, v);
        }
    }
    url
}

/// Go's `url.QueryEscape`: unreserved bytes kept, space as `+`, the rest `%XX`.
fn query_escape_into(out: &mut String, s: &str) {
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => {
                const HEX: &[u8; 16] = b"0123456789ABCDEF";
                out.push('%');
                out.push(HEX[usize::from(b >> 4)] as char);
                out.push(HEX[usize::from(b & 15)] as char);
            }
        }
    }
}

/// The targets of a scrape config's target groups: active ones (identical label sets
/// once), dropped ones, and the errors of those that could not be made targets.
#[derive(Debug, Default)]
pub struct PopulatedTargets {
    pub active: Vec<Target>,
    pub dropped: Vec<Labels>,
    pub errors: Vec<(Labels, TargetError)>,
}

/// Populates every target of `groups` for `config`.
pub fn populate_targets(config: &ScrapeConfig, groups: &[TargetGroup]) -> PopulatedTargets {
    let mut out = PopulatedTargets::default();
    let mut seen = HashSet::new();
    for group in groups {
        for target in &group.targets {
            match populate_target(config, target, &group.labels) {
                Ok(TargetOutcome::Active(t)) => {
                    if seen.insert(t.labels.clone()) {
                        out.active.push(t);
                    }
                }
                Ok(TargetOutcome::Dropped { discovered }) => out.dropped.push(discovered),
                Err(e) => out.errors.push((target.clone(), e)),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
