//! Request parameters of the Prometheus HTTP API: form decoding (URL query and POST
//! body, with repeated `match[]`), timestamps (RFC 3339 or Unix seconds) and durations
//! (Prometheus durations or float seconds).

use super::ApiError;

/// Decoded request parameters, in order, repeated names kept.
#[derive(Debug, Default)]
pub(crate) struct Params(Vec<(String, String)>);

impl Params {
    /// Decodes `application/x-www-form-urlencoded` text (a URL query or a POST body).
    pub(crate) fn parse(raw: &[u8]) -> Params {
        Params(
            form_urlencoded::parse(raw)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// Adds the parameters of another source (the body after the URL query).
    pub(crate) fn extend(&mut self, other: Params) {
        self.0.extend(other.0);
    }

    /// The first value of `name`, if present and non-empty.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `name`.
    pub(crate) fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// The smallest and largest times Prometheus accepts, in ms (its `minTime`/`maxTime`).
pub(crate) const MIN_TIME: i64 = -9_223_309_901_257_974;
pub(crate) const MAX_TIME: i64 = 9_223_309_901_257_974;

/// Parses a timestamp: Unix seconds with an optional fraction, or RFC 3339.
pub(crate) fn parse_time(s: &str, what: &str) -> Result<i64, ApiError> {
    let bad = || {
        ApiError::bad_data(format!(
            "invalid parameter {what:?}: cannot parse {s:?} to a valid timestamp"
        ))
    };
    if let Ok(secs) = s.parse::<f64>() {
        if !secs.is_finite() {
            return Err(bad());
        }
        let ms = (secs * 1000.0).round();
        return Ok(ms.clamp(MIN_TIME as f64, MAX_TIME as f64) as i64);
    }
    kiln_model::calendar::parse_rfc3339_ms(s).ok_or_else(bad)
}

/// Parses a duration: a Prometheus duration (`5m`) or float seconds (`300`, `1.5`).
pub(crate) fn parse_duration(s: &str, what: &str) -> Result<i64, ApiError> {
    if let Ok(secs) = s.parse::<f64>() {
        let ms = secs * 1000.0;
        if !ms.is_finite() || ms.abs() > MAX_TIME as f64 {
            return Err(ApiError::bad_data(format!(
                "invalid parameter {what:?}: cannot parse {s:?} to a valid duration. It overflows int64"
            )));
        }
        return Ok(ms.round() as i64);
    }
    kiln_model::parse_duration_ms(s).map_err(|_| {
        ApiError::bad_data(format!(
            "invalid parameter {what:?}: cannot parse {s:?} to a valid duration"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        let cases: &[(&str, i64)] = &[
            ("1435781451.781", 1_435_781_451_781),
            ("0", 0),
            ("-1.5", -1500),
            ("2015-07-01T20:10:51.781Z", 1_435_781_451_781),
            ("2015-07-01T20:10:51Z", 1_435_781_451_000),
            ("2015-07-01T22:10:51.781+02:00", 1_435_781_451_781),
            ("1970-01-01T00:00:00.5Z", 500),
        ];
        for (s, want) in cases {
            assert_eq!(parse_time(s, "time").expect(s), *want, "{s}");
        }
        for bad in [
            "",
            "abc",
            "2015-07-01",
            "2015-13-01T00:00:00Z",
            "NaN",
            "Inf",
        ] {
            assert!(parse_time(bad, "time").is_err(), "{bad}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("15s", "step").expect("15s"), 15_000);
        assert_eq!(parse_duration("1.5", "step").expect("1.5"), 1_500);
        assert_eq!(parse_duration("1h30m", "step").expect("1h30m"), 5_400_000);
        assert!(parse_duration("x", "step").is_err());
        assert!(parse_duration("1e300", "step").is_err());
    }

    #[test]
    fn repeated_params() {
        let p = Params::parse(b"match%5B%5D=up&match%5B%5D=%7Bjob%3D%22a%22%7D&start=1");
        assert_eq!(p.all("match[]"), vec!["up", "{job=\"a\"}"]);
        assert_eq!(p.get("start"), Some("1"));
        assert_eq!(p.get("end"), None);
    }
}
