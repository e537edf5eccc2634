//! Encoders for the text format 0.0.4 and OpenMetrics 1.0 text, appending into a
//! caller-owned `Vec<u8>`. The output rules are in `docs/format/encoding.md`.
//!
//! Allocation: no function here allocates on the heap; the only allocation is the
//! growth of the output vector, which callers avoid by reusing it (`clear()` between
//! documents keeps its capacity). Floats are formatted through a stack buffer.

use std::fmt::Write as _;

use kiln_model::{Labels, METRIC_NAME};

use crate::MetricType;

/// A metric family's metadata, as written in the `# HELP`, `# TYPE` and `# UNIT` lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricFamily<'a> {
    /// The family name as Prometheus stores it (a counter's name usually ends in
    /// `_total`; the OpenMetrics header writes it without that suffix).
    pub name: &'a str,
    /// The help text, unescaped. `None` writes no `# HELP` line.
    pub help: Option<&'a str>,
    /// The type. [`MetricType::Unknown`] is written `untyped` (text) or `unknown`
    /// (OpenMetrics).
    pub kind: MetricType,
    /// The unit (OpenMetrics only; the text format has no unit line). `None`, an empty
    /// unit, or one the family name does not end with writes no `# UNIT` line.
    pub unit: Option<&'a str>,
}

// ---- Text format 0.0.4 ----

/// [`encode_text_family_header`] for a family with help and no unit: what a server's
/// own metrics need.
pub fn encode_text_header(out: &mut Vec<u8>, name: &str, help: &str, kind: MetricType) {
    encode_text_family_header(
        out,
        &MetricFamily {
            name,
            help: Some(help),
            kind,
            unit: None,
        },
    );
}

/// Appends the text-format header of a family: `# HELP name text` (when there is help;
/// `\` and newline escaped) and `# TYPE name type`.
///
/// Types the text format lacks (`gaugehistogram`, `info`, `stateset`) and
/// [`MetricType::Unknown`] are written `untyped`. Allocates nothing beyond `out`'s
/// growth.
pub fn encode_text_family_header(out: &mut Vec<u8>, family: &MetricFamily<'_>) {
    if let Some(help) = family.help {
        out.extend_from_slice(b"# HELP ");
        out.extend_from_slice(family.name.as_bytes());
        out.push(b' ');
        escape_into(out, help, false);
        out.push(b'\n');
    }
    out.extend_from_slice(b"# TYPE ");
    out.extend_from_slice(family.name.as_bytes());
    out.push(b' ');
    let kind = match family.kind {
        MetricType::Counter => "counter",
        MetricType::Gauge => "gauge",
        MetricType::Histogram => "histogram",
        MetricType::Summary => "summary",
        MetricType::GaugeHistogram
        | MetricType::Info
        | MetricType::StateSet
        | MetricType::Unknown => "untyped",
    };
    out.extend_from_slice(kind.as_bytes());
    out.push(b'\n');
}

/// Appends one text-format sample line:
/// `name{label="value",...} value [timestamp_ms]\n`.
///
/// `labels` must hold the metric name as `__name__`; the other labels are written in
/// their (sorted) order, values escaped (`\\`, `\"`, `\n`), `{}` left out when there
/// are none. The value is written as Prometheus's text encoder writes it (Go's
/// `strconv.FormatFloat(v, 'g', -1, 64)`, `+Inf`, `-Inf`, `NaN`; negative zero as `0`).
/// Allocates nothing beyond `out`'s growth.
pub fn encode_text_sample(
    out: &mut Vec<u8>,
    labels: &Labels,
    value: f64,
    timestamp_ms: Option<i64>,
) {
    encode_text_sample_with_extra(out, labels, &[], value, timestamp_ms);
}

