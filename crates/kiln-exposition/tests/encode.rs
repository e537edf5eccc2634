//! Encoder tables (exact output), content negotiation tables, and round trips: random
//! families encoded, parsed back with `Parser`, compared bit for bit.

#![allow(clippy::unwrap_used)]

use std::borrow::Cow;

use kiln_exposition::{
    Entry, Format, MetricFamily, MetricType, Parser, encode_openmetrics_eof,
    encode_openmetrics_family_header, encode_openmetrics_sample, encode_text_family_header,
    encode_text_sample, negotiate, openmetrics_family_name,
};
use kiln_model::Labels;
use proptest::prelude::*;

const GO_NAN: u64 = 0x7ff8_0000_0000_0001;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_pairs(pairs)
}

fn text_of(f: impl Fn(&mut Vec<u8>)) -> String {
    // Twice into the same buffer, to catch state kept between calls.
    let mut out = Vec::new();
    f(&mut out);
    let first = String::from_utf8(out.clone()).unwrap();
    out.clear();
    f(&mut out);
    assert_eq!(String::from_utf8(out).unwrap(), first);
    first
}

#[test]
fn text_output() {
    let fam = MetricFamily {
        name: "http_requests_total",
        help: Some("The total \\ number\nof \"requests\""),
        kind: MetricType::Counter,
        unit: Some("requests"),
    };
    let got = text_of(|out| {
        encode_text_family_header(out, &fam);
        let l = labels(&[
            ("__name__", "http_requests_total"),
            ("method", "post"),
            ("code", "200"),
            ("path", "C:\\x\n\"y\""),
        ]);
        encode_text_sample(out, &l, 1027.0, Some(1_395_066_363_000));
        encode_text_sample(out, &l, -3.0, Some(-5));
        encode_text_sample(out, &labels(&[("__name__", "up")]), 1.0, None);
    });
    assert_eq!(
        got,
        "# HELP http_requests_total The total \\\\ number\\nof \"requests\"\n\
         # TYPE http_requests_total counter\n\
         http_requests_total{code=\"200\",method=\"post\",path=\"C:\\\\x\\n\\\"y\\\"\"} 1027 1395066363000\n\
         http_requests_total{code=\"200\",method=\"post\",path=\"C:\\\\x\\n\\\"y\\\"\"} -3 -5\n\
         up 1\n"
    );

    let kinds = [
        (MetricType::Gauge, "gauge"),
        (MetricType::Histogram, "histogram"),
        (MetricType::Summary, "summary"),
        (MetricType::Unknown, "untyped"),
        (MetricType::GaugeHistogram, "untyped"),
        (MetricType::Info, "untyped"),
        (MetricType::StateSet, "untyped"),
    ];
    for (kind, word) in kinds {
        let got = text_of(|out| {
            encode_text_family_header(
                out,
                &MetricFamily {
                    name: "m",
                    help: None,
                    kind,
                    unit: None,
                },
            )
        });
        assert_eq!(got, format!("# TYPE m {word}\n"));
    }
    let got = text_of(|out| {
        encode_text_family_header(
            out,
            &MetricFamily {
                name: "m",
                help: Some(""),
                kind: MetricType::Gauge,
                unit: None,
            },
        )
    });
    assert_eq!(got, "# HELP m \n# TYPE m gauge\n");
}

/// Values as client_golang's text and OpenMetrics encoders write them.
#[test]
fn float_formatting() {
    let cases: &[(f64, &str, &str)] = &[
        (0.0, "0", "0.0"),
        (-0.0, "0", "0.0"),
        (1.0, "1", "1.0"),
        (-1.0, "-1", "-1.0"),
        (2.0, "2", "2.0"),
        (1.5, "1.5", "1.5"),
        (123456.0, "123456", "123456.0"),
        (1e6, "1e+06", "1e+06"),
        (1234567.0, "1.234567e+06", "1.234567e+06"),
        (1.7e9, "1.7e+09", "1.7e+09"),
        (0.0001, "0.0001", "0.0001"),
        (0.00001, "1e-05", "1e-05"),
        (-2.5e-7, "-2.5e-07", "-2.5e-07"),
        (1e100, "1e+100", "1e+100"),
        (5e-324, "5e-324", "5e-324"),
        (
            1.7976931348623157e308,
            "1.7976931348623157e+308",
            "1.7976931348623157e+308",
        ),
        (0.1, "0.1", "0.1"),
        (100.0, "100", "100.0"),
        (f64::INFINITY, "+Inf", "+Inf"),
        (f64::NEG_INFINITY, "-Inf", "-Inf"),
        (f64::NAN, "NaN", "NaN"),
        (f64::from_bits(kiln_model::STALE_NAN_BITS), "NaN", "NaN"),
    ];
    for &(v, text, om) in cases {
        let l = labels(&[("__name__", "m")]);
        let got = text_of(|out| encode_text_sample(out, &l, v, None));
        assert_eq!(got, format!("m {text}\n"), "{v:e}");
        let got = text_of(|out| encode_openmetrics_sample(out, MetricType::Gauge, &l, v, None));
        assert_eq!(got, format!("m {om}\n"), "{v:e}");
    }
}

