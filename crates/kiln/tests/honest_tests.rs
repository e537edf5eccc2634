//! Keeps the test report honest: a test that cannot run here must be reported as
//! `ignored` with its reason (`#[cfg_attr(not(kiln_interop), ignore = "...")]`, the cfgs
//! coming from crates/kiln/build.rs), never pass after quietly returning. This test reads
//! every test file under `crates/` and fails on the runtime-skip habits it replaced:
//! - a `SKIPPED` notice or a call to the old `interop_enabled` helper;
//! - a `return;` whose block does nothing but print, or that an environment or file
//!   existence check opens (`if std::env::var(..) != .. { return; }`,
//!   `let Ok(..) = read_to_string(..) else { eprintln!(..); return; }`).
//!
//! Test files are `tests/**/*.rs`, `src/**/tests.rs`, `src/**/*_tests.rs` and
//! `src/**/tests/**/*.rs`, and in other source files everything after the first
//! `#[cfg(test)]`. Code that branches on an environment variable to do real work (a
//! test re-running itself as a child process) is not a skip and is not flagged.

use std::path::{Path, PathBuf};

/// Words on a line that only the old skip habit writes.
const SKIP_WORDS: [&str; 2] = ["SKIPPED", "interop_enabled"];

/// Checks that open a block which, when it just returns, skips a test on a condition of
/// the machine rather than failing it.
const ENVIRONMENT_CHECKS: [&str; 6] = [
    "env::var",
    ".exists()",
    ".is_dir()",
    ".is_file()",
    "read_to_string(",
    "read_dir(",
];

/// `line: problem` for each runtime skip in one file's text (lines numbered from 1).
fn runtime_skips(text: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut found = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if let Some(word) = SKIP_WORDS.iter().find(|w| line.contains(*w)) {
            found.push(format!("{}: `{word}`", i + 1));
        }
        if line.trim() != "return;" {
            continue;
        }
        // The statements between the block's opening line and this `return;`.
        let Some(opener) = (0..i).rev().find(|&j| lines[j].trim_end().ends_with('{')) else {
            continue;
        };
        let body = lines[opener + 1..i].join(" ");
        let only_prints = body
            .split(';')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .all(|s| s.starts_with("eprintln!") || s.starts_with("println!"));
        let prints = !body.trim().is_empty();
        let checks_environment = ENVIRONMENT_CHECKS.iter().any(|c| lines[opener].contains(c));
        if only_prints && (prints || checks_environment) {
            found.push(format!(
                "{}: `return;` after `{}` skips the test at run time",
                i + 1,
                lines[opener].trim()
            ));
        }
    }
    found
}

/// The part of a source file that is test code: all of a test file, else whatever
/// follows its first `#[cfg(test)]` (none if it has none).
fn test_code<'a>(path: &Path, text: &'a str) -> &'a str {
    let components: Vec<String> = path
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let name = components.last().map(String::as_str).unwrap_or_default();
    let is_test_file = components.iter().any(|c| c == "tests")
        || name == "tests.rs"
        || name.ends_with("_tests.rs");
    if is_test_file {
        return text;
    }
    text.find("#[cfg(test)]").map_or("", |at| &text[at..])
}

/// Every `.rs` file under `dir`, recursively, skipping build output.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()));
    for entry in entries {
        let path = entry
            .unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()))
            .path();
        if path.is_dir() {
            if path.file_name().is_none_or(|n| n != "target") {
                rust_files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn the_detector_flags_runtime_skips_and_nothing_else() {
    fn check(input: &str, want: &[&str]) {
        assert_eq!(runtime_skips(input), want, "{input}");
    }
    // The old interop gate, and the notice it printed.
    check(
        "fn t() {\n    if !interop_enabled(\"t\") {\n        return;\n    }\n}\n",
        &["2: `interop_enabled`"],
    );
    // A silent return on an environment variable.
    check(
        "fn t() {\n    if std::env::var(\"X\").is_err() {\n        return;\n    }\n}\n",
        &["3: `return;` after `if std::env::var(\"X\").is_err() {` skips the test at run time"],
    );
    // A file that may be missing: print a notice (on two lines) and return.
    check(
        "fn t() {\n    let Ok(s) = std::fs::read_to_string(p) else {\n        eprintln!(\n            \"not found: {p}\"\n        );\n        return;\n    };\n}\n",
        &[
            "6: `return;` after `let Ok(s) = std::fs::read_to_string(p) else {` skips the test at run time",
        ],
    );
    // Printing and returning on any other condition is the same habit.
    check(
        "fn t() {\n    if !ready() {\n        println!(\"not ready\");\n        return;\n    }\n}\n",
        &["4: `return;` after `if !ready() {` skips the test at run time"],
    );
    // Not skips: a test that re-runs itself as a child process dispatches on an
    // environment variable and does real work before returning; an early return after
    // a check of the code's own result; a helper returning a value.
    check(
        "fn t() {\n    if let Ok(dir) = std::env::var(CHILD) {\n        run_child(&dir);\n        return;\n    }\n}\n",
        &[],
    );
    check(
        "fn t() {\n    if want == got {\n        return;\n    }\n    panic!();\n}\n",
        &[],
    );
    check(
        "fn port() -> Option<u16> {\n    if !path.exists() {\n        return None;\n    }\n}\n",
        &[],
    );
}

#[test]
fn no_test_file_skips_itself_at_run_time() {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    rust_files(&crates, &mut files);
    files.sort();
    assert!(
        files.len() > 100,
        "found only {} source files under {}",
        files.len(),
        crates.display()
    );
    let mut problems = Vec::new();
    let mut test_files = 0;
    for path in &files {
        let relative = path.strip_prefix(&crates).unwrap_or(path);
        // This file names the habits it looks for.
        if relative == Path::new("kiln/tests/honest_tests.rs") {
            continue;
        }
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        let code = test_code(relative, &text);
        if code.is_empty() {
            continue;
        }
        test_files += 1;
        // Line numbers of the whole file.
        let offset = text[..text.len() - code.len()].lines().count();
        for skip in runtime_skips(code) {
            let (line, problem) = skip.split_once(": ").expect("line: problem");
            let line: usize = line.parse().expect("line number");
            problems.push(format!(
                "crates/{}:{}: {problem}",
                relative.display(),
                line + offset
            ));
        }
    }
    assert!(test_files > 50, "found only {test_files} files with tests");
    assert!(
        problems.is_empty(),
        "tests that skip themselves at run time pass without having run; mark them \
         #[cfg_attr(not(<cfg from crates/kiln/build.rs>), ignore = \"<reason>\")] instead:\n{}",
        problems.join("\n")
    );
}
