//! Series descriptions: `metric{a="b"} 1+2x3 _ stale {{schema:0 count:1}}`.
//!
//! A line is a label set in PromQL selector syntax (only `=` pairs, a bare or quoted
//! metric name) followed by a value sequence in `promtool test rules` expanding notation:
//!
//! | item | expands to |
//! |---|---|
//! | `v` | `v` |
//! | `vxN` | `v` N+1 times |
//! | `a+bxN`, `a-bxN` | `a`, `a±b`, ... N+1 values, by repeated addition like Prometheus |
//! | `_` | one missing sample |
//! | `_xN` | N missing samples (not N+1) |
//! | `stale` | the staleness marker |
//! | `{{...}}`, `{{...}}xN`, `{{...}}+{{...}}xN` | native histograms (1 or N+1), not decoded |
//!
//! Numbers are decimal floats with optional sign and exponent, or `Inf`/`NaN` in any case
//! (hexadecimal is not allowed in series descriptions: `0x3` is "0, three more times").

use kiln_model::{Labels, LabelsBuilder, METRIC_NAME, STALE_NAN};

/// One point of an expanded value sequence.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SeqValue {
    /// A float sample (possibly NaN or the staleness marker).
    Float(f64),
    /// No sample at this step (`_`).
    Omitted,
    /// A native histogram sample; its contents are not decoded.
    Histogram,
}

impl SeqValue {
    /// The float value, if this is a float sample.
    pub fn as_float(self) -> Option<f64> {
        match self {
            SeqValue::Float(v) => Some(v),
            _ => None,
        }
    }
}

/// A parsed series description line.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesLine {
    pub labels: Labels,
    pub values: Vec<SeqValue>,
}

impl SeriesLine {
    /// Whether any value is a native histogram.
    pub fn has_histogram(&self) -> bool {
        self.values.iter().any(|v| matches!(v, SeqValue::Histogram))
    }
}

/// Parses a whole series description line.
pub fn parse_series_line(line: &str) -> Result<SeriesLine, String> {
    let (labels, rest) = parse_labels(line)?;
    if !rest.is_empty() && !rest.starts_with(char::is_whitespace) {
        return Err(format!(
            "unexpected {:?} after the label set",
            truncate(rest, 20)
        ));
    }
    let values = expand_values(rest)?;
    Ok(SeriesLine { labels, values })
}

/// Parses the label set at the start of `s`: `name`, `name{...}` or `{...}`. Returns the
/// labels and the rest of the input.
pub fn parse_labels(s: &str) -> Result<(Labels, &str), String> {
    let mut b = LabelsBuilder::new();
    let name_len = ident_len(s, true);
    if name_len > 0 {
        b.set(METRIC_NAME, &s[..name_len]);
    }
    let mut rest = &s[name_len..];
    if let Some(body) = rest.strip_prefix('{') {
        rest = body;
        let mut first = true;
        loop {
            rest = rest.trim_start();
            if let Some(r) = rest.strip_prefix('}') {
                rest = r;
                break;
            }
            if rest.is_empty() {
                return Err("unterminated label set: missing '}'".into());
            }
            // A label name: identifier or quoted string. A quoted string with no `=`
            // after it, first in the braces, is the metric name (`{"my.metric"}`).
            let name = if rest.starts_with(['"', '\'', '`']) {
                let (n, r) = parse_quoted(rest)?;
                rest = r.trim_start();
                if first && name_len == 0 && !rest.starts_with('=') {
                    b.set(METRIC_NAME, &n);
                    first = false;
                    rest = eat_separator(rest)?;
                    continue;
                }
                n
            } else {
                let n = ident_len(rest, false);
                if n == 0 {
                    return Err(format!("expected a label name at {:?}", truncate(rest, 20)));
                }
                let name = rest[..n].to_owned();
                rest = rest[n..].trim_start();
                name
            };
            rest = rest
                .strip_prefix('=')
                .ok_or_else(|| format!("expected '=' after label name {name:?}"))?
                .trim_start();
            if !rest.starts_with(['"', '\'', '`']) {
                return Err(format!("expected a quoted value for label {name:?}"));
            }
            let (value, r) = parse_quoted(rest)?;
            b.set(&name, &value);
            first = false;
            rest = eat_separator(r.trim_start())?;
        }
    } else if name_len == 0 {
        return Err(format!(
            "expected a series (metric{{labels}}), got {:?}",
            truncate(s, 30)
        ));
    }
    Ok((b.build(), rest))
}

