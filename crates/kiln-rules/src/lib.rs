//! Recording and alerting rules, as Prometheus runs them.
//!
//! Module map:
//! - [`mod@file`]: rule files (YAML) parsed and checked with file:line:column errors,
//!   every problem of a file listed as promtool does; globs.
//! - [`template`]: Go templates of alert labels and annotations with Prometheus's
//!   functions (`humanize`, `query`, ...).
//! - [`eval`]: what an evaluation runs against (engine, storage, external labels).
//! - [`recording`], [`alerting`]: the two rule kinds; alert states, `ALERTS`,
//!   `ALERTS_FOR_STATE`, restoring `for` state after a restart.
//! - [`group`]: a group's rules evaluated in order at one timestamp, results stored
//!   with staleness markers, rule health.
//! - [`manager`]: the groups of a configuration run on their intervals; reloads.
//! - [`notify`]: alerts to Alertmanager (API v2): which are due, the queue, batches,
//!   Alertmanager discovery and relabelling.
//! - [`unittest`]: `kiln test rules`, promtool's rule unit test format and output.
//!
//! Like `kiln-promql`, this crate sees storage only through `kiln-storage`'s traits.
//! Its notifier finds Alertmanagers with `kiln-discovery` and posts through
//! `kiln-http-client` (sideways edges at L3, as `kiln-scrape` has).

pub mod alerting;
pub mod eval;
pub mod file;
pub mod group;
pub mod manager;
pub mod notify;
pub mod recording;
pub mod template;
pub mod unittest;

pub use alerting::{Alert, AlertState, AlertingRule};
pub use eval::{EvalEnv, RuleError};
pub use file::{
    GroupSpec, RuleFileError, RuleKind, RuleSpec, check_rule_file, check_rule_text,
    load_rule_files, parse_rule_file,
};
pub use group::{EvalReport, Group, GroupCounters, Health, RestoreOptions, Rule, RuleStatus};
pub use manager::{
    GroupChanges, RuleManager, RuleManagerOptions, RuleSettings, RulesView, SharedGroup,
};
pub use recording::RecordingRule;
