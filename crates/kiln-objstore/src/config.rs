//! `objstore.yml`: Thanos's bucket configuration, read as Thanos reads it.
//!
//! ```yaml
//! type: S3            # FILESYSTEM, S3, GCS or AZURE (any case)
//! config:             # the provider's keys, as Thanos documents them
//!   bucket: metrics
//!   endpoint: s3.us-east-1.amazonaws.com
//!   access_key: $(AWS_ACCESS_KEY_ID)
//! prefix: cluster-a   # optional: every object lives under it
//! ```
//!
//! Environment variables are expanded before the YAML is parsed: `$(VAR)` as Thanos
//! does, and `${VAR}` too (the form the lecture's examples use). A reference to a
//! variable that is not set is an error naming it, never an empty string.
//!
//! Every key Thanos documents for the four providers is accepted, so an existing file
//! works unchanged; a key Thanos does not know is an error (Thanos parses strictly too).
//! Settings Kiln cannot honour and that would change what is stored or who may read it
//! (S3 signature v2, SSE-C, client certificates, an Azure connection string) are refused
//! with a clear error rather than ignored. Tuning knobs of Go's HTTP client that have no
//! counterpart (`max_idle_conns`, `expect_continue_timeout`, ...) are accepted and have
//! no effect; the README lists them. Providers Kiln does not implement (SWIFT, COS, OSS,
//! OCI, BOS, OBS) are refused by name.

use std::collections::BTreeMap;

use kiln_config::Duration;
use kiln_config::YamlError;
use serde::Deserialize;

/// A parsed `objstore.yml`.
#[derive(Debug, Clone, PartialEq)]
pub struct BucketConfig {
    pub provider: Provider,
    /// Every object's key starts with it (no leading or trailing `/`); empty for none.
    pub prefix: String,
}

/// The object store and its settings.
#[derive(Debug, Clone, PartialEq)]
pub enum Provider {
    Filesystem(FilesystemConfig),
    S3(Box<S3Config>),
    Gcs(Box<GcsConfig>),
    Azure(Box<AzureConfig>),
}

impl Provider {
    /// The provider's name as written in `type:`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Provider::Filesystem(_) => "FILESYSTEM",
            Provider::S3(_) => "S3",
            Provider::Gcs(_) => "GCS",
            Provider::Azure(_) => "AZURE",
        }
    }
}

/// `type: FILESYSTEM`: a local directory (created when missing).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesystemConfig {
    #[serde(default)]
    pub directory: String,
}

/// `http_config` of the cloud providers. Go's transport knobs without a counterpart in
/// Kiln's client are accepted and ignored (see the module docs).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// How long an idle connection stays in the pool.
    pub idle_conn_timeout: Duration,
    /// How long a response may stall: the wait for the headers and for each read of the
    /// body (a transfer that makes progress is never cut).
    pub response_header_timeout: Duration,
    pub insecure_skip_verify: bool,
    /// Connecting, TLS handshake included.
    pub tls_handshake_timeout: Duration,
    pub expect_continue_timeout: Duration,
    pub max_idle_conns: u64,
    pub max_idle_conns_per_host: u64,
    pub max_conns_per_host: u64,
    pub tls_config: ObjstoreTlsConfig,
    pub disable_compression: bool,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            idle_conn_timeout: Duration::from_secs(90),
            response_header_timeout: Duration::from_secs(120),
            insecure_skip_verify: false,
            tls_handshake_timeout: Duration::from_secs(10),
            expect_continue_timeout: Duration::from_secs(1),
            max_idle_conns: 100,
            max_idle_conns_per_host: 100,
            max_conns_per_host: 0,
            tls_config: ObjstoreTlsConfig::default(),
            disable_compression: false,
        }
    }
}

/// `http_config.tls_config`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ObjstoreTlsConfig {
    /// PEM file of the CAs to trust besides the system's.
    pub ca_file: String,
    pub cert_file: String,
    pub key_file: String,
    pub server_name: String,
    pub insecure_skip_verify: bool,
}