#[test]
fn openmetrics_output() {
    let fam = MetricFamily {
        name: "http_requests_total",
        help: Some("The total \\ number\nof \"requests\""),
        kind: MetricType::Counter,
        unit: None,
    };
    assert_eq!(openmetrics_family_name(&fam), "http_requests");
    let got = text_of(|out| {
        encode_openmetrics_family_header(out, &fam);
        let l = labels(&[("__name__", "http_requests_total"), ("code", "200")]);
        encode_openmetrics_sample(out, fam.kind, &l, 1027.0, Some(1_395_066_363_000));
        encode_openmetrics_sample(out, fam.kind, &l, 3.0, Some(1_700_000_000_123));
        // A counter sample without `_total` gets it; `_created` is left alone.
        let bare = labels(&[("__name__", "http_requests")]);
        encode_openmetrics_sample(out, fam.kind, &bare, 1.0, Some(-1500));
        let created = labels(&[("__name__", "http_requests_created")]);
        encode_openmetrics_sample(out, fam.kind, &created, 1.6e9, None);
        encode_openmetrics_family_header(
            out,
            &MetricFamily {
                name: "gpu_temp_celsius",
                help: None,
                kind: MetricType::Gauge,
                unit: Some("celsius"),
            },
        );
        // Not a suffix: no UNIT line (the parser would refuse it).
        encode_openmetrics_family_header(
            out,
            &MetricFamily {
                name: "gpu_temp",
                help: None,
                kind: MetricType::Unknown,
                unit: Some("celsius"),
            },
        );
        for kind in [
            MetricType::Histogram,
            MetricType::GaugeHistogram,
            MetricType::Summary,
            MetricType::Info,
            MetricType::StateSet,
        ] {
            encode_openmetrics_family_header(
                out,
                &MetricFamily {
                    name: "x",
                    help: None,
                    kind,
                    unit: None,
                },
            );
        }
        encode_openmetrics_eof(out);
    });
    assert_eq!(
        got,
        "# HELP http_requests The total \\\\ number\\nof \\\"requests\\\"\n\
         # TYPE http_requests counter\n\
         http_requests_total{code=\"200\"} 1027.0 1395066363\n\
         http_requests_total{code=\"200\"} 3.0 1700000000.123\n\
         http_requests_total 1.0 -1.5\n\
         http_requests_created 1.6e+09\n\
         # TYPE gpu_temp_celsius gauge\n\
         # UNIT gpu_temp_celsius celsius\n\
         # TYPE gpu_temp unknown\n\
         # TYPE x histogram\n\
         # TYPE x gaugehistogram\n\
         # TYPE x summary\n\
         # TYPE x info\n\
         # TYPE x stateset\n\
         # EOF\n"
    );
    // The whole document parses.
    assert!(Parser::new(got.as_bytes(), Format::OpenMetrics).all(|e| e.is_ok()));
}

