//! Talking to the Kubernetes API server: where it is and how to authenticate (in-cluster
//! service account, `api_server` with `<http_config>`, or a kubeconfig file), and the
//! list and watch requests the watchers make.

use kiln_config::{
    Authorization, BasicAuth, HttpClientConfig, KubernetesSdConfig, SecretUrl, TlsConfig,
};
use kiln_http_client::{HttpClient, error_chain};
use serde::Deserialize;
use serde::de::DeserializeOwned;

const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// Lists larger than this are refused rather than buffered.
const MAX_LIST_BYTES: usize = 512 << 20;
/// One watch event larger than this ends the watch (the watcher lists again).
const MAX_EVENT_BYTES: usize = 64 << 20;

/// A client for one API server.
#[derive(Clone)]
pub struct ApiClient {
    /// Without a trailing slash. It may carry `user:password@`: request URLs built on it
    /// are [`SecretUrl`]s too, so the errors that name them show them redacted.
    base: SecretUrl,
    http: HttpClient,
}

/// What a list request returns.
pub struct ObjectList<T> {
    pub items: Vec<T>,
    pub resource_version: String,
}

#[derive(Deserialize)]
#[serde(bound = "T: DeserializeOwned")]
struct RawList<T> {
    #[serde(default)]
    metadata: ListMeta,
    #[serde(default = "Vec::new")]
    items: Vec<T>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ListMeta {
    #[serde(default)]
    resource_version: String,
}

/// One event of a watch stream.
pub enum WatchEvent<T> {
    Added(T),
    Modified(T),
    Deleted(T),
    /// Only moves the resource version on.
    Bookmark(String),
    /// The API server says the watch cannot go on (410 Gone: the version is too old).
    Error {
        code: i64,
        message: String,
    },
}

#[derive(Deserialize)]
struct RawEvent {
    #[serde(rename = "type")]
    kind: String,
    object: serde_json::Value,
}

impl ApiClient {
    /// The client for `config`: `api_server` with its `<http_config>`, else the
    /// kubeconfig file, else the in-cluster service account.
    pub fn new(config: &KubernetesSdConfig) -> Result<ApiClient, String> {
        let user_agent = concat!("Kiln/", env!("CARGO_PKG_VERSION"));
        let (base, http_config) = if !config.api_server.is_empty() {
            (config.api_server.clone(), config.http_client.clone())
        } else if !config.kubeconfig_file.is_empty() {
            let (server, http) = from_kubeconfig(&config.kubeconfig_file)?;
            (SecretUrl::new(server), http)
        } else {
            in_cluster()?
        };
        let http = HttpClient::new(&http_config, user_agent).map_err(|e| e.to_string())?;
        Ok(ApiClient {
            base: SecretUrl::new(base.expose().trim_end_matches('/')),
            http,
        })
    }

    fn url(&self, path: &str, query: &[(&str, &str)]) -> SecretUrl {
        let mut url = format!("{}/{path}", self.base.expose());
        let mut sep = '?';
        for (k, v) in query.iter().filter(|(_, v)| !v.is_empty()) {
            url.push(sep);
            url.push_str(k);
            url.push('=');
            url.extend(form_urlencoded_byte_serialize(v));
            sep = '&';
        }
        SecretUrl::new(url)
    }

    /// Lists a collection.
    pub async fn list<T: DeserializeOwned>(
        &self,
        path: &str,
        selectors: &Selectors,
    ) -> Result<ObjectList<T>, String> {
        let url = self.url(
            path,
            &[
                ("labelSelector", &selectors.label),
                ("fieldSelector", &selectors.field),
            ],
        );
        let mut resp = self
            .http
            .get(url.expose())
            .map_err(|e| e.to_string())?
            .header("Accept", "application/json")
            .timeout(std::time::Duration::from_secs(120))
            .send()
            .await
            .map_err(|e| error_chain(&e))?;
        let status = resp.status();
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| error_chain(&e))? {
            if body.len() + chunk.len() > MAX_LIST_BYTES {
                return Err(format!("{url}: list larger than {MAX_LIST_BYTES} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            let text = String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned();
            return Err(format!("{url}: HTTP status {status}: {text}"));
        }
        let list: RawList<T> =
            serde_json::from_slice(&body).map_err(|e| format!("{url}: decoding the list: {e}"))?;
        Ok(ObjectList {
            items: list.items,
            resource_version: list.metadata.resource_version,
        })
    }

    /// Starts a watch from `resource_version`; events come from [`WatchStream::next`].
    pub async fn watch(
        &self,
        path: &str,
        selectors: &Selectors,
        resource_version: &str,
    ) -> Result<WatchStream, String> {
        let url = self.url(
            path,
            &[
                ("watch", "1"),
                ("allowWatchBookmarks", "true"),
                ("resourceVersion", resource_version),
                ("timeoutSeconds", "300"),
                ("labelSelector", &selectors.label),
                ("fieldSelector", &selectors.field),
            ],
        );
        let resp = self
            .http
            .get(url.expose())
            .map_err(|e| e.to_string())?
            .header("Accept", "application/json")
            .timeout(std::time::Duration::from_secs(330))
            .send()
            .await
            .map_err(|e| error_chain(&e))?;
        if !resp.status().is_success() {
            return Err(format!("{url}: HTTP status {}", resp.status()));
        }
        Ok(WatchStream {
            resp,
            buf: Vec::new(),
        })
    }
}

/// `labelSelector` and `fieldSelector` of a list or watch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selectors {
    pub label: String,
    pub field: String,
}

/// The events of one watch request, one JSON object per line.
pub struct WatchStream {
    resp: reqwest::Response,
    buf: Vec<u8>,
}

impl WatchStream {
    /// The next event; `Ok(None)` when the server ended the watch.
    pub async fn next<T: DeserializeOwned>(&mut self) -> Result<Option<WatchEvent<T>>, String> {
        loop {
            if let Some(end) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=end).collect();
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                return decode_event(&line).map(Some);
            }
            match self.resp.chunk().await.map_err(|e| error_chain(&e))? {
                Some(chunk) => {
                    if self.buf.len() + chunk.len() > MAX_EVENT_BYTES {
                        return Err(format!("watch event larger than {MAX_EVENT_BYTES} bytes"));
                    }
                    self.buf.extend_from_slice(&chunk);
                }
                None if self.buf.iter().all(u8::is_ascii_whitespace) => return Ok(None),
                None => {
                    let rest = std::mem::take(&mut self.buf);
                    return decode_event(&rest).map(Some);
                }
            }
        }
    }
}

