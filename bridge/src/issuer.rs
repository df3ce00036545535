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
use crate::token::keys::parse_jwks;
use crate::token::{KeySet, unix_seconds};

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
    /// `issuer export` found no key to publish.
    #[error(
        "{0}: no signing keys; start the service once or run `stsbridge keys rotate`, then export"
    )]
    NoKeys(PathBuf),
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

/// The key set in use: the signing key and everything published, with the documents built from
/// them. Swapped whole when a key is staged, activated or retired.
struct KeyRing {
    active: Arc<SigningKey>,
    /// The published keys as a verifier sees them: stsbridge's own tokens coming back are
    /// verified against exactly what it publishes.
    verifying: Arc<KeySet>,
    jwks: Arc<str>,
    discovery: Arc<str>,
    published: Vec<String>,
}

/// A key with the time it was created (from its file name `key-<unix seconds>.pem`, else the
/// file's modification time).
#[derive(Clone)]
struct DatedKey {
    key: Arc<SigningKey>,
    created: SystemTime,
    file: Option<PathBuf>,
}

/// Which keys sign and which are published at some time: a pure function of the keys' creation
/// times, `now`, the lead a new key is published before it signs, and how long a replaced key
/// stays published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPlan {
    /// Index of the signing key.
    pub active: usize,
    /// Indices of the published keys (the active one, staged ones, and replaced ones whose
    /// tokens may still be alive).
    pub published: Vec<usize>,
}

/// Plans keys created at `created` (ascending). The newest key older than `lead` signs (the oldest
/// key when none is, since something must sign); newer keys are staged: published, not signing. A
/// replaced key stays published for `retention` after its successor started signing, so that
/// every token it signed expires while it can still be verified.
pub fn plan_keys(
    created: &[SystemTime],
    now: SystemTime,
    lead: Duration,
    retention: Duration,
) -> KeyPlan {
    let eligible = |t: &SystemTime| *t + lead <= now;
    let active = created.iter().rposition(eligible).unwrap_or(0);
    let published = (0..created.len())
        .filter(|&i| {
            if i >= active {
                return true;
            }
            let replaced_at = created[i + 1] + lead;
            now < replaced_at + retention
        })
        .collect();
    KeyPlan { active, published }
}

/// stsbridge's own issuer.
pub struct Issuer {
    url: String,
    lifetime: Duration,
    key_dir: Option<PathBuf>,
    lead: Duration,
    retention: Duration,
    keys: RwLock<Vec<DatedKey>>,
    ring: RwLock<Arc<KeyRing>>,
}

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuer")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// How long a replaced key stays published: the longest token stsbridge signs (an internal JWT of
/// up to an hour, or an assertion) plus a minute of clock skew.
fn retention_for(assertion_lifetime: Duration) -> Duration {
    assertion_lifetime.max(crate::mapping::MAX_JWT_LIFETIME) + Duration::from_secs(60)
}

impl Issuer {
    /// Loads the keys from the configured directory (creating one key if it has none), or
    /// generates an in-memory key when no directory is configured.
    pub fn load(config: &IssuerConfig) -> Result<Self, IssuerError> {
        let keys = match &config.key_dir {
            Some(dir) => load_or_create_dir(dir, config.algorithm)?,
            None => vec![DatedKey {
                key: Arc::new(SigningKey::generate(config.algorithm)?.0),
                created: SystemTime::UNIX_EPOCH,
                file: None,
            }],
        };
        let retention = retention_for(config.assertion_lifetime);
        let created: Vec<SystemTime> = keys.iter().map(|k| k.created).collect();
        let plan = plan_keys(
            &created,
            SystemTime::now(),
            config.publish_before_use,
            retention,
        );
        let ring = Self::ring(&config.url, &keys, &plan).ok_or(IssuerError::Generate)?;
        Ok(Issuer {
            url: config.url.clone(),
            lifetime: config.assertion_lifetime,
            key_dir: config.key_dir.clone(),
            lead: config.publish_before_use,
            retention,
            ring: RwLock::new(Arc::new(ring)),
            keys: RwLock::new(keys),
        })
    }

    /// The ring for `keys` under `plan`.
    fn ring(url: &str, keys: &[DatedKey], plan: &KeyPlan) -> Option<KeyRing> {
        let active = Arc::clone(&keys.get(plan.active)?.key);
        let published: Vec<&DatedKey> =
            plan.published.iter().filter_map(|&i| keys.get(i)).collect();
        let jwks: Vec<&Value> = published.iter().map(|k| k.key.public_jwk()).collect();
        let mut algs: Vec<&str> = published.iter().map(|k| k.key.alg.as_str()).collect();
        algs.sort_unstable();
        algs.dedup();
        let discovery = json!({
            "issuer": url,
            "jwks_uri": format!("{url}/.well-known/jwks.json"),
            "token_endpoint": format!("{url}/oauth2/token"),
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": algs,
            "grant_types_supported": ["urn:ietf:params:oauth:grant-type:token-exchange"],
            "claims_supported": ["iss", "sub", "aud", "exp", "iat", "nbf", "jti", "scope", "act"],
        });
        let jwks: Arc<str> = json!({ "keys": jwks }).to_string().into();
        let verifying = match parse_jwks(jwks.as_bytes()) {
            Ok((set, _)) => set,
            Err(e) => {
                tracing::error!(
                    "stsbridge's own JWKS does not parse, its tokens will not come back: {e}"
                );
                KeySet::default()
            }
        };
        Some(KeyRing {
            published: published.iter().map(|k| k.key.kid.clone()).collect(),
            active,
            verifying: Arc::new(verifying),
            jwks,
            discovery: discovery.to_string().into(),
        })
    }

