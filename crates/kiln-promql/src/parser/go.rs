//! Go's literal rules where PromQL inherits them: number and string literals are read
//! as Go's `strconv` reads them, and error messages quote as Go's `%q` and `%#U` do,
//! since users (and tests) compare Kiln's messages with Prometheus's.

use std::fmt::Write as _;

/// `%q` of a string (Go's `strconv.Quote`).
pub(crate) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    kiln_model::labels::go_quote_into(&mut out, s);
    out
}

/// `%q` of a rune (Go's `strconv.QuoteRune`): `'x'`, with `'` and control characters
/// escaped and `"` as it is.
pub(crate) fn quote_rune(c: char) -> String {
    match c {
        '\'' => "'\\''".to_owned(),
        '"' => "'\"'".to_owned(),
        c => {
            let q = quote(c.encode_utf8(&mut [0; 4]));
            format!("'{}'", &q[1..q.len() - 1])
        }
    }
}

/// `%#U` of a rune: `U+0071 'q'` (the character left out when it does not print).
pub(crate) fn format_u(c: char) -> String {
    let mut out = format!("U+{:04X}", c as u32);
    let q = quote(c.encode_utf8(&mut [0; 4]));
    if q.len() == c.len_utf8() + 2 && !c.is_control() {
        let _ = write!(out, " '{c}'");
    }
    out
}

/// A number literal's value as Prometheus computes it: an integer in Go's base-0
/// syntax (`0x1F`, `017` octal, `1_000`), else a float (`1e3`, `.5`, `Inf`, `NaN`).
/// `Err` carries the text of Go's `strconv.ParseFloat` error.
pub(crate) fn parse_number(text: &str) -> Result<f64, String> {
    if let Some(i) = parse_int_base0(text) {
        return Ok(i as f64);
    }
    parse_float(text)
}

/// Go's `strconv.ParseInt(s, 0, 64)` for the texts the lexer lets through (no sign).
fn parse_int_base0(text: &str) -> Option<i64> {
    let (digits, radix) =
        if let Some(rest) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
            (rest.strip_prefix('_').unwrap_or(rest), 16)
        } else if text.len() > 1 && text.starts_with('0') {
            (&text[1..], 8)
        } else {
            (text, 10)
        };
    if !underscores_ok(digits) {
        return None;
    }
    let clean: String = digits.chars().filter(|&c| c != '_').collect();
    if clean.is_empty() {
        return None;
    }
    i64::from_str_radix(&clean, radix).ok()
}

/// Underscores only between digits.
fn underscores_ok(digits: &str) -> bool {
    let b = digits.as_bytes();
    b.iter().enumerate().all(|(i, &c)| {
        c != b'_'
            || (i > 0
                && b[i - 1].is_ascii_alphanumeric()
                && b.get(i + 1).is_some_and(u8::is_ascii_alphanumeric))
    })
}

/// Go's `strconv.ParseFloat(s, 64)` for decimal texts, infinities and NaN.
fn parse_float(text: &str) -> Result<f64, String> {
    let syntax = || {
        format!(
            "strconv.ParseFloat: parsing {}: invalid syntax",
            quote(text)
        )
    };
    let lower = text.to_ascii_lowercase();
    match lower.as_str() {
        "inf" | "+inf" | "infinity" | "+infinity" => return Ok(f64::INFINITY),
        "-inf" | "-infinity" => return Ok(f64::NEG_INFINITY),
        "nan" => return Ok(f64::NAN),
        _ => {}
    }
    let mantissa_end = lower.find('e').unwrap_or(lower.len());
    if !underscores_ok(&text[..mantissa_end]) || text[mantissa_end..].contains('_') {
        return Err(syntax());
    }
    let clean: String = text.chars().filter(|&c| c != '_').collect();
    if clean.starts_with("0x") || clean.starts_with("0X") {
        return Err(syntax());
    }
    let v: f64 = clean.parse().map_err(|_| syntax())?;
    if v.is_infinite() {
        return Err(format!(
            "strconv.ParseFloat: parsing {}: value out of range",
            quote(text)
        ));
    }
    Ok(v)
}

/// A number as Go's `strconv.FormatFloat(v, 'f', -1, 64)` writes it: the shortest
/// digits that read back exactly, never an exponent; `+Inf`, `-Inf`, `NaN`.
pub(crate) fn format_float(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_owned()
    } else if v == f64::INFINITY {
        "+Inf".to_owned()
    } else if v == f64::NEG_INFINITY {
        "-Inf".to_owned()
    } else {
        // Rust's `Display` for floats is the shortest round-trip form without an
        // exponent, as Go's 'f' with precision -1.
        format!("{v}")
    }
}

