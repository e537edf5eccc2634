//! Builds the `object_store` client a [`BucketConfig`] describes.
//!
//! Cloud clients retry failed requests with exponential backoff (100 ms doubling to
//! 15 s, for at most 3 minutes from the first try; `max_retries` tries, 10 when 0) and
//! time out a connection attempt after `tls_handshake_timeout` and a response that
//! stalls (no headers, or no body bytes) for `response_header_timeout`. A transfer that
//! keeps making progress is never cut, so a large index downloads whatever its size.

use std::sync::Arc;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::local::LocalFileSystem;
use object_store::{
    Attribute, Attributes, BackoffConfig, Certificate, ClientOptions, ObjectStore, RetryConfig,
};

use crate::config::{BucketConfig, HttpConfig, Provider};

/// Why a bucket client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("creating the bucket directory {path}")]
    CreateDirectory {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("reading the CA file {path}")]
    ReadCa {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("setting up the {provider} client")]
    Client {
        provider: &'static str,
        #[source]
        source: object_store::Error,
    },
}

/// A built client and what Kiln applies around it.
pub(crate) struct Built {
    pub(crate) store: Arc<dyn ObjectStore>,
    /// The bucket's name as Thanos labels its metrics (`bucket`): the bucket, the
    /// container or the directory.
    pub(crate) name: String,
    /// Attributes set on every object written (S3's `put_user_metadata`).
    pub(crate) put_attributes: Attributes,
    /// Uploads larger than this go in parts of this size; `None`: always one request.
    pub(crate) part_size: Option<usize>,
}

/// Default size of an upload part (Thanos's S3 default `part_size`).
const DEFAULT_PART_SIZE: usize = 64 << 20;

pub(crate) fn build(config: &BucketConfig) -> Result<Built, BuildError> {
    let client_err = |provider| move |source| BuildError::Client { provider, source };
    match &config.provider {
        Provider::Filesystem(c) => {
            std::fs::create_dir_all(&c.directory).map_err(|source| {
                BuildError::CreateDirectory {
                    path: c.directory.clone(),
                    source,
                }
            })?;
            let store = LocalFileSystem::new_with_prefix(&c.directory)
                .map_err(client_err("FILESYSTEM"))?
                .with_automatic_cleanup(true);
            Ok(Built {
                store: Arc::new(store),
                name: c.directory.clone(),
                put_attributes: Attributes::new(),
                part_size: Some(DEFAULT_PART_SIZE),
            })
        }
        Provider::S3(c) => {
            install_tls_provider();
            let mut b = AmazonS3Builder::from_env()
                .with_bucket_name(&c.bucket)
                .with_region(if c.region.is_empty() {
                    "us-east-1"
                } else {
                    c.region.as_str()
                })
                .with_client_options(client_options(&c.http_config)?.with_allow_http(c.insecure))
                .with_retry(retry(c.max_retries));
            if !c.endpoint.is_empty() {
                let scheme = if c.insecure { "http" } else { "https" };
                let host = c.endpoint.trim_end_matches('/');
                let endpoint = if host.contains("://") {
                    host.to_owned()
                } else {
                    format!("{scheme}://{host}")
                };
                // Virtual-hosted requests put the bucket in the host name: the
                // endpoint then names it, as the client expects.
                let virtual_hosted = match c.bucket_lookup_type.as_str() {
                    "virtual-hosted" => true,
                    "path" => false,
                    _ => host.ends_with("amazonaws.com"),
                };
                let endpoint = if virtual_hosted {
                    endpoint.replacen("://", &format!("://{}.", c.bucket), 1)
                } else {
                    endpoint
                };
                b = b
                    .with_endpoint(endpoint)
                    .with_virtual_hosted_style_request(virtual_hosted);
            }
            if !c.access_key.is_empty() {
                b = b
                    .with_access_key_id(&c.access_key)
                    .with_secret_access_key(&c.secret_key);
                if !c.session_token.is_empty() {
                    b = b.with_token(&c.session_token);
                }
            }
            match c.sse_config.kind.as_str() {
                "SSE-KMS" => b = b.with_sse_kms_encryption(&c.sse_config.kms_key_id),
                "SSE-S3" => {
                    let key: AmazonS3ConfigKey = "aws_server_side_encryption"
                        .parse()
                        .map_err(client_err("S3"))?;
                    b = b.with_config(key, "AES256");
                }
                _ => {}
            }
            let store = b.build().map_err(client_err("S3"))?;
            let mut put_attributes = Attributes::new();
            for (k, v) in &c.put_user_metadata {
                let attribute = if k.eq_ignore_ascii_case("X-Amz-Storage-Class") {
                    Attribute::StorageClass
                } else {
                    Attribute::Metadata(k.clone().into())
                };
                put_attributes.insert(attribute, v.clone().into());
            }
            let part_size = if c.part_size == 0 {
                DEFAULT_PART_SIZE
            } else {
                // S3 refuses parts under 5 MiB (but the last).
                usize::try_from(c.part_size)
                    .unwrap_or(usize::MAX)
                    .max(5 << 20)
            };
            Ok(Built {
                store: Arc::new(store),
                name: c.bucket.clone(),
                put_attributes,
                part_size: (!c.disable_multipart).then_some(part_size),
            })
        }
        Provider::Gcs(c) => {
            install_tls_provider();
            let mut b = GoogleCloudStorageBuilder::from_env()
                .with_bucket_name(&c.bucket)
                .with_client_options(client_options(&c.http_config)?)
                .with_retry(retry(c.max_retries));
            if !c.service_account.is_empty() {
                b = b.with_service_account_key(&c.service_account);
            }
            let store = b.build().map_err(client_err("GCS"))?;
            Ok(Built {
                store: Arc::new(store),
                name: c.bucket.clone(),
                put_attributes: Attributes::new(),
                part_size: Some(DEFAULT_PART_SIZE),
            })
        }
        Provider::Azure(c) => {
            install_tls_provider();
            let tries = [c.pipeline_config.max_tries, c.max_retries]
                .into_iter()
                .find(|&n| n > 0)
                .unwrap_or(0);
            let mut retry = retry(tries);
            if c.pipeline_config.retry_delay.as_millis() > 0 {
                retry.backoff.init_backoff = c.pipeline_config.retry_delay.as_std();
            }
            if c.pipeline_config.max_retry_delay.as_millis() > 0 {
                retry.backoff.max_backoff = c.pipeline_config.max_retry_delay.as_std();
            }
            let mut b = MicrosoftAzureBuilder::from_env()
                .with_account(&c.storage_account)
                .with_container_name(&c.container)
                .with_endpoint(format!(
                    "https://{}.{}",
                    c.storage_account,
                    c.endpoint.trim_matches('/')
                ))
                .with_client_options(client_options(&c.http_config)?)
                .with_retry(retry);
            if !c.storage_account_key.is_empty() {
                b = b.with_access_key(&c.storage_account_key);
            } else if !c.client_secret.is_empty() {
                b = b.with_client_secret_authorization(
                    &c.client_id,
                    &c.client_secret,
                    &c.az_tenant_id,
                );
            } else if !c.user_assigned_id.is_empty() {
                b = b.with_client_id(&c.user_assigned_id);
            }
            let store = b.build().map_err(client_err("AZURE"))?;
            Ok(Built {
                store: Arc::new(store),
                name: c.container.clone(),
                put_attributes: Attributes::new(),
                part_size: Some(DEFAULT_PART_SIZE),
            })
        }
    }
}

