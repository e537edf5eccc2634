//! The `kiln` binary: command-line parsing and wiring of the modes. Logic lives in the
//! library crates; this file only turns flags into calls and errors into exit codes.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use kiln_model::{Matcher, parse_selector};
use tsdb_tools as tools;

#[cfg(all(feature = "mimalloc", feature = "jemalloc"))]
compile_error!("the `mimalloc` and `jemalloc` features each set the global allocator: choose one");

#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

mod bucket_tools;
mod compact;
mod logging;
#[cfg(all(
    target_os = "linux",
    target_env = "gnu",
    not(feature = "mimalloc"),
    not(feature = "jemalloc")
))]
mod malloc_tuning;
mod objstore_flags;
mod rule_backfill;
mod rule_tools;
mod server;
mod storage_flags;
mod store;
mod tsdb_tools;

#[derive(Parser)]
#[command(
    name = "kiln",
    version,
    about = "Prometheus-compatible monitoring for AI/ML infrastructure"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    log: logging::LogFlags,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server: storage, PromQL and the Prometheus HTTP API.
    Server(Box<server::ServerArgs>),
    /// Tools for TSDB data directories, in the spirit of `promtool tsdb`.
    #[command(subcommand)]
    Tsdb(TsdbCommand),
    /// Run PromQL test scripts (Prometheus's `promqltest` language) against the engine
    /// and an in-memory TSDB head. Exits 1 when any test fails.
    Promqltest(PromqltestArgs),
    /// Check inputs for validity, in the spirit of `promtool check`.
    #[command(subcommand)]
    Check(CheckCommand),
    /// Unit tests, in the spirit of `promtool test`.
    #[command(subcommand)]
    Test(TestCommand),
    /// Run the store gateway: serve a bucket's blocks over Thanos's StoreAPI (gRPC) and
    /// Prometheus's query API, as `thanos store`.
    Store(Box<store::StoreArgs>),
    /// Run the bucket compactor: compaction with Thanos's ranges, downsampling,
    /// retention per resolution and deletion, as `thanos compact`.
    Compact(Box<compact::CompactArgs>),
    /// Tools for buckets, in the spirit of `thanos tools`.
    #[command(subcommand)]
    Tools(ToolsCommand),
}

#[derive(Subcommand)]
enum ToolsCommand {
    /// Bucket utility commands (`thanos tools bucket`): ls, inspect, verify, mark, rewrite, downsample, upload-blocks.
    Bucket(bucket_tools::BucketArgs),
}