/// `trace:` (accepted; Kiln has no tracing exporter yet).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TraceConfig {
    pub enable: bool,
}

/// `sse_config:` of S3.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SseConfig {
    /// `SSE-S3`, `SSE-KMS` or `SSE-C`; empty for none.
    #[serde(rename = "type")]
    pub kind: String,
    pub kms_key_id: String,
    pub kms_encryption_context: BTreeMap<String, String>,
    pub encryption_key: String,
}

/// `type: S3` (any S3 API: AWS, MinIO, Ceph, moto, ...).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S3Config {
    pub bucket: String,
    /// Host (and port) without a scheme, as Thanos takes it; `https://` unless
    /// `insecure`. Empty: AWS's endpoint for the region.
    pub endpoint: String,
    /// Empty: `us-east-1` (Thanos asks the bucket for its region; Kiln needs it given
    /// for buckets elsewhere on AWS).
    pub region: String,
    pub disable_dualstack: bool,
    /// Credentials from the AWS environment (variables, web identity, instance role)
    /// instead of `access_key`/`secret_key`. They are used as well when no keys are given.
    pub aws_sdk_auth: bool,
    pub access_key: String,
    /// Plain HTTP.
    pub insecure: bool,
    pub signature_version2: bool,
    pub secret_key: String,
    pub session_token: String,
    /// Metadata set on every object written; `X-Amz-Storage-Class` picks the storage
    /// class, as with Thanos.
    pub put_user_metadata: BTreeMap<String, String>,
    pub http_config: HttpConfig,
    pub trace: TraceConfig,
    pub list_objects_version: String,
    /// `auto`, `virtual-hosted` or `path`.
    pub bucket_lookup_type: String,
    pub send_content_md5: bool,
    /// Every upload in one request, whatever its size.
    pub disable_multipart: bool,
    /// Part size of multipart uploads, bytes (0: 64 MiB).
    pub part_size: u64,
    pub sse_config: SseConfig,
    pub sts_endpoint: String,
    /// Tries of a failed request (0: 10).
    pub max_retries: u64,
}

impl Default for S3Config {
    fn default() -> Self {
        S3Config {
            bucket: String::new(),
            endpoint: String::new(),
            region: String::new(),
            disable_dualstack: false,
            aws_sdk_auth: false,
            access_key: String::new(),
            insecure: false,
            signature_version2: false,
            secret_key: String::new(),
            session_token: String::new(),
            put_user_metadata: BTreeMap::new(),
            http_config: HttpConfig::default(),
            trace: TraceConfig::default(),
            list_objects_version: String::new(),
            bucket_lookup_type: "auto".to_owned(),
            send_content_md5: true,
            disable_multipart: false,
            part_size: 64 << 20,
            sse_config: SseConfig::default(),
            sts_endpoint: String::new(),
            max_retries: 0,
        }
    }
}

/// `type: GCS`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GcsConfig {
    pub bucket: String,
    /// The service account's JSON key, inline. Empty: the application default
    /// credentials (`GOOGLE_APPLICATION_CREDENTIALS`, gcloud's file, the metadata server).
    pub service_account: String,
    /// Accepted; Kiln always speaks GCS's JSON API over HTTP.
    pub use_grpc: bool,
    pub grpc_conn_pool_size: u64,
    pub http_config: HttpConfig,
    pub chunk_size_bytes: u64,
    pub max_retries: u64,
}

/// `reader_config` of Azure.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AzureReaderConfig {
    pub max_retry_requests: u64,
}

/// `pipeline_config` of Azure.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AzurePipelineConfig {
    /// Tries of a failed request (0: `max_retries`, then 10).
    pub max_tries: u64,
    pub try_timeout: Duration,
    /// First wait before a retry (0: the client's default).
    pub retry_delay: Duration,
    /// Longest wait between retries (0: the client's default).
    pub max_retry_delay: Duration,
}

