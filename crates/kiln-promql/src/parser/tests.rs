//! Parser tests: accepted queries print back in Prometheus's layout; rejected ones get
//! Prometheus's message at Prometheus's position.

use super::{parse, print};

/// `query` parses, and prints as `want` on one line.
fn check_ok(query: &str, want: &str) {
    match parse(query) {
        Ok(node) => assert_eq!(print::one_line(&node), want, "{query}"),
        Err(e) => panic!("{query}: {}", e.render(query)),
    }
}

/// `query` is rejected with exactly `want`.
fn check_err(query: &str, want: &str) {
    match parse(query) {
        Ok(node) => panic!("{query}: parsed as {}", print::one_line(&node)),
        Err(e) => assert_eq!(e.render(query), want, "{query}"),
    }
}

#[test]
fn accepted() {
    for (q, want) in [
        ("foo", "foo"),
        ("foo{a=\"b\", c=~'d'}", "foo{a=\"b\",c=~\"d\"}"),
        ("{__name__=\"foo\"}", "{__name__=\"foo\"}"),
        (
            "{\"metric.name\", \"a.b\"=\"c\"}",
            "{\"a.b\"=\"c\",__name__=\"metric.name\"}",
        ),
        ("1 + 2 * 3", "1 + 2 * 3"),
        ("-1", "-1"),
        ("- foo", "-foo"),
        ("2 ^ 3 ^ 2", "2 ^ 3 ^ 2"),
        ("sum by (job) (rate(x[5m]))", "sum by (job) (rate(x[5m]))"),
        (
            "sum(rate(x[5m])) without (a)",
            "sum without (a) (rate(x[5m]))",
        ),
        ("sum by () (x)", "sum(x)"),
        ("topk(3, x)", "topk(3, x)"),
        ("a / on(b) group_left(c) d", "a / on (b) group_left (c) d"),
        ("a > bool 1", "a > bool 1"),
        ("a and on() b", "a and on () b"),
        ("x offset 5m", "x offset 5m"),
        ("x offset -1h30m", "x offset -1h30m"),
        ("x[5m] offset 1d", "x[5m] offset 1d"),
        ("rate(x[5m])[30m:1m]", "rate(x[5m])[30m:1m]"),
        ("rate(x[5m])[30m:]", "rate(x[5m])[30m:]"),
        ("x @ 100", "x @ 100.000"),
        ("x @ start()", "x @ start()"),
        ("x[300]", "x[5m]"),
        ("x[5m * 2]", "x[5m * 2]"),
        ("x[step() + 1m]", "x[step() + 1m]"),
        ("x offset step()", "x offset step()"),
        ("x > 5m", "x > 5m"),
        ("sum", "sum"),
        ("by", "by"),
        ("foo and bar", "foo and bar"),
        ("fill + fill", "fill + fill"),
        ("1e3", "1000"),
        ("0x1F", "31"),
        ("Inf", "+Inf"),
        ("\"a\\nb\"", "\"a\\nb\""),
        ("# comment\nfoo # another", "foo"),
        ("(foo)", "(foo)"),
        ("count_values(\"v\", x)", "count_values(\"v\", x)"),
        (
            "label_replace(x, \"a\", \"$1\", \"b\", \"(.*)\")",
            "label_replace(x, \"a\", \"$1\", \"b\", \"(.*)\")",
        ),
        ("round(x)", "round(x)"),
        ("time()", "time()"),
    ] {
        check_ok(q, want);
    }
}

