//! stsbridge as an OIDC issuer: its signing keys, the documents clouds fetch, and minting.
//!
//! Clouds trust stsbridge's issuer URL (set up by `terraform/`), never a caller's IdP. Keys live in
//! the configured directory as PKCS#8 PEM files, mode 0600; an empty directory gets a new key on
//! first start. Every key in the directory is published in the JWKS; the newest one signs. Dev mode
//! keeps one generated key in memory only. Rooms: `key` (one signing key), `key_dir` (the key
//! directory, rotation and export), `id` (random ids).

mod id;
mod key;
mod key_dir;

pub use id::{ID_BYTES, RandomError, random_id};
pub use key::SigningKey;
#[cfg(test)]
use key::thumbprint;
use key_dir::*;
pub use key_dir::{Exported, KeyPlan, check_key_dir, export, plan_keys, rotate};

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
        "{path}: key files must be readable by their owner only, or also by a group of this process without write (mode is {mode:o}; run chmod 600)"
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
    assertion_lifetime.max(stsbridge_providers::jwt::MAX_JWT_LIFETIME) + Duration::from_secs(60)
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

    /// When the key that signs now was created.
    pub fn active_created(&self) -> Option<SystemTime> {
        let kid = self.active_kid()?;
        let keys = self.keys.read().ok()?;
        keys.iter().find(|k| k.key.kid == kid).map(|k| k.created)
    }

    /// The published key ids.
    pub fn published_kids(&self) -> Vec<String> {
        self.ring
            .read()
            .map(|r| r.published.clone())
            .unwrap_or_default()
    }
}

/// The claims of every token stsbridge signs: the registered ones, in this order, then the extra
/// ones (none of them a registered claim, checked before, so no member is written twice).
#[derive(serde::Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    iat: u64,
    nbf: u64,
    exp: u64,
    jti: &'a str,
    #[serde(flatten)]
    extra: &'a serde_json::Map<String, Value>,
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
        // Written straight from their values, without a JSON tree per token.
        let claims = serde_json::to_vec(&Claims {
            iss: &self.url,
            sub: spec.subject,
            aud: spec.audience,
            iat,
            nbf: iat,
            exp,
            jti: &jti,
            extra: &spec.extra,
        })
        .map_err(|_| SignError::Crypto)?;
        let mut token = String::with_capacity(1024);
        token.push_str(&key.encoded_header);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(&claims, &mut token);
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

#[cfg(test)]
mod tests;
