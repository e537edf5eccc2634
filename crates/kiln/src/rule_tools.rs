//! `kiln check rules` and `kiln test rules`: promtool's rule commands, same output and
//! exit codes.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Checks one rule file, printing promtool's report: `FAILED:` and then every problem
/// of the file, one per line. Returns whether it passed.
pub(crate) fn check_rule_file(out: &mut impl Write, file: &Path) -> anyhow::Result<bool> {
    writeln!(out, "Checking {}", file.display())?;
    let ok = match kiln_rules::check_rule_file(file) {
        Ok(groups) => {
            let rules: usize = groups.iter().map(|g| g.rules.len()).sum();
            writeln!(out, "  SUCCESS: {rules} rules found")?;
            true
        }
        Err(errors) => {
            writeln!(out, "  FAILED:")?;
            for e in errors {
                writeln!(out, "{e}")?;
            }
            false
        }
    };
    writeln!(out)?;
    Ok(ok)
}

/// `kiln check rules FILE...`: exits 1 when any file fails.
pub(crate) fn check_rules(files: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    let mut failed = false;
    for file in files {
        failed |= !check_rule_file(&mut out, file)?;
    }
    Ok(exit(failed))
}

/// `kiln test rules FILE...`: runs the unit tests of each file; exits 1 when any fails.
pub(crate) fn test_rules(files: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    let mut failed = false;
    for file in files {
        let outcome = kiln_rules::unittest::run_test_file(file);
        write!(out, "{}", outcome.report())?;
        writeln!(out)?;
        failed |= !outcome.passed();
    }
    Ok(exit(failed))
}

fn exit(failed: bool) -> ExitCode {
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
