//! The HTTP client a Prometheus `<http_config>` describes, shared by scraping, HTTP and
//! Kubernetes discovery (and later remote write and Alertmanager notification).
//!
//! - [`tls`]: `tls_config` as a rustls client configuration (CA, client certificate,
//!   `server_name`, `insecure_skip_verify`, TLS versions), on the `ring` provider.
//! - [`HttpClient`]: a reqwest client with that TLS setup, `follow_redirects` and the
//!   proxy settings, plus `basic_auth` / `authorization`, whose `*_file` secrets are read
//!   on every request, as Prometheus does, so a rotated token needs no reload.

pub mod tls;

use kiln_config::{Authorization, BasicAuth, HttpClientConfig};

/// Why a client could not be built or a request could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("tls_config: {0}")]
    Tls(String),
    #[error("reading {path}: {source}")]
    ReadFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// `url` is the `proxy_url` as written; it displays with its password redacted.
    #[error("proxy_url {:?}: {source}", url.redacted())]
    Proxy {
        url: kiln_config::SecretUrl,
        #[source]
        source: reqwest::Error,
    },
    #[error("building the HTTP client: {0}")]
    Build(#[source] reqwest::Error),
}

/// A client for one `<http_config>`. Cheap to clone (the connection pool is shared).
#[derive(Debug, Clone)]
pub struct HttpClient {
    client: reqwest::Client,
    basic_auth: Option<BasicAuth>,
    authorization: Option<Authorization>,
}

impl HttpClient {
    /// Builds the client; `user_agent` is sent with every request.
    pub fn new(config: &HttpClientConfig, user_agent: &str) -> Result<HttpClient, ClientError> {
        let tls = tls::client_config(&config.tls_config)?;
        let mut builder = reqwest::Client::builder()
            .user_agent(user_agent)
            .tls_backend_preconfigured(tls);
        if !config.follow_redirects {
            builder = builder.redirect(reqwest::redirect::Policy::none());
        }
        if !config.proxy_url.is_empty() {
            // reqwest moves the URL's user info into a `Proxy-Authorization` header.
            let proxy = reqwest::Proxy::all(config.proxy_url.expose()).map_err(|source| {
                ClientError::Proxy {
                    url: config.proxy_url.clone(),
                    source,
                }
            })?;
            let proxy = proxy.no_proxy(reqwest::NoProxy::from_string(&config.no_proxy));
            builder = builder.proxy(proxy);
        } else if !config.proxy_from_environment {
            // Prometheus ignores HTTP_PROXY and friends unless asked to use them.
            builder = builder.no_proxy();
        }
        Ok(HttpClient {
            client: builder.build().map_err(ClientError::Build)?,
            basic_auth: config.basic_auth.clone(),
            authorization: config.authorization.clone(),
        })
    }

    /// A GET request to `url` with the configured credentials.
    pub fn get(&self, url: &str) -> Result<reqwest::RequestBuilder, ClientError> {
        self.request(reqwest::Method::GET, url)
    }

    /// A request to `url` with the configured credentials; `*_file` secrets are read now.
    /// A password in the URL's user info (`https://user:password@host/`) is sent as
    /// basic auth: reqwest moves the user info into the `Authorization` header and out
    /// of the URL, so the errors of the request, which quote its URL, never show it.
    pub fn request(
        &self,
        method: reqwest::Method,
        url: &str,
    ) -> Result<reqwest::RequestBuilder, ClientError> {
        let mut req = self.client.request(method, url);
        if let Some(b) = &self.basic_auth {
            let user = credential(&b.username, &b.username_file)?;
            let pass = credential(&b.password, &b.password_file)?;
            req = req.basic_auth(user, Some(pass));
        }
        if let Some(a) = &self.authorization {
            let cred = credential(&a.credentials, &a.credentials_file)?;
            let kind = if a.kind.is_empty() { "Bearer" } else { &a.kind };
            req = req.header("Authorization", format!("{kind} {cred}"));
        }
        Ok(req)
    }
}

/// A secret: inline when set, else read from `file` without its trailing newline.
fn credential(inline: &str, file: &str) -> Result<String, ClientError> {
    if !inline.is_empty() || file.is_empty() {
        return Ok(inline.to_owned());
    }
    std::fs::read_to_string(file)
        .map(|s| s.trim_end_matches(['\r', '\n']).to_owned())
        .map_err(|source| ClientError::ReadFile {
            path: file.to_owned(),
            source,
        })
}

/// An error with its causes, `outer: cause: root`: reqwest's own message alone ("error
/// sending request") hides whether DNS, TLS or the connection failed.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A port nothing listens on (bound, then freed).
    fn closed_port() -> u16 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    }

    #[tokio::test]
    async fn request_errors_do_not_show_the_urls_password() {
        let client = HttpClient::new(&HttpClientConfig::default(), "test").expect("client");
        let url = format!("http://user:hunter2@127.0.0.1:{}/push", closed_port());
        let err = client
            .get(&url)
            .expect("request")
            .send()
            .await
            .expect_err("nothing listens");
        let text = error_chain(&err);
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("127.0.0.1"), "{text}");
        assert!(!format!("{err:?}").contains("hunter2"), "{err:?}");
    }

    #[test]
    fn proxy_errors_do_not_show_the_proxys_password() {
        let config = HttpClientConfig {
            proxy_url: kiln_config::SecretUrl::new("http://u:pw-proxy@[::1"),
            ..HttpClientConfig::default()
        };
        let Err(err) = HttpClient::new(&config, "test") else {
            panic!("a bad proxy_url must fail");
        };
        let text = error_chain(&err);
        assert!(!text.contains("pw-proxy"), "{text}");
        assert!(text.contains("u:xxxxx@"), "{text}");
    }
}
