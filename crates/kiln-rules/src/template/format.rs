//! Number formatting the way Prometheus's templates print numbers: Go's `%g` family
//! (`fmt.Sprint` of a float64 and `%.4g`) and the `humanize*` functions built on it.
//!
//! Humanized output is meant for people, and Prometheus says it may change between
//! versions; these follow Prometheus's current functions digit for digit, so the
//! annotations of a rule read the same on Kiln as on Prometheus.

/// Go's `strconv.FormatFloat(v, 'g', prec, 64)` (`fmt`'s `%.{prec}g`), or with `None`
/// the shortest representation as `fmt.Sprint(v)` prints a float64 (`%v`): exponent
/// form when the decimal exponent is below -4 or at least the precision (6 for the
/// shortest form), two-digit exponents, trailing zeros removed.
pub(crate) fn go_g(v: f64, prec: Option<usize>) -> String {
    let Some(prec) = prec else {
        return kiln_model::format_go_float(v);
    };
    if !v.is_finite() {
        return kiln_model::format_go_float(v);
    }
    if v == 0.0 {
        return if v.is_sign_negative() { "-0" } else { "0" }.into();
    }
    // Scientific form with `prec` significant digits, rounded half to even like Go.
    let prec = prec.max(1);
    let sci = format!("{:.*e}", prec - 1, v);
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if exp < -4 || exp >= prec as i32 {
        let mantissa = trim_fraction(mantissa);
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.unsigned_abs())
    } else {
        // Fixed form with the same significant digits.
        let decimals = (prec as i32 - 1 - exp).max(0) as usize;
        trim_fraction(&format!("{v:.decimals$}")).to_owned()
    }
}

/// Drops trailing zeros of a fraction, and the point when nothing is left after it.
fn trim_fraction(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

/// `%.4g`, the precision the humanize functions print with.
fn g4(v: f64) -> String {
    go_g(v, Some(4))
}

/// `humanize`: SI prefixes (k, M, G, ... and m, u, n, ...), 4 significant digits.
pub(crate) fn humanize(mut v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return g4(v);
    }
    let mut prefix = "";
    if v.abs() >= 1.0 {
        for p in ["k", "M", "G", "T", "P", "E", "Z", "Y"] {
            if v.abs() < 1000.0 {
                break;
            }
            prefix = p;
            v /= 1000.0;
        }
    } else {
        for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
            if v.abs() >= 1.0 {
                break;
            }
            prefix = p;
            v *= 1000.0;
        }
    }
    format!("{}{prefix}", g4(v))
}

/// `humanize1024`: binary prefixes (ki, Mi, Gi, ...), 4 significant digits.
pub(crate) fn humanize1024(mut v: f64) -> String {
    if v.abs() <= 1.0 || !v.is_finite() {
        return g4(v);
    }
    let mut prefix = "";
    for p in ["ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"] {
        if v.abs() < 1024.0 {
            break;
        }
        prefix = p;
        v /= 1024.0;
    }
    format!("{}{prefix}", g4(v))
}

/// `humanizeDuration`: seconds as `1d 2h 3m 4s`, or with SI prefixes below a second.
pub(crate) fn humanize_duration(mut v: f64) -> String {
    if !v.is_finite() {
        return g4(v);
    }
    if v == 0.0 {
        return format!("{}s", g4(v));
    }
    if v.abs() >= 1.0 {
        let sign = if v < 0.0 { "-" } else { "" };
        v = v.abs();
        let whole = v as i64;
        let (seconds, minutes) = (whole % 60, (whole / 60) % 60);
        let (hours, days) = ((whole / 3600) % 24, whole / 86_400);
        return if days != 0 {
            format!("{sign}{days}d {hours}h {minutes}m {seconds}s")
        } else if hours != 0 {
            format!("{sign}{hours}h {minutes}m {seconds}s")
        } else if minutes != 0 {
            format!("{sign}{minutes}m {seconds}s")
        } else {
            format!("{sign}{}s", g4(v))
        };
    }
    let mut prefix = "";
    for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
        if v.abs() >= 1.0 {
            break;
        }
        prefix = p;
        v *= 1000.0;
    }
    format!("{}{prefix}s", g4(v))
}

/// `humanizePercentage`: a ratio as a percentage, 4 significant digits.
pub(crate) fn humanize_percentage(v: f64) -> String {
    format!("{}%", g4(v * 100.0))
}

/// Go's `time.Time` printed by `fmt` in UTC: `2006-01-02 15:04:05.999999999 +0000 UTC`
/// (fraction only when non-zero, trailing zeros dropped), as `humanizeTimestamp` and
/// `toTime` produce.
pub(crate) fn go_time_utc(seconds: f64) -> Option<String> {
    if !seconds.is_finite() {
        return None;
    }
    let nanos = (seconds * 1e9).round();
    // Go's time.Time covers years 1-9999 here; beyond, the value is not a time.
    if nanos.abs() > 2.5e20 {
        return None;
    }
    Some(kiln_model::calendar::go_time_string_utc(nanos as i128))
}

