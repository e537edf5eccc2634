//! The PromQL error table (`crates/kiln-promql/tests/fixtures/parse_errors.txt`, whose
//! messages Kiln's own test checks) against a real promtool 2.42: every query of the
//! table is put in a rule file, and `promtool check rules` must report, for each, the
//! message the table gives for Prometheus 2.42 (the `2.42:` line where Prometheus 3
//! words it differently, else the same message as Kiln's).

mod common;

#[path = "../../kiln-promql/tests/fixtures/parse_errors.rs"]
mod table;

use common::{promtool, require_peer};

/// Quotes a query as a YAML double-quoted scalar.
fn yaml_quoted(q: &str) -> String {
    let mut out = String::from("\"");
    for c in q.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[test]
#[cfg_attr(
    not(kiln_interop),
    ignore = "interop: needs KILN_INTEROP=1 and promtool from Debian's prometheus (scripts/test installs it)"
)]
fn promtool_reports_the_tables_messages() {
    require_peer("promtool", "prometheus");
    let cases = table::load();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad_queries.yml");
    let mut yaml = String::from("groups:\n  - name: g\n    rules:\n");
    for (i, c) in cases.iter().enumerate() {
        yaml.push_str(&format!(
            "      - record: r{i}\n        expr: {}\n",
            yaml_quoted(&c.query)
        ));
    }
    std::fs::write(&path, yaml).expect("write rule file");
    let out = promtool(&["check", "rules", path.to_str().expect("utf-8 path")]);
    let report =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    let mut wrong = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        let marker = format!("rule {}, \"r{i}\": could not parse expression: ", i + 1);
        let got = report
            .lines()
            .find_map(|l| l.split_once(&marker).map(|(_, m)| m.to_owned()))
            .unwrap_or_else(|| "no error".to_owned());
        let want = c.prometheus_2_42.as_deref().unwrap_or(&c.error);
        if got != want {
            wrong.push(format!("{:?}\n  table: {want}\n  promtool: {got}", c.query));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} cases differ from promtool 2.42:\n{}",
        wrong.len(),
        cases.len(),
        wrong.join("\n")
    );
}