/// After a pair: `,` (then more pairs or `}`) or `}`; leaves `}` in place.
fn eat_separator(rest: &str) -> Result<&str, String> {
    if let Some(r) = rest.strip_prefix(',') {
        Ok(r)
    } else if rest.starts_with('}') {
        Ok(rest)
    } else {
        Err(format!("expected ',' or '}}' at {:?}", truncate(rest, 20)))
    }
}

/// Length of the identifier at the start of `s` (metric names may contain `:`).
fn ident_len(s: &str, metric: bool) -> usize {
    let mut n = 0;
    for (i, c) in s.char_indices() {
        let ok = c.is_ascii_alphabetic()
            || c == '_'
            || (metric && c == ':')
            || (i > 0 && c.is_ascii_digit());
        if !ok {
            break;
        }
        n = i + c.len_utf8();
    }
    n
}

fn truncate(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Parses a PromQL string literal at the start of `s`: `"..."` or `'...'` with Go escapes,
/// or `` `...` `` raw. Returns the value and the rest of the input. Invalid UTF-8 produced
/// by `\x` escapes is replaced with U+FFFD.
pub fn parse_quoted(s: &str) -> Result<(String, &str), String> {
    let quote = s.chars().next().ok_or("expected a string")?;
    let body = &s[1..];
    if quote == '`' {
        let end = body.find('`').ok_or("unterminated raw string")?;
        return Ok((body[..end].to_owned(), &body[end + 1..]));
    }
    if quote != '"' && quote != '\'' {
        return Err(format!(
            "expected a quoted string, got {:?}",
            truncate(s, 20)
        ));
    }
    let mut out: Vec<u8> = Vec::with_capacity(body.len());
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        if c == quote {
            return Ok((String::from_utf8_lossy(&out).into_owned(), &body[i + 1..]));
        }
        if c == '\n' {
            break;
        }
        if c != '\\' {
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        let (_, e) = chars.next().ok_or("unterminated escape")?;
        let mut hex = |n: usize| -> Result<u32, String> {
            let mut v = 0u32;
            for _ in 0..n {
                let (_, d) = chars.next().ok_or("short escape")?;
                v = v * 16
                    + d.to_digit(16)
                        .ok_or_else(|| format!("bad hex digit {d:?} in escape"))?;
            }
            Ok(v)
        };
        match e {
            'a' => out.push(7),
            'b' => out.push(8),
            'f' => out.push(12),
            'n' => out.push(b'\n'),
            'r' => out.push(b'\r'),
            't' => out.push(b'\t'),
            'v' => out.push(11),
            '\\' => out.push(b'\\'),
            '\'' | '"' => out.push(e as u8),
            'x' => out.push(hex(2)? as u8),
            'u' | 'U' => {
                let v = hex(if e == 'u' { 4 } else { 8 })?;
                let c = char::from_u32(v).ok_or_else(|| format!("invalid code point {v:#x}"))?;
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
            '0'..='7' => {
                let mut v = e as u32 - '0' as u32;
                for _ in 0..2 {
                    let (_, d) = chars.next().ok_or("short octal escape")?;
                    v = v * 8
                        + d.to_digit(8)
                            .ok_or_else(|| format!("bad octal digit {d:?}"))?;
                }
                if v > 255 {
                    return Err(format!("octal escape value {v} > 255"));
                }
                out.push(v as u8);
            }
            other => return Err(format!("unknown escape sequence \\{other}")),
        }
    }
    Err("unterminated string".into())
}

/// Expands a value sequence (the part of a series line after the labels).
pub fn expand_values(s: &str) -> Result<Vec<SeqValue>, String> {
    let mut out = Vec::new();
    let mut rest = s.trim_start();
    while !rest.is_empty() {
        if rest.starts_with("{{") {
            rest = expand_histogram(rest, &mut out)?;
        } else {
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            expand_item(&rest[..end], &mut out)?;
            rest = &rest[end..];
        }
        if !rest.is_empty() && !rest.starts_with(char::is_whitespace) {
            return Err(format!(
                "unexpected {:?} in value sequence",
                truncate(rest, 20)
            ));
        }
        rest = rest.trim_start();
    }
    Ok(out)
}

/// `{{...}}`, `{{...}}xN`, `{{...}}+{{...}}xN`, `{{...}}-{{...}}xN`.
fn expand_histogram<'a>(s: &'a str, out: &mut Vec<SeqValue>) -> Result<&'a str, String> {
    let skip_literal = |s: &'a str| -> Result<&'a str, String> {
        let end = s
            .find("}}")
            .ok_or("unterminated native histogram literal: missing '}}'")?;
        Ok(&s[end + 2..])
    };
    let mut rest = skip_literal(s)?;
    let mut needs_times = false;
    if let Some(r) = rest.strip_prefix(['+', '-']) {
        if !r.starts_with("{{") {
            return Err("expected a native histogram after '+'/'-'".into());
        }
        rest = skip_literal(r)?;
        needs_times = true;
    }
    let times = if let Some(r) = rest.strip_prefix('x') {
        let n = r.bytes().take_while(u8::is_ascii_digit).count();
        let times: usize = r[..n]
            .parse()
            .map_err(|_| "expected a repeat count after 'x'".to_owned())?;
        rest = &r[n..];
        Some(times)
    } else {
        None
    };
    if needs_times && times.is_none() {
        return Err("a histogram increment needs a repeat count (xN)".into());
    }
    let count = times.map_or(1, |t| t + 1);
    out.extend(std::iter::repeat_n(SeqValue::Histogram, count));
    Ok(rest)
}