/// `type: AZURE`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AzureConfig {
    pub az_tenant_id: String,
    pub client_id: String,
    pub client_secret: String,
    pub storage_account: String,
    pub storage_account_key: String,
    pub storage_connection_string: String,
    /// Accepted; the container must exist (Kiln does not create it).
    pub storage_create_container: bool,
    pub container: String,
    /// The blob service's domain: `https://<storage_account>.<endpoint>`.
    pub endpoint: String,
    /// Client id of a user-assigned managed identity.
    pub user_assigned_id: String,
    pub max_retries: u64,
    pub reader_config: AzureReaderConfig,
    pub pipeline_config: AzurePipelineConfig,
    pub http_config: HttpConfig,
    pub msi_resource: String,
}

impl Default for AzureConfig {
    fn default() -> Self {
        AzureConfig {
            az_tenant_id: String::new(),
            client_id: String::new(),
            client_secret: String::new(),
            storage_account: String::new(),
            storage_account_key: String::new(),
            storage_connection_string: String::new(),
            storage_create_container: true,
            container: String::new(),
            endpoint: "blob.core.windows.net".to_owned(),
            user_assigned_id: String::new(),
            max_retries: 0,
            reader_config: AzureReaderConfig::default(),
            pipeline_config: AzurePipelineConfig::default(),
            http_config: HttpConfig::default(),
            msi_resource: String::new(),
        }
    }
}

/// Why a bucket configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("the bucket configuration is empty")]
    Empty,
    #[error("found reference to unset environment variable {0:?}")]
    UnsetVariable(String),
    #[error("{0}")]
    Yaml(#[from] YamlError),
    #[error("type {0:?} is not a bucket type Kiln supports (FILESYSTEM, S3, GCS, AZURE)")]
    UnsupportedType(String),
    #[error("no bucket type: `type:` is one of FILESYSTEM, S3, GCS, AZURE")]
    MissingType,
    /// A setting that is valid for Thanos but that Kiln cannot honour.
    #[error("{provider} {key}: {reason}")]
    Unsupported {
        provider: &'static str,
        key: &'static str,
        reason: &'static str,
    },
    /// A required setting is missing or a value is out of its domain.
    #[error("{provider}: {message}")]
    Invalid {
        provider: &'static str,
        message: String,
    },
}

