//! Logging set-up: `--log.level`, `--log.format` and the `KILN_LOG` override, and the
//! subscriber that writes Prometheus 3's line layout to stderr (see [`mod@format`]).
//!
//! The level flag sets the threshold for every crate of Kiln; above `debug`, other
//! crates (HTTP, TLS) log at the same threshold, at `debug` they stay at `info` so that a
//! debug log shows Kiln's detail rather than every socket read. `KILN_LOG`, when set,
//! is a `tracing` EnvFilter directive list applied on top (`kiln_tsdb=debug`,
//! `warn,kiln_remote=trace`): a directive for a target wins over the flag for that
//! target, a bare level in it replaces the flag. An invalid `KILN_LOG` is reported and
//! ignored rather than fatal.

mod format;

pub(crate) use format::LogFormat;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;

/// The thresholds `--log.level` offers, as Prometheus names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

impl LogLevel {
    fn directive(self) -> &'static str {
        match self {
            // Kiln's crates all start with `kiln` (`kiln`, `kiln_tsdb`, ...).
            LogLevel::Debug => "info,kiln=debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

/// The logging flags every mode accepts, before or after the mode's name.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct LogFlags {
    /// Only log messages with the given severity or above [default: info for
    /// `server`, warn for the one-shot tools].
    #[arg(long = "log.level", value_enum, global = true)]
    pub(crate) level: Option<LogLevel>,
    /// Output format of log messages.
    #[arg(
        long = "log.format",
        value_enum,
        global = true,
        default_value = "logfmt"
    )]
    pub(crate) format: LogFormat,
}

/// The filter for `level`, with `kiln_log` (the `KILN_LOG` variable) on top. Returns
/// the filter and, when `kiln_log` did not parse, why.
fn filter(level: LogLevel, kiln_log: Option<&str>) -> (EnvFilter, Option<String>) {
    let base = || EnvFilter::new(level.directive());
    let Some(extra) = kiln_log.map(str::trim).filter(|s| !s.is_empty()) else {
        return (base(), None);
    };
    // A bare level in KILN_LOG replaces the flag; otherwise its directives go on top.
    let has_bare_level = extra
        .split(',')
        .any(|d| d.trim().parse::<LevelFilter>().is_ok());
    let combined = if has_bare_level {
        extra.to_owned()
    } else {
        format!("{},{extra}", level.directive())
    };
    match EnvFilter::builder()
        .with_default_directive(LevelFilter::OFF.into())
        .parse(&combined)
    {
        Ok(f) => (f, None),
        Err(e) => (base(), Some(e.to_string())),
    }
}

/// Installs the global subscriber: stderr, one line per event, never coloured.
/// `default_level` applies when `--log.level` was not given.
pub(crate) fn init(flags: &LogFlags, default_level: LogLevel) {
    let level = flags.level.unwrap_or(default_level);
    let kiln_log = std::env::var("KILN_LOG").ok();
    let (filter, bad) = filter(level, kiln_log.as_deref());
    let installed = tracing_subscriber::fmt()
        .event_format(format::SlogFormat::new(flags.format))
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    if let Err(e) = installed {
        eprintln!("cannot set up logging: {e}");
    }
    if let Some(reason) = bad {
        tracing::warn!(
            KILN_LOG = kiln_log.as_deref().unwrap_or_default(),
            err = %reason,
            "Ignoring KILN_LOG: not a valid filter"
        );
    }
}

#[cfg(test)]
mod tests {
    use tracing::Level;
    use tracing::level_filters::LevelFilter;
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    /// Asks, under the filter for `level` and `kiln_log`, whether `probe`'s callsite is
    /// enabled.
    fn enabled(level: LogLevel, kiln_log: Option<&str>, probe: fn() -> bool) -> bool {
        let (f, bad) = filter(level, kiln_log);
        assert_eq!(bad, None, "{kiln_log:?}");
        let subscriber = tracing_subscriber::registry().with(f);
        tracing::subscriber::with_default(subscriber, probe)
    }

    #[test]
    fn levels_and_the_kiln_log_override() {
        use LogLevel::*;
        let tsdb_debug: fn() -> bool = || tracing::enabled!(target: "kiln_tsdb", Level::DEBUG);
        let tsdb_info: fn() -> bool = || tracing::enabled!(target: "kiln_tsdb", Level::INFO);
        let tsdb_warn: fn() -> bool = || tracing::enabled!(target: "kiln_tsdb", Level::WARN);
        let remote_debug: fn() -> bool = || tracing::enabled!(target: "kiln_remote", Level::DEBUG);
        let remote_info: fn() -> bool = || tracing::enabled!(target: "kiln_remote", Level::INFO);
        let hyper_debug: fn() -> bool = || tracing::enabled!(target: "hyper", Level::DEBUG);
        let hyper_info: fn() -> bool = || tracing::enabled!(target: "hyper", Level::INFO);
        for (i, (level, kiln_log, probe, want)) in [
            (Info, None, tsdb_info, true),
            (Info, None, tsdb_debug, false),
            (Warn, None, tsdb_info, false),
            (Warn, None, tsdb_warn, true),
            (Error, None, tsdb_warn, false),
            // Debug is Kiln's debug, not every dependency's.
            (Debug, None, tsdb_debug, true),
            (Debug, None, hyper_debug, false),
            (Debug, None, hyper_info, true),
            // KILN_LOG adds per-target directives on top of the flag ...
            (Info, Some("kiln_tsdb=debug"), tsdb_debug, true),
            (Info, Some("kiln_tsdb=debug"), remote_debug, false),
            (Info, Some("kiln_tsdb=debug"), remote_info, true),
            (Warn, Some("kiln_remote=info"), remote_info, true),
            (Warn, Some("kiln_remote=info"), tsdb_info, false),
            // ... and a bare level replaces it.
            (Info, Some("warn"), tsdb_info, false),
            (Info, Some("  "), tsdb_info, true),
        ]
        .into_iter()
        .enumerate()
        {
            assert_eq!(
                enabled(level, kiln_log, probe),
                want,
                "case {i}: {level:?} KILN_LOG={kiln_log:?}"
            );
        }
    }

    #[test]
    fn an_invalid_kiln_log_is_reported_and_the_flag_kept() {
        let (f, bad) = filter(LogLevel::Info, Some("kiln_tsdb=loud"));
        assert!(bad.is_some());
        assert_eq!(f.max_level_hint(), Some(LevelFilter::INFO));
    }
}
