//! The value types of the schema that are strings in YAML: durations and byte sizes.

use std::fmt;

use serde::{Deserialize, Deserializer};

/// A Prometheus duration (`30s`, `1m30s`, `2h`), held in milliseconds. Displays the way
/// Prometheus prints it: largest units first, zero units left out, years and weeks only
/// when exact, `0s` for zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Duration(pub i64);

impl Duration {
    pub const fn from_secs(s: i64) -> Duration {
        Duration(s * 1000)
    }

    pub fn as_millis(self) -> i64 {
        self.0
    }

    pub fn as_std(self) -> std::time::Duration {
        std::time::Duration::from_millis(self.0.max(0).unsigned_abs())
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&kiln_model::format_duration_ms(self.0))
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        kiln_model::duration::parse_duration_ms(&s)
            .map(Duration)
            .map_err(serde::de::Error::custom)
    }
}

/// A byte size (`body_size_limit`): a number with an optional unit `B`, `KB`, `MB`, `GB`,
/// `TB`, `PB` or `EB` (or the `KiB`... spellings), powers of 1024 as in Prometheus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Size(pub u64);

impl Size {
    /// Parses `10MB`, `1GiB`, `512` (bytes): the forms `body_size_limit` and the
    /// `--storage.tsdb.*` size flags take.
    pub fn parse(s: &str) -> Result<Size, String> {
        let err = || format!("invalid size {s:?}: want a number and a unit (B, KB, MB, GB...)");
        let digits = s.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(err());
        }
        let n: u64 = s[..digits].parse().map_err(|_| err())?;
        let shift = match &s[digits..] {
            "" | "B" => 0,
            "KB" | "KiB" => 10,
            "MB" | "MiB" => 20,
            "GB" | "GiB" => 30,
            "TB" | "TiB" => 40,
            "PB" | "PiB" => 50,
            "EB" | "EiB" => 60,
            _ => return Err(err()),
        };
        n.checked_mul(1u64 << shift).map(Size).ok_or_else(err)
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Size, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Str(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(n) => Ok(Size(n)),
            Raw::Str(s) => Size::parse(&s).map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duration_display_matches_prometheus() {
        for (ms, want) in [
            (0, "0s"),
            (15_000, "15s"),
            (90_000, "1m30s"),
            (3_600_000, "1h"),
            (86_400_000, "1d"),
            (1_500, "1s500ms"),
            (15 * 86_400_000, "15d"),
            (14 * 86_400_000, "2w"),
            (90 * 86_400_000, "90d"),
            (365 * 86_400_000, "1y"),
        ] {
            assert_eq!(Duration(ms).to_string(), want);
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(Size::parse("0"), Ok(Size(0)));
        assert_eq!(Size::parse("512B"), Ok(Size(512)));
        assert_eq!(Size::parse("10MB"), Ok(Size(10 << 20)));
        assert_eq!(Size::parse("1GiB"), Ok(Size(1 << 30)));
        assert!(Size::parse("10 MB").is_err());
        assert!(Size::parse("MB").is_err());
        assert!(Size::parse("99999999EB").is_err());
    }
}