#[test]
fn syntax_errors() {
    for (q, want) in [
        (
            "avg_over_time(x[1h]) by (g)",
            "1:22: parse error: unexpected <by>",
        ),
        (
            "histogram_quantile(0.9, rate(x[5m])) by (le)",
            "1:38: parse error: unexpected <by>",
        ),
        (
            "",
            "unknown position: parse error: no expression found in input",
        ),
        ("  ", "1:1: parse error: no expression found in input"),
        ("foo bar", "1:5: parse error: unexpected identifier \"bar\""),
        ("1 +", "1:4: parse error: unexpected end of input"),
        ("sum(x", "1:6: parse error: unclosed left parenthesis"),
        ("x)", "1:3: parse error: unexpected right parenthesis ')'"),
        (
            "sum(rate(x[5m]) by (job)",
            "1:17: parse error: unexpected <by> in aggregation",
        ),
        (
            "sum by job (x)",
            "1:8: parse error: unexpected identifier \"job\" in grouping opts, expected \"(\"",
        ),
        (
            "sum by (a b) (x)",
            "1:11: parse error: unexpected identifier \"b\" in grouping opts, expected \",\" or \")\"",
        ),
        (
            "sum by (1) (x)",
            "1:9: parse error: unexpected number \"1\" in grouping opts, expected label",
        ),
        (
            "foo{a}",
            "1:6: parse error: unexpected \"}\" in label matching, expected label matching operator",
        ),
        (
            "foo{a=}",
            "1:7: parse error: unexpected \"}\" in label matching, expected string",
        ),
        (
            "foo{a=\"b\" c=\"d\"}",
            "1:11: parse error: unexpected identifier \"c\" in label matching, expected \",\" or \"}\"",
        ),
        (
            "foo{,}",
            "1:5: parse error: unexpected \",\" in label matching, expected identifier or \"}\"",
        ),
        (
            "foo{a.b=\"c\"}",
            "1:6: parse error: unexpected character inside braces: '.'",
        ),
        ("x[5m", "1:5: parse error: unclosed left bracket"),
        (
            "x[]",
            "1:3: parse error: unexpected \"]\" in subquery or range selector, expected number, duration, step(), or range()",
        ),
        (
            "x[5m:1m 2]",
            "1:9: parse error: unexpected number \"2\" in subquery selector, expected \"]\"",
        ),
        (
            "x[5m,]",
            "1:5: parse error: unexpected \",\" in subquery or range, expected \":\" or \"]\"",
        ),
        (
            "x offset",
            "1:9: parse error: unexpected end of input in offset, expected number, duration, step(), or range()",
        ),
        (
            "x @",
            "1:4: parse error: unexpected end of input in @, expected timestamp",
        ),
        (
            "5x",
            "1:1: parse error: bad number or duration syntax: \"5\"",
        ),
        ("foo(", "1:5: parse error: unclosed left parenthesis"),
        (
            "rate(x[5m],)",
            "1:11: parse error: trailing commas not allowed in function call args",
        ),
        ("(foo", "1:5: parse error: unclosed left parenthesis"),
        ("()", "1:2: parse error: unexpected \")\""),
        ("a +", "1:4: parse error: unexpected end of input"),
        (
            "x\n  + )",
            "2:6: parse error: unexpected right parenthesis ')'",
        ),
        ("x +\n", "2:1: parse error: unexpected end of input"),
    ] {
        check_err(q, want);
    }
}

#[test]
fn semantic_errors() {
    for (q, want) in [
        (
            "rate(x)",
            "1:6: parse error: expected type range vector in call to function \"rate\", got instant vector",
        ),
        (
            "foo(x)",
            "1:1: parse error: unknown function with name \"foo\"",
        ),
        (
            "RATE(x[5m])",
            "1:1: parse error: unknown function with name \"RATE\"",
        ),
        (
            "rate(x[5m], 1)",
            "1:1: parse error: expected 1 argument(s) in call to \"rate\", got 2",
        ),
        (
            "round()",
            "1:1: parse error: expected at least 1 argument(s) in call to \"round\", got 0",
        ),
        (
            "round(x, 1, 2)",
            "1:1: parse error: expected at most 2 argument(s) in call to \"round\", got 3",
        ),
        (
            "sum(x[5m])",
            "1:5: parse error: expected type instant vector in aggregation expression, got range vector",
        ),
        (
            "topk(x, y)",
            "1:6: parse error: expected type scalar in aggregation parameter, got instant vector",
        ),
        (
            "topk(y)",
            "1:1: parse error: wrong number of arguments for aggregate expression provided, expected 2, got 1",
        ),
        (
            "sum()",
            "1:1: parse error: no arguments for aggregate expression provided",
        ),
        (
            "1 > 2",
            "1:3: parse error: comparisons between scalars must use BOOL modifier",
        ),
        (
            "a + bool b",
            "1:3: parse error: bool modifier can only be used on comparison operators",
        ),
        (
            "x[5m] + 1",
            "1:1: parse error: binary expression must contain only scalar and instant vector types",
        ),
        (
            "1 and x",
            "1:1: parse error: set operator \"and\" not allowed in binary scalar expression",
        ),
        (
            "a and on(b) group_left c",
            "1:1: parse error: no grouping allowed for \"and\" operation",
        ),
        (
            "1 + on(a) x",
            "1:1: parse error: vector matching only allowed between instant vectors",
        ),
        (
            "{}",
            "1:1: parse error: vector selector must contain at least one non-empty matcher",
        ),
        (
            "{a=\"\"}",
            "1:1: parse error: vector selector must contain at least one non-empty matcher",
        ),
        (
            "foo{__name__=\"bar\"}",
            "1:1: parse error: metric name must not be set twice: \"foo\" or \"bar\"",
        ),
        (
            "rate(x[5m])[5m]",
            "1:12: parse error: ranges only allowed for vector selectors",
        ),
        (
            "x offset 5m [5m]",
            "1:13: parse error: no offset modifiers allowed before range",
        ),
        (
            "sum(x) offset 5m",
            "1:1: parse error: offset modifier must be preceded by an instant vector selector or range vector selector or a subquery",
        ),
        (
            "x offset 5m offset 1m",
            "1:1: parse error: offset may not be set multiple times",
        ),
        (
            "x[5m][10m:]",
            "1:1: parse error: subquery is only allowed on instant vector, got matrix instead",
        ),
        (
            "-x[5m]",
            "1:1: parse error: unary expression only allowed on expressions of type scalar or instant vector, got \"range vector\"",
        ),
        ("x[0s]", "1:3: parse error: duration must be greater than 0"),
        (
            "x[1h1d]",
            "1:3: parse error: not a valid duration string: \"1h1d\"",
        ),
        (
            "foo{a=~\"(\"}",
            "1:5: parse error: error parsing regexp: missing closing ): `^(?s:()$`",
        ),
        (
            "foo{a=~\"a**\"}",
            "1:5: parse error: error parsing regexp: invalid nested repetition operator: `**`",
        ),
        (
            "x anchored",
            "1:1: parse error: anchored modifier is experimental and not enabled",
        ),
        (
            "info(x)",
            "1:1: parse error: function \"info\" is not supported by Kiln yet",
        ),
    ] {
        check_err(q, want);
    }
}

