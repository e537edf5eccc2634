//! Table tests for relabeling, checked against Prometheus 3's documented behaviour.

use super::*;
use Action::*;

type Pairs<'a> = &'a [(&'a str, &'a str)];

fn re(p: &str) -> RelabelRegex {
    RelabelRegex::new(p).expect("valid test regex")
}

/// A config for `action` with the given source labels, regex, target and replacement;
/// `None` keeps the default.
fn rc(
    action: Action,
    src: &[&str],
    regex: Option<&str>,
    target: &str,
    repl: Option<&str>,
) -> RelabelConfig {
    RelabelConfig {
        source_labels: src.iter().map(|s| s.to_string()).collect(),
        target_label: target.to_owned(),
        regex: regex.map(re).unwrap_or_default(),
        replacement: repl.unwrap_or(DEFAULT_REPLACEMENT).to_owned(),
        action,
        ..RelabelConfig::default()
    }
}

fn hashmod(src: &[&str], target: &str, modulus: u64) -> RelabelConfig {
    RelabelConfig {
        modulus,
        ..rc(HashMod, src, None, target, None)
    }
}

/// Runs `configs` over `input` through both entry points, twice each with reused
/// inputs and builder, and compares with `want`.
fn check(input: Pairs<'_>, configs: &[RelabelConfig], want: Option<Pairs<'_>>) {
    let labels = Labels::from_pairs(input);
    let want = want.map(Labels::from_pairs);
    let mut builder = LabelsBuilder::new();
    for round in 0..2 {
        let got = relabel(&labels, configs);
        assert_eq!(
            got, want,
            "relabel round {round}: {labels} with {configs:#?}"
        );
        builder.reset();
        for (n, v) in input {
            builder.set(n, v);
        }
        let kept = relabel_into(&mut builder, configs);
        let got_into = kept.then(|| builder.build());
        assert_eq!(got_into, want, "relabel_into round {round}: {labels}");
        if !kept {
            assert_eq!(builder.build(), labels, "dropped builder left as it was");
        }
    }
}