fn decode_event<T: DeserializeOwned>(line: &[u8]) -> Result<WatchEvent<T>, String> {
    let raw: RawEvent =
        serde_json::from_slice(line).map_err(|e| format!("decoding a watch event: {e}"))?;
    let object = |v: serde_json::Value| {
        serde_json::from_value::<T>(v).map_err(|e| format!("decoding a watched object: {e}"))
    };
    Ok(match raw.kind.as_str() {
        "ADDED" => WatchEvent::Added(object(raw.object)?),
        "MODIFIED" => WatchEvent::Modified(object(raw.object)?),
        "DELETED" => WatchEvent::Deleted(object(raw.object)?),
        "BOOKMARK" => WatchEvent::Bookmark(
            raw.object["metadata"]["resourceVersion"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        ),
        "ERROR" => WatchEvent::Error {
            code: raw.object["code"].as_i64().unwrap_or_default(),
            message: raw.object["message"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        },
        other => return Err(format!("unknown watch event type {other:?}")),
    })
}

/// Percent-encodes a query value.
fn form_urlencoded_byte_serialize(v: &str) -> impl Iterator<Item = char> + '_ {
    v.bytes().flat_map(|b| {
        let plain = b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~');
        let chars: Vec<char> = if plain {
            vec![b as char]
        } else {
            format!("%{b:02X}").chars().collect()
        };
        chars.into_iter()
    })
}

/// In-cluster: `KUBERNETES_SERVICE_HOST`/`_PORT`, the service account's token (read
/// on every request, so rotation works) and CA.
fn in_cluster() -> Result<(SecretUrl, HttpClientConfig), String> {
    let host = std::env::var("KUBERNETES_SERVICE_HOST").unwrap_or_default();
    let port = std::env::var("KUBERNETES_SERVICE_PORT").unwrap_or_default();
    if host.is_empty() || port.is_empty() {
        return Err(
            "kubernetes_sd_configs: no api_server or kubeconfig_file, and not running in a \
             cluster (KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are unset)"
                .into(),
        );
    }
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host
    };
    let config = HttpClientConfig {
        authorization: Some(Authorization {
            kind: "Bearer".into(),
            credentials: String::new(),
            credentials_file: format!("{SERVICE_ACCOUNT_DIR}/token"),
        }),
        tls_config: TlsConfig {
            ca_file: format!("{SERVICE_ACCOUNT_DIR}/ca.crt"),
            ..TlsConfig::default()
        },
        ..HttpClientConfig::default()
    };
    Ok((SecretUrl::new(format!("https://{host}:{port}")), config))
}

/// The namespace of the pod Kiln runs in (`namespaces.own_namespace`).
pub fn own_namespace() -> Result<String, String> {
    let path = format!("{SERVICE_ACCOUNT_DIR}/namespace");
    std::fs::read_to_string(&path)
        .map(|s| s.trim().to_owned())
        .map_err(|e| format!("own_namespace: reading {path}: {e}"))
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "kebab-case")]
struct KubeConfig {
    current_context: String,
    clusters: Vec<Named<KubeCluster>>,
    contexts: Vec<Named<KubeContext>>,
    users: Vec<Named<KubeUser>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Named<T: Default> {
    name: String,
    #[serde(alias = "cluster", alias = "context", alias = "user")]
    value: T,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "kebab-case")]
struct KubeCluster {
    server: String,
    certificate_authority: String,
    certificate_authority_data: String,
    insecure_skip_tls_verify: bool,
    tls_server_name: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct KubeContext {
    cluster: String,
    user: String,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "kebab-case")]
