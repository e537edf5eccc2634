//! `tls_config` as a rustls client configuration.
//!
//! - Roots: the PEM certificates of `ca`/`ca_file` when given (and only those, as
//!   Prometheus does), else the system's trust store.
//! - `cert`/`cert_file` with `key`/`key_file`: a client certificate (both or neither).
//! - `server_name`: the name the server's certificate is checked against (and sent as
//!   SNI is not changed: rustls sends the URL's host, which is what a target expects).
//! - `insecure_skip_verify`: any certificate is accepted; handshake signatures are
//!   still checked, so the connection is encrypted to whoever answered.
//! - `min_version`/`max_version`: rustls speaks TLS 1.2 and 1.3 only, so `TLS10` and
//!   `TLS11` as a minimum mean 1.2, and a maximum below 1.2 is an error.

use std::sync::{Arc, OnceLock};

use kiln_config::TlsConfig;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

use crate::ClientError;

fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// The system trust store, read once per process.
fn system_roots() -> Arc<RootCertStore> {
    static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let mut roots = RootCertStore::empty();
            // Unreadable or malformed system certificates are skipped, as Go does.
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                let _ = roots.add(cert);
            }
            Arc::new(roots)
        })
        .clone()
}

/// PEM text inline, or read from `file`; `None` when neither is set.
fn pem_source(what: &str, inline: &str, file: &str) -> Result<Option<Vec<u8>>, ClientError> {
    if !inline.is_empty() {
        return Ok(Some(inline.as_bytes().to_vec()));
    }
    if file.is_empty() {
        return Ok(None);
    }
    std::fs::read(file)
        .map(Some)
        .map_err(|e| ClientError::Tls(format!("reading {what} {file}: {e}")))
}

fn certificates(what: &str, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, ClientError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ClientError::Tls(format!("parsing {what}: {e}")))?;
    if certs.is_empty() {
        return Err(ClientError::Tls(format!(
            "{what}: no PEM certificate found"
        )));
    }
    Ok(certs)
}

fn version(name: &str) -> Result<Option<u8>, ClientError> {
    Ok(match name {
        "" => None,
        "TLS10" => Some(0),
        "TLS11" => Some(1),
        "TLS12" => Some(2),
        "TLS13" => Some(3),
        other => return Err(ClientError::Tls(format!("unknown TLS version {other:?}"))),
    })
}

/// The rustls client configuration for `config`.
pub fn client_config(config: &TlsConfig) -> Result<rustls::ClientConfig, ClientError> {
    let min = version(&config.min_version)?.unwrap_or(2);
    let max = version(&config.max_version)?.unwrap_or(3);
    if max < 2 {
        return Err(ClientError::Tls(format!(
            "max_version {} is below TLS 1.2, which is the oldest version Kiln speaks",
            config.max_version
        )));
    }
    if min > max {
        return Err(ClientError::Tls(format!(
            "min_version {} is above max_version {}",
            config.min_version, config.max_version
        )));
    }
    let mut versions = Vec::new();
    if min <= 2 {
        versions.push(&rustls::version::TLS12);
    }
    if max >= 3 {
        versions.push(&rustls::version::TLS13);
    }

    let verifier: Arc<dyn ServerCertVerifier> = if config.insecure_skip_verify {
        Arc::new(AcceptAnyCertificate(provider()))
    } else {
        let roots = match pem_source("ca_file", &config.ca, &config.ca_file)? {
            Some(pem) => {
                let mut roots = RootCertStore::empty();
                for cert in certificates("ca", &pem)? {
                    roots
                        .add(cert)
                        .map_err(|e| ClientError::Tls(format!("adding a CA certificate: {e}")))?;
                }
                Arc::new(roots)
            }
            None => system_roots(),
        };
        let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider())
            .build()
            .map_err(|e| ClientError::Tls(format!("building the certificate verifier: {e}")))?;
        if config.server_name.is_empty() {
            webpki
        } else {
            let name = ServerName::try_from(config.server_name.clone()).map_err(|e| {
                ClientError::Tls(format!("server_name {:?}: {e}", config.server_name))
            })?;
            Arc::new(VerifyAsName {
                inner: webpki,
                name,
            })
        }
    };

    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&versions)
        .map_err(|e| ClientError::Tls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let cert = pem_source("cert_file", &config.cert, &config.cert_file)?;
    let key = pem_source("key_file", &config.key, &config.key_file)?;
    let mut tls = match (cert, key) {
        (None, None) => builder.with_no_client_auth(),
        (Some(cert), Some(key)) => {
            let chain = certificates("client certificate", &cert)?;
            let key = PrivateKeyDer::from_pem_slice(&key)
                .map_err(|e| ClientError::Tls(format!("parsing the client key: {e}")))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| ClientError::Tls(format!("client certificate: {e}")))?
        }
        (Some(_), None) => {
            return Err(ClientError::Tls(
                "client cert file specified without client key file".into(),
            ));
        }
        (None, Some(_)) => {
            return Err(ClientError::Tls(
                "client key file specified without client cert file".into(),
            ));
        }
    };
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tls)
}

/// Checks the server's certificate against a configured name instead of the URL's host.
#[derive(Debug)]
struct VerifyAsName {
    inner: Arc<WebPkiServerVerifier>,
    name: ServerName<'static>,
}

impl ServerCertVerifier for VerifyAsName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, &self.name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// `insecure_skip_verify`: trusts any certificate, still checks handshake signatures.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
