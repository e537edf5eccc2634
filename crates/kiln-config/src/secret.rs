//! Values of the configuration that must never be shown: [`Secret`] (a remote-write
//! header's value) and [`SecretUrl`] (a URL that may carry `user:password@`).
//!
//! Both hold the real value, which only [`Secret::expose`] and [`SecretUrl::expose`]
//! give out, for the one place that sends it (the HTTP client). Every other form is
//! redacted: `Display` and `Debug` (so a log line, an error message or a `{:?}` cannot
//! leak it by accident), and the rendering of `/api/v1/status/config`. Equality compares
//! the real values, so a reload that only changes a password is still a change.
//!
//! Redaction follows Prometheus: a secret value is shown as `<secret>`; a URL keeps its
//! user name and shows its password as `xxxxx` (Prometheus's `config.URL.Redacted()`,
//! the form of the `url` label of `prometheus_remote_storage_*` series). Only the
//! password of the URL's user info is a secret; a token in the query string is not
//! recognised, as in Prometheus.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;

/// How a [`Secret`] is shown.
pub const SECRET_PLACEHOLDER: &str = "<secret>";

/// How the password of a [`SecretUrl`] is shown (Prometheus's and Go's
/// `url.URL.Redacted()` text).
pub const URL_PASSWORD_PLACEHOLDER: &str = "xxxxx";

/// A string from the configuration that is shown as `<secret>`. See the module docs.
#[derive(Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The real value, for the request that sends it; never for a log or a page.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(SECRET_PLACEHOLDER)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(SECRET_PLACEHOLDER)
    }
}

/// A URL from the configuration (`remote_write`/`remote_read` `url`, `proxy_url`,
/// `http_sd_configs` `url`, Kubernetes `api_server`) that may carry a password in its
/// user info. It displays redacted (`https://user:xxxxx@host/path`); see the module
/// docs. The URLs the loader builds have been checked to parse, so the part redacted
/// is exactly the password an HTTP client would send.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct SecretUrl(String);

impl SecretUrl {
    /// Wraps `url` as written (the loader checks it; this does not).
    pub fn new(url: impl Into<String>) -> SecretUrl {
        SecretUrl(url.into())
    }

    /// The URL as written, password included: only for the HTTP client that connects
    /// to it (which moves the user info into an `Authorization` header).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with its password, if any, replaced by `xxxxx`.
    pub fn redacted(&self) -> Cow<'_, str> {
        redact_url(&self.0)
    }

    /// Whether no URL is set (an optional one, like `proxy_url`, left out).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether the URL carries a password.
    pub fn has_password(&self) -> bool {
        password_range(&self.0).is_some()
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretUrl({:?})", self.redacted())
    }
}

/// `url` with the password of its user info replaced by `xxxxx`, the rest as written.
/// Also right for text that is not a valid URL as far as it goes: whatever stands
/// between the first `:` and the last `@` of the authority is hidden. Text whose
/// password could hide past the authority (`http://u:p/w@host`) is not a URL any HTTP
/// client accepts; the loader refuses it without quoting it ([`quote_for_error`]).
pub fn redact_url(url: &str) -> Cow<'_, str> {
    match password_range(url) {
        Some(range) => {
            let mut out = String::with_capacity(url.len());
            out.push_str(&url[..range.start]);
            out.push_str(URL_PASSWORD_PLACEHOLDER);
            out.push_str(&url[range.end..]);
            Cow::Owned(out)
        }
        None => Cow::Borrowed(url),
    }
}

/// The byte range of the password in `url`'s user info, as a WHATWG URL parser (the
/// `url` crate, hence reqwest) reads it: the authority runs from after `://` to the
/// first `/`, `\`, `?` or `#`; the user info is what comes before its last `@`; the
/// password is what follows the user info's first `:`. Without `://` the text is read
/// as an authority (a `proxy_url` written `user:pass@proxy:3128`).
fn password_range(url: &str) -> Option<std::ops::Range<usize>> {
    let start = url.find("://").map_or(0, |i| i + 3);
    let rest = &url[start..];
    let end = start + rest.find(['/', '\\', '?', '#']).unwrap_or(rest.len());
    let at = start + url[start..end].rfind('@')?;
    let colon = start + url[start..at].find(':')?;
    Some(colon + 1..at)
}

/// `url` as an error message may quote it: redacted, or `None` when the text holds an
/// `@` past its authority, where a malformed password could hide (the message then
/// names the URL by its place in the file only).
pub(crate) fn quote_for_error(url: &str) -> Option<String> {
    let start = url.find("://").map_or(0, |i| i + 3);
    let rest = &url[start..];
    let authority_end = start + rest.find(['/', '\\', '?', '#']).unwrap_or(rest.len());
    if url[authority_end..].contains('@') {
        return None;
    }
    Some(format!("{:?}", redact_url(url)))
}

/// Which URLs a field takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UrlKind {
    /// `http://` or `https://` with a host (remote storage, HTTP SD, Kubernetes API).
    Http,
    /// Any scheme with a host (`proxy_url`: `http`, `https`, `socks5`).
    AnyWithHost,
}

