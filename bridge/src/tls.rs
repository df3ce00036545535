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
/// alternative names, its SPIFFE ID, and the certificate's own thumbprint. Present on a request
/// only when the caller presented a certificate the listener verified.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientIdentity {
    /// What rules match (`client_certificate:`, `client_spiffe_id:`): the certificate's DNS
    /// names, then its SPIFFE ID when it has one (it starts `spiffe://`, which no DNS name does).
    pub names: Vec<String>,
    /// The SPIFFE ID: the certificate's only URI SAN, when that is a `spiffe://` URI.
    pub spiffe_id: Option<String>,
    /// RFC 8705's `x5t#S256`: the base64url SHA-256 of the certificate's DER.
    pub thumbprint: String,
}

impl ClientIdentity {
    /// The identity in the leaf of a verified chain.
    pub fn from_chain(chain: Option<&[CertificateDer<'_>]>) -> Option<ClientIdentity> {
        let leaf = chain?.first()?;
        let cert = webpki::EndEntityCert::try_from(leaf).ok()?;
        let mut names: Vec<String> = cert.valid_dns_names().map(str::to_owned).collect();
        let spiffe_id = spiffe_id(leaf);
        names.extend(spiffe_id.clone());
        Some(ClientIdentity {
            names,
            spiffe_id,
            thumbprint: certificate_thumbprint(leaf),
        })
    }
}

/// The prefix of a SPIFFE ID.
pub const SPIFFE_SCHEME: &str = "spiffe://";

/// The SPIFFE ID of a DER certificate: its URI SAN when it has exactly one and that one is a
/// well-formed `spiffe://trust-domain/path` (X.509-SVID); `None` otherwise.
fn spiffe_id(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let san = cert.subject_alternative_name().ok()??;
    let mut uris = san.value.general_names.iter().filter_map(|n| match n {
        x509_parser::extensions::GeneralName::URI(u) => Some(*u),
        _ => None,
    });
    let (Some(uri), None) = (uris.next(), uris.next()) else {
        return None;
    };
    valid_spiffe_id(uri).then(|| uri.to_owned())
}

/// Whether `id` is a SPIFFE ID: `spiffe://`, a trust domain of lower-case letters, digits, `.`,
/// `-` and `_`, then an optional path of non-empty segments of letters, digits, `.`, `-`, `_`
/// (no `.` or `..` segment), no query, fragment, port or user info; at most 2048 bytes.
pub fn valid_spiffe_id(id: &str) -> bool {
    let Some(rest) = id.strip_prefix(SPIFFE_SCHEME) else {
        return false;
    };
    let (domain, path) = rest
        .split_once('/')
        .map_or((rest, None), |(d, p)| (d, Some(p)));
    let domain_ok = !domain.is_empty()
        && domain
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b));
    let path_ok = path.is_none_or(|p| {
        p.split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
        })
    });
    id.len() <= 2048 && domain_ok && path_ok
}

/// RFC 8705's `x5t#S256` of a DER certificate: base64url (no padding) of its SHA-256.
pub fn certificate_thumbprint(der: &[u8]) -> String {
    crate::digest::sha256_b64url(der)
}

/// A client certificate (PEM chain, leaf first) and its PEM private key, as a client presents
/// them over mTLS. The key is read into memory that is wiped when dropped; errors name the files,
/// never their contents.
pub fn client_identity(cert: &Path, key: &Path) -> Result<reqwest::Identity, String> {
    let mut pem = zeroize::Zeroizing::new(read_pem(cert)?);
    if CertificateDer::pem_slice_iter(&pem).next().is_none() {
        return Err(format!("{}: holds no PEM certificate", cert.display()));
    }
    let key_pem = zeroize::Zeroizing::new(read_pem(key)?);
    PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| format!("{}: not a PEM private key: {e}", key.display()))?;
    pem.push(b'\n');
    pem.extend_from_slice(&key_pem);
    reqwest::Identity::from_pem(&pem).map_err(|e| {
        format!(
            "{} and {} do not make a client certificate: {e}",
            cert.display(),
            key.display()
        )
    })
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
