//! `<http_config>`: how a scrape (or an HTTP service discovery) authenticates and
//! connects. Fields are kept as written; the scraper reads `*_file` secrets when it
//! builds its client, so rotating a file needs no config change.

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::secret::{SecretUrl, UrlKind, check_url};
use crate::yaml::Problem;

/// `basic_auth`: exactly one of `password` and `password_file` (or neither), likewise
/// for `username` and `username_file`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub username_file: String,
    #[serde(default)]
    pub password: String,
    #[serde(default)]
    pub password_file: String,
}

/// `authorization`: the `Authorization` header as `<type> <credentials>`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Authorization {
    /// Default `Bearer`.
    #[serde(default, rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub credentials: String,
    #[serde(default)]
    pub credentials_file: String,
}

/// `tls_config`: inline PEM or files, never both for the same item.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    #[serde(default)]
    pub ca: String,
    #[serde(default)]
    pub ca_file: String,
    #[serde(default)]
    pub cert: String,
    #[serde(default)]
    pub cert_file: String,
    #[serde(default)]
    pub key: String,
    #[serde(default)]
    pub key_file: String,
    #[serde(default)]
    pub server_name: String,
    #[serde(default)]
    pub insecure_skip_verify: bool,
    /// `TLS10` .. `TLS13`; empty means the library default.
    #[serde(default)]
    pub min_version: String,
    #[serde(default)]
    pub max_version: String,
}

/// The HTTP client settings shared by scrape configs and HTTP-based discoveries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpClientConfig {
    pub basic_auth: Option<BasicAuth>,
    pub authorization: Option<Authorization>,
    pub tls_config: TlsConfig,
    pub follow_redirects: bool,
    pub enable_http2: bool,
    /// Empty: no proxy. Displays redacted: see [`SecretUrl`].
    pub proxy_url: SecretUrl,
    pub no_proxy: String,
    pub proxy_from_environment: bool,
}

impl Default for HttpClientConfig {
    fn default() -> HttpClientConfig {
        HttpClientConfig {
            basic_auth: None,
            authorization: None,
            tls_config: TlsConfig::default(),
            follow_redirects: true,
            enable_http2: true,
            proxy_url: SecretUrl::default(),
            no_proxy: String::new(),
            proxy_from_environment: false,
        }
    }
}

impl HttpClientConfig {
    /// Reads a file holding only `<http_config>` fields, as promtool's
    /// `--http.config.file` takes: the same checks as in a scrape config, errors at
    /// `file:line:column`, `*_file` paths relative to the file's directory. An empty
    /// file gives the defaults.
    pub fn load_file(path: &std::path::Path) -> Result<HttpClientConfig, crate::ConfigError> {
        let name = path.display().to_string();
        let text = crate::yaml::read_file(path).map_err(|source| crate::ConfigError::Read {
            path: name.clone(),
            source,
        })?;
        let mut raw: RawHttpConfigFile = if text.lines().all(|l| {
            let l = l.trim();
            l.is_empty() || l.starts_with('#')
        }) {
            RawHttpConfigFile::default()
        } else {
            crate::yaml::from_str(
                &text,
                "an HTTP client configuration file is a mapping of <http_config> fields \
                 (basic_auth:, authorization:, tls_config:, ...)",
            )
            .map_err(|source| crate::ConfigError::Syntax {
                path: name.clone(),
                source,
            })?
        };
        let mut config =
            raw.take_http_client()
                .resolve()
                .map_err(|p| crate::ConfigError::Invalid {
                    path: name,
                    position: p
                        .position
                        .unwrap_or(crate::yaml::Position { line: 1, column: 1 }),
                    message: p.message,
                })?;
        if let Some(dir) = path.parent() {
            config.resolve_paths(dir);
        }
        Ok(config)
    }