#[test]
fn deep_nesting_parses_on_a_small_stack_and_is_bounded() {
    // 2,000 levels of parentheses (Prometheus takes them) on a 256 KiB thread: the
    // parser grows its stack on the heap instead of overflowing it.
    let deep = format!("{}x{}", "(".repeat(2000), ")".repeat(2000));
    let chain = vec!["a"; 2000].join(" + ");
    let calls = format!("{}x{}", "abs(".repeat(1500), ")".repeat(1500));
    let ok = std::thread::Builder::new()
        .stack_size(256 << 10)
        .spawn(move || {
            [deep, chain, calls]
                .iter()
                .map(|q| parse(q).map(|n| print::one_line(&n) == *q))
                .collect::<Vec<_>>()
        })
        .expect("spawn")
        .join()
        .expect("no overflow");
    assert_eq!(ok, vec![Ok(true), Ok(true), Ok(true)]);
    let too_deep = format!("{}x", "(".repeat(super::MAX_NESTING + 1));
    let err = parse(&too_deep).expect_err("too deep");
    assert_eq!(
        err.message,
        format!(
            "expression nests too deeply (more than {} levels)",
            super::MAX_NESTING
        )
    );
}

/// Token soup from PromQL's vocabulary: parsing never panics, and whatever parses
/// prints to text that parses again, nearly always to the same text. (Not always:
/// Prometheus's printer, which Kiln's follows, writes `+Inf ^ x` for `(+Inf) ^ x`,
/// which parses as `+(Inf ^ x)`.)
#[test]
fn random_token_soup_never_panics_and_round_trips() {
    const PIECES: &[&str] = &[
        "sum",
        "rate",
        "(",
        ")",
        "[5m]",
        "[1h:1m]",
        "{",
        "}",
        "a=\"b\"",
        ",",
        "x",
        "foo:bar",
        " + ",
        " - ",
        "*",
        "/",
        "^",
        " and ",
        " or ",
        " unless ",
        " > ",
        " == bool ",
        "by",
        "without",
        "(a, b)",
        "on(c)",
        "group_left",
        "offset 5m",
        "offset -1h",
        "@ 100",
        "@ start()",
        "1",
        "2.5",
        "-3",
        "Inf",
        "NaN",
        "\"s\"",
        "topk",
        "count_values",
        "abs",
        "histogram_quantile",
        "0.9",
        "[",
        "]",
        ":",
        "=~",
        "!~",
        "\"a.*\"",
        "#c\n",
        " ",
        "\n",
        "step()",
        "min_of(1m, 2m)",
        "5m",
        "`r`",
        "bool",
        "ignoring",
        "(x)",
        "@",
        "offset",
        "label_replace",
        "time()",
        "vector(1)",
        "-",
        "1e3",
        "0x1f",
        "absent",
    ];
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let (mut parsed, mut same) = (0, 0);
    for _ in 0..20_000 {
        let len = 1 + (next() % 12) as usize;
        let q: String = (0..len)
            .map(|_| PIECES[(next() % PIECES.len() as u64) as usize])
            .collect();
        if let Ok(node) = parse(&q) {
            parsed += 1;
            let text = print::one_line(&node);
            let back = parse(&text).unwrap_or_else(|e| panic!("{q:?} printed as {text:?}: {e:?}"));
            if print::one_line(&back) == text {
                same += 1;
            }
            let _ = print::pretty(&node);
        }
    }
    assert!(
        parsed > 100,
        "only {parsed} queries parsed: the soup is too thin"
    );
    assert!(
        same * 100 >= parsed * 99,
        "{same} of {parsed} printed queries round-trip"
    );
}