/// Retries with exponential backoff: `max_retries` tries after the first (10 when 0).
fn retry(max_retries: u64) -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig::default(),
        max_retries: match max_retries {
            0 => 10,
            n => usize::try_from(n).unwrap_or(usize::MAX),
        },
        retry_timeout: std::time::Duration::from_secs(180),
    }
}

/// The cloud client's connection settings from Thanos's `http_config`.
fn client_options(http: &HttpConfig) -> Result<ClientOptions, BuildError> {
    let mut o = ClientOptions::new()
        .with_timeout_disabled()
        .with_connect_timeout(http.tls_handshake_timeout.as_std())
        .with_read_timeout(http.response_header_timeout.as_std())
        .with_pool_idle_timeout(http.idle_conn_timeout.as_std())
        .with_allow_invalid_certificates(
            http.insecure_skip_verify || http.tls_config.insecure_skip_verify,
        );
    if http.max_idle_conns_per_host > 0 {
        o = o.with_pool_max_idle_per_host(
            usize::try_from(http.max_idle_conns_per_host).unwrap_or(usize::MAX),
        );
    }
    let ca_file = &http.tls_config.ca_file;
    if !ca_file.is_empty() {
        let read_err = |source| BuildError::ReadCa {
            path: ca_file.clone(),
            source,
        };
        let pem = std::fs::read(ca_file).map_err(read_err)?;
        let certificates =
            Certificate::from_pem_bundle(&pem).map_err(|source| BuildError::Client {
                provider: "TLS",
                source,
            })?;
        for c in certificates {
            o = o.with_root_certificate(c);
        }
    }
    Ok(o)
}

/// The cloud clients use rustls without choosing a cryptography provider (see
/// DESIGN.md): ring becomes the process's default unless one is installed already.
fn install_tls_provider() {
    // An error means a provider is installed already, which is what is needed.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