/// [`encode_text_sample`] with `extra` pairs written after the series' own labels, in
/// the given order and even when a value is empty. Federation uses it to append external
/// labels the way Prometheus does (including `instance=""`). The caller keeps `extra`
/// free of names `labels` already has.
pub fn encode_text_sample_with_extra(
    out: &mut Vec<u8>,
    labels: &Labels,
    extra: &[(&str, &str)],
    value: f64,
    timestamp_ms: Option<i64>,
) {
    encode_series(out, labels, "");
    if !extra.is_empty() {
        let closed = labels.iter().any(|l| l.name != METRIC_NAME);
        if closed {
            // Reopen the `{...}` encode_series closed.
            out.pop();
        }
        for (i, (name, v)) in extra.iter().enumerate() {
            out.push(if i == 0 && !closed { b'{' } else { b',' });
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b"=\"");
            escape_into(out, v, true);
            out.push(b'"');
        }
        out.push(b'}');
    }
    out.push(b' ');
    write_text_float(out, value);
    if let Some(ts) = timestamp_ms {
        out.push(b' ');
        write_i64(out, ts);
    }
    out.push(b'\n');
}

// ---- OpenMetrics 1.0 ----

/// Appends the OpenMetrics header of a family: `# HELP` (when there is help; `\`,
/// newline and `"` escaped), `# TYPE` and `# UNIT` (when there is a unit that the
/// family name ends with).
///
/// A counter's family name is written without its `_total` suffix, as OpenMetrics
/// requires (`http_requests_total` becomes family `http_requests`). Allocates nothing
/// beyond `out`'s growth.
pub fn encode_openmetrics_family_header(out: &mut Vec<u8>, family: &MetricFamily<'_>) {
    let name = openmetrics_family_name(family);
    if let Some(help) = family.help {
        out.extend_from_slice(b"# HELP ");
        out.extend_from_slice(name.as_bytes());
        out.push(b' ');
        escape_into(out, help, true);
        out.push(b'\n');
    }
    out.extend_from_slice(b"# TYPE ");
    out.extend_from_slice(name.as_bytes());
    out.push(b' ');
    out.extend_from_slice(family.kind.as_str().as_bytes());
    out.push(b'\n');
    if let Some(unit) = family.unit.filter(|u| !u.is_empty() && name.ends_with(u)) {
        out.extend_from_slice(b"# UNIT ");
        out.extend_from_slice(name.as_bytes());
        out.push(b' ');
        out.extend_from_slice(unit.as_bytes());
        out.push(b'\n');
    }
}

/// The name [`encode_openmetrics_family_header`] writes for `family`: without `_total`
/// for a counter.
pub fn openmetrics_family_name<'a>(family: &MetricFamily<'a>) -> &'a str {
    match family.kind {
        MetricType::Counter => family
            .name
            .strip_suffix("_total")
            .filter(|n| !n.is_empty())
            .unwrap_or(family.name),
        _ => family.name,
    }
}

/// Appends one OpenMetrics sample line: `name{labels} value [timestamp]\n`.
///
/// `kind` is the family's type. A counter sample whose name ends in neither `_total`
/// nor `_created` gets `_total` appended, as OpenMetrics requires. Values are written
/// like Prometheus's OpenMetrics encoder (Go's shortest `%g`, with `.0` added to
/// integers: `1.0`, `1e+06`, `0.5`). The timestamp is written in seconds, exactly:
/// `1700000000123` ms becomes `1700000000.123`. When the nearest float64 to that
/// decimal, times 1000 and truncated (as Prometheus 2.42 and [`crate::Parser`] read it),
/// would not give back the same millisecond, the next float64 toward the right one is
/// written instead in its shortest form (`1005` ms is written `1.0050000000000001`), so
/// timestamps round-trip exactly for |ts| below 2^43 ms (until the year ~280,000; beyond
/// that float64 seconds are coarser than a millisecond). Allocates nothing beyond
/// `out`'s growth.
pub fn encode_openmetrics_sample(
    out: &mut Vec<u8>,
    kind: MetricType,
    labels: &Labels,
    value: f64,
    timestamp_ms: Option<i64>,
) {
    let suffix = match kind {
        MetricType::Counter => {
            let name = labels.metric_name().unwrap_or("");
            if name.ends_with("_total") || name.ends_with("_created") {
                ""
            } else {
                "_total"
            }
        }
        _ => "",
    };
    encode_series(out, labels, suffix);
    out.push(b' ');
    write_openmetrics_float(out, value);
    if let Some(ts) = timestamp_ms {
        out.push(b' ');
        write_openmetrics_timestamp(out, ts);
    }
    out.push(b'\n');
}