/// One whitespace-free item: `_`, `_xN`, `stale`, `v`, `vxN`, `a+bxN`, `a-bxN`.
fn expand_item(tok: &str, out: &mut Vec<SeqValue>) -> Result<(), String> {
    let bad = || format!("invalid value {tok:?}");
    if tok == "_" {
        out.push(SeqValue::Omitted);
        return Ok(());
    }
    if let Some(n) = tok.strip_prefix("_x") {
        let n: usize = parse_count(n).ok_or_else(bad)?;
        out.extend(std::iter::repeat_n(SeqValue::Omitted, n));
        return Ok(());
    }
    if tok == "stale" {
        out.push(SeqValue::Float(STALE_NAN));
        return Ok(());
    }
    let (base, rest) = scan_number(tok).ok_or_else(bad)?;
    let (delta, rest) = if rest.starts_with(['+', '-']) {
        let (d, r) = scan_number(rest).ok_or_else(bad)?;
        (Some(d), r)
    } else {
        (None, rest)
    };
    let times = match rest.strip_prefix('x') {
        Some(n) => Some(parse_count(n).ok_or_else(bad)?),
        None if rest.is_empty() => None,
        None => return Err(bad()),
    };
    match (delta, times) {
        (None, None) => out.push(SeqValue::Float(base)),
        (None, Some(n)) => out.extend(std::iter::repeat_n(SeqValue::Float(base), n + 1)),
        (Some(d), Some(n)) => {
            let mut v = base;
            for _ in 0..=n {
                out.push(SeqValue::Float(v));
                v += d;
            }
        }
        (Some(_), None) => {
            return Err(format!("{}: an increment needs a repeat count (xN)", bad()));
        }
    }
    Ok(())
}

fn parse_count(s: &str) -> Option<usize> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Scans a signed decimal float, `Inf` or `NaN` (any case) at the start of `s`.
fn scan_number(s: &str) -> Option<(f64, &str)> {
    let b = s.as_bytes();
    let mut i = 0;
    if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
        i += 1;
    }
    let body = &s[i..];
    for word in ["inf", "nan"] {
        if body.len() >= 3 && body[..3].eq_ignore_ascii_case(word) {
            let end = i + 3;
            // "Infinity" or an identifier continuing the word is not a number.
            if s[end..].starts_with(|c: char| c.is_ascii_alphanumeric() && c != 'x') {
                return None;
            }
            let v: f64 = s[..end].parse().ok()?;
            return Some((v, &s[end..]));
        }
    }
    let digits_start = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    if i < b.len() && b[i] == b'.' {
        i += 1;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
    }
    let mantissa = &s[digits_start..i];
    if mantissa.is_empty() || mantissa == "." {
        return None;
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        let mut j = i + 1;
        if j < b.len() && (b[j] == b'+' || b[j] == b'-') {
            j += 1;
        }
        let exp_digits = j;
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        if j > exp_digits {
            i = j;
        }
    }
    let v: f64 = s[..i].parse().ok()?;
    Some((v, &s[i..]))
}

