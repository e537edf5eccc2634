//! Go-compatible formatting of durations, times, byte sizes and tab-aligned tables, so
//! that tool output matches promtool's byte for byte.

/// Formats a duration in milliseconds like Go's `time.Duration.String()`: `2h0m0s`,
/// `1h59m59.999s`, `1.5s`, `999ms`, `0s`.
pub(crate) fn go_duration(ms: i64) -> String {
    if ms == 0 {
        return "0s".into();
    }
    let neg = ms < 0;
    let mut ms = ms.unsigned_abs();
    let sign = if neg { "-" } else { "" };
    if ms < 1000 {
        return format!("{sign}{ms}ms");
    }
    let frac = ms % 1000;
    ms /= 1000;
    let (h, m, s) = (ms / 3600, (ms / 60) % 60, ms % 60);
    let secs = if frac == 0 {
        format!("{s}s")
    } else {
        let f = format!("{frac:03}");
        format!("{s}.{}s", f.trim_end_matches('0'))
    };
    if h > 0 {
        format!("{sign}{h}h{m}m{secs}")
    } else if m > 0 {
        format!("{sign}{m}m{secs}")
    } else {
        format!("{sign}{secs}")
    }
}

/// Formats a ms timestamp like Go's `time.Time.String()` in UTC:
/// `2023-01-02 03:04:05.006 +0000 UTC` (fraction only when non-zero).
pub(crate) fn go_time_utc(ms: i64) -> String {
    kiln_model::calendar::go_time_string_utc(i128::from(ms) * 1_000_000)
}

/// Formats bytes like `units.Base2Bytes.String()` from alecthomas/units, which promtool
/// uses: every non-zero unit from largest to smallest, concatenated (`1KiB512B`, `2MiB`,
/// `0B`).
pub(crate) fn go_base2_bytes(n: u64) -> String {
    const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n == 0 {
        return "0B".into();
    }
    let mut parts = Vec::new();
    let mut rest = n;
    for unit in UNITS {
        if !rest.is_multiple_of(1024) {
            parts.push(format!("{}{unit}", rest % 1024));
        }
        rest /= 1024;
        if rest == 0 {
            break;
        }
    }
    parts.reverse();
    parts.concat()
}

/// Aligns rows like Go's `text/tabwriter` with minwidth 13, tabwidth 0, padding 2 and
/// space padding, as promtool uses: every cell but the last of a row is padded to the
/// widest cell of its column plus two, and to at least 13.
pub(crate) fn tab_align(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0usize; cols];
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(row.len().saturating_sub(1)) {
            widths[i] = widths[i].max(cell.chars().count() + 2).max(13);
        }
    }
    let mut out = String::new();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            out.push_str(cell);
            if i + 1 < row.len() {
                for _ in cell.chars().count()..widths[i] {
                    out.push(' ');
                }
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_like_go() {
        for (ms, want) in [
            (0, "0s"),
            (7_200_000, "2h0m0s"),
            (7_199_999, "1h59m59.999s"),
            (1500, "1.5s"),
            (999, "999ms"),
            (61_000, "1m1s"),
            (86_400_000, "24h0m0s"),
        ] {
            assert_eq!(go_duration(ms), want);
        }
    }

    #[test]
    fn times_like_go() {
        assert_eq!(go_time_utc(0), "1970-01-01 00:00:00 +0000 UTC");
        assert_eq!(
            go_time_utc(1_700_000_000_123),
            "2023-11-14 22:13:20.123 +0000 UTC"
        );
        assert_eq!(
            go_time_utc(951_782_400_000),
            "2000-02-29 00:00:00 +0000 UTC"
        );
    }

    #[test]
    fn bytes_like_units() {
        assert_eq!(go_base2_bytes(512), "512B");
        assert_eq!(go_base2_bytes(1536), "1KiB512B");
        assert_eq!(go_base2_bytes(0), "0B");
        assert_eq!(go_base2_bytes(2 * 1024 * 1024), "2MiB");
    }

    #[test]
    fn tab_alignment() {
        let rows = vec![
            vec!["A".to_string(), "BB".into(), "C".into()],
            vec!["a-very-long-cell".to_string(), "b".into(), "c".into()],
        ];
        assert_eq!(
            tab_align(&rows),
            "A                 BB           C\na-very-long-cell  b            c\n"
        );
    }
}
