//! stsbridge as an OIDC issuer: its signing keys, the documents clouds fetch, and minting.
//!
//! Clouds trust stsbridge's issuer URL (set up by `terraform/`), never a caller's IdP. Keys live in
//! the configured directory as PKCS#8 PEM files, mode 0600; an empty directory gets a new key on
//! first start. Every key in the directory is published in the JWKS; the newest one signs. Dev mode
//! keeps one generated key in memory only.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair, RSA_PKCS1_SHA256,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use secrecy::SecretString;
use serde_json::{Value, json};
use stsbridge_providers::{AssertionSigner, MintSpec, MintedAssertion, SignError};
use zeroize::Zeroizing;

use crate::config::{IssuerConfig, SigningAlgorithm};
use crate::token::unix_seconds;

/// PEM label of the key files.
const PEM_LABEL: &str = "PRIVATE KEY";
/// Claims the issuer sets itself; `MintSpec::extra` may not override them.
const RESERVED_CLAIMS: [&str; 7] = ["iss", "sub", "aud", "iat", "nbf", "exp", "jti"];

/// Why the issuer's keys could not be loaded or created.
#[derive(Debug, thiserror::Error)]
pub enum IssuerError {
    /// A file or directory operation failed.
    #[error("{path}: {detail}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What failed.
        detail: String,
    },
    /// A key file is readable by others.
    #[error(
        "{path}: key files must be readable by their owner only (mode is {mode:o}; run chmod 600)"
    )]
    Permissions {
        /// The file.
        path: PathBuf,
        /// Its mode.
        mode: u32,
    },
    /// A key file holds no usable key.
    #[error("{path}: not a PKCS#8 RSA (2048 bits or more) or P-256 private key in PEM")]
    BadKey {
        /// The file.
        path: PathBuf,
    },
    /// Key generation failed.
    #[error("could not generate a signing key")]
    Generate,
}

enum Pair {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
}

/// One signing key with its public JWK.
pub struct SigningKey {
    kid: String,
    alg: SigningAlgorithm,
    pair: Pair,
    jwk: Value,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Generates a new key; returns it with its PKCS#8 DER (to be written to the key directory).
    pub fn generate(alg: SigningAlgorithm) -> Result<(Self, Zeroizing<Vec<u8>>), IssuerError> {
        let der = match alg {
            SigningAlgorithm::Rs256 => {
                let pair =
                    RsaKeyPair::generate(KeySize::Rsa2048).map_err(|_| IssuerError::Generate)?;
                let der = pair.as_der().map_err(|_| IssuerError::Generate)?;
                Zeroizing::new(der.as_ref().to_vec())
            }
            SigningAlgorithm::Es256 => {
                let doc = EcdsaKeyPair::generate_pkcs8(
                    &ECDSA_P256_SHA256_FIXED_SIGNING,
                    &SystemRandom::new(),
                )
                .map_err(|_| IssuerError::Generate)?;
                Zeroizing::new(doc.as_ref().to_vec())
            }
        };
        let key = Self::from_pkcs8(&der).ok_or(IssuerError::Generate)?;
        Ok((key, der))
    }

    /// Reads a PKCS#8 DER private key (RSA or P-256).
    pub fn from_pkcs8(der: &[u8]) -> Option<Self> {
        let (alg, pair, jwk) = if let Ok(pair) = RsaKeyPair::from_pkcs8(der) {
            let public = pair.public_key();
            let n = URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero());
            let e = URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero());
            (
                SigningAlgorithm::Rs256,
                Pair::Rsa(pair),
                json!({ "kty": "RSA", "e": e, "n": n }),
            )
        } else if let Ok(pair) = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der) {
            let point = pair.public_key().as_ref();
            if point.len() != 65 {
                return None;
            }
            let x = URL_SAFE_NO_PAD.encode(&point[1..33]);
            let y = URL_SAFE_NO_PAD.encode(&point[33..65]);
            (
                SigningAlgorithm::Es256,
                Pair::Ec(pair),
                json!({ "kty": "EC", "crv": "P-256", "x": x, "y": y }),
            )
        } else {
            return None;
        };
        let kid = thumbprint(&jwk);
        let mut jwk = jwk;
        jwk["kid"] = json!(kid);
        jwk["alg"] = json!(alg.as_str());
        jwk["use"] = json!("sig");
        Some(SigningKey {
            kid,
            alg,
            pair,
            jwk,
        })
    }

    /// The key id (RFC 7638 thumbprint).
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The JOSE algorithm it signs with.
    pub fn algorithm(&self) -> SigningAlgorithm {
        self.alg
    }

    /// The public JWK.
    pub fn public_jwk(&self) -> &Value {
        &self.jwk
    }

    /// Signs `message` (the JWS signing input) with this key.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignError> {
        let rng = SystemRandom::new();
        match &self.pair {
            Pair::Rsa(pair) => {
                let mut sig = vec![0u8; pair.public_modulus_len()];
                pair.sign(&RSA_PKCS1_SHA256, &rng, message, &mut sig)
                    .map_err(|_| SignError::Crypto)?;
                Ok(sig)
            }
            Pair::Ec(pair) => pair
                .sign(&rng, message)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| SignError::Crypto),
        }
    }
}