#[test]
fn replace() {
    let ab: Pairs<'_> = &[("a", "foo"), ("b", "bar")];
    check(
        ab,
        &[rc(
            Replace,
            &["a"],
            Some("f(.*)"),
            "d",
            Some("ch${1}-ch${1}"),
        )],
        Some(&[("a", "foo"), ("b", "bar"), ("d", "choo-choo")]),
    );
    // Several sources joined by the separator; the target may be a source.
    check(
        ab,
        &[rc(
            Replace,
            &["a", "b"],
            Some("f(.*);(.*)r"),
            "a",
            Some("b${1}${2}m"),
        )],
        Some(&[("a", "boobam"), ("b", "bar")]),
    );
    // No match: nothing changes.
    check(
        ab,
        &[rc(Replace, &["a"], Some("x(.*)"), "d", None)],
        Some(ab),
    );
    // Anchored at both ends: `o` matches neither `foo` nor a part of it.
    check(
        ab,
        &[rc(Replace, &["a"], Some("o"), "d", Some("x"))],
        Some(ab),
    );
    check(
        ab,
        &[rc(Replace, &["a"], Some("fo"), "d", Some("x"))],
        Some(ab),
    );
    check(
        ab,
        &[rc(Replace, &["a"], Some("foo|fo"), "d", Some("x"))],
        Some(&[("a", "foo"), ("b", "bar"), ("d", "x")]),
    );
    // Default regex and replacement copy the joined value.
    check(
        &[("__address__", "h:80")],
        &[rc(Replace, &["__address__"], None, "instance", None)],
        Some(&[("__address__", "h:80"), ("instance", "h:80")]),
    );
    // Missing source labels join as "".
    check(
        ab,
        &[rc(Replace, &["a", "zz", "b"], None, "d", None)],
        Some(&[("a", "foo"), ("b", "bar"), ("d", "foo;;bar")]),
    );
    check(
        ab,
        &[rc(Replace, &["zz"], None, "d", Some("v$1"))],
        Some(&[("a", "foo"), ("b", "bar"), ("d", "v")]),
    );
    check(
        ab,
        &[rc(Replace, &["zz"], Some(".+"), "d", Some("v"))],
        Some(ab),
    );
    // No source labels: a static value.
    check(
        ab,
        &[rc(Replace, &[], None, "env", Some("prod"))],
        Some(&[("a", "foo"), ("b", "bar"), ("env", "prod")]),
    );
    // An empty result deletes the target.
    check(
        ab,
        &[rc(Replace, &["a"], Some("foo"), "b", Some(""))],
        Some(&[("a", "foo")]),
    );
    check(
        ab,
        &[rc(Replace, &["zz"], None, "a", None)],
        Some(&[("b", "bar")]),
    );
    check(
        ab,
        &[rc(Replace, &["a"], Some("(f)oo"), "b", Some("$2"))],
        Some(&[("a", "foo")]),
    );
    // Templates in the target label.
    check(
        ab,
        &[rc(Replace, &["a"], Some("(f)(o)o"), "${1}_${2}", Some("x"))],
        Some(&[("a", "foo"), ("b", "bar"), ("f_o", "x")]),
    );
    check(
        ab,
        &[rc(Replace, &["a"], Some("(f)oo"), "$1", Some("$0"))],
        Some(&[("a", "foo"), ("b", "bar"), ("f", "foo")]),
    );
    // ...that expand to an invalid or empty name change nothing.
    check(
        &[("a", "1x")],
        &[rc(Replace, &["a"], Some("(.*)"), "$1", Some("v"))],
        Some(&[("a", "1x")]),
    );
    check(
        &[("a", "x")],
        &[rc(Replace, &["a"], Some("x(.*)"), "$1", Some("v"))],
        Some(&[("a", "x")]),
    );
    check(
        &[("a", "a-b")],
        &[rc(Replace, &["a"], None, "${1}", Some("v"))],
        Some(&[("a", "a-b")]),
    );
    // Separators.
    let sep = |s: &str| RelabelConfig {
        separator: s.to_owned(),
        ..rc(Replace, &["a", "b"], None, "d", None)
    };
    check(
        ab,
        &[sep("")],
        Some(&[("a", "foo"), ("b", "bar"), ("d", "foobar")]),
    );
    check(
        ab,
        &[sep("|-|")],
        Some(&[("a", "foo"), ("b", "bar"), ("d", "foo|-|bar")]),
    );
    // `.` matches newline.
    check(
        &[("a", "foo\nbar")],
        &[rc(Replace, &["a"], Some("foo.(.*)"), "b", None)],
        Some(&[("a", "foo\nbar"), ("b", "bar")]),
    );
    // Named groups.
    check(
        &[("__address__", "h:9100")],
        &[
            rc(
                Replace,
                &["__address__"],
                Some("(?P<host>[^:]+):(?P<port>\\d+)"),
                "host",
                Some("$host"),
            ),
            rc(
                Replace,
                &["__address__"],
                Some("(?P<host>[^:]+):(?<port>\\d+)"),
                "port",
                Some("p${port}"),
            ),
        ],
        Some(&[("__address__", "h:9100"), ("host", "h"), ("port", "p9100")]),
    );
    // RE2's ASCII `\d`: Arabic-Indic digits are not digits.
    check(
        &[("a", "١٢")],
        &[rc(Replace, &["a"], Some("\\d+"), "b", Some("x"))],
        Some(&[("a", "١٢")]),
    );
}

#[test]
fn replacement_templates_expand_like_go() {
    let cases: &[(&str, &str)] = &[
        ("$1", "ab"),
        ("${1}x", "abx"),
        ("$1x", ""), // the group named `1x`
        ("$2$1", "bab"),
        ("$$1", "$1"),
        ("a$", "a$"),
        ("$-", "$-"),
        ("${1", "${1"),
        ("${}", "${}"),
        ("$01", ""), // a leading zero makes it a name
        ("$9", ""),  // no such group
        ("$999999999999", ""),
        ("$n", "b"),
        ("${n}$n", "bb"),
        ("$nope", ""),
        ("x$0y", "x"), // the group named `0y`
        ("x${0}y", "xaby"),
        ("é$1é", "é"), // `é` is a letter: the group named `1é`
        ("é${1}é", "éabé"),
    ];
    for &(repl, want) in cases {
        let want_labels: Vec<(&str, &str)> = if want.is_empty() {
            vec![("a", "ab")]
        } else {
            vec![("a", "ab"), ("t", want)]
        };
        check(
            &[("a", "ab")],
            &[rc(Replace, &["a"], Some("(a(?P<n>b))"), "t", Some(repl))],
            Some(&want_labels),
        );
    }
}

