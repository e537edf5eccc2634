//! `kiln tsdb` against itself and (interop tests, built with `KILN_INTEROP=1`) against
//! the real promtool.

mod common;

use std::path::Path;

use common::*;

const START_S: i64 = 1_700_000_000;

#[test]
fn backfill_then_dump_round_trips() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let om = tmp.path().join("in.om");
    write_openmetrics(&om, START_S, 5, 60);
    let data = tmp.path().join("data");
    let listed = ok_stdout(
        "kiln create-blocks-from",
        kiln(&[
            "tsdb",
            "create-blocks-from",
            "openmetrics",
            s(&om),
            s(&data),
        ]),
    );
    assert!(listed.starts_with("BLOCK ULID"), "{listed}");
    // 5 hours from an unaligned start cover 3 or 4 two-hour windows.
    let blocks = listed.lines().count() - 1;
    assert!((3..=4).contains(&blocks), "{listed}");

    let dump = ok_stdout("kiln dump", kiln(&["tsdb", "dump", s(&data)]));
    let line = dump
        .lines()
        .find(|l| l.starts_with("{__name__=\"gpu_power_watts\""))
        .expect("gpu_power_watts dumped");
    assert_eq!(
        line,
        r#"{__name__="gpu_power_watts", gpu="0", path="C:\\data\nline"} 299.999 1700000000000"#
    );
    assert!(dump.contains(
        r#"{__name__="gpu_temperature_celsius", gpu="0", host="nœud-α", model="H100 \"SXM\""}"#
    ));
    assert!(dump.contains(" NaN 1700000420000\n"), "NaN values survive");
    assert!(dump.contains(" +Inf 1700000780000\n") && dump.contains(" -Inf 1700001740000\n"));

    let filtered = ok_stdout(
        "kiln dump --match",
        kiln(&[
            "tsdb",
            "dump",
            "--match",
            r#"training_steps_total{rank="1"}"#,
            "--min-time",
            "1700000000000",
            "--max-time",
            "1700000120000",
            s(&data),
        ]),
    );
    assert_eq!(
        filtered,
        "{__name__=\"training_steps_total\", job=\"trainer\", rank=\"1\"} 4 1700000000000\n\
         {__name__=\"training_steps_total\", job=\"trainer\", rank=\"1\"} 8 1700000060000\n\
         {__name__=\"training_steps_total\", job=\"trainer\", rank=\"1\"} 12 1700000120000\n"
    );

    let analyze = ok_stdout("kiln analyze", kiln(&["tsdb", "analyze", s(&data)]));
    assert!(
        analyze.contains("Highest cardinality metric names:\n7 inference_latency_seconds_bucket\n"),
        "{analyze}"
    );
    assert!(
        analyze.contains("Highest cardinality labels:\n"),
        "{analyze}"
    );
}

#[test]
fn bad_backfill_input_names_the_line() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cases: &[(&str, &str)] = &[
        ("# TYPE a gauge\na 1 100\na{b=\"x} 2 200\n# EOF\n", "line 3"),
        ("# TYPE a gauge\na 1\n# EOF\n", "expected timestamp"),
        ("# TYPE a gauge\na 1 100\n", "EOF"),
        ("# TYPE a gauge\na 1 200\na 2 100\n# EOF\n", "out of order"),
    ];
    for (i, (input, want)) in cases.iter().enumerate() {
        let om = tmp.path().join(format!("bad{i}.om"));
        std::fs::write(&om, input).expect("write");
        let out = kiln(&[
            "tsdb",
            "create-blocks-from",
            "openmetrics",
            s(&om),
            s(&tmp.path().join(format!("d{i}"))),
        ]);
        assert_eq!(
            out.status.code(),
            Some(1),
            "case {i} must fail with exit code 1"
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(want),
            "case {i}: error {err:?} should mention {want:?}"
        );
    }
}