/// Go's `time.Duration.String()`: `1h2m3.5s`, `1.5ms`, `0s`.
pub(crate) fn go_duration(seconds: f64) -> String {
    let nanos = (seconds * 1e9).round();
    if !nanos.is_finite() || nanos.abs() >= 9.2e18 {
        return g4(seconds);
    }
    let nanos = nanos as i64;
    if nanos == 0 {
        return "0s".into();
    }
    let sign = if nanos < 0 { "-" } else { "" };
    let n = nanos.unsigned_abs();
    if n < 1_000_000_000 {
        // Below a second: the largest unit that keeps a whole part.
        let (unit, div) = if n < 1_000 {
            ("ns", 1)
        } else if n < 1_000_000 {
            ("µs", 1_000)
        } else {
            ("ms", 1_000_000)
        };
        return format!("{sign}{}{unit}", fixed_fraction(n, div));
    }
    let (h, rest) = (n / 3_600_000_000_000, n % 3_600_000_000_000);
    let (m, s) = (rest / 60_000_000_000, rest % 60_000_000_000);
    let mut out = String::from(sign);
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0 || m > 0 {
        out.push_str(&format!("{m}m"));
    }
    out.push_str(&format!("{}s", fixed_fraction(s, 1_000_000_000)));
    out
}

/// `n / div` with the fraction's trailing zeros dropped.
fn fixed_fraction(n: u64, div: u64) -> String {
    let (whole, frac) = (n / div, n % div);
    if frac == 0 {
        return whole.to_string();
    }
    let width = div.ilog10() as usize;
    let frac = format!("{frac:0width$}");
    format!("{whole}.{}", frac.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_g_matches_go_fmt() {
        // (value, precision, what Go prints)
        let cases: &[(f64, Option<usize>, &str)] = &[
            (0.5, None, "0.5"),
            (100.0, None, "100"),
            (123456.0, None, "123456"),
            (1234567.0, None, "1.234567e+06"),
            (1e21, None, "1e+21"),
            (0.0001, None, "0.0001"),
            (0.00001, None, "1e-05"),
            (-2.5, None, "-2.5"),
            (f64::INFINITY, None, "+Inf"),
            (f64::NEG_INFINITY, None, "-Inf"),
            (f64::NAN, None, "NaN"),
            (1234.5, Some(4), "1234"),
            (12345.0, Some(4), "1.234e+04"),
            (0.1, Some(4), "0.1"),
            (1.0 / 3.0, Some(4), "0.3333"),
            (99.99, Some(4), "99.99"),
            (0.000012345, Some(4), "1.234e-05"),
            (0.0, Some(4), "0"),
        ];
        for &(v, p, want) in cases {
            assert_eq!(go_g(v, p), want, "{v} {p:?}");
        }
    }

    #[test]
    fn humanize_family_matches_prometheus() {
        assert_eq!(humanize(0.0), "0");
        assert_eq!(humanize(1234567.0), "1.235M");
        assert_eq!(humanize(12.5), "12.5");
        assert_eq!(humanize(0.012), "12m");
        assert_eq!(humanize(-1500.0), "-1.5k");
        assert_eq!(humanize1024(1024.0), "1ki");
        assert_eq!(humanize1024(1536.0 * 1024.0 * 1024.0), "1.5Gi");
        assert_eq!(humanize1024(0.5), "0.5");
        assert_eq!(humanize_duration(0.0), "0s");
        assert_eq!(humanize_duration(1.0), "1s");
        assert_eq!(humanize_duration(60.0), "1m 0s");
        assert_eq!(humanize_duration(3_723.5), "1h 2m 3s");
        assert_eq!(humanize_duration(90_061.0), "1d 1h 1m 1s");
        assert_eq!(humanize_duration(-65.0), "-1m 5s");
        assert_eq!(humanize_duration(0.25), "250ms");
        assert_eq!(humanize_duration(0.0000015), "1.5us");
        assert_eq!(humanize_percentage(0.1234567), "12.35%");
        assert_eq!(humanize_percentage(1.0), "100%");
    }

    #[test]
    fn times_and_durations_print_like_go() {
        assert_eq!(
            go_time_utc(0.0).as_deref(),
            Some("1970-01-01 00:00:00 +0000 UTC")
        );
        assert_eq!(
            go_time_utc(1_435_065_584.128).as_deref(),
            Some("2015-06-23 13:19:44.128 +0000 UTC")
        );
        assert_eq!(
            go_time_utc(-1.0).as_deref(),
            Some("1969-12-31 23:59:59 +0000 UTC")
        );
        assert_eq!(go_time_utc(f64::NAN), None);
        assert_eq!(go_duration(3723.5), "1h2m3.5s");
        assert_eq!(go_duration(60.0), "1m0s");
        assert_eq!(go_duration(0.0015), "1.5ms");
        assert_eq!(go_duration(0.0), "0s");
        assert_eq!(go_duration(-2.0), "-2s");
    }
}
