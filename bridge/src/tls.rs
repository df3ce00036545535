//! TLS on rustls with the aws-lc-rs provider: the service's listener, and the CA bundles clients
//! (the agent, `credential-process`) trust to reach it.

use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::TlsConfig;

/// Largest certificate or key file read.
const MAX_PEM_BYTES: u64 = 1024 * 1024;

fn read_pem(path: &Path) -> Result<Vec<u8>, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if meta.len() > MAX_PEM_BYTES {
        return Err(format!(
            "{}: larger than {MAX_PEM_BYTES} bytes",
            path.display()
        ));
    }
    std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// The listener's rustls configuration: the certificate chain and key from `config`, TLS 1.2 and
/// 1.3, HTTP/1.1.
pub fn server_config(config: &TlsConfig) -> Result<Arc<ServerConfig>, String> {
    let pem = read_pem(&config.cert_file)?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| {
            format!(
                "{}: not a PEM certificate chain: {e}",
                config.cert_file.display()
            )
        })?;
    if certs.is_empty() {
        return Err(format!(
            "{}: holds no certificate",
            config.cert_file.display()
        ));
    }
    let key_pem = zeroize::Zeroizing::new(read_pem(&config.key_file)?);
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| format!("{}: not a PEM private key: {e}", config.key_file.display()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?;
    let builder = match &config.client_ca_file {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let pem = read_pem(ca)?;
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert =
                    cert.map_err(|e| format!("{}: not a PEM CA bundle: {e}", ca.display()))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("{}: unusable CA certificate: {e}", ca.display()))?;
            }
            if roots.is_empty() {
                return Err(format!("{}: holds no certificate", ca.display()));
            }
            let mut verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            );
            if config.client_auth_optional {
                verifier = verifier.allow_unauthenticated();
            }
            let verifier = verifier
                .build()
                .map_err(|e| format!("{}: {e}", ca.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut server = builder.with_single_cert(certs, key).map_err(|e| {
        format!(
            "{} and {} do not make a usable certificate: {e}",
            config.cert_file.display(),
            config.key_file.display()
        )
    })?;
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(server))
}

/// The verified identity of a caller's client certificate (mTLS): the DNS names of its subject
/// alternative names, and the certificate's own thumbprint. Present on a request only when the
/// caller presented a certificate the listener verified.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientIdentity {
    /// The certificate's DNS names.
    pub names: Vec<String>,
    /// RFC 8705's `x5t#S256`: the base64url SHA-256 of the certificate's DER.
    pub thumbprint: String,
}

impl ClientIdentity {
    /// The identity in the leaf of a verified chain.
    pub fn from_chain(chain: Option<&[CertificateDer<'_>]>) -> Option<ClientIdentity> {
        let leaf = chain?.first()?;
        let cert = webpki::EndEntityCert::try_from(leaf).ok()?;
        Some(ClientIdentity {
            names: cert.valid_dns_names().map(str::to_owned).collect(),
            thumbprint: certificate_thumbprint(leaf),
        })
    }
}

/// RFC 8705's `x5t#S256` of a DER certificate: base64url (no padding) of its SHA-256.
pub fn certificate_thumbprint(der: &[u8]) -> String {
    base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        crate::digest::sha256(der),
    )
}

/// The certificates of a PEM CA bundle, for a client that must trust a private CA.
pub fn ca_bundle(path: &Path) -> Result<Vec<reqwest::Certificate>, String> {
    let pem = read_pem(path)?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| format!("{}: not a PEM CA bundle: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: holds no certificate", path.display()));
    }
    Ok(certs)
}