/// Appends the closing `# EOF\n` line every OpenMetrics document ends with.
pub fn encode_openmetrics_eof(out: &mut Vec<u8>) {
    out.extend_from_slice(b"# EOF\n");
}

// ---- Shared pieces ----

/// `name[suffix]{l="v",...}`, the name taken from `__name__`.
fn encode_series(out: &mut Vec<u8>, labels: &Labels, name_suffix: &str) {
    debug_assert!(labels.metric_name().is_some(), "labels without __name__");
    out.extend_from_slice(labels.metric_name().unwrap_or("").as_bytes());
    out.extend_from_slice(name_suffix.as_bytes());
    let mut first = true;
    for l in labels.iter() {
        if l.name == METRIC_NAME {
            continue;
        }
        out.push(if first { b'{' } else { b',' });
        first = false;
        out.extend_from_slice(l.name.as_bytes());
        out.extend_from_slice(b"=\"");
        escape_into(out, l.value, true);
        out.push(b'"');
    }
    if !first {
        out.push(b'}');
    }
}

/// Escapes `\` and newline, and `"` when `quote`.
fn escape_into(out: &mut Vec<u8>, s: &str, quote: bool) {
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'"' if quote => b"\\\"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(esc);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

/// A value as client_golang's text encoder writes it.
fn write_text_float(out: &mut Vec<u8>, v: f64) {
    if v == 0.0 {
        out.push(b'0'); // also -0, as Go's `f == 0` case does
    } else {
        write_go_g(out, v);
    }
}

/// A value as client_golang's OpenMetrics encoder writes it: Go `%g`, with `.0`
/// appended when the result has neither `.` nor `e`.
fn write_openmetrics_float(out: &mut Vec<u8>, v: f64) {
    if v == 0.0 {
        out.extend_from_slice(b"0.0");
        return;
    }
    let start = out.len();
    write_go_g(out, v);
    if v.is_finite() && !out[start..].iter().any(|&b| b == b'.' || b == b'e') {
        out.extend_from_slice(b".0");
    }
}

/// Go's `strconv.FormatFloat(v, 'g', -1, 64)`: shortest round-trip digits, exponent
/// form (`d.ddde±XX`, at least two exponent digits) when the decimal exponent is below
/// -4 or at least 6; `+Inf`, `-Inf`, `NaN`.
pub(crate) fn write_go_g(out: &mut Vec<u8>, v: f64) {
    if v.is_nan() {
        out.extend_from_slice(b"NaN");
        return;
    }
    if v.is_infinite() {
        out.extend_from_slice(if v > 0.0 { b"+Inf" } else { b"-Inf" });
        return;
    }
    // The shortest digits as Go picks them (ties to even), without allocating.
    let d = kiln_model::ShortestDigits::of(v);
    let (digits, exp) = (d.digits(), d.exp());
    if d.is_negative() {
        out.push(b'-');
    }
    if !(-4..6).contains(&exp) {
        out.push(digits[0]);
        if digits.len() > 1 {
            out.push(b'.');
            out.extend_from_slice(&digits[1..]);
        }
        out.push(b'e');
        out.push(if exp < 0 { b'-' } else { b'+' });
        let a = exp.unsigned_abs();
        if a < 10 {
            out.push(b'0');
        }
        write_u64(out, u64::from(a));
    } else if exp < 0 {
        out.extend_from_slice(b"0.");
        for _ in 0..(-exp - 1) {
            out.push(b'0');
        }
        out.extend_from_slice(digits);
    } else {
        // exp in 0..6: the point goes after exp+1 digits.
        let point = exp as usize + 1;
        if digits.len() <= point {
            out.extend_from_slice(digits);
            out.resize(out.len() + point - digits.len(), b'0');
        } else {
            out.extend_from_slice(&digits[..point]);
            out.push(b'.');
            out.extend_from_slice(&digits[point..]);
        }
    }
}

/// Milliseconds as exact decimal seconds, nudged so that Prometheus's
/// `int64(seconds * 1000)` gives them back (see [`encode_openmetrics_sample`]).
fn write_openmetrics_timestamp(out: &mut Vec<u8>, ts: i64) {
    // The float64 a parser gets for the exact decimal ts/1000 (both are the correctly
    // rounded value of the same rational, for |ts| below 2^53).
    let mut secs = ts as f64 / 1000.0;
    let reads_back = |s: f64| {
        let ms = s * 1000.0;
        ms.is_finite() && (ms as i64) == ts
    };
    if reads_back(secs) || ts.unsigned_abs() >= 1 << 53 {
        write_decimal_seconds(out, ts);
        return;
    }
    // Truncation toward zero: move away from zero until it reads back.
    for _ in 0..4 {
        secs = if ts > 0 {
            secs.next_up()
        } else {
            secs.next_down()
        };
        if reads_back(secs) {
            let mut buf = StackBuf::new();
            // Shortest round-trip digits, never in exponent form for `{}`; at most
            // 16 integer digits here (|ts| < 2^53 ms).
            let _ = write!(buf, "{secs}");
            out.extend_from_slice(buf.as_bytes());
            return;
        }
    }
    write_decimal_seconds(out, ts);
}

/// `ts` ms as `S` or `S.f` with up to three fraction digits, trailing zeros dropped.
fn write_decimal_seconds(out: &mut Vec<u8>, ts: i64) {
    if ts < 0 {
        out.push(b'-');
    }
    let a = ts.unsigned_abs();
    write_u64(out, a / 1000);
    let frac = a % 1000;
    if frac != 0 {
        let digits = [
            b'0' + (frac / 100) as u8,
            b'0' + (frac / 10 % 10) as u8,
            b'0' + (frac % 10) as u8,
        ];
        let keep = if frac.is_multiple_of(100) {
            1
        } else if frac.is_multiple_of(10) {
            2
        } else {
            3
        };
        out.push(b'.');
        out.extend_from_slice(&digits[..keep]);
    }
}

fn write_i64(out: &mut Vec<u8>, v: i64) {
    if v < 0 {
        out.push(b'-');
    }
    write_u64(out, v.unsigned_abs());
}

fn write_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// A fixed stack buffer for `write!` of one float.
struct StackBuf {
    buf: [u8; 32],
    len: usize,
}

impl StackBuf {
    fn new() -> Self {
        StackBuf {
            buf: [0; 32],
            len: 0,
        }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl std::fmt::Write for StackBuf {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        let dst = self.buf.get_mut(self.len..end).ok_or(std::fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(v: f64) -> String {
        let mut out = Vec::new();
        write_go_g(&mut out, v);
        String::from_utf8(out).unwrap_or_default()
    }

    #[test]
    fn go_g_matches_model_formatter() {
        let mut vals = vec![
            0.0,
            -0.0,
            1.0,
            -1.0,
            1.5,
            123456.0,
            1e6,
            1234567.0,
            1e20,
            999999.0,
            100000.5,
            0.0001,
            0.00001,
            -2.5e-7,
            1e100,
            0.1,
            100.0,
            5e-324,
            1.7976931348623157e308,
            12.0,
            120.0,
            1200.5,
            0.00012345,
            1e-5,
            9.999e5,
            1e21,
            3e-5,
        ];
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let v = f64::from_bits(state);
            if v.is_finite() {
                vals.push(v);
            }
            vals.push((state % 10_000_000) as f64 / 1000.0);
        }
        for v in vals {
            assert_eq!(g(v), kiln_model::format_go_float(v), "{v:e}");
        }
    }

    #[test]
    fn decimal_seconds() {
        let cases: &[(i64, &str)] = &[
            (0, "0"),
            (1000, "1"),
            (1500, "1.5"),
            (1005, "1.0050000000000001"),
            (1_700_000_000_123, "1700000000.123"),
            (5, "0.005"),
            (50, "0.05"),
            (-1500, "-1.5"),
            (-5, "-0.005"),
        ];
        for (ts, want) in cases {
            let mut out = Vec::new();
            write_openmetrics_timestamp(&mut out, *ts);
            assert_eq!(String::from_utf8_lossy(&out), *want, "{ts}");
        }
    }
}