    /// Makes the `*_file` paths relative to `dir` (see [`crate::Config::resolve_paths`]).
    pub fn resolve_paths(&mut self, dir: &std::path::Path) {
        use crate::join_dir;
        if let Some(b) = &mut self.basic_auth {
            join_dir(dir, &mut b.username_file);
            join_dir(dir, &mut b.password_file);
        }
        if let Some(a) = &mut self.authorization {
            join_dir(dir, &mut a.credentials_file);
        }
        let tls = &mut self.tls_config;
        for f in [&mut tls.ca_file, &mut tls.cert_file, &mut tls.key_file] {
            join_dir(dir, f);
        }
    }
}

/// `<http_config>` as written. The configs that embed it get its fields through
/// [`with_http_client_fields!`], because serde's `flatten` would stop unknown keys from
/// being errors. Fields that can be wrong on their own keep their place in the file.
#[derive(Debug, Default)]
pub(crate) struct RawHttpClientConfig {
    pub(crate) basic_auth: Option<Spanned<BasicAuth>>,
    pub(crate) authorization: Option<Spanned<Authorization>>,
    pub(crate) oauth2: Option<Spanned<serde::de::IgnoredAny>>,
    pub(crate) tls_config: Option<Spanned<TlsConfig>>,
    pub(crate) follow_redirects: Option<bool>,
    pub(crate) enable_http2: Option<bool>,
    pub(crate) proxy_url: Option<Spanned<String>>,
    pub(crate) no_proxy: Option<String>,
    pub(crate) proxy_from_environment: Option<bool>,
    pub(crate) proxy_connect_header: Option<Spanned<serde::de::IgnoredAny>>,
    pub(crate) http_headers: Option<Spanned<serde::de::IgnoredAny>>,
}