#[test]
#[cfg_attr(
    not(kiln_interop),
    ignore = "interop: needs KILN_INTEROP=1 and promtool from Debian's prometheus (scripts/test installs it)"
)]
fn kiln_dump_matches_promtool_on_promtool_blocks() {
    require_peer("promtool", "prometheus");
    let tmp = tempfile::tempdir().expect("tempdir");
    let om = tmp.path().join("in.om");
    write_openmetrics(&om, START_S, 7, 30);
    let pdata = tmp.path().join("promtool-data");
    ok_stdout(
        "promtool create-blocks-from",
        promtool(&[
            "tsdb",
            "create-blocks-from",
            "openmetrics",
            s(&om),
            s(&pdata),
        ]),
    );
    let want = promtool_dump(&pdata, &[]);
    assert!(want.lines().count() > 10_000, "promtool dumped the data");
    let got = ok_stdout("kiln dump", kiln(&["tsdb", "dump", s(&pdata)]));
    assert_same_dump("kiln dump of promtool blocks", &want, &got);

    // promtool 2.42 has no --match; compare a time window instead.
    let window = ["--min-time", "1700003600000", "--max-time", "1700007200000"];
    let got = ok_stdout(
        "kiln",
        kiln(&[&["tsdb", "dump"][..], &window, &[s(&pdata)]].concat()),
    );
    assert_same_dump("time window", &promtool_dump(&pdata, &window), &got);
}

#[test]
#[cfg_attr(
    not(kiln_interop),
    ignore = "interop: needs KILN_INTEROP=1 and promtool from Debian's prometheus (scripts/test installs it)"
)]
fn promtool_reads_kiln_blocks() {
    require_peer("promtool", "prometheus");
    let tmp = tempfile::tempdir().expect("tempdir");
    let om = tmp.path().join("in.om");
    write_openmetrics(&om, START_S, 7, 30);
    let pdata = tmp.path().join("promtool-data");
    let kdata = tmp.path().join("kiln-data");
    ok_stdout(
        "promtool create-blocks-from",
        promtool(&[
            "tsdb",
            "create-blocks-from",
            "openmetrics",
            s(&om),
            s(&pdata),
        ]),
    );
    ok_stdout(
        "kiln create-blocks-from",
        kiln(&[
            "tsdb",
            "create-blocks-from",
            "openmetrics",
            s(&om),
            s(&kdata),
        ]),
    );

    let want = promtool_dump(&pdata, &[]);
    let got = promtool_dump(&kdata, &[]);
    assert_same_dump("promtool dump of kiln blocks", &want, &got);

    let plist = ok_stdout(
        "promtool list of its blocks",
        promtool(&["tsdb", "list", s(&pdata)]),
    );
    let klist = ok_stdout(
        "promtool list of kiln blocks",
        promtool(&["tsdb", "list", s(&kdata)]),
    );
    assert_eq!(
        plist.lines().count(),
        klist.lines().count(),
        "same number of blocks:\n{plist}\n{klist}"
    );
    // Same time ranges, sample, chunk and series counts per block; only ULIDs and sizes differ.
    let cols = |l: &str| {
        l.split_whitespace()
            .skip(1)
            .take(6)
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let mut p: Vec<_> = plist.lines().skip(1).map(cols).collect();
    let mut k: Vec<_> = klist.lines().skip(1).map(cols).collect();
    p.sort();
    k.sort();
    for (pb, kb) in p.iter().zip(&k) {
        assert_eq!(pb[..4], kb[..4], "block time range and sample count");
        assert_eq!(pb[5], kb[5], "series count");
    }
    // And kiln's own listing prints the same layout promtool does.
    let kiln_list = ok_stdout("kiln list", kiln(&["tsdb", "list", s(&kdata)]));
    assert_eq!(
        kiln_list.lines().next(),
        klist.lines().next(),
        "same header layout"
    );
    for line in klist.lines().skip(1) {
        assert!(
            kiln_list.contains(line),
            "kiln list shows {line:?} as promtool does:\n{kiln_list}"
        );
    }
    // analyze: the same summary for the same block (the ranked lists break ties in Go's
    // random map order, so only their headers are compared).
    let newest = |list: &str| {
        list.lines()
            .skip(1)
            .map(|l| l.split_whitespace().next().unwrap_or("").to_owned())
            .max()
    };
    let block = newest(&plist).expect("a promtool block");
    let want = ok_stdout(
        "promtool analyze",
        promtool(&["tsdb", "analyze", s(&pdata), &block]),
    );
    let got = ok_stdout(
        "kiln analyze",
        kiln(&["tsdb", "analyze", s(&pdata), &block]),
    );
    let summary = |out: &str| out.lines().take(6).map(str::to_owned).collect::<Vec<_>>();
    assert_eq!(summary(&got), summary(&want), "analyze summary");
    let headers = |out: &str| {
        out.lines()
            .filter(|l| l.ends_with(':'))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(headers(&got), headers(&want), "analyze sections");
    ok_stdout(
        "promtool analyze of kiln blocks",
        promtool(&["tsdb", "analyze", s(&kdata)]),
    );
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}