/// RFC 7638 JWK thumbprint: SHA-256 over the required members in lexicographic order.
fn thumbprint(jwk: &Value) -> String {
    let canonical = match jwk["kty"].as_str() {
        Some("RSA") => format!(
            r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
            jwk["e"].as_str().unwrap_or(""),
            jwk["n"].as_str().unwrap_or("")
        ),
        _ => format!(
            r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#,
            jwk["crv"].as_str().unwrap_or(""),
            jwk["x"].as_str().unwrap_or(""),
            jwk["y"].as_str().unwrap_or("")
        ),
    };
    URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        canonical.as_bytes(),
    ))
}

/// The key set in use: the signing key and everything published.
struct KeyRing {
    active: Arc<SigningKey>,
    jwks: Arc<str>,
}

/// stsbridge's own issuer.
pub struct Issuer {
    url: String,
    lifetime: Duration,
    ring: RwLock<Arc<KeyRing>>,
    discovery: Arc<str>,
}

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuer")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl Issuer {
    /// Loads the keys from the configured directory (creating one key if it has none), or
    /// generates an in-memory key when no directory is configured.
    pub fn load(config: &IssuerConfig) -> Result<Self, IssuerError> {
        let keys = match &config.key_dir {
            Some(dir) => load_or_create_dir(dir, config.algorithm)?,
            None => vec![SigningKey::generate(config.algorithm)?.0],
        };
        Self::with_keys(config, keys)
    }

    /// An issuer over `keys`; the last one signs, all are published.
    fn with_keys(config: &IssuerConfig, mut keys: Vec<SigningKey>) -> Result<Self, IssuerError> {
        let jwks: Vec<&Value> = keys.iter().map(SigningKey::public_jwk).collect();
        let jwks: Arc<str> = json!({ "keys": jwks }).to_string().into();
        let algs: Vec<&str> = {
            let mut a: Vec<&str> = keys.iter().map(|k| k.alg.as_str()).collect();
            a.sort_unstable();
            a.dedup();
            a
        };
        let url = config.url.clone();
        let discovery = json!({
            "issuer": url,
            "jwks_uri": format!("{url}/.well-known/jwks.json"),
            "token_endpoint": format!("{url}/oauth2/token"),
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": algs,
            "grant_types_supported": ["urn:ietf:params:oauth:grant-type:token-exchange"],
            "claims_supported": ["iss", "sub", "aud", "exp", "iat", "nbf", "jti", "scope", "act"],
        })
        .to_string()
        .into();
        let active = Arc::new(keys.pop().ok_or(IssuerError::Generate)?);
        Ok(Issuer {
            url,
            lifetime: config.assertion_lifetime,
            ring: RwLock::new(Arc::new(KeyRing { active, jwks })),
            discovery,
        })
    }

    /// The issuer URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `/.well-known/jwks.json`.
    pub fn jwks_json(&self) -> Arc<str> {
        self.ring
            .read()
            .map(|r| Arc::clone(&r.jwks))
            .unwrap_or_else(|_| Arc::from("{\"keys\":[]}"))
    }

    /// `/.well-known/openid-configuration`.
    pub fn discovery_json(&self) -> Arc<str> {
        Arc::clone(&self.discovery)
    }

    /// The key id that signs now.
    pub fn active_kid(&self) -> Option<String> {
        self.ring.read().ok().map(|r| r.active.kid.clone())
    }
}

impl AssertionSigner for Issuer {
    fn issuer(&self) -> &str {
        &self.url
    }