/// Timestamps whose nearest decimal-seconds float would truncate to the wrong
/// millisecond are written as the next float up, and read back exactly.
#[test]
fn openmetrics_timestamps_read_back() {
    let l = labels(&[("__name__", "m")]);
    let mut out = Vec::new();
    let mut tss: Vec<i64> = (-3000..3000).collect();
    tss.extend((0..5000).map(|i| 1_700_000_000_000 + i * 7));
    tss.extend([i64::from(i32::MAX), (1 << 43) - 1, -(1 << 43) + 1]);
    // Exact for any |ts| below 2^43 ms (about the year 280,000): beyond, float64
    // seconds are more than 1 ms apart and some milliseconds have no float at all.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..200_000 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        tss.push((state % (1 << 44)) as i64 - (1 << 43));
    }
    for &ts in &tss {
        out.clear();
        encode_openmetrics_sample(&mut out, MetricType::Gauge, &l, 1.0, Some(ts));
        encode_openmetrics_eof(&mut out);
        let got: Vec<_> = Parser::new(&out, Format::OpenMetrics)
            .collect::<Result<_, _>>()
            .unwrap();
        match &got[..] {
            [Entry::Sample(s), Entry::Eof] => assert_eq!(
                s.timestamp_ms,
                Some(ts),
                "{}",
                String::from_utf8_lossy(&out)
            ),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn content_types() {
    assert_eq!(
        Format::Text004.content_type(),
        "text/plain; version=0.0.4; charset=utf-8"
    );
    assert_eq!(
        Format::OpenMetrics.content_type(),
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let om = Format::OpenMetrics;
    let text = Format::Text004;
    let cases: &[(&str, Format)] = &[
        (
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            om,
        ),
        ("application/openmetrics-text", om),
        ("Application/OpenMetrics-Text;version=0.0.1", om),
        ("  application/openmetrics-text ; version=\"1.0.0\" ;", om),
        ("text/plain; version=0.0.4; charset=utf-8", text),
        ("text/plain", text),
        ("", text),
        ("application/json", text),
        ("application/openmetrics-text; version", text),
        ("application/openmetrics-text; a=b;; c=d", text),
        ("application/openmetrics-textx", text),
    ];
    for (ct, want) in cases {
        assert_eq!(Format::from_content_type(ct), *want, "{ct:?}");
    }
}

#[test]
fn accept_negotiation() {
    let om = Format::OpenMetrics;
    let text = Format::Text004;
    let cases: &[(&str, Format)] = &[
        ("", text),
        ("*/*", text),
        ("text/plain", text),
        ("application/openmetrics-text", om),
        ("application/openmetrics-text; version=1.0.0", om),
        ("application/openmetrics-text;version=0.0.1", om),
        ("application/openmetrics-text;version=2.0.0", text),
        (
            "application/openmetrics-text;version=2.0.0,text/plain;version=0.0.4",
            text,
        ),
        // What Prometheus 2.42 sends when scraping.
        (
            "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
            om,
        ),
        // Weights order the entries; equal weights keep header order.
        (
            "text/plain;version=0.0.4;q=0.9,application/openmetrics-text;q=0.5",
            text,
        ),
        ("text/plain;q=0.5, application/openmetrics-text;q=0.6", om),
        ("text/plain, application/openmetrics-text", text),
        ("application/json, application/openmetrics-text", om),
        (
            "text/plain;version=0.0.3, application/openmetrics-text;q=0.1",
            om,
        ),
        // q=0 is "not acceptable".
        ("application/openmetrics-text;q=0", text),
        ("application/openmetrics-text;q=0, text/plain;q=0.1", text),
        ("garbage, ,;;", text),
    ];
    for (accept, want) in cases {
        assert_eq!(negotiate(accept), *want, "{accept:?}");
    }
}

// ---- Round trips ----

/// Label pairs (without `__name__`), value, timestamp.
type TestSample = (Vec<(String, String)>, f64, Option<i64>);

#[derive(Debug, Clone)]
struct Fam {
    base: String,
    help: Option<String>,
    kind: MetricType,
    unit: Option<String>,
    samples: Vec<TestSample>,
}

fn kind_strategy(om: bool) -> BoxedStrategy<MetricType> {
    let mut kinds = vec![
        MetricType::Counter,
        MetricType::Gauge,
        MetricType::Histogram,
        MetricType::Summary,
        MetricType::Unknown,
    ];
    if om {
        kinds.extend([
            MetricType::GaugeHistogram,
            MetricType::Info,
            MetricType::StateSet,
        ]);
    }
    prop::sample::select(kinds).boxed()
}

fn value_strategy() -> BoxedStrategy<f64> {
    prop_oneof![
        any::<f64>(),
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(-0.0),
        (-1_000_000i64..1_000_000).prop_map(|i| i as f64 / 100.0),
    ]
    .boxed()
}

fn fam_strategy(om: bool) -> impl Strategy<Value = Fam> {
    let help = if om {
        // OpenMetrics keeps every character of the help text.
        prop::option::of("[ -~\\n\u{e9}\u{1F600}]{0,20}").boxed()
    } else {
        // The text format drops leading blanks of the help text.
        prop::option::of("([!-~\\n\u{e9}][ -~\\n\u{e9}]{0,19})?").boxed()
    };
    let sample = (
        prop::collection::btree_map(
            "[a-zA-Z_][a-zA-Z0-9_]{0,8}",
            "[ -~\\n\u{e9}\u{1F600}]{1,12}",
            0..4,
        ),
        value_strategy(),
        prop::option::of(-(1i64 << 43)..(1i64 << 43)),
    )
        .prop_map(|(l, v, ts)| {
            let l: Vec<_> = l.into_iter().filter(|(n, _)| n != "__name__").collect();
            (l, v, ts)
        });
    (
        "[a-zA-Z_:][a-zA-Z0-9_:]{0,15}",
        help,
        kind_strategy(om),
        prop::option::of("[a-z]{1,8}"),
        prop::collection::vec(sample, 0..5),
    )
        .prop_map(|(base, help, kind, unit, samples)| Fam {
            base,
            help,
            kind,
            unit,
            samples,
        })
}

impl Fam {
    /// The family name given to the encoder, and the samples' metric name.
    fn names(&self, om: bool) -> (String, String) {
        let base = match &self.unit {
            Some(u) if om => format!("{}_{u}", self.base),
            _ => self.base.clone(),
        };
        if self.kind == MetricType::Counter {
            let n = format!("{base}_total");
            (n.clone(), n)
        } else {
            (base.clone(), base)
        }
    }
}

/// What a parsed value must be: Go's NaN for any NaN, +0 for -0, else the same bits.
fn want_bits(v: f64) -> u64 {
    if v.is_nan() {
        GO_NAN
    } else if v == 0.0 {
        0
    } else {
        v.to_bits()
    }
}

fn round_trip(fams: &[Fam], format: Format) -> Result<(), TestCaseError> {
    let om = format == Format::OpenMetrics;
    let mut out = Vec::new();
    let mut want: Vec<Entry<'static>> = Vec::new();
    for f in fams {
        let (fam_name, sample_name) = f.names(om);
        let family = MetricFamily {
            name: &fam_name,
            help: f.help.as_deref(),
            kind: f.kind,
            unit: if om { f.unit.as_deref() } else { None },
        };
        let header_name = if om {
            openmetrics_family_name(&family).to_owned()
        } else {
            fam_name.clone()
        };
        let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
        if om {
            encode_openmetrics_family_header(&mut out, &family);
        } else {
            encode_text_family_header(&mut out, &family);
        }
        if let Some(h) = &f.help {
            want.push(Entry::Help {
                family: leak(header_name.clone()),
                text: Cow::Owned(h.clone()),
            });
        }
        let parsed_kind = match (om, f.kind) {
            (false, MetricType::GaugeHistogram | MetricType::Info | MetricType::StateSet) => {
                MetricType::Unknown
            }
            (_, k) => k,
        };
        want.push(Entry::Type {
            family: leak(header_name.clone()),
            kind: parsed_kind,
        });
        if let (true, Some(u)) = (om, &f.unit) {
            want.push(Entry::Unit {
                family: leak(header_name.clone()),
                unit: leak(u.clone()),
            });
        }
        for (pairs, v, ts) in &f.samples {
            let mut all = pairs.clone();
            all.push(("__name__".into(), sample_name.clone()));
            let l = Labels::from_pairs(&all);
            if om {
                encode_openmetrics_sample(&mut out, f.kind, &l, *v, *ts);
            } else {
                encode_text_sample(&mut out, &l, *v, *ts);
            }
            want.push(Entry::Sample(kiln_exposition::SampleLine {
                series: "",
                labels: l,
                value: f64::from_bits(want_bits(*v)),
                timestamp_ms: *ts,
                empty_label_names: Vec::new(),
            }));
        }
    }
    if om {
        encode_openmetrics_eof(&mut out);
        want.push(Entry::Eof);
    }
    let doc = String::from_utf8(out).unwrap();
    let got: Vec<Entry<'_>> = Parser::new(doc.as_bytes(), format)
        .collect::<Result<_, _>>()
        .map_err(|e| TestCaseError::fail(format!("{e}\n{doc}")))?;
    prop_assert_eq!(got.len(), want.len(), "{}", doc);
    for (g, w) in got.iter().zip(&want) {
        match (g, w) {
            (Entry::Sample(g), Entry::Sample(w)) => {
                prop_assert_eq!(&g.labels, &w.labels, "{}", doc);
                prop_assert_eq!(g.value.to_bits(), w.value.to_bits(), "{}", doc);
                prop_assert_eq!(g.timestamp_ms, w.timestamp_ms, "{}", doc);
            }
            _ => prop_assert_eq!(g, w, "{}", doc),
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn text_round_trip(fams in prop::collection::vec(fam_strategy(false), 0..6)) {
        round_trip(&fams, Format::Text004)?;
    }

    #[test]
    fn openmetrics_round_trip(fams in prop::collection::vec(fam_strategy(true), 0..6)) {
        round_trip(&fams, Format::OpenMetrics)?;
    }
}