struct KubeUser {
    token: String,
    token_file: String,
    client_certificate: String,
    client_certificate_data: String,
    client_key: String,
    client_key_data: String,
    username: String,
    password: String,
}

/// The API server and credentials of a kubeconfig's current context (tokens, client
/// certificates, basic auth; exec and auth-provider plugins are not run).
fn from_kubeconfig(path: &str) -> Result<(String, HttpClientConfig), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("reading {path}: {e}"))?;
    let kc: KubeConfig = kiln_config::yaml::from_str(&text, "a kubeconfig is a mapping")
        .map_err(|e| format!("kubeconfig {path}:{e}"))?;
    let context = kc
        .contexts
        .iter()
        .find(|c| c.name == kc.current_context)
        .ok_or_else(|| format!("{path}: current-context {:?} not found", kc.current_context))?;
    let cluster = kc
        .clusters
        .iter()
        .find(|c| c.name == context.value.cluster)
        .ok_or_else(|| format!("{path}: cluster {:?} not found", context.value.cluster))?;
    let user = kc.users.iter().find(|u| u.name == context.value.user);
    let dir = std::path::Path::new(path)
        .parent()
        .unwrap_or(std::path::Path::new("."));
    let file = |f: &str| -> String {
        if f.is_empty() || std::path::Path::new(f).is_absolute() {
            f.to_owned()
        } else {
            dir.join(f).display().to_string()
        }
    };
    let decode = |what: &str, data: &str| -> Result<String, String> {
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data.trim())
            .map_err(|e| format!("{path}: {what}: {e}"))?;
        String::from_utf8(bytes).map_err(|e| format!("{path}: {what}: {e}"))
    };
    let c = &cluster.value;
    let mut tls = TlsConfig {
        ca_file: file(&c.certificate_authority),
        insecure_skip_verify: c.insecure_skip_tls_verify,
        server_name: c.tls_server_name.clone(),
        ..TlsConfig::default()
    };
    if !c.certificate_authority_data.is_empty() {
        tls.ca = decode("certificate-authority-data", &c.certificate_authority_data)?;
        tls.ca_file.clear();
    }
    let mut http = HttpClientConfig::default();
    if let Some(u) = user.map(|u| &u.value) {
        tls.cert_file = file(&u.client_certificate);
        tls.key_file = file(&u.client_key);
        if !u.client_certificate_data.is_empty() {
            tls.cert = decode("client-certificate-data", &u.client_certificate_data)?;
            tls.cert_file.clear();
        }
        if !u.client_key_data.is_empty() {
            tls.key = decode("client-key-data", &u.client_key_data)?;
            tls.key_file.clear();
        }
        if !u.token.is_empty() || !u.token_file.is_empty() {
            http.authorization = Some(Authorization {
                kind: "Bearer".into(),
                credentials: u.token.clone(),
                credentials_file: file(&u.token_file),
            });
        } else if !u.username.is_empty() {
            http.basic_auth = Some(BasicAuth {
                username: u.username.clone(),
                password: u.password.clone(),
                ..BasicAuth::default()
            });
        }
    }
    http.tls_config = tls;
    Ok((c.server.clone(), http))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubeconfig_current_context() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config");
        std::fs::write(
            &path,
            "apiVersion: v1\nkind: Config\ncurrent-context: prod\n\
             clusters:\n- name: prod-cluster\n  cluster:\n    server: https://10.0.0.1:6443\n    certificate-authority: ca.pem\n\
             - name: dev-cluster\n  cluster:\n    server: https://dev:6443\n\
             contexts:\n- name: prod\n  context:\n    cluster: prod-cluster\n    user: admin\n\
             - name: dev\n  context:\n    cluster: dev-cluster\n    user: admin\n\
             users:\n- name: admin\n  user:\n    token: s3cret\n    exec: {command: ignored}\n",
        )
        .expect("write");
        let (server, http) = from_kubeconfig(path.to_str().expect("path")).expect("kubeconfig");
        assert_eq!(server, "https://10.0.0.1:6443");
        assert_eq!(
            http.tls_config.ca_file,
            dir.path().join("ca.pem").display().to_string()
        );
        let auth = http.authorization.expect("token auth");
        assert_eq!(auth.credentials, "s3cret");
        assert!(from_kubeconfig("/nonexistent/kubeconfig").is_err());
    }

    #[test]
    fn watch_events_decode() {
        let added: WatchEvent<super::super::objects::Pod> =
            decode_event(br#"{"type":"ADDED","object":{"metadata":{"name":"p","namespace":"n"}}}"#)
                .expect("decode");
        assert!(matches!(added, WatchEvent::Added(p) if p.metadata.name == "p"));
        let gone: WatchEvent<super::super::objects::Pod> = decode_event(
            br#"{"type":"ERROR","object":{"kind":"Status","code":410,"message":"too old"}}"#,
        )
        .expect("decode");
        assert!(matches!(gone, WatchEvent::Error { code: 410, .. }));
        assert!(decode_event::<super::super::objects::Pod>(b"{").is_err());
    }
}