/// Declares a raw (as-written) config struct with the `<http_config>` fields added, and a
/// `take_http_client` method collecting them into a [`RawHttpClientConfig`].
macro_rules! with_http_client_fields {
    ($(#[$meta:meta])* $vis:vis struct $name:ident { $($field:tt)* }) => {
        $(#[$meta])*
        $vis struct $name {
            $($field)*
            #[serde(default)]
            basic_auth: Option<serde_saphyr::Spanned<$crate::http::BasicAuth>>,
            #[serde(default)]
            authorization: Option<serde_saphyr::Spanned<$crate::http::Authorization>>,
            #[serde(default)]
            oauth2: Option<serde_saphyr::Spanned<serde::de::IgnoredAny>>,
            #[serde(default)]
            tls_config: Option<serde_saphyr::Spanned<$crate::http::TlsConfig>>,
            #[serde(default)]
            follow_redirects: Option<bool>,
            #[serde(default)]
            enable_http2: Option<bool>,
            #[serde(default)]
            proxy_url: Option<serde_saphyr::Spanned<String>>,
            #[serde(default)]
            no_proxy: Option<String>,
            #[serde(default)]
            proxy_from_environment: Option<bool>,
            #[serde(default)]
            proxy_connect_header: Option<serde_saphyr::Spanned<serde::de::IgnoredAny>>,
            #[serde(default)]
            http_headers: Option<serde_saphyr::Spanned<serde::de::IgnoredAny>>,
        }

        impl $name {
            fn take_http_client(&mut self) -> $crate::http::RawHttpClientConfig {
                $crate::http::RawHttpClientConfig {
                    basic_auth: self.basic_auth.take(),
                    authorization: self.authorization.take(),
                    oauth2: self.oauth2.take(),
                    tls_config: self.tls_config.take(),
                    follow_redirects: self.follow_redirects.take(),
                    enable_http2: self.enable_http2.take(),
                    proxy_url: self.proxy_url.take(),
                    no_proxy: self.no_proxy.take(),
                    proxy_from_environment: self.proxy_from_environment.take(),
                    proxy_connect_header: self.proxy_connect_header.take(),
                    http_headers: self.http_headers.take(),
                }
            }
        }
    };
}
pub(crate) use with_http_client_fields;

with_http_client_fields! {
/// A file holding only `<http_config>` fields ([`HttpClientConfig::load_file`]).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttpConfigFile {}
}

impl RawHttpClientConfig {
    /// Applies defaults and Prometheus's consistency rules. A problem points at the
    /// sub-section it is about (`tls_config`, `basic_auth`...), when written.
    pub(crate) fn resolve(self) -> Result<HttpClientConfig, Problem> {
        for (name, field) in [
            ("oauth2", &self.oauth2),
            ("proxy_connect_header", &self.proxy_connect_header),
            ("http_headers", &self.http_headers),
        ] {
            if let Some(f) = field {
                return Err(Problem::at(
                    &f.referenced,
                    format!("{name} is not supported by Kiln yet"),
                ));
            }
        }
        if let (Some(_), Some(a)) = (&self.basic_auth, &self.authorization) {
            return Err(Problem::at(
                &a.referenced,
                "at most one of basic_auth and authorization must be configured",
            ));
        }
        if let Some(Spanned {
            value: b,
            referenced,
            ..
        }) = &self.basic_auth
        {
            if !b.username.is_empty() && !b.username_file.is_empty() {
                return Err(Problem::at(
                    referenced,
                    "at most one of basic_auth username & username_file must be configured",
                ));
            }
            if !b.password.is_empty() && !b.password_file.is_empty() {
                return Err(Problem::at(
                    referenced,
                    "at most one of basic_auth password & password_file must be configured",
                ));
            }
        }
        let authorization = match self.authorization {
            Some(Spanned {
                value: mut a,
                referenced,
                ..
            }) => {
                if a.kind.is_empty() {
                    a.kind = "Bearer".to_owned();
                }
                if a.kind.eq_ignore_ascii_case("basic") {
                    return Err(Problem::at(
                        &referenced,
                        "authorization type cannot be set to \"basic\", use \"basic_auth\" instead",
                    ));
                }
                if !a.credentials.is_empty() && !a.credentials_file.is_empty() {
                    return Err(Problem::at(
                        &referenced,
                        "at most one of authorization credentials & credentials_file must be configured",
                    ));
                }
                Some(a)
            }
            None => None,
        };
        let tls_config = match self.tls_config {
            Some(t) => {
                check_tls(&t.value).map_err(|e| Problem::at(&t.referenced, e))?;
                t.value
            }
            None => TlsConfig::default(),
        };
        if let (Some(true), Some(url)) = (self.proxy_from_environment, &self.proxy_url) {
            return Err(Problem::at(
                &url.referenced,
                "if proxy_from_environment is configured, proxy_url must not be",
            ));
        }
        let proxy_url = match self.proxy_url {
            Some(u) if !u.value.is_empty() => {
                check_url(&u.value, "proxy_url", UrlKind::AnyWithHost)
                    .map_err(|m| Problem::at(&u.referenced, m))?
            }
            _ => SecretUrl::default(),
        };
        Ok(HttpClientConfig {
            basic_auth: self.basic_auth.map(|b| b.value),
            authorization,
            tls_config,
            follow_redirects: self.follow_redirects.unwrap_or(true),
            enable_http2: self.enable_http2.unwrap_or(true),
            proxy_url,
            no_proxy: self.no_proxy.unwrap_or_default(),
            proxy_from_environment: self.proxy_from_environment.unwrap_or(false),
        })
    }
}

fn check_tls(t: &TlsConfig) -> Result<(), String> {
    for (inline, file, what) in [
        (&t.ca, &t.ca_file, "ca"),
        (&t.cert, &t.cert_file, "cert"),
        (&t.key, &t.key_file, "key"),
    ] {
        if !inline.is_empty() && !file.is_empty() {
            return Err(format!(
                "tls_config: at most one of {what} and {what}_file must be configured"
            ));
        }
    }
    let has_cert = !t.cert.is_empty() || !t.cert_file.is_empty();
    let has_key = !t.key.is_empty() || !t.key_file.is_empty();
    if has_cert != has_key {
        return Err(
            "tls_config: exactly one of key or key_file must be configured when a \
                    client certificate is configured, and neither without one"
                .into(),
        );
    }
    for v in [&t.min_version, &t.max_version] {
        if !matches!(v.as_str(), "" | "TLS10" | "TLS11" | "TLS12" | "TLS13") {
            return Err(format!(
                "tls_config: unknown TLS version {v:?} (want TLS10, TLS11, TLS12 or TLS13)"
            ));
        }
    }
    Ok(())
}
