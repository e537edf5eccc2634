//! The JSON of the Prometheus HTTP API, written directly so that numbers look exactly as
//! Prometheus writes them: timestamps as Unix seconds (`1435781451.781`, `1`), sample
//! values as strings in Go's shortest `'f'` format (`"0.5"`, `"NaN"`, `"+Inf"`).

use kiln_model::Labels;
use kiln_promql::{Sample, Series, Value};
use std::fmt::Write as _;

/// Appends a JSON string literal.
pub(crate) fn string(out: &mut String, s: &str) {
    out.push_str(&serde_json::Value::String(s.to_owned()).to_string());
}

/// A timestamp in ms as Unix seconds with up to three decimals.
pub(crate) fn timestamp(out: &mut String, t: i64) {
    let (secs, ms) = (t.div_euclid(1000), t.rem_euclid(1000));
    if ms == 0 {
        out.push_str(itoa::Buffer::new().format(secs));
        return;
    }
    // Negative times: -1.5 s is secs = -2, ms = 500.
    let (sign, secs, ms) = if t < 0 && ms != 0 {
        ("-", -(secs + 1), 1000 - ms)
    } else {
        ("", secs, ms)
    };
    let frac = format!("{ms:03}");
    out.push_str(&format!("{sign}{secs}.{}", frac.trim_end_matches('0')));
}

/// A sample value as Prometheus's API renders it: Go's shortest plain decimal, or the
/// shortest exponent form when the magnitude is below 1e-6 or at least 1e21 (`1e-09`).
pub(crate) fn value(out: &mut String, v: f64) {
    out.push('"');
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else if v != 0.0 && (v.abs() < 1e-6 || v.abs() >= 1e21) {
        out.push_str(&kiln_model::format_go_float(v));
    } else if (1e-5..1e16).contains(&v.abs()) {
        out.push_str(ryu_plain(&mut ryu::Buffer::new(), v));
    } else if (1e-6..1e-5).contains(&v.abs()) {
        // ryu would write these as "4.9618e-6"; Go writes "0.0000049618" (the first
        // digit's exponent is -6 throughout this range).
        let d = kiln_model::ShortestDigits::of(v);
        if d.is_negative() {
            out.push('-');
        }
        out.push_str("0.00000");
        out.extend(d.digits().iter().map(|&c| char::from(c)));
    } else {
        // Written in place: this runs once per point of every query answer.
        let _ = write!(out, "{v}");
    }
    out.push('"');
}

/// `v` in Go's shortest `'f'` form by ryu, for `[1e-5, 1e16)`, where ryu writes plain
/// decimals (with a ".0" that Go leaves off integers). Much faster than `Display`
/// (this runs once per point of every query answer), and closer to Go: where two
/// shortest 17-digit candidates tie, ryu and Go round half to even (Prometheus writes
/// 1658206780088562.25 as "1658206780088562.2"), `Display` rounds half up.
fn ryu_plain(buf: &mut ryu::Buffer, v: f64) -> &str {
    let s = buf.format_finite(v);
    s.strip_suffix(".0").unwrap_or(s)
}

/// `{"name":"value",...}`.
pub(crate) fn labels(out: &mut String, l: &Labels) {
    out.push('{');
    for (i, p) in l.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        string(out, p.name);
        out.push(':');
        string(out, p.value);
    }
    out.push('}');
}

fn point(out: &mut String, t: i64, v: f64) {
    out.push('[');
    timestamp(out, t);
    out.push(',');
    value(out, v);
    out.push(']');
}

fn vector(out: &mut String, v: &[Sample]) {
    out.push('[');
    for (i, s) in v.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"metric\":");
        labels(out, &s.labels);
        out.push_str(",\"value\":");
        point(out, s.t, s.v);
        out.push('}');
    }
    out.push(']');
}