#[test]
fn keep_and_drop() {
    let l: Pairs<'_> = &[("a", "foo"), ("b", "bar")];
    check(l, &[rc(Keep, &["a"], Some("f.*"), "", None)], Some(l));
    check(l, &[rc(Keep, &["a"], Some("f"), "", None)], None);
    check(
        l,
        &[rc(Keep, &["a", "b"], Some("foo;bar"), "", None)],
        Some(l),
    );
    check(l, &[rc(Drop, &["a"], Some("f.*"), "", None)], None);
    check(l, &[rc(Drop, &["a"], Some("o+"), "", None)], Some(l));
    // Anchoring: `a` does not match `ba`.
    check(
        &[("x", "ba")],
        &[rc(Keep, &["x"], Some("a"), "", None)],
        None,
    );
    check(
        &[("x", "ba")],
        &[rc(Drop, &["x"], Some("a"), "", None)],
        Some(&[("x", "ba")]),
    );
    // A missing label is "": `keep` on an empty regex keeps it, `.+` does not.
    check(l, &[rc(Keep, &["zz"], Some(""), "", None)], Some(l));
    check(l, &[rc(Keep, &["zz"], Some(".+"), "", None)], None);
    // The default regex matches everything.
    check(l, &[rc(Drop, &["zz"], None, "", None)], None);
    // `.` matches newline.
    check(
        &[("x", "a\nb")],
        &[rc(Keep, &["x"], Some("a.b"), "", None)],
        Some(&[("x", "a\nb")]),
    );
    // A drop ends the chain.
    check(
        l,
        &[
            rc(Drop, &["a"], Some("foo"), "", None),
            rc(Replace, &[], None, "c", Some("x")),
        ],
        None,
    );
    // Later steps see earlier results.
    check(
        l,
        &[
            rc(Replace, &[], None, "__tmp", Some("y")),
            rc(Keep, &["__tmp"], Some("y"), "", None),
            rc(LabelDrop, &[], Some("__tmp"), "", None),
        ],
        Some(l),
    );
}

#[test]
fn keepequal_and_dropequal() {
    let eq: Pairs<'_> = &[("a", "1"), ("b", "1")];
    let ne: Pairs<'_> = &[("a", "1"), ("b", "2")];
    check(eq, &[rc(KeepEqual, &["a"], None, "b", None)], Some(eq));
    check(ne, &[rc(KeepEqual, &["a"], None, "b", None)], None);
    check(eq, &[rc(DropEqual, &["a"], None, "b", None)], None);
    check(ne, &[rc(DropEqual, &["a"], None, "b", None)], Some(ne));
    // Absent on both sides: "" == "".
    check(eq, &[rc(KeepEqual, &["x"], None, "y", None)], Some(eq));
    check(eq, &[rc(DropEqual, &["x"], None, "y", None)], None);
    // The joined value is compared.
    check(
        &[("a", "1"), ("b", "1;1")],
        &[rc(KeepEqual, &["a", "a"], None, "b", None)],
        Some(&[("a", "1"), ("b", "1;1")]),
    );
}

#[test]
fn hashmod_golden() {
    // md5("baz") = 73feffa4b7f6bb68 e44cf984c85f6e88; 0xe44cf984c85f6e88 % 1000 = 976
    // (the first 8 bytes would give 48). Prometheus's own test expects 976.
    check(
        &[("a", "foo"), ("b", "bar"), ("c", "baz")],
        &[hashmod(&["c"], "d", 1000)],
        Some(&[("a", "foo"), ("b", "bar"), ("c", "baz"), ("d", "976")]),
    );
    check(
        &[("a", "foo\nbar")],
        &[hashmod(&["a"], "b", 1000)],
        Some(&[("a", "foo\nbar"), ("b", "734")]),
    );
    // Missing source: md5("") low half 0xe9800998ecf8427e.
    check(&[], &[hashmod(&["a"], "b", 1000)], Some(&[("b", "958")]));
    check(
        &[("a", "a"), ("b", "b")],
        &[hashmod(&["a", "b"], "s", 1000)],
        Some(&[("a", "a"), ("b", "b"), ("s", "74")]),
    );
    check(
        &[("a", "x")],
        &[hashmod(&["a"], "s", 1)],
        Some(&[("a", "x"), ("s", "0")]),
    );
    // Modulus 0 (an invalid config) does nothing rather than divide by zero.
    check(
        &[("a", "x")],
        &[hashmod(&["a"], "s", 0)],
        Some(&[("a", "x")]),
    );
    check(
        &[("__address__", "10.0.0.1:9100")],
        &[
            hashmod(&["__address__"], "__tmp_hash", 8),
            rc(Keep, &["__tmp_hash"], Some("5"), "", None),
        ],
        Some(&[("__address__", "10.0.0.1:9100"), ("__tmp_hash", "5")]),
    );
}

