//! Prometheus duration strings: `1y2w3d4h5m6s7ms`, units largest first, each at most
//! once; `0` alone is allowed.

/// A duration string that did not parse.
#[derive(Debug, thiserror::Error)]
#[error("not a valid duration string: {0:?}")]
pub struct DurationError(pub String);

const UNITS: [(&str, i64); 7] = [
    ("y", 365 * 24 * 3_600_000),
    ("w", 7 * 24 * 3_600_000),
    ("d", 24 * 3_600_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
];

/// Parses a Prometheus duration into milliseconds.
pub fn parse_duration_ms(s: &str) -> Result<i64, DurationError> {
    let err = || DurationError(s.to_owned());
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(err());
    }
    let mut rest = s;
    let mut total: i64 = 0;
    let mut next_unit = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(err());
        }
        let n: i64 = rest[..digits].parse().map_err(|_| err())?;
        rest = &rest[digits..];
        // "ms" must be tried before "m".
        let (idx, unit) = UNITS
            .iter()
            .enumerate()
            .filter(|(_, (u, _))| rest.starts_with(u))
            .max_by_key(|(_, (u, _))| u.len())
            .ok_or_else(err)?;
        if idx < next_unit {
            return Err(err());
        }
        next_unit = idx + 1;
        rest = &rest[unit.0.len()..];
        total = n
            .checked_mul(unit.1)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(err)?;
    }
    Ok(total)
}

/// Formats milliseconds the way Prometheus prints a duration: largest units first, zero
/// units left out, years and weeks only when they divide exactly (`90d`, not `12w6d`),
/// `0s` for zero.
pub fn format_duration_ms(ms: i64) -> String {
    if ms == 0 {
        return "0s".to_owned();
    }
    let mut out = String::new();
    let mut rest = ms;
    if rest < 0 {
        out.push('-');
        rest = -rest;
    }
    for (i, (unit, size)) in UNITS.into_iter().enumerate() {
        if i < 2 && rest % size != 0 {
            continue;
        }
        if rest >= size {
            out.push_str(&(rest / size).to_string());
            out.push_str(unit);
            rest %= size;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        for (s, want) in [
            ("0", 0),
            ("2h", 7_200_000),
            ("1d12h", 129_600_000),
            ("90s", 90_000),
            ("5m30s100ms", 330_100),
            ("1w", 604_800_000),
        ] {
            assert_eq!(parse_duration_ms(s).expect(s), want, "{s}");
        }
        for bad in [
            "",
            "h",
            "2",
            "1h1d",
            "1h1h",
            "-1h",
            "1x",
            "99999999999999999y",
        ] {
            assert!(parse_duration_ms(bad).is_err(), "{bad}");
        }
    }
}