/// Writes the series, dropping each once written: the result shrinks as its JSON grows.
fn matrix(out: &mut String, m: Vec<Series>) {
    out.push('[');
    for (i, s) in m.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"metric\":");
        labels(out, &s.labels);
        out.push_str(",\"values\":[");
        for (j, &(t, v)) in s.points.iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            point(out, t, v);
        }
        out.push_str("]}");
    }
    out.push(']');
}

/// The bytes a query's JSON answer will about take (to allocate it once).
fn estimated_len(v: &Value) -> usize {
    match v {
        Value::Matrix(m) => m
            .iter()
            .map(|s| 64 + s.labels.packed_len() * 2 + s.points.len() * 32)
            .sum(),
        Value::Vector(s) => s.iter().map(|s| 96 + s.labels.packed_len() * 2).sum(),
        _ => 64,
    }
}

/// A query's whole success answer, written into one buffer sized for it; the result
/// is consumed as it is written.
pub(crate) fn query_success(
    v: Value,
    stats: Option<&QueryTimings>,
    warnings: &[String],
    infos: &[String],
) -> String {
    let mut out = String::with_capacity(estimated_len(&v) + 256);
    out.push_str("{\"status\":\"success\",\"data\":");
    query_data(&mut out, v, stats);
    annotations(&mut out, warnings, infos);
    out.push('}');
    out
}

/// The `data` object of a query response.
fn query_data(out: &mut String, v: Value, stats: Option<&QueryTimings>) {
    out.push_str("{\"resultType\":");
    string(out, v.type_name());
    out.push_str(",\"result\":");
    match v {
        Value::Scalar { t, v } => point(out, t, v),
        Value::String { t, v } => {
            out.push('[');
            timestamp(out, t);
            out.push(',');
            string(out, &v);
            out.push(']');
        }
        Value::Vector(s) => vector(out, &s),
        Value::Matrix(m) => matrix(out, m),
    }
    if let Some(s) = stats {
        query_stats(out, s);
    }
    out.push('}');
}

/// What a query took, for `stats=`: the engine's counts and the times measured here.
pub(crate) struct QueryTimings {
    pub(crate) stats: kiln_promql::QueryStats,
    /// Seconds waiting for a query slot.
    pub(crate) queue: f64,
    /// Seconds evaluating.
    pub(crate) eval: f64,
}

/// `,"stats":{...}` as Prometheus writes it for `stats=` (the timings Kiln measures and
/// the sample counts), with Kiln's own counts beside them (`peakBytes`, `series`,
/// `slices`).
fn query_stats(out: &mut String, s: &QueryTimings) {
    let _ = write!(
        out,
        ",\"stats\":{{\"timings\":{{\"evalTotalTime\":{},\"execQueueTime\":{},\"execTotalTime\":{}}},\
         \"samples\":{{\"totalQueryableSamples\":{},\"peakSamples\":{},\"peakBytes\":{},\"series\":{},\"slices\":{}}}}}",
        s.eval,
        s.queue,
        s.eval + s.queue,
        s.stats.total_queryable_samples,
        s.stats.peak_samples,
        s.stats.peak_bytes,
        s.stats.series,
        s.stats.slices
    );
}

/// A success envelope around `data` (already JSON), with annotations when present.
pub(crate) fn success(data: &str, warnings: &[String], infos: &[String]) -> String {
    let mut out = String::with_capacity(data.len() + 64);
    out.push_str("{\"status\":\"success\",\"data\":");
    out.push_str(data);
    annotations(&mut out, warnings, infos);
    out.push('}');
    out
}

/// `,"warnings":[...]` and `,"infos":[...]` when there are any.
fn annotations(out: &mut String, warnings: &[String], infos: &[String]) {
    for (key, list) in [("warnings", warnings), ("infos", infos)] {
        if list.is_empty() {
            continue;
        }
        out.push_str(",\"");
        out.push_str(key);
        out.push_str("\":[");
        for (i, w) in list.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            string(out, w);
        }
        out.push(']');
    }
}