/// Replaces `$(VAR)` and `${VAR}` with the variable's value. Variable names are
/// `[A-Za-z0-9_]+`; anything else (`$x`, `$(`, a lone `$`) is left as written.
pub fn expand_env(
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, ConfigError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let close = match after.as_bytes().first() {
            Some(b'(') => Some(')'),
            Some(b'{') => Some('}'),
            _ => None,
        };
        let reference = close.and_then(|close| {
            let inner = &after[1..];
            let end = inner.find(close)?;
            let name = &inner[..end];
            let valid =
                !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            valid.then_some((name, end + 2))
        });
        match reference {
            Some((name, len)) => {
                let value =
                    lookup(name).ok_or_else(|| ConfigError::UnsetVariable(name.to_owned()))?;
                out.push_str(&value);
                rest = &after[len..];
            }
            None => {
                out.push('$');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// The document's shape before the provider is known.
#[derive(Deserialize)]
struct Untyped {
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    config: serde::de::IgnoredAny,
    #[serde(default)]
    prefix: Option<String>,
}

/// The document with its provider's schema.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Typed<C> {
    #[serde(rename = "type")]
    _kind: String,
    #[serde(default)]
    config: C,
    #[serde(default)]
    prefix: String,
}

const DOCUMENT: &str = "a bucket configuration is a mapping with `type:` and `config:`";

/// Parses an `objstore.yml` document after expanding environment variables (from the
/// process's environment). Only the first YAML document counts, as with Thanos.
pub fn parse(text: &str) -> Result<BucketConfig, ConfigError> {
    parse_with_env(text, |name| std::env::var(name).ok())
}

/// [`parse`] with the environment given by `lookup` (tests).
pub fn parse_with_env(
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<BucketConfig, ConfigError> {
    let text = expand_env(text, lookup)?;
    let text = first_document(&text);
    if text.trim().is_empty() {
        return Err(ConfigError::Empty);
    }
    let untyped: Untyped = kiln_config::yaml::from_str(text, DOCUMENT)?;
    let _ = (untyped.config, untyped.prefix);
    let kind = untyped.kind.ok_or(ConfigError::MissingType)?;
    let (provider, prefix) = match kind.to_ascii_uppercase().as_str() {
        "FILESYSTEM" => {
            let t: Typed<FilesystemConfig> = kiln_config::yaml::from_str(text, DOCUMENT)?;
            (Provider::Filesystem(t.config), t.prefix)
        }
        "S3" => {
            let t: Typed<S3Config> = kiln_config::yaml::from_str(text, DOCUMENT)?;
            (Provider::S3(Box::new(t.config)), t.prefix)
        }
        "GCS" => {
            let t: Typed<GcsConfig> = kiln_config::yaml::from_str(text, DOCUMENT)?;
            (Provider::Gcs(Box::new(t.config)), t.prefix)
        }
        "AZURE" => {
            let t: Typed<AzureConfig> = kiln_config::yaml::from_str(text, DOCUMENT)?;
            (Provider::Azure(Box::new(t.config)), t.prefix)
        }
        _ => return Err(ConfigError::UnsupportedType(kind)),
    };
    let config = BucketConfig {
        provider,
        prefix: prefix.trim_matches('/').to_owned(),
    };
    validate(&config)?;
    Ok(config)
}

/// The text up to a `---` line that starts a second document.
fn first_document(text: &str) -> &str {
    let mut offset = 0;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        if i > 0 && line.trim_end() == "---" {
            return &text[..offset];
        }
        offset += line.len();
    }
    text
}

/// Required keys and settings Kiln refuses (see the module docs).
fn validate(config: &BucketConfig) -> Result<(), ConfigError> {
    let invalid = |provider, message: &str| ConfigError::Invalid {
        provider,
        message: message.to_owned(),
    };
    let unsupported = |provider, key, reason| ConfigError::Unsupported {
        provider,
        key,
        reason,
    };
    match &config.provider {
        Provider::Filesystem(c) => {
            if c.directory.is_empty() {
                return Err(invalid("FILESYSTEM", "no directory given"));
            }
        }
        Provider::S3(c) => {
            if c.bucket.is_empty() {
                return Err(invalid("S3", "no bucket given"));
            }
            if c.access_key.is_empty() != c.secret_key.is_empty() {
                return Err(invalid(
                    "S3",
                    "access_key and secret_key are given together or not at all",
                ));
            }
            if c.signature_version2 {
                return Err(unsupported(
                    "S3",
                    "signature_version2",
                    "only signature version 4 is supported",
                ));
            }
            if !["", "auto", "virtual-hosted", "path"].contains(&c.bucket_lookup_type.as_str()) {
                return Err(invalid(
                    "S3",
                    &format!(
                        "bucket_lookup_type {:?} is not one of auto, virtual-hosted, path",
                        c.bucket_lookup_type
                    ),
                ));
            }
            match c.sse_config.kind.as_str() {
                "" | "SSE-S3" => {}
                "SSE-KMS" => {
                    if c.sse_config.kms_key_id.is_empty() {
                        return Err(invalid("S3", "sse_config SSE-KMS needs kms_key_id"));
                    }
                    if !c.sse_config.kms_encryption_context.is_empty() {
                        return Err(unsupported(
                            "S3",
                            "sse_config.kms_encryption_context",
                            "an encryption context is not supported",
                        ));
                    }
                }
                "SSE-C" => {
                    return Err(unsupported(
                        "S3",
                        "sse_config",
                        "SSE-C (customer-provided keys) is not supported",
                    ));
                }
                other => {
                    return Err(invalid(
                        "S3",
                        &format!("sse_config type {other:?} is not one of SSE-S3, SSE-KMS, SSE-C"),
                    ));
                }
            }
            check_tls("S3", &c.http_config)?;
        }
        Provider::Gcs(c) => {
            if c.bucket.is_empty() {
                return Err(invalid("GCS", "no bucket given"));
            }
            check_tls("GCS", &c.http_config)?;
        }
        Provider::Azure(c) => {
            if c.storage_account.is_empty() {
                return Err(invalid("AZURE", "no storage_account given"));
            }
            if c.container.is_empty() {
                return Err(invalid("AZURE", "no container given"));
            }
            if !c.storage_connection_string.is_empty() {
                return Err(unsupported(
                    "AZURE",
                    "storage_connection_string",
                    "give storage_account and storage_account_key instead",
                ));
            }
            if !c.msi_resource.is_empty() {
                return Err(unsupported(
                    "AZURE",
                    "msi_resource",
                    "use user_assigned_id for a managed identity",
                ));
            }
            check_tls("AZURE", &c.http_config)?;
        }
    }
    Ok(())
}

fn check_tls(provider: &'static str, http: &HttpConfig) -> Result<(), ConfigError> {
    let tls = &http.tls_config;
    if !tls.cert_file.is_empty() || !tls.key_file.is_empty() {
        return Err(ConfigError::Unsupported {
            provider,
            key: "http_config.tls_config.cert_file",
            reason: "client certificates are not supported",
        });
    }
    if !tls.server_name.is_empty() {
        return Err(ConfigError::Unsupported {
            provider,
            key: "http_config.tls_config.server_name",
            reason: "the server name is always the endpoint's host",
        });
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "BUCKET" => Some("metrics".to_owned()),
            "SECRET" => Some("s3cr3t".to_owned()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    fn parse(text: &str) -> Result<BucketConfig, ConfigError> {
        parse_with_env(text, env)
    }

    #[test]
    fn environment_variables_in_both_forms() {
        let out = expand_env(
            "a: $(BUCKET)/${SECRET}$(EMPTY) $x $( ${} $(A-B) $$ end$",
            env,
        );
        assert_eq!(out.unwrap(), "a: metrics/s3cr3t $x $( ${} $(A-B) $$ end$");
        let err = expand_env("key: ${NOPE}", env).unwrap_err();
        assert_eq!(
            err.to_string(),
            "found reference to unset environment variable \"NOPE\""
        );
        assert!(matches!(
            expand_env("$(NOPE)", env),
            Err(ConfigError::UnsetVariable(v)) if v == "NOPE"
        ));
    }

    #[test]
    fn the_four_providers_with_defaults() {
        let fs = parse("type: filesystem\nconfig:\n  directory: /data/bucket\n").unwrap();
        assert_eq!(
            fs.provider,
            Provider::Filesystem(FilesystemConfig {
                directory: "/data/bucket".to_owned()
            })
        );
        assert_eq!(fs.prefix, "");

        let s3 = parse(
            "type: S3\nconfig:\n  bucket: $(BUCKET)\n  endpoint: 127.0.0.1:9000\n  \
             access_key: key\n  secret_key: ${SECRET}\n  insecure: true\n  \
             http_config:\n    idle_conn_timeout: 1m30s\n    response_header_timeout: 5s\n\
             prefix: /cluster-a/\n",
        )
        .unwrap();
        let Provider::S3(c) = &s3.provider else {
            panic!("{s3:?}")
        };
        assert_eq!(
            (c.bucket.as_str(), c.secret_key.as_str()),
            ("metrics", "s3cr3t")
        );
        assert!(c.insecure && c.send_content_md5);
        assert_eq!(c.bucket_lookup_type, "auto");
        assert_eq!(
            c.http_config.response_header_timeout,
            Duration::from_secs(5)
        );
        assert_eq!(c.http_config.idle_conn_timeout, Duration::from_secs(90));
        assert_eq!(c.http_config.tls_handshake_timeout, Duration::from_secs(10));
        assert_eq!(s3.prefix, "cluster-a");

        let gcs =
            parse("type: GCS\nconfig:\n  bucket: b\n  service_account: |-\n    {}\n").unwrap();
        assert!(matches!(&gcs.provider, Provider::Gcs(c) if c.service_account == "{}"));

        let az = parse(
            "type: AZURE\nconfig:\n  storage_account: acct\n  storage_account_key: k\n  \
             container: c\n",
        )
        .unwrap();
        let Provider::Azure(c) = &az.provider else {
            panic!("{az:?}")
        };
        assert_eq!(c.endpoint, "blob.core.windows.net");
        assert_eq!(az.provider.type_name(), "AZURE");
    }

    #[test]
    fn thanos_documented_keys_are_all_accepted() {
        // The S3 block exactly as Thanos's storage.md prints it (every key, defaults).
        let text = r#"type: S3
config:
  bucket: "b"
  endpoint: ""
  region: ""
  disable_dualstack: false
  aws_sdk_auth: false
  access_key: ""
  insecure: false
  signature_version2: false
  secret_key: ""
  session_token: ""
  put_user_metadata: {}
  http_config:
    idle_conn_timeout: 1m30s
    response_header_timeout: 2m
    insecure_skip_verify: false
    tls_handshake_timeout: 10s
    expect_continue_timeout: 1s
    max_idle_conns: 100
    max_idle_conns_per_host: 100
    max_conns_per_host: 0
    tls_config:
      ca_file: ""
      cert_file: ""
      key_file: ""
      server_name: ""
      insecure_skip_verify: false
    disable_compression: false
  trace:
    enable: false
  list_objects_version: ""
  bucket_lookup_type: auto
  send_content_md5: true
  disable_multipart: false
  part_size: 67108864
  sse_config:
    type: ""
    kms_key_id: ""
    kms_encryption_context: {}
    encryption_key: ""
  sts_endpoint: ""
  max_retries: 0
prefix: ""
"#;
        let c = parse(text).unwrap();
        assert!(matches!(&c.provider, Provider::S3(s) if s.bucket == "b"));
    }

    #[test]
    fn bad_files_are_refused_with_the_reason() {
        let cases: &[(&str, &str)] = &[
            ("", "the bucket configuration is empty"),
            ("config:\n  directory: x\n", "no bucket type"),
            (
                "type: SWIFT\nconfig: {}\n",
                "type \"SWIFT\" is not a bucket type Kiln supports",
            ),
            (
                "type: S3\nconfig:\n  bucket: b\n  bukcet: c\n",
                "4:3: field bukcet not found",
            ),
            ("type: S3\nconfig:\n  endpoint: x\n", "S3: no bucket given"),
            (
                "type: S3\nconfig:\n  bucket: b\n  access_key: a\n",
                "access_key and secret_key",
            ),
            (
                "type: S3\nconfig:\n  bucket: b\n  signature_version2: true\n",
                "S3 signature_version2: only signature version 4",
            ),
            (
                "type: S3\nconfig:\n  bucket: b\n  sse_config:\n    type: SSE-C\n",
                "SSE-C",
            ),
            (
                "type: S3\nconfig:\n  bucket: b\n  http_config:\n    tls_config:\n      cert_file: c.pem\n",
                "client certificates are not supported",
            ),
            (
                "type: FILESYSTEM\nconfig: {}\n",
                "FILESYSTEM: no directory given",
            ),
            (
                "type: AZURE\nconfig:\n  storage_account: a\n  container: c\n  storage_connection_string: x\n",
                "storage_connection_string",
            ),
            (
                "type: GCS\nconfig:\n  bucket: $(NOPE)\n",
                "unset environment variable",
            ),
            (
                "type: S3\nconfig: [1, 2]\n",
                "2:9: config must be a mapping",
            ),
            (
                "type: FILESYSTEM\nconfig:\n  directory: d\nextra: 1\n",
                "4:1",
            ),
        ];
        for (text, want) in cases {
            let err = parse(text).map(|c| format!("parsed: {c:?}"));
            let msg = match err {
                Ok(c) => c,
                Err(e) => e.to_string(),
            };
            assert!(msg.contains(want), "{text:?}: {msg:?} lacks {want:?}");
        }
    }

    #[test]
    fn only_the_first_document_counts() {
        let c = parse("type: FILESYSTEM\nconfig:\n  directory: a\n---\ntype: S3\n").unwrap();
        assert_eq!(c.provider.type_name(), "FILESYSTEM");
    }
}