    fn mint(&self, spec: MintSpec<'_>, now: SystemTime) -> Result<MintedAssertion, SignError> {
        if let Some(reserved) = spec
            .extra
            .keys()
            .find(|k| RESERVED_CLAIMS.contains(&k.as_str()))
        {
            return Err(SignError::ReservedClaim(reserved.clone()));
        }
        let key = self
            .ring
            .read()
            .map_err(|_| SignError::NoKey)?
            .active
            .clone();
        let _span = tracing::debug_span!("mint", kid = %key.kid, aud = %spec.audience).entered();
        let iat = unix_seconds(now);
        let lifetime = spec.lifetime.unwrap_or(self.lifetime);
        let exp = iat + lifetime.as_secs();
        let jti = random_id();
        let mut claims = serde_json::Map::with_capacity(7 + spec.extra.len());
        claims.insert("iss".into(), json!(self.url));
        claims.insert("sub".into(), json!(spec.subject));
        claims.insert("aud".into(), json!(spec.audience));
        claims.insert("iat".into(), json!(iat));
        claims.insert("nbf".into(), json!(iat));
        claims.insert("exp".into(), json!(exp));
        claims.insert("jti".into(), json!(jti));
        claims.extend(spec.extra);
        let header = json!({ "alg": key.alg.as_str(), "kid": key.kid, "typ": "JWT" });
        let mut token = String::with_capacity(1024);
        URL_SAFE_NO_PAD.encode_string(header.to_string(), &mut token);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(Value::Object(claims).to_string(), &mut token);
        let signature = key.sign(token.as_bytes())?;
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(signature, &mut token);
        Ok(MintedAssertion {
            token: SecretString::from(token),
            jti,
            expires_at: SystemTime::UNIX_EPOCH + Duration::from_secs(exp),
        })
    }
}

/// 128 random bits, base64url: `jti`s and decision ids.
pub fn random_id() -> String {
    let mut bytes = [0u8; 16];
    // SystemRandom only fails if the OS has no entropy source; a zero id is then still unique enough
    // for a log line but never for a secret, and ids here are not secrets.
    let _ = SystemRandom::new().fill(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

fn io_error(path: &Path, e: &std::io::Error) -> IssuerError {
    IssuerError::Io {
        path: path.to_path_buf(),
        detail: e.to_string(),
    }
}

/// Loads every `*.pem` key in `dir`, sorted by file name (the last signs); creates the directory
/// (mode 0700) and one key (mode 0600) when there is none.
fn load_or_create_dir(dir: &Path, alg: SigningAlgorithm) -> Result<Vec<SigningKey>, IssuerError> {
    if !dir.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| io_error(dir, &e))?;
    }
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(|e| io_error(dir, &e))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "pem"))
        .collect();
    files.sort();
    if files.is_empty() {
        let (key, der) = SigningKey::generate(alg)?;
        let path = dir.join(format!("key-{:012}.pem", unix_seconds(SystemTime::now())));
        write_key_file(&path, &der)?;
        tracing::info!(kid = %key.kid, path = %path.display(), "generated a new signing key");
        return Ok(vec![key]);
    }
    files.iter().map(|p| read_key_file(p)).collect()
}

/// Checks the key files of `dir` without creating anything (`stsbridge check`); returns how many
/// keys it holds (0 for a missing or empty directory, which gets a key on first start).
pub fn check_key_dir(dir: &Path) -> Result<usize, IssuerError> {
    if !dir.exists() {
        return Ok(0);
    }
    let mut count = 0;
    for entry in fs::read_dir(dir).map_err(|e| io_error(dir, &e))? {
        let path = entry.map_err(|e| io_error(dir, &e))?.path();
        if path.extension().is_some_and(|x| x == "pem") {
            read_key_file(&path)?;
            count += 1;
        }
    }
    Ok(count)
}

fn write_key_file(path: &Path, der: &[u8]) -> Result<(), IssuerError> {
    let pem = Zeroizing::new(pem::encode(&pem::Pem::new(PEM_LABEL, der.to_vec())));
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| io_error(path, &e))?;
    file.write_all(pem.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| io_error(path, &e))
}

fn read_key_file(path: &Path) -> Result<SigningKey, IssuerError> {
    let meta = fs::metadata(path).map_err(|e| io_error(path, &e))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(IssuerError::Permissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    let text = Zeroizing::new(fs::read_to_string(path).map_err(|e| io_error(path, &e))?);
    let parsed = pem::parse(text.as_bytes()).map_err(|_| IssuerError::BadKey {
        path: path.to_path_buf(),
    })?;
    if parsed.tag() != PEM_LABEL {
        return Err(IssuerError::BadKey {
            path: path.to_path_buf(),
        });
    }
    let der = Zeroizing::new(parsed.into_contents());
    SigningKey::from_pkcs8(&der).ok_or_else(|| IssuerError::BadKey {
        path: path.to_path_buf(),
    })
}

#[cfg(test)]
mod tests;