/// A string literal's value (Prometheus's `strutil.Unquote`): `"..."` and `'...'` with
/// Go's escapes, `` `...` `` as written. The lexer has already checked the escapes;
/// bytes written as `\x` or octal escapes that do not form UTF-8 become U+FFFD.
pub(crate) fn unquote(literal: &str) -> Result<String, String> {
    let invalid = || "invalid syntax".to_owned();
    let quote = literal.chars().next().ok_or_else(invalid)?;
    if literal.len() < 2 || !literal.ends_with(quote) {
        return Err(invalid());
    }
    let body = &literal[1..literal.len() - 1];
    if quote == '`' {
        return if body.contains('`') {
            Err(invalid())
        } else {
            Ok(body.to_owned())
        };
    }
    if quote != '"' && quote != '\'' {
        return Err(invalid());
    }
    if !body.contains('\\') {
        return Ok(body.to_owned());
    }
    let mut bytes: Vec<u8> = Vec::with_capacity(body.len());
    let mut chars = body.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            let mut buf = [0u8; 4];
            bytes.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        let e = chars.next().ok_or_else(invalid)?;
        let simple = match e {
            'a' => Some(0x07u8),
            'b' => Some(0x08),
            'f' => Some(0x0c),
            'n' => Some(b'\n'),
            'r' => Some(b'\r'),
            't' => Some(b'\t'),
            'v' => Some(0x0b),
            '\\' => Some(b'\\'),
            '\'' | '"' => Some(e as u8),
            _ => None,
        };
        if let Some(b) = simple {
            bytes.push(b);
            continue;
        }
        let (count, radix, is_byte) = match e {
            '0'..='7' => (2, 8, true),
            'x' => (2, 16, true),
            'u' => (4, 16, false),
            'U' => (8, 16, false),
            _ => return Err(invalid()),
        };
        let mut value = if e.is_digit(8) && radix == 8 {
            e.to_digit(8).unwrap_or(0)
        } else {
            0
        };
        for _ in 0..count {
            let d = chars
                .next()
                .and_then(|c| c.to_digit(radix))
                .ok_or_else(invalid)?;
            value = value * radix + d;
        }
        if is_byte {
            bytes.push(u8::try_from(value).map_err(|_| invalid())?);
        } else {
            let c = char::from_u32(value).ok_or_else(invalid)?;
            let mut buf = [0u8; 4];
            bytes.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        }
    }
    Ok(match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        for (text, want) in [
            ("1", 1.0),
            ("0x1F", 31.0),
            ("0X_1f", 31.0),
            ("017", 15.0),
            ("09", 9.0),
            ("1_000", 1000.0),
            ("1e3", 1000.0),
            ("1.5e-3", 0.0015),
            (".5", 0.5),
            ("5.", 5.0),
            ("1_000.5", 1000.5),
            ("Inf", f64::INFINITY),
            ("99999999999999999999", 1e20),
        ] {
            assert_eq!(parse_number(text), Ok(want), "{text}");
        }
        assert!(parse_number("NaN").is_ok_and(f64::is_nan));
        assert_eq!(
            parse_number("1e400"),
            Err("strconv.ParseFloat: parsing \"1e400\": value out of range".to_owned())
        );
    }

    #[test]
    fn formatting() {
        assert_eq!(format_float(1e6), "1000000");
        assert_eq!(format_float(0.5), "0.5");
        assert_eq!(format_float(-2.0), "-2");
        assert_eq!(format_float(f64::INFINITY), "+Inf");
        assert_eq!(quote_rune('\''), "'\\''");
        assert_eq!(quote_rune('"'), "'\"'");
        assert_eq!(quote_rune('\n'), "'\\n'");
        assert_eq!(format_u('q'), "U+0071 'q'");
    }

    #[test]
    fn strings() {
        assert_eq!(unquote(r#""a\"b""#).as_deref(), Ok("a\"b"));
        assert_eq!(unquote(r"'it\'s'").as_deref(), Ok("it's"));
        assert_eq!(unquote(r"`a\n`").as_deref(), Ok("a\\n"));
        assert_eq!(unquote(r#""\u00e9\x41\101\n""#).as_deref(), Ok("éAA\n"));
        assert_eq!(unquote(r#""\xc3\xa9""#).as_deref(), Ok("é"));
        assert_eq!(unquote(r#""a\xc5z""#).as_deref(), Ok("a\u{FFFD}z"));
    }
}
