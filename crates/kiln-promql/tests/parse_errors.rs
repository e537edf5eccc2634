//! Every bad query of `fixtures/parse_errors.txt` gets exactly the error the table gives
//! (Prometheus 3's wording and position). The same table is run through a real
//! promtool 2.42 by `crates/kiln/tests/promql_errors.rs`.

#[path = "fixtures/parse_errors.rs"]
mod table;

#[test]
fn bad_queries_get_prometheus_messages() {
    let cases = table::load();
    assert!(cases.len() > 150, "the table lost its cases");
    let mut wrong = Vec::new();
    for c in &cases {
        let got = match kiln_promql::validate_query(&c.query) {
            Ok(()) => "no error".to_owned(),
            Err(e) => e.message,
        };
        if got != c.error {
            wrong.push(format!("{:?}\n  want: {}\n  got:  {got}", c.query, c.error));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} cases differ:\n{}",
        wrong.len(),
        cases.len(),
        wrong.join("\n")
    );
}

#[test]
fn format_query_reports_the_same_errors() {
    for c in table::load().iter().take(40) {
        let err = kiln_promql::format_query(&c.query).expect_err(&c.query);
        assert_eq!(err.message, c.error, "{:?}", c.query);
    }
}
