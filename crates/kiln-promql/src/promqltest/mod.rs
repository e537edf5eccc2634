//! A runner for Prometheus's PromQL test scripts (`*.test`, the `promqltest` language:
//! `load`, `clear`, `eval instant|range`, `expect ...`), used by `kiln promqltest`.
//!
//! Module map:
//! - [`series`]: series descriptions and the expanding value notation (`1+2x3 _ stale`).
//! - [`script`]: the script parser: commands, expectations, expected results.
//! - `compare`: checking results, errors and annotations (Prometheus's rules).
//! - `query`: what a query selects and calls; the `@`-modified copies of a query.
//! - `runner`: executing a script against a [`QueryEngine`] and fresh storages.
//!
//! What an eval checks, as Prometheus's runner does:
//! - the result against the expected series (any order unless `expect ordered`, exact
//!   label sets, floats within a relative 1e-6), scalar, or string;
//! - `expect fail [msg:|regex:]`, `expect warn|info [msg:|regex:]`, `expect no_warn|no_info`
//!   (annotations are not checked when no such line is given);
//! - for instant queries, also: the same query as a range query from `t-1m` to `t+1m`
//!   step 1m must give the expected result at `t` (not for string or range-vector
//!   results, nor queries using `start() end() step() range()`), and, unless it uses a
//!   time-dependent function, the query with `@ t` added to every selector must give
//!   the same result when evaluated at other times (see [`RunOptions`]).
//!
//! Native histograms are not supported: their samples are not loaded, and an eval is
//! skipped ([`NATIVE_HISTOGRAM_SKIP`]) when its expected values hold a histogram or when
//! one of its selectors could select a series of the current data set that held
//! histogram samples (a `{{...}}` value, or the `foo{...}` series `load_with_nhcb` derives
//! from `foo_bucket`/`foo_count`/`foo_sum`). Float samples of such series are loaded.

pub mod script;
pub mod series;

mod compare;
mod query;
mod runner;

use std::fmt;
use std::path::{Path, PathBuf};

pub use compare::{EPSILON, almost_equal};
pub use runner::NATIVE_HISTOGRAM_SKIP;

use crate::engine::Engine;
use crate::error::QueryError;
use crate::value::QueryResult;

/// What the runner needs from a query engine; [`Engine`] is the real one.
pub trait QueryEngine {
    fn instant_query(
        &self,
        storage: &dyn kiln_storage::Queryable,
        query: &str,
        t: i64,
    ) -> Result<QueryResult, QueryError>;
    fn range_query(
        &self,
        storage: &dyn kiln_storage::Queryable,
        query: &str,
        start: i64,
        end: i64,
        step: i64,
    ) -> Result<QueryResult, QueryError>;
}

impl QueryEngine for Engine {
    fn instant_query(
        &self,
        storage: &dyn kiln_storage::Queryable,
        query: &str,
        t: i64,
    ) -> Result<QueryResult, QueryError> {
        Engine::instant_query(self, storage, query, t)
    }

    fn range_query(
        &self,
        storage: &dyn kiln_storage::Queryable,
        query: &str,
        start: i64,
        end: i64,
        step: i64,
    ) -> Result<QueryResult, QueryError> {
        Engine::range_query(self, storage, query, start, end, step)
    }
}

/// What a test needs from a storage: writes for `load`, reads for `eval`.
pub trait TestStorage: kiln_storage::Appendable + kiln_storage::Queryable {}

impl<T: kiln_storage::Appendable + kiln_storage::Queryable> TestStorage for T {}

/// Which of Prometheus's extra instant-query checks to run. Both default to on, as in
/// Prometheus.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Also evaluate instant queries as a range query from `t-1m` to `t+1m` step 1m and
    /// check the step at `t`.
    pub range_mode_check: bool,
    /// Also evaluate instant queries with `@ t` added to every selector at other times.
    pub at_modifier_check: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            range_mode_check: true,
            at_modifier_check: true,
        }
    }
}

/// The outcome of one script.
#[derive(Debug, Clone, Default)]
pub struct FileReport {
    /// The file as given (for `file:line` in reports).
    pub name: String,
    pub passed: usize,
    /// Failed evals, loads that failed, and lines that did not parse.
    pub failed: usize,
    pub skipped: usize,
    /// In line order.
    pub failures: Vec<Failure>,
    pub skips: Vec<Skip>,
}

impl FileReport {
    /// `name: N passed, N failed, N skipped`.
    pub fn summary_line(&self) -> String {
        format!("{}: {}", self.name, Totals::from(self))
    }
}

/// Something that failed: an eval, a load, or a line that did not parse.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    /// 1-based line of the command (0: the file itself).
    pub line: usize,
    /// The command line (`eval instant at 5m rate(x[5m])`), when there is one.
    pub command: Option<String>,
    /// What went wrong: expected and got.
    pub message: String,
}

/// An eval that was not run, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Skip {
    pub line: usize,
    pub reason: String,
}

/// A [`Failure`] printed with its file: `file:line: command` then the indented message.
pub struct DisplayFailure<'a> {
    pub file: &'a str,
    pub failure: &'a Failure,
}

impl fmt::Display for DisplayFailure<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Failure {
            line,
            command,
            message,
        } = self.failure;
        match command {
            Some(c) => write!(f, "{}:{line}: {c}\n    {message}", self.file),
            None => write!(f, "{}:{line}: {message}", self.file),
        }
    }
}

/// Counts over one or many files; displays as `N passed, N failed, N skipped`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
}

impl Totals {
    pub fn add(&mut self, r: &FileReport) {
        self.passed += r.passed;
        self.failed += r.failed;
        self.skipped += r.skipped;
    }
}

impl From<&FileReport> for Totals {
    fn from(r: &FileReport) -> Self {
        Totals {
            passed: r.passed,
            failed: r.failed,
            skipped: r.skipped,
        }
    }
}

impl fmt::Display for Totals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} passed, {} failed, {} skipped",
            self.passed, self.failed, self.skipped
        )
    }
}

/// Runs one script file. `new_storage` gives an empty storage at the start and at each
/// `clear`. A file that cannot be read is one failure at line 0.
pub fn run_file(
    path: &Path,
    new_storage: &dyn Fn() -> Box<dyn TestStorage>,
    engine: &dyn QueryEngine,
    opts: &RunOptions,
) -> FileReport {
    let name = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => run_script(&name, &text, new_storage, engine, opts),
        Err(e) => FileReport {
            name,
            failed: 1,
            failures: vec![Failure {
                line: 0,
                command: None,
                message: format!("cannot read the file: {e}"),
            }],
            ..FileReport::default()
        },
    }
}

/// Runs a script given as text; `name` is used in the report.
pub fn run_script(
    name: &str,
    text: &str,
    new_storage: &dyn Fn() -> Box<dyn TestStorage>,
    engine: &dyn QueryEngine,
    opts: &RunOptions,
) -> FileReport {
    runner::run_script(name, text, new_storage, engine, opts)
}

/// The `*.test` files named by `paths`: files as given, directories searched
/// recursively, each directory's files in name order.
pub fn collect_test_files(paths: &[PathBuf]) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            collect_dir(p, &mut out)?;
        } else {
            // Surface a missing file as an error here rather than a failure later.
            std::fs::metadata(p)
                .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", p.display())))?;
            out.push(p.clone());
        }
    }
    Ok(out)
}

fn collect_dir(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", dir.display())))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    entries.sort();
    for p in entries {
        if p.is_dir() {
            collect_dir(&p, out)?;
        } else if p.extension().is_some_and(|e| e == "test") {
            out.push(p);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