#[test]
fn labelmap() {
    let l: Pairs<'_> = &[("__meta_k_a", "1"), ("__meta_k_b", "2"), ("c", "3")];
    check(
        l,
        &[rc(LabelMap, &[], Some("__meta_k_(.+)"), "", None)],
        Some(&[
            ("__meta_k_a", "1"),
            ("__meta_k_b", "2"),
            ("a", "1"),
            ("b", "2"),
            ("c", "3"),
        ]),
    );
    check(
        l,
        &[rc(
            LabelMap,
            &[],
            Some("__meta_(k)_(.+)"),
            "",
            Some("${1}_${2}_x"),
        )],
        Some(&[
            ("__meta_k_a", "1"),
            ("__meta_k_b", "2"),
            ("c", "3"),
            ("k_a_x", "1"),
            ("k_b_x", "2"),
        ]),
    );
    // Names are matched whole.
    check(l, &[rc(LabelMap, &[], Some("k_(.+)"), "", None)], Some(l));
    // Overwrites an existing label.
    check(
        &[("__meta_c", "new"), ("c", "old")],
        &[rc(LabelMap, &[], Some("__meta_(.+)"), "", None)],
        Some(&[("__meta_c", "new"), ("c", "new")]),
    );
    // Collision: original labels by name, then labels set earlier in the chain, the
    // last visited winning (Prometheus 3's builder order).
    check(
        &[("a_x", "1"), ("b_x", "2")],
        &[rc(LabelMap, &[], Some("._x"), "", Some("x"))],
        Some(&[("a_x", "1"), ("b_x", "2"), ("x", "2")]),
    );
    check(
        &[("b_x", "base")],
        &[
            rc(Replace, &[], None, "a_x", Some("added")),
            rc(LabelMap, &[], Some("._x"), "", Some("x")),
        ],
        Some(&[("a_x", "added"), ("b_x", "base"), ("x", "added")]),
    );
    // Labels set earlier are visited too.
    check(
        &[("c", "3")],
        &[
            rc(Replace, &[], None, "__meta_z", Some("9")),
            rc(LabelMap, &[], Some("__meta_(.+)"), "", None),
        ],
        Some(&[("__meta_z", "9"), ("c", "3"), ("z", "9")]),
    );
}

#[test]
fn labeldrop_and_labelkeep() {
    let l: Pairs<'_> = &[("__meta_a", "1"), ("a", "2"), ("b", "3"), ("ab", "4")];
    check(
        l,
        &[rc(LabelDrop, &[], Some("__meta.*|b"), "", None)],
        Some(&[("a", "2"), ("ab", "4")]),
    );
    check(
        l,
        &[rc(LabelKeep, &[], Some("a|b"), "", None)],
        Some(&[("a", "2"), ("b", "3")]),
    );
    // Anchored: `a` keeps only `a`.
    check(
        l,
        &[rc(LabelKeep, &[], Some("a"), "", None)],
        Some(&[("a", "2")]),
    );
    check(l, &[rc(LabelDrop, &[], Some("x"), "", None)], Some(l));
    check(l, &[rc(LabelKeep, &[], None, "", None)], Some(l));
    check(l, &[rc(LabelDrop, &[], None, "", None)], Some(&[]));
    // Labels set earlier in the chain are seen.
    check(
        &[("a", "1")],
        &[
            rc(Replace, &[], None, "tmp", Some("x")),
            rc(LabelKeep, &[], Some("tmp"), "", None),
        ],
        Some(&[("tmp", "x")]),
    );
}