/// Parses a number the way Prometheus's test scripts read a scalar result line (Go's
/// `strconv.ParseInt(s, 0, 64)`, then `strconv.ParseFloat`): decimal, `0x`/`0o`/`0b`
/// and leading-zero octal integers, floats, `Inf`/`Infinity`/`NaN` in any case.
pub fn parse_number(s: &str) -> Option<f64> {
    if let Some(v) = parse_go_int(s) {
        return Some(v as f64);
    }
    let (sign, body) = match s.as_bytes().first() {
        Some(b'+') => (1.0, &s[1..]),
        Some(b'-') => (-1.0, &s[1..]),
        _ => (1.0, s),
    };
    let lower = body.to_ascii_lowercase();
    match lower.as_str() {
        "inf" | "infinity" => return Some(sign * f64::INFINITY),
        "nan" => return Some(f64::NAN),
        _ => {}
    }
    // Rust accepts a few words Go does not ("infinity" handled above); keep to digits.
    if !body
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'))
    {
        return None;
    }
    body.parse::<f64>().ok().map(|v| sign * v)
}

fn parse_go_int(s: &str) -> Option<i64> {
    let (neg, body) = match s.as_bytes().first() {
        Some(b'+') => (false, &s[1..]),
        Some(b'-') => (true, &s[1..]),
        _ => (false, s),
    };
    let lower = body.to_ascii_lowercase();
    let (radix, digits) = if let Some(d) = lower.strip_prefix("0x") {
        (16, d)
    } else if let Some(d) = lower.strip_prefix("0o") {
        (8, d)
    } else if let Some(d) = lower.strip_prefix("0b") {
        (2, d)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, &lower[1..])
    } else {
        (10, lower.as_str())
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let v = i64::from_str_radix(digits, radix).ok()?;
    Some(if neg { -v } else { v })
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_model::is_stale_nan;

    use SeqValue::{Histogram as H, Omitted as O};

    fn f(v: f64) -> SeqValue {
        SeqValue::Float(v)
    }

    /// Compares sequences treating NaN == NaN and the stale marker as its own value.
    fn same(a: &[SeqValue], b: &[SeqValue]) -> bool {
        a.len() == b.len()
            && a.iter().zip(b).all(|(x, y)| match (x, y) {
                (SeqValue::Float(x), SeqValue::Float(y)) => {
                    x.to_bits() == y.to_bits()
                        || (x.is_nan() && y.is_nan() && is_stale_nan(*x) == is_stale_nan(*y))
                }
                _ => x == y,
            })
    }

    #[test]
    fn expansion() {
        let check = |input: &str, want: &[SeqValue]| {
            let got = expand_values(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert!(same(&got, want), "{input}: got {got:?}, want {want:?}");
        };
        check("", &[]);
        check("5", &[f(5.0)]);
        check("1 2 3", &[f(1.0), f(2.0), f(3.0)]);
        check("-2+4x3", &[f(-2.0), f(2.0), f(6.0), f(10.0)]);
        check(" 1-2x4", &[f(1.0), f(-1.0), f(-3.0), f(-5.0), f(-7.0)]);
        check("1x4", &[f(1.0); 5]);
        check("0x3", &[f(0.0); 4]);
        check("1 _x3 stale", &[f(1.0), O, O, O, f(STALE_NAN)]);
        check("_ _x0 _", &[O, O]);
        check(
            "NaN -Inf +Inf inf Inf",
            &[
                f(f64::NAN),
                f(f64::NEG_INFINITY),
                f(f64::INFINITY),
                f(f64::INFINITY),
                f(f64::INFINITY),
            ],
        );
        check("NaNx2", &[f(f64::NAN); 3]);
        check("1e3 -1.5E-2 .5 2.", &[f(1000.0), f(-0.015), f(0.5), f(2.0)]);
        check("1e-3+1e-3x2", &[f(1e-3), f(2e-3), f(1e-3 + 1e-3 + 1e-3)]);
        check(
            "0.1+0.1x3",
            &[f(0.1), f(0.2), f(0.1 + 0.1 + 0.1), f(0.1 + 0.1 + 0.1 + 0.1)],
        );
        check("1\t\t2", &[f(1.0), f(2.0)]);
        check("{{schema:1 sum:3 count:22 buckets:[5 10 7]}}", &[H]);
        check("5 {{count:1}}x2 _", &[f(5.0), H, H, H, O]);
        check(
            "{{schema:0 sum:1}}+{{schema:0 sum:2}}x3 7",
            &[H, H, H, H, f(7.0)],
        );
        check("{{sum:1}}-{{sum:1}}x1", &[H, H]);
        check("Inf+1x1", &[f(f64::INFINITY), f(f64::INFINITY)]);
        for bad in [
            "abc",
            "1+2",
            "1x",
            "1xy",
            "_x",
            "{{count:1",
            "{{a}}+1x2",
            "{{a}}+{{b}}",
            "1..2",
            "Infinity",
            "1,2",
            "0x1f",
        ] {
            assert!(expand_values(bad).is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn series_lines() {
        let check = |input: &str, labels: &[(&str, &str)], want: &[SeqValue]| {
            let got = parse_series_line(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(got.labels, Labels::from_pairs(labels), "{input}");
            assert!(same(&got.values, want), "{input}: got {:?}", got.values);
        };
        check("metric 1", &[("__name__", "metric")], &[f(1.0)]);
        check("metric", &[("__name__", "metric")], &[]);
        check("{} 1 2", &[], &[f(1.0), f(2.0)]);
        check(
            r#"http_requests{job="api", instance="0"}	0+10x1"#,
            &[
                ("__name__", "http_requests"),
                ("job", "api"),
                ("instance", "0"),
            ],
            &[f(0.0), f(10.0)],
        );
        check(
            r#"ns:rule_name{a="b",} 3"#,
            &[("__name__", "ns:rule_name"), ("a", "b")],
            &[f(3.0)],
        );
        check(
            r#"{__name__="m", a='x'} 1"#,
            &[("__name__", "m"), ("a", "x")],
            &[f(1.0)],
        );
        check(
            r#"{"my.metric", "a.b"="c"} 1"#,
            &[("__name__", "my.metric"), ("a.b", "c")],
            &[f(1.0)],
        );
        check(
            r#"m{a="q\"}\n\x41\u00e9\101", b=`raw\n`} 1"#,
            &[("__name__", "m"), ("a", "q\"}\nAéA"), ("b", "raw\\n")],
            &[f(1.0)],
        );
        check(r#"m{a=""} 1"#, &[("__name__", "m")], &[f(1.0)]);
        check("m{} {{count:1}}", &[("__name__", "m")], &[H]);
        for bad in [
            "1 2",
            r#"m{a="b" 1"#,
            r#"m{a=b} 1"#,
            r#"m{a!="b"} 1"#,
            "m{a} 1",
            r#"m{a="b}"#,
            "m{}1",
        ] {
            assert!(parse_series_line(bad).is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn scalar_numbers() {
        for (s, want) in [
            ("1", 1.0),
            ("-2.5", -2.5),
            ("+Inf", f64::INFINITY),
            ("-Inf", f64::NEG_INFINITY),
            ("inf", f64::INFINITY),
            ("Infinity", f64::INFINITY),
            ("0x10", 16.0),
            ("010", 8.0),
            ("1e3", 1000.0),
            (".5", 0.5),
            ("2.", 2.0),
        ] {
            assert_eq!(parse_number(s), Some(want), "{s}");
        }
        assert!(parse_number("NaN").is_some_and(f64::is_nan));
        for bad in ["", "metric", "{} 1", "1 2", "1x3", "nan1", "0x"] {
            assert_eq!(parse_number(bad), None, "{bad:?}");
        }
    }
}