    /// Recomputes which key signs and which are published at `now`; logs a change.
    fn replan(&self, now: SystemTime) {
        let Ok(keys) = self.keys.read() else { return };
        let created: Vec<SystemTime> = keys.iter().map(|k| k.created).collect();
        let plan = plan_keys(&created, now, self.lead, self.retention);
        let Some(ring) = Self::ring(&self.url, &keys, &plan) else {
            return;
        };
        let Ok(mut current) = self.ring.write() else {
            return;
        };
        if current.active.kid != ring.active.kid {
            tracing::info!(kid = %ring.active.kid, "signing with a new key from now on");
        }
        if current.published != ring.published {
            tracing::info!(published = ?ring.published, "published keys changed");
        }
        *current = Arc::new(ring);
    }

    /// Picks up keys added to or removed from the key directory and moves staged keys into use
    /// when their time comes. Called periodically by the service (and on SIGHUP). A key file that
    /// cannot be used is logged and skipped; the keys in use stay.
    pub fn refresh(&self, now: SystemTime) {
        if let Some(dir) = &self.key_dir {
            match read_dir_keys(
                dir,
                &self.keys.read().map(|k| k.clone()).unwrap_or_default(),
            ) {
                Ok(keys) if !keys.is_empty() => {
                    if let Ok(mut current) = self.keys.write() {
                        *current = keys;
                    }
                }
                Ok(_) => {
                    tracing::error!(dir = %dir.display(), "the key directory has no key left; keeping the keys in use")
                }
                Err(e) => {
                    tracing::error!("cannot reload signing keys, keeping the keys in use: {e}")
                }
            }
        }
        self.replan(now);
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

    /// The published keys, parsed for verification (stsbridge's own tokens coming back).
    pub fn verifying_keys(&self) -> Arc<KeySet> {
        self.ring
            .read()
            .map(|r| Arc::clone(&r.verifying))
            .unwrap_or_default()
    }

    /// `/.well-known/openid-configuration`.
    pub fn discovery_json(&self) -> Arc<str> {
        self.ring
            .read()
            .map(|r| Arc::clone(&r.discovery))
            .unwrap_or_else(|_| Arc::from("{}"))
    }

    /// The key id that signs now.
    pub fn active_kid(&self) -> Option<String> {
        self.ring.read().ok().map(|r| r.active.kid.clone())
    }

    /// The published key ids.
    pub fn published_kids(&self) -> Vec<String> {
        self.ring
            .read()
            .map(|r| r.published.clone())
            .unwrap_or_default()
    }
}

/// What [`export`] wrote.
#[derive(Debug)]
pub struct Exported {
    /// The discovery document's file.
    pub discovery: PathBuf,
    /// The JWKS's file.
    pub jwks: PathBuf,
    /// The key ids published in it.
    pub kids: Vec<String>,
}

/// Writes the issuer's `/.well-known/openid-configuration` and `/.well-known/jwks.json`, exactly
/// as the service serves them, under `out` (`stsbridge issuer export`), for static hosting where
/// the clouds fetch them. Never creates a key: a key directory without keys is an error, since a
/// key made here would not be the one the service signs with.
pub fn export(config: &IssuerConfig, out: &Path) -> Result<Exported, IssuerError> {
    let Some(dir) = &config.key_dir else {
        return Err(IssuerError::NoKeys(PathBuf::from("issuer.keys.dir")));
    };
    if check_key_dir(dir)? == 0 {
        return Err(IssuerError::NoKeys(dir.clone()));
    }
    let issuer = Issuer::load(config)?;
    let well_known = out.join(".well-known");
    fs::create_dir_all(&well_known).map_err(|e| io_error(&well_known, &e))?;
    let discovery = well_known.join("openid-configuration");
    let jwks = well_known.join("jwks.json");
    for (path, text) in [
        (&discovery, issuer.discovery_json()),
        (&jwks, issuer.jwks_json()),
    ] {
        fs::write(path, text.as_bytes()).map_err(|e| io_error(path, &e))?;
    }
    Ok(Exported {
        discovery,
        jwks,
        kids: issuer.published_kids(),
    })
}

/// Stages a new key in `config`'s key directory (`stsbridge keys rotate`): written now, published
/// by running services at their next key refresh, signing after `publish_before_use`. With
/// `prune`, deletes the files of keys no longer published. Returns the new key id and the pruned
/// files.
pub fn rotate(
    config: &IssuerConfig,
    prune: bool,
    now: SystemTime,
) -> Result<(String, Vec<PathBuf>), IssuerError> {
    let Some(dir) = &config.key_dir else {
        return Err(IssuerError::Io {
            path: PathBuf::new(),
            detail: "the issuer has no key directory".into(),
        });
    };
    let existing = load_or_create_dir(dir, config.algorithm)?;
    let (key, der) = SigningKey::generate(config.algorithm)?;
    let mut secs = unix_seconds(now);
    // One key per second: never two files with one creation time.
    while existing.iter().any(|k| unix_seconds(k.created) >= secs) {
        secs += 1;
    }
    let path = dir.join(format!("key-{secs:012}.pem"));
    write_key_file(&path, &der)?;
    let mut pruned = Vec::new();
    if prune {
        let created: Vec<SystemTime> = existing.iter().map(|k| k.created).collect();
        let plan = plan_keys(
            &created,
            now,
            config.publish_before_use,
            retention_for(config.assertion_lifetime),
        );
        for (i, k) in existing.iter().enumerate() {
            if !plan.published.contains(&i)
                && let Some(file) = &k.file
            {
                fs::remove_file(file).map_err(|e| io_error(file, &e))?;
                pruned.push(file.clone());
            }
        }
    }
    Ok((key.kid, pruned))
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
        let jti = random_id().map_err(|_| SignError::Random)?;
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

/// Bytes of an id: 128 bits, so ids drawn at random do not collide in practice.
pub const ID_BYTES: usize = 16;

/// The system's random number generator failed, so no id could be drawn.
#[derive(Debug, thiserror::Error)]
#[error("the system's random number generator failed")]
pub struct RandomError;

/// 128 random bits, base64url: `jti`s, decision ids and request ids. Fails when the system's
/// generator fails: single-use checks, audit trails and revocation all key on these ids, so a
/// constant stand-in would merge unrelated tokens and decisions.
pub fn random_id() -> Result<String, RandomError> {
    id_from(|bytes| SystemRandom::new().fill(bytes))
}

/// An id from the bytes `fill` writes, or the error when it fails (whatever it wrote is dropped).
/// The generator is a parameter so that its failure can be tested: aws-lc-rs's `SecureRandom` is
/// sealed.
fn id_from(
    fill: impl FnOnce(&mut [u8]) -> Result<(), aws_lc_rs::error::Unspecified>,
) -> Result<String, RandomError> {
    let mut bytes = [0u8; ID_BYTES];
    fill(&mut bytes).map_err(|_| RandomError)?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

fn io_error(path: &Path, e: &std::io::Error) -> IssuerError {
    IssuerError::Io {
        path: path.to_path_buf(),
        detail: e.to_string(),
    }
}

/// Loads every `*.pem` key in `dir`, oldest first; creates the directory (mode 0700) and one key
/// (mode 0600) when there is none.
fn load_or_create_dir(dir: &Path, alg: SigningAlgorithm) -> Result<Vec<DatedKey>, IssuerError> {
    if !dir.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| io_error(dir, &e))?;
    }
    let keys = read_dir_keys(dir, &[])?;
    if !keys.is_empty() {
        return Ok(keys);
    }
    let (key, der) = SigningKey::generate(alg)?;
    let now = SystemTime::now();
    let path = dir.join(format!("key-{:012}.pem", unix_seconds(now)));
    write_key_file(&path, &der)?;
    tracing::info!(kid = %key.kid, path = %path.display(), "generated a new signing key");
    Ok(vec![DatedKey {
        key: Arc::new(key),
        created: created_at(&path).unwrap_or(now),
        file: Some(path),
    }])
}

/// The keys of `dir`, oldest first, reusing the parsed keys of `known` for files already loaded.
fn read_dir_keys(dir: &Path, known: &[DatedKey]) -> Result<Vec<DatedKey>, IssuerError> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(|e| io_error(dir, &e))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "pem"))
        .collect();
    files.sort();
    let mut keys = Vec::with_capacity(files.len());
    for path in files {
        let key = match known.iter().find(|k| k.file.as_ref() == Some(&path)) {
            Some(k) => Arc::clone(&k.key),
            None => Arc::new(read_key_file(&path)?),
        };
        let created = created_at(&path).map_err(|e| io_error(&path, &e))?;
        keys.push(DatedKey {
            key,
            created,
            file: Some(path),
        });
    }
    keys.sort_by_key(|k| k.created);
    Ok(keys)
}

/// A key file's creation time: the seconds in its name `key-<unix seconds>.pem`, else its
/// modification time.
fn created_at(path: &Path) -> std::io::Result<SystemTime> {
    let from_name = path
        .file_stem()
        .and_then(|s| s.to_str())
        .and_then(|s| s.strip_prefix("key-"))
        .and_then(|s| s.parse::<u64>().ok());
    match from_name {
        Some(secs) => Ok(SystemTime::UNIX_EPOCH + Duration::from_secs(secs)),
        None => fs::metadata(path)?.modified(),
    }
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