#[derive(Subcommand)]
enum TestCommand {
    /// Run rule unit test files (promtool's format), like `promtool test rules`.
    /// Exits 1 when any test fails.
    Rules {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[derive(Subcommand)]
enum CheckCommand {
    /// Lint a text-format exposition read from stdin, like `promtool check metrics`.
    /// Prints each problem as `metric problem` to stderr; exits 3 when there are
    /// problems, 1 when the input does not parse.
    Metrics,
    /// Load prometheus.yml files as `kiln server` would, like `promtool check config`.
    /// Exits 1 when any file fails.
    Config {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Check rule files, like `promtool check rules`. Exits 1 when any file fails.
    Rules {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[derive(clap::Args)]
struct PromqltestArgs {
    /// Test script files, or directories searched recursively for `*.test` files.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// How far back an instant selector looks for a sample.
    #[arg(long = "lookback-delta", value_parser = parse_duration_ms, default_value = "5m")]
    lookback_delta: i64,
    /// Most samples a query may hold in memory (Prometheus's test runner uses 10000).
    #[arg(long = "max-samples", default_value_t = 10_000)]
    max_samples: usize,
    /// Do not also evaluate instant queries as range queries (t-1m to t+1m).
    #[arg(long = "no-range-mode-check")]
    no_range_mode_check: bool,
    /// Do not also evaluate instant queries with `@ t` added to every selector.
    #[arg(long = "no-at-modifier-check")]
    no_at_modifier_check: bool,
    /// List every skipped eval with its reason.
    #[arg(short = 'v', long = "verbose")]
    verbose: bool,
}

#[derive(Subcommand)]
enum TsdbCommand {
    /// List the blocks of a data directory.
    List {
        /// Print times and sizes for humans.
        #[arg(short = 'r', long = "human-readable")]
        human_readable: bool,
        /// The data directory.
        #[arg(default_value = "data/")]
        db_path: PathBuf,
    },
    /// Analyze churn, label pair cardinality and compaction efficiency of a block.
    Analyze {
        /// The data directory.
        #[arg(default_value = "data/")]
        db_path: PathBuf,
        /// Block to analyze (default is the last block).
        block_id: Option<String>,
        /// How many items to show in each list.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Dump samples from a data directory (blocks and WAL), like `promtool tsdb dump`.
    Dump {
        /// The data directory.
        #[arg(default_value = "data/")]
        db_path: PathBuf,
        /// Minimum timestamp to dump, ms.
        #[arg(long = "min-time", default_value_t = i64::MIN, allow_hyphen_values = true)]
        min_time: i64,
        /// Maximum timestamp to dump, ms.
        #[arg(long = "max-time", default_value_t = i64::MAX, allow_hyphen_values = true)]
        max_time: i64,
        /// Series selector; may be repeated (series matching any are dumped).
        #[arg(long = "match")]
        matchers: Vec<String>,
    },
    /// Create blocks from data in another format.
    #[command(name = "create-blocks-from", subcommand)]
    CreateBlocksFrom(CreateBlocksFrom),
}

#[derive(Subcommand)]
enum CreateBlocksFrom {
    /// Import samples from an OpenMetrics text file into TSDB blocks.
    Openmetrics {
        /// Maximum duration a created block may span (e.g. 2h, 24h); below 2h is raised
        /// to 2h.
        #[arg(long = "max-block-duration", value_parser = parse_duration_ms)]
        max_block_duration: Option<i64>,
        /// Print times and sizes for humans.
        #[arg(short = 'r', long = "human-readable")]
        human_readable: bool,
        /// Do not print the created blocks.
        #[arg(short = 'q', long = "quiet")]
        quiet: bool,
        /// OpenMetrics input file.
        input: PathBuf,
        /// Output directory for the blocks.
        #[arg(default_value = "data/")]
        output_dir: PathBuf,
    },
    /// Create blocks of data for recording rules, like `promtool tsdb
    /// create-blocks-from rules`: evaluates every recording rule of the files over
    /// --start to --end through the Prometheus API at --url. Exits 1 when a rule fails.
    Rules(Box<rule_backfill::RuleBackfillArgs>),
}

/// Parses a Prometheus duration such as `2h`, `90m`, `1d12h` into milliseconds (the
/// flag parser of every mode).
pub(crate) fn parse_duration_ms(s: &str) -> Result<i64, String> {
    kiln_model::parse_duration_ms(s).map_err(|e| e.to_string())
}

/// Parses a byte size as Prometheus writes one (`512MB`, `1GiB`, a plain number).
pub(crate) fn parse_size(s: &str) -> Result<u64, String> {
    kiln_config::Size::parse(s).map(|b| b.0)
}

impl Command {
    /// The log level without `--log.level`: the server tells what it does, like
    /// Prometheus; the one-shot tools keep stderr for their own output and problems,
    /// like promtool.
    fn default_log_level(&self) -> logging::LogLevel {
        match self {
            Command::Server(_) | Command::Store(_) | Command::Compact(_) => logging::LogLevel::Info,
            Command::Tsdb(_)
            | Command::Promqltest(_)
            | Command::Check(_)
            | Command::Test(_)
            | Command::Tools(_) => logging::LogLevel::Warn,
        }
    }
}

fn main() -> ExitCode {
    #[cfg(all(
        target_os = "linux",
        target_env = "gnu",
        not(feature = "mimalloc"),
        not(feature = "jemalloc")
    ))]
    malloc_tuning::limit_arenas();
    let cli = Cli::parse();
    logging::init(&cli.log, cli.command.default_log_level());
    let logs_errors = matches!(
        cli.command,
        Command::Server(_) | Command::Store(_) | Command::Compact(_)
    );
    match run(cli) {
        Ok(code) => code,
        // The reader went away (`kiln tsdb dump | head`): not an error.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        // The server's stderr is its log: the reason it stops is a log line too.
        Err(e) if logs_errors => {
            tracing::error!(err = %render_error(&e), "Fatal error");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {}", render_error(&e));
            ExitCode::FAILURE
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// The error and its causes on one line, skipping a cause whose text the message
/// already contains (many library errors print their source themselves).
pub(crate) fn render_error(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    match cli.command {
        Command::Promqltest(args) => return promqltest(&args, &mut out),
        Command::Check(CheckCommand::Metrics) => return check_metrics(),
        Command::Check(CheckCommand::Config { files }) => return check_config(&files),
        Command::Check(CheckCommand::Rules { files }) => return rule_tools::check_rules(&files),
        Command::Test(TestCommand::Rules { files }) => return rule_tools::test_rules(&files),
        Command::Server(args) => server::run(*args)?,
        Command::Store(args) => store::run(*args)?,
        Command::Compact(args) => compact::run(*args)?,
        Command::Tools(ToolsCommand::Bucket(args)) => bucket_tools::run(&args, &mut out)?,
        Command::Tsdb(TsdbCommand::CreateBlocksFrom(CreateBlocksFrom::Rules(args))) => {
            return rule_backfill::run(*args, &mut out);
        }
        Command::Tsdb(TsdbCommand::List {
            human_readable,
            db_path,
        }) => {
            tools::list::list_blocks(&db_path, human_readable, &mut out)
                .with_context(|| format!("listing blocks in {}", db_path.display()))?;
        }
        Command::Tsdb(TsdbCommand::Analyze {
            db_path,
            block_id,
            limit,
        }) => {
            tools::analyze::analyze(&db_path, block_id.as_deref(), limit, &mut out)
                .with_context(|| format!("analyzing {}", db_path.display()))?;
        }
        Command::Tsdb(TsdbCommand::Dump {
            db_path,
            min_time,
            max_time,
            matchers,
        }) => {
            let selectors = parse_selectors(&matchers)?;
            tools::dump::dump(&db_path, min_time, max_time, &selectors, &mut out)
                .with_context(|| format!("dumping {}", db_path.display()))?;
        }
        Command::Tsdb(TsdbCommand::CreateBlocksFrom(CreateBlocksFrom::Openmetrics {
            max_block_duration,
            human_readable,
            quiet,
            input,
            output_dir,
        })) => {
            let data =
                std::fs::read(&input).with_context(|| format!("reading {}", input.display()))?;
            let bar = progress_bar();
            let opts = tools::backfill::BackfillOptions {
                max_block_duration: max_block_duration
                    .unwrap_or(kiln_tsdb::head::DEFAULT_CHUNK_RANGE),
                ..Default::default()
            };
            let blocks = tools::backfill::create_blocks_from_openmetrics(
                &data,
                &output_dir,
                &opts,
                &mut |fraction| {
                    if let Some(b) = &bar {
                        b.set_position((fraction * 1000.0) as u64);
                    }
                },
            )
            .with_context(|| format!("importing {}", input.display()))?;
            if let Some(b) = bar {
                b.finish_and_clear();
            }
            let overlapping = tools::backfill::overlapping_blocks(&output_dir, &blocks)
                .with_context(|| {
                    format!("looking for overlapping blocks in {}", output_dir.display())
                })?;
            warn_overlapping_blocks(&output_dir, &blocks, &overlapping)?;
            if !quiet {
                tools::list::print_blocks(&blocks, human_readable, &mut out)?;
            }
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// Says on stderr that the blocks a backfill wrote overlap blocks already in `dir`, which
/// ones, over what time, and what the server will do about it. Nothing when none do.
fn warn_overlapping_blocks(
    dir: &std::path::Path,
    new_blocks: &[PathBuf],
    overlapping: &[tools::backfill::OverlappingBlock],
) -> anyhow::Result<()> {
    if overlapping.is_empty() {
        return Ok(());
    }
    let time = tools::format::go_time_utc;
    let mut new_range = (i64::MAX, i64::MIN);
    for b in new_blocks {
        let m = kiln_tsdb::block::meta::read_meta(b)?;
        new_range = (new_range.0.min(m.min_time), new_range.1.max(m.max_time));
    }
    let old_lo = overlapping
        .iter()
        .map(|b| b.min_time)
        .min()
        .unwrap_or(i64::MAX);
    let old_hi = overlapping
        .iter()
        .map(|b| b.max_time)
        .max()
        .unwrap_or(i64::MIN);
    let mut err = std::io::stderr().lock();
    writeln!(
        err,
        "warning: the new blocks overlap {} block(s) already in {} from {} to {}:",
        overlapping.len(),
        dir.display(),
        time(new_range.0.max(old_lo)),
        time(new_range.1.min(old_hi)),
    )?;
    for b in overlapping {
        writeln!(
            err,
            "  {}  {} to {}",
            b.ulid,
            time(b.min_time),
            time(b.max_time)
        )?;
    }
    writeln!(
        err,
        "kiln server merges overlapping blocks into one at its next compaction (vertical \
         compaction): a series in several blocks becomes one series, and samples at the \
         same timestamp are kept once (one of the values, if they differ), so importing \
         the same data twice does not duplicate it. Until then, queries merge the blocks \
         the same way."
    )?;
    Ok(())
}

/// `kiln check metrics`: lints stdin with promtool's rules (`kiln_exposition::lint_text`),
/// writing as promtool does: problems to stderr, exit 3 if any, 1 on a parse error.
fn check_metrics() -> anyhow::Result<ExitCode> {
    use std::io::Read;
    let mut input = Vec::new();
    std::io::stdin()
        .lock()
        .read_to_end(&mut input)
        .context("reading stdin")?;
    let mut stderr = std::io::stderr().lock();
    match kiln_exposition::lint_text(&input) {
        Err(e) => {
            writeln!(stderr, "error while linting: {e}")?;
            Ok(ExitCode::FAILURE)
        }
        Ok(problems) => {
            for p in &problems {
                writeln!(stderr, "{p}")?;
            }
            Ok(if problems.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(3)
            })
        }
    }
}

/// `kiln check config`: loads each file as `kiln server` would, like
/// `promtool check config`.
fn check_config(files: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    let mut failed = false;
    for file in files {
        writeln!(out, "Checking {}", file.display())?;
        match kiln_config::Config::load_file(file) {
            Err(e) => {
                writeln!(out, "  FAILED: {e}\n")?;
                failed = true;
            }
            Ok(config) => {
                let rule_files = kiln_rules::file::expand_rule_files(&config.rule_files);
                match &rule_files {
                    Ok(files) => writeln!(out, "  SUCCESS: {} rule files found", files.len())?,
                    Err(e) => {
                        writeln!(out, "  FAILED: {e}")?;
                        failed = true;
                    }
                }
                writeln!(
                    out,
                    " SUCCESS: {} is valid prometheus config file syntax",
                    file.display()
                )?;
                for section in config.unapplied_sections() {
                    writeln!(
                        out,
                        "  WARNING: section {section} is accepted but not applied by Kiln yet"
                    )?;
                }
                if !config.scrape_config_files.is_empty() {
                    writeln!(
                        out,
                        "  WARNING: the files named by scrape_config_files are not checked by Kiln yet"
                    )?;
                }
                writeln!(out)?;
                for rule_file in rule_files.unwrap_or_default() {
                    failed |= !rule_tools::check_rule_file(&mut out, &rule_file)?;
                }
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// `kiln promqltest`: runs each file, printing its failures and a
/// `file: N passed, N failed, N skipped` line, then skip reasons and the totals.
fn promqltest(args: &PromqltestArgs, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    use kiln_promql::promqltest::{self as pt, DisplayFailure, RunOptions, TestStorage, Totals};
    use kiln_tsdb::head::{Head, HeadOptions};

    let files = pt::collect_test_files(&args.paths).context("finding test files")?;
    // Prometheus's test scripts assume its test engine's settings, which enable delayed
    // name removal.
    let engine = kiln_promql::Engine::new(kiln_promql::EngineOptions {
        lookback_delta: args.lookback_delta,
        max_samples: args.max_samples,
        delayed_name_removal: true,
        ..Default::default()
    });
    let opts = RunOptions {
        range_mode_check: !args.no_range_mode_check,
        at_modifier_check: !args.no_at_modifier_check,
    };
    // One head per `clear`; a chunk range of a century keeps every test in one range.
    let new_storage = || -> Box<dyn TestStorage> {
        Box::new(Head::new(HeadOptions {
            chunk_range: 100 * 365 * 24 * 3_600_000,
            ..Default::default()
        }))
    };
    let mut totals = Totals::default();
    let mut skip_reasons: Vec<(String, usize)> = Vec::new();
    for path in &files {
        let report = pt::run_file(path, &new_storage, &engine, &opts);
        for f in &report.failures {
            writeln!(
                out,
                "{}",
                DisplayFailure {
                    file: &report.name,
                    failure: f
                }
            )?;
        }
        for s in &report.skips {
            if args.verbose {
                writeln!(out, "{}:{}: skipped: {}", report.name, s.line, s.reason)?;
            }
            match skip_reasons.iter_mut().find(|(r, _)| *r == s.reason) {
                Some((_, n)) => *n += 1,
                None => skip_reasons.push((s.reason.clone(), 1)),
            }
        }
        let short = path
            .file_name()
            .map_or_else(|| report.name.clone(), |n| n.to_string_lossy().into_owned());
        writeln!(out, "{short}: {}", Totals::from(&report))?;
        out.flush()?;
        totals.add(&report);
    }
    for (reason, n) in &skip_reasons {
        writeln!(out, "skipped {n}: {reason}")?;
    }
    writeln!(out, "{totals}")?;
    out.flush()?;
    Ok(if totals.failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// A progress bar (in tenths of a percent) when stderr is a terminal.
fn progress_bar() -> Option<indicatif::ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(1000);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {wide_bar} {percent}% ({eta})",
    ) {
        bar.set_style(style);
    }
    Some(bar)
}

fn parse_selectors(raw: &[String]) -> anyhow::Result<Vec<Vec<Matcher>>> {
    raw.iter()
        .map(|s| parse_selector(s).with_context(|| format!("bad --match selector {s:?}")))
        .collect()
}