#[test]
fn lowercase_and_uppercase() {
    let l: Pairs<'_> = &[("a", "FoO"), ("b", "bAr")];
    check(
        l,
        &[rc(Lowercase, &["a", "b"], None, "l", None)],
        Some(&[("a", "FoO"), ("b", "bAr"), ("l", "foo;bar")]),
    );
    check(
        l,
        &[rc(Uppercase, &["a", "b"], None, "u", None)],
        Some(&[("a", "FoO"), ("b", "bAr"), ("u", "FOO;BAR")]),
    );
    check(
        l,
        &[rc(Lowercase, &["a"], None, "a", None)],
        Some(&[("a", "foo"), ("b", "bAr")]),
    );
    // An empty value deletes the target.
    check(
        l,
        &[rc(Uppercase, &["zz"], None, "b", None)],
        Some(&[("a", "FoO")]),
    );
    // Go's simple case mapping.
    let cases: &[(Action, &str, &str)] = &[
        (Uppercase, "straße", "STRAßE"),
        (Lowercase, "İSTANBUL", "istanbul"),
        (Lowercase, "ΣΑΣ", "σασ"),
        (Uppercase, "ǆ", "Ǆ"),
        (Uppercase, "ﬀ", "ﬀ"),
        (Uppercase, "ᾳ", "ᾼ"),
        (Uppercase, "ᾀ", "ᾈ"),
        (Lowercase, "ÀÉ\n", "àé\n"),
    ];
    for &(action, input, want) in cases {
        check(
            &[("a", input)],
            &[rc(action, &["a"], None, "t", None)],
            Some(&[("a", input), ("t", want)]),
        );
    }
}

#[test]
fn chains() {
    check(&[("a", "1")], &[], Some(&[("a", "1")]));
    check(
        &[],
        &[rc(Replace, &[], None, "x", Some("y"))],
        Some(&[("x", "y")]),
    );
    // Set, delete, set again.
    check(
        &[("a", "1"), ("b", "2")],
        &[
            rc(Replace, &[], None, "a", Some("x")),
            rc(Replace, &["zz"], None, "a", None),
            rc(Replace, &["b"], None, "c", None),
            rc(Replace, &["a"], None, "d", Some("d$1")),
            rc(Replace, &["c"], None, "a", Some("again$1")),
        ],
        Some(&[("a", "again2"), ("b", "2"), ("c", "2"), ("d", "d")]),
    );
    // Deleting then keeping on the deleted label.
    check(
        &[("a", "1")],
        &[
            rc(LabelDrop, &[], Some("a"), "", None),
            rc(Keep, &["a"], Some(""), "", None),
        ],
        Some(&[]),
    );
}

#[test]
fn unchanged_result_shares_the_buffer() {
    let l = Labels::from_pairs(&[("a", "1")]);
    let out = relabel(
        &l,
        &[
            rc(Keep, &["a"], Some("1"), "", None),
            rc(LabelDrop, &[], Some("zz"), "", None),
        ],
    );
    assert_eq!(out, Some(l));
}

fn valid(c: RelabelConfig) {
    if let Err(e) = c.validate() {
        panic!("{c:?} should be valid: {e}");
    }
}

