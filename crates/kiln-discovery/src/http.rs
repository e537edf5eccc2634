//! `http_sd_configs`: target groups fetched as JSON from a URL every `refresh_interval`.
//!
//! As Prometheus's HTTP SD specifies: the response must be 200 with
//! `Content-Type: application/json`, the body a list of target groups; each target gets
//! `__meta_url`. A failed fetch keeps the previous targets.
//!
//! The URL may carry `user:password@`. Unlike Prometheus, `__meta_url` (shown among a
//! target's discovered labels) and the groups' source names hold it redacted, as logs
//! do: the password reaches only the request.

use std::time::Duration;

use kiln_config::HttpSdConfig;
use kiln_http_client::{HttpClient, error_chain};
use tracing::warn;

use crate::group::{GroupFormat, TargetGroup, parse_groups};
use crate::manager::Publisher;

/// Responses larger than this are refused rather than buffered.
const MAX_BODY_BYTES: usize = 64 << 20;

pub struct HttpDiscovery {
    config: HttpSdConfig,
    client: HttpClient,
}

impl HttpDiscovery {
    pub fn new(config: HttpSdConfig) -> Result<HttpDiscovery, kiln_http_client::ClientError> {
        let client = HttpClient::new(
            &config.http_client,
            concat!("Kiln/", env!("CARGO_PKG_VERSION")),
        )?;
        Ok(HttpDiscovery { config, client })
    }

    pub async fn run(self, publisher: Publisher) {
        let interval = self.config.refresh_interval.as_std();
        loop {
            match self.fetch().await {
                Ok(groups) => publisher.publish(groups),
                Err(e) => {
                    warn!(url = %self.config.url, err = %e, "http_sd: keeping the previous targets")
                }
            }
            tokio::time::sleep(interval.max(Duration::from_millis(100))).await;
        }
    }

    async fn fetch(&self) -> Result<Vec<TargetGroup>, String> {
        let interval = self.config.refresh_interval.as_std();
        let mut resp = self
            .client
            .get(self.config.url.expose())
            .map_err(|e| e.to_string())?
            .header("Accept", "application/json")
            .header(
                "X-Prometheus-Refresh-Interval-Seconds",
                interval.as_secs().to_string(),
            )
            .timeout(interval.max(Duration::from_secs(5)))
            .send()
            .await
            .map_err(|e| error_chain(&e))?;
        if resp.status() != reqwest::StatusCode::OK {
            return Err(format!("server returned HTTP status {}", resp.status()));
        }
        let content_type = resp
            .headers()
            .get("Content-Type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let media = content_type.split(';').next().unwrap_or_default().trim();
        if !media.eq_ignore_ascii_case("application/json") {
            return Err(format!("unsupported content type {content_type:?}"));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| error_chain(&e))? {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(format!("response larger than {MAX_BODY_BYTES} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        let url = self.config.url.redacted();
        parse_groups(&body, GroupFormat::Json, &url, ("__meta_url", &url))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::Router;
    use axum::http::header;
    use axum::routing::get;
    use kiln_config::{Duration as ConfigDuration, HttpClientConfig};

    use super::*;

    #[tokio::test]
    async fn fetches_refreshes_and_keeps_targets_on_errors() {
        // What the fake server answers: (status, content type, body).
        let answer = Arc::new(Mutex::new((
            200u16,
            "application/json",
            r#"[{"targets":["a:1"],"labels":{"dc":"x"}}]"#.to_owned(),
        )));
        let seen_refresh_header = Arc::new(Mutex::new(String::new()));
        let seen_authorization = Arc::new(Mutex::new(String::new()));
        let app = {
            let answer = answer.clone();
            let seen = seen_refresh_header.clone();
            let seen_auth = seen_authorization.clone();
            Router::new().route(
                "/sd",
                get(move |headers: axum::http::HeaderMap| {
                    let answer = answer.clone();
                    let seen = seen.clone();
                    let seen_auth = seen_auth.clone();
                    async move {
                        if let Some(v) = headers.get("X-Prometheus-Refresh-Interval-Seconds") {
                            *seen.lock().expect("lock") = v.to_str().expect("test step").to_owned();
                        }
                        if let Some(v) = headers.get("Authorization") {
                            *seen_auth.lock().expect("lock") =
                                v.to_str().expect("test step").to_owned();
                        }
                        let (status, ct, body) = answer.lock().expect("lock").clone();
                        (
                            axum::http::StatusCode::from_u16(status).expect("test step"),
                            [(header::CONTENT_TYPE, ct)],
                            body,
                        )
                    }
                }),
            )
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("test step");
        // The URL's user info is sent as basic auth, and shown redacted.
        let addr = listener.local_addr().expect("test step");
        let url = format!("http://sd:pw-sd@{addr}/sd");
        let shown = format!("http://sd:xxxxx@{addr}/sd");
        let server = tokio::spawn(async move { axum::serve(listener, app).await });

        let d = HttpDiscovery::new(HttpSdConfig {
            url: kiln_config::SecretUrl::new(url.clone()),
            refresh_interval: ConfigDuration(200),
            http_client: HttpClientConfig::default(),
        })
        .expect("test step");
        let (publisher, published) = Publisher::for_test();
        let task = tokio::spawn(d.run(publisher));
        let groups = published.next_where(|g| !g.is_empty()).await;
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0].targets[0].get("__address__"), Some("a:1"));
        assert_eq!(groups[0].labels.get("dc"), Some("x"));
        assert_eq!(groups[0].labels.get("__meta_url"), Some(shown.as_str()));
        assert_eq!(
            *seen_authorization.lock().expect("lock"),
            "Basic c2Q6cHctc2Q=",
            "basic auth of sd:pw-sd"
        );
        assert_eq!(*seen_refresh_header.lock().expect("lock"), "0");

        // Errors of every kind keep the targets.
        for bad in [
            (500, "application/json", "[]"),
            (200, "text/plain", "[]"),
            (200, "application/json", "{not json"),
        ] {
            *answer.lock().expect("lock") = (bad.0, bad.1, bad.2.to_owned());
            tokio::time::sleep(Duration::from_millis(600)).await;
            let g = published.next_where(|_| true).await;
            assert_eq!(g, groups, "after answering {bad:?}");
        }
        // An empty list empties them.
        *answer.lock().expect("lock") = (200, "application/json; charset=utf-8", "[]".to_owned());
        published.next_where(|g| g.is_empty()).await;
        task.abort();
        server.abort();
    }
}
