//! A private CA and a certificate for 127.0.0.1 and localhost, generated at test time, for the
//! service's TLS listener.

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};

/// PEM texts of a test CA and a server certificate it issued.
pub struct TestPki {
    /// The CA certificate (what clients trust).
    pub ca_pem: String,
    /// The server certificate.
    pub cert_pem: String,
    /// The server's private key.
    pub key_pem: String,
}

/// Issues a fresh CA and a certificate for `127.0.0.1` and `localhost`.
pub fn localhost_pki() -> TestPki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "stsbridge test CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "stsbridge");
    let cert = params.signed_by(&key, &ca).unwrap();
    TestPki {
        ca_pem: ca.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

/// A client CA and certificates it issued, one per DNS name.
pub struct ClientPki {
    /// The CA certificate (what the server trusts).
    pub ca_pem: String,
    /// For each name, the certificate and key PEM concatenated (what a client presents).
    pub identities: Vec<String>,
}

/// Issues a client CA and one client certificate per name in `names`.
pub fn client_pki(names: &[&str]) -> ClientPki {
    let sans: Vec<Vec<rcgen::SanType>> = names
        .iter()
        .map(|n| vec![rcgen::SanType::DnsName((*n).try_into().unwrap())])
        .collect();
    client_pki_sans(&sans)
}

/// Issues a client CA and one client certificate per entry of `sans`, with exactly those subject
/// alternative names (`SanType::URI` for a SPIFFE ID).
pub fn client_pki_sans(sans: &[Vec<rcgen::SanType>]) -> ClientPki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "stsbridge test client CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let identities = sans
        .iter()
        .map(|names| {
            let key = KeyPair::generate().unwrap();
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.subject_alt_names = names.clone();
            params
                .distinguished_name
                .push(DnType::CommonName, "stsbridge test client");
            params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
            let cert = params.signed_by(&key, &ca).unwrap();
            format!("{}{}", cert.pem(), key.serialize_pem())
        })
        .collect();
    ClientPki {
        ca_pem: ca.pem(),
        identities,
    }
}

/// The `tls:` line of a config that serves `server` and verifies client certificates issued by
/// `client_ca_pem`, with `extra` (`, client_auth: optional`) inside; the PEM files are written
/// to `dir`.
pub fn tls_config(
    dir: &std::path::Path,
    server: &TestPki,
    client_ca_pem: &str,
    extra: &str,
) -> String {
    let write = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_owned()
    };
    format!(
        "tls: {{ cert_file: \"{}\", key_file: \"{}\", client_ca_file: \"{}\"{extra} }}",
        write("cert.pem", &server.cert_pem),
        write("key.pem", &server.key_pem),
        write("client-ca.pem", client_ca_pem)
    )
}

/// An HTTPS client that trusts only `server`'s CA and presents `identity` (a certificate and key
/// PEM, as [`ClientPki::identities`] holds them), if given.
pub fn https_client(server: &TestPki, identity: Option<&str>) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(server.ca_pem.as_bytes()).unwrap();
    let mut builder = reqwest::Client::builder().tls_certs_only([ca]);
    if let Some(pem) = identity {
        builder = builder.identity(reqwest::Identity::from_pem(pem.as_bytes()).unwrap());
    }
    builder.build().unwrap()
}