#[test]
fn validation() {
    let with = |c: RelabelConfig, f: &dyn Fn(&mut RelabelConfig)| {
        let mut c = c;
        f(&mut c);
        c
    };
    let cases: Vec<(RelabelConfig, &str)> = vec![
        (
            RelabelConfig::default(),
            "relabel configuration for replace action requires 'target_label' value",
        ),
        (
            hashmod(&["a"], "b", 0),
            "relabel configuration for hashmod requires non-zero modulus",
        ),
        (
            hashmod(&["a"], "", 1),
            "relabel configuration for hashmod action requires 'target_label' value",
        ),
        (
            hashmod(&["a"], "b-c", 1),
            "\"b-c\" is invalid 'target_label' for hashmod action",
        ),
        (
            rc(Replace, &["a"], None, "1bad", None),
            "\"1bad\" is invalid 'target_label' for replace action",
        ),
        (
            rc(Replace, &["a"], None, "$1-x", None),
            "\"$1-x\" is invalid 'target_label' for replace action",
        ),
        (
            rc(Replace, &["a"], None, "$", None),
            "\"$\" is invalid 'target_label' for replace action",
        ),
        (
            rc(Replace, &["a"], None, "${1", None),
            "\"${1\" is invalid 'target_label' for replace action",
        ),
        (
            rc(Replace, &["a"], None, "${}", None),
            "\"${}\" is invalid 'target_label' for replace action",
        ),
        (
            rc(Replace, &["a"], None, "1$1", None),
            "\"1$1\" is invalid 'target_label' for replace action",
        ),
        (
            rc(Replace, &["a-b"], None, "x", None),
            "\"a-b\" is not a valid label name",
        ),
        (
            rc(Replace, &[""], None, "x", None),
            "\"\" is not a valid label name",
        ),
        (
            rc(Lowercase, &["a"], None, "", None),
            "relabel configuration for lowercase action requires 'target_label' value",
        ),
        (
            rc(Uppercase, &["a"], None, "a.b", None),
            "\"a.b\" is invalid 'target_label' for uppercase action",
        ),
        (
            rc(Lowercase, &["a"], None, "b", Some("x")),
            "'replacement' can not be set for lowercase action",
        ),
        (
            rc(KeepEqual, &["a"], None, "", None),
            "relabel configuration for keepequal action requires 'target_label' value",
        ),
        (
            rc(DropEqual, &["a"], None, "b", Some("")),
            "'replacement' can not be set for dropequal action",
        ),
        (
            rc(KeepEqual, &["a"], Some("x"), "b", None),
            "keepequal action requires only 'source_labels' and `target_label`, and no other fields",
        ),
        (
            with(rc(DropEqual, &["a"], None, "b", None), &|c| {
                c.separator = ",".into()
            }),
            "dropequal action requires only 'source_labels' and `target_label`, and no other fields",
        ),
        (
            with(rc(KeepEqual, &["a"], None, "b", None), &|c| c.modulus = 2),
            "keepequal action requires only 'source_labels' and `target_label`, and no other fields",
        ),
        (
            rc(LabelMap, &[], Some("(.*)"), "", Some("a-$1")),
            "\"a-$1\" is invalid 'replacement' for labelmap action",
        ),
        (
            rc(LabelMap, &[], Some("(.*)"), "", Some("")),
            "\"\" is invalid 'replacement' for labelmap action",
        ),
        (
            rc(LabelDrop, &["a"], Some("x"), "", None),
            "labeldrop action requires only 'regex', and no other fields",
        ),
        (
            rc(LabelKeep, &[], Some("x"), "t", None),
            "labelkeep action requires only 'regex', and no other fields",
        ),
        (
            rc(LabelKeep, &[], Some("x"), "", Some("y")),
            "labelkeep action requires only 'regex', and no other fields",
        ),
        (
            with(rc(LabelDrop, &[], None, "", None), &|c| {
                c.separator = String::new()
            }),
            "labeldrop action requires only 'regex', and no other fields",
        ),
        (
            with(rc(LabelDrop, &[], None, "", None), &|c| c.modulus = 3),
            "labeldrop action requires only 'regex', and no other fields",
        ),
    ];
    for (c, want) in cases {
        for _ in 0..2 {
            match c.validate() {
                Ok(()) => panic!("{c:?} should be invalid: {want}"),
                Err(e) => assert_eq!(e.to_string(), want, "{c:?}"),
            }
        }
    }

    valid(rc(Replace, &["a"], None, "b", None));
    valid(rc(Replace, &["a"], Some("(.)(.)"), "${1}_$2x", Some("")));
    valid(rc(Replace, &["a"], Some("(?P<n>.)"), "l_$n", None));
    valid(rc(Replace, &[], None, "_", Some("static")));
    valid(rc(Keep, &["a", "b"], Some("x;y"), "", None));
    valid(rc(Drop, &[], None, "", None));
    valid(rc(KeepEqual, &["a"], None, "b", None));
    valid(rc(DropEqual, &["a", "b"], None, "c", None));
    valid(hashmod(&["a"], "b", 1));
    valid(rc(LabelMap, &[], Some("__meta_(.+)"), "", None));
    valid(rc(LabelMap, &[], Some("__meta_(.+)"), "", Some("k8s_${1}")));
    valid(rc(LabelDrop, &[], Some("__meta_.*"), "", None));
    valid(rc(LabelKeep, &[], Some("a|b"), "", None));
    valid(rc(Lowercase, &["a"], None, "b", None));
    valid(rc(Uppercase, &["a"], Some("ignored"), "b", None));
}

