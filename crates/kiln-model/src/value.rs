//! Sample values: the staleness marker and Go-compatible float formatting.

/// The bit pattern of Prometheus's staleness marker, a NaN that no computation produces.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// The staleness marker as an `f64`. Compare with [`is_stale_nan`], never with `==`.
pub const STALE_NAN: f64 = f64::from_bits(STALE_NAN_BITS);

/// Whether `v` is exactly the staleness marker (not any other NaN).
pub fn is_stale_nan(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// Formats `v` as Go's `strconv.FormatFloat(v, 'e', -1, 64)` does (`'E'` when `upper`):
/// the shortest round-trip digits in exponent form with a sign and at least two exponent
/// digits (`1e+00`, `1.55E+01`); `+Inf`, `-Inf`, `NaN`. Prometheus writes alert values
/// this way, and promtool the values of rule test failures.
pub fn format_go_float_exp(v: f64, upper: bool) -> String {
    if !v.is_finite() {
        return format_go_float(v);
    }
    let d = ShortestDigits::of(v);
    let mut out = String::with_capacity(24);
    if d.is_negative() {
        out.push('-');
    }
    push_exponent_form(&mut out, d.digits(), d.exp(), if upper { 'E' } else { 'e' });
    out
}

/// The shortest decimal digits that read back as a finite `f64`, as Go's strconv picks
/// them: where two shortest candidates are equally close, the even one (ryu does the
/// same; Rust's `Display` picks the upper one). No allocation.
pub struct ShortestDigits {
    negative: bool,
    buf: [u8; 17],
    len: usize,
    exp: i32,
}

impl ShortestDigits {
    /// The digits of `v`, which must be finite: 1234.5 gives "12345" with exponent 3,
    /// 0.0012 "12" with -3, zero "0" with 0.
    pub fn of(v: f64) -> ShortestDigits {
        let mut text = ryu::Buffer::new();
        let s = text.format_finite(v).as_bytes();
        let (negative, s) = match s.split_first() {
            Some((b'-', rest)) => (true, rest),
            _ => (false, s),
        };
        let e_at = s.iter().position(|&c| c == b'e').unwrap_or(s.len());
        let mut out = ShortestDigits {
            negative,
            buf: [b'0'; 17],
            len: 0,
            exp: 0,
        };
        // Digits before the point, and zeros before the first significant digit.
        let (mut int_len, mut leading, mut in_fraction) = (0i32, 0i32, false);
        for &c in &s[..e_at] {
            if c == b'.' {
                in_fraction = true;
                continue;
            }
            if !in_fraction {
                int_len += 1;
            }
            if out.len == 0 && c == b'0' {
                leading += 1;
            } else if out.len < out.buf.len() {
                out.buf[out.len] = c;
                out.len += 1;
            }
        }
        while out.len > 0 && out.buf[out.len - 1] == b'0' {
            out.len -= 1;
        }
        if out.len == 0 {
            out.len = 1;
            return out;
        }
        let written_exp = s.get(e_at + 1..).map_or(0, |e| {
            let (sign, digits) = match e.split_first() {
                Some((b'-', rest)) => (-1, rest),
                _ => (1, e),
            };
            sign * digits
                .iter()
                .fold(0i32, |n, &d| n * 10 + i32::from(d.wrapping_sub(b'0')))
        });
        out.exp = int_len - leading - 1 + written_exp;
        out
    }

    pub fn is_negative(&self) -> bool {
        self.negative
    }

    /// The significant digits, ASCII, at least one.
    pub fn digits(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// The decimal exponent of the first digit.
    pub fn exp(&self) -> i32 {
        self.exp
    }
}

fn push_digits(out: &mut String, digits: &[u8]) {
    out.extend(digits.iter().map(|&d| char::from(d)));
}

/// `d.ddde+XX`: the digits with a point after the first, and a signed exponent of at
/// least two digits.
fn push_exponent_form(out: &mut String, digits: &[u8], exp: i32, e: char) {
    push_digits(out, &digits[..1]);
    if digits.len() > 1 {
        out.push('.');
        push_digits(out, &digits[1..]);
    }
    out.push(e);
    out.push(if exp < 0 { '-' } else { '+' });
    let a = exp.unsigned_abs();
    if a < 10 {
        out.push('0');
    }
    out.push_str(&a.to_string());
}

/// Formats `v` as Go's `fmt` verb `%g` does (`strconv.FormatFloat(v, 'g', -1, 64)`):
/// the shortest representation that round-trips, in exponent form when the decimal
/// exponent is below -4 or at least 6 (Go's rule for the shortest `%g`), else plain; `+Inf`, `-Inf`, `NaN`.
/// `promtool tsdb dump` prints values this way.
pub fn format_go_float(v: f64) -> String {
    if v.is_nan() {
        return "NaN".to_owned();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.to_owned();
    }
    let d = ShortestDigits::of(v);
    let (digits, exp) = (d.digits(), d.exp());
    let mut out = String::with_capacity(24);
    if d.is_negative() {
        out.push('-');
    }
    if !(-4..6).contains(&exp) {
        push_exponent_form(&mut out, digits, exp, 'e');
    } else if exp < 0 {
        out.push_str("0.");
        for _ in 0..(-exp - 1) {
            out.push('0');
        }
        push_digits(&mut out, digits);
    } else {
        let point = exp as usize + 1;
        if digits.len() <= point {
            push_digits(&mut out, digits);
            for _ in digits.len()..point {
                out.push('0');
            }
        } else {
            push_digits(&mut out, &digits[..point]);
            out.push('.');
            push_digits(&mut out, &digits[point..]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_nan_is_distinct() {
        assert!(is_stale_nan(STALE_NAN));
        assert!(!is_stale_nan(f64::NAN));
        assert!(STALE_NAN.is_nan());
    }

    #[test]
    fn go_g_formatting() {
        let cases: &[(f64, &str)] = &[
            (0.0, "0"),
            (-0.0, "-0"),
            (1.0, "1"),
            (1.5, "1.5"),
            (123456.0, "123456"),
            (1e6, "1e+06"),
            (1234567.0, "1.234567e+06"),
            (1e20, "1e+20"),
            (999999.0, "999999"),
            (100000.5, "100000.5"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (-2.5e-7, "-2.5e-07"),
            (1e100, "1e+100"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (f64::NAN, "NaN"),
            (0.1, "0.1"),
            (100.0, "100"),
        ];
        for (v, want) in cases {
            assert_eq!(format_go_float(*v), *want, "value {v}");
        }
    }

    /// Ties between two shortest candidates go to the even digit, as Go (and
    /// Prometheus's output) has them; everywhere else the digits are Rust's shortest.
    #[test]
    fn shortest_digits_are_gos() {
        let tie: f64 = "1658206780088562.25".parse().expect("literal");
        assert_eq!(format_go_float(tie), "1.6582067800885622e+15");
        assert_eq!(format_go_float_exp(tie, true), "1.6582067800885622E+15");
        assert_eq!(format_go_float_exp(1.0, false), "1e+00");
        assert_eq!(format_go_float_exp(-15.5, false), "-1.55e+01");
        assert_eq!(format_go_float_exp(1e-300, false), "1e-300");
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..100_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let v = f64::from_bits(x);
            if !v.is_finite() {
                continue;
            }
            let d = ShortestDigits::of(v);
            let digits = std::str::from_utf8(d.digits()).expect("ascii digits");
            let sign = if d.is_negative() { "-" } else { "" };
            let text = format!("{sign}{}.{}e{}", &digits[..1], &digits[1..], d.exp());
            assert_eq!(text.parse::<f64>().ok(), Some(v), "{v:e} -> {text}");
            // Rust's shortest has the same number of digits.
            let rust = format!("{v:e}");
            let rust_digits = rust
                .trim_start_matches('-')
                .split('e')
                .next()
                .unwrap_or("")
                .replace('.', "");
            assert_eq!(digits.len(), rust_digits.len(), "{v:e}");
        }
    }
}
