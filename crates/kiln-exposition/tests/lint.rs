//! The linter against fixtures written by promtool 2.42: `tests/fixtures/lint/NAME.prom`
//! is the input, `NAME.want` what `promtool check metrics < NAME.prom` printed to stderr
//! followed by `# exit N`. Problems must match line for line (in promtool's sorted
//! order); for inputs promtool rejects (exit 1) Kiln must reject them too, on the same
//! line. `crates/kiln/tests/check_metrics.rs` reruns promtool on them (`KILN_INTEROP=1`).

#![allow(clippy::unwrap_used)]

use std::path::Path;

use kiln_exposition::lint_text;

fn fixtures() -> Vec<(String, Vec<u8>, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lint");
    let mut out = Vec::new();
    for e in std::fs::read_dir(&dir).unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_some_and(|x| x == "prom") {
            let input = std::fs::read(&path).unwrap();
            let want = std::fs::read_to_string(path.with_extension("want")).unwrap();
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            out.push((name, input, want));
        }
    }
    out.sort();
    assert!(out.len() >= 20, "fixtures missing from {}", dir.display());
    out
}

#[test]
fn matches_promtool_fixtures() {
    let mut bad = Vec::new();
    for (name, input, want) in fixtures() {
        let (lines, exit) = want.trim_end().rsplit_once("# exit ").unwrap();
        let exit: i32 = exit.parse().unwrap();
        // Run twice: nothing may carry over between runs.
        for _ in 0..2 {
            match (lint_text(&input), exit) {
                (Ok(problems), 0 | 3) => {
                    let got: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
                    let want: Vec<&str> = lines.lines().collect();
                    if got != want {
                        bad.push(format!("{name}: got\n{}\nwant\n{}", got.join("\n"), lines));
                    }
                    if (exit == 3) == problems.is_empty() {
                        bad.push(format!("{name}: want exit {exit}"));
                    }
                }
                (Err(err), 1) => {
                    // promtool: "... parsing error in line N: ...".
                    let line = format!("line {}:", err.line);
                    if !lines.contains(&line) {
                        bad.push(format!("{name}: error on another line: {err} vs {lines}"));
                    }
                }
                (got, _) => bad.push(format!("{name}: got {got:?}, want exit {exit}")),
            }
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n\n"));
}

#[test]
fn error_texts() {
    let cases: &[(&str, &str)] = &[
        (
            "m 1\n# TYPE m gauge\n",
            "line 2, column 1: second TYPE line for metric name \"m\", or TYPE reported after samples",
        ),
        (
            "# HELP m x\n# HELP m y\n",
            "line 2, column 1: second HELP line for metric name \"m\"",
        ),
        (
            "# TYPE h histogram\nh_bucket{le=\"x\"} 1\n",
            "line 2, column 1: expected float as value for 'le' label, got \"x\"",
        ),
        (
            "m{ 1\n",
            "line 1, column 4: expected a label name, found \"1\"",
        ),
    ];
    for (input, want) in cases {
        let err = lint_text(input.as_bytes()).unwrap_err();
        assert_eq!(err.to_string(), *want, "{input:?}");
    }
}