#[test]
fn parsing() {
    for a in Action::ALL {
        assert_eq!(a.as_str().parse::<Action>().ok(), Some(a));
        assert_eq!(a.as_str().to_uppercase().parse::<Action>().ok(), Some(a));
        assert_eq!(a.to_string(), a.as_str());
    }
    assert_eq!("KeepEqual".parse::<Action>().ok(), Some(KeepEqual));
    let err = "keep_equal".parse::<Action>().err().map(|e| e.to_string());
    assert_eq!(
        err.as_deref(),
        Some("unknown relabel action \"keep_equal\"")
    );
    assert_eq!(Action::default(), Replace);

    let err = RelabelRegex::new("(a")
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.starts_with("invalid relabel regex \"(a\": "), "{err}");
    let r = re("a|b");
    assert_eq!(r.to_string(), "a|b");
    assert_eq!(r.as_str(), "a|b");
    assert!(r.is_match("a") && !r.is_match("ab") && !r.is_match("xa"));
    assert_eq!(RelabelRegex::default(), re("(.*)"));
    assert_ne!(RelabelRegex::default(), re(".*"));
    assert!(re(".*").is_match("x\ny"));

    let d = RelabelConfig::default();
    assert_eq!(d.separator, ";");
    assert_eq!(d.regex.as_str(), "(.*)");
    assert_eq!(d.replacement, "$1");
    assert_eq!(d.action, Replace);
    assert_eq!(d.modulus, 0);
    assert!(d.source_labels.is_empty() && d.target_label.is_empty());
}

fn arb_config() -> impl proptest::strategy::Strategy<Value = RelabelConfig> {
    use proptest::prelude::*;
    use proptest::sample::{select, subsequence};
    (
        select(Action::ALL.to_vec()),
        subsequence(vec!["a", "b", "__meta_x", "zz", "a_x"], 0..4),
        select(vec![";", "", "\n", "$"]),
        select(vec!["a", "b", "x", "$1", "${n}_x", "1bad", "", "a-b", "$"]),
        select(vec![
            "(.*)",
            ".*",
            "",
            "a",
            "(a)(b)?",
            "(?P<n>[a-c_]+);?(.*)",
            "__meta_(.+)",
            ".(.)",
            "(?s:.)+",
            "\\w+",
        ]),
        0u64..4,
        select(vec![
            "$1", "${2}", "$n", "$$", "$", "x$1y", "", "${1", "$0", "é",
        ]),
    )
        .prop_map(
            |(action, src, sep, target, regex, modulus, repl)| RelabelConfig {
                source_labels: src.into_iter().map(str::to_owned).collect(),
                separator: sep.to_owned(),
                target_label: target.to_owned(),
                regex: re(regex),
                modulus,
                replacement: repl.to_owned(),
                action,
            },
        )
}

proptest::proptest! {
    #[test]
    fn never_panics_and_is_deterministic(
        pairs in proptest::collection::btree_map(
            proptest::sample::select(vec!["a", "b", "x", "__meta_x", "a_x", "__name__"]),
            "[abc;$\n_é]{0,4}",
            0..6,
        ),
        configs in proptest::collection::vec(arb_config(), 0..5),
    ) {
        let input: Vec<(&str, &str)> = pairs.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let labels = Labels::from_pairs(&input);
        let first = relabel(&labels, &configs);
        let second = relabel(&labels, &configs);
        proptest::prop_assert_eq!(&first, &second);
        let mut b = labels.to_builder();
        let kept = relabel_into(&mut b, &configs);
        proptest::prop_assert_eq!(kept.then(|| b.build()), first.clone());
        if let Some(out) = &first {
            proptest::prop_assert!(out.iter().all(|l| !l.value.is_empty()));
        }
        // Validation never panics either, and a valid chain of only label-set changes
        // from classic names yields classic names (labelmap excepted).
        let all_valid = configs.iter().all(|c| c.validate().is_ok());
        if all_valid
            && configs.iter().all(|c| c.action != Action::LabelMap)
            && let Some(out) = &first
        {
            proptest::prop_assert!(out.iter().all(|l| is_valid_label_name(l.name)));
        }
    }
}