/// An error envelope.
pub(crate) fn error(error_type: &str, message: &str) -> String {
    let mut out = String::from("{\"status\":\"error\",\"errorType\":");
    string(&mut out, error_type);
    out.push_str(",\"error\":");
    string(&mut out, message);
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_like_prometheus() {
        let cases: &[(i64, &str)] = &[
            (1_435_781_451_781, "1435781451.781"),
            (1000, "1"),
            (1500, "1.5"),
            (-1500, "-1.5"),
            (0, "0"),
            (10, "0.01"),
        ];
        for (t, want) in cases {
            let mut s = String::new();
            timestamp(&mut s, *t);
            assert_eq!(s, *want);
        }
        let vals: &[(f64, &str)] = &[
            (1.0, "\"1\""),
            (0.5, "\"0.5\""),
            (f64::NAN, "\"NaN\""),
            (f64::INFINITY, "\"+Inf\""),
            // Exponent form below 1e-6 and from 1e21, as Prometheus's JSON writes it.
            (1e21, "\"1e+21\""),
            (1e20, "\"100000000000000000000\""),
            (1e-6, "\"0.000001\""),
            (1e-9, "\"1e-09\""),
            (-2.5e-7, "\"-2.5e-07\""),
        ];
        for (v, want) in vals {
            let mut s = String::new();
            value(&mut s, *v);
            assert_eq!(s, *want);
        }
    }

    /// The ryu path writes what Rust's shortest `Display` writes (Go's `'f', -1`)
    /// over values of every magnitude it handles, integers and negatives included,
    /// except where two 17-digit candidates tie: there it writes what Prometheus 2.42
    /// wrote for the same values.
    #[test]
    fn fast_float_path_writes_go_digits() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut checked = 0;
        for i in 0..300_000u64 {
            // xorshift over bit patterns, then a share of integers and short decimals.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let v = match i % 4 {
                0 => f64::from_bits(x),
                1 => (x % 100_000_000) as f64 * if x & 1 == 0 { 1.0 } else { -1.0 },
                2 => (x % 1_000_000) as f64 / 1000.0,
                _ => (x % 9_000_000 + 1_000_000) as f64 * -1e-12,
            };
            if !v.is_finite() || !(1e-6..1e16).contains(&v.abs()) {
                continue;
            }
            let mut s = String::new();
            value(&mut s, v);
            let display = format!("\"{v}\"");
            if s.len() < 19 {
                assert_eq!(s, display, "{:#x}", v.to_bits());
                checked += 1;
            }
        }
        assert!(checked > 100_000, "{checked}");
        // Query literals as Prometheus parsed and printed them.
        for (literal, prometheus) in [
            ("1658206780088562.25", "\"1658206780088562.2\""),
            ("2251799813685248.25", "\"2251799813685248\""),
            ("1125899906842624.125", "\"1125899906842624\""),
            ("0.30000000000000004", "\"0.30000000000000004\""),
        ] {
            let v: f64 = literal.parse().expect("float literal");
            let mut s = String::new();
            value(&mut s, v);
            assert_eq!(s, prometheus);
        }
    }

    #[test]
    fn envelopes() {
        let v = Value::Vector(vec![Sample::new(
            Labels::from_pairs(&[("__name__", "up"), ("job", "a\"b")]),
            1000,
            1.0,
        )]);
        let mut d = String::new();
        query_data(&mut d, v.clone(), None);
        assert_eq!(
            query_success(v, None, &["w".into()], &[]),
            success(&d, &["w".into()], &[])
        );
        assert_eq!(
            success(&d, &["w".into()], &[]),
            r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"__name__":"up","job":"a\"b"},"value":[1,"1"]}]},"warnings":["w"]}"#
        );
        assert_eq!(
            error("bad_data", "x"),
            r#"{"status":"error","errorType":"bad_data","error":"x"}"#
        );
    }
}
