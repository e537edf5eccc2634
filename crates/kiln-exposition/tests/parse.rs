//! Parser tables: good documents, bad lines (each with its line number), limits, and
//! properties on arbitrary input.

#![allow(clippy::unwrap_used)]

use std::borrow::Cow;

use kiln_exposition::{
    Entry, Format, MetricType, ParseError, ParseErrorReason as R, Parser, ParserOptions, SampleLine,
};
use kiln_model::Labels;
use proptest::prelude::*;

const OM: Format = Format::OpenMetrics;
const TEXT: Format = Format::Text004;
const GO_NAN: u64 = 0x7ff8_0000_0000_0001;

fn parse_all(format: Format, input: &str) -> Result<Vec<Entry<'_>>, ParseError> {
    Parser::new(input.as_bytes(), format).collect()
}

fn s(pairs: &[(&str, &str)], value: f64, ts: Option<i64>) -> Entry<'static> {
    Entry::Sample(SampleLine {
        series: "",
        labels: Labels::from_pairs(pairs),
        value,
        timestamp_ms: ts,
        empty_label_names: pairs
            .iter()
            .filter(|(_, v)| v.is_empty())
            .map(|(n, _)| (*n).to_owned())
            .collect(),
    })
}

/// Parses `input` twice with fresh parsers and compares to `want` (values by bits).
fn check(format: Format, input: &str, want: &[Entry<'_>]) {
    for _ in 0..2 {
        let got = parse_all(format, input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
        assert_eq!(got.len(), want.len(), "{input:?}: {got:?}");
        for (g, w) in got.iter().zip(want) {
            match (g, w) {
                (Entry::Sample(g), Entry::Sample(w)) => {
                    assert_eq!(g.labels, w.labels, "{input:?}");
                    assert_eq!(g.value.to_bits(), w.value.to_bits(), "{input:?}: value");
                    assert_eq!(g.timestamp_ms, w.timestamp_ms, "{input:?}: timestamp");
                }
                _ => assert_eq!(g, w, "{input:?}"),
            }
        }
    }
}

#[test]
fn openmetrics_documents() {
    let cases: &[(&str, Vec<Entry<'_>>)] = &[
        ("# EOF\n", vec![Entry::Eof]),
        ("# EOF", vec![Entry::Eof]),
        (
            "# HELP gpu_util GPU \\\"util\\\" in %\\n\\\\ \\q\n# TYPE gpu_util gauge\n# UNIT gpu_util_percent percent\ngpu_util{gpu=\"0\",uuid=\"GPU-1\"} 87.5 1700000000.123\n# EOF\n",
            vec![
                Entry::Help {
                    family: "gpu_util",
                    text: Cow::Borrowed("GPU \"util\" in %\n\\ \\q"),
                },
                Entry::Type {
                    family: "gpu_util",
                    kind: MetricType::Gauge,
                },
                Entry::Unit {
                    family: "gpu_util_percent",
                    unit: "percent",
                },
                s(
                    &[("__name__", "gpu_util"), ("gpu", "0"), ("uuid", "GPU-1")],
                    87.5,
                    Some(1_700_000_000_123),
                ),
                Entry::Eof,
            ],
        ),
        (
            "m{} 1\nm NaN 1\nm +Inf 2\nm -Inf 3\nm Inf 4\nm inf 1e-3\nm -0 -1.5\nm 1e3 0\nm .5 1.0000009\n# EOF\n",
            vec![
                s(&[("__name__", "m")], 1.0, None),
                s(&[("__name__", "m")], f64::from_bits(GO_NAN), Some(1000)),
                s(&[("__name__", "m")], f64::INFINITY, Some(2000)),
                s(&[("__name__", "m")], f64::NEG_INFINITY, Some(3000)),
                s(&[("__name__", "m")], f64::INFINITY, Some(4000)),
                s(&[("__name__", "m")], f64::INFINITY, Some(1)),
                s(&[("__name__", "m")], -0.0, Some(-1500)),
                s(&[("__name__", "m")], 1000.0, Some(0)),
                s(&[("__name__", "m")], 0.5, Some(1000)),
                Entry::Eof,
            ],
        ),
        (
            // Truncation as promtool 2.42: 1.005 s is 1004.999.. ms -> 1004.
            "m 1 1.005\nm 2 2.0019\n# EOF\n",
            vec![
                s(&[("__name__", "m")], 1.0, Some(1004)),
                s(&[("__name__", "m")], 2.0, Some(2001)),
                Entry::Eof,
            ],
        ),
        (
            "m{a=\"x\\ny\\\\z\\\"w\",b=\"\\q\",c=\"\",d=\"ü\"} 1 1\n# EOF\n",
            vec![
                s(
                    &[
                        ("__name__", "m"),
                        ("a", "x\ny\\z\"w"),
                        ("b", "\\q"),
                        ("d", "ü"),
                    ],
                    1.0,
                    Some(1000),
                ),
                Entry::Eof,
            ],
        ),
        (
            "# TYPE c counter\nc_total 1 1 # {trace_id=\"abc\"} 1 0.5\nc_total 2 # {} 2\nc_created 5\n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 3 # {a=\"b\"} 0.25\nh_count 3\n# EOF\n",
            vec![
                Entry::Type {
                    family: "c",
                    kind: MetricType::Counter,
                },
                s(&[("__name__", "c_total")], 1.0, Some(1000)),
                s(&[("__name__", "c_total")], 2.0, None),
                s(&[("__name__", "c_created")], 5.0, None),
                Entry::Type {
                    family: "h",
                    kind: MetricType::Histogram,
                },
                s(&[("__name__", "h_bucket"), ("le", "+Inf")], 3.0, None),
                s(&[("__name__", "h_count")], 3.0, None),
                Entry::Eof,
            ],
        ),
        (
            "# TYPE a gaugehistogram\n# TYPE b info\n# TYPE c stateset\n# TYPE d unknown\n# TYPE e summary\n# HELP f \n# UNIT g \nns:sub_sys:m 1\n# EOF\n",
            vec![
                Entry::Type {
                    family: "a",
                    kind: MetricType::GaugeHistogram,
                },
                Entry::Type {
                    family: "b",
                    kind: MetricType::Info,
                },
                Entry::Type {
                    family: "c",
                    kind: MetricType::StateSet,
                },
                Entry::Type {
                    family: "d",
                    kind: MetricType::Unknown,
                },
                Entry::Type {
                    family: "e",
                    kind: MetricType::Summary,
                },
                Entry::Help {
                    family: "f",
                    text: Cow::Borrowed(""),
                },
                Entry::Unit {
                    family: "g",
                    unit: "",
                },
                s(&[("__name__", "ns:sub_sys:m")], 1.0, None),
                Entry::Eof,
            ],
        ),
    ];
    for (input, want) in cases {
        check(OM, input, want);
    }
}

#[test]
fn text_documents() {
    let cases: &[(&str, Vec<Entry<'_>>)] = &[
        ("", vec![]),
        ("\n\n  \n", vec![]),
        (
            "# HELP http_requests_total The total \\\"number\\\" of\\nrequests \\\\.\n# TYPE http_requests_total counter\n# just a comment\n#\n\nhttp_requests_total{method=\"post\",code=\"200\"} 1027 1395066363000\nhttp_requests_total{method=\"post\",code=\"400\"}    3 1395066363000\n",
            vec![
                Entry::Help {
                    family: "http_requests_total",
                    text: Cow::Borrowed("The total \\\"number\\\" of\nrequests \\."),
                },
                Entry::Type {
                    family: "http_requests_total",
                    kind: MetricType::Counter,
                },
                s(
                    &[
                        ("__name__", "http_requests_total"),
                        ("method", "post"),
                        ("code", "200"),
                    ],
                    1027.0,
                    Some(1_395_066_363_000),
                ),
                s(
                    &[
                        ("__name__", "http_requests_total"),
                        ("method", "post"),
                        ("code", "400"),
                    ],
                    3.0,
                    Some(1_395_066_363_000),
                ),
            ],
        ),
        (
            "  m\t1\t-5  \nm { a = \"1\" , b=\"2\", } +Inf\nm{}NaN\n# TYPE m untyped\n# TYPE s summary\n# TYPE h histogram\n# EOF is only a comment here\nm 2",
            vec![
                s(&[("__name__", "m")], 1.0, Some(-5)),
                s(
                    &[("__name__", "m"), ("a", "1"), ("b", "2")],
                    f64::INFINITY,
                    None,
                ),
                s(&[("__name__", "m")], f64::from_bits(GO_NAN), None),
                Entry::Type {
                    family: "m",
                    kind: MetricType::Unknown,
                },
                Entry::Type {
                    family: "s",
                    kind: MetricType::Summary,
                },
                Entry::Type {
                    family: "h",
                    kind: MetricType::Histogram,
                },
                s(&[("__name__", "m")], 2.0, None),
            ],
        ),
        (
            "# HELP m\nm 1\n",
            vec![
                Entry::Help {
                    family: "m",
                    text: Cow::Borrowed(""),
                },
                s(&[("__name__", "m")], 1.0, None),
            ],
        ),
    ];
    for (input, want) in cases {
        check(TEXT, input, want);
    }
}

/// Bad documents: each must fail at (line, column) with a reason matching `want`.
#[test]
fn bad_inputs() {
    type Want = fn(&R) -> bool;
    let unexpected: Want = |r| matches!(r, R::Unexpected { .. });
    let cases: &[(Format, &str, usize, usize, Want)] = &[
        (OM, "m 1 1\n", 2, 1, |r| *r == R::MissingEof),
        (OM, "", 1, 1, |r| *r == R::MissingEof),
        (OM, "m 1\n# EOF\nm 2\n", 3, 1, |r| *r == R::DataAfterEof),
        (OM, "m 1\n# EOF\n\n", 3, 1, |r| *r == R::DataAfterEof),
        (OM, "# EOF \n", 1, 2, unexpected),
        (OM, "m 1\n\nm 2\n# EOF\n", 2, 1, unexpected),
        (
            OM,
            "# TYPE m gauge\n# random comment\n# EOF\n",
            2,
            2,
            unexpected,
        ),
        (OM, "#TYPE m gauge\n# EOF\n", 1, 2, unexpected),
        (OM, " m 1\n# EOF\n", 1, 1, unexpected),
        (OM, "m  1\n# EOF\n", 1, 3, unexpected),
        (OM, "m\t1\n# EOF\n", 1, 2, unexpected),
        (OM, "m 1 1 \n# EOF\n", 1, 7, unexpected),
        (OM, "m 1\r\n# EOF\n", 1, 3, |r| {
            matches!(r, R::InvalidValue { .. })
        }),
        (OM, "m{a=\"x\",} 1\n# EOF\n", 1, 9, unexpected),
        (OM, "m{a=\"x\" ,b=\"y\"} 1\n# EOF\n", 1, 8, unexpected),
        (OM, "m{a =\"x\"} 1\n# EOF\n", 1, 4, unexpected),
        (OM, "m{1a=\"x\"} 1\n# EOF\n", 1, 3, unexpected),
        (OM, "m{a=x} 1\n# EOF\n", 1, 5, unexpected),
        (OM, "m{a=\"x} 1\n# EOF\n", 1, 10, unexpected),
        (OM, "m{a=\"x\\\"} 1\n# EOF\n", 1, 12, unexpected),
        (OM, "m{a=\"x\"}1\n# EOF\n", 1, 9, unexpected),
        (OM, "m{a=\"x\",a=\"y\"} 1\n# EOF\n", 1, 2, |r| {
            *r == R::DuplicateLabel { name: "a".into() }
        }),
        (OM, "m{__name__=\"y\"} 1\n# EOF\n", 1, 2, |r| {
            *r == R::DuplicateLabel {
                name: "__name__".into(),
            }
        }),
        (OM, "1m 1\n# EOF\n", 1, 1, unexpected),
        (OM, "m\n# EOF\n", 1, 2, unexpected),
        (OM, "m \n# EOF\n", 1, 3, unexpected),
        (OM, "m x\n# EOF\n", 1, 3, |r| {
            matches!(r, R::InvalidValue { .. })
        }),
        (OM, "m +nan\n# EOF\n", 1, 3, |r| {
            matches!(r, R::InvalidValue { .. })
        }),
        (OM, "m 0x10\n# EOF\n", 1, 3, |r| {
            matches!(r, R::InvalidValue { .. })
        }),
        (OM, "m 0x1p3\n# EOF\n", 1, 3, |r| {
            matches!(r, R::InvalidValue { .. })
        }),
        (OM, "m 1_000\n# EOF\n", 1, 3, |r| {
            matches!(r, R::InvalidValue { .. })
        }),
        (OM, "m 1e400\n# EOF\n", 1, 3, |r| {
            matches!(r, R::ValueOutOfRange { .. })
        }),
        (OM, "m 1 NaN\n# EOF\n", 1, 5, |r| {
            matches!(r, R::InvalidTimestamp { .. })
        }),
        (OM, "m 1 +Inf\n# EOF\n", 1, 5, |r| {
            matches!(r, R::InvalidTimestamp { .. })
        }),
        (OM, "m 1 1e300\n# EOF\n", 1, 5, |r| {
            matches!(r, R::InvalidTimestamp { .. })
        }),
        (OM, "m 1 x\n# EOF\n", 1, 5, |r| {
            matches!(r, R::InvalidTimestamp { .. })
        }),
        (OM, "# TYPE m foo\n# EOF\n", 1, 10, |r| {
            matches!(r, R::UnknownMetricType { .. })
        }),
        (OM, "# TYPE m untyped\n# EOF\n", 1, 10, |r| {
            matches!(r, R::UnknownMetricType { .. })
        }),
        (OM, "# TYPE m gauge \n# EOF\n", 1, 10, |r| {
            matches!(r, R::UnknownMetricType { .. })
        }),
        (OM, "# TYPE m\n# EOF\n", 1, 9, unexpected),
        (OM, "# HELP m\n# EOF\n", 1, 9, unexpected),
        (OM, "# HELP\n# EOF\n", 1, 2, unexpected),
        (OM, "# TYPE 1m gauge\n# EOF\n", 1, 8, unexpected),
        (OM, "# UNIT m seconds\n# EOF\n", 1, 10, |r| {
            matches!(r, R::UnitNotSuffix { .. })
        }),
        (
            OM,
            "# TYPE m gauge\nm 1 1 # {a=\"b\"} 1\n# EOF\n",
            2,
            7,
            |r| matches!(r, R::ExemplarNotAllowed { .. }),
        ),
        (OM, "m 1 1 # {a=\"b\"} 1\n# EOF\n", 1, 7, |r| {
            matches!(r, R::ExemplarNotAllowed { .. })
        }),
        (
            OM,
            "# TYPE c counter\nc_created 1 # {} 1\n# EOF\n",
            2,
            13,
            |r| matches!(r, R::ExemplarNotAllowed { .. }),
        ),
        (
            OM,
            "# TYPE c counter\nc_total 1 1 # {a=\"b\"} x\n# EOF\n",
            2,
            23,
            |r| matches!(r, R::InvalidValue { .. }),
        ),
        (
            OM,
            "# TYPE c counter\nc_total 1 1 # {a=\"b\"}  1\n# EOF\n",
            2,
            23,
            unexpected,
        ),
        (
            OM,
            "# TYPE c counter\nc_total 1 1 #  {a=\"b\"} 1\n# EOF\n",
            2,
            15,
            unexpected,
        ),
        (
            OM,
            "# TYPE c counter\nc_total 1 1 # {a=\"b\"} 1 2 3\n# EOF\n",
            2,
            26,
            unexpected,
        ),
        (
            OM,
            "# TYPE c counter\nc_total 1 1 # {a=\"b\"} 1 NaN\n# EOF\n",
            2,
            25,
            |r| matches!(r, R::InvalidTimestamp { .. }),
        ),
        (
            OM,
            "# TYPE c counter\nc_total 1 1 #\n# EOF\n",
            2,
            14,
            unexpected,
        ),
        (OM, "m{a=\"\u{1}\"} 1\n# EOF\n\u{ff}", 3, 1, |r| {
            *r == R::DataAfterEof
        }),
        (TEXT, "m 1\nm 2 3 4\n", 2, 7, unexpected),
        (TEXT, "m 1\nm 1.5.5\n", 2, 3, |r| {
            matches!(r, R::InvalidValue { .. })
        }),
        (TEXT, "m 1 1.5\n", 1, 5, |r| {
            matches!(r, R::InvalidTimestamp { .. })
        }),
        (TEXT, "m 1 99999999999999999999\n", 1, 5, |r| {
            matches!(r, R::InvalidTimestamp { .. })
        }),
        (TEXT, "\n\nm{a=\"1\" b=\"2\"} 1\n", 3, 9, unexpected),
        (TEXT, "m{a=\"1\",,} 1\n", 1, 9, unexpected),
        (TEXT, "m\n", 1, 2, unexpected),
        (TEXT, "m{a=\"1\"}\n", 1, 9, unexpected),
        (TEXT, "# TYPE m gaugehistogram\n", 1, 10, |r| {
            matches!(r, R::UnknownMetricType { .. })
        }),
        (TEXT, "# TYPE m\n", 1, 9, unexpected),
        (TEXT, "# TYPE m gauge extra\n", 1, 16, unexpected),
        (TEXT, "# HELP 9m x\n", 1, 8, unexpected),
        (TEXT, "m{a=\"1\",a=\"2\"} 1\n", 1, 2, |r| {
            matches!(r, R::DuplicateLabel { .. })
        }),
        (TEXT, "m 1\r\n", 1, 3, |r| {
            matches!(r, R::InvalidValue { .. })
        }),
    ];
    let mut bad = Vec::new();
    for (format, input, line, column, want) in cases {
        match parse_all(*format, input) {
            Ok(got) => bad.push(format!("{input:?}: parsed as {got:?}")),
            Err(err) if (err.line, err.column) != (*line, *column) || !want(&err.reason) => {
                bad.push(format!("{input:?}: want {line}:{column}, got {err}"))
            }
            Err(_) => {}
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn invalid_utf8_names_its_place() {
    let input = b"m 1\nm{a=\"\xff\"} 1\n";
    let err = Parser::new(input, TEXT)
        .collect::<Result<Vec<_>, _>>()
        .unwrap_err();
    assert_eq!((err.line, err.column, &err.reason), (2, 6, &R::InvalidUtf8));
    assert_eq!(err.to_string(), "line 2, column 6: invalid UTF-8");
}

#[test]
fn limits() {
    let opts = ParserOptions {
        max_line_bytes: 64,
        max_label_bytes: 8,
        max_labels: 3,
        ..ParserOptions::default()
    };
    let long_line = format!("m{{a=\"{}\"}} 1\n", "x".repeat(100));
    let cases: &[(&str, usize, usize, R)] = &[
        (&long_line, 1, 65, R::LineTooLong { limit: 64 }),
        (
            "m{a=\"123456789\"} 1\n",
            1,
            5,
            R::LabelTooLong {
                name: "a".into(),
                limit: 8,
            },
        ),
        (
            "m{a=\"12345678\\\\\"} 1\n",
            1,
            5,
            R::LabelTooLong {
                name: "a".into(),
                limit: 8,
            },
        ),
        (
            "m{abcdefghi=\"1\"} 1\n",
            1,
            3,
            R::LabelTooLong {
                name: "\"abcdefghi\"".into(),
                limit: 8,
            },
        ),
        (
            "m{a=\"1\",b=\"2\",c=\"3\"} 1\n",
            1,
            15,
            R::TooManyLabels { limit: 3 },
        ),
    ];
    for format in [TEXT, OM] {
        for (input, line, column, reason) in cases {
            let err = Parser::with_options(input.as_bytes(), format, opts)
                .collect::<Result<Vec<_>, _>>()
                .map(|v| format!("{v:?}"))
                .expect_err(input);
            assert_eq!(
                (err.line, err.column, &err.reason),
                (*line, *column, reason),
                "{input:?}"
            );
        }
    }
    // Exactly at the limits is fine.
    let ok = "m{a=\"12345678\",b=\"2\"} 1\n# EOF\n";
    assert!(Parser::with_options(ok.as_bytes(), OM, opts).all(|r| r.is_ok()));
    // A huge line without a newline is refused after scanning only the limit.
    let huge = vec![b'm'; 10 << 20];
    let err = Parser::new(&huge, TEXT).next().unwrap().unwrap_err();
    assert_eq!(err.reason, R::LineTooLong { limit: 1 << 20 });
    // Exemplar labels are limited to 128 code points.
    let ex = format!(
        "# TYPE c counter\nc_total 1 # {{a=\"{}\"}} 1\n# EOF\n",
        "é".repeat(128)
    );
    let err = parse_all(OM, &ex).unwrap_err();
    assert_eq!(
        (err.line, err.reason),
        (
            2,
            R::ExemplarLabelsTooLong {
                runes: 129,
                limit: 128
            }
        )
    );
}

#[test]
fn errors_stop_the_iteration_and_line_is_tracked() {
    let mut p = Parser::new(b"m 1\nbad line here\nm 2\n", TEXT);
    assert!(p.next().unwrap().is_ok());
    assert_eq!(p.line(), 1);
    let err = p.next().unwrap().unwrap_err();
    assert_eq!(err.line, 2);
    assert!(err.to_string().starts_with("line 2, column "), "{err}");
    assert!(p.next().is_none());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        for format in [TEXT, OM] {
            let n = Parser::new(&bytes, format).take(1000).count();
            prop_assert!(n <= bytes.len() + 1);
        }
    }

    #[test]
    fn format_like_text_never_panics(s in "[a-z_{}=\",# \\\\\n.0-9eE+-]{0,200}") {
        for format in [TEXT, OM] {
            for r in Parser::new(s.as_bytes(), format) {
                if let Err(e) = r {
                    prop_assert!(e.line >= 1 && e.column >= 1);
                }
            }
        }
    }

    #[test]
    fn samples_round_trip(
        name in "[a-zA-Z_:][a-zA-Z0-9_:]{0,20}",
        labels in prop::collection::btree_map("[a-zA-Z_][a-zA-Z0-9_]{0,10}", "[ -~\\n\u{e9}]{1,12}", 0..5),
        value in any::<f64>().prop_filter("not NaN", |v| !v.is_nan()),
        ts in -1_000_000_000_000i64..4_000_000_000_000,
    ) {
        let labels: Vec<(String, String)> =
            labels.into_iter().filter(|(n, _)| n != "__name__").collect();
        let mut line = name.clone();
        line.push('{');
        for (i, (n, v)) in labels.iter().enumerate() {
            if i > 0 { line.push(','); }
            let esc = v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
            line.push_str(&format!("{n}=\"{esc}\""));
        }
        line.push('}');
        let mut pairs = labels.clone();
        pairs.push(("__name__".into(), name.clone()));
        let want = Labels::from_pairs(&pairs);

        let text = format!("{line} {value:?} {ts}\n");
        let got: Vec<_> = parse_all(TEXT, &text).unwrap();
        match &got[..] {
            [Entry::Sample(s)] => {
                prop_assert_eq!(&s.labels, &want);
                prop_assert_eq!(s.value.to_bits(), value.to_bits());
                prop_assert_eq!(s.timestamp_ms, Some(ts));
            }
            other => prop_assert!(false, "{:?}", other),
        }

        // Whole milliseconds written as seconds with three decimals come back exact
        // whenever ts/1000 * 1000 does in float arithmetic (what Prometheus computes).
        let secs = format!("{}{}.{:03}", if ts < 0 { "-" } else { "" }, ts.unsigned_abs() / 1000, ts.unsigned_abs() % 1000);
        let om = format!("{line} {value:?} {secs}\n# EOF\n");
        let got: Vec<_> = parse_all(OM, &om).unwrap();
        let want_ts = (secs.parse::<f64>().unwrap() * 1000.0) as i64;
        match &got[..] {
            [Entry::Sample(s), Entry::Eof] => {
                prop_assert_eq!(&s.labels, &want);
                prop_assert_eq!(s.value.to_bits(), value.to_bits());
                prop_assert_eq!(s.timestamp_ms, Some(want_ts));
                prop_assert!((want_ts - ts).abs() <= 1);
            }
            other => prop_assert!(false, "{:?}", other),
        }
    }
}

/// Text-format details beyond the tables above: every value spelling Prometheus accepts,
/// escapes in label values, comment forms, and whole histogram and summary families.
#[test]
fn text_details() {
    let m = |v: f64| s(&[("__name__", "m")], v, None);
    let cases: &[(&str, Vec<Entry<'_>>)] = &[
        (
            "m -Inf\nm +inf\nm Infinity\nm -infinity\nm nan\nm NaN\nm 1e+06\nm -0\nm 0.000001\nm 1E-3\nm +5\nm 007\n",
            vec![
                m(f64::NEG_INFINITY),
                m(f64::INFINITY),
                m(f64::INFINITY),
                m(f64::NEG_INFINITY),
                m(f64::from_bits(GO_NAN)),
                m(f64::from_bits(GO_NAN)),
                m(1e6),
                m(-0.0),
                m(1e-6),
                m(1e-3),
                m(5.0),
                m(7.0),
            ],
        ),
        (
            "m{a=\"back\\\\slash\",b=\"quo\\\"te\",c=\"new\\nline\",d=\"keep\\q\",e=\"tab\there\",f=\"{},= #\"} 1\n",
            vec![s(
                &[
                    ("__name__", "m"),
                    ("a", "back\\slash"),
                    ("b", "quo\"te"),
                    ("c", "new\nline"),
                    ("d", "keep\\q"),
                    ("e", "tab\there"),
                    ("f", "{},= #"),
                ],
                1.0,
                None,
            )],
        ),
        (
            // '#' without a space still starts HELP/TYPE; a bare keyword is a comment.
            "#HELP m x \"y\"\n#\tTYPE m gauge\n# HELP\n# TYPE\n#comment\nm 1 -1\nm 1 9223372036854775807\n",
            vec![
                Entry::Help {
                    family: "m",
                    text: Cow::Borrowed("x \"y\""),
                },
                Entry::Type {
                    family: "m",
                    kind: MetricType::Gauge,
                },
                s(&[("__name__", "m")], 1.0, Some(-1)),
                s(&[("__name__", "m")], 1.0, Some(i64::MAX)),
            ],
        ),
        (
            "# TYPE h histogram\nh_bucket{le=\"0.5\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 0.75\nh_count 2\n# TYPE s summary\ns{quantile=\"0.99\"} NaN\ns_sum 0\ns_count 0\n",
            vec![
                Entry::Type {
                    family: "h",
                    kind: MetricType::Histogram,
                },
                s(&[("__name__", "h_bucket"), ("le", "0.5")], 1.0, None),
                s(&[("__name__", "h_bucket"), ("le", "+Inf")], 2.0, None),
                s(&[("__name__", "h_sum")], 0.75, None),
                s(&[("__name__", "h_count")], 2.0, None),
                Entry::Type {
                    family: "s",
                    kind: MetricType::Summary,
                },
                s(
                    &[("__name__", "s"), ("quantile", "0.99")],
                    f64::from_bits(GO_NAN),
                    None,
                ),
                s(&[("__name__", "s_sum")], 0.0, None),
                s(&[("__name__", "s_count")], 0.0, None),
            ],
        ),
    ];
    for (input, want) in cases {
        check(TEXT, input, want);
    }
}

/// OpenMetrics: `_created` on every type that has it, exemplars where allowed, units,
/// info and stateset families.
#[test]
fn openmetrics_details() {
    let cases: &[(&str, Vec<Entry<'_>>)] = &[
        (
            "# TYPE req_seconds counter\n# UNIT req_seconds seconds\n# HELP req_seconds Time \\\"spent\\\".\nreq_seconds_total{a=\"1\"} 2.5 1.5 # {trace_id=\"x\\\"y\"} 0.1 1.25\nreq_seconds_created{a=\"1\"} 1.7e9 1.5\n# EOF\n",
            vec![
                Entry::Type {
                    family: "req_seconds",
                    kind: MetricType::Counter,
                },
                Entry::Unit {
                    family: "req_seconds",
                    unit: "seconds",
                },
                Entry::Help {
                    family: "req_seconds",
                    text: Cow::Borrowed("Time \"spent\"."),
                },
                s(
                    &[("__name__", "req_seconds_total"), ("a", "1")],
                    2.5,
                    Some(1500),
                ),
                s(
                    &[("__name__", "req_seconds_created"), ("a", "1")],
                    1.7e9,
                    Some(1500),
                ),
                Entry::Eof,
            ],
        ),
        (
            "# TYPE h histogram\nh_bucket{le=\"1\"} 1 # {} 0.5\nh_bucket{le=\"+Inf\"} 1\nh_count 1\nh_sum 0.5\nh_created 100\n# TYPE g gaugehistogram\ng_bucket{le=\"+Inf\"} 3 # {id=\"a\"} 7 2\ng_gcount 3\ng_gsum 9\n# TYPE s summary\ns{quantile=\"0.5\"} 1\ns_count 1\ns_sum 1\ns_created 100\n# EOF",
            vec![
                Entry::Type {
                    family: "h",
                    kind: MetricType::Histogram,
                },
                s(&[("__name__", "h_bucket"), ("le", "1")], 1.0, None),
                s(&[("__name__", "h_bucket"), ("le", "+Inf")], 1.0, None),
                s(&[("__name__", "h_count")], 1.0, None),
                s(&[("__name__", "h_sum")], 0.5, None),
                s(&[("__name__", "h_created")], 100.0, None),
                Entry::Type {
                    family: "g",
                    kind: MetricType::GaugeHistogram,
                },
                s(&[("__name__", "g_bucket"), ("le", "+Inf")], 3.0, None),
                s(&[("__name__", "g_gcount")], 3.0, None),
                s(&[("__name__", "g_gsum")], 9.0, None),
                Entry::Type {
                    family: "s",
                    kind: MetricType::Summary,
                },
                s(&[("__name__", "s"), ("quantile", "0.5")], 1.0, None),
                s(&[("__name__", "s_count")], 1.0, None),
                s(&[("__name__", "s_sum")], 1.0, None),
                s(&[("__name__", "s_created")], 100.0, None),
                Entry::Eof,
            ],
        ),
        (
            "# TYPE build info\nbuild_info{version=\"1.2\"} 1\n# TYPE st stateset\nst{st=\"a\"} 1\nst{st=\"b\"} 0\n# EOF\n",
            vec![
                Entry::Type {
                    family: "build",
                    kind: MetricType::Info,
                },
                s(&[("__name__", "build_info"), ("version", "1.2")], 1.0, None),
                Entry::Type {
                    family: "st",
                    kind: MetricType::StateSet,
                },
                s(&[("__name__", "st"), ("st", "a")], 1.0, None),
                s(&[("__name__", "st"), ("st", "b")], 0.0, None),
                Entry::Eof,
            ],
        ),
    ];
    for (input, want) in cases {
        check(OM, input, want);
    }
}

#[test]
fn series_text_and_lazy_labels() {
    let cases: &[(Format, &str, &[&str])] = &[
        (
            TEXT,
            "gpu_util{gpu=\"0\", uuid=\"GPU-\\\"1\\\"\"}  87.5 1700\nup 1\nm {a=\"\"} 2\n",
            &[
                "gpu_util{gpu=\"0\", uuid=\"GPU-\\\"1\\\"\"}",
                "up",
                "m {a=\"\"}",
            ],
        ),
        (
            Format::OpenMetrics,
            "# TYPE c counter\nc_total{a=\"1\"} 5 # {trace=\"x\"} 1\nc_total 7\n# EOF\n",
            &["c_total{a=\"1\"}", "c_total"],
        ),
    ];
    for (format, doc, want_series) in cases {
        let full: Vec<SampleLine<'_>> = Parser::new(doc.as_bytes(), *format)
            .filter_map(|e| match e.expect("parses") {
                Entry::Sample(s) => Some(s),
                _ => None,
            })
            .collect();
        let lazy_opts = ParserOptions {
            skip_labels: true,
            ..ParserOptions::default()
        };
        let lazy: Vec<SampleLine<'_>> = Parser::with_options(doc.as_bytes(), *format, lazy_opts)
            .filter_map(|e| match e.expect("parses") {
                Entry::Sample(s) => Some(s),
                _ => None,
            })
            .collect();
        let series: Vec<&str> = full.iter().map(|s| s.series).collect();
        assert_eq!(&series, want_series);
        for (f, l) in full.iter().zip(&lazy) {
            assert_eq!(f.series, l.series);
            assert!(l.labels.is_empty());
            assert_eq!(f.value.to_bits(), l.value.to_bits());
            assert_eq!(f.timestamp_ms, l.timestamp_ms);
            let (labels, empty) =
                kiln_exposition::series_labels(l.series, *format).expect("labels");
            assert_eq!(labels, f.labels, "{}", l.series);
            assert_eq!(empty, f.empty_label_names);
        }
    }
    // Skipping labels only finds where the label set ends (a `}` in a quoted value does
    // not end it); bad syntax and duplicates are found when the labels are built.
    let opts = ParserOptions {
        skip_labels: true,
        ..ParserOptions::default()
    };
    let bad = "m{a=\"1\" b=\"}\\\"\"} 1\n";
    let series = match Parser::with_options(bad.as_bytes(), TEXT, opts).next() {
        Some(Ok(Entry::Sample(s))) => s.series,
        other => panic!("{other:?}"),
    };
    assert_eq!(series, "m{a=\"1\" b=\"}\\\"\"}");
    assert!(kiln_exposition::series_labels(series, TEXT).is_err());
    let unclosed = "m{a=\"1\"\n";
    assert!(Parser::with_options(unclosed.as_bytes(), TEXT, opts).any(|e| e.is_err()));
    let dup = "m{a=\"1\",a=\"2\"} 1\n";
    let series = match Parser::with_options(dup.as_bytes(), TEXT, opts).next() {
        Some(Ok(Entry::Sample(s))) => s.series,
        other => panic!("{other:?}"),
    };
    let err = kiln_exposition::series_labels(series, TEXT).expect_err("duplicate");
    assert!(matches!(err.reason, R::DuplicateLabel { .. }), "{err}");
    // Invalid UTF-8 is still reported at its line and column.
    let doc = b"ok 1\nm{a=\"\xff\"} 1\n";
    let err = Parser::new(doc, TEXT).find_map(Result::err).expect("error");
    assert_eq!((err.line, err.column, err.reason), (2, 6, R::InvalidUtf8));
}