/// Checks the URL written in `field` and wraps it. The message of a bad one quotes it
/// redacted, or not at all where a password could hide past its host
/// ([`quote_for_error`]).
pub(crate) fn check_url(text: &str, field: &str, kind: UrlKind) -> Result<SecretUrl, String> {
    let quoted = quote_for_error(text);
    let fail = |reason: &str| match &quoted {
        Some(q) => format!("{field} {q}: {reason}"),
        None => format!(
            "{field} is not a valid URL ({reason}); it is not quoted because it holds an \
             `@` after its host, where a password with an unescaped `/`, `?` or `#` would \
             end up (write those as %2F, %3F and %23)"
        ),
    };
    let want = match kind {
        UrlKind::Http => "want an http:// or https:// URL with a host",
        UrlKind::AnyWithHost => "want a URL with a scheme and a host (http://host:port)",
    };
    if kind == UrlKind::Http {
        let host = text
            .strip_prefix("http://")
            .or_else(|| text.strip_prefix("https://"));
        if host.is_none_or(|h| h.is_empty() || h.starts_with('/')) {
            return Err(fail(want));
        }
    }
    match url::Url::parse(text) {
        Ok(u) if u.host().is_some() => Ok(SecretUrl::new(text)),
        Ok(_) | Err(url::ParseError::RelativeUrlWithoutBase) => Err(fail(want)),
        Err(e) => Err(fail(&e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(url: &str, want: &str) {
        assert_eq!(redact_url(url), want, "{url}");
        let s = SecretUrl::new(url);
        assert_eq!(s.to_string(), want, "Display of {url}");
        assert_eq!(
            format!("{s:?}"),
            format!("SecretUrl({want:?})"),
            "Debug of {url}"
        );
        assert_eq!(s.expose(), url);
        assert_eq!(s.has_password(), url != want, "{url}");
    }

    #[test]
    fn passwords_are_redacted_and_the_rest_kept() {
        check(
            "http://127.0.0.1:9090/api/v1/write",
            "http://127.0.0.1:9090/api/v1/write",
        );
        check(
            "https://user:hunter2@lts.example.com/push",
            "https://user:xxxxx@lts.example.com/push",
        );
        check("http://user@host/", "http://user@host/");
        check("http://user:@host/", "http://user:xxxxx@host/");
        check("http://:pw@host", "http://:xxxxx@host");
        // The last `@` of the authority ends the user info; the first `:` starts the
        // password: both may hold the other character (percent-encoded or not).
        check("http://u:p@ss:w@rd@host:1/x", "http://u:xxxxx@host:1/x");
        check("http://u:a:b@host", "http://u:xxxxx@host");
        check(
            "https://u:p%40ss@host/?q=a@b",
            "https://u:xxxxx@host/?q=a@b",
        );
        // An `@` after the authority is not user info.
        check("http://host/path@x", "http://host/path@x");
        check("http://host:9090/x?u=a:b@c", "http://host:9090/x?u=a:b@c");
        check("http://host#a:b@c", "http://host#a:b@c");
        // Any scheme (proxy_url: socks5), or none.
        check("socks5://u:pw@proxy:1080", "socks5://u:xxxxx@proxy:1080");
        check("u:pw@proxy:3128", "u:xxxxx@proxy:3128");
        check("", "");
    }

    #[test]
    fn equality_sees_the_password() {
        assert_ne!(
            SecretUrl::new("http://u:a@h"),
            SecretUrl::new("http://u:b@h")
        );
        assert_eq!(
            SecretUrl::new("http://u:a@h"),
            SecretUrl::new("http://u:a@h")
        );
        assert_ne!(Secret::new("a"), Secret::new("b"));
    }

    #[test]
    fn secrets_never_show() {
        let s = Secret::new("tok3n");
        assert_eq!(s.to_string(), "<secret>");
        assert_eq!(format!("{s:?}"), "<secret>");
        assert_eq!(format!("{:?}", Some(&s)), "Some(<secret>)");
        assert_eq!(s.expose(), "tok3n");
        let parsed: std::collections::BTreeMap<String, Secret> =
            serde_saphyr::from_str("X-Token: tok3n\n").expect("parses");
        assert_eq!(parsed["X-Token"].expose(), "tok3n");
    }

    #[test]
    fn error_quotes_hide_what_may_be_a_password() {
        assert_eq!(
            quote_for_error("http://u:pw@host:99999/x").as_deref(),
            Some("\"http://u:xxxxx@host:99999/x\"")
        );
        assert_eq!(
            quote_for_error("::not a url").as_deref(),
            Some("\"::not a url\"")
        );
        assert_eq!(quote_for_error("http://u:p/w@host/"), None);
        assert_eq!(quote_for_error("http://u:p?w@host/"), None);
    }

    #[test]
    fn urls_are_checked_and_bad_ones_quoted_redacted() {
        let check = |text: &str, kind: UrlKind, want: Result<&str, &str>| {
            let got = check_url(text, "url", kind);
            match (got, want) {
                (Ok(u), Ok(w)) => assert_eq!(u.to_string(), w, "{text}"),
                (Err(e), Err(w)) => assert_eq!(e, w, "{text}"),
                (got, want) => panic!("{text}: got {got:?}, want {want:?}"),
            }
        };
        use UrlKind::{AnyWithHost, Http};
        check("https://u:pw@h:9/x", Http, Ok("https://u:xxxxx@h:9/x"));
        check(
            "ftp://u:pw@h",
            Http,
            Err("url \"ftp://u:xxxxx@h\": want an http:// or https:// URL with a host"),
        );
        check(
            "http://u:pw@h:99999/x",
            Http,
            Err("url \"http://u:xxxxx@h:99999/x\": invalid port number"),
        );
        let hidden =
            check_url("http://u:p/w@h/", "url", Http).expect_err("a port that is not a number");
        assert!(!hidden.contains("p/w"), "{hidden}");
        assert!(
            hidden.starts_with("url is not a valid URL (invalid port number)"),
            "{hidden}"
        );
        check(
            "socks5://u:pw@proxy:1080",
            AnyWithHost,
            Ok("socks5://u:xxxxx@proxy:1080"),
        );
        check(
            "u:pw@proxy:3128",
            AnyWithHost,
            Err(
                "url \"u:xxxxx@proxy:3128\": want a URL with a scheme and a host (http://host:port)",
            ),
        );
    }
}
