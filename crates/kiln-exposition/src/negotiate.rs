//! Content types: which format a scrape response is parsed as, and which format an
//! exposition endpoint answers an `Accept` header with.

use crate::Format;

const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const OPENMETRICS_MEDIA_TYPE: &str = "application/openmetrics-text";

impl Format {
    /// The `Content-Type` an encoder's output is served with, exactly as Prometheus
    /// and its client libraries write it.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text004 => TEXT_CONTENT_TYPE,
            Format::OpenMetrics => OPENMETRICS_CONTENT_TYPE,
        }
    }

    /// The parser Prometheus's scrape picks for a response's `Content-Type`:
    /// OpenMetrics for the media type `application/openmetrics-text` (any case,
    /// parameters ignored), the text format for anything else, including an empty or
    /// malformed header (Prometheus falls back to the text parser when the header does
    /// not parse as a media type).
    pub fn from_content_type(content_type: &str) -> Format {
        match parse_media_type(content_type) {
            Some((media, _)) if media.eq_ignore_ascii_case(OPENMETRICS_MEDIA_TYPE) => {
                Format::OpenMetrics
            }
            _ => Format::Text004,
        }
    }
}

/// Chooses the format to answer a scrape with, from its `Accept` header, as
/// Prometheus's exposition endpoints do: the entries are taken in order of their `q`
/// weight (highest first; equal weights keep their order, a wildcard-free entry before
/// a wildcard one), and the first that names a format wins:
/// `application/openmetrics-text` with `version` `1.0.0`, `0.0.1` or none gives
/// [`Format::OpenMetrics`]; `text/plain` with `version` `0.0.4` or none gives
/// [`Format::Text004`]. Anything else, or nothing usable, gives [`Format::Text004`].
///
/// Entries with `q=0` ("not acceptable") are skipped. Allocates a small vector of the
/// header's entries.
pub fn negotiate(accept_header: &str) -> Format {
    let mut entries: Vec<(u16, bool, usize, Option<Format>)> = Vec::new();
    for (i, part) in accept_header.split(',').enumerate() {
        let Some((media, params)) = parse_media_type(part) else {
            continue;
        };
        let mut q = 1000u16;
        let mut version = None;
        for (k, v) in params {
            if k.eq_ignore_ascii_case("q") {
                q = parse_q(v).unwrap_or(0);
            } else if k.eq_ignore_ascii_case("version") {
                version = Some(v);
            }
        }
        if q == 0 {
            continue;
        }
        let format = if media.eq_ignore_ascii_case(OPENMETRICS_MEDIA_TYPE)
            && matches!(version, None | Some("1.0.0" | "0.0.1"))
        {
            Some(Format::OpenMetrics)
        } else if media.eq_ignore_ascii_case("text/plain")
            && matches!(version, None | Some("0.0.4"))
        {
            Some(Format::Text004)
        } else {
            None
        };
        entries.push((q, media.contains('*'), i, format));
    }
    entries.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    entries
        .into_iter()
        .find_map(|e| e.3)
        .unwrap_or(Format::Text004)
}

/// `q` as thousandths: `1`, `0.5`, `0.125`; `None` when malformed.
fn parse_q(v: &str) -> Option<u16> {
    let q: f64 = v.parse().ok()?;
    (0.0..=1.0)
        .contains(&q)
        .then(|| (q * 1000.0).round() as u16)
}

/// Splits `type/subtype; k=v; k="v"` into the media type and its parameters, trimmed.
/// `None` when the media type is not `token/token` or a parameter is malformed (a
/// trailing `;` is allowed). Parameter values keep their quotes' content only.
fn parse_media_type(s: &str) -> Option<(&str, impl Iterator<Item = (&str, &str)>)> {
    let mut parts = s.split(';');
    let media = parts.next()?.trim();
    let (ty, sub) = media.split_once('/')?;
    if !is_token(ty) || !is_token(sub) {
        return None;
    }
    let rest = s
        .get(s.find(';').map_or(s.len(), |i| i + 1)..)
        .unwrap_or("");
    // Validate all parameters first so a malformed one rejects the whole type.
    let params = || {
        rest.split(';').filter_map(|p| {
            let p = p.trim();
            if p.is_empty() {
                return None;
            }
            Some(p.split_once('=').and_then(|(k, v)| {
                let (k, v) = (k.trim(), v.trim());
                let v = match v.strip_prefix('"') {
                    Some(q) => q.strip_suffix('"')?,
                    None if is_token(v) => v,
                    None => return None,
                };
                is_token(k).then_some((k, v))
            }))
        })
    };
    // Empty parameters may only trail (`text/plain;`), not sit between two (`a;;b`).
    let mut seen_empty = false;
    let mut trailing_empty_only = true;
    for p in rest.split(';') {
        if p.trim().is_empty() {
            seen_empty = true;
        } else if seen_empty {
            trailing_empty_only = false;
        }
    }
    if !trailing_empty_only || params().any(|p| p.is_none()) {
        return None;
    }
    Some((media, params().flatten()))
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_type_parsing() {
        assert!(parse_media_type("text/plain").is_some());
        assert!(parse_media_type("text/plain;").is_some());
        assert!(parse_media_type("text/plain; version=0.0.4; charset=utf-8").is_some());
        assert!(parse_media_type("a/b; x=\"quoted value\"").is_some());
        assert!(parse_media_type("text").is_none());
        assert!(parse_media_type("text/plain; version").is_none());
        assert!(parse_media_type("text/plain; a=b;; c=d").is_none());
        assert!(parse_media_type("te xt/plain").is_none());
    }
}
